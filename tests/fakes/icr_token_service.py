"""A stand-in for ICR's `/oauth/token` token service, in front of the distribution registry.

It accepts the ICR usernames that name the kind of secret in the password and
checks the secret against the fake IAM over HTTP (so it works when the IAM runs
in another process):
- `iamapikey`  → IAM API-key grant with the password;
- `iamrefresh` → IAM refresh grant (client `bx:bx`) with the password;
- `iambearer`  → the fake IAM's `/_fake/validate` must accept the access token;
- `cp`         → the password must be one of `entitlement_keys` (cp.icr.io);
- anything else → 401. No Authorization at all → a token with empty `access`
  (skopeo and Docker retry anonymously after a not-found).

Tokens are RS256 JWTs signed with a self-signed certificate generated at start;
`cert_path` is the PEM to give the registry as `rootcertbundle`.

With `issue_refresh_tokens=True`, a login request (`offline_token=true` and a
`client_id`, what `docker login` sends) also gets a `refresh_token`; Docker then
stores username `<token>` and later POSTs `grant_type=refresh_token`.

`log` (and the JSON-lines `log_file`) records what the registry saw — the
username kind, scopes, outcome — and never a secret.
"""

from __future__ import annotations

import argparse
import base64
import datetime as dt
import json
import os
import re
import secrets
import signal
import sys
import tempfile
import threading
import time
import urllib.parse
import uuid
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.x509.oid import NameOID

from tests.fakes._util import (
    LOOPBACK,
    ServedHTTP,
    basic_auth,
    http_request,
    parse_basic_auth,
    write_atomically,
)
from tests.fakes.fake_iam import (
    CALLER_HEADER,
    CLI_CLIENT,
    GRANT_APIKEY,
    GRANT_REFRESH,
    TOKEN_PATH,
    TOKEN_SERVICE_CALLER,
    VALIDATE_PATH,
)

REALM_PATH = "/oauth/token"
KINDS = ("iamapikey", "iamrefresh", "iambearer", "cp")
ALLOWED_ACTIONS = ("pull", "push", "delete", "*")

# policy(kind, subject, resource_type, name, requested_actions) -> granted actions
Policy = Callable[[str, str, str, str, list[str]], list[str]]


class Denied(Exception):
    """The secret was refused; `reason` is safe to log (an IAM errorCode, never the secret)."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status, self.reason = status, reason


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _signing_identity(common_name: str) -> tuple[rsa.RSAPrivateKey, x509.Certificate]:
    """A fresh RSA key and self-signed cert: the registry trusts it as its root bundle."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .sign(key, hashes.SHA256())
    )
    return key, cert


def parse_scope(scope: str) -> tuple[str, str, list[str]] | None:
    """`repository:ns/repo:pull,push` → ("repository", "ns/repo", ["pull", "push"]).

    The name may itself contain ':' (host:port), so type is before the first
    colon and actions after the last; a "(class)" suffix on the type is dropped.
    """
    rtype, sep, rest = scope.partition(":")
    name, sep2, actions = rest.rpartition(":")
    if not sep or not sep2 or not rtype or not name:
        return None
    return re.sub(r"\(.*\)$", "", rtype), name, [a for a in actions.split(",") if a]


def default_policy(kind: str, subject: str, rtype: str, name: str, actions: list[str]) -> list[str]:
    """Grant every known action asked for: the tests are about authentication, not IAM policies."""
    return [a for a in actions if a in ALLOWED_ACTIONS]


