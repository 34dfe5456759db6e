"""Runner for a private, real dockerd (Debian `docker.io`), for end-to-end tests.

Everything lives under one short temp dir (unix socket paths must stay under
~108 bytes, and containerd puts its own sockets under the exec root):
data root, exec root, pidfile, socket and an empty `--config-file` so that
/etc/docker/daemon.json is ignored. No iptables, no bridge, vfs storage: it
runs inside a container without privileges beyond root. 127.0.0.0/8 is an
insecure registry range by default, so no `--insecure-registry` is needed.

    with Dockerd() as d:
        d.docker("version")                     # the docker CLI against this daemon
        env = d.env(docker_config="/tmp/x")     # DOCKER_HOST + DOCKER_CONFIG for subprocesses
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from tests.fakes._util import (
    SharedLitter,
    descendant_pids,
    kill_pids,
    pid_alive,
    stop_process,
    wait_until,
)

# dockerd 20.10 writes these whatever its flags say (key.json for the legacy trust key,
# /run/docker/plugins for plugin discovery); the last dockerd user on the machine removes them.
HOST_LITTER = (Path("/etc/docker/key.json"), Path("/run/docker"))
LITTER = SharedLitter("dockerd", HOST_LITTER)


def dockerd_available() -> tuple[bool, str]:
    """(True, "") if a private dockerd can run here, else (False, why not)."""
    for binary in ("dockerd", "docker", "containerd"):
        if shutil.which(binary) is None:
            return False, f"{binary} not on PATH (apt-get install docker.io)"
    if os.geteuid() != 0:
        return False, "dockerd needs root"
    return True, ""


class DockerdError(RuntimeError):
    """dockerd did not come up; the message carries the tail of its log."""


class Dockerd:
    """A dockerd process with private roots, stopped by PID together with its containerd."""

    def __init__(
        self,
        *,
        workdir: str | os.PathLike[str] | None = None,
        extra_args: tuple[str, ...] = (),
        start_timeout: float = 30.0,
        stop_timeout: float = 20.0,
    ) -> None:
        self.extra_args = extra_args
        self.start_timeout = start_timeout
        self.stop_timeout = stop_timeout
        self._given_workdir = Path(workdir) if workdir else None
        self.workdir: Path | None = None
        self.proc: subprocess.Popen[bytes] | None = None
        self._registered = False

    @property
    def socket_path(self) -> Path:
        assert self.workdir is not None
        return self.workdir / "d.sock"

    @property
    def host(self) -> str:
        return f"unix://{self.socket_path}"

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    @property
    def log_path(self) -> Path:
        assert self.workdir is not None
        return self.workdir / "dockerd.log"

    def command(self) -> list[str]:
        assert self.workdir is not None
        w = self.workdir
        return [
            "dockerd",
            "--iptables=false",
            "--ip6tables=false",
            "--bridge=none",
            "--storage-driver=vfs",
            "--data-root",
            str(w / "data"),
            "--exec-root",
            str(w / "exec"),
            "--pidfile",
            str(w / "dockerd.pid"),
            "-H",
            self.host,
            "--config-file",
            str(w / "daemon.json"),
            *self.extra_args,
        ]

    def env(self, docker_config: str | os.PathLike[str] | None = None) -> dict[str, str]:
        """os.environ plus DOCKER_HOST and DOCKER_CONFIG (default: an empty dir of ours) for the CLI."""
        env = {k: v for k, v in os.environ.items() if k not in ("DOCKER_CONTEXT", "DOCKER_TLS_VERIFY")}
        env["DOCKER_HOST"] = self.host
        # Default to a private, empty CLI config: the user's ~/.docker must neither steer nor record the test.
        env["DOCKER_CONFIG"] = str(docker_config if docker_config is not None else self._cli_config())
        return env

    def _cli_config(self) -> Path:
        assert self.workdir is not None
        path = self.workdir / "cli-config"
        path.mkdir(exist_ok=True)
        return path

    def docker(
        self,
        *args: str,
        docker_config: str | os.PathLike[str] | None = None,
        input: bytes | None = None,
        check: bool = True,
        timeout: float = 120.0,
    ) -> subprocess.CompletedProcess[bytes]:
        """Run the docker CLI against this daemon; output captured."""
        return subprocess.run(
            ["docker", "--host", self.host, *args],
            input=input,
            capture_output=True,
            check=check,
            timeout=timeout,
            env=self.env(docker_config),
        )

    def start(self) -> Dockerd:
        LITTER.acquire()
        self._registered = True
        # mkdtemp under /tmp with a short prefix keeps "<dir>/exec/containerd/containerd.sock.ttrpc" short.
        self.workdir = self._given_workdir or Path(tempfile.mkdtemp(prefix="dkd", dir="/tmp"))
        if len(str(self.socket_path)) > 90:
            self.stop()
            raise DockerdError("workdir path too long for unix sockets (keep it under ~80 chars)")
        (self.workdir / "daemon.json").write_text("{}\n")
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                self.command(),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # signals to the test run must not reach it: we stop it ourselves
            )
        ok = wait_until(
            lambda: self.proc is None or self.proc.poll() is not None or self._answers(),
            self.start_timeout,
            interval=0.1,
        )
        if not ok or self.proc is None or self.proc.poll() is not None:
            tail = self.log_path.read_text(errors="replace")[-3000:]
            self.stop()
            raise DockerdError(f"dockerd did not answer on {self.host}:\n{tail}")
        return self

    def _answers(self) -> bool:
        if not self.socket_path.exists():
            return False
        try:
            res = subprocess.run(
                ["docker", "--host", self.host, "version", "--format", "{{.Server.Version}}"],
                capture_output=True,
                timeout=10,
                env=self.env(),
            )
        except subprocess.TimeoutExpired:
            return False
        return res.returncode == 0 and bool(res.stdout.strip())

    def stop(self) -> None:
        if self.proc is not None:
            # Collect containerd & shims first: once dockerd is gone they are reparented and untraceable.
            children = descendant_pids(self.proc.pid)
            stop_process(self.proc, timeout=self.stop_timeout)
            self.proc = None
            kill_pids([p for p in children if pid_alive(p)])
        if self._registered:
            LITTER.release()
            self._registered = False
        if self.workdir is not None and self._given_workdir is None:
            self._remove_workdir(self.workdir)
            self.workdir = None

    @staticmethod
    def _remove_workdir(path: Path) -> None:
        # The exec root may still hold mounts (e.g. netns bind mounts) if a container ran; unmount first.
        try:
            mounts = Path("/proc/self/mounts").read_text().splitlines()
        except OSError:
            mounts = []
        targets = [m.split()[1] for m in mounts if len(m.split()) > 1 and m.split()[1].startswith(str(path))]
        for target in sorted(targets, key=len, reverse=True):
            subprocess.run(["umount", "-l", target], capture_output=True, check=False)
        shutil.rmtree(path, ignore_errors=True)

    def __enter__(self) -> Dockerd:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def plain_docker_config(directory: str | os.PathLike[str]) -> Path:
    """A DOCKER_CONFIG dir whose config.json makes the CLI keep credentials in the file itself.

    With no auth entry at all, the docker CLI auto-detects a default credsStore
    (docker-credential-secretservice or -pass, if installed); a placeholder
    `auths` entry turns that detection off. Returns the directory.
    """
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    (d / "config.json").write_text(json.dumps({"auths": {"placeholder.invalid": {}}}, indent=1) + "\n")
    return d


def wait_gone(pids: list[int], timeout: float = 10.0) -> bool:
    """True once none of `pids` is alive (for tests checking nothing is left behind)."""
    return wait_until(lambda: not any(pid_alive(p) for p in pids), timeout)
