"""Runner for the CNCF distribution registry (Debian `docker-registry`) with token auth.

`with Registry.for_token_service(svc) as reg:` starts `docker-registry serve`
on 127.0.0.1 with storage in a temp dir, trusting the token service's cert;
`reg.host` is "127.0.0.1:PORT" (Docker treats 127.0.0.0/8 as insecure, so
plain http is fine for every client).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from tests.fakes._util import LOOPBACK, free_port, http_request, stop_process, wait_until

if TYPE_CHECKING:
    from tests.fakes.icr_token_service import IcrTokenService

REGISTRY_BINARY = "docker-registry"


def registry_available() -> tuple[bool, str]:
    """Whether the distribution registry binary is installed, and why not."""
    if shutil.which(REGISTRY_BINARY) is None:
        return False, f"{REGISTRY_BINARY} not on PATH (apt-get install docker-registry)"
    return True, ""


class RegistryError(RuntimeError):
    """The registry did not come up; the message carries the tail of its log."""


class Registry:
    """A distribution registry process with token auth, stopped by PID."""

    def __init__(
        self,
        *,
        realm: str,
        service: str,
        issuer: str,
        rootcertbundle: str | os.PathLike[str],
        workdir: str | os.PathLike[str] | None = None,
        port: int = 0,
        log_level: str = "info",
        start_timeout: float = 15.0,
    ) -> None:
        self.realm = realm
        self.service = service
        self.issuer = issuer
        self.rootcertbundle = Path(rootcertbundle)
        self.log_level = log_level
        self.start_timeout = start_timeout
        self.port = port
        self._given_workdir = Path(workdir) if workdir else None
        self.workdir: Path | None = None
        self.proc: subprocess.Popen[bytes] | None = None

    @classmethod
    def for_token_service(cls, svc: IcrTokenService, **kwargs: object) -> Registry:
        """A registry whose auth realm, service, issuer and trusted cert are `svc`'s."""
        assert svc.cert_path is not None, "start the token service first"
        return cls(
            realm=svc.realm, service=svc.service, issuer=svc.issuer, rootcertbundle=svc.cert_path, **kwargs
        )  # type: ignore[arg-type]

    @property
    def host(self) -> str:
        return f"{LOOPBACK}:{self.port}"

    @property
    def url(self) -> str:
        return f"http://{self.host}"

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    @property
    def config_path(self) -> Path:
        assert self.workdir is not None
        return self.workdir / "config.yml"

    @property
    def storage_dir(self) -> Path:
        assert self.workdir is not None
        return self.workdir / "storage"

    @property
    def log_path(self) -> Path:
        assert self.workdir is not None
        return self.workdir / "registry.log"

    def config(self) -> dict[str, object]:
        """The registry configuration (YAML is a superset of JSON, so it is written as JSON)."""
        return {
            "version": 0.1,
            "log": {"level": self.log_level, "fields": {"service": "registry"}},
            "storage": {
                "filesystem": {"rootdirectory": str(self.storage_dir)},
                "delete": {"enabled": True},
                "cache": {"blobdescriptor": "inmemory"},
            },
            "http": {"addr": self.host, "headers": {"X-Content-Type-Options": ["nosniff"]}},
            "auth": {
                "token": {
                    "realm": self.realm,
                    "service": self.service,
                    "issuer": self.issuer,
                    "rootcertbundle": str(self.rootcertbundle),
                }
            },
            # The storage health check polls every 10 s; it only adds noise to the log.
            "health": {"storagedriver": {"enabled": False}},
        }

    def start(self) -> Registry:
        self.workdir = self._given_workdir or Path(tempfile.mkdtemp(prefix="icr-registry-"))
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.storage_dir.mkdir(exist_ok=True)
        fixed_port = self.port
        # free_port() races with other programs until the registry binds: retry a few times.
        for _ in range(3):
            self.port = fixed_port or free_port()
            self.config_path.write_text(json.dumps(self.config(), indent=2))
            if self._launch():
                return self
            if fixed_port:
                break
        tail = self.log_path.read_text(errors="replace")[-2000:] if self.log_path.exists() else ""
        self.stop()
        raise RegistryError(f"registry did not answer on {self.host}:\n{tail}")

    def _launch(self) -> bool:
        # REGISTRY_* variables override config keys: do not let the caller's leak in.
        env = {k: v for k, v in os.environ.items() if not k.startswith("REGISTRY_")}
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                [REGISTRY_BINARY, "serve", str(self.config_path)],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                start_new_session=True,  # a Ctrl-C in the test run must not skip our orderly stop
            )
        ok = wait_until(
            lambda: self.proc is not None and (self.proc.poll() is not None or self._answers()),
            self.start_timeout,
        )
        if ok and self.proc.poll() is None:
            return True
        stop_process(self.proc)
        self.proc = None
        return False

    def _answers(self) -> bool:
        try:
            status, headers, _ = http_request(self.url + "/v2/", timeout=1.0)
        except OSError:
            return False
        # 401 with a Bearer challenge proves token auth is configured, not just that something listens.
        challenge = {k.lower(): v for k, v in headers.items()}.get("www-authenticate", "")
        return status == 401 and challenge.startswith("Bearer ")

    def stop(self) -> None:
        if self.proc is not None:
            stop_process(self.proc)
            self.proc = None
        if self.workdir is not None and self._given_workdir is None:
            shutil.rmtree(self.workdir, ignore_errors=True)
            self.workdir = None

    def __enter__(self) -> Registry:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
