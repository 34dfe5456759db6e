"""VPC instance identity (source 3b), against a fake metadata service and the fake IAM."""

from __future__ import annotations

import json
import time

import pytest

from tests.conftest import Helper, assert_no_secret
from tests.fakes.fake_iam import FakeIAM
from tests.fakes.fake_metadata import IAM_TOKEN_PATH, TOKEN_PATH, FakeMetadata


def env_for(iam: FakeIAM, metadata: FakeMetadata, enabled: bool = True, **extra: str) -> dict[str, str]:
    env = {"IBMCLOUD_IAM_API_ENDPOINT": iam.url, "DOCKER_CREDENTIAL_ICR_CR_TOKEN_PATHS": "",
           "DOCKER_CREDENTIAL_ICR_METADATA_URL": metadata.url}
    if enabled:
        env["DOCKER_CREDENTIAL_ICR_VPC"] = "1"
    return {**env, **extra}


def answer(res) -> dict[str, str]:
    assert res.returncode == 0, res
    assert res.stdout.count("\n") == 1
    return json.loads(res.stdout)


def linked(iam: FakeIAM, metadata: FakeMetadata, name: str = "vsi-puller",
           default: bool = True) -> dict[str, str]:
    ident = iam.add_cr_token("unused-" + name, profile=name)
    metadata.link_profile(ident, default=default)
    return ident


def test_both_steps_are_made_as_the_metadata_service_wants(helper: Helper, iam: FakeIAM,
                                                            metadata: FakeMetadata) -> None:
    ident = linked(iam, metadata)
    res = helper.get("us.icr.io", env=env_for(iam, metadata))
    got = answer(res)
    assert got["Username"] == "iambearer"
    assert iam.validate_access_token(got["Secret"])["iam_id"] == ident["profile_id"]

    put, post = metadata.calls()
    assert (put["method"], put["path"], put["version"]) == ("PUT", TOKEN_PATH, "2022-03-01")
    assert put["metadata_flavor"] == "ibm"
    assert put["body"] == {"expires_in": 300} and put["content_type"] == "application/json"
    assert put["status"] == 200

    assert (post["method"], post["path"], post["version"]) == ("POST", IAM_TOKEN_PATH, "2022-03-01")
    assert post["bearer"] in metadata.instance_tokens  # the instance token from step 1
    assert post["body"] is None  # no profile named: the instance's linked default
    assert post["status"] == 200
    assert iam.count() == 0  # the metadata service, not the helper, talks to IAM
    for token in [post["bearer"], got["Secret"]]:
        assert_no_secret(token, res.stderr)


@pytest.mark.parametrize(("form", "key"), [("profile_name", "name"), ("profile_id", "id"),
                                           ("profile_crn", "crn")])
def test_named_trusted_profile_is_sent_in_its_form(helper: Helper, iam: FakeIAM, metadata: FakeMetadata,
                                                    form: str, key: str) -> None:
    linked(iam, metadata, "default-profile")
    wanted = linked(iam, metadata, "other-profile", default=False)
    got = answer(helper.get("us.icr.io", env=env_for(iam, metadata, IBMCLOUD_CR_PROFILE=wanted[form])))
    assert iam.validate_access_token(got["Secret"])["iam_id"] == wanted["profile_id"]
    assert metadata.calls(IAM_TOKEN_PATH)[-1]["body"] == {"trusted_profile": {key: wanted[form]}}


def test_disabled_by_default_never_contacts_the_metadata_service(helper: Helper, iam: FakeIAM,
                                                                 metadata: FakeMetadata) -> None:
    linked(iam, metadata)
    res = helper.get("us.icr.io", env=env_for(iam, metadata, enabled=False))
    assert (res.returncode, res.stdout) == (1, "credentials not found in native keychain\n")
    assert metadata.calls() == []
    res = helper.get("us.icr.io", env=env_for(iam, metadata, enabled=False, DOCKER_CREDENTIAL_ICR_VPC="0"))
    assert res.returncode == 1 and metadata.calls() == []


def test_enabled_in_config_file(helper: Helper, iam: FakeIAM, metadata: FakeMetadata) -> None:
    linked(iam, metadata)
    helper.config_file.parent.mkdir(parents=True)
    helper.config_file.write_text(f'vpc = true\nmetadata_url = "{metadata.url}"\n')
    env = {"IBMCLOUD_IAM_API_ENDPOINT": iam.url, "DOCKER_CREDENTIAL_ICR_CR_TOKEN_PATHS": ""}
    assert answer(helper.get("us.icr.io", env=env))["Username"] == "iambearer"
    assert len(metadata.calls()) == 2
    # The environment wins over the file.
    for path in (helper.cache_dir / "tokens").glob("*.json"):
        path.unlink()
    res = helper.get("us.icr.io", env={**env, "DOCKER_CREDENTIAL_ICR_VPC": "0"})
    assert res.returncode == 1 and len(metadata.calls()) == 2


