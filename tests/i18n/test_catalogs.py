"""The catalogs are complete (`make check-catalogs` runs this file alone).

Fails when a message in the source is missing from messages.pot (run `make catalogs`),
when a language lacks a translation or has a fuzzy one, when a translation's
{placeholders} or line breaks differ from the English, or when a compiled .mo does not
match its .po (run `make catalogs`, or `make venv`).
"""

from __future__ import annotations

import gettext

import pytest
from babel.messages.extract import extract_from_dir

from tests.i18n._catalogs import (
    DOMAIN,
    LANGUAGES,
    LOCALE_DIR,
    PACKAGE,
    POT,
    mo_path,
    placeholders,
    po_path,
    read_catalog,
)


def template_ids() -> list[str]:
    return [m.id for m in read_catalog(POT) if m.id]


def test_template_matches_the_source() -> None:
    # (filename, lineno, message, comments, context) per message
    in_source = {found[2] for found in extract_from_dir(
        str(PACKAGE), method_map=[("**.py", "python")], keywords={"_": None})}
    in_template = set(template_ids())
    assert not in_source - in_template, (
        f"messages missing from {POT.name} (run `make catalogs`): {sorted(in_source - in_template)}")
    assert not in_template - in_source, (
        f"messages in {POT.name} that the source no longer has (run `make catalogs`): "
        f"{sorted(in_template - in_source)}")


def test_every_message_has_placeholders_a_translator_can_see() -> None:
    for msgid in template_ids():
        placeholders(msgid)  # raises on a malformed template ("{" alone, "{0" …)
        assert "{}" not in msgid, f"positional placeholder in {msgid!r}: name it"


def test_only_the_shipped_languages() -> None:
    found = sorted(p.parent.parent.name for p in LOCALE_DIR.glob(f"*/LC_MESSAGES/{DOMAIN}.po"))
    assert found == sorted(LANGUAGES)


@pytest.mark.parametrize("lang", LANGUAGES)
def test_every_message_translated(lang: str) -> None:
    catalog = read_catalog(po_path(lang))
    problems = []
    for msgid in template_ids():
        message = catalog.get(msgid)
        if message is None or not message.string:
            problems.append(f"untranslated: {msgid!r}")
        elif message.fuzzy:
            problems.append(f"fuzzy (review it, then drop the flag): {msgid!r}")
    assert not problems, f"{po_path(lang)}:\n" + "\n".join(problems)


@pytest.mark.parametrize("lang", LANGUAGES)
def test_placeholders_and_lines_match(lang: str) -> None:
    catalog = read_catalog(po_path(lang))
    problems = []
    for msgid in template_ids():
        message = catalog.get(msgid)
        if message is None or not message.string:
            continue  # test_every_message_translated reports it
        text = message.string
        try:
            fields = placeholders(text)
        except ValueError as exc:
            problems.append(f"malformed ({exc}): {text!r}")
            continue
        if fields != placeholders(msgid):
            problems.append(f"placeholders {sorted(fields)} != {sorted(placeholders(msgid))}: {text!r}")
        if text.count("\n") != msgid.count("\n"):
            problems.append(f"{text.count(chr(10))} line breaks, the English has {msgid.count(chr(10))}: "
                            f"{text!r}")
        if msgid.endswith(" ") and not text.endswith(" ") and not text.endswith("："):
            problems.append(f"the English ends with a space (a prefix), the translation does not: {text!r}")
    assert not problems, f"{po_path(lang)}:\n" + "\n".join(problems)


@pytest.mark.parametrize("lang", LANGUAGES)
def test_compiled_catalog_matches_po(lang: str) -> None:
    mo = mo_path(lang)
    assert mo.exists(), f"{mo} missing: run `make catalogs` (or `make venv`)"
    with open(mo, "rb") as fh:
        compiled = gettext.GNUTranslations(fh)
    stale = [m.id for m in read_catalog(po_path(lang))
             if m.id and m.string and not m.fuzzy and compiled.gettext(m.id) != m.string]
    assert not stale, f"{mo} is older than its .po: run `make catalogs` ({len(stale)} messages differ)"
