"""`docker-credential-icr kubelet`: CredentialProviderRequest in, CredentialProviderResponse out.

Responses are checked field by field against credentialprovider.kubelet.k8s.io/v1:
kind/apiVersion echo, cacheKeyType one of Image|Registry|Global, cacheDuration in
Go's time.Duration syntax, auth keyed by the image's registry host, and
serviceAccountTokenCacheType whenever kubelet sent a service-account token.
"""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import pytest

from docker_credential_icr import kubelet
from tests.conftest import Helper, Result
from tests.fakes.fake_iam import GRANT_CR_TOKEN, FakeIAM
from tests.fakes.fake_metadata import FakeMetadata

API_VERSION = "credentialprovider.kubelet.k8s.io/v1"
ANNOTATION = "icr.ibm.com/trusted-profile"
GO_DURATION = re.compile(r"^(\d+h)?(\d+m)?\d+(\.\d+)?s$")
API_KEY = "fakekey-node-" + "n" * 24
CR_TOKEN = "fakecr-node-" + "c" * 30
SA_TOKEN = "fakesa-pod-" + "p" * 40


def env_for(iam: FakeIAM, **extra: str) -> dict[str, str]:
    return {"IBMCLOUD_IAM_API_ENDPOINT": iam.url, "DOCKER_CREDENTIAL_ICR_CR_TOKEN_PATHS": "", **extra}


def request(image: str, token: str | None = None, annotations: dict[str, str] | None = None) -> str:
    doc: dict[str, object] = {"apiVersion": API_VERSION, "kind": "CredentialProviderRequest", "image": image}
    if token is not None:
        doc["serviceAccountToken"] = token
    if annotations is not None:
        doc["serviceAccountAnnotations"] = annotations
    return json.dumps(doc)


def run(helper: Helper, stdin: str | bytes, env: dict[str, str]) -> Result:
    return helper.run("kubelet", stdin=stdin, env=env)


def seconds(duration: str) -> float:
    match = re.fullmatch(r"(?:(\d+)h)?(?:(\d+)m)?(\d+(?:\.\d+)?)s", duration)
    assert match, duration
    h, m, s = match.groups()
    return int(h or 0) * 3600 + int(m or 0) * 60 + float(s)


def response(res: Result, *, sa_sent: bool = False) -> dict:
    """The response, after checking every field the v1 API defines."""
    assert res.returncode == 0, res
    assert res.stdout.endswith("\n") and res.stdout.count("\n") == 1
    doc = json.loads(res.stdout)
    assert doc["kind"] == "CredentialProviderResponse"
    assert doc["apiVersion"] == API_VERSION  # kubelet drops a response whose version differs
    assert doc["cacheKeyType"] == "Registry"
    assert GO_DURATION.match(doc["cacheDuration"]), doc["cacheDuration"]
    expected = {"kind", "apiVersion", "cacheKeyType", "cacheDuration", "auth"}
    if sa_sent:
        assert doc["serviceAccountTokenCacheType"] == "ServiceAccount"
        expected.add("serviceAccountTokenCacheType")
    assert set(doc) == expected
    assert isinstance(doc["auth"], dict)
    for entry in doc["auth"].values():
        assert set(entry) == {"username", "password"}
        assert all(isinstance(v, str) for v in entry.values())
    return doc


def test_api_key_node_identity(helper: Helper, iam: FakeIAM) -> None:
    res = run(helper, request("us.icr.io/team/app:1.2"), env_for(iam, IBMCLOUD_API_KEY=API_KEY))
    doc = response(res)
    assert doc["auth"] == {"us.icr.io": {"username": "iamapikey", "password": API_KEY}}
    assert doc["cacheDuration"] == "1h0m0s"  # a key has no expiry: re-asked hourly
    assert iam.count() == 0 and res.stderr == ""


def test_trusted_profile_node_identity_cache_ends_before_refresh(helper: Helper, iam: FakeIAM) -> None:
    ident = iam.add_cr_token(CR_TOKEN, profile="node-puller")
    env = env_for(iam, IBMCLOUD_CR_TOKEN=CR_TOKEN, IBMCLOUD_CR_PROFILE="node-puller")
    doc = response(run(helper, request("icr.io/team/app@sha256:" + "a" * 64), env))
    (auth,) = doc["auth"].items()
    assert auth[0] == "icr.io" and auth[1]["username"] == "iambearer"
    assert iam.validate_access_token(auth[1]["password"])["iam_id"] == ident["profile_id"]
    # The fake's tokens live 3600 s; the refresh window starts at 80%: 48 minutes.
    assert 2870 <= seconds(doc["cacheDuration"]) <= 2880
    # Within the window, kubelet's next ask is served from our cache with a shorter duration.
    again = response(run(helper, request("icr.io/team/other:2"), env))
    assert again["auth"]["icr.io"]["password"] == auth[1]["password"] and iam.count() == 1
    assert seconds(again["cacheDuration"]) <= seconds(doc["cacheDuration"])


