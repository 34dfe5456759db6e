"""refresh/bearer modes, the token cache and IAM faults, against the fake IAM."""

from __future__ import annotations

import json
import stat
import subprocess
import time

import pytest

from tests.conftest import Helper, assert_no_secret
from tests.fakes.fake_iam import GRANT_APIKEY, GRANT_REFRESH, FakeIAM


def env_for(iam: FakeIAM, key: str, mode: str, **extra: str) -> dict[str, str]:
    return {"IBMCLOUD_API_KEY": key, "DOCKER_CREDENTIAL_ICR_MODE": mode,
            "IBMCLOUD_IAM_API_ENDPOINT": iam.url, **extra}


def answer(res) -> dict[str, str]:
    assert res.returncode == 0, res
    assert res.stdout.count("\n") == 1
    return json.loads(res.stdout)


def cache_files(helper: Helper) -> list:
    return sorted((helper.cache_dir / "tokens").glob("*.json"))


def test_refresh_mode_answers_iam_refresh_token(helper: Helper, iam: FakeIAM) -> None:
    key = iam.add_api_key()
    res = helper.get("us.icr.io", env=env_for(iam, key, "refresh"))
    got = answer(res)
    assert got["Username"] == "iamrefresh"
    assert iam.validate_refresh_token(got["Secret"]) is not None
    assert_no_secret(key, res.stdout, res.stderr)
    assert iam.count(GRANT_APIKEY) == 1
    # The exchange used the CLI client, so IAM issued a real refresh token.
    assert iam.requests[-1]["has_basic"] is True


def test_bearer_mode_answers_access_token(helper: Helper, iam: FakeIAM) -> None:
    key = iam.add_api_key()
    res = helper.get("de.icr.io", env=env_for(iam, key, "bearer"))
    got = answer(res)
    assert got["Username"] == "iambearer"
    assert iam.validate_access_token(got["Secret"]) is not None
    assert_no_secret(key, res.stdout, res.stderr)


def test_auto_mode_with_key_makes_no_request(helper: Helper, iam: FakeIAM) -> None:
    key = iam.add_api_key()
    got = answer(helper.get("us.icr.io", env=env_for(iam, key, "auto")))
    assert got == {"ServerURL": "us.icr.io", "Username": "iamapikey", "Secret": key}
    assert iam.count() == 0


def test_second_get_is_served_from_cache(helper: Helper, iam: FakeIAM) -> None:
    key = iam.add_api_key()
    env = env_for(iam, key, "bearer")
    first = answer(helper.get("us.icr.io", env=env))
    second = answer(helper.get("uk.icr.io", env=env))
    assert iam.count() == 1
    assert first["Secret"] == second["Secret"]
    # Both modes share the one exchange (it yields both tokens).
    answer(helper.get("us.icr.io", env={**env, "DOCKER_CREDENTIAL_ICR_MODE": "refresh"}))
    assert iam.count() == 1


def test_cache_files_are_private_and_keyless(helper: Helper, iam: FakeIAM) -> None:
    key = iam.add_api_key()
    answer(helper.get("us.icr.io", env=env_for(iam, key, "refresh")))
    files = cache_files(helper)
    assert len(files) == 1
    assert stat.S_IMODE(files[0].stat().st_mode) == 0o600
    assert stat.S_IMODE(files[0].parent.stat().st_mode) == 0o700
    assert key not in files[0].read_text() and key not in files[0].name


def age_cache(helper: Helper, into_window: bool = True, expired: bool = False) -> None:
    """Move cached tokens in time: into the last 20% of their lifetime, or past it."""
    now = time.time()
    for path in cache_files(helper):
        doc = json.loads(path.read_text())
        doc["expires_in"] = 3600
        doc["expiration"] = now - 10 if expired else (now + 300 if into_window else now + 3000)
        path.write_text(json.dumps(doc))


def test_get_inside_refresh_window_makes_exactly_one_request(helper: Helper, iam: FakeIAM) -> None:
    key = iam.add_api_key()
    env = env_for(iam, key, "bearer")
    first = answer(helper.get("us.icr.io", env=env))
    age_cache(helper)
    second = answer(helper.get("us.icr.io", env=env))
    assert iam.count() == 2
    assert second["Secret"] != first["Secret"]
    third = answer(helper.get("us.icr.io", env=env))
    assert iam.count() == 2 and third["Secret"] == second["Secret"]


