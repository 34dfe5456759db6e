"""Self-tests of the fakes and runners, without the credential helper.

They prove the test rig itself is sound: the fake IAM speaks IAM's wire format
and injects faults on demand; the token service issues tokens the real
distribution registry accepts, for exactly the ICR username kinds; skopeo and a
real dockerd push and pull through it. If these fail, the helper's end-to-end
tests cannot be trusted.
"""

from __future__ import annotations

import base64
import http.client
import json
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.fakes import registry as registry_mod
from tests.fakes._util import (
    basic_auth,
    http_request,
    pid_alive,
    wait_until,
)
from tests.fakes.containers import ContainersSandbox
from tests.fakes.dockerd import Dockerd, dockerd_available, plain_docker_config
from tests.fakes.fake_iam import GRANT_APIKEY, GRANT_CR_TOKEN, GRANT_REFRESH, FakeIAM
from tests.fakes.icr_token_service import IcrTokenService, parse_scope
from tests.fakes.image import build_image_tar, image_id
from tests.fakes.registry import RegistryError, registry_available
from tests.fakes.stack import IcrStack

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
API_KEY = "test-apikey-0123456789abcdef"
FORM = {"Content-Type": "application/x-www-form-urlencoded", "Accept": "application/json"}
BX = {"Authorization": basic_auth("bx", "bx")}

needs_registry = pytest.mark.skipif(not registry_available()[0], reason=registry_available()[1])
needs_skopeo = pytest.mark.skipif(shutil.which("skopeo") is None, reason="skopeo not installed")
needs_dockerd = pytest.mark.skipif(not dockerd_available()[0], reason=dockerd_available()[1])


def iam_post(iam_url: str, form: dict[str, str], headers: dict[str, str] | None = None, timeout: float = 10):
    """POST a grant to the IAM; returns (status, headers, parsed JSON or raw bytes)."""
    data = urllib.parse.urlencode(form).encode()
    status, hdrs, body = http_request(
        iam_url + "/identity/token", data=data, headers={**FORM, **(headers or {})}, timeout=timeout
    )
    try:
        return status, hdrs, json.loads(body)
    except ValueError:
        return status, hdrs, body


def jwt_claims(token: str) -> dict[str, Any]:
    payload = token.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))


def token_request(svc: IcrTokenService, query: str, auth: str | None = None) -> tuple[int, dict[str, Any]]:
    headers = {"Authorization": auth} if auth else {}
    status, _, body = http_request(f"{svc.realm}?{query}", headers=headers)
    return status, json.loads(body)


@pytest.fixture
def iam() -> Iterator[FakeIAM]:
    with FakeIAM() as fake:
        fake.add_api_key(API_KEY)
        yield fake


@pytest.fixture(scope="module")
def stack(no_leftovers: None) -> Iterator[IcrStack]:
    if not registry_available()[0]:
        pytest.skip(registry_available()[1])
    with IcrStack(api_keys=[API_KEY]) as s:
        yield s


@pytest.fixture
def svc(stack: IcrStack) -> IcrTokenService:
    assert stack.token_service is not None
    stack.token_service.clear_log()
    stack.iam.clear_log()
    return stack.token_service


@pytest.fixture(scope="module")
def box(tmp_path_factory: pytest.TempPathFactory, no_leftovers: None) -> Iterator[ContainersSandbox]:
    with ContainersSandbox(tmp_path_factory.mktemp("containers")) as sandbox:
        yield sandbox


@pytest.fixture(scope="module")
def dockerd(no_leftovers: None) -> Iterator[Dockerd]:
    ok, why = dockerd_available()
    if not ok:
        pytest.skip(why)
    with Dockerd() as d:
        yield d


# ---------------------------------------------------------------- fake IAM


