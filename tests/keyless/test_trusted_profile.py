"""Trusted profiles from compute-resource tokens (source 3), against the fake IAM."""

from __future__ import annotations

import json
import os
import time
import uuid
from pathlib import Path

import pytest

from tests.conftest import Helper, assert_no_secret
from tests.fakes.fake_iam import GRANT_CR_TOKEN, FakeIAM

CR_TOKEN = "fakecr-" + "k" * 40


def env_for(iam: FakeIAM, **extra: str) -> dict[str, str]:
    # An empty search path: the machine's own /var/run/secrets never leaks into a test.
    return {"IBMCLOUD_IAM_API_ENDPOINT": iam.url, "DOCKER_CREDENTIAL_ICR_CR_TOKEN_PATHS": "", **extra}


def answer(res) -> dict[str, str]:
    assert res.returncode == 0, res
    assert res.stdout.count("\n") == 1
    return json.loads(res.stdout)


def cr_requests(iam: FakeIAM) -> list[dict]:
    return [r for r in iam.requests if r["grant_type"] == GRANT_CR_TOKEN]


def age_cache(helper: Helper) -> None:
    """Move every cached token into its refresh window."""
    for path in (helper.cache_dir / "tokens").glob("*.json"):
        doc = json.loads(path.read_text())
        doc["expires_in"], doc["expiration"] = 3600, time.time() + 300
        path.write_text(json.dumps(doc))


def test_cr_token_from_env(helper: Helper, iam: FakeIAM) -> None:
    ident = iam.add_cr_token(CR_TOKEN, profile="builder")
    res = helper.get("us.icr.io", env=env_for(iam, IBMCLOUD_CR_TOKEN=CR_TOKEN, IBMCLOUD_CR_PROFILE="builder"))
    got = answer(res)
    assert got["Username"] == "iambearer" and got["ServerURL"] == "us.icr.io"
    claims = iam.validate_access_token(got["Secret"])
    assert claims is not None and claims["iam_id"] == ident["profile_id"] and claims["sub_type"] == "Profile"
    (request,) = cr_requests(iam)
    assert request["profile"] == {"profile_name": "builder"}
    assert request["has_basic"] is False
    assert_no_secret(CR_TOKEN, res.stdout, res.stderr)


def test_cr_token_from_file_is_reread_at_each_exchange(helper: Helper, iam: FakeIAM, tmp_path: Path) -> None:
    token_file = tmp_path / "cr-token"
    token_file.write_text(CR_TOKEN + "\n")
    iam.add_cr_token(CR_TOKEN, profile="builder")
    env = env_for(iam, IBMCLOUD_CR_TOKEN=f"@{token_file}", IBMCLOUD_CR_PROFILE="builder")
    first = answer(helper.get("us.icr.io", env=env))
    assert iam.validate_access_token(first["Secret"]) is not None
    # Kubernetes rotates the file; the old token stops working.
    rotated = "fakecr-rotated-" + "r" * 30
    iam.add_cr_token(rotated, profile="builder")
    del iam.cr_tokens[CR_TOKEN]
    token_file.write_text(rotated)
    # Still fresh: served from the cache, the file is not even needed.
    assert answer(helper.get("us.icr.io", env=env))["Secret"] == first["Secret"]
    assert len(cr_requests(iam)) == 1
    age_cache(helper)
    res = helper.get("us.icr.io", env=env)
    second = answer(res)
    assert second["Secret"] != first["Secret"] and iam.validate_access_token(second["Secret"]) is not None
    assert len(cr_requests(iam)) == 2 and cr_requests(iam)[-1]["status"] == 200
    assert_no_secret(rotated, res.stdout, res.stderr)


def test_cr_token_file_missing_is_a_clear_error(helper: Helper, iam: FakeIAM, tmp_path: Path) -> None:
    res = helper.get("us.icr.io", env=env_for(iam, IBMCLOUD_CR_TOKEN=f"@{tmp_path}/nope",
                                              IBMCLOUD_CR_PROFILE="builder"))
    assert res.returncode == 1 and "IBMCLOUD_CR_TOKEN" in res.stdout and "does not exist" in res.stdout


def test_default_token_files_are_searched_in_order(helper: Helper, iam: FakeIAM, tmp_path: Path) -> None:
    vault, sa, ce = tmp_path / "vault-token", tmp_path / "sa-token", tmp_path / "ce-token"
    sa.write_text("fakecr-sa-" + "s" * 30)
    ce.write_text("fakecr-ce-" + "c" * 30)
    iam.add_cr_token("fakecr-sa-" + "s" * 30, profile="iks-workload")  # only the sa-token is linked
    paths = os.pathsep.join(str(p) for p in (vault, sa, ce))
    env = env_for(iam, DOCKER_CREDENTIAL_ICR_CR_TOKEN_PATHS=paths, IBMCLOUD_CR_PROFILE="iks-workload")
    got = answer(helper.get("de.icr.io", env=env))
    assert got["Username"] == "iambearer" and iam.validate_access_token(got["Secret"]) is not None
    # The first existing file wins: with vault-token present, it is the one exchanged.
    vault.write_text("fakecr-vault-" + "v" * 30)
    for path in (helper.cache_dir / "tokens").glob("*.json"):
        path.unlink()
    res = helper.get("de.icr.io", env=env)
    assert res.returncode == 1 and "BXNIM" in res.stdout
    assert_no_secret("fakecr-vault-" + "v" * 30, res.stdout, res.stderr)


