"""The fault matrix: everything IAM (or the network in front of it) can do to a `get`.

Each case ends in a correct answer (a token IAM really issued, or the still-valid
cached one) or a clear one-line error naming IAM — within the deadline, which the
subprocess timeout enforces — and never with a secret on stdout or stderr. The
number of IAM requests one `get` makes is bounded too (retries are finite).
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import Result, _console_script, _executables
from tests.fakes._util import free_port
from tests.hardening._support import (
    HOSTILE_FAULT,
    LEDGER,
    HardHelper,
    RecordingIAM,
    TLSRecordingIAM,
    make_cert,
    one_line_error,
)

DEADLINE = 4.0
# Cases that must end in an answer get more room: retries with backoff plus a loaded CI
# machine must not turn a correct answer into a timeout. Error cases keep the 4 s bound.
DEADLINE_OK = 8.0
# A `get` that ignored its deadline would still be running at this bound.
BOUND = DEADLINE + 10
MAX_REQUESTS = 5  # one attempt + urllib3's retries (total=4)

# How the identity reaches IAM: an API key exchanged for a bearer or a refresh token,
# or a stored refresh token (grant refresh_token, rotated by IAM).
FLAVOURS = ("apikey-bearer", "apikey-refresh", "stored-refresh")


@dataclass
class Case:
    name: str
    faults: list[Any] = field(default_factory=list)
    expect: str = "ok"  # "ok" | "error" | "either" | "cached"
    setup: Callable[[RecordingIAM], str | None] | None = None  # may return another endpoint
    flavour: str = "apikey-bearer"
    deadline: float = 0.0  # 0: DEADLINE, or DEADLINE_OK for cases that must answer

    def __post_init__(self) -> None:
        if not self.deadline:
            self.deadline = DEADLINE_OK if self.expect == "ok" else DEADLINE


def _refused(iam: RecordingIAM) -> None:
    iam.down()


def _reset(iam: RecordingIAM) -> None:
    iam.down("reset")


def _closed_port(_: RecordingIAM) -> str:
    return f"http://127.0.0.1:{free_port()}"


FAST = [
    Case("429 without Retry-After", [("429", None)]),
    Case("429 with Retry-After: 1", [("429", 1)]),
    Case("429 with Retry-After past the deadline", [("429", 60)], "error"),
    Case("500", [500]),
    Case("502 (HTML body)", [502]),
    Case("503 (HTML body)", [503]),
    Case("500, 502 in a row", [500, 502]),
    Case("500, 502, 503 in a row", [500, 502, 503]),
    Case("truncated body once", ["truncated"], "either"),
    Case("truncated body always", ["truncated"] * 8, "error"),
    Case("non-JSON 200", ["garbage"], "error"),
    Case("200 without access_token", ["no_access_token"], "error"),
    Case("slow body within the deadline", [("slow", 1.0)]),
    Case("hostile error body (CR/LF, U+2028, lone surrogate, echoed key, 100 kB)", [HOSTILE_FAULT], "error"),
    Case("connection refused (IAM down)", setup=_refused, expect="error"),
    Case("connection reset", setup=_reset, expect="error"),
    Case("closed port", setup=_closed_port, expect="error"),
    Case("IAM down, cached token still valid", setup=_refused, expect="cached"),
    Case("non-JSON 200, cached token still valid", ["garbage"], "cached"),
]
for _i, _case in enumerate(FAST):
    if _case.expect != "cached":
        _case.flavour = FLAVOURS[_i % len(FLAVOURS)]

# Cases that may run into the deadline.
SLOW = [
    Case("hang", ["hang"], "error"),
    Case("slow body past the deadline", [("slow", 60.0)], "error"),
    Case("503 forever", [503] * 20, "error", flavour="apikey-refresh"),
    Case("429 forever, no Retry-After", [("429", None)] * 20, "error", flavour="stored-refresh"),
    Case("429 forever, Retry-After: 2", [("429", 2)] * 20, "error"),
    Case("hang, cached token still valid", ["hang"], "cached"),
    Case("503 forever, cached token still valid", [503] * 20, "cached"),
]


class Prepared:
    """One case set up and (once `start`ed) running against its own fake IAM."""

    def __init__(self, case: Case, iam: RecordingIAM, helper: HardHelper) -> None:
        self.case, self.iam, self.helper = case, iam, helper
        self.cached_secret: str | None = None
        mode = "refresh" if case.flavour in ("apikey-refresh", "stored-refresh") else "bearer"
        self.mode = "bearer" if case.expect == "cached" else mode
        self.env = {"IBMCLOUD_IAM_API_ENDPOINT": iam.url, "DOCKER_CREDENTIAL_ICR_MODE": self.mode,
                    "DOCKER_CREDENTIAL_ICR_DEADLINE": str(case.deadline)}
        self.secret = ""
        if case.flavour == "stored-refresh":
            self.secret = iam.add_refresh_token()
            assert helper.store("us.icr.io", "iamrefresh", self.secret).returncode == 0
        else:
            self.secret = iam.add_api_key()
            self.env["IBMCLOUD_API_KEY"] = self.secret
        if case.expect == "cached":
            warm = helper.get("us.icr.io", env=self.env)
            assert warm.returncode == 0, warm
            self.cached_secret = json.loads(warm.stdout)["Secret"]
            _age_cache(helper)
            iam.clear_log()
        iam.faults.extend(case.faults)
        if case.setup is not None:
            other = case.setup(iam)
            if other:
                self.env["IBMCLOUD_IAM_API_ENDPOINT"] = other
        self.started = 0.0
        self.elapsed = 0.0

    def run(self) -> Result:
        self.started = time.monotonic()
        res = self.helper.get("us.icr.io", env=self.env, timeout=self.case.deadline + 10)
        self.elapsed = time.monotonic() - self.started
        return res

    def check(self, res: Result) -> None:
        case = self.case
        assert "Traceback" not in res.stderr, res
        assert res.stdout.count("\n") == 1, res
        assert self.iam.count() <= MAX_REQUESTS, f"{self.iam.count()} IAM requests"
        if res.returncode == 0:
            assert case.expect in ("ok", "either", "cached"), f"{case.name}: answered {res.stdout[:80]}"
            got = json.loads(res.stdout)
            if case.expect == "cached":
                assert got["Secret"] == self.cached_secret
                assert "using the cached token" in res.stderr
            elif self.mode == "bearer":
                assert got["Username"] == "iambearer"
                assert self.iam.validate_access_token(got["Secret"]) is not None
            else:
                assert got["Username"] == "iamrefresh"
                assert self.iam.validate_refresh_token(got["Secret"]) is not None
        else:
            assert case.expect in ("error", "either"), f"{case.name}: {res.stdout.strip()}"
            one_line_error(res)
            assert "IAM" in res.stdout, res
            assert "credentials not found" not in res.stdout, res
        LEDGER.bump("IAM faults survived")
        LEDGER.notes.setdefault("iam faults", {})[case.name] = (
            f"{'answer' if res.returncode == 0 else 'one-line error'} in {self.elapsed:.1f} s, "
            f"deadline {case.deadline:.0f} s ({self.iam.count()} IAM requests)")


def _age_cache(helper: HardHelper) -> None:
    """Move every cached token into its refresh window: due for refresh, still valid."""
    for path in (helper.cache_dir / "tokens").glob("*.json"):
        doc = json.loads(path.read_text())
        doc["expires_in"], doc["expiration"] = 3600, time.time() + 300
        path.write_text(json.dumps(doc))


def _name(case: Case) -> str:
    return case.name.split(" (")[0].replace(" ", "-").replace(",", "").replace(":", "")


CASES = SLOW + FAST  # the longest first
PARALLEL = 14  # enough to overlap the deadlines, few enough not to starve 2 cores


@pytest.fixture(scope="module", params=_executables())
def fault_runs(request: pytest.FixtureRequest,
               tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, tuple[Prepared, Result]]]:
    """Every case against its own fake IAM, all at once: the suite waits about one
    deadline for the whole matrix instead of one per case."""
    import concurrent.futures

    executable = (_console_script() if request.param == "script"
                  else os.environ["DOCKER_CREDENTIAL_ICR_TEST_BINARY"])
    LEDGER.current_test = f"{__name__}::fault_runs[{request.param}]"
    iams: list[RecordingIAM] = []
    try:
        prepared = []
        for i, case in enumerate(CASES):
            iam = RecordingIAM().start()
            iams.append(iam)
            home = tmp_path_factory.mktemp(f"fault{i}") / "home"
            home.mkdir()
            prepared.append(Prepared(case, iam, HardHelper(executable, home)))
        with concurrent.futures.ThreadPoolExecutor(PARALLEL) as pool:
            results = list(pool.map(lambda p: p.run(), prepared))
    finally:
        for iam in iams:
            iam.stop()
    leaks = LEDGER.leaks(LEDGER.captures_of(LEDGER.current_test))
    assert leaks == [], "secrets printed:\n" + "\n".join(leaks)
    yield {p.case.name: (p, res) for p, res in zip(prepared, results, strict=True)}


@pytest.mark.parametrize("name", [c.name for c in CASES], ids=[_name(c) for c in CASES])
def test_fault(name: str, fault_runs: dict[str, tuple[Prepared, Result]]) -> None:
    prepared, res = fault_runs[name]
    prepared.check(res)
    if prepared.case.faults == [HOSTILE_FAULT]:
        assert "\r" not in res.stdout and "\u2028" not in res.stdout and "BXNIM0415E" in res.stdout


# -- TLS ----------------------------------------------------------------------------------


def _tls_env(iam: RecordingIAM, key: str, **extra: str) -> dict[str, str]:
    return {"IBMCLOUD_API_KEY": key, "DOCKER_CREDENTIAL_ICR_MODE": "bearer",
            "IBMCLOUD_IAM_API_ENDPOINT": iam.url, "DOCKER_CREDENTIAL_ICR_DEADLINE": str(DEADLINE),
            **extra}


def test_tls_untrusted_certificate_is_refused_then_trusted_with_ca_bundle(
        hard: HardHelper, tmp_path: Path) -> None:
    cert, key_file = make_cert(tmp_path / "tls")
    with TLSRecordingIAM(cert, key_file) as iam:
        key = iam.add_api_key()
        res = hard.get("us.icr.io", env=_tls_env(iam, key), timeout=BOUND)
        one_line_error(res)
        assert "TLS verification failed" in res.stdout and "REQUESTS_CA_BUNDLE" in res.stdout, res
        assert iam.count() == 0  # the key never crossed the untrusted connection
        LEDGER.bump("IAM faults survived")

        res = hard.get("us.icr.io", env=_tls_env(iam, key, REQUESTS_CA_BUNDLE=str(cert)), timeout=BOUND)
        assert res.returncode == 0, res
        assert iam.validate_access_token(json.loads(res.stdout)["Secret"]) is not None
        assert iam.count() == 1
        LEDGER.notes.setdefault("iam faults", {})["TLS: untrusted certificate"] = (
            "refused (one-line error, 0 IAM requests); answers once REQUESTS_CA_BUNDLE trusts it")


def test_tls_certificate_for_another_name_is_refused_even_when_trusted(
        hard: HardHelper, tmp_path: Path) -> None:
    cert, key_file = make_cert(tmp_path / "tls", ip=None, dns="iam.example.com")
    with TLSRecordingIAM(cert, key_file) as iam:
        key = iam.add_api_key()
        res = hard.get("us.icr.io", env=_tls_env(iam, key, REQUESTS_CA_BUNDLE=str(cert)), timeout=BOUND)
        one_line_error(res)
        assert "TLS verification failed" in res.stdout, res
        assert iam.count() == 0
        LEDGER.bump("IAM faults survived")
        LEDGER.notes.setdefault("iam faults", {})["TLS: trusted CA, wrong host name"] = (
            "refused (one-line error, 0 IAM requests)")