def test_apikey_grant_without_client_gets_no_refresh_token(iam: FakeIAM) -> None:
    status, _, body = iam_post(iam.url, {"grant_type": GRANT_APIKEY, "apikey": API_KEY})
    assert status == 200
    assert body["refresh_token"] == "not_supported"
    assert body["token_type"] == "Bearer" and body["expires_in"] == 3600 and body["ims_user_id"] == 123
    assert body["scope"] == "ibm openid"
    claims = jwt_claims(body["access_token"])
    assert claims["exp"] == body["expiration"] == claims["iat"] + 3600
    assert claims["grant_type"] == GRANT_APIKEY and claims["iam_id"] == claims["sub"]
    assert iam.validate_access_token(body["access_token"]) == claims
    assert iam.validate_access_token(body["access_token"][:-2] + "xx") is None


def test_apikey_grant_with_cli_client_gets_refresh_token_that_rotates(iam: FakeIAM) -> None:
    status, _, body = iam_post(iam.url, {"grant_type": GRANT_APIKEY, "apikey": API_KEY}, BX)
    assert status == 200 and body["refresh_token"] != "not_supported"
    first = body["refresh_token"]
    assert iam.validate_refresh_token(first) is not None
    status, _, again = iam_post(iam.url, {"grant_type": GRANT_REFRESH, "refresh_token": first}, BX)
    assert status == 200 and again["refresh_token"] not in ("not_supported", first)
    assert jwt_claims(again["access_token"])["grant_type"] == GRANT_REFRESH
    # The old one stays valid unless rotate_invalidates.
    assert iam_post(iam.url, {"grant_type": GRANT_REFRESH, "refresh_token": first}, BX)[0] == 200
    iam.rotate_invalidates = True
    status, _, third = iam_post(iam.url, {"grant_type": GRANT_REFRESH, "refresh_token": first}, BX)
    assert status == 200
    status, _, err = iam_post(iam.url, {"grant_type": GRANT_REFRESH, "refresh_token": first}, BX)
    assert status == 400 and err["errorCode"] == "BXNIM0408E"
    assert (
        iam_post(iam.url, {"grant_type": GRANT_REFRESH, "refresh_token": third["refresh_token"]}, BX)[0]
        == 200
    )


@pytest.mark.parametrize(
    ("form", "headers", "code"),
    [
        ({"grant_type": GRANT_APIKEY, "apikey": "nope"}, {}, "BXNIM0415E"),
        ({"grant_type": GRANT_APIKEY}, {}, "BXNIM0109E"),
        ({"grant_type": "password", "username": "u"}, {}, "BXNIM0109E"),
        ({"apikey": API_KEY}, {}, "BXNIM0109E"),
        ({"grant_type": GRANT_REFRESH, "refresh_token": "whatever"}, {}, "BXNIM0308E"),
        ({"grant_type": GRANT_REFRESH, "refresh_token": "unknown"}, BX, "BXNIM0408E"),
        ({"grant_type": GRANT_REFRESH}, BX, "BXNIM0109E"),
        (
            {"grant_type": GRANT_APIKEY, "apikey": API_KEY},
            {"Authorization": basic_auth("x", "y")},
            "BXNIM0311E",
        ),
    ],
)
def test_iam_errors_look_like_iam(
    iam: FakeIAM, form: dict[str, str], headers: dict[str, str], code: str
) -> None:
    status, hdrs, body = iam_post(iam.url, form, headers)
    assert status == 400
    assert hdrs["Content-Type"] == "application/json"
    assert body["errorCode"] == code and body["errorMessage"]
    assert body["context"]["requestId"]


def test_expired_refresh_token_is_refused(iam: FakeIAM) -> None:
    tok = iam.add_refresh_token(expires_in=60)
    assert iam_post(iam.url, {"grant_type": GRANT_REFRESH, "refresh_token": tok}, BX)[0] == 200
    iam.expire_refresh_token(tok)
    status, _, body = iam_post(iam.url, {"grant_type": GRANT_REFRESH, "refresh_token": tok}, BX)
    assert status == 400 and body["errorCode"] == "BXNIM0408E"


