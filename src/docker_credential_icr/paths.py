"""Where our files live. platformdirs decides; this module only asks it, lazily."""

from __future__ import annotations

import os

APP_NAME = "docker-credential-icr"


def _platformdirs():
    import platformdirs

    return platformdirs


def config_file() -> str:
    override = os.environ.get("DOCKER_CREDENTIAL_ICR_CONFIG")
    if override:
        return override
    return os.path.join(_platformdirs().user_config_dir(APP_NAME, appauthor=False), "config.toml")


def data_dir() -> str:
    return _platformdirs().user_data_dir(APP_NAME, appauthor=False)


def cache_dir() -> str:
    return _platformdirs().user_cache_dir(APP_NAME, appauthor=False)


def credentials_file() -> str:
    return os.path.join(data_dir(), "credentials.json")
