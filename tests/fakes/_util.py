"""Small shared helpers for the fakes: ports, waiting, stopping processes by PID."""

from __future__ import annotations

import base64
import fcntl
import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

LOOPBACK = "127.0.0.1"

# Every HTTP call the fakes make goes to 127.0.0.1: never let an http_proxy in
# the environment reroute it.
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def free_port() -> int:
    """A port free right now on 127.0.0.1, for programs that cannot bind port 0 themselves.

    There is a small race until the program binds it; runners retry on failure.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((LOOPBACK, 0))
        return int(s.getsockname()[1])


def wait_until(predicate: Callable[[], bool], timeout: float, interval: float = 0.05) -> bool:
    """Poll `predicate` until it is true or `timeout` seconds pass."""
    deadline = time.monotonic() + timeout
    while True:
        if predicate():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval)


def http_request(
    url: str,
    *,
    data: bytes | None = None,
    headers: dict[str, str] | None = None,
    method: str | None = None,
    timeout: float = 10.0,
) -> tuple[int, dict[str, str], bytes]:
    """(status, headers, body) for one request; HTTP errors are answers, not exceptions."""
    req = urllib.request.Request(url, data=data, headers=headers or {}, method=method)
    try:
        with _OPENER.open(req, timeout=timeout) as resp:
            return resp.status, dict(resp.headers.items()), resp.read()
    except urllib.error.HTTPError as err:
        with err:
            return err.code, dict(err.headers.items()), err.read()
    except urllib.error.URLError as err:
        # Surface the real cause (ConnectionRefusedError, TimeoutError…) so callers can tell them apart.
        if isinstance(err.reason, OSError):
            raise err.reason from None
        raise


def basic_auth(username: str, password: str) -> str:
    """The value of an HTTP Basic Authorization header."""
    raw = f"{username}:{password}".encode()
    return "Basic " + base64.b64encode(raw).decode("ascii")


def parse_basic_auth(header: str | None) -> tuple[str, str] | None:
    """(username, password) from a Basic Authorization header, None if absent or malformed."""
    if not header or not header[:6].lower() == "basic ":
        return None
    try:
        raw = base64.b64decode(header[6:].strip(), validate=True).decode("utf-8")
    except (ValueError, UnicodeDecodeError):
        return None
    user, sep, password = raw.partition(":")
    return (user, password) if sep else None


def child_pids(pid: int) -> list[int]:
    """Direct children of `pid`, read from /proc (no psutil in the test environment)."""
    children = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # The command name is in parentheses and may contain spaces: split after it.
        fields = stat.rpartition(")")[2].split()
        if len(fields) > 1 and int(fields[1]) == pid:
            children.append(int(entry.name))
    return children


def descendant_pids(pid: int) -> list[int]:
    """All descendants of `pid`, children before grandchildren."""
    found: list[int] = []
    todo = [pid]
    while todo:
        kids = child_pids(todo.pop())
        found.extend(kids)
        todo.extend(kids)
    return found


def pid_alive(pid: int) -> bool:
    """True while `pid` exists and is not a zombie."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


def kill_pids(pids: Iterable[int], timeout: float = 5.0) -> None:
    """SIGTERM each PID, wait up to `timeout`, then SIGKILL the ones still there."""
    pids = [p for p in pids if pid_alive(p)]
    for pid in pids:
        _signal(pid, signal.SIGTERM)
    if not wait_until(lambda: not any(pid_alive(p) for p in pids), timeout):
        for pid in pids:
            _signal(pid, signal.SIGKILL)
        wait_until(lambda: not any(pid_alive(p) for p in pids), 5.0)