def test_cr_token_grant_by_name_id_and_crn(iam: FakeIAM) -> None:
    ident = iam.add_cr_token("cr-token-1", profile="builder")
    for key in ("profile_name", "profile_id", "profile_crn"):
        form = {"grant_type": GRANT_CR_TOKEN, "cr_token": "cr-token-1", key: ident[key]}
        status, _, body = iam_post(iam.url, form)
        assert status == 200, body
        assert body["refresh_token"] == "not_supported"
        assert jwt_claims(body["access_token"])["sub"] == ident["profile_id"]
    iam.add_cr_token("cr-token-2", profile="other")
    bad = [
        ({"cr_token": "cr-token-1", "profile_name": "other"}, "BXNIM0539E"),
        ({"cr_token": "forged", "profile_name": "builder"}, "BXNIM0407E"),
        ({"cr_token": "cr-token-1"}, "BXNIM0109E"),
    ]
    for form, code in bad:
        status, _, body = iam_post(iam.url, {"grant_type": GRANT_CR_TOKEN, **form})
        assert (status, body["errorCode"]) == (400, code)


def test_short_lifetime_and_validate_endpoint() -> None:
    with FakeIAM(lifetime=1) as iam:
        key = iam.add_api_key()
        status, _, body = iam_post(iam.url, {"grant_type": GRANT_APIKEY, "apikey": key})
        assert status == 200 and body["expires_in"] == 1
        token = body["access_token"]
        q = urllib.parse.urlencode({"token": token})
        status, _, answer = http_request(f"{iam.url}/_fake/validate?{q}")
        assert status == 200 and json.loads(answer)["claims"]["sub"]
        time.sleep(2.1)
        assert iam.validate_access_token(token) is None
        assert http_request(f"{iam.url}/_fake/validate?{q}")[0] == 401


def test_request_log_counts_and_holds_no_secret(iam: FakeIAM) -> None:
    iam_post(iam.url, {"grant_type": GRANT_APIKEY, "apikey": API_KEY})
    _, _, body = iam_post(iam.url, {"grant_type": GRANT_APIKEY, "apikey": API_KEY}, BX)
    iam_post(iam.url, {"grant_type": GRANT_REFRESH, "refresh_token": body["refresh_token"]}, BX)
    assert iam.count() == 3 and iam.count(GRANT_APIKEY) == 2 and iam.count(GRANT_REFRESH) == 1
    assert [r["has_basic"] for r in iam.requests] == [False, True, True]
    assert [r["status"] for r in iam.requests] == [200, 200, 200]
    dumped = json.dumps(iam.requests)
    assert API_KEY not in dumped and body["refresh_token"] not in dumped


@pytest.mark.parametrize(
    ("fault", "status", "check"),
    [
        (500, 500, lambda h, b: b["errorCode"]),
        (502, 502, lambda h, b: b.startswith(b"<html")),
        (503, 503, lambda h, b: True),
        (("429", 7), 429, lambda h, b: h["Retry-After"] == "7"),
        (("429", None), 429, lambda h, b: "Retry-After" not in h),
        ("garbage", 200, lambda h, b: isinstance(b, bytes)),
        ("no_access_token", 200, lambda h, b: "access_token" not in b),
    ],
)
def test_faults_answer_then_clear(iam: FakeIAM, fault: Any, status: int, check: Any) -> None:
    iam.faults.append(fault)
    got, hdrs, body = iam_post(iam.url, {"grant_type": GRANT_APIKEY, "apikey": API_KEY})
    assert got == status and check(hdrs, body)
    assert iam_post(iam.url, {"grant_type": GRANT_APIKEY, "apikey": API_KEY})[0] == 200
    assert iam.requests[0]["status"] == status and iam.requests[0]["fault"] is not None


def test_fault_truncated_body(iam: FakeIAM) -> None:
    iam.faults.append("truncated")
    with pytest.raises(http.client.IncompleteRead):
        iam_post(iam.url, {"grant_type": GRANT_APIKEY, "apikey": API_KEY})