def test_second_get_is_served_from_cache(helper: Helper, iam: FakeIAM, metadata: FakeMetadata) -> None:
    linked(iam, metadata)
    env = env_for(iam, metadata)
    first = answer(helper.get("us.icr.io", env=env))
    second = answer(helper.get("de.icr.io", env=env))
    assert first["Secret"] == second["Secret"] and len(metadata.calls()) == 2
    for path in (helper.cache_dir / "tokens").glob("*.json"):
        doc = json.loads(path.read_text())
        doc["expires_in"], doc["expiration"] = 3600, time.time() + 300
        path.write_text(json.dumps(doc))
    third = answer(helper.get("us.icr.io", env=env))
    assert third["Secret"] != first["Secret"] and len(metadata.calls()) == 4


def test_earlier_sources_win(helper: Helper, iam: FakeIAM, metadata: FakeMetadata) -> None:
    linked(iam, metadata)
    got = answer(helper.get("us.icr.io", env=env_for(iam, metadata, IBMCLOUD_API_KEY="fakekey-vpc-9999")))
    assert got["Username"] == "iamapikey" and metadata.calls() == []


def test_unlinked_profile_is_a_clear_error(helper: Helper, iam: FakeIAM, metadata: FakeMetadata) -> None:
    linked(iam, metadata)
    res = helper.get("us.icr.io", env=env_for(iam, metadata, IBMCLOUD_CR_PROFILE="not-linked"))
    assert res.returncode == 1 and res.stdout.count("\n") == 1
    assert "trusted_profile_not_linked" in res.stdout and "trust rule" in res.stdout
    assert "credentials not found" not in res.stdout
    for call in metadata.calls():
        if call["bearer"]:
            assert_no_secret(call["bearer"], res.stdout, res.stderr)


def test_unreachable_metadata_service_is_a_clear_error(helper: Helper, iam: FakeIAM,
                                                       metadata: FakeMetadata) -> None:
    url = metadata.url
    metadata.stop()
    env = env_for(iam, metadata, DOCKER_CREDENTIAL_ICR_METADATA_URL=url)
    res = helper.get("us.icr.io", env=env)
    assert res.returncode == 1 and "metadata service" in res.stdout and "Traceback" not in res.stderr


def test_metadata_hang_ends_within_the_deadline(helper: Helper, iam: FakeIAM, metadata: FakeMetadata) -> None:
    linked(iam, metadata)
    metadata.faults.append("hang")
    started = time.monotonic()
    res = helper.get("us.icr.io", env=env_for(iam, metadata, DOCKER_CREDENTIAL_ICR_DEADLINE="2"), timeout=20)
    assert res.returncode == 1 and "did not answer in time" in res.stdout
    assert time.monotonic() - started < 10


def test_metadata_5xx_with_valid_cache_uses_cache(helper: Helper, iam: FakeIAM,
                                                  metadata: FakeMetadata) -> None:
    linked(iam, metadata)
    env = env_for(iam, metadata)
    first = answer(helper.get("us.icr.io", env=env))
    for path in (helper.cache_dir / "tokens").glob("*.json"):
        doc = json.loads(path.read_text())
        doc["expires_in"], doc["expiration"] = 3600, time.time() + 300
        path.write_text(json.dumps(doc))
    metadata.faults.append(503)
    res = helper.get("us.icr.io", env=env)
    assert answer(res)["Secret"] == first["Secret"] and "using the cached token" in res.stderr


@pytest.mark.parametrize("url", ["http://metadata.example.com", "ftp://127.0.0.1", "http://127.0.0.1/x?y=1"])
def test_unsafe_metadata_urls_are_refused(helper: Helper, iam: FakeIAM, metadata: FakeMetadata,
                                          url: str) -> None:
    res = helper.get("us.icr.io", env=env_for(iam, metadata, DOCKER_CREDENTIAL_ICR_METADATA_URL=url))
    assert res.returncode == 1 and "metadata service URL" in res.stdout
    assert metadata.calls() == []


def test_bad_vpc_switch_is_a_config_error(helper: Helper, iam: FakeIAM, metadata: FakeMetadata) -> None:
    res = helper.get("us.icr.io", env=env_for(iam, metadata, DOCKER_CREDENTIAL_ICR_VPC="maybe"))
    assert res.returncode == 1 and "DOCKER_CREDENTIAL_ICR_VPC" in res.stdout
    helper.config_file.parent.mkdir(parents=True)
    helper.config_file.write_text('vpc = "yes"\n')
    res = helper.get("us.icr.io", env={"DOCKER_CREDENTIAL_ICR_CR_TOKEN_PATHS": ""})
    assert res.returncode == 1 and "'vpc'" in res.stdout
