"""A fake IBM Cloud IAM token server speaking IAM's wire format, on 127.0.0.1.

`POST /identity/token` takes form-encoded grants and answers JSON exactly as
https://iam.cloud.ibm.com/identity/token does (field names, `BXNIM…` errors,
`refresh_token: "not_supported"` without client credentials), so the helper's
IAM client is exercised as it will be in production.

Extras for tests, never in real IAM:
- `GET|POST /_fake/validate` (`token=`): 200 with the claims of an access token
  this IAM issued, 401 otherwise; the ICR token service uses it across processes.
- requests carrying `X-Fake-IAM-Caller: icr-token-service` are the token
  service checking a secret on the registry's behalf: they are logged with
  `caller="token-service"`, skipped by `count()` by default, never consume a
  fault or the delay, and never invalidate a refresh token, so that faults and
  counts aimed at the helper are not disturbed by the registry side.

Error codes other than BXNIM0415E (unknown API key) and BXNIM0408E (bad refresh
token) are plausible stand-ins: clients should rely on `errorCode` being
present, not on the exact code.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import hmac
import json
import secrets
import signal
import socket
import struct
import sys
import threading
import time
import uuid
from collections import deque
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, urlsplit

from tests.fakes._util import LOOPBACK, FakeHandler, ServedHTTP, parse_basic_auth, write_atomically

GRANT_APIKEY = "urn:ibm:params:oauth:grant-type:apikey"
GRANT_REFRESH = "refresh_token"
GRANT_CR_TOKEN = "urn:ibm:params:oauth:grant-type:cr-token"
TOKEN_PATH = "/identity/token"
VALIDATE_PATH = "/_fake/validate"
CALLER_HEADER = "X-Fake-IAM-Caller"
TOKEN_SERVICE_CALLER = "icr-token-service"
# The client credentials the ibmcloud CLI sends; IAM issues real refresh tokens only to a client.
CLI_CLIENT = ("bx", "bx")

# A fault is one of: 500, 502, 503 (any int status), ("429", retry_after | None),
# "hang" / ("hang", seconds), "garbage", "truncated", "no_access_token",
# "slow" / ("slow", seconds).
Fault = int | str | tuple[Any, Any]


@dataclass
class RefreshRecord:
    """What IAM remembers about a refresh token it issued."""

    iam_id: str
    expires_at: float
    sub_type: str = "ServiceId"


@dataclass
class _Answer:
    """An HTTP answer, built first and delivered later so faults can mangle delivery."""

    status: int
    body: bytes
    content_type: str = "application/json"
    headers: dict[str, str] | None = None


class IAMError(Exception):
    """A refusal, answered as IAM's JSON error body."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.status, self.code, self.message = status, code, message


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _b64url_decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class FakeIAM:
    """Fake IAM token endpoint. `with FakeIAM() as iam:` starts it; `iam.url` is its base URL."""

    def __init__(
        self,
        *,
        lifetime: int = 3600,
        refresh_lifetime: int = 30 * 24 * 3600,
        rotate_refresh: bool = True,
        rotate_invalidates: bool = False,
        api_keys: dict[str, str] | None = None,
        account_id: str = "f4k3acc0un7",
        host: str = LOOPBACK,
        port: int = 0,
    ) -> None:
        self.lifetime = lifetime
        self.refresh_lifetime = refresh_lifetime
        self.rotate_refresh = rotate_refresh
        self.rotate_invalidates = rotate_invalidates
        self.account_id = account_id
        # key -> iam_id; tests may add to it directly or through add_api_key.
        self.api_keys: dict[str, str] = dict(api_keys or {})
        self.refresh_tokens: dict[str, RefreshRecord] = {}
        # cr token -> accepted profile identifiers (id, name and CRN of each linked profile).
        self.cr_tokens: dict[str, set[str]] = {}
        self.profiles: dict[str, dict[str, str]] = {}
        self.faults: deque[Fault] = deque()
        self.fault_internal = False
        self.delay = 0.0
        self.requests: list[dict[str, Any]] = []
        self.host = host
        self.port = port
        self._key = secrets.token_bytes(32)
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._down: str | None = None
        self._served: ServedHTTP | None = None

    # -- lifecycle ---------------------------------------------------------

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def token_url(self) -> str:
        return self.url + TOKEN_PATH

    def start(self) -> FakeIAM:
        self._stopping.clear()
        self._serve()
        return self

    def stop(self) -> None:
        # Wake handlers stuck in "hang"/"slow"/delay so nothing outlives the fake.
        self._stopping.set()
        self._unserve()

    def __enter__(self) -> FakeIAM:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def down(self, mode: str = "refuse") -> None:
        """Make IAM unreachable: "refuse" closes the port, "reset" accepts then resets."""
        if mode not in ("refuse", "reset"):
            raise ValueError(f"unknown down mode {mode!r}")
        self._down = mode
        if mode == "refuse":
            self._unserve()

    def up(self) -> None:
        """Undo `down()`; the URL stays the same."""
        was, self._down = self._down, None
        if was == "refuse":
            self._serve()

    def _serve(self) -> None:
        if self._served is not None:
            return
        self._served = ServedHTTP(_Handler, self.host, self.port, "iam", self, "fake-iam")
        self.port = self._served.port

    def _unserve(self) -> None:
        served, self._served = self._served, None
        if served is not None:
            served.close()

    # -- secrets -----------------------------------------------------------

    def add_api_key(self, key: str | None = None, *, iam_id: str | None = None) -> str:
        """Register an API key (random if None); returns the key."""
        key = key or "fakekey-" + secrets.token_urlsafe(24)
        with self._lock:
            self.api_keys[key] = iam_id or "iam-ServiceId-" + hashlib.sha256(key.encode()).hexdigest()[:32]
        return key

    def revoke_api_key(self, key: str) -> None:
        with self._lock:
            self.api_keys.pop(key, None)

    def add_refresh_token(
        self, token: str | None = None, *, iam_id: str = "IBMid-fakeuser", expires_in: float | None = None
    ) -> str:
        """Register a refresh token as if IAM had issued it (an `ibmcloud login` session)."""
        token = token or self._new_refresh_token()
        life = self.refresh_lifetime if expires_in is None else expires_in
        with self._lock:
            self.refresh_tokens[token] = RefreshRecord(iam_id, time.time() + life, "User")
        return token

    def expire_refresh_token(self, token: str) -> None:
        with self._lock:
            if token in self.refresh_tokens:
                self.refresh_tokens[token].expires_at = 0.0

    def revoke_refresh_token(self, token: str) -> None:
        with self._lock:
            self.refresh_tokens.pop(token, None)

    def add_cr_token(
        self,
        token: str,
        profile: str = "fake-profile",
        *,
        profile_id: str | None = None,
        profile_crn: str | None = None,
    ) -> dict[str, str]:
        """Link a compute-resource token to a trusted profile (by name); returns its id/name/crn."""
        pid = profile_id or "Profile-" + str(uuid.uuid5(uuid.NAMESPACE_URL, profile))
        crn = profile_crn or f"crn:v1:bluemix:public:iam-identity::a/{self.account_id}::profile:{pid}"
        ident = {"profile_id": pid, "profile_name": profile, "profile_crn": crn}
        with self._lock:
            self.profiles[pid] = ident
            self.cr_tokens.setdefault(token, set()).update(ident.values())
        return ident

    def issue_profile_token(
        self, profile_id: str, grant_type: str = "vpc-instance-identity"
    ) -> dict[str, Any]:
        """An IAM token answer for a trusted profile, as another IBM service (the VPC
        metadata service) hands out on IAM's behalf; its access token validates here."""
        return self._token_answer(profile_id, "Profile", grant_type, "default", False)

    def validate_api_key(self, key: str) -> str | None:
        """The iam_id of a valid API key, else None."""
        with self._lock:
            return self.api_keys.get(key)

    def validate_refresh_token(self, token: str) -> RefreshRecord | None:
        """The record of a valid, unexpired refresh token, else None."""
        with self._lock:
            rec = self.refresh_tokens.get(token)
        return rec if rec is not None and rec.expires_at > time.time() else None

    def validate_access_token(self, token: str) -> dict[str, Any] | None:
        """The claims of an unexpired access token signed by this instance, else None."""
        parts = token.split(".")
        if len(parts) != 3:
            return None
        expected = hmac.new(self._key, f"{parts[0]}.{parts[1]}".encode(), hashlib.sha256).digest()
        try:
            if not hmac.compare_digest(expected, _b64url_decode(parts[2])):
                return None
            claims = json.loads(_b64url_decode(parts[1]))
        except (ValueError, TypeError):
            return None
        if not isinstance(claims, dict) or claims.get("exp", 0) <= time.time():
            return None
        return claims

    # -- request log ---------------------------------------------------------

    def count(self, grant_type: str | None = None, *, include_internal: bool = False) -> int:
        """Token requests seen (optionally of one grant type); token-service checks excluded by default."""
        with self._lock:
            return sum(
                1
                for r in self.requests
                if (grant_type is None or r["grant_type"] == grant_type)
                and (include_internal or r["caller"] == "client")
            )

    def clear_log(self) -> None:
        with self._lock:
            self.requests.clear()

    # -- issuing -------------------------------------------------------------

    def _new_refresh_token(self) -> str:
        # Real refresh tokens are long opaque strings; the prefix makes leaks easy to grep for.
        return "fakerefresh-" + secrets.token_urlsafe(48)

    def _issue_refresh(self, iam_id: str, sub_type: str) -> tuple[str, int]:
        token = self._new_refresh_token()
        exp = int(time.time() + self.refresh_lifetime)
        with self._lock:
            self.refresh_tokens[token] = RefreshRecord(iam_id, exp, sub_type)
        return token, exp

    def _access_token(self, iam_id: str, sub_type: str, grant_type: str, client: str) -> tuple[str, int, int]:
        now = int(time.time())
        exp = now + int(self.lifetime)
        claims = {
            "iam_id": iam_id,
            "id": iam_id,
            "realmid": "iam",
            "jti": str(uuid.uuid4()),
            "identifier": iam_id,
            "sub": iam_id,
            "sub_type": sub_type,
            "account": {"valid": True, "bss": self.account_id},
            "iat": now,
            "exp": exp,
            "iss": self.url + "/identity",
            "grant_type": grant_type,
            "scope": "ibm openid",
            "client_id": client,
            "acr": 1,
            "amr": ["pwd"],
        }
        header = _b64url(json.dumps({"kid": "fake-iam", "alg": "HS256", "typ": "JWT"}).encode())
        payload = _b64url(json.dumps(claims, separators=(",", ":")).encode())
        sig = hmac.new(self._key, f"{header}.{payload}".encode(), hashlib.sha256).digest()
        return f"{header}.{payload}.{_b64url(sig)}", now, exp

    def _token_answer(
        self, iam_id: str, sub_type: str, grant_type: str, client: str | None, refresh: bool
    ) -> dict[str, Any]:
        access, now, exp = self._access_token(iam_id, sub_type, grant_type, client or "default")
        body: dict[str, Any] = {
            "access_token": access,
            "refresh_token": "not_supported",
            "ims_user_id": 123,
            "token_type": "Bearer",
            "expires_in": exp - now,
            "expiration": exp,
            "scope": "ibm openid",
        }
        if refresh:
            body["refresh_token"], body["refresh_token_expiration"] = self._issue_refresh(iam_id, sub_type)
        return body

    # -- grants --------------------------------------------------------------

    def _grant(
        self, params: dict[str, str], client: tuple[str, str] | None, internal: bool
    ) -> dict[str, Any]:
        grant = params.get("grant_type", "")
        if not grant:
            raise IAMError(400, "BXNIM0109E", "Property missing or empty. Property: grant_type")
        if client is not None and client != CLI_CLIENT:
            raise IAMError(400, "BXNIM0311E", "Client authentication failed.")
        if grant == GRANT_APIKEY:
            return self._grant_apikey(params, client)
        if grant == GRANT_REFRESH:
            return self._grant_refresh(params, client, internal)
        if grant == GRANT_CR_TOKEN:
            return self._grant_cr_token(params, client)
        raise IAMError(400, "BXNIM0109E", f"Property 'grant_type' has an unsupported value: {grant[:80]}")

    def _grant_apikey(self, params: dict[str, str], client: tuple[str, str] | None) -> dict[str, Any]:
        key = params.get("apikey", "")
        if not key:
            raise IAMError(400, "BXNIM0109E", "Property missing or empty. Property: apikey")
        iam_id = self.validate_api_key(key)
        if iam_id is None:
            raise IAMError(400, "BXNIM0415E", "Provided API key could not be found.")
        # Like real IAM: a usable refresh token only for an authenticated client.
        return self._token_answer(iam_id, "ServiceId", GRANT_APIKEY, client and client[0], client is not None)

    def _grant_refresh(
        self, params: dict[str, str], client: tuple[str, str] | None, internal: bool
    ) -> dict[str, Any]:
        if client is None:
            raise IAMError(400, "BXNIM0308E", "No authorization header found.")
        old = params.get("refresh_token", "")
        if not old:
            raise IAMError(400, "BXNIM0109E", "Property missing or empty. Property: refresh_token")
        rec = self.validate_refresh_token(old)
        if rec is None:
            raise IAMError(400, "BXNIM0408E", "Provided refresh token is expired or invalid.")
        body = self._token_answer(rec.iam_id, rec.sub_type, GRANT_REFRESH, client[0], self.rotate_refresh)
        if not self.rotate_refresh:
            body["refresh_token"] = old
        elif self.rotate_invalidates and not internal:
            self.revoke_refresh_token(old)
        return body

    def _grant_cr_token(self, params: dict[str, str], client: tuple[str, str] | None) -> dict[str, Any]:
        token = params.get("cr_token", "")
        if not token:
            raise IAMError(400, "BXNIM0109E", "Property missing or empty. Property: cr_token")
        wanted = [params[k] for k in ("profile_id", "profile_name", "profile_crn") if params.get(k)]
        if not wanted:
            raise IAMError(
                400,
                "BXNIM0109E",
                "Property missing or empty. Property: profile_id, profile_name or profile_crn",
            )
        with self._lock:
            linked = self.cr_tokens.get(token)
            profile = next(
                (p for p in self.profiles.values() if linked and all(w in p.values() for w in wanted)), None
            )
        if linked is None:
            raise IAMError(400, "BXNIM0407E", "Provided compute resource token is invalid.")
        if profile is None or profile["profile_id"] not in linked:
            raise IAMError(
                400, "BXNIM0539E", "The compute resource cannot use the requested trusted profile."
            )
        answer = self._token_answer(profile["profile_id"], "Profile", GRANT_CR_TOKEN, "default", False)
        return answer

    # -- HTTP ----------------------------------------------------------------

    def _error_body(self, err: IAMError, request_id: str) -> bytes:
        body = {
            "errorCode": err.code,
            "errorMessage": err.message,
            "context": {
                "requestId": request_id,
                "requestType": "incoming.OIDC_Token",
                "userAgent": "",
                "url": self.url,
                "instanceId": "fake-iam",
                "threadId": str(threading.get_ident()),
                "host": "fake-iam",
                "startTime": time.strftime("%d.%m.%Y %H:%M:%S:000 GMT", time.gmtime()),
                "endTime": time.strftime("%d.%m.%Y %H:%M:%S:000 GMT", time.gmtime()),
                "elapsedTime": "0",
                "locale": "en_US",
                "clusterName": "fake-iam",
            },
        }
        return json.dumps(body).encode()

    def handle(self, h: _Handler, method: str) -> None:
        """Answer one request (called by the handler thread)."""
        url = urlsplit(h.path)
        body = h.read_body()
        if self._down == "reset":
            # Reset after reading the request: the client then sees a reset, not a broken pipe.
            h.reset()
            return
        if url.path == VALIDATE_PATH:
            self._validate_endpoint(h, url.query, body)
            return
        if url.path != TOKEN_PATH:
            h.deliver(_Answer(404, b'{"errorCode":"BXNIM0001E","errorMessage":"Not found."}'))
            return
        request_id = str(uuid.uuid4())
        ctype = h.headers.get("Content-Type", "").split(";")[0].strip().lower()
        form = body.decode("utf-8", "replace") if ctype == "application/x-www-form-urlencoded" else ""
        params = {k: v[0] for k, v in parse_qs(form, keep_blank_values=True).items()}
        client = parse_basic_auth(h.headers.get("Authorization"))
        internal = h.headers.get(CALLER_HEADER) == TOKEN_SERVICE_CALLER
        entry: dict[str, Any] = {
            "time": time.time(),
            "path": url.path,
            "method": method,
            "grant_type": params.get("grant_type"),
            # Which trusted-profile field a cr-token grant named it by, and the value (not secret).
            "profile": {k: params[k] for k in ("profile_id", "profile_name", "profile_crn") if k in params},
            "has_basic": client is not None,
            "client_id": client[0] if client else None,
            "caller": "token-service" if internal else "client",
            "request_id": request_id,
            "fault": None,
            "status": None,
        }
        with self._lock:
            self.requests.append(entry)
        fault = None
        if not internal or self.fault_internal:
            try:
                fault = self.faults.popleft()
            except IndexError:
                fault = None
            if self.delay and self._stopping.wait(self.delay):
                return
        entry["fault"] = fault if isinstance(fault, (int, str)) else list(fault) if fault else None
        if method != "POST":
            answer = _Answer(405, b'{"errorCode":"BXNIM0001E","errorMessage":"Method not allowed."}')
        else:
            try:
                answer = _Answer(200, json.dumps(self._grant(params, client, internal)).encode())
            except IAMError as err:
                answer = _Answer(err.status, self._error_body(err, request_id))
        self._deliver_with_fault(h, answer, fault, entry)

    def _validate_endpoint(self, h: _Handler, query: str, body: bytes) -> None:
        params = parse_qs(query) or parse_qs(body.decode("utf-8", "replace"))
        claims = self.validate_access_token(params.get("token", [""])[0])
        if claims is None:
            h.deliver(_Answer(401, b'{"valid": false}'))
        else:
            h.deliver(_Answer(200, json.dumps({"valid": True, "claims": claims}).encode()))

    def _deliver_with_fault(
        self, h: _Handler, answer: _Answer, fault: Fault | None, entry: dict[str, Any]
    ) -> None:
        """Send `answer`, or what `fault` turns it into; logs the status (None: no answer)."""
        name, arg = (fault[0], fault[1]) if isinstance(fault, tuple) else (fault, None)
        if isinstance(name, str) and name.isdigit():
            name = int(name)
        kwargs: dict[str, Any] = {}
        if name == 429:
            headers = {"Retry-After": str(arg)} if arg is not None else None
            msg = b'{"errorCode":"BXNIM0437E","errorMessage":"Too many requests. Try again later."}'
            answer = _Answer(429, msg, headers=headers)
        elif name in (502, 503, 504):  # what a gateway in front of IAM sends: HTML, not JSON
            answer = _Answer(int(name), b"<html><body>Service Unavailable</body></html>", "text/html")
        elif isinstance(name, int):
            answer = _Answer(name, b'{"errorCode":"BXNIM0001E","errorMessage":"Internal server error."}')
        elif name == "garbage":
            answer = _Answer(200, b"<html>this is not JSON</html>", "text/html")
        elif name == "no_access_token":
            answer = _Answer(200, b'{"token_type":"Bearer","expires_in":3600}')
        elif name == "truncated":
            kwargs = {"truncate": True}
        elif name == "slow":
            kwargs = {"dribble": 5.0 if arg is None else float(arg), "stop": self._stopping}
        elif name == "hang":
            self._stopping.wait(3600 if arg is None else float(arg))
            return
        elif name is not None:
            raise ValueError(f"unknown fault {fault!r}")
        # Log before answering: a client that has its answer may read the log at once.
        entry["status"] = answer.status
        h.deliver(answer, **kwargs)