def test_fault_hang_never_answers(iam: FakeIAM) -> None:
    iam.faults.append("hang")
    t0 = time.monotonic()
    with pytest.raises((TimeoutError, socket.timeout)):
        iam_post(iam.url, {"grant_type": GRANT_APIKEY, "apikey": API_KEY}, timeout=0.5)
    assert time.monotonic() - t0 < 2
    assert iam_post(iam.url, {"grant_type": GRANT_APIKEY, "apikey": API_KEY})[0] == 200


def test_fault_slow_dribbles_a_valid_body(iam: FakeIAM) -> None:
    iam.faults.append(("slow", 1.0))
    t0 = time.monotonic()
    # A per-read timeout never fires on a dribbling server: only a total deadline catches it.
    status, _, body = iam_post(iam.url, {"grant_type": GRANT_APIKEY, "apikey": API_KEY}, timeout=0.3)
    assert status == 200 and body["access_token"]
    assert time.monotonic() - t0 >= 0.9


def test_delay_applies_to_concurrent_requests(iam: FakeIAM) -> None:
    iam.delay = 0.5
    results: list[int] = []
    t0 = time.monotonic()
    threads = [
        threading.Thread(
            target=lambda: results.append(
                iam_post(iam.url, {"grant_type": GRANT_APIKEY, "apikey": API_KEY})[0]
            )
        )
        for _ in range(4)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.monotonic() - t0
    assert results == [200] * 4 and iam.count() == 4
    assert 0.5 <= elapsed < 1.5  # served in parallel, each delayed


def test_down_refuse_and_reset_then_up(iam: FakeIAM) -> None:
    form = {"grant_type": GRANT_APIKEY, "apikey": API_KEY}
    url = iam.url
    iam.down()
    with pytest.raises(ConnectionRefusedError):
        iam_post(url, form)
    iam.up()
    assert iam.url == url and iam_post(url, form)[0] == 200
    iam.down("reset")
    with pytest.raises(ConnectionError):  # reset (or, racing the send, broken pipe)
        iam_post(url, form)
    iam.up()
    assert iam_post(url, form)[0] == 200


def test_fake_iam_as_a_process(tmp_path: Path) -> None:
    ready = tmp_path / "iam.url"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tests.fakes.fake_iam",
            "--port",
            "0",
            "--api-key",
            "PROCKEY",
            "--ready-file",
            ready,
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
    )
    try:
        assert wait_until(ready.exists, 15)
        url = ready.read_text().strip()
        assert url.startswith("http://127.0.0.1:")
        assert iam_post(url, {"grant_type": GRANT_APIKEY, "apikey": "PROCKEY"})[0] == 200
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(10) == 0
        assert proc.stdout is not None and proc.stdout.read().decode().strip() == url
        proc.stdout.close()


# ---------------------------------------------------------------- token service


def test_parse_scope() -> None:
    assert parse_scope("repository:ns/app:pull,push") == ("repository", "ns/app", ["pull", "push"])
    assert parse_scope("repository(plugin):a:pull") == ("repository", "a", ["pull"])
    assert parse_scope("registry:catalog:*") == ("registry", "catalog", ["*"])
    assert parse_scope("repository:127.0.0.1:5000/a:pull") == ("repository", "127.0.0.1:5000/a", ["pull"])
    assert parse_scope("nonsense") is None