def stop_process(proc: subprocess.Popen[bytes], timeout: float = 10.0) -> None:
    """Stop a child we started: SIGTERM, wait, SIGKILL; always reaps it."""
    if proc.poll() is None:
        _signal(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            _signal(proc.pid, signal.SIGKILL)
            proc.wait(10)


def _signal(pid: int, sig: int) -> None:
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass


def write_atomically(path: str | os.PathLike[str], text: str) -> None:
    """Write a file so that a reader polling for it never sees it half written."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def topmost_missing(path: Path) -> Path | None:
    """The highest ancestor of `path` (or itself) that does not exist yet: what a run would create.

    Runners record it before starting a program that litters the host, and
    remove it afterwards, so that only what the run created is removed.
    """
    if path.exists() or path.is_symlink():
        return None
    top = path
    while not top.parent.exists():
        top = top.parent
    return top


class SharedLitter:
    """Host paths that programs create whatever their flags say, removed by the last user.

    Several test runs may use dockerd or skopeo at once (the lead's full suite
    and an engineer's run, say). The paths are shared, so "remove what I
    created" is wrong when runs overlap: one run would delete files another is
    using, or leave behind files the other created. Instead, users register in
    a small JSON state file under the temp dir (guarded by flock): the first
    user records which paths are missing, and the last one to leave removes
    them. Users whose PID is gone are dropped, so a crashed run cannot pin them.
    """

    def __init__(self, name: str, paths: Iterable[Path]) -> None:
        self.paths = tuple(paths)
        base = Path(tempfile.gettempdir())
        self._state = base / f"icr-fakes-litter-{name}.json"
        self._lock = base / f"icr-fakes-litter-{name}.lock"
        self._token = f"{os.getpid()}:{id(self)}"

    def _update(self, change: Callable[[dict[str, Any]], None]) -> dict[str, Any]:
        while True:
            with open(self._lock, "a") as lock:
                fcntl.flock(lock, fcntl.LOCK_EX)
                # The last user deletes the lock file: a lock taken on a deleted inode
                # guards nothing, so retry on the file that is there now.
                try:
                    if os.stat(self._lock).st_ino != os.fstat(lock.fileno()).st_ino:
                        continue
                except FileNotFoundError:
                    continue
                try:
                    state = json.loads(self._state.read_text())
                except (OSError, ValueError):
                    state = {"users": [], "created": []}
                state["users"] = [u for u in state["users"] if pid_alive(int(u.split(":")[0]))]
                change(state)
                if state["users"] or state["created"]:
                    write_atomically(self._state, json.dumps(state))
                else:
                    # Nobody left and nothing to remove: leave no file behind either.
                    self._state.unlink(missing_ok=True)
                    self._lock.unlink(missing_ok=True)
                return state

    def acquire(self) -> None:
        """Register before starting the program."""

        def join(state: dict[str, Any]) -> None:
            if not state["users"]:
                missing = (topmost_missing(p) for p in self.paths)
                state["created"] = [str(p) for p in missing if p is not None]
            state["users"].append(self._token)

        self._update(join)

    def release(self) -> None:
        """Unregister after the program stopped; the last user removes what the first found missing."""

        def leave(state: dict[str, Any]) -> None:
            state["users"] = [u for u in state["users"] if u != self._token]
            if not state["users"]:
                for path in map(Path, state["created"]):
                    if path.is_dir() and not path.is_symlink():
                        shutil.rmtree(path, ignore_errors=True)
                    else:
                        path.unlink(missing_ok=True)
                state["created"] = []

        self._update(leave)

    def active_users(self) -> int:
        """How many live users (in any process) are registered."""
        return len(self._update(lambda state: None)["users"])


class ServedHTTP:
    """A ThreadingHTTPServer on host:port (0: a free port) in a daemon thread.

    The fake that owns it is reachable from its handler as `self.server.<owner_attr>`.
    """

    def __init__(self, handler: type[BaseHTTPRequestHandler], host: str, port: int,
                 owner_attr: str, owner: object, name: str,
                 server_class: type[ThreadingHTTPServer] = ThreadingHTTPServer) -> None:
        self.server = server_class((host, port), handler)
        self.server.daemon_threads = True
        setattr(self.server, owner_attr, owner)
        self.port = int(self.server.server_address[1])
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.1},
                                       daemon=True, name=f"{name}-{self.port}")
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)


class FakeHandler(BaseHTTPRequestHandler):
    """Thin HTTP layer of a fake: every method goes to `server.<owner_attr>.handle(self, method)`."""

    owner_attr = ""
    sys_version = ""
    # One request per connection: `down()` and `stop()` then take effect at once.
    protocol_version = "HTTP/1.0"

    def do_GET(self) -> None:
        self._run("GET")

    def do_POST(self) -> None:
        self._run("POST")

    def _run(self, method: str) -> None:
        try:
            getattr(self.server, self.owner_attr).handle(self, method)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up (a deadline in the helper): not our problem

    def log_message(self, format: str, *args: Any) -> None:
        # Request lines may carry tokens (/_fake/validate?token=…): never print them.
        return

    def read_body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length > 0 else b""
