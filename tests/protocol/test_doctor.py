"""`doctor`: the right verdict for each situation, and never a secret."""

from __future__ import annotations

import json
import os
import socket

import pytest

from tests.conftest import Helper, assert_no_secret
from tests.fakes.fake_iam import FakeIAM

KEY = "doctor-apikey-0123456789abcdef"


def routed(helper: Helper, *hosts: str) -> None:
    path = helper.home / "docker" / "config.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"credHelpers": {h: "icr" for h in hosts}}))


def closed_port_url() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{s.getsockname()[1]}"


def doctor(helper: Helper, *args: str, env: dict[str, str] | None = None):
    return helper.run("doctor", *args, env={"IBMCLOUD_IAM_API_ENDPOINT": closed_port_url(), **(env or {})})


def test_no_credentials_fails(helper: Helper) -> None:
    routed(helper, "us.icr.io")
    res = doctor(helper, "--offline")
    assert res.returncode == 1
    assert "us.icr.io: no credentials" in res.stdout and "IBMCLOUD_API_KEY" in res.stdout


def test_env_key_passes_without_showing_it(helper: Helper) -> None:
    routed(helper, "us.icr.io", "de.icr.io")
    res = doctor(helper, "--offline", env={"IBMCLOUD_API_KEY": KEY})
    assert res.returncode == 0, res.stdout
    assert "API key …cdef from IBMCLOUD_API_KEY" in res.stdout
    assert "answers as iamapikey" in res.stdout
    assert_no_secret(KEY, res.stdout, res.stderr)


def test_stored_key(helper: Helper) -> None:
    routed(helper, "uk.icr.io")
    helper.store("uk.icr.io", "iamapikey", KEY)
    res = doctor(helper, "--offline")
    assert res.returncode == 0, res.stdout
    assert "from stored for uk.icr.io" in res.stdout
    assert_no_secret(KEY, res.stdout, res.stderr)


def test_host_not_routed_fails(helper: Helper) -> None:
    routed(helper, "us.icr.io")
    res = doctor(helper, "jp.icr.io", "--offline", env={"IBMCLOUD_API_KEY": KEY})
    assert res.returncode == 1 and "jp.icr.io is not in credHelpers" in res.stdout


def test_ibmcloud_session_with_iam(helper: Helper, tmp_path) -> None:
    routed(helper, "us.icr.io")
    with FakeIAM() as iam:
        refresh = iam.add_refresh_token()
        (tmp_path / "cli" / ".bluemix").mkdir(parents=True)
        (tmp_path / "cli" / ".bluemix" / "config.json").write_text(
            json.dumps({"IAMRefreshToken": refresh, "IAMEndpoint": iam.url}))
        env = {"IBMCLOUD_HOME": str(tmp_path / "cli")}
        res = helper.run("doctor", env=env)
        assert res.returncode == 0, res.stdout
        assert "refresh token" in res.stdout and "ibmcloud CLI session" in res.stdout
        assert "answers as iamrefresh" in res.stdout
        assert f"IAM endpoint {iam.url}/identity/token answers" in res.stdout
        assert_no_secret(refresh, res.stdout, res.stderr)
        # After a get the cached token's expiry is shown, still without any token.
        got = json.loads(helper.get("us.icr.io", env=env).stdout)["Secret"]
        res = helper.run("doctor", "--offline", env=env)
        assert "cached token valid until" in res.stdout
        assert_no_secret(refresh, res.stdout, res.stderr)
        assert_no_secret(got, res.stdout, res.stderr)


def test_unreachable_iam_fails_when_mode_needs_it(helper: Helper) -> None:
    routed(helper, "us.icr.io")
    res = doctor(helper, env={"IBMCLOUD_API_KEY": KEY, "DOCKER_CREDENTIAL_ICR_MODE": "refresh"})
    assert res.returncode == 1
    assert "unreachable" in res.stdout and "needed for this mode" in res.stdout
    # With API keys answered as iamapikey, IAM being away is only a warning.
    res = doctor(helper, env={"IBMCLOUD_API_KEY": KEY})
    assert res.returncode == 0 and "[warning]" in res.stdout
    assert_no_secret(KEY, res.stdout, res.stderr)


@pytest.mark.skipif(os.name == "nt", reason="POSIX modes")
def test_wrong_file_permissions_fail(helper: Helper) -> None:
    routed(helper, "us.icr.io")
    helper.store("us.icr.io", "iamapikey", KEY)
    os.chmod(helper.credentials_file, 0o644)
    res = doctor(helper, "--offline")
    assert res.returncode == 1
    assert "has mode 644, should be 600" in res.stdout
    assert_no_secret(KEY, res.stdout, res.stderr)


def test_doctor_help(helper: Helper) -> None:
    res = helper.run("doctor", "--help")
    assert res.returncode == 0 and "--offline" in res.stdout


def test_trusted_profile_identity(helper: Helper) -> None:
    routed(helper, "us.icr.io")
    cr_token = "cr-token-for-doctor-0123456789"
    res = doctor(helper, "--offline", env={"IBMCLOUD_CR_TOKEN": cr_token,
                                           "IBMCLOUD_CR_PROFILE": "my-profile"})
    assert res.returncode == 0, res.stdout
    assert "compute-resource token" in res.stdout and "answers as iambearer" in res.stdout
    assert_no_secret(cr_token, res.stdout, res.stderr)
