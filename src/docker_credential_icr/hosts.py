"""Which hosts are ICR hosts, and the one canonical spelling we compare them in.

A secret goes only to a host that is *exactly* one of these after canonicalisation:
look-alikes (`us.icr.io.example.com`, `evil-icr.io`, `icr.io@example.com`, `icr.io.`)
must never match, so matching is set membership, never suffix or pattern matching.
"""

from __future__ import annotations

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing on the hot path
if TYPE_CHECKING:
    from collections.abc import Callable

REGIONS = ("us", "uk", "de", "au", "jp", "jp2", "ca", "ca2", "br", "es", "fr2", "in", "in2")

PUBLIC_HOSTS = ("icr.io", *(f"{r}.icr.io" for r in REGIONS))
PRIVATE_HOSTS = ("private.icr.io", *(f"private.{r}.icr.io" for r in REGIONS))
LEGACY_HOSTS = (
    "registry.bluemix.net",
    "registry.ng.bluemix.net",
    "registry.eu-gb.bluemix.net",
    "registry.eu-de.bluemix.net",
    "registry.au-syd.bluemix.net",
)
# IBM's entitled registry: only stored `cp` credentials (entitlement key) apply there.
ENTITLED_HOST = "cp.icr.io"

BUILTIN_HOSTS = frozenset((*PUBLIC_HOSTS, *PRIVATE_HOSTS, *LEGACY_HOSTS, ENTITLED_HOST))

_HOST_CHARS = frozenset("abcdefghijklmnopqrstuvwxyz0123456789.-")
# str.lower() folds some non-ASCII letters into ASCII ("\u212a" KELVIN SIGN → "k", so
# "u\u212a.icr.io" would become "uk.icr.io"): host names are ASCII, lower-case ASCII only.
_ASCII_LOWER = {c: c + 32 for c in range(ord("A"), ord("Z") + 1)}


def _valid_name(name: str) -> bool:
    if not name or len(name) > 253:
        return False
    if not set(name) <= _HOST_CHARS:
        return False
    # Every label non-empty: rejects "icr.io." and "..icr.io" outright.
    return all(0 < len(label) <= 63 and label[0] != "-" and label[-1] != "-"
               for label in name.split("."))


def canonical_host(server_url: str) -> str | None:
    """`https://US.icr.io/v2/` → `us.icr.io`; None when it is not a plain host[:port].

    Clients send a bare `host[:port]`, `docker login` may send a URL; both are reduced
    to lower-case `host[:port]`. Userinfo, odd schemes and bad characters give None.
    """
    text = server_url.strip().translate(_ASCII_LOWER)
    if "://" in text:
        scheme, _, text = text.partition("://")
        if scheme not in ("https", "http"):
            return None
    for sep in "/?#":
        text = text.split(sep, 1)[0]
    if not text or "@" in text:
        return None
    name, colon, port = text.partition(":")
    if colon:
        if not port.isdigit() or not port.isascii() or not 0 < int(port) < 65536:
            return None
        port = str(int(port))
    if not _valid_name(name):
        return None
    if not colon or (port == "443" and name in BUILTIN_HOSTS):
        return name
    return f"{name}:{port}"


def parse_registry_list(value: str, where: str | Callable[[], str]) -> frozenset[str]:
    """Comma-separated host[:port] list from config or env; a bad entry names `where`
    (a string, or a function giving it: called only when there is an error to report)."""
    hosts = set()
    for item in value.split(","):
        item = item.strip()
        if not item:
            continue
        host = canonical_host(item)
        if host is None or host != item.lower().rstrip("/"):
            from docker_credential_icr.i18n import _

            raise ValueError(_("{where}: {item} is not a host[:port] (example: {example})").format(
                where=where() if callable(where) else where, item=repr(item),
                example="myreg.example.com:5000"))
        hosts.add(host)
    return frozenset(hosts)


def is_icr_host(host: str | None, extra: frozenset[str] = frozenset()) -> bool:
    return host is not None and (host in BUILTIN_HOSTS or host in extra)
