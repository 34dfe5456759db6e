"""Messages in the user's language (fr, de, es, it, zh_TW), the protocol's never.

The helper runs as Docker runs it, with only the locale variables changed; expected
texts come from the committed .po files, so a translation can change without these
tests changing. LANG=C.UTF-8 (the `helper` default) and unknown locales give English.
"""

from __future__ import annotations

import json
import socket

import pytest

from tests.conftest import Helper
from tests.i18n._catalogs import LANGUAGES, en, tr

MODE_ERROR = "{where}: mode must be one of {modes} (got {value})"
STORE_NOT_ICR = ("store: {server} is not an IBM Cloud Container Registry host; nothing stored (add it "
                 "with DOCKER_CREDENTIAL_ICR_REGISTRIES if it is one)")
HELP_GET = "print the credentials for the server URL read from stdin"
NO_CREDENTIALS = "{host}: no credentials (Docker gets 'not found' and pulls anonymously): {fix}"
NO_CREDENTIALS_FIX = "export IBMCLOUD_API_KEY=… or `docker login -u iamapikey {host}`"
RESULT_FAIL = "Result: problems found (see FAIL above)"
DOCTOR_OFFLINE_HELP = "do not probe the IAM endpoint"
ARGPARSE_HELP = "show this help message and exit"

MODES = "auto, refresh, bearer, apikey"
KEY = "i18n-test-api-key-0123456789"


