"""VPC virtual server instance identity: the metadata service vouches for this machine.

Two calls to the instance metadata service (http://169.254.169.254, or the secure
https://api.metadata.cloud.ibm.com):

1. PUT  /instance_identity/v1/token?version=…     header `Metadata-Flavor: ibm`,
        body {"expires_in": 300}                   → {"access_token": <instance token>}
2. POST /instance_identity/v1/iam_token?version=…  header `Authorization: Bearer <it>`,
        body {"trusted_profile": {"id"|"name"|"crn": …}} (optional: without it, the
        profile linked to the instance)        → an IAM token answer, as IAM's own

Only ever called when enabled (`vpc = true`, DOCKER_CREDENTIAL_ICR_VPC=1): on any other
machine the link-local address would only time out. `requests` is imported here, lazily.
"""

from __future__ import annotations

import time

from docker_credential_icr import iam, log, tokens
from docker_credential_icr.i18n import _
from docker_credential_icr.protocol import HelperError
from docker_credential_icr.settings import Settings
from docker_credential_icr.sources import Identity, profile_field

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing
if TYPE_CHECKING:
    from collections.abc import Callable

API_VERSION = "2022-03-01"
TOKEN_PATH = "/instance_identity/v1/token"
IAM_TOKEN_PATH = "/instance_identity/v1/iam_token"
LINK_LOCAL = "169.254.169.254"
# The instance identity token is used once, at once: a short life limits a leak.
INSTANCE_TOKEN_LIFETIME = 300
_CACHE_GRANT = "vpc-instance-identity"
_LOOPBACK = ("localhost", "127.0.0.1", "::1")
# The IAM form field names the profile; the metadata service wants the bare key.
_PROFILE_KEYS = {"profile_id": "id", "profile_name": "name", "profile_crn": "crn"}


class MetadataError(iam.IAMError):
    """The metadata service refused (4xx): definitive, like an IAM refusal."""


def base_url(url: str) -> str:
    """The metadata service base URL; plain http only for loopback and 169.254.169.254."""
    from urllib.parse import urlsplit

    base = url.strip().rstrip("/")
    parts = urlsplit(base)
    host = (parts.hostname or "").lower()
    if parts.scheme == "http" and (host in _LOOPBACK or host.startswith("127.") or host == LINK_LOCAL):
        pass
    elif parts.scheme != "https" or not host:
        raise HelperError(
            _("metadata service URL {url} must be https:// (plain http only for {link_local} "
              "or 127.0.0.1); check DOCKER_CREDENTIAL_ICR_METADATA_URL").format(
                url=repr(url), link_local=LINK_LOCAL)
        )
    if parts.username or parts.password or parts.query or parts.fragment or parts.path:
        raise HelperError(_("metadata service URL {url} must be a plain scheme://host[:port]").format(
            url=repr(base)))
    return base


def trusted_profile_body(profile: str | None) -> dict | None:
    if not profile:
        return None
    return {"trusted_profile": {_PROFILE_KEYS[profile_field(profile)]: profile}}


def _error_text(response) -> tuple[str | None, str]:
    """(code, message) from the VPC error shape {"errors": [{"code", "message"}], "trace"}."""
    try:
        body = response.json()
        first = body["errors"][0]
        return str(first.get("code") or "") or None, str(first.get("message") or "").strip()
    except (ValueError, KeyError, IndexError, TypeError, AttributeError):
        return None, ""


def _check(response, step: Callable[[], str], url: str) -> dict:
    """The answer's JSON body; else an error naming `step` (a function: translated only then)."""
    status = response.status_code
    if status in (200, 201):
        try:
            body = response.json()
        except ValueError:
            body = None
        if isinstance(body, dict):
            return body
        raise iam.IAMUnavailable(_("the metadata service ({url}) answered {step} with a body that "
                                   "is not a JSON object; try again later").format(url=url, step=step()))
    code, message = _error_text(response)
    detail = f"HTTP {status}" + (f", {code}" if code else "") + (f": {message}" if message else "")
    if 400 <= status < 500 and status != 429:
        hint = _("check the trusted profile's trust rule for this instance, and that the "
                 "metadata service is enabled on it")
        raise MetadataError(_("the metadata service refused {step} ({detail}): {hint}").format(
            step=step(), detail=detail, hint=hint), code)
    raise iam.IAMUnavailable(_("the metadata service ({url}) failed {step} ({detail}); try again "
                               "later").format(url=url, step=step(), detail=detail))


