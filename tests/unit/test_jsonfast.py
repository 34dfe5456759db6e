"""jsonfast.loads gives what json.loads gives: the same value, or an error for the same inputs."""

from __future__ import annotations

import json
import math
import subprocess
import sys

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from docker_credential_icr import jsonfast

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(), children, max_size=4),
    max_leaves=20,
)


def same(text: str) -> None:
    try:
        expected = json.loads(text)
    except ValueError:
        with pytest.raises(ValueError):
            jsonfast.loads(text)
        return
    got = jsonfast.loads(text)
    if isinstance(expected, float) and math.isnan(expected):
        assert math.isnan(got)  # type: ignore[arg-type]
    else:
        assert got == expected
        assert type(got) is type(expected)


@given(json_values, st.sampled_from([None, 2, "\t"]), st.sampled_from(["", " ", "\n\t\r "]))
@settings(max_examples=300)
def test_round_trips_like_json(value: object, indent: object, pad: str) -> None:
    same(pad + json.dumps(value, indent=indent) + pad)  # type: ignore[arg-type]


@given(st.text(alphabet='{}[]":,0123456789.eE+-tfnrulasNIy \t\n\\\u00e9\x00', max_size=30))
@settings(max_examples=500)
def test_arbitrary_text_accepted_or_refused_alike(text: str) -> None:
    same(text)


@pytest.mark.parametrize("text", [
    "", " ", "{", "}", '{"a":1}x', '{"a":1} {}', "\ufeff{}", "[1,]", '{"a":1,}', "01", "NaN", "-Infinity",
    "Infinity", '"\x01"', '"\\ud800"', "1e400", '{"a":1,"a":2}', "true", "null ", '"\u2028"', "\x0c{}",
    '{"version": 1, "auths": {"us.icr.io": {"Username": "iamapikey", "Secret": "k"}}}',
])
def test_edge_cases(text: str) -> None:
    same(text)


def test_bytes_are_refused() -> None:
    with pytest.raises(TypeError):
        jsonfast.loads(b"{}")  # type: ignore[arg-type]


BAD = ["{not json", "{", '{"a" 1}', '{"a":1,}', "[1,]", '"\x01"', '"\\x"', '"\\ud80"', "", "garbage", "1 2",
       '{"a":1}x', "\ufeff{}"]


def test_errors_without_json_loaded() -> None:
    # _json raises some errors through json.decoder, found only if json is already loaded:
    # a fresh interpreter is what the helper is, so that case is checked there.
    code = ("import sys, json as j; del sys.modules['json'], sys.modules['json.decoder'], "
            "sys.modules['json.scanner'], sys.modules['json.encoder']\n"
            "from docker_credential_icr import jsonfast\n"
            "for text in j.loads(sys.argv[1]):\n"
            "    try:\n        jsonfast.loads(text)\n    except ValueError:\n        print('ValueError')\n"
            "    except Exception as exc:\n        print(type(exc).__name__)\n"
            "    else:\n        print('parsed')\n")
    out = subprocess.run([sys.executable, "-c", code, json.dumps(BAD)], capture_output=True, text=True,
                         check=True).stdout.split()
    assert out == ["ValueError"] * len(BAD)


def test_does_not_import_json_or_re() -> None:
    code = ("import sys; from docker_credential_icr import jsonfast; "
            "v = jsonfast.loads(' {\"a\": [1, 2.5, null, true, \"x\"]} '); "
            "print(v, sorted(m for m in ('json', 're', 'enum') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-I", "-c", code], capture_output=True, text=True, check=True,
                         env=None).stdout
    assert out.strip() == "{'a': [1, 2.5, None, True, 'x']} []"
