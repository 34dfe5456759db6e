from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.fakes.fake_iam import FakeIAM
from tests.fakes.fake_metadata import FakeMetadata


@pytest.fixture
def iam() -> Iterator[FakeIAM]:
    with FakeIAM() as server:
        yield server


@pytest.fixture
def metadata(iam: FakeIAM) -> Iterator[FakeMetadata]:
    with FakeMetadata(iam) as server:
        yield server
