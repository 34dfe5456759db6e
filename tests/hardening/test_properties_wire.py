"""Property-based tests through the real process: arbitrary bytes on stdin for every action.

Whatever a client writes, the helper must: exit 0 or 1, print at most one line on
stdout, never a traceback, and never print a secret it holds (an API key in the
environment, credentials stored beforehand) — except the `get` answer for an exact
ICR host, which must then be the right secret for that host.
"""

from __future__ import annotations

import json
import os

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from docker_credential_icr.hosts import BUILTIN_HOSTS, ENTITLED_HOST, canonical_host
from tests.fakes._util import free_port
from tests.hardening._support import LEDGER, HardHelper
from tests.hardening.test_properties_inprocess import STORE_VALUES, anything, benign, look_alikes

# Each example starts a process (~20-50 ms); HARDENING_WIRE_EXAMPLES raises it for a long run.
EXAMPLES = int(os.environ.get("HARDENING_WIRE_EXAMPLES", "60"))

ENV_KEY = LEDGER.new_secret("env-apikey")
STORED = {
    "us.icr.io": ("iamapikey", LEDGER.new_secret("stored-apikey")),
    "au.icr.io": ("<token>", LEDGER.new_secret("stored-identity-token")),
    ENTITLED_HOST: ("cp", LEDGER.new_secret("stored-entitlement-key")),
}
BASELINE = (json.dumps({"version": 1, "auths": {h: {"Username": u, "Secret": s}
                                                for h, (u, s) in sorted(STORED.items())}},
                       indent=2) + "\n").encode()
ALL_SECRETS = [ENV_KEY, *(s for _, s in STORED.values())]


def _text_bytes(strategy: st.SearchStrategy[str]) -> st.SearchStrategy[bytes]:
    return strategy.map(lambda s: s.encode("utf-8", "surrogatepass"))


@st.composite
def mangled(draw: st.DrawFn, valid: bytes) -> bytes:
    """A valid request with bytes flipped, inserted or cut."""
    data = bytearray(valid)
    for _ in range(draw(st.integers(1, 4))):
        op = draw(st.sampled_from(["flip", "insert", "cut"]))
        i = draw(st.integers(0, max(len(data) - 1, 0)))
        if op == "flip" and data:
            data[i] = draw(st.integers(0, 255))
        elif op == "insert":
            data[i:i] = draw(st.binary(min_size=1, max_size=3))
        elif data:
            del data[i:]
    return bytes(data)


def _store_doc() -> st.SearchStrategy[bytes]:
    servers = st.one_of(look_alikes(), benign().map(lambda p: p[1]), st.sampled_from(sorted(BUILTIN_HOSTS)),
                        STORE_VALUES)
    users = st.one_of(st.sampled_from(["iamapikey", "iamrefresh", "iambearer", "<token>", "cp", "", "bob"]),
                      STORE_VALUES)
    doc = st.fixed_dictionaries({"ServerURL": servers, "Username": users, "Secret": STORE_VALUES})
    return doc.map(lambda d: json.dumps(d).encode())


def requests_for(action: str) -> st.SearchStrategy[bytes]:
    common = [
        st.binary(max_size=300),
        _text_bytes(anything()),
        st.just(b"x" * 70_000),  # over the 64 KiB limit
        st.sampled_from([b"", b"\n", b"\xff", b"\xc3\x28", b"\xed\xa0\x80", b"us.icr.io\x00",
                         b"\xef\xbb\xbfus.icr.io"]),
    ]
    if action == "store":
        valid = json.dumps({"ServerURL": "us.icr.io", "Username": "iamapikey", "Secret": "k-12345"}).encode()
        return st.one_of(*common, _store_doc(), mangled(valid))
    return st.one_of(*common, _text_bytes(benign().map(lambda p: p[1])), mangled(b"https://us.icr.io/v2/\n"))


def _reset(helper: HardHelper) -> None:
    helper.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    helper.credentials_file.write_bytes(BASELINE)
    os.chmod(helper.credentials_file, 0o600)


def _expected_answer(host: str) -> tuple[str, str] | None:
    if host in STORED:
        return STORED[host]
    if host in BUILTIN_HOSTS and host != ENTITLED_HOST:
        return "iamapikey", ENV_KEY
    return None


