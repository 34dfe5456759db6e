"""Where our files live. platformdirs decides; this module asks it only when it must.

Why not always `import platformdirs`: it costs ~10 ms (a third of a `get`) because it
pulls in pathlib, tempfile, shutil, fnmatch, re, urllib.parse… and every `docker pull`
pays for it. On Linux and the BSDs platformdirs follows the XDG base-directory rules,
which are a few lines of string work; we compute them here with `os` alone, but only
in the cases where the answer provably equals platformdirs' own for every version we
accept (>= 3.0):

- `$XDG_<KIND>_HOME` that is absolute (starts with "/") is used verbatim; every
  platformdirs version does so.
- `$XDG_<KIND>_HOME` unset or empty, and `$HOME` absolute: `~/.config`, `~/.local/share`,
  `~/.cache` through `os.path.expanduser`, exactly the call platformdirs makes.

Everything else — a relative or blank XDG value (platformdirs 3 used it, newer
releases ignore it), an unset or relative HOME (newer releases consult the password
database and may refuse), Android, macOS, Windows, any other platform — is handed to
platformdirs itself, so the fast path can only ever agree with it.
tests/protocol/test_paths.py checks that claim against the installed platformdirs for
many environment combinations.
"""

from __future__ import annotations

import os
import sys

APP_NAME = "docker-credential-icr"

# The XDG variable and its default below $HOME, per platformdirs' Unix class.
_XDG = {
    "config": ("XDG_CONFIG_HOME", "~/.config"),
    "data": ("XDG_DATA_HOME", "~/.local/share"),
    "cache": ("XDG_CACHE_HOME", "~/.cache"),
}

# platformdirs uses its Unix (XDG) class for every platform that is not win32, darwin,
# ios or Android; we take the fast path only on the common ones among those.
_XDG_PLATFORM = sys.platform.startswith(("linux", "freebsd", "openbsd", "netbsd")) and not hasattr(
    sys, "getandroidapilevel"
)


def _fast_base(kind: str) -> str | None:
    """The XDG base directory for `kind`, or None when platformdirs must decide."""
    if not _XDG_PLATFORM:
        return None
    environ = os.environ
    if environ.get("ANDROID_DATA") == "/data" and environ.get("ANDROID_ROOT") == "/system":
        return None  # platformdirs may pick its Android class here
    variable, default = _XDG[kind]
    value = environ.get(variable, "")
    if value.startswith("/"):
        return value
    if value:
        return None  # relative XDG value: platformdirs versions differ, let it decide
    home = environ.get("HOME")
    if home is None or not home.startswith("/"):
        return None  # platformdirs falls back to the password database, or refuses
    return os.path.expanduser(default)


def _platformdirs_dir(kind: str) -> str:
    import platformdirs

    if kind == "config":
        return platformdirs.user_config_dir(APP_NAME, appauthor=False)
    if kind == "data":
        return platformdirs.user_data_dir(APP_NAME, appauthor=False)
    return platformdirs.user_cache_dir(APP_NAME, appauthor=False)


def user_dir(kind: str) -> str:
    """platformdirs' user_<kind>_dir for our app; kind is "config", "data" or "cache"."""
    base = _fast_base(kind)
    if base is None:
        return _platformdirs_dir(kind)
    return os.path.join(base, APP_NAME)


def config_file() -> str:
    override = os.environ.get("DOCKER_CREDENTIAL_ICR_CONFIG")
    if override:
        return override
    return os.path.join(user_dir("config"), "config.toml")


def data_dir() -> str:
    return user_dir("data")


def cache_dir() -> str:
    return user_dir("cache")


def credentials_file() -> str:
    return os.path.join(data_dir(), "credentials.json")
