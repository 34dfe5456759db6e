"""Shared fixtures: the helper as Docker runs it, in an isolated home."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _console_script() -> str:
    script = Path(sys.executable).parent / "docker-credential-icr"
    if not script.exists():
        pytest.fail(f"{script} missing: run `make test` (it installs the package into .venv)")
    return str(script)


def _executables() -> list[str]:
    kinds = ["script"]
    if os.environ.get("DOCKER_CREDENTIAL_ICR_TEST_BINARY"):
        kinds.append("binary")
    return kinds


class Result:
    def __init__(self, proc: subprocess.CompletedProcess[bytes]) -> None:
        self.returncode = proc.returncode
        self.stdout_bytes = proc.stdout
        self.stderr_bytes = proc.stderr
        self.stdout = proc.stdout.decode("utf-8", "replace")
        self.stderr = proc.stderr.decode("utf-8", "replace")

    def __repr__(self) -> str:
        return f"Result(rc={self.returncode}, stdout={self.stdout!r}, stderr={self.stderr!r})"


class Helper:
    """Runs the helper as a subprocess with stdin/stdout, exactly as Docker does."""

    def __init__(self, executable: str, home: Path) -> None:
        self.executable = executable
        self.home = home
        self.env = {
            "PATH": f"{Path(executable).parent}:{os.environ.get('PATH', '/usr/bin:/bin')}",
            "HOME": str(home),
            "XDG_CONFIG_HOME": str(home / "config"),
            "XDG_DATA_HOME": str(home / "data"),
            "XDG_CACHE_HOME": str(home / "cache"),
            "XDG_STATE_HOME": str(home / "state"),
            "DOCKER_CONFIG": str(home / "docker"),
            "LANG": "C.UTF-8",
        }

    @property
    def data_dir(self) -> Path:
        return self.home / "data" / "docker-credential-icr"

    @property
    def credentials_file(self) -> Path:
        return self.data_dir / "credentials.json"

    @property
    def cache_dir(self) -> Path:
        return self.home / "cache" / "docker-credential-icr"

    @property
    def config_file(self) -> Path:
        return self.home / "config" / "docker-credential-icr" / "config.toml"

    def run(self, *args: str, stdin: bytes | str = b"", env: dict[str, str] | None = None,
            timeout: float = 60) -> Result:
        data = stdin.encode("utf-8") if isinstance(stdin, str) else stdin
        full_env = {**self.env, **(env or {})}
        proc = subprocess.run([self.executable, *args], input=data, capture_output=True,
                              env=full_env, timeout=timeout, check=False)
        return Result(proc)

    def get(self, server: str, **kw: object) -> Result:
        return self.run("get", stdin=server, **kw)  # type: ignore[arg-type]

    def store(self, server: str, username: str, secret: str, **kw: object) -> Result:
        import json

        payload = json.dumps({"ServerURL": server, "Username": username, "Secret": secret})
        return self.run("store", stdin=payload, **kw)  # type: ignore[arg-type]

    def erase(self, server: str, **kw: object) -> Result:
        return self.run("erase", stdin=server, **kw)  # type: ignore[arg-type]


@pytest.fixture(params=_executables())
def executable(request: pytest.FixtureRequest) -> str:
    if request.param == "script":
        return _console_script()
    binary = os.environ["DOCKER_CREDENTIAL_ICR_TEST_BINARY"]
    if not os.access(binary, os.X_OK):
        pytest.fail(f"DOCKER_CREDENTIAL_ICR_TEST_BINARY={binary} is not an executable")
    return binary


@pytest.fixture
def helper(executable: str, tmp_path: Path) -> Helper:
    home = tmp_path / "home"
    home.mkdir()
    return Helper(executable, home)


def assert_no_secret(secret: str, *texts: str) -> None:
    for text in texts:
        assert secret not in text, "a secret leaked into output"


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]):
    """In CI the real clients are installed: an e2e test that skips there is a failure.

    Locally a missing dockerd/skopeo/podman is a plain skip with its reason; with
    DOCKER_CREDENTIAL_ICR_REQUIRE_E2E=1 (.ci/run sets it) a skip cannot hide a broken install.
    """
    outcome = yield
    report = outcome.get_result()
    if (report.skipped and os.environ.get("DOCKER_CREDENTIAL_ICR_REQUIRE_E2E") == "1"
            and item.get_closest_marker("e2e") is not None):
        report.outcome = "failed"
        report.longrepr = f"e2e test skipped although DOCKER_CREDENTIAL_ICR_REQUIRE_E2E=1: {report.longrepr}"