def test_token_service_kinds(stack: IcrStack, svc: IcrTokenService, tmp_path: Path) -> None:
    iam = stack.iam
    q = "service=registry&scope=repository:ns/app:pull,push&scope=repository:ns/other:pull"
    status, body = token_request(svc, q)
    assert status == 200 and jwt_claims(body["token"])["access"] == []

    status, body = token_request(svc, q, basic_auth("iamapikey", API_KEY))
    assert status == 200 and body["token"] == body["access_token"] and body["expires_in"] == 300
    claims = jwt_claims(body["token"])
    assert claims["aud"] == "registry" and claims["iss"] == svc.issuer and claims["nbf"] <= claims["iat"]
    assert claims["access"] == [
        {"type": "repository", "name": "ns/app", "actions": ["pull", "push"]},
        {"type": "repository", "name": "ns/other", "actions": ["pull"]},
    ]
    header = json.loads(base64.urlsafe_b64decode(body["token"].split(".")[0] + "=="))
    assert header["alg"] == "RS256" and len(header["x5c"]) == 1

    _, _, grant = iam_post(iam.url, {"grant_type": GRANT_APIKEY, "apikey": API_KEY}, BX)
    assert token_request(svc, q, basic_auth("iamrefresh", grant["refresh_token"]))[0] == 200
    assert token_request(svc, q, basic_auth("iambearer", grant["access_token"]))[0] == 200

    denied = [
        basic_auth("iamapikey", "wrong-key"),
        basic_auth("iamrefresh", "wrong-refresh"),
        basic_auth("iambearer", "not.a.token"),
        basic_auth("someoneelse", API_KEY),
        basic_auth("iamapikey", ""),
    ]
    for auth in denied:
        status, body = token_request(svc, q, auth)
        assert status == 401 and body["errors"][0]["code"] == "UNAUTHORIZED"

    kinds = ["anonymous", "iamapikey", "iamrefresh", "iambearer"]
    assert [e["kind"] for e in svc.log] == [
        *kinds,
        "iamapikey",
        "iamrefresh",
        "iambearer",
        "unknown",
        "iamapikey",
    ]
    assert svc.entries(kind="iamapikey", outcome="denied")[0]["reason"] == "IAM refused: BXNIM0415E"
    # The token service's own IAM calls do not count as the client's.
    assert iam.count() == 1 and iam.count(include_internal=True) > 1
    dumped = json.dumps(svc.log)
    for secret in (API_KEY, grant["refresh_token"], grant["access_token"], "wrong-key"):
        assert secret not in dumped


def test_token_service_refresh_tokens_and_log_file(stack: IcrStack, tmp_path: Path) -> None:
    log_file = tmp_path / "token.jsonl"
    with IcrTokenService(stack.iam.url, issue_refresh_tokens=True, log_file=log_file) as svc:
        q = "service=registry&offline_token=true&client_id=docker&scope=repository:a/b:pull"
        status, body = token_request(svc, q, basic_auth("iamapikey", API_KEY))
        assert status == 200 and body["refresh_token"]
        form = {
            "grant_type": "refresh_token",
            "refresh_token": body["refresh_token"],
            "service": "registry",
            "client_id": "docker",
            "scope": "repository:a/b:pull repository:a/c:push",
        }
        status, _, raw = http_request(svc.realm, data=urllib.parse.urlencode(form).encode(), headers=FORM)
        answer = json.loads(raw)
        assert status == 200 and "refresh_token" not in answer
        assert [a["name"] for a in jwt_claims(answer["access_token"])["access"]] == ["a/b", "a/c"]
        form["refresh_token"] = "forged"
        assert http_request(svc.realm, data=urllib.parse.urlencode(form).encode(), headers=FORM)[0] == 401
        lines = [json.loads(line) for line in log_file.read_text().splitlines()]
        assert [(e["kind"], e["outcome"]) for e in lines] == [
            ("iamapikey", "granted"),
            ("<token>", "granted"),
            ("<token>", "denied"),
        ]
        assert lines[0]["refresh_token_issued"] and lines[1]["origin_kind"] == "iamapikey"
        text = log_file.read_text()
        assert API_KEY not in text and body["refresh_token"] not in text
        assert oct(log_file.stat().st_mode & 0o777) == "0o600"


def test_token_service_checks_a_separate_iam_process(tmp_path: Path) -> None:
    ready = tmp_path / "iam.url"
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.fakes.fake_iam", "--api-key", "XKEY", "--ready-file", ready],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
    )
    try:
        assert wait_until(ready.exists, 15)
        iam_url = ready.read_text().strip()
        with IcrTokenService(iam_url) as svc:
            q = "service=registry&scope=repository:x/y:pull"
            assert token_request(svc, q, basic_auth("iamapikey", "XKEY"))[0] == 200
            _, _, grant = iam_post(iam_url, {"grant_type": GRANT_APIKEY, "apikey": "XKEY"}, BX)
            assert token_request(svc, q, basic_auth("iambearer", grant["access_token"]))[0] == 200
            assert token_request(svc, q, basic_auth("iamrefresh", grant["refresh_token"]))[0] == 200
            assert token_request(svc, q, basic_auth("iamapikey", "YKEY"))[0] == 401
    finally:
        proc.terminate()
        assert proc.wait(10) == 0


