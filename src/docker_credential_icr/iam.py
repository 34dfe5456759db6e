"""IAM token grants: the only module that imports `requests` (and only when called).

POST <endpoint>/identity/token, form-encoded, Accept: application/json — the wire
format of https://iam.cloud.ibm.com. Client `bx:bx` (HTTP Basic) is what the ibmcloud
CLI uses; with it IAM also issues a refresh token, without it it answers
`"refresh_token": "not_supported"`.
"""

from __future__ import annotations

import time

from docker_credential_icr import log
from docker_credential_icr.i18n import _
from docker_credential_icr.protocol import HelperError
from docker_credential_icr.tokens import Token

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing
if TYPE_CHECKING:
    from collections.abc import Callable

GRANT_APIKEY = "urn:ibm:params:oauth:grant-type:apikey"
GRANT_REFRESH = "refresh_token"
GRANT_CR_TOKEN = "urn:ibm:params:oauth:grant-type:cr-token"
CLI_CLIENT = ("bx", "bx")
TOKEN_PATH = "/identity/token"
_LOOPBACK = ("localhost", "127.0.0.1", "::1", "[::1]")
# Form fields that carry no secret: redacting them would only hide which profile failed.
_PUBLIC_FIELDS = frozenset({"grant_type", "profile_id", "profile_name", "profile_crn"})


def advice(code: str, grant_type: str | None = None) -> str:
    """What to do about the IAM errors users actually meet (translated: called only on error)."""
    if grant_type == GRANT_CR_TOKEN:
        # IAM's codes for the cr-token grant overlap the refresh-token ones below; the advice
        # must be about the compute resource, never "run ibmcloud login".
        return _("check that the trusted profile exists (name, ID or CRN), that its trust rule "
                 "admits this compute resource (cluster, namespace, service account), and that "
                 "the compute-resource token is current")
    if code == "BXNIM0415E":
        return _("the API key is not valid (deleted, disabled or mistyped): create one with "
                 "`ibmcloud iam api-key-create` and set IBMCLOUD_API_KEY or `docker login -u iamapikey`")
    if code == "BXNIM0408E":
        return _("the refresh token has expired: run `ibmcloud login` again, or use an API key "
                 "(`docker login -u iamapikey`)")
    if code == "BXNIM0407E":
        return _("the refresh token is not valid: run `ibmcloud login` again, or use an API key")
    if code == "BXNIM0439E":
        return _("the ibmcloud session is inactive: run `ibmcloud login` again")
    if code == "BXNIM0436E":
        return _("the trusted profile cannot be used with this compute resource: check its trust rules")
    return _("check the credential and the IAM endpoint")


class IAMError(HelperError):
    """IAM answered and refused: a definitive answer, carrying IAM's errorCode."""

    def __init__(self, message: str, error_code: str | None = None) -> None:
        super().__init__(message)
        self.error_code = error_code


class IAMUnavailable(HelperError):
    """IAM could not be reached or did not answer usefully in time: transient."""


# IAM's answer is exactly what the cache keeps: one class for both.
TokenResponse = Token


def token_url(endpoint: str) -> str:
    """`https://iam.cloud.ibm.com[/identity/token][/]` → the token URL; http only for loopback."""
    from urllib.parse import urlsplit

    base = endpoint.strip().rstrip("/")
    if base.endswith(TOKEN_PATH):
        base = base[: -len(TOKEN_PATH)]
    parts = urlsplit(base)
    host = (parts.hostname or "").lower()
    if parts.scheme == "http" and (host in _LOOPBACK or host.startswith("127.")):
        pass
    elif parts.scheme != "https" or not host:
        raise HelperError(
            _("IAM endpoint {endpoint} must be an https:// URL (plain http only for "
              "127.0.0.1/localhost); check IBMCLOUD_IAM_API_ENDPOINT").format(endpoint=repr(endpoint))
        )
    if parts.username or parts.password or parts.query or parts.fragment:
        raise HelperError(_("IAM endpoint {endpoint} must be a plain URL (no user, query or "
                            "fragment)").format(endpoint=repr(base)))
    return base + TOKEN_PATH


