#!/usr/bin/env python3
"""Release artefacts in dist/ (what `make dist` runs, after `make binary`).

    dist/docker_credential_icr-<v>.tar.gz                  sdist
    dist/docker_credential_icr-<v>-py3-none-any.whl        wheel
    dist/docker-credential-icr-<v>-<os>-<arch>.tar.gz      the onedir binary bundle
    dist/SHA256SUMS                                        sha256sum -c format

The sdist and wheel are built by `python -m build` in a tools venv under build/
(kept apart from the binary's build venv, which must hold only runtime deps). The
binary tarball is reproducible: sorted entries, owner 0:0, mtimes set to
SOURCE_DATE_EPOCH (default: the last commit's time). Inside it, one directory:
docker-credential-icr-<v>-<os>-<arch>/ holding the executable and _internal/ —
unpack it anywhere and link (or add to PATH) its `docker-credential-icr`.
"""

from __future__ import annotations

import glob
import gzip
import hashlib
import io
import os
import platform
import subprocess
import sys
import tarfile
import venv

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DIST = os.path.join(ROOT, "dist")
NAME = "docker-credential-icr"
WINDOWS = sys.platform == "win32"
sys.path.insert(0, os.path.join(ROOT, "src"))

from docker_credential_icr import __version__  # noqa: E402


def run(cmd: list[str]) -> None:
    print("+", " ".join(cmd), flush=True)
    subprocess.run(cmd, check=True, cwd=ROOT)


def tools_python() -> str:
    directory = os.path.join(ROOT, "build", "tools-venv")
    python = os.path.join(directory, *(("Scripts", "python.exe") if WINDOWS else ("bin", "python")))
    if not os.path.exists(python):
        venv.EnvBuilder(with_pip=True, clear=True).create(directory)
        run([python, "-m", "pip", "install", "-q", "--disable-pip-version-check", "build>=1.0"])
    return python


def platform_tag() -> str:
    system = {"linux": "linux", "darwin": "macos", "win32": "windows"}.get(sys.platform, sys.platform)
    machine = platform.machine().lower()
    machine = {"amd64": "x86_64", "aarch64": "arm64"}.get(machine, machine)
    return f"{system}-{machine}"


def source_date_epoch() -> int:
    if os.environ.get("SOURCE_DATE_EPOCH"):
        return int(os.environ["SOURCE_DATE_EPOCH"])
    try:
        out = subprocess.run(["git", "log", "-1", "--format=%ct"], cwd=ROOT, capture_output=True,
                             text=True, check=True).stdout.strip()
        return int(out)
    except (OSError, subprocess.CalledProcessError, ValueError):
        return 0


def binary_tarball() -> str:
    bundle = os.path.join(DIST, NAME)
    exe = os.path.join(bundle, NAME + (".exe" if WINDOWS else ""))
    if not os.path.isfile(exe):
        sys.exit(f"{exe} missing: run `make binary` first")
    top = f"{NAME}-{__version__}-{platform_tag()}"
    out = os.path.join(DIST, f"{top}.tar.gz")
    mtime = source_date_epoch()

    def normalise(info: tarfile.TarInfo) -> tarfile.TarInfo:
        info.uid = info.gid = 0
        info.uname = info.gname = ""
        info.mtime = mtime
        if info.isdir() or info.mode & 0o111:
            info.mode = 0o755
        else:
            info.mode = 0o644
        return info

    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        tar.add(bundle, arcname=top, recursive=False, filter=normalise)
        for dirpath, dirnames, filenames in os.walk(bundle):
            dirnames.sort()
            rel = os.path.relpath(dirpath, bundle)
            for name in sorted(dirnames) + sorted(filenames):
                path = os.path.join(dirpath, name)
                arcname = "/".join(p for p in (top, rel if rel != "." else "", name) if p)
                tar.add(path, arcname=arcname.replace(os.sep, "/"), recursive=False, filter=normalise)
    with open(out, "wb") as fh, gzip.GzipFile(filename="", mode="wb", fileobj=fh, mtime=mtime) as gz:
        gz.write(raw.getvalue())
    return out


def sha256sums(paths: list[str]) -> str:
    lines = []
    for path in sorted(paths):
        digest = hashlib.sha256()
        with open(path, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                digest.update(chunk)
        lines.append(f"{digest.hexdigest()}  {os.path.basename(path)}\n")
    out = os.path.join(DIST, "SHA256SUMS")
    with open(out, "w", encoding="utf-8", newline="\n") as fh:
        fh.writelines(lines)
    return out


def main() -> int:
    binary_only = sys.argv[1:] == ["--binary-only"]  # release workflow: one tarball per OS
    if sys.argv[1:] and not binary_only:
        sys.exit(f"usage: {sys.argv[0]} [--binary-only]")
    os.makedirs(DIST, exist_ok=True)
    for old in glob.glob(os.path.join(DIST, "docker_credential_icr-*")) + glob.glob(
            os.path.join(DIST, f"{NAME}-*.tar.gz")):
        os.unlink(old)
    artefacts = []
    if not binary_only:
        run([tools_python(), "-m", "build", "--sdist", "--wheel", "--outdir", DIST, ROOT])
        artefacts = sorted(glob.glob(os.path.join(DIST, "docker_credential_icr-*")))
    artefacts.append(binary_tarball())
    sums = sha256sums(artefacts)
    print(open(sums, encoding="utf-8").read(), end="")
    print(f"wrote {sums}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
