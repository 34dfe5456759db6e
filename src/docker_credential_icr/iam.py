"""IAM token grants: the only module that imports `requests` (and only when called).

POST <endpoint>/identity/token, form-encoded, Accept: application/json — the wire
format of https://iam.cloud.ibm.com. Client `bx:bx` (HTTP Basic) is what the ibmcloud
CLI uses; with it IAM also issues a refresh token, without it it answers
`"refresh_token": "not_supported"`.
"""

from __future__ import annotations

import time

from docker_credential_icr import log
from docker_credential_icr.protocol import HelperError

GRANT_APIKEY = "urn:ibm:params:oauth:grant-type:apikey"
GRANT_REFRESH = "refresh_token"
GRANT_CR_TOKEN = "urn:ibm:params:oauth:grant-type:cr-token"
CLI_CLIENT = ("bx", "bx")
TOKEN_PATH = "/identity/token"
_LOOPBACK = ("localhost", "127.0.0.1", "::1", "[::1]")
# Form fields that carry no secret: redacting them would only hide which profile failed.
_PUBLIC_FIELDS = frozenset({"grant_type", "profile_id", "profile_name", "profile_crn"})

# What to do about the IAM errors users actually meet.
ADVICE = {
    "BXNIM0415E": "the API key is not valid (deleted, disabled or mistyped): create one with "
                  "`ibmcloud iam api-key-create` and set IBMCLOUD_API_KEY or `docker login -u iamapikey`",
    "BXNIM0408E": "the refresh token has expired: run `ibmcloud login` again, or use an API key "
                  "(`docker login -u iamapikey`)",
    "BXNIM0407E": "the refresh token is not valid: run `ibmcloud login` again, or use an API key",
    "BXNIM0439E": "the ibmcloud session is inactive: run `ibmcloud login` again",
    "BXNIM0436E": "the trusted profile cannot be used with this compute resource: check its trust rules",
}
# IAM's codes for the cr-token grant overlap the refresh-token ones above; the advice must
# be about the compute resource, never "run ibmcloud login".
CR_TOKEN_ADVICE = ("check that the trusted profile exists (name, ID or CRN), that its trust rule "
                   "admits this compute resource (cluster, namespace, service account), and that "
                   "the compute-resource token is current")


class IAMError(HelperError):
    """IAM answered and refused: a definitive answer, carrying IAM's errorCode."""

    def __init__(self, message: str, error_code: str | None = None) -> None:
        super().__init__(message)
        self.error_code = error_code


class IAMUnavailable(HelperError):
    """IAM could not be reached or did not answer usefully in time: transient."""


class TokenResponse:
    __slots__ = ("access_token", "expiration", "expires_in", "refresh_token")

    def __init__(self, access_token: str, refresh_token: str | None, expiration: float,
                 expires_in: float) -> None:
        self.access_token = access_token
        self.refresh_token = refresh_token
        self.expiration = expiration
        self.expires_in = expires_in


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
            f"IAM endpoint {endpoint!r} must be an https:// URL (plain http only for "
            "127.0.0.1/localhost); check IBMCLOUD_IAM_API_ENDPOINT"
        )
    if parts.username or parts.password or parts.query or parts.fragment:
        raise HelperError(f"IAM endpoint {base!r} must be a plain URL (no user, query or fragment)")
    return base + TOKEN_PATH


class _OutOfTime(Exception):
    pass


def _retry_policy(deadline_at: float):
    from urllib3.util.retry import Retry

    class DeadlineRetry(Retry):
        """urllib3's Retry whose sleeps never carry a request past our deadline."""

        def sleep(self, response=None) -> None:
            delay = None
            if response is not None and self.respect_retry_after_header:
                delay = self.get_retry_after(response)
            if delay is None:
                delay = self.get_backoff_time()
            # One second of headroom so the retried attempt can still answer.
            if time.monotonic() + delay + 1 > deadline_at:
                raise _OutOfTime(f"IAM asked us to wait {delay:.0f} s")
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


def _call_with_deadline(url: str, form: dict[str, str], basic: tuple[str, str] | None,
                        deadline_at: float):
    """Run the POST in a worker thread so that nothing (DNS, a stuck TLS handshake, a
    dribbling body) can hold `get` past its deadline: Docker would rather hear an error."""
    import threading  # only when IAM is really asked: a warm-cache `get` imports iam for its constants

    outcome: dict[str, object] = {}

    def work() -> None:
        try:
            outcome["response"] = _post(url, form, basic, deadline_at)
        except BaseException as exc:  # handed to the caller below
            outcome["error"] = exc

    worker = threading.Thread(target=work, name="iam", daemon=True)
    worker.start()
    worker.join(max(deadline_at - time.monotonic(), 0))
    if worker.is_alive():
        raise IAMUnavailable(f"IAM ({url}) did not answer in time; try again, or raise "
                             "DOCKER_CREDENTIAL_ICR_DEADLINE")
    if "error" in outcome:
        exc = outcome["error"]
        if isinstance(exc, _OutOfTime):
            raise IAMUnavailable(f"IAM ({url}) is busy ({exc}, past our deadline); try again later")
        name = type(exc).__name__
        if "SSL" in name or "SSL" in str(exc)[:200]:
            raise IAMUnavailable(f"TLS verification failed talking to IAM ({url}); set "
                                 "REQUESTS_CA_BUNDLE if you use a private CA")
        raise IAMUnavailable(f"cannot reach IAM ({url}): {name}")
    return outcome["response"]


def _json_body(response) -> dict | None:
    try:
        body = response.json()
    except ValueError:
        return None
    return body if isinstance(body, dict) else None


def request_token(endpoint: str, form: dict[str, str], *, basic: tuple[str, str] | None,
                  deadline_at: float, what: str) -> TokenResponse:
    """One IAM grant, retried and bounded by `deadline_at` (time.monotonic())."""
    url = token_url(endpoint)
    for field, value in form.items():
        if field not in _PUBLIC_FIELDS:
            log.remember_secret(value)
    log.debug(f"IAM: {form.get('grant_type')} grant for {what} at {url}")
    response = _call_with_deadline(url, form, basic, deadline_at)
    body = _json_body(response)
    status = response.status_code
    if status == 200:
        return _parse_success(body, url)
    if body and isinstance(body.get("errorCode"), str):
        code = body["errorCode"]
        message = str(body.get("errorMessage") or "").strip()
        if form.get("grant_type") == GRANT_CR_TOKEN:
            advice = CR_TOKEN_ADVICE
        else:
            advice = ADVICE.get(code, "check the credential and the IAM endpoint")
        if status in (400, 401, 403):
            raise IAMError(f"IAM refused {what} ({code}: {message}): {advice}", code)
        raise IAMUnavailable(f"IAM error for {what} (HTTP {status}, {code}: {message}); try again later")
    if status == 429 or status >= 500:
        raise IAMUnavailable(f"IAM ({url}) is unavailable (HTTP {status}); try again later")
    raise IAMError(f"IAM refused {what} (HTTP {status}); check the credential and the IAM endpoint")


def parse_token_answer(body: dict | None, url: str) -> TokenResponse:
    """An IAM-shaped token answer from elsewhere (the VPC metadata service issues them too)."""
    return _parse_success(body, url)


def _parse_success(body: dict | None, url: str) -> TokenResponse:
    if body is None:
        raise IAMUnavailable(f"IAM ({url}) answered with a body that is not JSON; try again later")
    access = body.get("access_token")
    if not isinstance(access, str) or not access:
        raise IAMUnavailable(f"IAM ({url}) answered without an access_token; try again later")
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

