"""Fixtures shared by the end-to-end modules."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from tests.fakes._util import descendant_pids, topmost_missing, wait_until
from tests.fakes.containers import HOST_LITTER, HostLitterGuard
from tests.fakes.dockerd import HOST_LITTER as DOCKERD_LITTER
from tests.fakes.dockerd import LITTER as DOCKERD_SHARED


@pytest.fixture(scope="module")
def no_leftovers() -> Iterator[None]:
    """After the module: no child process still alive, no host path left that the run created.

    The host paths are shared with any other test run going on at the same
    time; they are only checked when no other run is using them.
    """
    litter = [p for p in (*HOST_LITTER, *DOCKERD_LITTER) if topmost_missing(p) is not None]
    yield
    assert wait_until(lambda: not descendant_pids(os.getpid()), 10), descendant_pids(os.getpid())
    if HostLitterGuard().active_users() == 0 and DOCKERD_SHARED.active_users() == 0:
        assert [p for p in litter if p.exists()] == []
