"""The hot path (`get` from an API key or stored credential) imports nothing heavy."""

from __future__ import annotations

import subprocess
import sys

from tests.conftest import Helper

HEAVY = ("requests", "urllib3", "http.client", "ssl", "logging", "tomllib")


def imported_modules(helper: Helper, stdin: str, env: dict[str, str], status: int = 0) -> set[str]:
    proc = subprocess.run([sys.executable, "-X", "importtime", "-m", "docker_credential_icr", "get"],
                          input=stdin.encode(), capture_output=True, env={**helper.env, **env},
                          check=False, timeout=60)
    assert proc.returncode == status, proc
    names = set()
    for line in proc.stderr.decode().splitlines():
        if line.startswith("import time:") and "|" in line:
            names.add(line.rsplit("|", 1)[1].strip())
    assert "docker_credential_icr.cli" in names  # the measurement itself worked
    return names


def test_env_key_get_imports_nothing_heavy(helper: Helper) -> None:
    names = imported_modules(helper, "us.icr.io", {"IBMCLOUD_API_KEY": "hot-key-1234"})
    assert sorted(n for n in names if n.split(".")[0] in HEAVY or n in HEAVY) == []


def test_stored_get_imports_nothing_heavy(helper: Helper) -> None:
    assert helper.store("us.icr.io", "iamapikey", "hot-key-5678").returncode == 0
    names = imported_modules(helper, "us.icr.io", {})
    assert sorted(n for n in names if n.split(".")[0] in HEAVY or n in HEAVY) == []
