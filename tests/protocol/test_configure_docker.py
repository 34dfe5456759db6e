"""`configure-docker`: editing Docker's config.json (and containers' auth.json) safely.

Real files in temp dirs, the helper run as a subprocess; the last test has the real
Docker CLI read the result and call the helper.
"""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from docker_credential_icr.hosts import LEGACY_HOSTS, PRIVATE_HOSTS, PUBLIC_HOSTS
from tests.conftest import Helper, Result, assert_no_secret

CMD = "configure-docker"


def config_path(helper: Helper) -> Path:
    return helper.home / "docker" / "config.json"


def routed(hosts: tuple[str, ...] | list[str]) -> dict[str, str]:
    return {h: "icr" for h in hosts}


def backups(path: Path) -> list[Path]:
    if not path.parent.is_dir():
        return []
    return sorted(p for p in path.parent.iterdir() if p.name.startswith(path.name + ".bak-"))


def write_config(helper: Helper, content: str | bytes, mode: int = 0o600) -> Path:
    path = config_path(helper)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content.encode() if isinstance(content, str) else content)
    path.chmod(mode)
    return path


def snapshot(path: Path) -> tuple[bytes, int]:
    return path.read_bytes(), path.stat().st_mtime_ns


def ok(res: Result) -> Result:
    assert res.returncode == 0, res
    assert res.stdout == "", "only --dry-run may write to stdout"
    return res


# --- adding ------------------------------------------------------------------------

def test_missing_dir_creates_private_config(helper: Helper) -> None:
    path = config_path(helper)
    assert not path.parent.exists()
    res = ok(helper.run(CMD))
    doc = json.loads(path.read_text())
    assert doc == {"credHelpers": routed(PUBLIC_HOSTS)}
    assert list(doc["credHelpers"]) == list(PUBLIC_HOSTS)
    assert len(PUBLIC_HOSTS) == 14
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert backups(path) == []  # nothing existed, nothing to back up
    assert str(path) in res.stderr and "us.icr.io" in res.stderr
    assert "configure-docker --uninstall" in res.stderr
    # Docker's own style: tab indentation.
    assert path.read_text().startswith('{\n\t"credHelpers": {\n\t\t"icr.io": "icr",')
    assert [p.name for p in path.parent.iterdir() if p.name.endswith(".tmp")] == []


@pytest.mark.parametrize("content", ["{}", "", "  \n", "{}\n"])
def test_empty_config_gets_cred_helpers_and_a_backup(helper: Helper, content: str) -> None:
    path = write_config(helper, content, mode=0o640)
    res = ok(helper.run(CMD))
    assert json.loads(path.read_text()) == {"credHelpers": routed(PUBLIC_HOSTS)}
    assert stat.S_IMODE(path.stat().st_mode) == 0o640  # the user's mode is kept
    [backup] = backups(path)
    assert backup.read_text() == content
    assert stat.S_IMODE(backup.stat().st_mode) == 0o600
    assert str(backup) in res.stderr


ORIGINAL = (
    '{  "auths" :{"registry.example.com":{"auth":"dXNlcjpwYXNz"}},\n'
    '"credsStore":   "desktop", "credHelpers": {"gcr.io" : "gcloud"},\n'
    '  "HttpHeaders": {"User-Agent": "Dockér-Client/1.0"},   "psFormat": "table {{.ID}}",\n'
    '"experimental":"enabled","plugins":{"x":{"n":1,"f":2.5,"t":true,"z":null,"l":[]}}}'
)


def test_keeps_every_other_key_and_order(helper: Helper) -> None:
    path = write_config(helper, ORIGINAL)
    ok(helper.run(CMD, "--registries", "us.icr.io,de.icr.io"))
    before, after = json.loads(ORIGINAL), json.loads(path.read_text(encoding="utf-8"))
    assert list(after) == list(before)
    assert {k: v for k, v in after.items() if k != "credHelpers"} == \
           {k: v for k, v in before.items() if k != "credHelpers"}
    assert after["credHelpers"] == {"gcr.io": "gcloud", "us.icr.io": "icr", "de.icr.io": "icr"}
    assert list(after["credHelpers"]) == ["gcr.io", "us.icr.io", "de.icr.io"]
    assert "Dockér-Client" in path.read_text(encoding="utf-8")  # not \u-escaped
    [backup] = backups(path)
    assert backup.read_text() == ORIGINAL  # byte for byte


