"""store → list → get → erase, file safety, and malformed input for every action."""

from __future__ import annotations

import json
import os
import stat

import pytest

from docker_credential_icr.protocol import NOT_FOUND
from tests.conftest import Helper, assert_no_secret

KEY = "stored-apikey-7f3a9c2e1d0b"
ENV_KEY = "env-apikey-55aa66bb77cc"


def test_round_trip(helper: Helper) -> None:
    res = helper.store("https://us.icr.io", "iamapikey", KEY)
    assert (res.returncode, res.stdout) == (0, ""), res

    res = helper.run("list")
    assert res.returncode == 0
    assert json.loads(res.stdout) == {"us.icr.io": "iamapikey"}
    assert_no_secret(KEY, res.stdout, res.stderr)

    res = helper.get("us.icr.io")
    assert json.loads(res.stdout) == {"ServerURL": "us.icr.io", "Username": "iamapikey",
                                      "Secret": KEY}

    res = helper.erase("us.icr.io\n")
    assert (res.returncode, res.stdout) == (0, "")
    assert json.loads(helper.run("list").stdout) == {}
    res = helper.get("us.icr.io")
    assert (res.returncode, res.stdout) == (1, NOT_FOUND + "\n")


def test_files_are_private(helper: Helper) -> None:
    assert helper.store("uk.icr.io", "iamapikey", KEY).returncode == 0
    assert stat.S_IMODE(helper.credentials_file.stat().st_mode) == 0o600
    assert stat.S_IMODE(helper.data_dir.stat().st_mode) == 0o700
    leftovers = [p.name for p in helper.data_dir.iterdir() if p.name.endswith(".tmp")]
    assert leftovers == []


def test_stored_beats_env(helper: Helper) -> None:
    helper.store("de.icr.io", "iamapikey", KEY)
    res = helper.get("de.icr.io", env={"IBMCLOUD_API_KEY": ENV_KEY})
    assert json.loads(res.stdout)["Secret"] == KEY
    # Other hosts still fall through to the environment.
    res = helper.get("jp.icr.io", env={"IBMCLOUD_API_KEY": ENV_KEY})
    assert json.loads(res.stdout)["Secret"] == ENV_KEY


@pytest.mark.parametrize("server", ["docker.io", "us.icr.io.example.com", "127.0.0.1:5000",
                                    "evil-icr.io", "icr.io@example.com"])
def test_store_refuses_non_icr_hosts(helper: Helper, server: str) -> None:
    res = helper.store(server, "iamapikey", KEY)
    assert res.returncode == 1
    assert res.stdout.count("\n") == 1 and "not an IBM Cloud Container Registry host" in res.stdout
    assert_no_secret(KEY, res.stdout, res.stderr)
    assert not helper.credentials_file.exists()


def test_identity_token_and_entitlement_key_round_trip(helper: Helper) -> None:
    assert helper.store("au.icr.io", "<token>", "registry-refresh-token-1").returncode == 0
    assert helper.store("cp.icr.io", "cp", "entitlement-key-2").returncode == 0
    assert json.loads(helper.run("list").stdout) == {"au.icr.io": "<token>", "cp.icr.io": "cp"}
    assert json.loads(helper.get("au.icr.io").stdout)["Username"] == "<token>"
    assert json.loads(helper.get("au.icr.io").stdout)["Secret"] == "registry-refresh-token-1"
    answer = json.loads(helper.get("https://cp.icr.io/").stdout)
    assert (answer["Username"], answer["Secret"]) == ("cp", "entitlement-key-2")


@pytest.mark.parametrize(("server", "username"), [
    ("us.icr.io", "cp"), ("cp.icr.io", "iamapikey"), ("us.icr.io", "bob"), ("us.icr.io", "token"),
])
def test_store_refuses_wrong_usernames(helper: Helper, server: str, username: str) -> None:
    res = helper.store(server, username, KEY)
    assert res.returncode == 1 and res.stdout.count("\n") == 1
    assert not helper.credentials_file.exists()


def test_store_missing_fields_use_the_literal_messages(helper: Helper) -> None:
    res = helper.run("store", stdin='{"ServerURL":"us.icr.io","Secret":"x"}')
    assert (res.returncode, res.stdout) == (1, "no credentials username\n")
    res = helper.run("store", stdin='{"Username":"iamapikey","Secret":"x"}')
    assert (res.returncode, res.stdout) == (1, "no credentials server URL\n")