# ---------------------------------------------------------------- registry + stack


@needs_registry
def test_registry_accepts_tokens_and_challenges(stack: IcrStack, svc: IcrTokenService) -> None:
    status, headers, _ = http_request(f"http://{stack.host}/v2/")
    challenge = {k.lower(): v for k, v in headers.items()}["www-authenticate"]
    assert status == 401 and f'realm="{svc.realm}"' in challenge and 'service="registry"' in challenge
    _, body = token_request(svc, "service=registry", basic_auth("iamapikey", API_KEY))
    assert (
        http_request(f"http://{stack.host}/v2/", headers={"Authorization": f"Bearer {body['token']}"})[0]
        == 200
    )
    # A token without access to the repository gets insufficient_scope.
    status, headers, _ = http_request(
        f"http://{stack.host}/v2/ns/app/tags/list", headers={"Authorization": f"Bearer {body['token']}"}
    )
    challenge = {k.lower(): v for k, v in headers.items()}["www-authenticate"]
    assert status == 401 and 'error="insufficient_scope"' in challenge


@needs_registry
def test_stack_stops_everything_even_on_error() -> None:
    with pytest.raises(RuntimeError, match="boom"), IcrStack() as s:
        assert s.registry is not None
        pid, iam_url = s.registry.pid, s.iam.url
        raise RuntimeError("boom")
    assert pid is not None and not pid_alive(pid)
    with pytest.raises(ConnectionRefusedError):
        http_request(iam_url + "/identity/token")


def test_stack_stops_what_started_when_start_fails(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(registry_mod, "REGISTRY_BINARY", "false")
    s = IcrStack()
    with pytest.raises(RegistryError):
        s.start()
    assert s.token_service is not None and s.token_service.workdir is None
    with pytest.raises(ConnectionRefusedError):
        http_request(s.iam.url + "/identity/token")


@needs_registry
def test_stack_as_a_process(tmp_path: Path) -> None:
    ready = tmp_path / "stack.json"
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.fakes.stack", "--api-key", "K", "--ready-file", ready],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
    )
    try:
        assert wait_until(ready.exists, 20)
        info = json.loads(ready.read_text())
        assert http_request(f"http://{info['registry_host']}/v2/")[0] == 401
    finally:
        proc.terminate()
        assert proc.wait(20) == 0
    assert not pid_alive(info["registry_pid"])


# ---------------------------------------------------------------- image


def test_image_tar_is_deterministic(tmp_path: Path) -> None:
    a = build_image_tar(tmp_path / "a.tar", "127.0.0.1:5000/ns/app:v1").read_bytes()
    b = build_image_tar(tmp_path / "b.tar", "127.0.0.1:5000/ns/app:v1").read_bytes()
    c = build_image_tar(tmp_path / "c.tar", "127.0.0.1:5000/ns/app:v1", content=b"other\n").read_bytes()
    assert a == b != c
    assert image_id() != image_id(b"other\n")


# ---------------------------------------------------------------- skopeo


