"""Messages in the user's language: stdlib gettext, loaded on the first message only.

`_("...")` translates one message. The catalog (domain `docker-credential-icr`) is
looked up in this package's `locale/` directory — beside this file, which is also
where the PyInstaller bundle puts it — for the language that LANGUAGE, LC_ALL,
LC_MESSAGES and LANG name, in gettext's order; an unknown language gives English,
the source language. The .po files are in locale/<lang>/LC_MESSAGES/; `make catalogs`
compiles them (and refreshes them from the source) with Babel.

Costs nothing until a message is shown: `gettext` (and the `locale`, `re` it pulls
in) is imported on the first call, so a `get` that answers, or answers "not found",
never loads it.

What is translated and what is not:
- Translated: every message a person reads — errors other than the three literal
  protocol messages, --help texts, `configure-docker` and `doctor` output, warnings.
- Never translated: the three messages clients match byte for byte (protocol.py), the
  JSON answers, the `Usage:` line of the protocol actions (it mirrors
  docker/docker-credential-helpers' own, word for word, and scripts grep for it), and
  inside messages: product names, commands, options, environment variable names, file
  paths and JSON keys.
- Debug and info log lines stay English: they are developer diagnostics, read in bug
  reports and searched for in the source, not messages for the person at the terminal.

Messages use named `{placeholders}` filled by `.format(...)` after translation, so a
translation may move them but never has to know the values.
"""

from __future__ import annotations

import os

DOMAIN = "docker-credential-icr"
LOCALEDIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "locale")

_translation = None


def _load():  # -> gettext.NullTranslations (gettext is not imported at module level)
    import gettext

    return gettext.translation(DOMAIN, LOCALEDIR, fallback=True)


def _(message: str) -> str:
    """The message in the user's language (English when there is no translation)."""
    global _translation
    if _translation is None:
        _translation = _load()
    return _translation.gettext(message)


def reset() -> None:
    """Forget the loaded catalog (tests that change the language in-process)."""
    global _translation
    _translation = None


def argument_parser(**kwargs: object):  # -> argparse.ArgumentParser
    """An argparse parser whose own words (`usage:`, section titles, -h's help, `error:`) are
    translated too. argparse's error details ("unrecognized arguments: …") stay English:
    they come from Python's own catalog, which Python does not ship."""
    import argparse
    import sys

    base = kwargs.pop("formatter_class", argparse.HelpFormatter)

    class Formatter(base):  # type: ignore[valid-type, misc]
        def add_usage(self, usage, actions, groups, prefix=None) -> None:  # type: ignore[no-untyped-def]
            super().add_usage(usage, actions, groups, _("usage: ") if prefix is None else prefix)

    class Parser(argparse.ArgumentParser):
        def error(self, message: str):  # type: ignore[override]
            self.print_usage(sys.stderr)
            self.exit(2, _("{prog}: error: {message}").format(prog=self.prog, message=message) + "\n")

    parser = Parser(formatter_class=Formatter, add_help=False, **kwargs)  # type: ignore[arg-type]
    parser._positionals.title = _("positional arguments")
    parser._optionals.title = _("options")
    parser.add_argument("-h", "--help", action="help", help=_("show this help message and exit"))
    return parser