def test_default_token_file_without_profile_is_explained(helper: Helper, iam: FakeIAM,
                                                         tmp_path: Path) -> None:
    token = tmp_path / "sa-token"
    token.write_text(CR_TOKEN)
    res = helper.get("us.icr.io", env=env_for(iam, DOCKER_CREDENTIAL_ICR_CR_TOKEN_PATHS=str(token)))
    # Still Docker's literal "not found" (the file may serve something else) — explained on stderr.
    assert (res.returncode, res.stdout) == (1, "credentials not found in native keychain\n")
    assert "IBMCLOUD_CR_PROFILE" in res.stderr and str(token) in res.stderr
    assert iam.count() == 0
    assert_no_secret(CR_TOKEN, res.stdout, res.stderr)


def test_cr_token_env_without_profile_is_an_error(helper: Helper, iam: FakeIAM) -> None:
    res = helper.get("us.icr.io", env=env_for(iam, IBMCLOUD_CR_TOKEN=CR_TOKEN))
    assert res.returncode == 1 and res.stdout.count("\n") == 1
    assert "IBMCLOUD_CR_PROFILE" in res.stdout and "credentials not found" not in res.stdout
    assert iam.count() == 0
    assert_no_secret(CR_TOKEN, res.stdout, res.stderr)


PROFILE_ID = "Profile-" + str(uuid.uuid4())
BARE_UUID = str(uuid.uuid4())
PROFILE_CRN = "crn:v1:bluemix:public:iam-identity::a/f4k3acc0un7::profile:" + PROFILE_ID


@pytest.mark.parametrize(("given", "field"), [
    ("builder", "profile_name"),
    (PROFILE_ID, "profile_id"),
    (BARE_UUID, "profile_id"),
    (PROFILE_CRN, "profile_crn"),
])
def test_each_profile_form_sends_its_field(helper: Helper, iam: FakeIAM, given: str, field: str) -> None:
    pid = BARE_UUID if given == BARE_UUID else PROFILE_ID
    ident = iam.add_cr_token(CR_TOKEN, profile="builder", profile_id=pid,
                             profile_crn=PROFILE_CRN if given == PROFILE_CRN else None)
    assert ident[field] == given
    env = env_for(iam, IBMCLOUD_CR_TOKEN=CR_TOKEN, IBMCLOUD_CR_PROFILE=given)
    got = answer(helper.get("us.icr.io", env=env))
    assert iam.validate_access_token(got["Secret"])["iam_id"] == pid
    assert cr_requests(iam)[-1]["profile"] == {field: given}


def test_unlinked_profile_is_iam_refusal_with_advice(helper: Helper, iam: FakeIAM) -> None:
    iam.add_cr_token(CR_TOKEN, profile="builder")
    iam.add_cr_token("fakecr-other-" + "o" * 30, profile="deployer")
    env = env_for(iam, IBMCLOUD_CR_TOKEN=CR_TOKEN, IBMCLOUD_CR_PROFILE="deployer")
    res = helper.get("us.icr.io", env=env)
    assert res.returncode == 1 and res.stdout.count("\n") == 1
    assert "BXNIM0539E" in res.stdout and "trust rule" in res.stdout and "deployer" in res.stdout
    assert "ibmcloud login" not in res.stdout and "credentials not found" not in res.stdout
    assert_no_secret(CR_TOKEN, res.stdout, res.stderr)


@pytest.mark.parametrize("mode", ["auto", "refresh", "bearer", "apikey"])
def test_every_mode_answers_bearer_and_caches(helper: Helper, iam: FakeIAM, mode: str) -> None:
    iam.add_cr_token(CR_TOKEN, profile="builder")
    env = env_for(iam, IBMCLOUD_CR_TOKEN=CR_TOKEN, IBMCLOUD_CR_PROFILE="builder",
                  DOCKER_CREDENTIAL_ICR_MODE=mode)
    first = answer(helper.get("us.icr.io", env=env))
    second = answer(helper.get("uk.icr.io", env=env))
    assert first["Username"] == second["Username"] == "iambearer"
    assert first["Secret"] == second["Secret"] and iam.count() == 1