def test_vpc_node_identity(helper: Helper, iam: FakeIAM, metadata: FakeMetadata) -> None:
    ident = iam.add_cr_token("unused", profile="vsi")
    metadata.link_profile(ident, default=True)
    env = env_for(iam, DOCKER_CREDENTIAL_ICR_VPC="1", DOCKER_CREDENTIAL_ICR_METADATA_URL=metadata.url)
    doc = response(run(helper, request("jp.icr.io/ns/app"), env))
    assert doc["auth"]["jp.icr.io"]["username"] == "iambearer"
    assert iam.validate_access_token(doc["auth"]["jp.icr.io"]["password"])["iam_id"] == ident["profile_id"]
    assert len(metadata.calls()) == 2


@pytest.mark.parametrize(("image", "key"), [
    ("us.icr.io/ns/app:tag", "us.icr.io"),
    ("icr.io/ns/app@sha256:" + "b" * 64, "icr.io"),
    ("de.icr.io:443/ns/app:1", "de.icr.io:443"),
    ("private.us.icr.io/ns/app", "private.us.icr.io"),
    ("US.ICR.IO/ns/app", "US.ICR.IO"),  # as written: kubelet matches the key against the image text
    ("myreg.example.com:5000/team/app:3", "myreg.example.com:5000"),
])
def test_auth_is_keyed_by_the_image_registry(helper: Helper, iam: FakeIAM, image: str, key: str) -> None:
    env = env_for(iam, IBMCLOUD_API_KEY=API_KEY, DOCKER_CREDENTIAL_ICR_REGISTRIES="myreg.example.com:5000")
    doc = response(run(helper, request(image), env))
    assert list(doc["auth"]) == [key]


@pytest.mark.parametrize("image", ["nginx", "library/nginx:1", "docker.io/library/nginx:1", "quay.io/org/app",
                                   "us.icr.io.example.com/ns/app", "evil-icr.io/ns/app", "localhost/app",
                                   "myreg.example.com:5000/team/app"])
def test_other_registries_get_empty_auth(helper: Helper, iam: FakeIAM, image: str) -> None:
    res = run(helper, request(image), env_for(iam, IBMCLOUD_API_KEY=API_KEY))
    doc = response(res)
    assert doc["auth"] == {} and doc["cacheDuration"] == "0s"
    assert API_KEY not in res.stdout + res.stderr


def test_no_identity_is_empty_auth_with_a_hint(helper: Helper, iam: FakeIAM) -> None:
    res = run(helper, request("us.icr.io/ns/app"), env_for(iam))
    doc = response(res)
    assert doc["auth"] == {} and doc["cacheDuration"] == "0s"
    assert "no credentials for us.icr.io" in res.stderr


def test_entitled_registry_gets_only_the_stored_entitlement_key(helper: Helper, iam: FakeIAM) -> None:
    iam.add_cr_token(SA_TOKEN, profile="team-a")
    assert helper.store("cp.icr.io", "cp", "fake-entitlement-key-77").returncode == 0
    env = env_for(iam, IBMCLOUD_API_KEY=API_KEY)
    res = run(helper, request("cp.icr.io/cp/app", SA_TOKEN, {ANNOTATION: "team-a"}), env)
    doc = response(res, sa_sent=True)
    assert doc["auth"] == {"cp.icr.io": {"username": "cp", "password": "fake-entitlement-key-77"}}
    assert iam.count() == 0


def test_service_account_token_is_exchanged_for_the_annotated_profile(helper: Helper, iam: FakeIAM) -> None:
    ident = iam.add_cr_token(SA_TOKEN, profile="team-a")
    # A node identity exists too: the pod's own identity still wins.
    env = env_for(iam, IBMCLOUD_API_KEY=API_KEY, DOCKER_CREDENTIAL_ICR_LOG="debug")
    pull = request("us.icr.io/team-a/app:1", SA_TOKEN, {ANNOTATION: "team-a", "other/x": "y"})
    res = run(helper, pull, env)
    doc = response(res, sa_sent=True)
    auth = doc["auth"]["us.icr.io"]
    assert auth["username"] == "iambearer"
    assert iam.validate_access_token(auth["password"])["iam_id"] == ident["profile_id"]
    (req,) = iam.requests
    assert req["grant_type"] == GRANT_CR_TOKEN and req["profile"] == {"profile_name": "team-a"}
    assert 2870 <= seconds(doc["cacheDuration"]) <= 2880
    assert SA_TOKEN not in res.stderr and auth["password"] not in res.stderr and API_KEY not in res.stdout


