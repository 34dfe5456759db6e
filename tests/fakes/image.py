"""A tiny container image built locally, with no download: a `docker load`-able tar.

The tar is in docker-archive format (what `docker save` writes): manifest.json,
the image config, one layer tar holding /hello.txt, plus the legacy
`repositories` and per-layer VERSION/json files for older readers. It works with
`docker load -i PATH` and `skopeo copy docker-archive:PATH docker://…`.
Timestamps are fixed, so the same content always gives the same digests.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import platform
import tarfile
from pathlib import Path

# Fixed so that rebuilding gives byte-identical tars (stable digests across runs).
_EPOCH = 1_700_000_000
_CREATED = "2023-11-14T22:13:20Z"
_ARCH = {
    "x86_64": "amd64",
    "amd64": "amd64",
    "aarch64": "arm64",
    "arm64": "arm64",
    "armv7l": "arm",
    "ppc64le": "ppc64le",
    "s390x": "s390x",
}
DEFAULT_CONTENT = b"hello from the docker-credential-icr tests\n"


def split_tag(tag: str) -> tuple[str, str]:
    """ "127.0.0.1:5000/ns/app:v1" → ("127.0.0.1:5000/ns/app", "v1"); no tag means "latest"."""
    head, sep, last = tag.rpartition("/")
    name, colon, version = last.partition(":")
    return (f"{head}{sep}{name}", version if colon else "latest")


def _tar_bytes(files: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, data in sorted(files.items()):
            info = tarfile.TarInfo(name)
            info.size, info.mtime, info.mode = len(data), _EPOCH, 0o644
            info.uid = info.gid = 0
            info.uname = info.gname = "root"
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def _json(obj: object) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()


def _layer_and_config(files: dict[str, bytes]) -> tuple[bytes, bytes]:
    layer = _tar_bytes({k.lstrip("/"): v for k, v in files.items()})
    diff_id = "sha256:" + hashlib.sha256(layer).hexdigest()
    config = _json(
        {
            "architecture": _ARCH.get(platform.machine(), platform.machine()),
            "os": "linux",
            "created": _CREATED,
            "config": {"Env": ["PATH=/"], "Cmd": ["/hello.txt"], "Labels": {"built-by": "tests.fakes.image"}},
            "rootfs": {"type": "layers", "diff_ids": [diff_id]},
            "history": [{"created": _CREATED, "created_by": "tests.fakes.image.build_image_tar"}],
        }
    )
    return layer, config


def image_id(content: bytes = DEFAULT_CONTENT, files: dict[str, bytes] | None = None) -> str:
    """The image ID (digest of the config) that `docker load` reports for the same arguments."""
    _, config = _layer_and_config(files or {"hello.txt": content})
    return "sha256:" + hashlib.sha256(config).hexdigest()


def build_image_tar(
    path: str | os.PathLike[str],
    tag: str,
    *,
    content: bytes = DEFAULT_CONTENT,
    files: dict[str, bytes] | None = None,
) -> Path:
    """Write a one-layer image tagged `tag` to `path`; returns the path.

    `files` (path in the image → bytes) replaces the default single /hello.txt.
    Use different `content` to get images with different digests.
    """
    layer, config = _layer_and_config(files or {"hello.txt": content})
    diff_id = json.loads(config)["rootfs"]["diff_ids"][0]
    config_hex = hashlib.sha256(config).hexdigest()
    arch = json.loads(config)["architecture"]
    # Legacy v1 layer id: any stable hex string works; derive it from the layer and config.
    layer_id = hashlib.sha256((diff_id + config_hex).encode()).hexdigest()
    repo, version = split_tag(tag)
    members = {
        f"{config_hex}.json": config,
        f"{layer_id}/VERSION": b"1.0",
        f"{layer_id}/json": _json(
            {
                "id": layer_id,
                "created": _CREATED,
                "os": "linux",
                "architecture": arch,
                "config": {"Cmd": ["/hello.txt"]},
            }
        ),
        f"{layer_id}/layer.tar": layer,
        "manifest.json": _json(
            [
                {
                    "Config": f"{config_hex}.json",
                    "RepoTags": [f"{repo}:{version}"],
                    "Layers": [f"{layer_id}/layer.tar"],
                }
            ]
        ),
        "repositories": _json({repo: {version: layer_id}}),
    }
    path = Path(path)
    path.write_bytes(_tar_bytes(members))
    return path