class _OutOfTime(Exception):
    """Retrying would pass the deadline: IAM asked us to wait, or it is not reachable."""

    def __init__(self, reason: str, unreachable: bool = False) -> None:
        super().__init__(reason)
        self.unreachable = unreachable


def _retry_policy(deadline_at: float):
    from urllib3.util.retry import Retry

    class DeadlineRetry(Retry):
        """urllib3's Retry whose sleeps never carry a request past our deadline."""

        def sleep(self, response=None) -> None:
            delay = None
            if response is not None and self.respect_retry_after_header:
                delay = self.get_retry_after(response)
            asked = delay is not None
            if delay is None:
                delay = self.get_backoff_time()
            # One second of headroom so the retried attempt can still answer.
            if time.monotonic() + delay + 1 > deadline_at:
                if asked:
                    raise _OutOfTime(_("IAM asked us to wait {seconds} s").format(seconds=f"{delay:.0f}"))
                last = self.history[-1] if self.history else None
                raise _OutOfTime(type(last.error).__name__ if last is not None and last.error is not None
                                 else f"HTTP {last.status}" if last is not None else "no answer",
                                 unreachable=True)
            if delay > 0:
                time.sleep(delay)

    return DeadlineRetry(
        total=4, connect=3, read=1, status=4, other=0,
        allowed_methods=frozenset({"POST"}),
        status_forcelist=(429, 500, 502, 503, 504),
        backoff_factor=0.3, backoff_max=4, raise_on_status=False,
        respect_retry_after_header=True,
    )


def _post(url: str, form: dict[str, str], basic: tuple[str, str] | None, deadline_at: float):
    import requests
    from requests.adapters import HTTPAdapter

    session = requests.Session()
    session.mount("https://", HTTPAdapter(max_retries=_retry_policy(deadline_at)))
    session.mount("http://", HTTPAdapter(max_retries=_retry_policy(deadline_at)))
    remaining = max(deadline_at - time.monotonic(), 0.1)
    try:
        return session.post(
            url, data=form, auth=basic, allow_redirects=False,
            headers={"Accept": "application/json", "User-Agent": "docker-credential-icr"},
            timeout=(min(5.0, remaining), min(15.0, remaining)),
        )
    finally:
        session.close()


class DeadlinePassed(Exception):
    """The work was still running when the deadline came."""


def run_before_deadline(work: Callable[[], object], deadline_at: float, name: str) -> object:
    """`work()` in a daemon thread, so that nothing (DNS, a stuck TLS handshake, a dribbling
    body) can hold `get` past its deadline: Docker would rather hear an error. The work's
    own exception is re-raised here; DeadlinePassed when it is still running."""
    import threading  # only when the network is really used: a warm-cache `get` never is

    outcome: dict[str, object] = {}

    def target() -> None:
        try:
            outcome["value"] = work()
        except BaseException as exc:  # handed to the caller below
            outcome["error"] = exc

    worker = threading.Thread(target=target, name=name, daemon=True)
    worker.start()
    worker.join(max(deadline_at - time.monotonic(), 0))
    if worker.is_alive():
        raise DeadlinePassed
    if "error" in outcome:
        raise outcome["error"]  # type: ignore[misc]
    return outcome["value"]


def _call_with_deadline(url: str, form: dict[str, str], basic: tuple[str, str] | None,
                        deadline_at: float):
    try:
        return run_before_deadline(lambda: _post(url, form, basic, deadline_at), deadline_at, "iam")
    except DeadlinePassed:
        raise IAMUnavailable(_("IAM ({url}) did not answer in time; try again, or raise "
                               "DOCKER_CREDENTIAL_ICR_DEADLINE").format(url=url)) from None
    except _OutOfTime as exc:
        if exc.unreachable:
            raise IAMUnavailable(_("cannot reach IAM ({url}): {error}").format(url=url, error=exc)) from None
        raise IAMUnavailable(_("IAM ({url}) is busy ({reason}, past our deadline); try again "
                               "later").format(url=url, reason=exc)) from None
    except Exception as exc:
        name = type(exc).__name__
        if "SSL" in name or "SSL" in str(exc)[:200]:
            raise IAMUnavailable(_("TLS verification failed talking to IAM ({url}); set "
                                   "REQUESTS_CA_BUNDLE if you use a private CA").format(url=url)) from None
        raise IAMUnavailable(_("cannot reach IAM ({url}): {error}").format(url=url, error=name)) from None