def test_creds_store_warning_explains_precedence(helper: Helper) -> None:
    write_config(helper, '{"credsStore": "desktop"}')
    res = ok(helper.run(CMD))
    assert "credsStore" in res.stderr and "docker-credential-desktop" in res.stderr
    assert "credHelpers" in res.stderr
    # Without a credsStore there is nothing to explain.
    other = helper.home / "other"
    res = ok(helper.run(CMD, env={"DOCKER_CONFIG": str(other)}))
    assert "credsStore" not in res.stderr


def test_old_plaintext_login_is_named_never_shown(helper: Helper) -> None:
    write_config(helper, '{"auths": {"us.icr.io": {"auth": "aWFtYXBpa2V5OnNlY3JldC1rZXk="}}}')
    res = ok(helper.run(CMD))
    assert "auths" in res.stderr and "us.icr.io" in res.stderr
    assert_no_secret("aWFtYXBpa2V5OnNlY3JldC1rZXk=", res.stderr)


def test_replaces_another_helper_for_an_icr_host(helper: Helper) -> None:
    path = write_config(helper, '{"credHelpers": {"us.icr.io": "other", "quay.io": "other"}}')
    res = ok(helper.run(CMD, "--registries", "us.icr.io"))
    assert json.loads(path.read_text())["credHelpers"] == {"us.icr.io": "icr", "quay.io": "other"}
    assert "other" in res.stderr  # says what it replaced
    assert json.loads(backups(path)[0].read_text())["credHelpers"]["us.icr.io"] == "other"


def test_second_run_changes_nothing(helper: Helper) -> None:
    path = write_config(helper, ORIGINAL)
    ok(helper.run(CMD))
    first = snapshot(path)
    assert len(backups(path)) == 1
    res = ok(helper.run(CMD))
    assert snapshot(path) == first
    assert len(backups(path)) == 1
    assert "already configured" in res.stderr.lower()


def test_private_and_legacy(helper: Helper) -> None:
    path = config_path(helper)
    ok(helper.run(CMD, "--private", "--legacy"))
    helpers = json.loads(path.read_text())["credHelpers"]
    assert list(helpers) == [*PUBLIC_HOSTS, *PRIVATE_HOSTS, *LEGACY_HOSTS]
    assert set(helpers.values()) == {"icr"}

    other = helper.home / "other"
    ok(helper.run(CMD, "--registries", "us.icr.io", "--private", env={"DOCKER_CONFIG": str(other)}))
    helpers = json.loads((other / "config.json").read_text())["credHelpers"]
    assert list(helpers) == ["us.icr.io", *PRIVATE_HOSTS]

    # --uninstall --legacy: the public and legacy hosts go, the private ones stay.
    ok(helper.run(CMD, "--uninstall", "--legacy"))
    assert list(json.loads(path.read_text())["credHelpers"]) == list(PRIVATE_HOSTS)


def test_registries_are_canonicalised(helper: Helper) -> None:
    path = config_path(helper)
    res = ok(helper.run(CMD, "--registries",
                        " US.ICR.IO, https://de.icr.io/ ,myreg.example.com:5000,us.icr.io"))
    assert list(json.loads(path.read_text())["credHelpers"]) == \
           ["us.icr.io", "de.icr.io", "myreg.example.com:5000"]
    # A host the helper does not answer for yet: say how to make it one.
    assert "myreg.example.com:5000" in res.stderr and "DOCKER_CREDENTIAL_ICR_REGISTRIES" in res.stderr

    path.unlink()
    res = ok(helper.run(CMD, "--registries", "myreg.example.com:5000",
                        env={"DOCKER_CREDENTIAL_ICR_REGISTRIES": "myreg.example.com:5000"}))
    assert "DOCKER_CREDENTIAL_ICR_REGISTRIES" not in res.stderr


@pytest.mark.parametrize(("value", "bad"), [
    ("us.icr.io,bad host", "bad host"),
    ("ftp://us.icr.io", "ftp://us.icr.io"),
    ("icr.io@example.com", "icr.io@example.com"),
    ("us.icr.io:99999", "us.icr.io:99999"),
    (",", "no host"),
])
def test_bad_registry_is_named_and_nothing_written(helper: Helper, value: str, bad: str) -> None:
    res = helper.run(CMD, "--registries", value)
    assert res.returncode == 1 and res.stdout == ""
    assert bad in res.stderr and res.stderr.count("\n") == 1
    assert not config_path(helper).parent.exists()