class _Handler(FakeHandler):
    """Thin HTTP layer; all logic is in FakeIAM.handle."""

    server_version = "fake-iam"
    owner_attr = "iam"

    def reset(self) -> None:
        # SO_LINGER 0 makes close() send RST: the client sees "connection reset".
        self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.close_connection = True

    def deliver(
        self,
        answer: _Answer,
        *,
        truncate: bool = False,
        dribble: float = 0.0,
        stop: threading.Event | None = None,
    ) -> None:
        self.send_response(answer.status)
        self.send_header("Content-Type", answer.content_type)
        self.send_header("Content-Length", str(len(answer.body)))
        for name, value in (answer.headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        if truncate:
            self.wfile.write(answer.body[: len(answer.body) // 2])
        elif dribble > 0:
            step = dribble / max(len(answer.body), 1)
            for i in range(len(answer.body)):
                self.wfile.write(answer.body[i : i + 1])
                self.wfile.flush()
                if stop is not None and stop.wait(step):
                    break
        else:
            self.wfile.write(answer.body)
        self.wfile.flush()


def main(argv: list[str] | None = None) -> int:
    """Run the fake IAM as a process (for demos and cross-process tests) until SIGTERM."""
    parser = argparse.ArgumentParser(
        prog="python -m tests.fakes.fake_iam", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--host", default=LOOPBACK)
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--api-key", action="append", default=[], help="a valid API key (repeatable)")
    parser.add_argument(
        "--refresh-token", action="append", default=[], help="a valid refresh token (repeatable)"
    )
    parser.add_argument("--lifetime", type=int, default=3600, help="access token lifetime, seconds")
    parser.add_argument("--ready-file", help="write the URL here once listening")
    args = parser.parse_args(argv)

    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    signal.signal(signal.SIGINT, lambda *_: done.set())
    with FakeIAM(lifetime=args.lifetime, host=args.host, port=args.port) as iam:
        for key in args.api_key:
            iam.add_api_key(key)
        for tok in args.refresh_token:
            iam.add_refresh_token(tok)
        print(iam.url, flush=True)
        if args.ready_file:
            write_atomically(args.ready_file, iam.url + "\n")
        while not done.wait(0.5):
            pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
