"""A fake IBM Cloud VPC instance metadata service (instance identity), on 127.0.0.1.

Speaks the two calls the helper makes, in the real service's wire format:

- `PUT /instance_identity/v1/token?version=YYYY-MM-DD`, header `Metadata-Flavor: ibm`,
  JSON body `{"expires_in": 300}` → `{"access_token", "created_at", "expires_at", "expires_in"}`
- `POST /instance_identity/v1/iam_token?version=…`, header `Authorization: Bearer <instance
  token>`, optional JSON body `{"trusted_profile": {"id"|"name"|"crn": …}}` → an IAM token
  answer (minted by the FakeIAM given, so its access token validates there)

Errors use the VPC shape `{"errors": [{"code", "message", "more_info"}], "trace"}`.
Every request is logged in `requests` (method, path, version, Metadata-Flavor, the bearer
token, the JSON body) so tests can check each step.
"""

from __future__ import annotations

import json
import secrets
import threading
import time
import uuid
from collections import deque
from typing import Any
from urllib.parse import parse_qs, urlsplit

from tests.fakes._util import LOOPBACK, FakeHandler, ServedHTTP
from tests.fakes.fake_iam import FakeIAM

TOKEN_PATH = "/instance_identity/v1/token"
IAM_TOKEN_PATH = "/instance_identity/v1/iam_token"
# The bare keys of a trusted_profile body, and the profile field each names.
_PROFILE_KEYS = {"id": "profile_id", "name": "profile_name", "crn": "profile_crn"}


class _Refusal(Exception):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.status, self.code, self.message = status, code, message


class FakeMetadata:
    """`with FakeMetadata(iam) as md:`; link profiles with `md.link_profile(ident, default=…)`."""

    def __init__(self, iam: FakeIAM, *, host: str = LOOPBACK, port: int = 0) -> None:
        self.iam = iam
        self.host = host
        self.port = port
        self.requests: list[dict[str, Any]] = []
        # Statuses (int) or "hang" to answer the next requests with, one per request.
        self.faults: deque[int | str] = deque()
        self.instance_tokens: dict[str, float] = {}  # token -> expiry
        self.linked: list[dict[str, str]] = []  # profiles (id/name/crn) this instance may assume
        self.default_profile: dict[str, str] | None = None
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._served: ServedHTTP | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self) -> FakeMetadata:
        self._served = ServedHTTP(_Handler, self.host, self.port, "metadata", self, "fake-metadata")
        self.port = self._served.port
        return self

    def stop(self) -> None:
        self._stopping.set()
        served, self._served = self._served, None
        if served is not None:
            served.close()

    def __enter__(self) -> FakeMetadata:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def link_profile(self, ident: dict[str, str], *, default: bool = False) -> None:
        """Let this instance assume `ident` (as returned by FakeIAM.add_cr_token)."""
        with self._lock:
            self.linked.append(ident)
            if default:
                self.default_profile = ident

    def calls(self, path: str | None = None) -> list[dict[str, Any]]:
        with self._lock:
            return [r for r in self.requests if path is None or r["path"] == path]

    # -- handling ------------------------------------------------------------

    def handle(self, h: _Handler, method: str) -> None:
        url = urlsplit(h.path)
        raw = h.read_body()
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = "<not json>"
        auth = h.headers.get("Authorization") or ""
        entry: dict[str, Any] = {
            "time": time.time(),
            "method": method,
            "path": url.path,
            "version": parse_qs(url.query).get("version", [None])[0],
            "metadata_flavor": h.headers.get("Metadata-Flavor"),
            "bearer": auth[7:] if auth[:7].lower() == "bearer " else None,
            "content_type": h.headers.get("Content-Type"),
            "body": body,
            "status": None,
        }
        with self._lock:
            self.requests.append(entry)
            fault = self.faults.popleft() if self.faults else None
        if fault == "hang":
            self._stopping.wait(3600)
            return
        try:
            if isinstance(fault, int):
                raise _Refusal(fault, "internal_error", "Injected fault.")
            status, answer = self._route(method, url.path, entry)
        except _Refusal as err:
            status = err.status
            answer = {
                "errors": [
                    {"code": err.code, "message": err.message, "more_info": "https://cloud.ibm.com/docs/vpc"}
                ],
                "trace": str(uuid.uuid4()),
            }
        entry["status"] = status
        h.deliver(status, json.dumps(answer).encode())

    def _route(self, method: str, path: str, entry: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        if path not in (TOKEN_PATH, IAM_TOKEN_PATH):
            raise _Refusal(404, "not_found", "The requested resource was not found.")
        if not entry["version"]:
            raise _Refusal(400, "missing_version", "The version query parameter is required.")
        if path == TOKEN_PATH:
            if method != "PUT":
                raise _Refusal(405, "method_not_allowed", "Use PUT.")
            if entry["metadata_flavor"] != "ibm":
                raise _Refusal(400, "missing_metadata_flavor", "The Metadata-Flavor header must be 'ibm'.")
            return self._instance_token(entry["body"])
        if method != "POST":
            raise _Refusal(405, "method_not_allowed", "Use POST.")
        return self._iam_token(entry["bearer"], entry["body"])

    def _instance_token(self, body: Any) -> tuple[int, dict[str, Any]]:
        expires_in = 300
        if isinstance(body, dict) and "expires_in" in body:
            expires_in = body["expires_in"]
            if not isinstance(expires_in, int) or not 5 <= expires_in <= 3600:
                raise _Refusal(400, "invalid_expires_in", "expires_in must be 5..3600.")
        token = "fakeinstance-" + secrets.token_urlsafe(32)
        now = time.time()
        with self._lock:
            self.instance_tokens[token] = now + expires_in
        stamp = lambda t: time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))  # noqa: E731
        return 200, {
            "access_token": token,
            "created_at": stamp(now),
            "expires_at": stamp(now + expires_in),
            "expires_in": expires_in,
        }

    def _iam_token(self, bearer: str | None, body: Any) -> tuple[int, dict[str, Any]]:
        with self._lock:
            expiry = self.instance_tokens.get(bearer or "")
        if expiry is None or expiry <= time.time():
            raise _Refusal(401, "not_authorized", "The instance identity token is missing or invalid.")
        wanted = body.get("trusted_profile") if isinstance(body, dict) else None
        with self._lock:
            if wanted is None:
                profile = self.default_profile
            elif isinstance(wanted, dict) and len(wanted) == 1 and next(iter(wanted)) in _PROFILE_KEYS:
                key, value = next(iter(wanted.items()))
                field = _PROFILE_KEYS[key]
                profile = next((p for p in self.linked if p[field] == value), None)
            else:
                raise _Refusal(400, "invalid_trusted_profile", "trusted_profile takes one of id, name, crn.")
        if profile is None:
            raise _Refusal(
                400, "trusted_profile_not_linked", "The instance cannot assume the requested trusted profile."
            )
        return 200, self.iam.issue_profile_token(profile["profile_id"])


class _Handler(FakeHandler):
    server_version = "fake-metadata"
    owner_attr = "metadata"

    def do_PUT(self) -> None:
        self._run("PUT")

    def deliver(self, status: int, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
        self.wfile.flush()
