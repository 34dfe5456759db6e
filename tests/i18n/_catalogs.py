"""The message catalogs as the tests read them: the committed .po files are the truth."""

from __future__ import annotations

import string
from functools import cache
from pathlib import Path

from babel.messages.catalog import Catalog
from babel.messages.pofile import read_po

from tests.conftest import ROOT

PACKAGE = ROOT / "src" / "docker_credential_icr"
LOCALE_DIR = PACKAGE / "locale"
DOMAIN = "docker-credential-icr"
POT = LOCALE_DIR / "messages.pot"
# Each shipped language, and a LANG value that selects it.
LANGUAGES = {
    "fr": "fr_FR.UTF-8",
    "de": "de_DE.UTF-8",
    "es": "es_ES.UTF-8",
    "it": "it_IT.UTF-8",
    "zh_TW": "zh_TW.UTF-8",
}


def po_path(lang: str) -> Path:
    return LOCALE_DIR / lang / "LC_MESSAGES" / f"{DOMAIN}.po"


def mo_path(lang: str) -> Path:
    return po_path(lang).with_suffix(".mo")


@cache
def read_catalog(path: Path) -> Catalog:
    with open(path, "rb") as fh:
        return read_po(fh)


def tr(lang: str, msgid: str, **values: object) -> str:
    """The .po's translation of `msgid`, filled in as the program fills it."""
    message = read_catalog(po_path(lang)).get(msgid)
    assert message is not None and message.string, f"{lang}: no translation for {msgid!r}"
    assert message.string != msgid
    return message.string.format(**values)


def en(msgid: str, **values: object) -> str:
    return msgid.format(**values)


def placeholders(text: str) -> set[str]:
    """The named fields of a str.format template ("{{" and "}}" are literal braces)."""
    return {field for _, field, _, _ in string.Formatter().parse(text) if field is not None}