@pytest.mark.parametrize("form", ["profile_id", "profile_crn"])
def test_service_account_annotation_takes_id_or_crn(helper: Helper, iam: FakeIAM, form: str) -> None:
    ident = iam.add_cr_token(SA_TOKEN, profile="team-b")
    doc = response(run(helper, request("us.icr.io/b/app", SA_TOKEN, {ANNOTATION: ident[form]}), env_for(iam)),
                   sa_sent=True)
    assert iam.validate_access_token(doc["auth"]["us.icr.io"]["password"])["iam_id"] == ident["profile_id"]
    assert iam.requests[-1]["profile"] == {form: ident[form]}


def test_service_account_refused_by_iam(helper: Helper, iam: FakeIAM) -> None:
    iam.add_cr_token(SA_TOKEN, profile="team-a")
    iam.add_cr_token("fakesa-other-" + "o" * 30, profile="team-b")
    res = run(helper, request("us.icr.io/b/app", SA_TOKEN, {ANNOTATION: "team-b"}), env_for(iam))
    assert res.returncode == 1 and res.stdout == ""
    assert "BXNIM0539E" in res.stderr and "team-b" in res.stderr
    assert SA_TOKEN not in res.stderr


def test_service_account_without_annotation_uses_the_node_identity(helper: Helper, iam: FakeIAM) -> None:
    res = run(helper, request("us.icr.io/ns/app", SA_TOKEN, {}), env_for(iam, IBMCLOUD_API_KEY=API_KEY))
    doc = response(res, sa_sent=True)
    assert doc["auth"]["us.icr.io"] == {"username": "iamapikey", "password": API_KEY}
    assert iam.count() == 0 and SA_TOKEN not in res.stdout + res.stderr


def test_annotation_without_token_is_an_error(helper: Helper, iam: FakeIAM) -> None:
    pull = request("us.icr.io/ns/app", None, {ANNOTATION: "team-a"})
    res = run(helper, pull, env_for(iam, IBMCLOUD_API_KEY=API_KEY))
    assert res.returncode == 1 and res.stdout == ""
    assert "tokenAttributes" in res.stderr


@pytest.mark.parametrize(("stdin", "message"), [
    (b"", "not valid JSON"),
    (b"us.icr.io", "not valid JSON"),
    (b"\xff\xfe{}", "not valid JSON"),
    (b"[]", "JSON object"),
    (json.dumps({"apiVersion": "credentialprovider.kubelet.k8s.io/v1beta1",
                 "kind": "CredentialProviderRequest", "image": "us.icr.io/a/b"}).encode(), "apiVersion"),
    (json.dumps({"kind": "CredentialProviderRequest", "image": "us.icr.io/a/b"}).encode(), "apiVersion"),
    (json.dumps({"apiVersion": API_VERSION, "kind": "CredentialProviderResponse",
                 "image": "us.icr.io/a/b"}).encode(), "kind"),
    (json.dumps({"apiVersion": API_VERSION, "kind": "CredentialProviderRequest"}).encode(), "no image"),
    (json.dumps({"apiVersion": API_VERSION, "kind": "CredentialProviderRequest",
                 "image": 7}).encode(), "no image"),
    (json.dumps({"apiVersion": API_VERSION, "kind": "CredentialProviderRequest", "image": "us.icr.io/a",
                 "serviceAccountAnnotations": ["x"]}).encode(), "serviceAccountAnnotations"),
    (json.dumps({"apiVersion": API_VERSION, "kind": "CredentialProviderRequest", "image": "us.icr.io/a",
                 "serviceAccountToken": 5}).encode(), "serviceAccountToken"),
])
def test_malformed_requests(helper: Helper, iam: FakeIAM, stdin: bytes, message: str) -> None:
    res = run(helper, stdin, env_for(iam, IBMCLOUD_API_KEY=API_KEY))
    assert res.returncode == 1
    assert res.stdout == ""
    assert res.stderr.startswith("docker-credential-icr kubelet: ") and message in res.stderr
    assert res.stderr.count("\n") == 1 and "Traceback" not in res.stderr
    assert API_KEY not in res.stderr