class IcrTokenService:
    """ICR-like token service. `with IcrTokenService(iam.url) as svc:`; `svc.realm` is the auth realm."""

    def __init__(
        self,
        iam_url: str,
        *,
        service: str = "registry",
        issuer: str = "fake-icr-token-service",
        token_lifetime: int = 300,
        issue_refresh_tokens: bool = False,
        entitlement_keys: set[str] | None = None,
        log_file: str | os.PathLike[str] | None = None,
        workdir: str | os.PathLike[str] | None = None,
        policy: Policy | None = None,
        iam_timeout: float = 10.0,
        host: str = LOOPBACK,
        port: int = 0,
    ) -> None:
        self.iam_url = iam_url.rstrip("/")
        self.service = service
        self.issuer = issuer
        self.token_lifetime = token_lifetime
        self.issue_refresh_tokens = issue_refresh_tokens
        self.entitlement_keys: set[str] = set(entitlement_keys or ())
        self.log_file = Path(log_file) if log_file else None
        self.policy: Policy = policy or default_policy
        self.iam_timeout = iam_timeout
        self.host = host
        self.port = port
        self.log: list[dict[str, Any]] = []
        self._given_workdir = Path(workdir) if workdir else None
        self.workdir: Path | None = None
        self.cert_path: Path | None = None
        # Refresh tokens issued to `docker login`: token -> (kind, subject).
        self._refresh_tokens: dict[str, tuple[str, str]] = {}
        self._lock = threading.Lock()
        self._key: rsa.RSAPrivateKey | None = None
        self._x5c = ""
        self._served: ServedHTTP | None = None

    # -- lifecycle ---------------------------------------------------------

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def realm(self) -> str:
        return self.url + REALM_PATH

    def start(self) -> IcrTokenService:
        self.workdir = self._given_workdir or Path(tempfile.mkdtemp(prefix="icr-token-svc-"))
        self.workdir.mkdir(parents=True, exist_ok=True)
        self._key, cert = _signing_identity(self.issuer)
        self._x5c = base64.b64encode(cert.public_bytes(serialization.Encoding.DER)).decode("ascii")
        self.cert_path = self.workdir / "token-signer.pem"
        self.cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        self._served = ServedHTTP(_Handler, self.host, self.port, "svc", self, "icr-token-svc")
        self.port = self._served.port
        return self

    def stop(self) -> None:
        served, self._served = self._served, None
        if served is not None:
            served.close()
        # Remove the temp dir only if we made it; a given workdir belongs to the caller.
        if self.workdir is not None and self._given_workdir is None:
            for child in self.workdir.iterdir():
                child.unlink()
            self.workdir.rmdir()
            self.workdir = None

    def __enter__(self) -> IcrTokenService:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- log -----------------------------------------------------------------

    def entries(self, *, kind: str | None = None, outcome: str | None = None) -> list[dict[str, Any]]:
        """Log entries, optionally filtered by username kind and/or outcome."""
        with self._lock:
            return [
                e
                for e in self.log
                if (kind is None or e["kind"] == kind) and (outcome is None or e["outcome"] == outcome)
            ]

    def count(self, *, kind: str | None = None, outcome: str | None = None) -> int:
        return len(self.entries(kind=kind, outcome=outcome))

    def kinds_seen(self) -> list[str]:
        """Distinct username kinds in arrival order, e.g. ["anonymous", "iamapikey"]."""
        seen: list[str] = []
        for e in self.entries():
            if e["kind"] not in seen:
                seen.append(e["kind"])
        return seen

    def clear_log(self) -> None:
        with self._lock:
            self.log.clear()

    def _record(self, entry: dict[str, Any]) -> None:
        entry["time"] = time.time()
        with self._lock:
            self.log.append(entry)
            if self.log_file is not None:
                fd = os.open(self.log_file, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
                with os.fdopen(fd, "a") as fh:
                    fh.write(json.dumps(entry) + "\n")

    # -- checking secrets ----------------------------------------------------

    def _iam_post(
        self, path: str, form: dict[str, str], headers: dict[str, str]
    ) -> tuple[int, dict[str, Any]]:
        data = urllib.parse.urlencode(form).encode()
        hdrs = {
            "Content-Type": "application/x-www-form-urlencoded",
            "Accept": "application/json",
            CALLER_HEADER: TOKEN_SERVICE_CALLER,
            **headers,
        }
        try:
            status, _, body = http_request(
                self.iam_url + path, data=data, headers=hdrs, timeout=self.iam_timeout
            )
        except OSError as err:
            raise Denied(503, f"IAM unreachable: {type(err).__name__}") from None
        try:
            parsed = json.loads(body)
        except ValueError:
            parsed = {}
        return status, parsed if isinstance(parsed, dict) else {}

    def _iam_token(self, form: dict[str, str], headers: dict[str, str]) -> str:
        """The subject of the access token IAM answers, or Denied with IAM's errorCode."""
        status, body = self._iam_post(TOKEN_PATH, form, headers)
        if status == 200 and isinstance(body.get("access_token"), str):
            return _jwt_subject(body["access_token"])
        if 400 <= status < 500:
            raise Denied(401, f"IAM refused: {body.get('errorCode', status)}")
        raise Denied(503, f"IAM error: HTTP {status}")

    def authenticate(self, kind: str, secret: str) -> str:
        """The subject behind `secret` of the given username kind, or raise Denied."""
        if not secret:
            raise Denied(401, "empty password")
        if kind == "iamapikey":
            return self._iam_token({"grant_type": GRANT_APIKEY, "apikey": secret}, {})
        if kind == "iamrefresh":
            auth = {"Authorization": basic_auth(*CLI_CLIENT)}
            return self._iam_token({"grant_type": GRANT_REFRESH, "refresh_token": secret}, auth)
        if kind == "iambearer":
            status, body = self._iam_post(VALIDATE_PATH, {"token": secret}, {})
            if status == 200 and isinstance(body.get("claims"), dict):
                return str(body["claims"].get("sub", ""))
            raise Denied(401, "IAM access token invalid or expired")
        if kind == "cp":
            if secret in self.entitlement_keys:
                return "entitlement"
            raise Denied(401, "unknown entitlement key")
        raise Denied(401, "unsupported username")

    # -- issuing -------------------------------------------------------------

    def _access(self, kind: str, subject: str, scopes: list[str]) -> list[dict[str, Any]]:
        access: dict[tuple[str, str], list[str]] = {}
        for scope in scopes:
            parsed = parse_scope(scope)
            if parsed is None:
                continue
            rtype, name, actions = parsed
            for action in self.policy(kind, subject, rtype, name, actions):
                granted = access.setdefault((rtype, name), [])
                if action not in granted:
                    granted.append(action)
        return [{"type": t, "name": n, "actions": a} for (t, n), a in access.items() if a]

    def issue(self, subject: str, access: list[dict[str, Any]]) -> tuple[str, int]:
        """An RS256 registry token the distribution registry accepts; returns (token, iat)."""
        assert self._key is not None, "token service not started"
        now = int(time.time())
        header = {"alg": "RS256", "typ": "JWT", "x5c": [self._x5c]}
        claims = {
            "iss": self.issuer,
            "sub": subject,
            "aud": self.service,
            "exp": now + self.token_lifetime,
            "nbf": now - 1,
            "iat": now,
            "jti": str(uuid.uuid4()),
            "access": access,
        }
        signing_input = f"{_b64url(json.dumps(header).encode())}.{_b64url(json.dumps(claims).encode())}"
        sig = self._key.sign(signing_input.encode(), padding.PKCS1v15(), hashes.SHA256())
        return f"{signing_input}.{_b64url(sig)}", now

    def _answer(self, subject: str, access: list[dict[str, Any]], refresh: str | None) -> dict[str, Any]:
        token, iat = self.issue(subject, access)
        body: dict[str, Any] = {
            "token": token,
            "access_token": token,
            "expires_in": self.token_lifetime,
            "issued_at": dt.datetime.fromtimestamp(iat, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        }
        if refresh:
            body["refresh_token"] = refresh
        return body

    # -- requests ------------------------------------------------------------

    def handle(
        self, method: str, query: str, form: dict[str, list[str]], authorization: str | None
    ) -> tuple[int, dict[str, Any]]:
        """Answer one token request: (status, JSON body)."""
        params = urllib.parse.parse_qs(query, keep_blank_values=True)
        for k, v in form.items():
            params.setdefault(k, []).extend(v)
        first = {k: v[0] for k, v in params.items()}
        # `scope` may repeat, and a POST packs several scopes space-separated.
        scopes = [s for value in params.get("scope", []) for s in value.split()]
        entry: dict[str, Any] = {
            "method": method,
            "kind": "anonymous",
            "scopes": scopes,
            "client_id": first.get("client_id"),
            "offline": first.get("offline_token") == "true",
            "grant_type": first.get("grant_type"),
            "refresh_token_issued": False,
            "granted": [],
        }
        service = first.get("service")
        if service is not None and service != self.service:
            return self._finish(entry, 400, "error", f"unknown service {service[:64]!r}")
        try:
            if method == "POST" and first.get("grant_type") == "refresh_token":
                entry["kind"] = "<token>"
                kind, subject = self._from_refresh_token(first.get("refresh_token", ""))
                entry["origin_kind"] = kind
            elif method == "POST" and first.get("grant_type") == "password":
                kind = first.get("username", "")
                entry["kind"] = kind if kind in KINDS else "unknown"
                subject = self.authenticate(kind, first.get("password", ""))
            elif method == "POST" and first.get("grant_type") is not None:
                return self._finish(entry, 400, "error", "unsupported grant_type")
            else:
                creds = parse_basic_auth(authorization)
                if authorization is None:
                    return self._finish(entry, 200, "anonymous", None, self._answer("anonymous", [], None))
                if creds is None:
                    raise Denied(401, "malformed Authorization header")
                kind = creds[0]
                entry["kind"] = kind if kind in KINDS else "unknown"
                subject = self.authenticate(kind, creds[1])
        except Denied as err:
            return self._finish(entry, err.status, "denied", err.reason)
        access = self._access(kind, subject, scopes)
        entry["granted"] = access
        refresh = None
        if (
            self.issue_refresh_tokens
            and entry["offline"]
            and entry["client_id"]
            and entry["kind"] != "<token>"
        ):
            refresh = "fakeregrefresh-" + secrets.token_urlsafe(32)
            with self._lock:
                self._refresh_tokens[refresh] = (kind, subject)
            entry["refresh_token_issued"] = True
        return self._finish(entry, 200, "granted", None, self._answer(subject, access, refresh))

    def _from_refresh_token(self, token: str) -> tuple[str, str]:
        with self._lock:
            found = self._refresh_tokens.get(token)
        if found is None:
            raise Denied(401, "unknown refresh token")
        return found

    def _finish(
        self,
        entry: dict[str, Any],
        status: int,
        outcome: str,
        reason: str | None,
        body: dict[str, Any] | None = None,
    ) -> tuple[int, dict[str, Any]]:
        entry.update(status=status, outcome=outcome, reason=reason)
        self._record(entry)
        if body is None:
            code = "UNAUTHORIZED" if status == 401 else "DENIED" if status == 403 else "UNAVAILABLE"
            body = {"errors": [{"code": code, "message": reason or "denied", "detail": None}]}
        return status, body


def _jwt_subject(token: str) -> str:
    """The `sub` of a JWT, read without verifying (IAM just handed it to us)."""
    try:
        payload = token.split(".")[1]
        claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
        return str(claims.get("sub", ""))
    except (IndexError, ValueError):
        return ""


class _Handler(BaseHTTPRequestHandler):
    server_version = "fake-icr-token-service"
    sys_version = ""
    protocol_version = "HTTP/1.0"

    def do_GET(self) -> None:
        self._run("GET")

    def do_POST(self) -> None:
        self._run("POST")

    def _run(self, method: str) -> None:
        svc: IcrTokenService = self.server.svc  # type: ignore[attr-defined]
        url = urllib.parse.urlsplit(self.path)
        raw = self._read_body()
        if url.path != REALM_PATH:
            self._send(404, {"errors": [{"code": "NOT_FOUND", "message": "not found"}]})
            return
        form = (
            urllib.parse.parse_qs(raw.decode("utf-8", "replace"), keep_blank_values=True)
            if method == "POST"
            else {}
        )
        status, body = svc.handle(method, url.query, form, self.headers.get("Authorization"))
        headers = {"WWW-Authenticate": f'Basic realm="{svc.service}"'} if status == 401 else {}
        self._send(status, body, headers)

    def _read_body(self, limit: int = 1 << 20) -> bytes:
        """The request body, sized by Content-Length or sent chunked.

        containers/image (skopeo, podman, buildah) POSTs its OAuth2 refresh-token
        grant with `Transfer-Encoding: chunked` and no Content-Length.
        """
        if self.headers.get("Transfer-Encoding", "").strip().lower() == "chunked":
            data = b""
            while len(data) <= limit:
                size = int(self.rfile.readline(64).split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline(1024).strip():  # trailers, up to the blank line
                        pass
                    break
                data += self.rfile.read(min(size, limit + 1 - len(data)))
                self.rfile.readline(64)  # the CRLF after each chunk
            return data[:limit]
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(min(length, limit)) if length > 0 else b""

    def _send(self, status: int, body: dict[str, Any], headers: dict[str, str] | None = None) -> None:
        data = json.dumps(body).encode()
        try:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            for k, v in (headers or {}).items():
                self.send_header(k, v)
            self.end_headers()
            self.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):
            pass

    def log_message(self, format: str, *args: Any) -> None:
        # A POST refresh grant or a query string could carry a secret: print nothing.
        return


def main(argv: list[str] | None = None) -> int:
    """Run the token service as a process until SIGTERM; the ready file gets JSON with url/realm/cert."""
    parser = argparse.ArgumentParser(prog="python -m tests.fakes.icr_token_service")
    parser.add_argument("--iam-url", required=True)
    parser.add_argument("--host", default=LOOPBACK)
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--service", default="registry")
    parser.add_argument("--issuer", default="fake-icr-token-service")
    parser.add_argument("--workdir", help="where the signing cert PEM goes (default: a temp dir)")
    parser.add_argument("--log-file", help="append one JSON line per token request")
    parser.add_argument("--issue-refresh-tokens", action="store_true")
    parser.add_argument("--ready-file")
    args = parser.parse_args(argv)

    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    signal.signal(signal.SIGINT, lambda *_: done.set())
    svc = IcrTokenService(
        args.iam_url,
        service=args.service,
        issuer=args.issuer,
        workdir=args.workdir,
        log_file=args.log_file,
        issue_refresh_tokens=args.issue_refresh_tokens,
        host=args.host,
        port=args.port,
    )
    with svc:
        info = {
            "url": svc.url,
            "realm": svc.realm,
            "service": svc.service,
            "issuer": svc.issuer,
            "cert_path": str(svc.cert_path),
        }
        print(json.dumps(info), flush=True)
        if args.ready_file:
            write_atomically(args.ready_file, json.dumps(info) + "\n")
        while not done.wait(0.5):
            pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
