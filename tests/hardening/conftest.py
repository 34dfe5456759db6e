"""Fixtures for the hardening tests: a recorded helper, a recording fake IAM, and a
per-test secrets check (the session-wide one is test_zz_secrets_scan.py)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.hardening._support import LEDGER, HardHelper, RecordingIAM


@pytest.fixture(autouse=True)
def _ledger_scope(request: pytest.FixtureRequest) -> Iterator[None]:
    """Attribute captures to the test, and fail the test that printed a secret."""
    LEDGER.current_test = request.node.nodeid
    yield
    leaks = LEDGER.leaks(LEDGER.captures_of(request.node.nodeid))
    assert leaks == [], "secrets printed:\n" + "\n".join(leaks)


@pytest.fixture
def hard(executable: str, tmp_path: Path) -> HardHelper:
    home = tmp_path / "home"
    home.mkdir()
    return HardHelper(executable, home)


@pytest.fixture
def riam() -> Iterator[RecordingIAM]:
    with RecordingIAM() as server:
        yield server