def test_unknown_option_is_a_usage_error(helper: Helper) -> None:
    res = helper.run(CMD, "--bogus")
    assert res.returncode == 2 and res.stdout == ""
    assert "--bogus" in res.stderr


def test_help_has_examples(helper: Helper) -> None:
    res = helper.run(CMD, "--help")
    assert res.returncode == 0
    for needle in ("--registries", "--private", "--legacy", "--uninstall", "--dry-run",
                   "--containers", "examples:", "configure-docker --registries us.icr.io"):
        assert needle in res.stdout
    assert "configure-docker" in helper.run("--help").stdout


def test_path_warning(helper: Helper) -> None:
    res = ok(helper.run(CMD, env={"PATH": "/usr/bin:/bin"}))
    assert "not on PATH" in res.stderr and "executable file not found" in res.stderr
    # The fixture's PATH has the helper: no warning.
    res = ok(helper.run(CMD, "--registries", "uk.icr.io"))
    assert "not on PATH" not in res.stderr


def test_symlinked_config_stays_a_symlink(helper: Helper) -> None:
    real = helper.home / "dotfiles" / "docker-config.json"
    real.parent.mkdir()
    real.write_text('{"auths": {}}')
    path = config_path(helper)
    path.parent.mkdir()
    path.symlink_to(real)
    ok(helper.run(CMD, "--registries", "us.icr.io"))
    assert path.is_symlink()
    assert json.loads(real.read_text()) == {"auths": {}, "credHelpers": {"us.icr.io": "icr"}}


# --- refusing ----------------------------------------------------------------------

@pytest.mark.parametrize(("content", "needle"), [
    ('{"auths": {', "not valid JSON"),
    ('{"credHelpers": {"us.icr.io": "icr",}}', "not valid JSON"),
    ("// comment\n{}", "not valid JSON"),
    ("{} {}", "not valid JSON"),
    ('["credHelpers"]', "array"),
    ('"credHelpers"', "string"),
    ("null", "null"),
    ('{"credHelpers": ["us.icr.io"]}', "credHelpers"),
    ('{"credHelpers": "icr"}', "credHelpers"),
    (b'\xef\xbb\xbf{}', "not valid JSON"),
    (b'{"a": "\xff"}', "UTF-8"),
])
def test_refuses_what_it_cannot_understand(helper: Helper, content: str | bytes, needle: str) -> None:
    path = write_config(helper, content)
    os.utime(path, ns=(1_000_000_000, 1_000_000_000))
    before = snapshot(path)
    for args in ((CMD,), (CMD, "--uninstall"), (CMD, "--dry-run")):
        res = helper.run(*args)
        assert res.returncode == 1 and res.stdout == "", res
        assert res.stderr.count("\n") == 1 and str(path) in res.stderr and needle in res.stderr
        assert snapshot(path) == before
        assert backups(path) == []


def _make_unwritable(directory: Path) -> bool:
    """True once creating a file in `directory` really fails (root ignores mode bits)."""
    directory.chmod(0o555)
    if _write_fails(directory):
        return True
    if shutil.which("chattr") and subprocess.run(["chattr", "+i", str(directory)],
                                                 capture_output=True, check=False).returncode == 0:
        return _write_fails(directory)
    return False


def _write_fails(directory: Path) -> bool:
    probe = directory / ".probe"
    try:
        probe.write_text("x")
    except OSError:
        return True
    probe.unlink()
    return False


def _restore_writable(directory: Path) -> None:
    if shutil.which("chattr"):
        subprocess.run(["chattr", "-i", str(directory)], capture_output=True, check=False)
    directory.chmod(0o755)


@pytest.mark.parametrize("existing", [True, False])
def test_read_only_directory(helper: Helper, existing: bool) -> None:
    path = config_path(helper)
    path.parent.mkdir()
    if existing:
        path.write_text('{"auths": {}}')
    try:
        if not _make_unwritable(path.parent):
            pytest.skip("cannot make a directory unwritable here (root without chattr +i)")
        before = snapshot(path) if existing else None
        res = helper.run(CMD)
        assert res.returncode == 1 and res.stdout == ""
        assert res.stderr.count("\n") == 1
        assert f"directory {path.parent} is not writable" in res.stderr
        assert (snapshot(path) if existing else None) == before
        assert sorted(p.name for p in path.parent.iterdir()) == (["config.json"] if existing else [])
    finally:
        _restore_writable(path.parent)


