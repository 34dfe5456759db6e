"""credentials.json: what `docker login` stored through us, keyed by canonical host.

Layout: {"version": 1, "auths": {"us.icr.io": {"Username": "iamapikey", "Secret": "…"}}}
Read-modify-write happens under a cross-process lock, and the file is replaced
atomically. A file we cannot parse is never overwritten: the user may want it back.
"""

from __future__ import annotations

import os
import sys

from docker_credential_icr import fsutil, log, paths
from docker_credential_icr.i18n import _
from docker_credential_icr.protocol import HelperError

FORMAT_VERSION = 1


class StoreError(HelperError):
    """The credentials file is unusable; the message names it and the fix."""


class CredentialStore:
    def __init__(self, path: str | None = None) -> None:
        self.path = path or paths.credentials_file()

    def _check_permissions(self) -> None:
        if sys.platform == "win32":
            return
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            return
        if st.st_mode & 0o077:
            os.chmod(self.path, 0o600)
            log.warning(_("{path} was readable by other users (mode {mode}); its mode is now 600").format(
                path=self.path, mode=f"{st.st_mode & 0o777:o}"))

    def read(self) -> dict[str, dict[str, str]]:
        """Host → {"Username", "Secret"}; empty when the file does not exist yet."""
        raw = fsutil.read_bytes(self.path)
        if raw is None:
            return {}
        self._check_permissions()
        from docker_credential_icr.jsonfast import loads  # `import json` costs ~5 ms per start

        try:
            doc = loads(raw.decode("utf-8"))
            auths = doc["auths"]
            if doc.get("version") != FORMAT_VERSION or not isinstance(auths, dict):
                raise ValueError
            for entry in auths.values():
                if not (isinstance(entry, dict) and isinstance(entry.get("Username"), str)
                        and isinstance(entry.get("Secret"), str)):
                    raise ValueError
        except (ValueError, KeyError, TypeError, AttributeError, UnicodeDecodeError, RecursionError):
            raise StoreError(
                _("credentials file {path} is corrupt; move it aside and run "
                  "`docker login` again (it was left untouched)").format(path=self.path)
            ) from None
        for entry in auths.values():
            log.remember_secret(entry["Secret"])
        return auths

    def get(self, host: str) -> tuple[str, str] | None:
        entry = self.read().get(host)
        if entry is None:
            return None
        return entry["Username"], entry["Secret"]

    def _update(self, change) -> bool:
        directory = os.path.dirname(self.path)
        fsutil.ensure_private_dir(directory)
        with fsutil.FileLock(os.path.join(directory, "credentials.lock"), timeout=30):
            auths = self.read()
            if not change(auths):
                return False
            import json

            doc = {"version": FORMAT_VERSION, "auths": dict(sorted(auths.items()))}
            fsutil.remove_stale_temps(self.path)
            fsutil.atomic_write(self.path, (json.dumps(doc, indent=2) + "\n").encode("utf-8"))
            return True

    def put(self, host: str, username: str, secret: str) -> None:
        log.remember_secret(secret)

        def change(auths: dict) -> bool:
            auths[host] = {"Username": username, "Secret": secret}
            return True

        self._update(change)

    def replace_secret(self, host: str, username: str, old: str, new: str) -> bool:
        """Swap in a rotated secret, unless someone stored something else meanwhile."""
        log.remember_secret(new)

        def change(auths: dict) -> bool:
            entry = auths.get(host)
            if entry != {"Username": username, "Secret": old}:
                return False
            entry["Secret"] = new
            return True

        return self._update(change)

    def delete(self, host: str) -> bool:
        if fsutil.read_bytes(self.path) is None:
            return False
        return self._update(lambda auths: auths.pop(host, None) is not None)

    def usernames(self) -> dict[str, str]:
        return {host: entry["Username"] for host, entry in self.read().items()}