def test_api_key_wins_and_later_sources_are_not_even_looked_at(helper: Helper, iam: FakeIAM) -> None:
    # IBMCLOUD_CR_TOKEN without a profile would be an error — if source 3 were consulted.
    env = env_for(iam, IBMCLOUD_API_KEY="fakekey-precedence-1234", IBMCLOUD_CR_TOKEN=CR_TOKEN)
    got = answer(helper.get("us.icr.io", env=env))
    assert got["Username"] == "iamapikey" and iam.count() == 0


def test_stored_wins_over_trusted_profile(helper: Helper, iam: FakeIAM) -> None:
    iam.add_cr_token(CR_TOKEN, profile="builder")
    env = env_for(iam, IBMCLOUD_CR_TOKEN=CR_TOKEN, IBMCLOUD_CR_PROFILE="builder")
    assert helper.store("us.icr.io", "iamapikey", "fakekey-stored-5678").returncode == 0
    assert answer(helper.get("us.icr.io", env=env))["Username"] == "iamapikey"
    assert answer(helper.get("uk.icr.io", env=env))["Username"] == "iambearer"


def test_trusted_profile_wins_over_ibmcloud_session(helper: Helper, iam: FakeIAM, tmp_path: Path) -> None:
    iam.add_cr_token(CR_TOKEN, profile="builder")
    cli_home = tmp_path / "cli"
    (cli_home / ".bluemix").mkdir(parents=True)
    session = {"IAMRefreshToken": iam.add_refresh_token()}
    (cli_home / ".bluemix" / "config.json").write_text(json.dumps(session))
    env = env_for(iam, IBMCLOUD_CR_TOKEN=CR_TOKEN, IBMCLOUD_CR_PROFILE="builder", IBMCLOUD_HOME=str(cli_home))
    assert answer(helper.get("us.icr.io", env=env))["Username"] == "iambearer"
    assert [r["grant_type"] for r in iam.requests] == [GRANT_CR_TOKEN]


def test_entitled_registry_never_gets_a_trusted_profile(helper: Helper, iam: FakeIAM) -> None:
    iam.add_cr_token(CR_TOKEN, profile="builder")
    res = helper.get("cp.icr.io", env=env_for(iam, IBMCLOUD_CR_TOKEN=CR_TOKEN, IBMCLOUD_CR_PROFILE="builder"))
    assert (res.returncode, res.stdout) == (1, "credentials not found in native keychain\n")
    assert iam.count() == 0


def test_debug_log_never_shows_the_tokens(helper: Helper, iam: FakeIAM, tmp_path: Path) -> None:
    iam.add_cr_token(CR_TOKEN, profile="builder")
    log_file = tmp_path / "helper.log"
    env = env_for(iam, IBMCLOUD_CR_TOKEN=CR_TOKEN, IBMCLOUD_CR_PROFILE="builder",
                  DOCKER_CREDENTIAL_ICR_LOG="debug", DOCKER_CREDENTIAL_ICR_LOG_FILE=str(log_file))
    res = helper.get("us.icr.io", env=env)
    token = answer(res)["Secret"]
    assert "builder" in res.stderr  # the profile is not a secret: it stays readable
    assert_no_secret(CR_TOKEN, res.stdout, res.stderr, log_file.read_text())
    assert_no_secret(token, res.stderr, log_file.read_text())


def test_warm_cache_get_imports_no_network_stack(helper: Helper, iam: FakeIAM) -> None:
    import subprocess
    import sys

    iam.add_cr_token(CR_TOKEN, profile="builder")
    env = {**helper.env, **env_for(iam, IBMCLOUD_CR_TOKEN=CR_TOKEN, IBMCLOUD_CR_PROFILE="builder")}
    answer(helper.get("us.icr.io", env=env))
    proc = subprocess.run([sys.executable, "-X", "importtime", "-m", "docker_credential_icr", "get"],
                          input=b"us.icr.io", capture_output=True, env=env, check=False, timeout=60)
    assert proc.returncode == 0 and iam.count() == 1, proc
    names = {line.rsplit("|", 1)[1].strip() for line in proc.stderr.decode().splitlines()
             if line.startswith("import time:") and "|" in line}
    assert "docker_credential_icr.crtoken" in names
    network = ("requests", "urllib3", "http", "ssl", "socket")
    assert sorted(n for n in names if n.split(".")[0] in network) == []


def test_empty_token_file_is_a_clear_error(helper: Helper, iam: FakeIAM, tmp_path: Path) -> None:
    token = tmp_path / "sa-token"
    token.write_text("\n")
    env = env_for(iam, DOCKER_CREDENTIAL_ICR_CR_TOKEN_PATHS=str(token), IBMCLOUD_CR_PROFILE="builder")
    res = helper.get("us.icr.io", env=env)
    assert res.returncode == 1 and f"token file {token} is empty" in res.stdout
    assert iam.count() == 0