def test_config_dir_under_a_file(helper: Helper) -> None:
    blocker = helper.home / "blocker"
    blocker.write_text("not a directory")
    for docker_config in (blocker, blocker / "docker"):
        res = helper.run(CMD, env={"DOCKER_CONFIG": str(docker_config)})
        assert res.returncode == 1 and res.stdout == ""
        assert res.stderr.count("\n") == 1 and str(docker_config / "config.json") in res.stderr
        assert "not a directory" in res.stderr
    assert blocker.read_text() == "not a directory"


# --- removing ----------------------------------------------------------------------

def test_uninstall_restores_an_equivalent_file(helper: Helper) -> None:
    path = write_config(helper, ORIGINAL)
    ok(helper.run(CMD, "--private"))
    assert "us.icr.io" in json.loads(path.read_text())["credHelpers"]
    res = ok(helper.run(CMD, "--uninstall"))
    after = json.loads(path.read_text(encoding="utf-8"))
    assert after == json.loads(ORIGINAL)
    assert list(after) == list(json.loads(ORIGINAL))
    assert "- us.icr.io" in res.stderr and "--registries" in res.stderr  # how to undo the undo
    assert len(backups(path)) == 2


def test_uninstall_drops_the_cred_helpers_it_emptied(helper: Helper) -> None:
    path = write_config(helper, '{"auths": {}}')
    ok(helper.run(CMD))
    ok(helper.run(CMD, "--uninstall"))
    assert json.loads(path.read_text()) == {"auths": {}}


def test_uninstall_removes_only_icr_entries_of_the_selection(helper: Helper) -> None:
    path = write_config(helper, json.dumps({"credHelpers": {
        "gcr.io": "gcloud", "us.icr.io": "icr", "de.icr.io": "icr", "uk.icr.io": "ecr-login",
        "myreg.example.com:5000": "icr"}}))
    ok(helper.run(CMD, "--uninstall", "--registries", "us.icr.io,uk.icr.io"))
    assert json.loads(path.read_text())["credHelpers"] == {
        "gcr.io": "gcloud", "de.icr.io": "icr", "uk.icr.io": "ecr-login", "myreg.example.com:5000": "icr"}
    # No selection: every entry pointing at icr, whatever its host.
    ok(helper.run(CMD, "--uninstall"))
    assert json.loads(path.read_text())["credHelpers"] == {"gcr.io": "gcloud", "uk.icr.io": "ecr-login"}
    before = snapshot(path)
    res = ok(helper.run(CMD, "--uninstall"))
    assert "nothing to remove" in res.stderr.lower()
    assert snapshot(path) == before


def test_uninstall_without_a_file_creates_nothing(helper: Helper) -> None:
    res = ok(helper.run(CMD, "--uninstall"))
    assert "nothing to remove" in res.stderr.lower()
    assert not config_path(helper).parent.exists()


# --- dry run -----------------------------------------------------------------------

def test_dry_run_prints_the_result_and_writes_nothing(helper: Helper) -> None:
    res = helper.run(CMD, "--dry-run")
    assert res.returncode == 0
    assert json.loads(res.stdout) == {"credHelpers": routed(PUBLIC_HOSTS)}
    assert not config_path(helper).parent.exists()

    path = write_config(helper, ORIGINAL)
    before = snapshot(path)
    res = helper.run(CMD, "--dry-run", "--registries", "us.icr.io")
    assert res.returncode == 0
    printed = json.loads(res.stdout)
    assert list(printed) == list(json.loads(ORIGINAL))
    assert printed["credHelpers"] == {"gcr.io": "gcloud", "us.icr.io": "icr"}
    assert "credsStore" in res.stderr and "us.icr.io" in res.stderr  # the usual advice still comes
    assert snapshot(path) == before and backups(path) == []

    # Real run, then a dry-run uninstall shows the original value back.
    ok(helper.run(CMD, "--registries", "us.icr.io"))
    configured = snapshot(path)
    res = helper.run(CMD, "--dry-run", "--uninstall")
    assert res.returncode == 0 and json.loads(res.stdout) == json.loads(ORIGINAL)
    assert snapshot(path) == configured and len(backups(path)) == 1