def _json_body(response) -> dict | None:
    try:
        body = response.json()
    except ValueError:
        return None
    return body if isinstance(body, dict) else None


def request_token(endpoint: str, form: dict[str, str], *, basic: tuple[str, str] | None,
                  deadline_at: float, what: str | Callable[[], str]) -> TokenResponse:
    """One IAM grant, retried and bounded by `deadline_at` (time.monotonic()).

    `what` names the credential for people ("the API key from IBMCLOUD_API_KEY"): a string,
    or a function giving it in their language, called only when there is an error to show.
    """
    url = token_url(endpoint)
    for field, value in form.items():
        if field not in _PUBLIC_FIELDS:
            log.remember_secret(value)
    # Debug lines stay English; the fields that carry no secret say whose grant this is.
    public = ", ".join(f"{k}={v}" for k, v in form.items() if k in _PUBLIC_FIELDS and k != "grant_type")
    log.debug(f"IAM: {form.get('grant_type')} grant{f' ({public})' if public else ''} at {url}")
    response = _call_with_deadline(url, form, basic, deadline_at)
    body = _json_body(response)
    status = response.status_code
    if status == 200:
        return _parse_success(body, url)
    if body and isinstance(body.get("errorCode"), str):
        code = body["errorCode"]
        # IAM's own text, shortened: an error line is read by a person, not stored.
        message = " ".join(str(body.get("errorMessage") or "").split())[:300]
        described = what() if callable(what) else what
        if status in (400, 401, 403):
            raise IAMError(_("IAM refused {what} ({code}: {message}): {advice}").format(
                what=described, code=code, message=message,
                advice=advice(code, form.get("grant_type"))), code)
        raise IAMUnavailable(_("IAM error for {what} (HTTP {status}, {code}: {message}); try again "
                               "later").format(what=described, status=status, code=code, message=message))
    if status == 429 or status >= 500:
        raise IAMUnavailable(_("IAM ({url}) is unavailable (HTTP {status}); try again later").format(
            url=url, status=status))
    raise IAMError(_("IAM refused {what} (HTTP {status}); check the credential and the IAM "
                     "endpoint").format(what=what() if callable(what) else what, status=status))


def parse_token_answer(body: dict | None, url: str) -> TokenResponse:
    """An IAM-shaped token answer from elsewhere (the VPC metadata service issues them too)."""
    return _parse_success(body, url)


def _parse_success(body: dict | None, url: str) -> TokenResponse:
    if body is None:
        raise IAMUnavailable(_("IAM ({url}) answered with a body that is not JSON; try again later").format(
            url=url))
    access = body.get("access_token")
    if not isinstance(access, str) or not access:
        raise IAMUnavailable(_("IAM ({url}) answered without an {field}; try again later").format(
            url=url, field="access_token"))
    refresh = body.get("refresh_token")
    if not isinstance(refresh, str) or not refresh or refresh == "not_supported":
        refresh = None
    now = time.time()
    try:
        expires_in = float(body.get("expires_in") or 0)
        expiration = float(body.get("expiration") or 0)
    except (TypeError, ValueError):
        expires_in = expiration = 0.0
    if expiration <= 0 and expires_in > 0:
        expiration = now + expires_in
    if expires_in <= 0 and expiration > now:
        expires_in = expiration - now
    if expiration <= now:
        # No usable lifetime: treat as short-lived so we never cache it for long.
        expires_in, expiration = 60.0, now + 60.0
    log.remember_secret(access)
    log.remember_secret(refresh)
    return TokenResponse(access, refresh, expiration, expires_in)

