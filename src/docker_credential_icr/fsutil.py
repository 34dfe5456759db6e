"""Private directories, atomic file replacement and a cross-process lock.

Files that hold secrets are created 0600 inside 0700 directories and replaced
atomically (temp file in the same directory, fsync, rename), so a crash or a
kill -9 leaves either the old file or the new one, never half of each.
"""

from __future__ import annotations

import os
import sys

_WINDOWS = sys.platform == "win32"


def ensure_private_dir(path: str) -> None:
    """Create `path` (and parents) if missing; the leaf is made 0700."""
    try:
        os.makedirs(path, mode=0o700, exist_ok=True)
    except FileExistsError:
        from docker_credential_icr.i18n import _

        raise OSError(_("{path} exists and is not a directory").format(path=path)) from None
    if not _WINDOWS:
        st = os.stat(path)
        if st.st_mode & 0o077 and st.st_uid == os.getuid():
            os.chmod(path, 0o700)


def read_bytes(path: str) -> bytes | None:
    """The file's bytes, or None when it does not exist."""
    try:
        with open(path, "rb") as fh:
            return fh.read()
    except FileNotFoundError:
        return None


def remove_stale_temps(path: str) -> None:
    """Delete temp files a killed writer left beside `path` (they may hold secrets).

    Call only while holding the lock that every writer of `path` holds: then no temp
    file there can belong to a live writer.
    """
    directory = os.path.dirname(path) or "."
    prefix = f".{os.path.basename(path)}."
    try:
        names = os.listdir(directory)
    except OSError:
        return
    for name in names:
        if name.startswith(prefix) and name.endswith(".tmp"):
            try:
                os.unlink(os.path.join(directory, name))
            except OSError:
                pass


def _replace(src: str, dst: str) -> None:
    if not _WINDOWS:
        os.replace(src, dst)
        return
    # Windows refuses to replace a file another process has open (a concurrent `get`
    # reading it): that reader is done within milliseconds, so retry briefly.
    import time

    for attempt in range(50):
        try:
            os.replace(src, dst)
            return
        except PermissionError:
            if attempt == 49:
                raise
            time.sleep(0.02)


def atomic_write(path: str, data: bytes, mode: int = 0o600) -> None:
    directory = os.path.dirname(path) or "."
    tmp = os.path.join(directory, f".{os.path.basename(path)}.{os.getpid()}.{os.urandom(4).hex()}.tmp")
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
    fd = os.open(tmp, flags, mode)
    try:
        try:
            view = memoryview(data)
            while view:
                written = os.write(fd, view)
                view = view[written:]
            os.fsync(fd)
        finally:
            os.close(fd)
        _replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    if not _WINDOWS:
        # The rename is durable only once the directory entry is on disk too.
        dir_fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)


class FileLock:
    """An exclusive advisory lock on `path` held across processes (flock / msvcrt).

    With a `timeout`, waiting gives up with TimeoutError instead of blocking forever:
    a `get` has a deadline even when another helper process is stuck.
    """

    def __init__(self, path: str, timeout: float | None = None) -> None:
        self.path = path
        self.timeout = timeout
        self._fd: int | None = None

    def _try_lock(self, fd: int) -> bool:
        if _WINDOWS:
            import msvcrt

            try:
                msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
                return True
            except OSError:
                return False
        import fcntl

        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        except BlockingIOError:
            return False

    def __enter__(self) -> FileLock:
        import time

        # Never through a symlink: a planted link would make us create a file elsewhere.
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0), 0o600)
        give_up = None if self.timeout is None else time.monotonic() + self.timeout
        delay = 0.005
        try:
            while not self._try_lock(fd):
                if give_up is not None and time.monotonic() >= give_up:
                    from docker_credential_icr.i18n import _

                    raise TimeoutError(_("timed out waiting for the lock {path}").format(path=self.path))
                time.sleep(delay)
                delay = min(delay * 2, 0.05)
        except BaseException:
            os.close(fd)
            raise
        self._fd = fd
        return self

    def __exit__(self, *exc: object) -> None:
        fd, self._fd = self._fd, None
        if fd is None:
            return
        try:
            if _WINDOWS:
                import msvcrt

                os.lseek(fd, 0, os.SEEK_SET)
                msvcrt.locking(fd, msvcrt.LK_UNLCK, 1)
            else:
                import fcntl

                fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)
