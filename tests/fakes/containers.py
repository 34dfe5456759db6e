"""A private sandbox for skopeo / podman / buildah: storage, auth file and config in a temp dir.

containers/image and containers/storage write to /var/lib/containers and /run
when run as root, even with a private storage conf (the blob-info cache always
goes to /var/lib/containers/cache for root). The sandbox points every path it
can at its temp dir and, on exit, removes the host paths the run created.

    with ContainersSandbox(tmp_path) as box:
        box.skopeo("copy", "docker-archive:img.tar", "docker://127.0.0.1:5000/a:b", "--dest-tls-verify=false")
        box.env   # for running podman/buildah/skopeo yourself (DOCKER_CONFIG etc. are yours to add)
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

from tests.fakes._util import SharedLitter

# Where root-run containers tools leave things regardless of their config
# (the blob-info cache always goes to /var/lib/containers/cache for root).
HOST_LITTER = (Path("/var/lib/containers"), Path("/run/containers"), Path("/run/libpod"))


class HostLitterGuard:
    """Removes HOST_LITTER paths when the last guard on the machine exits (see SharedLitter)."""

    def __init__(self, paths: tuple[Path, ...] = HOST_LITTER) -> None:
        self._litter = SharedLitter("containers", paths)

    def __enter__(self) -> HostLitterGuard:
        self._litter.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self._litter.release()

    def active_users(self) -> int:
        return self._litter.active_users()


class ContainersSandbox:
    """Temp-dir storage.conf, containers.conf, registries.conf, policy.json and auth file."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)
        self.auth_file = self.root / "auth.json"
        self.policy = self.root / "policy.json"
        self.env: dict[str, str] = {}
        self._guard = HostLitterGuard()

    def __enter__(self) -> ContainersSandbox:
        self._guard.__enter__()
        r = self.root
        r.mkdir(parents=True, exist_ok=True)
        (r / "storage.conf").write_text(
            f'[storage]\ndriver = "vfs"\ngraphroot = "{r}/graph"\nrunroot = "{r}/run"\n'
        )
        (r / "containers.conf").write_text(
            f'[engine]\ntmp_dir = "{r}/libpod-tmp"\nevents_logger = "file"\n'
            f'events_logfile_path = "{r}/events.log"\ncgroup_manager = "cgroupfs"\n'
        )
        # No search registries, no mirrors: a test names its registry host explicitly.
        (r / "registries.conf").write_text("unqualified-search-registries = []\n")
        # podman/buildah refuse to start when REGISTRY_AUTH_FILE names a missing file; an empty one
        # makes every lookup fall through to $DOCKER_CONFIG/config.json (and its credHelpers).
        self.auth_file.write_text('{"auths": {}}\n')
        self.policy.write_text(json.dumps({"default": [{"type": "insecureAcceptAnything"}]}))
        self.env = {
            **os.environ,
            "CONTAINERS_STORAGE_CONF": str(r / "storage.conf"),
            "CONTAINERS_CONF": str(r / "containers.conf"),
            "CONTAINERS_REGISTRIES_CONF": str(r / "registries.conf"),
            "REGISTRY_AUTH_FILE": str(self.auth_file),
            "XDG_RUNTIME_DIR": str(r / "xdg-run"),
            "TMPDIR": str(r / "tmp"),
        }
        for d in ("xdg-run", "tmp"):
            (r / d).mkdir(mode=0o700, exist_ok=True)
        return self

    def __exit__(self, *exc: object) -> None:
        self._guard.__exit__(*exc)

    def run(
        self,
        *cmd: str,
        env: dict[str, str] | None = None,
        check: bool = False,
        timeout: float = 120.0,
        input: bytes | None = None,
    ) -> subprocess.CompletedProcess[bytes]:
        """Run a containers tool in the sandbox; `env` entries are added to the sandbox env."""
        return subprocess.run(
            list(cmd),
            env={**self.env, **(env or {})},
            capture_output=True,
            check=check,
            timeout=timeout,
            input=input,
        )

    def skopeo(self, *args: str, **kwargs: object) -> subprocess.CompletedProcess[bytes]:
        """`skopeo --policy <sandbox policy> ARGS…`."""
        return self.run("skopeo", "--policy", str(self.policy), *args, **kwargs)  # type: ignore[arg-type]
