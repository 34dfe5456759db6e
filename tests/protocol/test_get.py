"""`get` for every built-in ICR host and URL spelling, and for look-alikes."""

from __future__ import annotations

import json

import pytest

from docker_credential_icr.hosts import BUILTIN_HOSTS, ENTITLED_HOST
from docker_credential_icr.protocol import NOT_FOUND
from tests.conftest import Helper, assert_no_secret

KEY = "Kx7-apikey-SECRET-0123456789abcdefABCDEF"
IAM_HOSTS = sorted(BUILTIN_HOSTS - {ENTITLED_HOST})


def spellings(host: str) -> list[str]:
    return [
        host,
        f"https://{host}",
        f"https://{host.upper()}/",
        f"{host}/v2/some/path\n",
        f"  HTTPS://{host}:443/v1/  \n",
    ]


@pytest.mark.parametrize("host", IAM_HOSTS)
def test_env_key_answers_every_builtin_host(helper: Helper, host: str) -> None:
    for spelling in spellings(host):
        res = helper.get(spelling, env={"IBMCLOUD_API_KEY": KEY})
        assert res.returncode == 0, res
        assert res.stdout.endswith("\n") and res.stdout.count("\n") == 1
        assert json.loads(res.stdout) == {
            "ServerURL": spelling.strip(),
            "Username": "iamapikey",
            "Secret": KEY,
        }
        assert_no_secret(KEY, res.stderr)


LOOKALIKES = [
    "us.icr.io.example.com",
    "evil-icr.io",
    "icr.io@example.com",
    "https://icr.io@example.com/",
    "user:pass@us.icr.io",
    "xicr.io",
    "icr.io.",
    "us.icr.io.",
    "icr.iO.evil.com",
    "icr.io.evil",
    "us-icr.io",
    "us.icr.com",
    "icr.com",
    "usicr.io",
    "us.icr.io:5000",
    "icr.io:8443",
    "ftp://us.icr.io",
    "us..icr.io",
    "registry.bluemix.net.attacker.io",
    "bluemix.net",
    "docker.io",
    "index.docker.io",
    "https://index.docker.io/v1/",
    "127.0.0.1:5000",
    "localhost",
    "gcr.io",
    "zz.icr.io",
    "private.zz.icr.io",
    "us.icr.io\x00.evil.com",
    "us.icr.io evil.com",
    "ús.icr.io",
    "[::1]:5000",
]


@pytest.mark.parametrize("server", LOOKALIKES)
def test_lookalike_hosts_get_nothing(helper: Helper, server: str) -> None:
    res = helper.get(server, env={"IBMCLOUD_API_KEY": KEY, "DOCKER_CREDENTIAL_ICR_LOG": "debug"})
    assert res.returncode == 1
    assert res.stdout == NOT_FOUND + "\n"
    assert_no_secret(KEY, res.stdout, res.stderr)


def test_stdin_with_and_without_newline(helper: Helper) -> None:
    for stdin in (b"us.icr.io", b"us.icr.io\n", b"us.icr.io\r\n"):
        res = helper.run("get", stdin=stdin, env={"IBMCLOUD_API_KEY": KEY})
        assert res.returncode == 0, res
        assert json.loads(res.stdout)["ServerURL"] == "us.icr.io"


def test_no_credentials_is_not_found(helper: Helper) -> None:
    res = helper.get("us.icr.io")
    assert (res.returncode, res.stdout) == (1, NOT_FOUND + "\n")


def test_entitled_registry_never_gets_an_iam_key(helper: Helper) -> None:
    res = helper.get("cp.icr.io", env={"IBMCLOUD_API_KEY": KEY})
    assert (res.returncode, res.stdout) == (1, NOT_FOUND + "\n")
    assert_no_secret(KEY, res.stderr)


def test_ic_api_key_is_the_fallback(helper: Helper) -> None:
    res = helper.get("de.icr.io", env={"IC_API_KEY": "second-key-xyz"})
    assert json.loads(res.stdout)["Secret"] == "second-key-xyz"
    res = helper.get("de.icr.io", env={"IC_API_KEY": "second-key-xyz", "IBMCLOUD_API_KEY": KEY})
    assert json.loads(res.stdout)["Secret"] == KEY


def test_key_from_file(helper: Helper, tmp_path) -> None:
    keyfile = tmp_path / "apikey.txt"
    keyfile.write_text(KEY + "\n")
    res = helper.get("jp.icr.io", env={"IBMCLOUD_API_KEY": f"@{keyfile}"})
    assert res.returncode == 0, res
    assert json.loads(res.stdout)["Secret"] == KEY


def test_missing_key_file_is_a_clear_error(helper: Helper, tmp_path) -> None:
    missing = tmp_path / "nope.txt"
    res = helper.get("jp.icr.io", env={"IBMCLOUD_API_KEY": f"@{missing}"})
    assert res.returncode == 1
    assert res.stdout.count("\n") == 1
    assert "IBMCLOUD_API_KEY" in res.stdout and str(missing) in res.stdout


def test_empty_server_url(helper: Helper) -> None:
    for stdin in ("", "\n", "   \n"):
        res = helper.get(stdin, env={"IBMCLOUD_API_KEY": KEY})
        assert (res.returncode, res.stdout) == (1, "no credentials server URL\n")


def test_extra_registries_from_env(helper: Helper) -> None:
    env = {"IBMCLOUD_API_KEY": KEY, "DOCKER_CREDENTIAL_ICR_REGISTRIES": "127.0.0.1:5000, reg.example.com"}
    assert helper.get("127.0.0.1:5000", env=env).returncode == 0
    assert helper.get("http://reg.example.com/v2/", env=env).returncode == 0
    res = helper.get("127.0.0.1:5001", env=env)
    assert (res.returncode, res.stdout) == (1, NOT_FOUND + "\n")


def test_go_compatible_escaping(helper: Helper) -> None:
    secret = 'a<b>&"\\c\u2028d'
    res = helper.get("us.icr.io", env={"IBMCLOUD_API_KEY": secret})
    assert '"Secret":"a\\u003cb\\u003e\\u0026\\"\\\\c\\u2028d"' in res.stdout
    assert json.loads(res.stdout)["Secret"] == secret