def _exchange(base: str, profile: str | None, deadline_at: float) -> dict:
    import requests

    session = requests.Session()
    # The metadata service is reachable only from the instance itself: never via a proxy.
    no_proxy = {"http": None, "https": None}

    def timeout() -> tuple[float, float]:
        remaining = max(deadline_at - time.monotonic(), 0.1)
        return min(3.0, remaining), min(10.0, remaining)

    headers = {"Accept": "application/json", "User-Agent": "docker-credential-icr"}
    try:
        url = f"{base}{TOKEN_PATH}?version={API_VERSION}"
        response = session.put(url, json={"expires_in": INSTANCE_TOKEN_LIFETIME},
                               headers={**headers, "Metadata-Flavor": "ibm"},
                               proxies=no_proxy, allow_redirects=False, timeout=timeout())
        instance_token = _check(response, lambda: _("the instance identity token request"),
                                base).get("access_token")
        if not isinstance(instance_token, str) or not instance_token:
            raise iam.IAMUnavailable(_("the metadata service ({url}) answered without an "
                                       "instance identity token; try again later").format(url=base))
        log.remember_secret(instance_token)
        url = f"{base}{IAM_TOKEN_PATH}?version={API_VERSION}"
        body = trusted_profile_body(profile)
        response = session.post(url, json=body,
                                headers={**headers, "Authorization": f"Bearer {instance_token}"},
                                proxies=no_proxy, allow_redirects=False, timeout=timeout())
        def what() -> str:
            if profile:
                return _("the IAM token request (trusted profile {profile})").format(profile=profile)
            return _("the IAM token request")

        return _check(response, what, base)
    finally:
        session.close()


def _call_with_deadline(base: str, profile: str | None, deadline_at: float) -> dict:
    """Both calls in a worker thread, so nothing can hold `get` past its deadline."""
    try:
        body = iam.run_before_deadline(lambda: _exchange(base, profile, deadline_at),
                                       deadline_at, "vpc-metadata")
    except iam.DeadlinePassed:
        message = _("the metadata service ({url}) did not answer in time; is this a "
                    "VPC instance with the metadata service enabled?")
        raise iam.IAMUnavailable(message.format(url=base)) from None
    except HelperError:
        raise
    except Exception as error:
        raise iam.IAMUnavailable(_("cannot reach the metadata service ({url}): {error}; "
                                   "is this a VPC instance with the metadata service enabled?").format(
            url=base, error=type(error).__name__)) from None
    return body  # type: ignore[return-value]


def cache_key(identity: Identity, settings: Settings) -> str:
    base = base_url(identity.endpoint or settings.metadata_url)
    return tokens.cache_key(_CACHE_GRANT, identity.profile or "", base)


def obtain(identity: Identity, settings: Settings, deadline_at: float) -> tokens.Token:
    """The instance's (or its trusted profile's) IAM access token, cached like the others."""
    base = base_url(identity.endpoint or settings.metadata_url)
    profile = identity.profile
    key = cache_key(identity, settings)

    def fetch(_previous: tokens.Token | None) -> iam.TokenResponse:
        log.debug(f"VPC: instance identity at {base}, trusted profile {profile or '(the linked one)'}")
        body = _call_with_deadline(base, profile, deadline_at)
        return iam.parse_token_answer(body, base + IAM_TOKEN_PATH)

    return tokens.obtain(tokens.TokenCache(), key, fetch, deadline_at)
