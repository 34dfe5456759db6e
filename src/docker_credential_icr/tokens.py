"""IAM tokens on demand: a shared on-disk cache and the refresh window.

A cached token is reused until it enters the last 20% of its lifetime (as IBM's SDKs
do); then one process — whoever takes the cache entry's lock first — asks IAM, and
the others waiting on the lock read its answer. Reading a fresh entry takes no lock
and imports nothing from the network stack: that is the warm-cache hot path.
"""

from __future__ import annotations

import os
import time

from docker_credential_icr import fsutil, log, paths
from docker_credential_icr.i18n import _

REFRESH_FRACTION = 0.2  # refresh once 80% of the lifetime has passed
EXPIRY_MARGIN = 30.0  # seconds: a token this close to expiry is no longer handed out


class Token:
    __slots__ = ("access_token", "expiration", "expires_in", "refresh_token")

    def __init__(self, access_token: str, refresh_token: str | None, expiration: float,
                 expires_in: float) -> None:
        self.access_token = access_token
        self.refresh_token = refresh_token
        self.expiration = expiration
        self.expires_in = expires_in

    def refresh_due(self, now: float) -> bool:
        return now >= self.expiration - REFRESH_FRACTION * self.expires_in

    def usable(self, now: float) -> bool:
        return now < self.expiration - EXPIRY_MARGIN


def cache_key(grant: str, identity_secret: str, endpoint: str) -> str:
    """Hash of (grant, identity, endpoint): the file name says nothing about the secret."""
    material = "\0".join((grant, identity_secret, endpoint)).encode("utf-8")
    return _sha256(material).hexdigest()[:40]


def _sha256(data: bytes):
    # `import hashlib` loads OpenSSL's libcrypto (~2 ms on every warm-cache `get`);
    # CPython's built-in SHA-256 gives the same digest without it.
    try:
        from _sha2 import sha256  # CPython >= 3.12
    except ImportError:
        try:
            from _sha256 import sha256  # CPython 3.11
        except ImportError:
            from hashlib import sha256
    return sha256(data)


class TokenCache:
    def __init__(self, directory: str | None = None) -> None:
        self.directory = directory or os.path.join(paths.cache_dir(), "tokens")

    def path(self, key: str) -> str:
        return os.path.join(self.directory, key + ".json")

    def read(self, key: str) -> Token | None:
        """The cached token, or None when missing or unreadable (a corrupt entry is rebuilt)."""
        try:
            raw = fsutil.read_bytes(self.path(key))
        except OSError as exc:
            log.warning(_("token cache unreadable ({reason}); asking IAM").format(reason=exc.strerror))
            return None
        if raw is None:
            return None
        from docker_credential_icr.jsonfast import loads  # `import json` costs ~5 ms per start

        try:
            doc = loads(raw.decode("utf-8"))
            token = Token(doc["access_token"], doc.get("refresh_token"),
                          float(doc["expiration"]), float(doc["expires_in"]))
            if not isinstance(token.access_token, str) or not (
                    token.refresh_token is None or isinstance(token.refresh_token, str)):
                raise TypeError
        except (ValueError, KeyError, TypeError, UnicodeDecodeError, RecursionError):
            log.warning(_("ignoring corrupt token cache entry {path}").format(path=self.path(key)))
            return None
        log.remember_secret(token.access_token)
        log.remember_secret(token.refresh_token)
        return token

    def write(self, key: str, token: Token) -> None:
        import json

        doc = {"access_token": token.access_token, "refresh_token": token.refresh_token,
               "expiration": token.expiration, "expires_in": token.expires_in}
        try:
            fsutil.ensure_private_dir(self.directory)
            fsutil.atomic_write(self.path(key), json.dumps(doc).encode("utf-8"))
        except OSError as exc:
            # Not caching costs an IAM round trip next time; failing the pull costs more.
            log.warning(_("cannot write token cache in {directory} ({reason}); "
                          "continuing without it").format(directory=self.directory, reason=exc.strerror))

    def lock(self, key: str, timeout: float) -> fsutil.FileLock | None:
        try:
            fsutil.ensure_private_dir(self.directory)
        except OSError as exc:
            log.warning(_("cannot create token cache {directory} ({reason})").format(
                directory=self.directory, reason=exc.strerror))
            return None
        return fsutil.FileLock(self.path(key) + ".lock", timeout=timeout)


def obtain(cache: TokenCache, key: str, fetch, deadline_at: float,
           also_key=None) -> Token:
    """A token from the cache when fresh; else from `fetch(previous)` under the entry's lock.

    `fetch` gets the previous token (or None) so that a rotated refresh token is used.
    `also_key(token)` names a second entry to fill: a stored refresh token that IAM
    rotated is saved, and the next `get` looks the cache up by the new one.
    """
    now = time.time()
    cached = cache.read(key)
    if cached is not None and not cached.refresh_due(now):
        log.debug("token cache hit")
        return cached

    from docker_credential_icr.iam import IAMUnavailable

    lock = cache.lock(key, timeout=max(deadline_at - time.monotonic(), 0.1))
    try:
        if lock is not None:
            try:
                lock.__enter__()
            except TimeoutError:
                if cached is not None and cached.usable(time.time()):
                    return cached
                raise IAMUnavailable(_("another {program} process held the token "
                                       "cache lock past the deadline; try again").format(
                    program="docker-credential-icr")) from None
            except OSError as exc:
                # A read-only or full cache directory: answer without the lock (and the cache).
                log.warning(_("cannot lock the token cache ({reason}); continuing without it").format(
                    reason=exc.strerror))
                lock = None
        # Someone else may have refreshed while we waited for the lock.
        cached = cache.read(key) or cached
        now = time.time()
        if cached is not None and not cached.refresh_due(now):
            log.debug("token cache filled by another process")
            return cached
        try:
            token = fetch(cached)
        except IAMUnavailable as exc:
            if cached is not None and cached.usable(time.time()):
                log.warning(_("{error} — using the cached token, valid until {when}").format(
                    error=exc, when=time.strftime("%H:%M:%S", time.localtime(cached.expiration))))
                return cached
            raise
        cache.write(key, token)
        extra = also_key(token) if also_key is not None else None
        if extra and extra != key:
            cache.write(extra, token)
        return token
    finally:
        if lock is not None:
            lock.__exit__(None, None, None)


def jwt_expiry(token: str) -> float | None:
    """The `exp` claim of a JWT-shaped IAM access token, or None if it has none."""
    import base64
    import json

    parts = token.split(".")
    if len(parts) != 3:
        return None
    try:
        payload = json.loads(base64.urlsafe_b64decode(parts[1] + "=" * (-len(parts[1]) % 4)))
        exp = payload.get("exp")
    except (ValueError, AttributeError):
        return None
    return float(exp) if isinstance(exp, int | float) and not isinstance(exp, bool) else None