def _check(helper: HardHelper, action: str, stdin: bytes) -> None:
    _reset(helper)
    res = helper.run(action, stdin=stdin, env=ENV)
    LEDGER.bump(f"inputs tried: arbitrary stdin for `{action}` (subprocess)")
    assert res.returncode in (0, 1), res
    assert "Traceback" not in res.stderr, res
    assert res.stdout.count("\n") <= 1 and (res.stdout == "" or res.stdout.endswith("\n")), res
    for value in ALL_SECRETS:
        assert value not in res.stderr, "a secret on stderr"
    try:
        request = stdin.decode("utf-8")
    except UnicodeDecodeError:
        request = None

    if action == "get":
        host = canonical_host(request) if request is not None and len(stdin) <= 65536 else None
        expected = _expected_answer(host) if host else None
        if res.returncode == 0:
            assert expected is not None, f"get answered for {request!r}"
            doc = json.loads(res.stdout)
            assert doc == {"ServerURL": request.strip(), "Username": expected[0], "Secret": expected[1]}
        else:
            assert expected is None, f"no answer for the ICR host in {request!r}: {res.stdout}"
            for value in ALL_SECRETS:
                assert value not in res.stdout
        return
    for value in ALL_SECRETS:
        assert value not in res.stdout, "a secret on stdout"
    stored = json.loads(helper.credentials_file.read_text())["auths"]
    if action == "store":
        if res.returncode == 0:
            # As Go (and the helper) read it: keys case-insensitive, the last non-null wins.
            doc = {k.lower(): v for k, v in json.loads(request).items() if v is not None}
            host = canonical_host(doc["serverurl"])
            assert host in BUILTIN_HOSTS
            assert stored[host] == {"Username": doc["username"], "Secret": doc["secret"]}
        else:
            assert helper.credentials_file.read_bytes() == BASELINE
    elif action == "erase":
        if res.returncode == 1:
            assert helper.credentials_file.read_bytes() == BASELINE
        else:
            host = canonical_host(request or "")
            assert set(stored) == set(STORED) - {host}
    else:  # list ignores its stdin
        assert res.returncode == 0
        assert json.loads(res.stdout) == {h: u for h, (u, _) in STORED.items()}


ENV = {"IBMCLOUD_API_KEY": ENV_KEY, "DOCKER_CREDENTIAL_ICR_MODE": "auto",
       # Nothing here may need IAM; if something tried, it meets a closed port at once.
       "IBMCLOUD_IAM_API_ENDPOINT": f"http://127.0.0.1:{free_port()}",
       "DOCKER_CREDENTIAL_ICR_DEADLINE": "3"}
WIRE = settings(max_examples=EXAMPLES, deadline=None, database=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


@pytest.mark.parametrize("action", ["get", "store", "erase", "list"])
def test_arbitrary_stdin(hard: HardHelper, action: str) -> None:
    @WIRE
    @given(requests_for(action))
    @example(b"us.icr.io")
    @example(b"u\xe2\x84\xaa.icr.io")  # KELVIN SIGN
    @example(b'{"ServerURL":"us.icr.io","Username":"<token>","Secret":"a\\ud800b"}')
    @example(b'{"ServerURL":"au.icr.io","Username":"<token>","Secret":"\\u2028\\n"}')
    def check(stdin: bytes) -> None:
        _check(hard, action, stdin)

    check()


def test_stored_odd_secrets_come_back_as_one_line(hard: HardHelper) -> None:
    """What `store` accepted, `get` answers on one line, as Go would (a lone surrogate: U+FFFD)."""
    secrets = ["a\ud800b", "line\nbreak\u2028sep", "<tag>&amp;", "\x00\x1f\x7f", "\U0001f600" * 10]
    for secret in secrets:
        payload = json.dumps({"ServerURL": "au.icr.io", "Username": "<token>", "Secret": secret})
        assert hard.run("store", stdin=payload).returncode == 0
        res = hard.get("au.icr.io")
        assert res.returncode == 0 and res.stdout.count("\n") == 1, res
        want = "".join("\ufffd" if "\ud800" <= c <= "\udfff" else c for c in secret)
        assert json.loads(res.stdout)["Secret"] == want
