from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.fakes.fake_iam import FakeIAM


@pytest.fixture
def iam() -> Iterator[FakeIAM]:
    with FakeIAM() as server:
        yield server
