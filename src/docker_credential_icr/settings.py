"""Settings from the environment and config.toml; the environment wins.

config.toml keys:
    mode = "auto" | "refresh" | "bearer" | "apikey"
    registries = ["myreg.example.com:5000", ...]   # extra hosts treated as ICR hosts
    deadline = 30                                   # seconds one `get` may take
    iam_endpoint = "https://iam.cloud.ibm.com"
    vpc = false                                     # VPC instance identity (metadata service)
    metadata_url = "http://169.254.169.254"         # VPC metadata service base URL
"""

from __future__ import annotations

import os

from docker_credential_icr import paths
from docker_credential_icr.hosts import parse_registry_list
from docker_credential_icr.i18n import _
from docker_credential_icr.protocol import HelperError

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing on the hot path
if TYPE_CHECKING:
    from collections.abc import Callable

MODES = ("auto", "refresh", "bearer", "apikey")
DEFAULT_IAM_ENDPOINT = "https://iam.cloud.ibm.com"
DEFAULT_DEADLINE = 30.0
# The VPC metadata service's link-local address; contacted only when `vpc` is enabled.
DEFAULT_METADATA_URL = "http://169.254.169.254"
_KNOWN_KEYS = ("mode", "registries", "deadline", "iam_endpoint", "vpc", "metadata_url")
_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off", "")


class ConfigError(HelperError):
    """A setting is wrong; the message names the file or variable and the key."""


class Settings:
    __slots__ = ("config_path", "deadline", "iam_endpoint", "metadata_url", "mode", "registries", "vpc")

    def __init__(self, mode: str, registries: frozenset[str], deadline: float,
                 iam_endpoint: str, config_path: str | None, vpc: bool = False,
                 metadata_url: str = DEFAULT_METADATA_URL) -> None:
        self.mode = mode
        self.registries = registries
        self.deadline = deadline
        self.iam_endpoint = iam_endpoint
        self.config_path = config_path
        # Off by default: probing 169.254.169.254 off IBM Cloud would stall every `get`.
        self.vpc = vpc
        self.metadata_url = metadata_url


def _read_config(path: str) -> dict:
    try:
        with open(path, "rb") as fh:
            raw = fh.read()
    except FileNotFoundError:
        return {}
    except OSError as exc:
        raise ConfigError(_("cannot read config file {path}: {reason}").format(
            path=path, reason=exc.strerror)) from None
    # tomllib (and the `re` it pulls in) is only paid for when a config file exists.
    import tomllib

    try:
        return tomllib.loads(raw.decode("utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(_("invalid config file {path}: {error}").format(path=path, error=exc)) from None


# Where a bad setting is, for the message: computed only when there is a message to show
# (a valid config file must not load the translations on the hot path).
def _in_file(path: str, key: str) -> Callable[[], str]:
    return lambda: _("config file {path}, key {key}").format(path=path, key=repr(key))


def _variable(name: str) -> Callable[[], str]:
    return lambda: name


def _mode(value: object, where: Callable[[], str]) -> str:
    if not isinstance(value, str) or value.strip().lower() not in MODES:
        raise ConfigError(_("{where}: mode must be one of {modes} (got {value})").format(
            where=where(), modes=", ".join(MODES), value=repr(value)))
    return value.strip().lower()


def _deadline(value: object, where: Callable[[], str]) -> float:
    try:
        seconds = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        seconds = -1.0
    if isinstance(value, bool) or not 0 < seconds <= 3600:
        raise ConfigError(
            _("{where}: deadline must be a number of seconds in (0, 3600] (got {value})").format(
                where=where(), value=repr(value)))
    return seconds


def load() -> Settings:
    path = paths.config_file()
    cfg = _read_config(path)
    for key in cfg:
        if key not in _KNOWN_KEYS:
            raise ConfigError(_("config file {path}: unknown key {key} (known keys: {keys})").format(
                path=path, key=repr(key), keys=", ".join(_KNOWN_KEYS)))

    mode = "auto"
    if "mode" in cfg:
        mode = _mode(cfg["mode"], _in_file(path, "mode"))
    env_mode = os.environ.get("DOCKER_CREDENTIAL_ICR_MODE")
    if env_mode:
        mode = _mode(env_mode, _variable("DOCKER_CREDENTIAL_ICR_MODE"))

    registries: frozenset[str] = frozenset()
    if "registries" in cfg:
        value = cfg["registries"]
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise ConfigError(_("{where}: must be a list of host[:port] strings").format(
                where=_in_file(path, "registries")()))
        try:
            registries = parse_registry_list(",".join(value), _in_file(path, "registries"))
        except ValueError as exc:
            raise ConfigError(str(exc)) from None
    env_regs = os.environ.get("DOCKER_CREDENTIAL_ICR_REGISTRIES")
    if env_regs:
        try:
            registries = registries | parse_registry_list(env_regs, "DOCKER_CREDENTIAL_ICR_REGISTRIES")
        except ValueError as exc:
            raise ConfigError(str(exc)) from None

    deadline = DEFAULT_DEADLINE
    if "deadline" in cfg:
        deadline = _deadline(cfg["deadline"], _in_file(path, "deadline"))
    env_deadline = os.environ.get("DOCKER_CREDENTIAL_ICR_DEADLINE")
    if env_deadline:
        deadline = _deadline(env_deadline, _variable("DOCKER_CREDENTIAL_ICR_DEADLINE"))

    iam_endpoint = DEFAULT_IAM_ENDPOINT
    if "iam_endpoint" in cfg:
        if not isinstance(cfg["iam_endpoint"], str) or not cfg["iam_endpoint"].strip():
            raise ConfigError(_("{where}: must be a URL string").format(
                where=_in_file(path, "iam_endpoint")()))
        iam_endpoint = cfg["iam_endpoint"].strip()
    env_iam = os.environ.get("IBMCLOUD_IAM_API_ENDPOINT")
    if env_iam and env_iam.strip():
        iam_endpoint = env_iam.strip()

    vpc = False
    if "vpc" in cfg:
        if not isinstance(cfg["vpc"], bool):
            raise ConfigError(_("{where}: must be true or false").format(where=_in_file(path, "vpc")()))
        vpc = cfg["vpc"]
    env_vpc = os.environ.get("DOCKER_CREDENTIAL_ICR_VPC")
    if env_vpc is not None:
        value = env_vpc.strip().lower()
        if value not in _TRUE + _FALSE:
            raise ConfigError(_("{where}: must be 1 or 0 (got {value})").format(
                where="DOCKER_CREDENTIAL_ICR_VPC", value=repr(env_vpc[:40])))
        vpc = value in _TRUE

    metadata_url = DEFAULT_METADATA_URL
    if "metadata_url" in cfg:
        if not isinstance(cfg["metadata_url"], str) or not cfg["metadata_url"].strip():
            raise ConfigError(_("{where}: must be a URL string").format(
                where=_in_file(path, "metadata_url")()))
        metadata_url = cfg["metadata_url"].strip()
    env_metadata = os.environ.get("DOCKER_CREDENTIAL_ICR_METADATA_URL")
    if env_metadata and env_metadata.strip():
        metadata_url = env_metadata.strip()

    return Settings(mode, registries, deadline, iam_endpoint, path if cfg else None, vpc, metadata_url)
