"""Where an identity for a host comes from, in DESIGN.md's order; the first wins.

1. stored for that host by `store` (`docker login … us.icr.io`)
2. IBMCLOUD_API_KEY, else IC_API_KEY (the key, or `@/path/to/file`)
3. a trusted profile from a compute-resource token: IBMCLOUD_CR_TOKEN (the token, or
   `@/path`) with IBMCLOUD_CR_PROFILE; without IBMCLOUD_CR_TOKEN, the token files that
   IBM Cloud Kubernetes Service and Code Engine mount (CR_TOKEN_PATHS)
3b. VPC instance identity through the metadata service, only when enabled (`vpc`)
4. the ibmcloud CLI's own login session: its IAMRefreshToken (read only)
Nothing here talks to the network: an identity is what we hold, not what we answer.
"""

from __future__ import annotations

import os

from docker_credential_icr import log
from docker_credential_icr.hosts import ENTITLED_HOST
from docker_credential_icr.i18n import _
from docker_credential_icr.protocol import HelperError
from docker_credential_icr.settings import Settings
from docker_credential_icr.store import CredentialStore

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing on the hot path
if TYPE_CHECKING:
    from collections.abc import Callable

# What kind of secret an identity holds.
APIKEY = "apikey"  # an IAM API key
REFRESH = "refresh"  # an IAM refresh token
BEARER = "bearer"  # an IAM access token
OPAQUE = "opaque"  # handed back as stored: registry identity tokens, entitlement keys
CR_TOKEN = "cr-token"  # a compute-resource token, exchanged at IAM for a trusted profile
VPC = "vpc"  # a VPC instance identity: the metadata service issues the IAM token

# Where IKS (projected service-account tokens) and Code Engine mount compute-resource
# tokens, in the order IBM's SDKs (ContainerAuthenticator) try them.
CR_TOKEN_PATHS = (
    "/var/run/secrets/tokens/vault-token",
    "/var/run/secrets/tokens/sa-token",
    "/var/run/secrets/codeengine.cloud.ibm.com/compute-resource-token/token",
)
# Replaces CR_TOKEN_PATHS (os.pathsep-separated; empty: search nowhere) — for tests and
# for clusters that mount the token elsewhere.
CR_TOKEN_PATHS_VAR = "DOCKER_CREDENTIAL_ICR_CR_TOKEN_PATHS"

# Stored usernames and the kind of secret each names (DESIGN.md, "Wire protocol").
USERNAME_KINDS = {
    "iamapikey": APIKEY,
    "iamrefresh": REFRESH,
    "iambearer": BEARER,
    "<token>": OPAQUE,
    "cp": OPAQUE,
}


class Identity:
    __slots__ = ("endpoint", "kind", "label", "origin", "profile", "secret", "stored_host",
                 "token_path", "username")

    def __init__(self, kind: str, secret: str, origin: str, username: str | None = None,
                 stored_host: str | None = None, endpoint: str | None = None,
                 profile: str | None = None, token_path: str | None = None,
                 label: Callable[[], str] | None = None) -> None:
        self.kind = kind
        self.secret = secret  # empty for a token still in its file (token_path)
        self.origin = origin  # English, for debug logs: "stored for us.icr.io", "IBMCLOUD_API_KEY", …
        # The origin for people, in their language; a function, so that nothing is translated
        # unless a message shows it (None: `origin` is a variable name, the same in every language).
        self.label = label
        self.username = username  # the stored username, when it came from `store`
        self.stored_host = stored_host  # set when it came from `store`
        self.endpoint = endpoint  # an IAM endpoint that belongs to this identity
        self.profile = profile  # the trusted profile (name, ID or CRN) to assume
        # A compute-resource token file, read at each exchange: Kubernetes rotates it.
        self.token_path = token_path
        log.remember_secret(secret)

    def describe(self) -> str:
        """Where the identity comes from, for a message: translated, unlike `origin`."""
        return self.label() if self.label is not None else self.origin


def check_store_username(host: str, username: str) -> None:
    """`store` accepts only usernames that name an ICR secret kind for this host."""
    if username == "cp":
        if host != ENTITLED_HOST:
            raise HelperError(_("store: username 'cp' is only for {host} (entitlement key)").format(
                host=ENTITLED_HOST))
        return
    if host == ENTITLED_HOST and username != "<token>":
        raise HelperError(_("store: {host} takes username 'cp' with your entitlement key").format(
            host=ENTITLED_HOST))
    if username not in USERNAME_KINDS:
        raise HelperError(
            _("store: unsupported username {username} for {host}: "
              "use iamapikey (API key), iamrefresh or iambearer").format(username=repr(username), host=host)
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
        raise HelperError(_("{variable} names file {path}, which does not exist").format(
            variable=variable, path=path)) from None
    except (OSError, UnicodeDecodeError) as exc:
        reason = getattr(exc, "strerror", None) or _("not UTF-8 text")
        raise HelperError(_("{variable} names file {path}, which cannot be read: {reason}").format(
            variable=variable, path=path, reason=reason)) from None
    if not secret:
        raise HelperError(_("{variable} names file {path}, which is empty").format(
            variable=variable, path=path))
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
        log.warning(_("ignoring stored credentials for {host}: unknown username {username}").format(
            host=host, username=repr(username)))
        return None
    return Identity(kind, secret, f"stored for {host}", username, stored_host=host,
                    label=lambda: _("stored for {host}").format(host=host))


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
        log.warning(_("cannot read the ibmcloud CLI config {path}: {reason}").format(
            path=path, reason=exc.strerror))
        return None
    import json

    try:
        doc = json.loads(raw.decode("utf-8-sig"))
    except (ValueError, UnicodeDecodeError):
        log.warning(_("ignoring the ibmcloud CLI config {path}: not valid JSON").format(path=path))
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
                    endpoint=endpoint,
                    label=lambda: _("the ibmcloud CLI session ({path})").format(path=path))


