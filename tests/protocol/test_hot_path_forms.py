"""The hot path loads no network stack and no OpenSSL — in the console script and the binary.

tests/protocol/test_hot_path.py checks imports with `python -X importtime`, which the
PyInstaller binary cannot take. What both forms share is the dynamic loader: importing
requests dlopens `_socket`, `_ssl` and libssl; `hashlib` dlopens `_hashlib` and
libcrypto. glibc's LD_DEBUG=files names every object it loads, for either form.
"""

from __future__ import annotations

import json
import sys

import pytest

from tests.conftest import Helper

FORBIDDEN = ("_ssl.", "_socket.", "libssl", "_hashlib.", "libcrypto", "select.")

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="LD_DEBUG is glibc's")


def loaded_objects(helper: Helper, env: dict[str, str]) -> list[str]:
    res = helper.get("us.icr.io", env={**env, "LD_DEBUG": "files"})
    assert res.returncode == 0, res
    assert json.loads(res.stdout)["ServerURL"] == "us.icr.io"
    names = [line.split("file=", 1)[1].split()[0] for line in res.stderr.splitlines() if "file=" in line]
    if not names:
        pytest.skip("this libc ignores LD_DEBUG")
    return names


def heavy(names: list[str]) -> list[str]:
    return sorted({n for n in names if any(f in n.rsplit("/", 1)[-1] for f in FORBIDDEN)})


def test_env_key_get_loads_no_network_stack(helper: Helper) -> None:
    assert heavy(loaded_objects(helper, {"IBMCLOUD_API_KEY": "hot-key-env-1"})) == []


def test_stored_get_loads_no_network_stack(helper: Helper) -> None:
    assert helper.store("us.icr.io", "iamapikey", "hot-key-stored-2").returncode == 0
    assert heavy(loaded_objects(helper, {})) == []


def test_warm_token_cache_get_loads_no_network_stack(helper: Helper) -> None:
    from tests.fakes.fake_iam import FakeIAM

    with FakeIAM() as iam:
        env = {"IBMCLOUD_API_KEY": iam.add_api_key(), "DOCKER_CREDENTIAL_ICR_MODE": "refresh",
               "IBMCLOUD_IAM_API_ENDPOINT": iam.url}
        first = helper.get("us.icr.io", env=env)
        assert first.returncode == 0, first
        asked = iam.count()
        assert asked >= 1
        assert heavy(loaded_objects(helper, env)) == []
        assert iam.count() == asked  # served from the cache


def test_the_check_sees_the_network_stack_when_iam_is_asked(helper: Helper) -> None:
    from tests.fakes.fake_iam import FakeIAM

    with FakeIAM() as iam:
        env = {"IBMCLOUD_API_KEY": iam.add_api_key(), "DOCKER_CREDENTIAL_ICR_MODE": "refresh",
               "IBMCLOUD_IAM_API_ENDPOINT": iam.url}
        assert any("_socket." in n for n in loaded_objects(helper, env))