@needs_registry
@needs_skopeo
def test_skopeo_push_and_pull_with_each_kind(
    stack: IcrStack, svc: IcrTokenService, box: ContainersSandbox, tmp_path: Path
) -> None:
    ref = f"docker://{stack.host}/skopeo/app:v1"
    tar = build_image_tar(tmp_path / "img.tar", f"{stack.host}/skopeo/app:v1")
    push = box.skopeo(
        "copy",
        "--dest-creds",
        f"iamapikey:{API_KEY}",
        "--dest-tls-verify=false",
        f"docker-archive:{tar}",
        ref,
    )
    assert push.returncode == 0, push.stderr.decode()
    assert any("push" in a["actions"] for e in svc.entries(kind="iamapikey") for a in e["granted"])

    _, _, grant = iam_post(stack.iam.url, {"grant_type": GRANT_APIKEY, "apikey": API_KEY}, BX)
    pull = box.skopeo(
        "copy", "--src-creds", f"iamrefresh:{grant['refresh_token']}", "--src-tls-verify=false",
        ref, f"dir:{tmp_path / 'pulled'}",
    )  # fmt: skip
    assert pull.returncode == 0, pull.stderr.decode()
    # The dir: transport names blobs by their hex digest: follow the manifest to the config.
    manifest = json.loads((tmp_path / "pulled" / "manifest.json").read_text())
    config_hex = manifest["config"]["digest"].split(":", 1)[1]
    config = json.loads((tmp_path / "pulled" / config_hex).read_text())
    assert config["config"]["Labels"]["built-by"] == "tests.fakes.image"

    inspect = box.skopeo(
        "inspect", "--creds", f"iambearer:{grant['access_token']}", "--tls-verify=false", ref
    )
    assert inspect.returncode == 0, inspect.stderr.decode()
    assert json.loads(inspect.stdout)["Labels"]["built-by"] == "tests.fakes.image"
    assert {"iamapikey", "iamrefresh", "iambearer"} <= set(svc.kinds_seen())


@needs_registry
@needs_skopeo
def test_skopeo_denied_without_or_with_wrong_credentials(
    stack: IcrStack, svc: IcrTokenService, box: ContainersSandbox, tmp_path: Path
) -> None:
    tar = build_image_tar(tmp_path / "img.tar", f"{stack.host}/skopeo/denied:v1")
    ref = f"docker://{stack.host}/skopeo/denied:v1"
    anon = box.skopeo("copy", "--dest-no-creds", "--dest-tls-verify=false", f"docker-archive:{tar}", ref)
    assert anon.returncode != 0
    wrong_kind = box.skopeo(
        "copy", "--dest-creds", f"apikey:{API_KEY}", "--dest-tls-verify=false", f"docker-archive:{tar}", ref
    )
    assert wrong_kind.returncode != 0
    wrong_key = box.skopeo(
        "copy", "--dest-creds", "iamapikey:bad", "--dest-tls-verify=false", f"docker-archive:{tar}", ref
    )
    assert wrong_key.returncode != 0
    assert svc.count(kind="iamapikey", outcome="granted") == 0
    assert svc.count(kind="unknown", outcome="denied") >= 1
    assert svc.count(kind="iamapikey", outcome="denied") >= 1
    for res in (anon, wrong_kind, wrong_key):
        assert API_KEY.encode() not in res.stderr


@needs_registry
@pytest.mark.skipif(not (shutil.which("podman") and shutil.which("buildah")), reason="podman/buildah missing")
def test_podman_and_buildah_pull_in_the_sandbox(
    stack: IcrStack, svc: IcrTokenService, box: ContainersSandbox
) -> None:
    """The sandbox is enough for podman and buildah too (they need REGISTRY_AUTH_FILE to exist)."""
    tar = build_image_tar(box.root / "podman.tar", f"{stack.host}/podman/app:v1")
    ref = f"{stack.host}/podman/app:v1"
    creds = f"iamapikey:{API_KEY}"
    push = box.skopeo(
        "copy", "--dest-creds", creds, "--dest-tls-verify=false", f"docker-archive:{tar}", f"docker://{ref}"
    )
    assert push.returncode == 0, push.stderr.decode()
    for tool in ("podman", "buildah"):
        res = box.run(tool, "pull", "--tls-verify=false", "--creds", creds, ref)
        assert res.returncode == 0, res.stderr.decode()
    assert image_id()[7:19] in box.run("podman", "images", check=True).stdout.decode()
    assert set(svc.kinds_seen()) <= {"iamapikey", "anonymous"}


# ---------------------------------------------------------------- docker


