"""`json.loads` for the hot path, without importing the `json` package.

`import json` costs ~5 ms per start — more than half of a bare `python -c pass` —
because json.decoder and json.scanner import `re` (which pulls enum, functools,
collections…) and compile regular expressions that only the pure-Python fallback
and whitespace skipping use. Reading credentials.json or a token-cache entry is on
the path of every `docker pull`, so here we drive CPython's C scanner (`_json`, the
very scanner `json.loads` uses) directly and skip whitespace by hand.

Same results as `json.loads(text)` for every input (tests/unit/test_jsonfast.py
compares them, also in a fresh interpreter); errors are ValueError (most are json's
own JSONDecodeError, a ValueError).
Without `_json` (another Python implementation) this simply calls `json.loads`.
Writing JSON is not on the hot path: use `json.dumps` there.
"""

from __future__ import annotations

_WHITESPACE = " \t\n\r"  # json.decoder.WHITESPACE: [ \t\n\r]*
_scanner = None


class _Context:
    """The attributes `_json.make_scanner` reads, with json.JSONDecoder's defaults."""

    strict = True
    object_hook = None
    object_pairs_hook = None
    parse_float = float
    parse_int = int
    memo: dict = {}  # noqa: RUF012  (read only by the pure-Python scanner)

    @staticmethod
    def parse_constant(name: str) -> float:
        return {"-Infinity": float("-inf"), "Infinity": float("inf"), "NaN": float("nan")}[name]


def _skip(text: str, index: int) -> int:
    end = len(text)
    while index < end and text[index] in _WHITESPACE:
        index += 1
    return index


def loads(text: str) -> object:
    """Parse one JSON document from `text` (a str), exactly as json.loads does."""
    global _scanner
    if _scanner is None:
        try:
            from _json import make_scanner
        except ImportError:  # not CPython: the real thing, at its usual cost
            import json

            return json.loads(text)
        _scanner = make_scanner(_Context())
    if not isinstance(text, str):
        raise TypeError(f"the JSON object must be str, not {type(text).__name__}")
    start = _skip(text, 0)
    try:
        value, end = _scanner(text, start)
    except StopIteration as exc:
        raise ValueError(f"Expecting value: char {exc.value}") from None
    except SystemError:
        # CPython 3.11's _json reports most syntax errors through json.decoder's
        # JSONDecodeError, which it only looks up in sys.modules: with json not loaded
        # that surfaces as SystemError. Errors are off the hot path, so let json itself
        # parse the text and raise its own error.
        import json

        return json.loads(text)
    end = _skip(text, end)
    if end != len(text):
        raise ValueError(f"Extra data: char {end}")
    return value
