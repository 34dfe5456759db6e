"""The credential-helper wire format, as docker/docker-credential-helpers speaks it.

Clients match the three literal messages below byte for byte, so they live here and
nowhere else. Answers are encoded the way Go's encoding/json does (HTML-safe escapes,
trailing newline) so that our stdout is indistinguishable from a Go helper's.
"""

from __future__ import annotations

from docker_credential_icr.i18n import _

# Never translated (clients compare them), and neither are the JSON answers below.
NOT_FOUND = "credentials not found in native keychain"
MISSING_SERVER_URL = "no credentials server URL"
MISSING_USERNAME = "no credentials username"

PROGRAM = "docker-credential-icr"
USAGE = f"Usage: {PROGRAM} <store|get|erase|list|version>"

# A request is a host name or a small JSON object; anything bigger is an attack or a bug.
MAX_REQUEST_BYTES = 64 * 1024


class HelperError(Exception):
    """An error the client sees: one line on stdout, exit status 1."""


class NotFound(HelperError):
    def __init__(self) -> None:
        super().__init__(NOT_FOUND)


# Go's encoder escapes these (HTML safety and JS line separators) — so do we.
_ESCAPES = {
    '"': '\\"',
    "\\": "\\\\",
    "\n": "\\n",
    "\r": "\\r",
    "\t": "\\t",
    "\b": "\\b",
    "\f": "\\f",
    "<": "\\u003c",
    ">": "\\u003e",
    "&": "\\u0026",
    "\u2028": "\\u2028",
    "\u2029": "\\u2029",
}


def _go_string(text: str) -> str:
    out = ['"']
    for ch in text:
        escaped = _ESCAPES.get(ch)
        if escaped is not None:
            out.append(escaped)
        elif ch < " ":
            out.append(f"\\u{ord(ch):04x}")
        elif "\ud800" <= ch <= "\udfff":
            # A lone surrogate (json.loads makes one from "\ud800") cannot be written as
            # UTF-8; Go's encoder writes invalid text as \ufffd, and so do we.
            out.append("\\ufffd")
        else:
            out.append(ch)
    out.append('"')
    return "".join(out)


def encode_credentials(server_url: str, username: str, secret: str) -> str:
    """The `get` answer: one JSON line, field order as Go's struct."""
    return (
        f'{{"ServerURL":{_go_string(server_url)},"Username":{_go_string(username)},'
        f'"Secret":{_go_string(secret)}}}\n'
    )


def encode_list(accounts: dict[str, str]) -> str:
    """The `list` answer: Go encodes a map with its keys sorted."""
    items = ",".join(
        f"{_go_string(k)}:{_go_string(accounts[k])}" for k in sorted(accounts)
    )
    return "{" + items + "}\n"


def decode_request(raw: bytes) -> str:
    """Requests are UTF-8, strictly: a client never sends anything else."""
    if len(raw) > MAX_REQUEST_BYTES:
        raise HelperError(_("request too large (more than {limit} bytes)").format(limit=MAX_REQUEST_BYTES))
    try:
        return raw.decode("utf-8", errors="strict")
    except UnicodeDecodeError:
        raise HelperError(_("request is not valid UTF-8")) from None


def parse_server_url(text: str) -> str:
    """`get`/`erase` stdin: the server URL, whitespace trimmed as the Go helpers do."""
    server_url = text.strip()
    if not server_url:
        raise HelperError(MISSING_SERVER_URL)
    return server_url


def parse_store_request(text: str) -> tuple[str, str, str]:
    """`store` stdin → (ServerURL, Username, Secret).

    Go's json.Unmarshal matches field names case-insensitively and ignores unknown
    fields; we do the same so that every client that works with a Go helper works here.
    """
    import json

    try:
        doc = json.loads(text)
    except ValueError:
        raise HelperError(_("store: request is not valid JSON")) from None
    if not isinstance(doc, dict):
        raise HelperError(
            _("store: request must be a JSON object {fields}").format(
                fields='{"ServerURL","Username","Secret"}')
        )
    fields = {"serverurl": "", "username": "", "secret": ""}
    for key, value in doc.items():
        name = key.lower()
        if name not in fields or value is None:
            continue
        if not isinstance(value, str):
            raise HelperError(_("store: field {field} must be a string").format(field=repr(key)))
        fields[name] = value
    if not fields["serverurl"].strip():
        raise HelperError(MISSING_SERVER_URL)
    if not fields["username"]:
        raise HelperError(MISSING_USERNAME)
    return fields["serverurl"].strip(), fields["username"], fields["secret"]
