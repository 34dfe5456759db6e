#!/usr/bin/env python3
"""Build the docker-credential-icr binary with PyInstaller (what `make binary` runs).

Steps: a build venv under build/ holding only the runtime dependencies (read from
pyproject.toml) plus PyInstaller — anything else in the venv could end up bundled —
then the spec in packaging/, then a smoke test of the result. Output:

    dist/docker-credential-icr/            the onedir bundle (executable + _internal/)
    dist/bin/docker-credential-icr         symlink to the bundle's executable (POSIX)

Works on Linux, macOS and Windows (the release workflow runs it on all three); on
Windows there is no symlink: put dist\\docker-credential-icr\\ on PATH.

Options: --onefile / --importtime build measurement variants into build/variants/
instead of dist/ (see the spec); --venv DIR picks another build venv.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tomllib
import venv

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NAME = "docker-credential-icr"
SPEC = os.path.join(ROOT, "packaging", f"{NAME}.spec")
PYINSTALLER = "pyinstaller>=6.10,<7"
WINDOWS = sys.platform == "win32"


def venv_python(directory: str) -> str:
    if WINDOWS:
        return os.path.join(directory, "Scripts", "python.exe")
    return os.path.join(directory, "bin", "python")


def run(cmd: list[str], **kw) -> None:
    print("+", " ".join(cmd), flush=True)
    subprocess.run(cmd, check=True, **kw)


def ensure_build_venv(directory: str) -> str:
    """A venv with exactly the runtime deps + PyInstaller; rebuilt when they change."""
    with open(os.path.join(ROOT, "pyproject.toml"), "rb") as fh:
        deps = tomllib.load(fh)["project"]["dependencies"]
    wanted = sorted([*deps, PYINSTALLER])
    stamp_value = hashlib.sha256(json.dumps([sys.version, wanted]).encode()).hexdigest()
    stamp = os.path.join(directory, ".build-stamp")
    python = venv_python(directory)
    try:
        with open(stamp, encoding="utf-8") as fh:
            if fh.read().strip() == stamp_value and os.path.exists(python):
                return python
    except FileNotFoundError:
        pass
    shutil.rmtree(directory, ignore_errors=True)
    print(f"creating build venv {directory} with {', '.join(wanted)}", flush=True)
    venv.EnvBuilder(with_pip=True, clear=True).create(directory)
    run([python, "-m", "pip", "install", "-q", "--disable-pip-version-check", *wanted])
    with open(stamp, "w", encoding="utf-8") as fh:
        fh.write(stamp_value + "\n")
    return python


def pyinstaller(python: str, distpath: str, workpath: str, extra_env: dict[str, str]) -> None:
    env = {**os.environ, **extra_env}
    # collect_submodules() in the spec imports our package from src/ (it is not installed
    # in the build venv: the build always takes the sources of this checkout).
    env["PYTHONPATH"] = os.path.join(ROOT, "src")
    env.pop("PYTHONHOME", None)
    run([python, "-m", "PyInstaller", "--noconfirm", "--clean", "--log-level", "WARN",
         "--distpath", distpath, "--workpath", workpath, SPEC], env=env, cwd=ROOT)


def link_bin(bundle_exe: str, bin_dir: str) -> str:
    os.makedirs(bin_dir, exist_ok=True)
    link = os.path.join(bin_dir, NAME)
    if os.path.lexists(link):
        os.unlink(link)
    # Relative, so the dist/ tree can be moved as a whole. The bootloader resolves the
    # link (realpath of its own executable) and finds _internal/ beside the target.
    os.symlink(os.path.relpath(bundle_exe, bin_dir), link)
    return link


def smoke_test(exe: str) -> None:
    """The binary runs the protocol in an empty home: version, get from an env key,
    store / get / list / erase of a stored credential. This is all the release workflow
    checks on Windows, where the pytest suite (XDG-based isolation) does not run."""
    import tempfile

    def call(action: str, stdin: bytes = b"", **extra: str) -> str:
        env = {"PATH": os.environ.get("PATH", ""), "HOME": home, "USERPROFILE": home,
               "XDG_CONFIG_HOME": os.path.join(home, "config"), "XDG_DATA_HOME": os.path.join(home, "data"),
               "XDG_CACHE_HOME": os.path.join(home, "cache"), "APPDATA": os.path.join(home, "roaming"),
               "LOCALAPPDATA": os.path.join(home, "local"), "SYSTEMROOT": os.environ.get("SYSTEMROOT", ""),
               **extra}
        proc = subprocess.run([exe, action], input=stdin, capture_output=True, env=env, timeout=60,
                              check=False)
        if proc.returncode != 0:
            sys.exit(f"smoke test failed: {action}: {proc}")
        return proc.stdout.decode()

    with tempfile.TemporaryDirectory() as home:
        print(call("version").strip())
        answer = json.loads(call("get", b"us.icr.io\n", IBMCLOUD_API_KEY="smoke-env-key"))
        assert answer == {"ServerURL": "us.icr.io", "Username": "iamapikey",
                          "Secret": "smoke-env-key"}, answer
        call("store", json.dumps({"ServerURL": "de.icr.io", "Username": "iamapikey",
                                  "Secret": "smoke-stored-key"}).encode())
        answer = json.loads(call("get", b"de.icr.io"))
        assert answer["Secret"] == "smoke-stored-key", answer
        assert json.loads(call("list")) == {"de.icr.io": "iamapikey"}
        call("erase", b"de.icr.io")
        assert json.loads(call("list")) == {}
    print(f"smoke test passed: {exe}")


def bundle_checks(bundle: str) -> None:
    """What the lazily imported network stack needs at run time is really in the bundle."""
    internal = os.path.join(bundle, "_internal")
    cacert = os.path.join(internal, "certifi", "cacert.pem")
    if not os.path.isfile(cacert):
        sys.exit(f"bundle check failed: {cacert} missing (requests could not verify TLS)")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--venv", default=os.path.join(ROOT, "build", "venv"))
    parser.add_argument("--onefile", action="store_true", help="measurement variant: onefile")
    parser.add_argument("--importtime", action="store_true",
                        help="measurement variant: -X importtime baked in")
    parser.add_argument("--no-smoke", action="store_true")
    args = parser.parse_args()

    python = ensure_build_venv(os.path.abspath(args.venv))
    variant_env = {}
    if args.onefile:
        variant_env["DCI_PYI_ONEFILE"] = "1"
    if args.importtime:
        variant_env["DCI_PYI_IMPORTTIME"] = "1"

    if variant_env:
        label = "-".join(k.removeprefix("DCI_PYI_").lower() for k in sorted(variant_env))
        distpath = os.path.join(ROOT, "build", "variants", label)
        pyinstaller(python, distpath, os.path.join(ROOT, "build", "pyinstaller-" + label), variant_env)
        exe = os.path.join(distpath, NAME + (".exe" if WINDOWS else ""))
        if not args.onefile:
            exe = os.path.join(distpath, NAME, NAME + (".exe" if WINDOWS else ""))
        print(f"variant built: {exe}")
        return 0

    distpath = os.path.join(ROOT, "dist")
    pyinstaller(python, distpath, os.path.join(ROOT, "build", "pyinstaller"), {})
    bundle = os.path.join(distpath, NAME)
    exe = os.path.join(bundle, NAME + (".exe" if WINDOWS else ""))
    bundle_checks(bundle)
    if not WINDOWS:
        exe = link_bin(exe, os.path.join(distpath, "bin"))
    if not args.no_smoke:
        smoke_test(exe)
    print(f"built {exe}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
