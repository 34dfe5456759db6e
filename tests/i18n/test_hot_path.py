"""Translations cost nothing when nothing is shown: `get` never imports gettext or locale.

Not on an answer (API key from the environment, stored credentials), not on the
"not found" answer, whatever the language: the catalog is loaded on the first message.
"""

from __future__ import annotations

import pytest

from tests.conftest import Helper
from tests.protocol.test_hot_path import imported_modules

I18N_MODULES = ("gettext", "locale")


def i18n_imports(names: set[str]) -> list[str]:
    return sorted(n for n in names if n.split(".")[0] in I18N_MODULES)


@pytest.mark.parametrize("lang", ["C.UTF-8", "de_DE.UTF-8", "zh_TW.UTF-8"])
def test_env_key_get_loads_no_catalog(helper: Helper, lang: str) -> None:
    names = imported_modules(helper, "us.icr.io", {"IBMCLOUD_API_KEY": "hot-key-i18n-1234", "LANG": lang})
    assert i18n_imports(names) == []


def test_stored_get_loads_no_catalog(helper: Helper) -> None:
    assert helper.store("us.icr.io", "iamapikey", "hot-key-i18n-5678").returncode == 0
    names = imported_modules(helper, "us.icr.io", {"LANG": "fr_FR.UTF-8"})
    assert i18n_imports(names) == []


def test_get_with_config_file_loads_no_catalog(helper: Helper) -> None:
    helper.config_file.parent.mkdir(parents=True)
    helper.config_file.write_text('mode = "auto"\ndeadline = 20\nregistries = ["myreg.example.com:5000"]\n')
    names = imported_modules(helper, "myreg.example.com:5000",
                             {"IBMCLOUD_API_KEY": "hot-key-i18n-9012", "LANG": "it_IT.UTF-8"})
    assert i18n_imports(names) == []


@pytest.mark.parametrize("server", ["registry.example.com", "us.icr.io"])
def test_not_found_loads_no_catalog(helper: Helper, server: str) -> None:
    names = imported_modules(helper, server, {"LANG": "es_ES.UTF-8"}, status=1)
    assert i18n_imports(names) == []


def test_an_error_does_load_it(helper: Helper) -> None:
    """The check above can fail: a message does import gettext."""
    names = imported_modules(helper, "us.icr.io", {"LANG": "de_DE.UTF-8", "DOCKER_CREDENTIAL_ICR_MODE": "x"},
                             status=1)
    assert "gettext" in names