def test_store_is_case_insensitive_like_go(helper: Helper) -> None:
    res = helper.run("store", stdin='{"serverurl":"br.icr.io","USERNAME":"iamapikey","secret":"k1234"}')
    assert res.returncode == 0, res
    assert json.loads(helper.get("br.icr.io").stdout)["Secret"] == "k1234"


def test_erase_of_unknown_host_is_harmless(helper: Helper) -> None:
    helper.store("us.icr.io", "iamapikey", KEY)
    before = helper.credentials_file.read_bytes()
    for server in ("uk.icr.io", "docker.io", "https://gcr.io/v2/"):
        assert helper.erase(server).returncode == 0
    res = helper.erase("not a host")
    assert res.returncode == 1 and "not a registry host name" in res.stdout
    assert helper.credentials_file.read_bytes() == before


MALFORMED = {
    "empty": b"",
    "invalid json": b'{"ServerURL": "us.icr.io", ',
    "wrong shape list": b'["us.icr.io", "iamapikey", "x"]',
    "wrong shape types": b'{"ServerURL": 5, "Username": ["a"], "Secret": null}',
    "one megabyte": b"a" * (1024 * 1024),
    "invalid utf-8": b"us.icr.io\xff\xfe",
    "invalid utf-8 json": b'{"ServerURL":"us.icr.io","Username":"iamapikey","Secret":"\xc3\x28"}',
}


@pytest.mark.parametrize("action", ["get", "store", "erase"])
@pytest.mark.parametrize("name", sorted(MALFORMED))
def test_malformed_input(helper: Helper, action: str, name: str) -> None:
    helper.store("us.icr.io", "iamapikey", KEY)
    before = helper.credentials_file.read_bytes()
    res = helper.run(action, stdin=MALFORMED[name], env={"IBMCLOUD_API_KEY": ENV_KEY})
    assert res.returncode == 1, res
    assert res.stdout.endswith("\n") and res.stdout.count("\n") == 1
    assert "Traceback" not in res.stderr
    assert_no_secret(KEY, res.stdout, res.stderr)
    assert_no_secret(ENV_KEY, res.stdout, res.stderr)
    assert helper.credentials_file.read_bytes() == before


def test_corrupt_credentials_file_is_never_overwritten(helper: Helper) -> None:
    helper.data_dir.mkdir(parents=True, mode=0o700)
    helper.credentials_file.write_text('{"version": 1, "auths": {"us.icr.io": ')
    os.chmod(helper.credentials_file, 0o600)
    before = helper.credentials_file.read_bytes()
    for res in (helper.get("us.icr.io"), helper.store("uk.icr.io", "iamapikey", KEY),
                helper.erase("us.icr.io"), helper.run("list")):
        assert res.returncode == 1, res
        assert str(helper.credentials_file) in res.stdout and "corrupt" in res.stdout
    assert helper.credentials_file.read_bytes() == before


def test_loose_permissions_are_fixed_and_reported(helper: Helper) -> None:
    helper.store("us.icr.io", "iamapikey", KEY)
    os.chmod(helper.credentials_file, 0o644)
    res = helper.get("us.icr.io")
    assert res.returncode == 0
    assert "mode is now 600" in res.stderr
    assert stat.S_IMODE(helper.credentials_file.stat().st_mode) == 0o600
    assert_no_secret(KEY, res.stderr)


def test_concurrent_stores_lose_nothing(helper: Helper) -> None:
    import subprocess

    hosts = [f"{r}.icr.io" for r in ("us", "uk", "de", "au", "jp", "jp2", "ca", "ca2", "br", "es")]
    procs = []
    for i, host in enumerate(hosts):
        payload = json.dumps({"ServerURL": host, "Username": "iamapikey", "Secret": f"key-{i}-xyz"})
        p = subprocess.Popen([helper.executable, "store"], stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, env=helper.env)
        p.stdin.write(payload.encode())
        p.stdin.close()
        procs.append(p)
    assert [p.wait(timeout=60) for p in procs] == [0] * len(hosts)
    assert json.loads(helper.run("list").stdout) == {h: "iamapikey" for h in hosts}


def test_temp_files_of_a_killed_writer_are_removed(helper: Helper) -> None:
    helper.store("us.icr.io", "iamapikey", KEY)
    stale = helper.data_dir / ".credentials.json.12345.deadbeef.tmp"
    stale.write_text('{"version": 1, "auths": {"uk.icr.io": {"Username": "iamapikey", "Secret": "old"}}}')
    unrelated = helper.data_dir / "notes.tmp"
    unrelated.write_text("mine")
    assert helper.store("uk.icr.io", "iamapikey", KEY).returncode == 0
    assert not stale.exists() and unrelated.exists()
