"""Invocation rules, version, help, config file and logging."""

from __future__ import annotations

import json

import pytest

from docker_credential_icr import __version__
from tests.conftest import Helper, assert_no_secret

USAGE = "Usage: docker-credential-icr <store|get|erase|list|version>\n"


@pytest.mark.parametrize("args", [(), ("get", "extra"), ("list", "--verbose")])
def test_wrong_argument_count_prints_usage(helper: Helper, args: tuple[str, ...]) -> None:
    res = helper.run(*args)
    assert (res.returncode, res.stdout) == (1, USAGE)


def test_unknown_action(helper: Helper) -> None:
    res = helper.run("fetch")
    assert res.returncode == 1
    assert res.stdout == "docker-credential-icr: unknown action: fetch\n"


def test_version(helper: Helper) -> None:
    for flag in ("version", "--version"):
        res = helper.run(flag)
        assert res.returncode == 0
        assert res.stdout == f"docker-credential-icr (docker-credential-icr) {__version__}\n"


def test_help(helper: Helper) -> None:
    res = helper.run("--help")
    assert res.returncode == 0
    assert "credHelpers" in res.stdout and "IBMCLOUD_API_KEY" in res.stdout


def test_list_ignores_stdin_and_never_shows_secrets(helper: Helper) -> None:
    helper.store("us.icr.io", "iamapikey", "list-secret-abcdef")
    res = helper.run("list", stdin=b"\xff garbage")
    assert res.returncode == 0
    assert json.loads(res.stdout) == {"us.icr.io": "iamapikey"}
    assert_no_secret("list-secret-abcdef", res.stdout, res.stderr)


def test_config_file_mode_and_registries(helper: Helper) -> None:
    helper.config_file.parent.mkdir(parents=True)
    helper.config_file.write_text('mode = "apikey"\nregistries = ["reg.example.com:5000"]\n')
    res = helper.get("reg.example.com:5000", env={"IBMCLOUD_API_KEY": "cfg-key-123"})
    assert res.returncode == 0, res
    assert json.loads(res.stdout)["Username"] == "iamapikey"


@pytest.mark.parametrize(("text", "needle"), [
    ("mode = 'sometimes'\n", "mode"),
    ("registries = 'a.example.com'\n", "registries"),
    ("registries = ['https://x/y z']\n", "registries"),
    ("colour = 'blue'\n", "colour"),
    ("mode = \n", "invalid config file"),
])
def test_invalid_config_names_file_and_key(helper: Helper, text: str, needle: str) -> None:
    helper.config_file.parent.mkdir(parents=True)
    helper.config_file.write_text(text)
    res = helper.get("us.icr.io", env={"IBMCLOUD_API_KEY": "cfg-key-123"})
    assert res.returncode == 1
    assert res.stdout.count("\n") == 1
    assert str(helper.config_file) in res.stdout and needle in res.stdout
    assert_no_secret("cfg-key-123", res.stdout, res.stderr)


def test_env_overrides_config_and_bad_env_is_named(helper: Helper) -> None:
    helper.config_file.parent.mkdir(parents=True)
    helper.config_file.write_text('mode = "refresh"\n')
    env = {"IBMCLOUD_API_KEY": "cfg-key-123", "DOCKER_CREDENTIAL_ICR_MODE": "apikey"}
    assert json.loads(helper.get("us.icr.io", env=env).stdout)["Username"] == "iamapikey"
    res = helper.get("us.icr.io", env={**env, "DOCKER_CREDENTIAL_ICR_MODE": "fast"})
    assert res.returncode == 1 and "DOCKER_CREDENTIAL_ICR_MODE" in res.stdout
    res = helper.get("us.icr.io", env={**env, "DOCKER_CREDENTIAL_ICR_REGISTRIES": "a b"})
    assert res.returncode == 1 and "DOCKER_CREDENTIAL_ICR_REGISTRIES" in res.stdout


def test_debug_log_to_stderr_and_file_never_has_secrets(helper: Helper, tmp_path) -> None:
    log_file = tmp_path / "helper.log"
    env = {"IBMCLOUD_API_KEY": "log-key-abcdef", "DOCKER_CREDENTIAL_ICR_LOG": "debug",
           "DOCKER_CREDENTIAL_ICR_LOG_FILE": str(log_file)}
    helper.store("us.icr.io", "iamapikey", "stored-log-key-9876", env=env)
    helper.get("us.icr.io", env=env)
    res = helper.get("uk.icr.io", env=env)
    assert res.returncode == 0
    assert "answered as iamapikey" in res.stderr
    text = log_file.read_text()
    assert "answered as iamapikey" in text
    import stat

    assert stat.S_IMODE(log_file.stat().st_mode) == 0o600
    for secret in ("log-key-abcdef", "stored-log-key-9876"):
        assert_no_secret(secret, text, res.stderr)