def test_malformed_request_never_echoes_a_token(helper: Helper, iam: FakeIAM) -> None:
    bad = ('{"apiVersion": "' + API_VERSION + '", "kind": "CredentialProviderRequest", '
           '"serviceAccountToken": "' + SA_TOKEN + '", "image": ')  # truncated
    res = run(helper, bad, env_for(iam))
    assert res.returncode == 1 and res.stdout == "" and SA_TOKEN not in res.stderr
    wrong_version = json.dumps({"apiVersion": SA_TOKEN, "kind": "x", "image": "us.icr.io/a",
                                "serviceAccountToken": SA_TOKEN})
    res = run(helper, wrong_version, env_for(iam))
    assert res.returncode == 1 and res.stdout == "" and SA_TOKEN not in res.stderr


def test_extra_arguments_are_refused(helper: Helper) -> None:
    res = helper.run("kubelet", "--verbose", stdin=request("us.icr.io/a/b"))
    assert res.returncode == 1 and res.stdout == "" and "Usage" in res.stderr


def test_no_secret_appears_anywhere_but_the_intended_answer(helper: Helper, iam: FakeIAM,
                                                            metadata: FakeMetadata, tmp_path: Path) -> None:
    """Every flow, with debug logging to stderr and a log file: secrets only where meant."""
    log_file = tmp_path / "helper.log"
    base = env_for(iam, DOCKER_CREDENTIAL_ICR_LOG="debug", DOCKER_CREDENTIAL_ICR_LOG_FILE=str(log_file))
    iam.add_cr_token(CR_TOKEN, profile="node-puller")
    iam.add_cr_token(SA_TOKEN, profile="team-a")
    metadata.link_profile(iam.add_cr_token("unused", profile="vsi"), default=True)
    node_cr = {"IBMCLOUD_CR_TOKEN": CR_TOKEN, "IBMCLOUD_CR_PROFILE": "node-puller"}
    vpc = {"DOCKER_CREDENTIAL_ICR_VPC": "1", "DOCKER_CREDENTIAL_ICR_METADATA_URL": metadata.url}
    runs: list[tuple[Result, set[str]]] = []  # each run and the secrets its stdout may carry

    def answered(res: Result) -> set[str]:
        if res.returncode != 0:
            return set()
        if res.stdout.startswith("{\"ServerURL\""):
            return {json.loads(res.stdout)["Secret"]}
        return {a["password"] for a in json.loads(res.stdout)["auth"].values()}

    flows = [
        ("get", "us.icr.io", {"IBMCLOUD_API_KEY": API_KEY}),
        ("get", "us.icr.io", {"IBMCLOUD_API_KEY": API_KEY, "DOCKER_CREDENTIAL_ICR_MODE": "bearer"}),
        ("get", "us.icr.io", node_cr),
        ("get", "us.icr.io", {**node_cr, "IBMCLOUD_CR_PROFILE": "team-a"}),  # refused
        ("get", "uk.icr.io", vpc),
        ("kubelet", request("us.icr.io/a/b"), node_cr),
        ("kubelet", request("us.icr.io/a/b", SA_TOKEN, {ANNOTATION: "team-a"}), {}),
        ("kubelet", request("us.icr.io/a/b", SA_TOKEN, {ANNOTATION: "node-puller"}), {}),  # refused
        ("kubelet", request("quay.io/a/b", SA_TOKEN, {ANNOTATION: "team-a"}), {}),
        ("kubelet", '{"serviceAccountToken": "' + SA_TOKEN + '"}', {}),  # malformed
    ]
    for action, stdin, extra in flows:
        if action == "get":
            res = helper.get(stdin, env={**base, **extra})
        else:
            res = run(helper, stdin, {**base, **extra})
        runs.append((res, answered(res)))

    issued = {r for _, allowed in runs for r in allowed}
    instance_tokens = set(metadata.instance_tokens)
    secrets = {API_KEY, CR_TOKEN, SA_TOKEN} | issued | instance_tokens
    assert len(issued) >= 4 and instance_tokens
    log_text = log_file.read_text()
    for secret in secrets:
        assert secret not in log_text
    for res, allowed in runs:
        for secret in secrets:
            assert secret not in res.stderr, (secret[:12], res)
            if secret not in allowed:
                assert secret not in res.stdout, (secret[:12], res)


@pytest.mark.parametrize(("value", "text"), [(0, "0s"), (0.9, "0s"), (59, "59s"), (60, "1m0s"),
                                             (2880, "48m0s"), (3300, "55m0s"), (3600, "1h0m0s"),
                                             (3661, "1h1m1s"), (-5, "0s")])
def test_go_duration_format(value: float, text: str) -> None:
    assert kubelet.go_duration(value) == text
    assert GO_DURATION.match(text)


def test_cache_seconds_ends_at_the_refresh_window() -> None:
    assert kubelet.cache_seconds(None) == 3600
    assert kubelet.cache_seconds(time.time() - 10) == 0
    assert 99 <= kubelet.cache_seconds(time.time() + 100) <= 100