def profile_field(profile: str) -> str:
    """The IAM form field that names this trusted profile: CRN, ID or name."""
    if profile.startswith("crn:"):
        return "profile_crn"
    if profile.startswith("Profile-") or _uuid_like(profile):
        return "profile_id"
    return "profile_name"


def _uuid_like(text: str) -> bool:
    parts = text.split("-")
    return [len(p) for p in parts] == [8, 4, 4, 4, 12] and all(
        c in "0123456789abcdefABCDEF" for p in parts for c in p)


def cr_token_paths() -> list[str]:
    override = os.environ.get(CR_TOKEN_PATHS_VAR)
    if override is None:
        return list(CR_TOKEN_PATHS)
    return [p for p in override.split(os.pathsep) if p]


def read_cr_token(path: str) -> str:
    """The token in a compute-resource token file, read now (Kubernetes rotates it)."""
    try:
        with open(path, encoding="utf-8") as fh:
            token = fh.read().strip()
    except FileNotFoundError:
        raise HelperError(_("the compute-resource token file {path} is gone (was the pod's "
                            "projected token volume removed?)").format(path=path)) from None
    except (OSError, UnicodeDecodeError) as exc:
        reason = getattr(exc, "strerror", None) or _("not UTF-8 text")
        raise HelperError(_("cannot read the compute-resource token file {path}: {reason}").format(
            path=path, reason=reason)) from None
    if not token:
        raise HelperError(_("the compute-resource token file {path} is empty").format(path=path))
    log.remember_secret(token)
    return token


def trusted_profile() -> Identity | None:
    """IBMCLOUD_CR_TOKEN (or a mounted token file) with IBMCLOUD_CR_PROFILE.

    Cheap when there is none: one env lookup and an os.path.exists per default path.
    The token file is not read here but at each exchange, so a rotated token is used.
    """
    profile = os.environ.get("IBMCLOUD_CR_PROFILE", "").strip() or None
    value = os.environ.get("IBMCLOUD_CR_TOKEN", "").strip()
    if value:
        if profile is None:
            raise HelperError(
                _("IBMCLOUD_CR_TOKEN is set but IBMCLOUD_CR_PROFILE is not: a compute-resource "
                  "token is exchanged for a trusted profile, so name it (profile name, ID or CRN)")
            )
        if value.startswith("@"):
            path = os.path.expanduser(value[1:])
            if not os.path.exists(path):
                raise HelperError(_("{variable} names file {path}, which does not exist").format(
                    variable="IBMCLOUD_CR_TOKEN", path=path))
            return Identity(CR_TOKEN, "", f"IBMCLOUD_CR_TOKEN ({path})", profile=profile,
                            token_path=path)
        return Identity(CR_TOKEN, value, "IBMCLOUD_CR_TOKEN", profile=profile)
    if profile is None:
        # A mounted token file alone is no identity (any pod may mount an sa-token for
        # something else): not an error here; find() mentions it if nothing answers.
        return None
    path = mounted_cr_token()
    if path is None:
        return None
    return Identity(CR_TOKEN, "", f"the compute-resource token {path}", profile=profile,
                    token_path=path,
                    label=lambda: _("the compute-resource token {path}").format(path=path))


def mounted_cr_token() -> str | None:
    """The first compute-resource token file that exists (IKS, Code Engine), if any."""
    for path in cr_token_paths():
        if os.path.exists(path):
            return path
    return None


def vpc_instance(settings: Settings) -> Identity | None:
    """The VPC instance identity, when enabled: the metadata service will vouch for us."""
    if not settings.vpc:
        return None
    profile = os.environ.get("IBMCLOUD_CR_PROFILE", "").strip() or None
    url = settings.metadata_url
    return Identity(VPC, "", f"the VPC instance identity ({url})", endpoint=url, profile=profile,
                    label=lambda: _("the VPC instance identity ({url})").format(url=url))


def find(host: str, settings: Settings, store: CredentialStore) -> Identity | None:
    identity = stored(host, store)
    if identity is not None or host == ENTITLED_HOST:
        # The entitled registry never takes an IAM identity: only its stored `cp` key.
        return identity
    # Each source runs only when the earlier ones found nothing: the hot path (an
    # API key) never even looks for token files.
    identity = env_api_key() or trusted_profile() or vpc_instance(settings) or ibmcloud_session()
    if identity is None:
        path = mounted_cr_token()
        if path is not None:
            log.warning(_("found the compute-resource token {path} but IBMCLOUD_CR_PROFILE is "
                          "not set: set it to the trusted profile to assume (name, ID or CRN)").format(
                path=path))
    return identity