def test_dry_run_when_nothing_changes_prints_the_file_as_is(helper: Helper) -> None:
    path = write_config(helper, '{"credHelpers": {"us.icr.io": "icr"}}')
    res = helper.run(CMD, "--dry-run", "--registries", "us.icr.io")
    assert res.returncode == 0 and res.stdout_bytes == path.read_bytes()


# --- containers' auth.json ---------------------------------------------------------

@pytest.mark.parametrize("where", ["config_home", "runtime_dir", "registry_auth_file"])
def test_containers_auth_json(helper: Helper, where: str) -> None:
    env: dict[str, str] = {}
    if where == "config_home":
        auth = helper.home / "config" / "containers" / "auth.json"
    elif where == "runtime_dir":
        (helper.home / "run").mkdir(mode=0o700)
        env["XDG_RUNTIME_DIR"] = str(helper.home / "run")
        auth = helper.home / "run" / "containers" / "auth.json"
    else:
        auth = helper.home / "elsewhere" / "my-auth.json"
        env["REGISTRY_AUTH_FILE"] = str(auth)
        env["XDG_RUNTIME_DIR"] = str(helper.home / "run")  # REGISTRY_AUTH_FILE wins
    auth.parent.mkdir(parents=True, exist_ok=True)
    auth.write_text('{"auths": {"quay.io": {"auth": "dTpw"}}}')
    res = ok(helper.run(CMD, "--containers", "--registries", "us.icr.io", env=env))
    assert json.loads(auth.read_text()) == {"auths": {"quay.io": {"auth": "dTpw"}},
                                            "credHelpers": {"us.icr.io": "icr"}}
    assert str(auth) in res.stderr and "--containers --uninstall" in res.stderr
    assert ("XDG_RUNTIME_DIR" in res.stderr) == (where == "runtime_dir")  # tmpfs: say it
    assert not config_path(helper).exists()  # Docker's file is a separate choice
    ok(helper.run(CMD, "--containers", "--uninstall", env=env))
    assert json.loads(auth.read_text()) == {"auths": {"quay.io": {"auth": "dTpw"}}}


# --- cost and the real Docker CLI --------------------------------------------------

def test_cli_import_does_not_load_configure_docker() -> None:
    code = ("import sys, docker_credential_icr.cli; "
            "print('docker_credential_icr.dockerconfig' in sys.modules, 'argparse' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split()[0] == "False"


def _docker() -> str:
    for candidate in (shutil.which("docker"), "/usr/local/bin/docker", "/usr/bin/docker"):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    pytest.skip("the Docker CLI is not installed")


def test_docker_cli_uses_the_configured_helper(helper: Helper, tmp_path: Path) -> None:
    docker = _docker()
    registry = "127.0.0.1:49999"  # never contacted: logout and the stored-credential check are local
    secret = "docker-cli-apikey-8e7d6c5b"
    calls = tmp_path / "calls.log"
    wrapper_dir = tmp_path / "wrapper"
    wrapper_dir.mkdir()
    wrapper = wrapper_dir / "docker-credential-icr"
    # Docker finds `docker-credential-icr` on PATH; this one records that it was called.
    wrapper.write_text(f'#!/bin/sh\necho "$@" >> "{calls}"\nexec "{helper.executable}" "$@"\n')
    wrapper.chmod(0o755)
    env = {
        "PATH": f"{wrapper_dir}:{helper.env['PATH']}",
        "DOCKER_CREDENTIAL_ICR_REGISTRIES": registry,
        "IBMCLOUD_API_KEY": secret,
        "DOCKER_HOST": f"unix://{tmp_path / 'no-daemon.sock'}",  # no daemon is ever contacted
        "DOCKER_CLI_HINTS": "false",
    }
    res = ok(helper.run(CMD, "--registries", registry, env=env))
    assert "not on PATH" not in res.stderr and "DOCKER_CREDENTIAL_ICR_REGISTRIES" not in res.stderr

    def run_docker(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([docker, *args], env={**helper.env, **env}, capture_output=True,
                              text=True, stdin=subprocess.DEVNULL, timeout=60, check=False)

    proc = run_docker("logout", registry)
    assert proc.returncode == 0, proc
    assert "erase" in calls.read_text().split()

    # `docker login` without a password first asks the helper for stored credentials and
    # shows their username; the daemon login then fails (there is none), which is expected.
    proc = run_docker("login", registry)
    assert "get" in calls.read_text().split()
    assert "iamapikey" in proc.stdout + proc.stderr
    assert_no_secret(secret, proc.stdout, proc.stderr)
