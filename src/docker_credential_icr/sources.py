"""Where an identity for a host comes from, in DESIGN.md's order; the first wins.

1. stored for that host by `store` (`docker login … us.icr.io`)
2. IBMCLOUD_API_KEY, else IC_API_KEY (the key, or `@/path/to/file`)
3. (trusted profile — later)
4. the ibmcloud CLI's own login session: its IAMRefreshToken (read only)
Nothing here talks to the network: an identity is what we hold, not what we answer.
"""

from __future__ import annotations

import os

from docker_credential_icr import log
from docker_credential_icr.hosts import ENTITLED_HOST
from docker_credential_icr.protocol import HelperError
from docker_credential_icr.settings import Settings
from docker_credential_icr.store import CredentialStore

# What kind of secret an identity holds.
APIKEY = "apikey"  # an IAM API key
REFRESH = "refresh"  # an IAM refresh token
BEARER = "bearer"  # an IAM access token
OPAQUE = "opaque"  # handed back as stored: registry identity tokens, entitlement keys

# Stored usernames and the kind of secret each names (DESIGN.md, "Wire protocol").
USERNAME_KINDS = {
    "iamapikey": APIKEY,
    "iamrefresh": REFRESH,
    "iambearer": BEARER,
    "<token>": OPAQUE,
    "cp": OPAQUE,
}


class Identity:
    __slots__ = ("endpoint", "kind", "origin", "secret", "stored_host", "username")

    def __init__(self, kind: str, secret: str, origin: str, username: str | None = None,
                 stored_host: str | None = None, endpoint: str | None = None) -> None:
        self.kind = kind
        self.secret = secret
        self.origin = origin  # for people: "stored for us.icr.io", "IBMCLOUD_API_KEY", …
        self.username = username  # the stored username, when it came from `store`
        self.stored_host = stored_host  # set when it came from `store`
        self.endpoint = endpoint  # an IAM endpoint that belongs to this identity
        log.remember_secret(secret)


def check_store_username(host: str, username: str) -> None:
    """`store` accepts only usernames that name an ICR secret kind for this host."""
    if username == "cp":
        if host != ENTITLED_HOST:
            raise HelperError(f"store: username 'cp' is only for {ENTITLED_HOST} (entitlement key)")
        return
    if host == ENTITLED_HOST and username != "<token>":
        raise HelperError(f"store: {ENTITLED_HOST} takes username 'cp' with your entitlement key")
    if username not in USERNAME_KINDS:
        raise HelperError(
            f"store: unsupported username {username!r} for {host}: "
            "use iamapikey (API key), iamrefresh or iambearer"
        )


def read_secret_value(value: str, variable: str) -> str:
    """An env value is the secret itself, or `@path` naming a file that holds it."""
    if not value.startswith("@"):
        return value.strip()
    path = os.path.expanduser(value[1:])
    try:
        with open(path, encoding="utf-8") as fh:
            secret = fh.read().strip()
    except FileNotFoundError:
        raise HelperError(f"{variable} names file {path}, which does not exist") from None
    except (OSError, UnicodeDecodeError) as exc:
        reason = getattr(exc, "strerror", None) or "not UTF-8 text"
        raise HelperError(f"{variable} names file {path}, which cannot be read: {reason}") from None
    if not secret:
        raise HelperError(f"{variable} names file {path}, which is empty")
    return secret


def env_api_key() -> Identity | None:
    for variable in ("IBMCLOUD_API_KEY", "IC_API_KEY"):
        value = os.environ.get(variable, "").strip()
        if value:
            return Identity(APIKEY, read_secret_value(value, variable), variable)
    return None


def stored(host: str, store: CredentialStore) -> Identity | None:
    entry = store.get(host)
    if entry is None:
        return None
    username, secret = entry
    kind = USERNAME_KINDS.get(username)
    if kind is None:
        log.warning(f"ignoring stored credentials for {host}: unknown username {username!r}")
        return None
    return Identity(kind, secret, f"stored for {host}", username, stored_host=host)


def ibmcloud_config_file() -> str:
    """The ibmcloud CLI's config.json, found the way the CLI finds it."""
    config_home = os.environ.get("IBMCLOUD_CONFIG_HOME")
    if config_home:
        return os.path.join(config_home, "config.json")
    home = (os.environ.get("IBMCLOUD_HOME") or os.environ.get("BLUEMIX_HOME")
            or os.path.expanduser("~"))
    new_dir = os.path.join(home, ".ibmcloud")
    directory = new_dir if os.path.isdir(new_dir) else os.path.join(home, ".bluemix")
    return os.path.join(directory, "config.json")


def ibmcloud_session() -> Identity | None:
    """The CLI's refresh token. Read only: the CLI owns that file and we never write it."""
    path = ibmcloud_config_file()
    try:
        with open(path, "rb") as fh:
            raw = fh.read()
    except FileNotFoundError:
        return None
    except OSError as exc:
        log.warning(f"cannot read the ibmcloud CLI config {path}: {exc.strerror}")
        return None
    import json

    try:
        doc = json.loads(raw.decode("utf-8-sig"))
    except (ValueError, UnicodeDecodeError):
        log.warning(f"ignoring the ibmcloud CLI config {path}: not valid JSON")
        return None
    refresh = doc.get("IAMRefreshToken") if isinstance(doc, dict) else None
    if not isinstance(refresh, str) or not refresh.strip():
        log.debug(f"no ibmcloud login session in {path}")
        return None
    endpoint = os.environ.get("IBMCLOUD_IAM_API_ENDPOINT") or None
    if endpoint is None:
        cli_endpoint = doc.get("IAMEndpoint")
        if isinstance(cli_endpoint, str) and cli_endpoint.strip():
            endpoint = cli_endpoint.strip()
    return Identity(REFRESH, refresh.strip(), f"the ibmcloud CLI session ({path})",
                    endpoint=endpoint)


def find(host: str, settings: Settings, store: CredentialStore) -> Identity | None:
    identity = stored(host, store)
    if identity is not None or host == ENTITLED_HOST:
        # The entitled registry never takes an IAM identity: only its stored `cp` key.
        return identity
    return env_api_key() or ibmcloud_session()
