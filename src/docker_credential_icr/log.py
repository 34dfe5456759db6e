"""Diagnostics on stderr (and an optional log file), always through `redact`.

The stdlib `logging` package is deliberately not used: importing it costs several
milliseconds on a path that every `docker pull` pays for, and we need only a level
filter and two sinks. Every line passes through `redact`, the one place that knows
the secrets this process has seen.
"""

from __future__ import annotations

import os
import sys

LEVELS = {"debug": 10, "info": 20, "warning": 30, "error": 40}
_SECRETS: set[str] = set()
_MIN_SECRET_LEN = 4


def remember_secret(secret: str | None) -> None:
    """Every secret read or received is registered here so no output can carry it."""
    if secret and len(secret) >= _MIN_SECRET_LEN:
        _SECRETS.add(secret)


def redact(text: str) -> str:
    # Longest first, so a secret containing another is replaced whole.
    for secret in sorted(_SECRETS, key=len, reverse=True):
        if secret in text:
            text = text.replace(secret, "***")
    return text


def _threshold() -> int:
    name = os.environ.get("DOCKER_CREDENTIAL_ICR_LOG", "warning").strip().lower()
    return LEVELS.get(name, LEVELS["warning"])


def log(level: str, message: str) -> None:
    value = LEVELS[level]
    log_file = os.environ.get("DOCKER_CREDENTIAL_ICR_LOG_FILE")
    to_stderr = value >= _threshold()
    if not to_stderr and not log_file:
        return
    line = f"docker-credential-icr: {level}: {redact(message)}\n"
    if to_stderr:
        sys.stderr.write(line)
        sys.stderr.flush()
    if log_file:
        _append(log_file, line)


def _append(path: str, line: str) -> None:
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    except OSError as exc:
        from docker_credential_icr.i18n import _

        message = _("cannot open log file {path}: {reason}").format(path=path, reason=exc.strerror)
        sys.stderr.write(f"docker-credential-icr: warning: {message}\n")
        return
    try:
        os.write(fd, line.encode("utf-8", "replace"))
    finally:
        os.close(fd)


def debug(message: str) -> None:
    log("debug", message)


def info(message: str) -> None:
    log("info", message)


def warning(message: str) -> None:
    log("warning", message)