@needs_registry
@needs_dockerd
def test_docker_login_push_pull(
    stack: IcrStack, svc: IcrTokenService, dockerd: Dockerd, tmp_path: Path
) -> None:
    conf = plain_docker_config(tmp_path / "docker")
    image = f"{stack.host}/docker/app:v1"
    login = dockerd.docker(
        "login", "-u", "iamapikey", "--password-stdin", stack.host, docker_config=conf, input=API_KEY.encode()
    )
    assert b"Login Succeeded" in login.stdout
    stored = json.loads((conf / "config.json").read_text())["auths"][stack.host]
    assert base64.b64decode(stored["auth"]).decode() == f"iamapikey:{API_KEY}"

    tar = build_image_tar(tmp_path / "img.tar", image, content=b"docker test\n")
    loaded = dockerd.docker("load", "-i", str(tar), docker_config=conf)
    assert image_id(b"docker test\n") in loaded.stdout.decode() or image in loaded.stdout.decode()
    dockerd.docker("push", image, docker_config=conf)
    dockerd.docker("rmi", image, docker_config=conf)
    dockerd.docker("pull", image, docker_config=conf)
    inspected = json.loads(dockerd.docker("image", "inspect", image, docker_config=conf).stdout)
    assert inspected[0]["Id"] == image_id(b"docker test\n")
    assert set(svc.kinds_seen()) <= {"iamapikey", "anonymous"}, (
        svc.kinds_seen()
    )  # Docker may try anonymously first
    assert svc.count(kind="iamapikey", outcome="granted") >= 3

    # Without credentials: pull access denied.
    dockerd.docker("rmi", image, docker_config=conf)
    anon_conf = plain_docker_config(tmp_path / "anon")
    denied = dockerd.docker("pull", image, docker_config=anon_conf, check=False)
    assert denied.returncode != 0
    dockerd.docker("logout", stack.host, docker_config=conf)


@needs_registry
@needs_dockerd
def test_docker_login_refused_for_wrong_kind_or_key(
    stack: IcrStack, svc: IcrTokenService, dockerd: Dockerd, tmp_path: Path
) -> None:
    conf = plain_docker_config(tmp_path / "docker")
    for user, secret in (("someone", API_KEY), ("iamapikey", "bad-key")):
        res = dockerd.docker(
            "login", "-u", user, "--password-stdin", stack.host, docker_config=conf, input=secret.encode(),
            check=False,
        )  # fmt: skip
        assert res.returncode != 0 and b"Login Succeeded" not in res.stdout
    assert stack.host not in json.loads((conf / "config.json").read_text())["auths"]
    assert svc.count(outcome="granted") == 0


@needs_registry
@needs_dockerd
def test_docker_login_with_registry_refresh_token(
    stack: IcrStack, svc: IcrTokenService, dockerd: Dockerd, tmp_path: Path
) -> None:
    """`docker login` gets a refresh token: Docker stores an identity token and uses the POST grant."""
    conf = plain_docker_config(tmp_path / "docker")
    image = f"{stack.host}/docker/refresh:v1"
    svc.issue_refresh_tokens = True
    try:
        dockerd.docker(
            "login",
            "-u",
            "iamapikey",
            "--password-stdin",
            stack.host,
            docker_config=conf,
            input=API_KEY.encode(),
        )
        stored = json.loads((conf / "config.json").read_text())["auths"][stack.host]
        assert stored["identitytoken"].startswith("fakeregrefresh-")
        assert API_KEY not in (conf / "config.json").read_text()
        tar = build_image_tar(tmp_path / "img.tar", image, content=b"refresh test\n")
        dockerd.docker("load", "-i", str(tar), docker_config=conf)
        dockerd.docker("push", image, docker_config=conf)
        dockerd.docker("rmi", image, docker_config=conf)
        dockerd.docker("pull", image, docker_config=conf)
        dockerd.docker("rmi", image, docker_config=conf)
    finally:
        svc.issue_refresh_tokens = False
    assert svc.entries(kind="iamapikey")[0]["refresh_token_issued"]
    assert svc.count(kind="<token>", outcome="granted") >= 2
