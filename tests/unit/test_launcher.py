"""The launcher `make install` writes: runs the helper isolated (-I -S), whatever the environment."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
LAUNCHER = ROOT / "packaging" / "launcher.py"

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="make install is for POSIX systems")


def helper_env(home: Path, **extra: str) -> dict[str, str]:
    return {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(home),
            "XDG_CONFIG_HOME": str(home / "c"), "XDG_DATA_HOME": str(home / "d"),
            "XDG_CACHE_HOME": str(home / "ca"), "LANG": "C.UTF-8", **extra}


def get(launcher: Path, env: dict[str, str]) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run([str(launcher), "get"], input=b"us.icr.io\n", capture_output=True, env=env,
                          timeout=60, check=False)


@pytest.fixture
def launcher(tmp_path: Path) -> Path:
    dest = tmp_path / "bin" / "docker-credential-icr"
    dest.parent.mkdir()
    subprocess.run([sys.executable, str(LAUNCHER), str(dest)], check=True, timeout=60)
    return dest


def test_launcher_answers_get(launcher: Path, tmp_path: Path) -> None:
    text = launcher.read_text()
    assert text.startswith(f"#!{sys.executable} -IS\n")
    assert str(ROOT / "packaging") not in text
    res = get(launcher, helper_env(tmp_path, IBMCLOUD_API_KEY="launcher-key-1"))
    assert res.returncode == 0, res
    assert json.loads(res.stdout) == {"ServerURL": "us.icr.io", "Username": "iamapikey",
                                      "Secret": "launcher-key-1"}


def test_pythonpath_cannot_hijack_the_helper(launcher: Path, tmp_path: Path) -> None:
    evil = tmp_path / "evil" / "docker_credential_icr"
    evil.mkdir(parents=True)
    (evil / "__init__.py").write_text("print('HIJACKED'); raise SystemExit(0)\n")
    (evil / "cli.py").write_text("def main():\n    print('HIJACKED')\n    return 0\n")
    env = helper_env(tmp_path, IBMCLOUD_API_KEY="launcher-key-2", PYTHONPATH=str(evil.parent),
                     PYTHONSTARTUP=str(evil / "cli.py"))
    res = get(launcher, env)
    assert res.returncode == 0, res
    assert b"HIJACKED" not in res.stdout
    assert json.loads(res.stdout)["Secret"] == "launcher-key-2"


def test_long_interpreter_path_uses_a_sh_trampoline(tmp_path: Path) -> None:
    long_dir = tmp_path / ("d" * 60) / ("e" * 60)
    long_dir.mkdir(parents=True)
    python = long_dir / "python"
    python.symlink_to(sys.executable)
    dest = tmp_path / "docker-credential-icr"
    code = ("import sys; sys.path.insert(0, sys.argv[1]); import launcher; "
            "launcher.write(sys.argv[2], python=sys.argv[3])")
    subprocess.run([sys.executable, "-c", code, str(LAUNCHER.parent), str(dest), str(python)], check=True)
    assert dest.read_text().startswith("#!/bin/sh\n")
    res = get(dest, helper_env(tmp_path, IBMCLOUD_API_KEY="launcher-key-3"))
    assert res.returncode == 0, res
    assert json.loads(res.stdout)["Secret"] == "launcher-key-3"
