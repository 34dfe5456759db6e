"""paths.py's stdlib fast path gives exactly what platformdirs gives, or defers to it."""

from __future__ import annotations

import itertools
import os
import subprocess
import sys

import platformdirs
import pytest

from docker_credential_icr import paths

APP = paths.APP_NAME
KINDS = {
    "config": ("XDG_CONFIG_HOME", platformdirs.user_config_dir),
    "data": ("XDG_DATA_HOME", platformdirs.user_data_dir),
    "cache": ("XDG_CACHE_HOME", platformdirs.user_cache_dir),
}
UNSET = object()
XDG_VALUES = [UNSET, "", " ", "/xdg/base", "/xdg/trailing/", "/", "//x", "/with space/ ", " /lead",
              "relative/dir", ".", "~/tilde", "$HOME/x"]
HOME_VALUES = [UNSET, "", "/home/user", "/home/user/", "/", "//", "/home//double", "relative", "~", " /x"]
ON_XDG_PLATFORM = sys.platform.startswith(("linux", "freebsd", "openbsd", "netbsd"))


def _platformdirs_answer(kind: str) -> object:
    try:
        return KINDS[kind][1](APP, appauthor=False)
    except Exception as exc:
        return type(exc)


def _our_answer(kind: str) -> object:
    try:
        return paths.user_dir(kind)
    except Exception as exc:
        return type(exc)


def _set(monkeypatch: pytest.MonkeyPatch, name: str, value: object) -> None:
    if value is UNSET:
        monkeypatch.delenv(name, raising=False)
    else:
        monkeypatch.setenv(name, value)  # type: ignore[arg-type]


@pytest.fixture(autouse=True)
def _no_android(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ANDROID_DATA", raising=False)
    monkeypatch.delenv("ANDROID_ROOT", raising=False)


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_matches_platformdirs_for_every_env_combination(kind: str, monkeypatch: pytest.MonkeyPatch) -> None:
    variable = KINDS[kind][0]
    fast_taken = 0
    for xdg, home in itertools.product(XDG_VALUES, HOME_VALUES):
        _set(monkeypatch, variable, xdg)
        _set(monkeypatch, "HOME", home)
        expected = _platformdirs_answer(kind)
        assert _our_answer(kind) == expected, (kind, xdg, home)
        if paths._fast_base(kind) is not None:
            fast_taken += 1
            assert isinstance(expected, str)
    if ON_XDG_PLATFORM:
        # The fast path must really cover the usual cases, not defer everything.
        assert fast_taken >= 5 * len(HOME_VALUES)


@pytest.mark.skipif(not ON_XDG_PLATFORM, reason="the stdlib fast path is for XDG platforms only")
@pytest.mark.parametrize(("xdg", "home", "fast"), [
    (UNSET, "/home/u", True),
    ("", "/home/u", True),
    ("/x", UNSET, True),
    ("/x", "relative", True),
    ("relative", "/home/u", False),
    (" ", "/home/u", False),
    (UNSET, UNSET, False),
    (UNSET, "", False),
    (UNSET, "relative", False),
])
def test_which_cases_take_the_fast_path(xdg: object, home: object, fast: bool,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    for kind, (variable, _) in KINDS.items():
        _set(monkeypatch, variable, xdg)
        _set(monkeypatch, "HOME", home)
        assert (paths._fast_base(kind) is not None) is fast


@pytest.mark.skipif(not ON_XDG_PLATFORM, reason="the stdlib fast path is for XDG platforms only")
def test_android_defers_to_platformdirs(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", "/home/u")
    monkeypatch.setenv("ANDROID_DATA", "/data")
    monkeypatch.setenv("ANDROID_ROOT", "/system")
    assert all(paths._fast_base(kind) is None for kind in KINDS)


def test_files_are_inside_platformdirs_dirs(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    for variable, _ in KINDS.values():
        monkeypatch.delenv(variable, raising=False)
    monkeypatch.delenv("DOCKER_CREDENTIAL_ICR_CONFIG", raising=False)
    assert paths.config_file() == os.path.join(platformdirs.user_config_dir(APP, appauthor=False),
                                               "config.toml")
    assert paths.credentials_file() == os.path.join(platformdirs.user_data_dir(APP, appauthor=False),
                                                    "credentials.json")
    assert paths.cache_dir() == platformdirs.user_cache_dir(APP, appauthor=False)
    monkeypatch.setenv("DOCKER_CREDENTIAL_ICR_CONFIG", str(tmp_path / "other.toml"))
    assert paths.config_file() == str(tmp_path / "other.toml")


@pytest.mark.skipif(not ON_XDG_PLATFORM, reason="the stdlib fast path is for XDG platforms only")
def test_fast_path_does_not_import_platformdirs(tmp_path) -> None:
    code = ("import sys; from docker_credential_icr import paths; "
            "print(paths.config_file(), paths.credentials_file(), paths.cache_dir()); "
            "print('platformdirs' in sys.modules)")
    env = {"PATH": os.environ.get("PATH", ""), "HOME": str(tmp_path)}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         check=True).stdout.splitlines()
    assert out[1] == "False"
    assert out[0].split() == [
        f"{tmp_path}/.config/{APP}/config.toml",
        f"{tmp_path}/.local/share/{APP}/credentials.json",
        f"{tmp_path}/.cache/{APP}",
    ]