def closed_port_endpoint() -> str:
    """An IAM endpoint on 127.0.0.1 where nothing listens (doctor must not need it)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"


def lang_env(lang: str) -> dict[str, str]:
    return {"LANG": LANGUAGES[lang]}


def mode_error(helper: Helper, env: dict[str, str]) -> str:
    res = helper.get("us.icr.io", env={**env, "DOCKER_CREDENTIAL_ICR_MODE": "bogus",
                                       "IBMCLOUD_API_KEY": KEY})
    assert res.returncode == 1, res
    return res.stdout


def doctor(helper: Helper, env: dict[str, str]) -> str:
    res = helper.run("doctor", "--offline",
                     env={**env, "IBMCLOUD_IAM_API_ENDPOINT": closed_port_endpoint()})
    assert res.returncode == 1, res  # no credentials: a FAIL
    return res.stdout


@pytest.mark.parametrize("lang", LANGUAGES)
def test_error_is_translated(helper: Helper, lang: str) -> None:
    out = mode_error(helper, lang_env(lang))
    values = {"where": "DOCKER_CREDENTIAL_ICR_MODE", "modes": MODES, "value": "'bogus'"}
    assert out == tr(lang, MODE_ERROR, **values) + "\n"
    assert en(MODE_ERROR, **values) not in out


@pytest.mark.parametrize("lang", LANGUAGES)
def test_store_refusal_is_translated(helper: Helper, lang: str) -> None:
    res = helper.store("registry.example.com", "iamapikey", KEY, env=lang_env(lang))
    assert res.returncode == 1
    server = repr("registry.example.com")
    assert res.stdout == tr(lang, STORE_NOT_ICR, server=server) + "\n"
    assert "is not an IBM Cloud Container Registry host" not in res.stdout
    assert not helper.credentials_file.exists()


@pytest.mark.parametrize("lang", LANGUAGES)
def test_help_is_translated(helper: Helper, lang: str) -> None:
    res = helper.run("--help", env=lang_env(lang))
    assert res.returncode == 0
    lines = res.stdout.splitlines()
    assert "  get        " + tr(lang, HELP_GET) in lines
    assert HELP_GET not in res.stdout
    # Commands, variables and the JSON example stay as they are.
    assert '    {"credHelpers": {"us.icr.io": "icr", "icr.io": "icr"}}' in lines
    assert "IBMCLOUD_API_KEY" in res.stdout and "docker-credential-icr configure-docker" in res.stdout


@pytest.mark.parametrize("lang", LANGUAGES)
def test_subcommand_help_is_translated(helper: Helper, lang: str) -> None:
    res = helper.run("doctor", "--help", env=lang_env(lang))
    assert res.returncode == 0
    assert res.stdout.startswith(tr(lang, "usage: ") + "docker-credential-icr doctor")
    # "  --offline    <help>": argparse's column width depends on the texts.
    lines = [" ".join(line.split()) for line in res.stdout.splitlines()]
    assert "--offline " + tr(lang, DOCTOR_OFFLINE_HELP) in lines
    assert "-h, --help " + tr(lang, ARGPARSE_HELP) in lines
    assert DOCTOR_OFFLINE_HELP not in res.stdout and ARGPARSE_HELP not in res.stdout
    res = helper.run("configure-docker", "--help", env=lang_env(lang))
    assert res.returncode == 0 and tr(lang, "examples:") in res.stdout.splitlines()
    assert "only these hosts" not in res.stdout


@pytest.mark.parametrize("lang", LANGUAGES)
def test_doctor_verdict_is_translated(helper: Helper, lang: str) -> None:
    out = doctor(helper, lang_env(lang))
    lines = out.splitlines()
    fix = tr(lang, NO_CREDENTIALS_FIX, host="us.icr.io")
    assert "  [   FAIL] " + tr(lang, NO_CREDENTIALS, host="us.icr.io", fix=fix) in lines
    assert lines[-1] == tr(lang, RESULT_FAIL)
    assert "no credentials (Docker gets" not in out and RESULT_FAIL not in out


@pytest.mark.parametrize("locale_value", ["xx_YY.UTF-8", "C.UTF-8", "POSIX", "en_US.UTF-8", ""])
def test_unknown_locale_gives_english(helper: Helper, locale_value: str) -> None:
    env = {"LANG": locale_value}
    values = {"where": "DOCKER_CREDENTIAL_ICR_MODE", "modes": MODES, "value": "'bogus'"}
    assert mode_error(helper, env) == en(MODE_ERROR, **values) + "\n"
    fix = en(NO_CREDENTIALS_FIX, host="us.icr.io")
    lines = doctor(helper, env).splitlines()
    assert "  [   FAIL] " + en(NO_CREDENTIALS, host="us.icr.io", fix=fix) in lines
    assert lines[-1] == RESULT_FAIL
    assert "  get        " + HELP_GET in helper.run("--help", env=env).stdout.splitlines()


@pytest.mark.parametrize(("env", "lang"), [
    ({"LANGUAGE": "it:de", "LANG": "fr_FR.UTF-8"}, "it"),
    ({"LANGUAGE": "xx:de", "LANG": "fr_FR.UTF-8"}, "de"),
    ({"LC_ALL": "es_ES.UTF-8", "LC_MESSAGES": "de_DE.UTF-8", "LANG": "fr_FR.UTF-8"}, "es"),
    ({"LC_MESSAGES": "zh_TW.UTF-8", "LANG": "fr_FR.UTF-8"}, "zh_TW"),
    ({"LANG": "de_AT.UTF-8"}, "de"),
    ({"LANG": "fr_CA"}, "fr"),
], ids=["LANGUAGE", "LANGUAGE-fallback", "LC_ALL", "LC_MESSAGES", "de_AT", "fr_CA-no-codeset"])
def test_locale_variables_in_gettext_order(helper: Helper, env: dict[str, str], lang: str) -> None:
    values = {"where": "DOCKER_CREDENTIAL_ICR_MODE", "modes": MODES, "value": "'bogus'"}
    assert mode_error(helper, env) == tr(lang, MODE_ERROR, **values) + "\n"


ALL_LOCALES = [*LANGUAGES.values(), "xx_YY.UTF-8", "C.UTF-8"]
USAGE = "Usage: docker-credential-icr <store|get|erase|list|version>\n"


@pytest.mark.parametrize("locale_value", ALL_LOCALES)
def test_protocol_messages_never_translated(helper: Helper, locale_value: str) -> None:
    env = {"LANG": locale_value, "LANGUAGE": locale_value.split(".")[0]}
    res = helper.get("registry.example.com", env=env)
    assert (res.returncode, res.stdout) == (1, "credentials not found in native keychain\n")
    res = helper.get("us.icr.io", env=env)  # an ICR host, no credentials anywhere
    assert (res.returncode, res.stdout) == (1, "credentials not found in native keychain\n")
    res = helper.get("  \n", env=env)
    assert (res.returncode, res.stdout) == (1, "no credentials server URL\n")
    res = helper.run("store", stdin=json.dumps({"ServerURL": "us.icr.io", "Secret": KEY}), env=env)
    assert (res.returncode, res.stdout) == (1, "no credentials username\n")
    res = helper.run("store", stdin=json.dumps({"ServerURL": "", "Username": "iamapikey"}), env=env)
    assert (res.returncode, res.stdout) == (1, "no credentials server URL\n")
    # The usage line mirrors docker-credential-helpers' own, in English everywhere.
    res = helper.run(env=env)
    assert (res.returncode, res.stdout) == (1, USAGE)


@pytest.mark.parametrize("locale_value", ALL_LOCALES)
def test_answers_byte_identical_under_every_locale(helper: Helper, locale_value: str) -> None:
    env = {"LANG": locale_value, "LANGUAGE": locale_value.split(".")[0], "IBMCLOUD_API_KEY": KEY}
    reference = helper.get("https://US.icr.io/v2/", env={"IBMCLOUD_API_KEY": KEY})
    assert reference.returncode == 0
    assert reference.stdout_bytes == (b'{"ServerURL":"https://US.icr.io/v2/","Username":"iamapikey",'
                                      b'"Secret":"' + KEY.encode() + b'"}\n')
    res = helper.get("https://US.icr.io/v2/", env=env)
    assert (res.returncode, res.stdout_bytes, res.stderr_bytes) == (0, reference.stdout_bytes, b"")
    assert helper.store("de.icr.io", "iamrefresh", "stored-refresh-token-123", env=env).returncode == 0
    res = helper.run("list", env=env)
    assert (res.returncode, res.stdout_bytes) == (0, b'{"de.icr.io":"iamrefresh"}\n')
    res = helper.run("version", env=env)
    assert res.returncode == 0 and res.stdout.startswith("docker-credential-icr (docker-credential-icr) ")


def test_binary_speaks_german(helper: Helper) -> None:
    """Through the `executable` fixture: the PyInstaller binary whenever
    DOCKER_CREDENTIAL_ICR_TEST_BINARY is set (its bundle must carry the catalogs)."""
    env = {"LANG": "de_DE.UTF-8"}
    values = {"where": "DOCKER_CREDENTIAL_ICR_MODE", "modes": MODES, "value": "'bogus'"}
    assert mode_error(helper, env) == tr("de", MODE_ERROR, **values) + "\n"
    res = helper.run("--help", env=env)
    assert "  get        " + tr("de", HELP_GET) in res.stdout.splitlines()
    fix = tr("de", NO_CREDENTIALS_FIX, host="us.icr.io")
    verdict = "  [   FAIL] " + tr("de", NO_CREDENTIALS, host="us.icr.io", fix=fix)
    assert verdict in doctor(helper, env).splitlines()