def test_cold_stampede_shares_one_request(helper: Helper, iam: FakeIAM) -> None:
    key = iam.add_api_key()
    iam.delay = 0.5  # keep the first request in flight while the others arrive
    env = {**helper.env, **env_for(iam, key, "refresh")}
    procs = [subprocess.Popen([helper.executable, "get"], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
             for _ in range(20)]
    outs = [p.communicate(b"us.icr.io", timeout=60) for p in procs]
    assert [p.returncode for p in procs] == [0] * 20, outs
    secrets = {json.loads(out)["Secret"] for out, _ in outs}
    assert len(secrets) == 1
    assert iam.count() == 1


def test_transient_errors_are_retried(helper: Helper, iam: FakeIAM) -> None:
    key = iam.add_api_key()
    iam.faults.extend([500, 500])
    got = answer(helper.get("us.icr.io", env=env_for(iam, key, "bearer")))
    assert iam.validate_access_token(got["Secret"]) is not None
    assert iam.count() == 3


def test_429_with_retry_after_is_honoured(helper: Helper, iam: FakeIAM) -> None:
    key = iam.add_api_key()
    iam.faults.extend([("429", 1), 503])
    got = answer(helper.get("us.icr.io", env=env_for(iam, key, "bearer")))
    assert got["Username"] == "iambearer"
    assert iam.count() == 3


def test_iam_down_with_valid_cache_uses_cache(helper: Helper, iam: FakeIAM) -> None:
    key = iam.add_api_key()
    env = env_for(iam, key, "bearer", DOCKER_CREDENTIAL_ICR_DEADLINE="5")
    first = answer(helper.get("us.icr.io", env=env))
    age_cache(helper)  # due for refresh, still valid
    iam.down()
    res = helper.get("us.icr.io", env=env)
    assert answer(res)["Secret"] == first["Secret"]
    assert "using the cached token" in res.stderr
    assert_no_secret(first["Secret"], res.stderr)


def test_iam_down_without_cache_is_a_clear_error(helper: Helper, iam: FakeIAM) -> None:
    key = iam.add_api_key()
    iam.down()
    res = helper.get("us.icr.io", env=env_for(iam, key, "bearer", DOCKER_CREDENTIAL_ICR_DEADLINE="5"))
    assert res.returncode == 1 and res.stdout.count("\n") == 1
    assert "IAM" in res.stdout and "credentials not found" not in res.stdout
    assert_no_secret(key, res.stdout, res.stderr)


def test_iam_hanging_ends_within_the_deadline(helper: Helper, iam: FakeIAM) -> None:
    key = iam.add_api_key()
    iam.faults.append("hang")
    # The subprocess timeout is the bound: a helper that ignored its 2 s deadline
    # would still be hanging (the fake hangs until it is stopped).
    res = helper.get("us.icr.io", env=env_for(iam, key, "bearer", DOCKER_CREDENTIAL_ICR_DEADLINE="2"),
                     timeout=20)
    assert res.returncode == 1 and res.stdout.count("\n") == 1
    assert "did not answer in time" in res.stdout


def test_bad_key_reports_iam_error_code(helper: Helper, iam: FakeIAM) -> None:
    bad = "not-a-valid-key-1234567890"
    res = helper.get("us.icr.io", env=env_for(iam, bad, "refresh"))
    assert res.returncode == 1 and res.stdout.count("\n") == 1
    assert "BXNIM0415E" in res.stdout
    assert "credentials not found" not in res.stdout
    assert_no_secret(bad, res.stdout, res.stderr)


@pytest.mark.parametrize("fault", ["garbage", "no_access_token", "truncated"])
def test_unusable_iam_answers_are_clear_errors(helper: Helper, iam: FakeIAM, fault: str) -> None:
    key = iam.add_api_key()
    iam.faults.extend([fault] * 3)
    res = helper.get("us.icr.io", env=env_for(iam, key, "bearer", DOCKER_CREDENTIAL_ICR_DEADLINE="5"))
    assert res.returncode == 1 and res.stdout.count("\n") == 1, res
    assert "IAM" in res.stdout and "Traceback" not in res.stderr
    assert_no_secret(key, res.stdout, res.stderr)


def test_corrupt_cache_is_rebuilt(helper: Helper, iam: FakeIAM) -> None:
    key = iam.add_api_key()
    env = env_for(iam, key, "bearer")
    answer(helper.get("us.icr.io", env=env))
    for path in cache_files(helper):
        path.write_text("{not json")
    got = answer(helper.get("us.icr.io", env=env))
    assert iam.validate_access_token(got["Secret"]) is not None
    assert iam.count() == 2
    json.loads(cache_files(helper)[0].read_text())


def test_plain_http_iam_is_refused_off_loopback(helper: Helper) -> None:
    res = helper.get("us.icr.io", env={"IBMCLOUD_API_KEY": "k-123456", "DOCKER_CREDENTIAL_ICR_MODE": "bearer",
                                       "IBMCLOUD_IAM_API_ENDPOINT": "http://iam.example.com"})
    assert res.returncode == 1 and "https://" in res.stdout
    assert_no_secret("k-123456", res.stdout, res.stderr)


def test_endpoint_with_token_path_is_accepted(helper: Helper, iam: FakeIAM) -> None:
    key = iam.add_api_key()
    env = env_for(iam, key, "bearer", IBMCLOUD_IAM_API_ENDPOINT=iam.url + "/identity/token/")
    assert answer(helper.get("us.icr.io", env=env))["Username"] == "iambearer"


def test_stored_refresh_token_is_refreshed_and_rotation_kept(helper: Helper, iam: FakeIAM) -> None:
    original = iam.add_refresh_token()
    env = {"IBMCLOUD_IAM_API_ENDPOINT": iam.url}
    assert helper.store("us.icr.io", "iamrefresh", original).returncode == 0
    got = answer(helper.get("us.icr.io", env=env))
    assert got["Username"] == "iamrefresh"
    assert got["Secret"] != original and iam.validate_refresh_token(got["Secret"]) is not None
    stored = json.loads(helper.credentials_file.read_text())["auths"]["us.icr.io"]
    assert stored == {"Username": "iamrefresh", "Secret": got["Secret"]}
    # The next get finds the rotated token's cache entry: no IAM request.
    again = answer(helper.get("us.icr.io", env=env))
    assert again["Secret"] == got["Secret"] and iam.count() == 1


def test_stored_bearer_is_returned_until_it_expires(helper: Helper, iam: FakeIAM) -> None:
    import base64

    def jwt(exp: float) -> str:
        enc = lambda d: base64.urlsafe_b64encode(json.dumps(d).encode()).decode().rstrip("=")  # noqa: E731
        return f"{enc({'alg': 'none'})}.{enc({'exp': int(exp), 'sub': 'x'})}.c2ln"

    fresh, stale = jwt(time.time() + 3000), jwt(time.time() - 60)
    helper.store("us.icr.io", "iambearer", fresh)
    assert answer(helper.get("us.icr.io")) == {"ServerURL": "us.icr.io", "Username": "iambearer",
                                              "Secret": fresh}
    helper.store("us.icr.io", "iambearer", stale)
    res = helper.get("us.icr.io")
    assert res.returncode == 1 and "expired" in res.stdout and "iamapikey" in res.stdout
    assert_no_secret(stale, res.stdout, res.stderr)
    assert iam.count() == 0


def test_ibmcloud_session_is_refreshed_and_never_written(helper: Helper, iam: FakeIAM, tmp_path) -> None:
    refresh = iam.add_refresh_token()
    cli_home = tmp_path / "cli"
    (cli_home / ".bluemix").mkdir(parents=True)
    config = cli_home / ".bluemix" / "config.json"
    config.write_text(json.dumps({"IAMEndpoint": iam.url, "IAMToken": "Bearer old.access.token",
                                  "IAMRefreshToken": refresh, "Region": "us-south"}, indent=2))
    before = config.read_bytes()
    res = helper.get("us.icr.io", env={"IBMCLOUD_HOME": str(cli_home)})
    got = answer(res)
    assert got["Username"] == "iamrefresh"
    assert got["Secret"] != refresh and iam.validate_refresh_token(got["Secret"]) is not None
    assert iam.count(GRANT_REFRESH) == 1
    assert config.read_bytes() == before
    assert_no_secret(refresh, res.stderr)
    # In bearer mode the same session yields an access token, from the same cache entry.
    got = answer(helper.get("us.icr.io", env={"IBMCLOUD_HOME": str(cli_home),
                                              "DOCKER_CREDENTIAL_ICR_MODE": "bearer"}))
    assert iam.validate_access_token(got["Secret"]) is not None
    assert iam.count() == 1
    assert config.read_bytes() == before


def test_ibmcloud_config_home_and_ibmcloud_dir(helper: Helper, iam: FakeIAM, tmp_path) -> None:
    refresh = iam.add_refresh_token()
    home = tmp_path / "h"
    (home / ".ibmcloud").mkdir(parents=True)
    (home / ".bluemix").mkdir()
    (home / ".ibmcloud" / "config.json").write_text(json.dumps({"IAMRefreshToken": refresh,
                                                                 "IAMEndpoint": iam.url}))
    (home / ".bluemix" / "config.json").write_text(json.dumps({"IAMRefreshToken": "stale-bluemix"}))
    assert answer(helper.get("us.icr.io", env={"IBMCLOUD_HOME": str(home)}))["Username"] == "iamrefresh"
    confdir = tmp_path / "confhome"
    confdir.mkdir()
    (confdir / "config.json").write_text(json.dumps({"IAMRefreshToken": refresh, "IAMEndpoint": iam.url}))
    got = answer(helper.get("us.icr.io", env={"IBMCLOUD_CONFIG_HOME": str(confdir)}))
    assert iam.validate_refresh_token(got["Secret"]) is not None


def test_warm_cache_get_imports_no_requests(helper: Helper, iam: FakeIAM) -> None:
    from tests.protocol.test_hot_path import HEAVY, imported_modules

    key = iam.add_api_key()
    env = env_for(iam, key, "refresh")
    answer(helper.get("us.icr.io", env=env))
    names = imported_modules(helper, "us.icr.io", env)
    assert sorted(n for n in names if n.split(".")[0] in HEAVY or n in HEAVY) == []
    assert iam.count() == 1
