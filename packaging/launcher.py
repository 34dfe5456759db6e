#!/usr/bin/env python3
"""Write the `docker-credential-icr` launcher that `make install` puts on PATH.

Run it with the interpreter of the venv the package is installed in:

    VENV/bin/python packaging/launcher.py DEST

Why not link pip's console-script wrapper: the launcher runs Python with `-I -S`.
  -I  PYTHONPATH, PYTHONHOME, PYTHONSTARTUP, user site-packages and the current
      directory cannot change what a credential helper imports — Docker runs it with
      whatever environment the user's shell has.
  -S  no `site` initialisation (~1.5–2 ms of every start; every `docker pull` pays it).
      The venv's import path (site-packages and any .pth entries) is recorded here at
      install time instead; `make install` rewrites the launcher whenever it reinstalls.
It also does not depend on the pip version: pip releases before the wrapper template
dropped `re` (e.g. pip 23.2.1, which Python 3.11's ensurepip bundles) write a wrapper
that imports `re` and compiles a pattern on every start, ~4 ms (bench/RESULTS.md).
"""

from __future__ import annotations

import os
import sys

TEMPLATE = """\
{shebang}
# docker-credential-icr launcher, written by `make install` (packaging/launcher.py).
# -I: PYTHONPATH, PYTHONHOME, user site-packages, … cannot change what runs here.
# -S: no `site` start-up work; the venv's import path was recorded at install time:
import sys

sys.path += [p for p in {paths!r} if p not in sys.path]
from docker_credential_icr.cli import main

sys.exit(main())
"""

# Kernels before Linux 5.1 cut a #! line at 127 bytes; past that, a /bin/sh
# trampoline that Python reads as a string literal (the trick pip's wrappers use).
MAX_SHEBANG = 127


def shebang(python: str) -> str:
    line = f"#!{python} -IS"
    if len(line) <= MAX_SHEBANG and " " not in python:
        return line
    quoted = python.replace("'", "'\\''")
    return f"#!/bin/sh\n'''exec' '{quoted}' -IS \"$0\" \"$@\"\n' '''"


def launcher_text(python: str, paths: list[str]) -> str:
    return TEMPLATE.format(shebang=shebang(python), paths=paths)


def import_path() -> list[str]:
    """This interpreter's sys.path after site ran: stdlib, site-packages, .pth entries
    (not the directory of this script, which Python put first)."""
    here = os.path.dirname(os.path.abspath(__file__))
    return [p for p in sys.path if p and p != here and (os.path.isdir(p) or p.endswith(".zip"))]


def write(dest: str, python: str | None = None, paths: list[str] | None = None) -> None:
    text = launcher_text(python or sys.executable, import_path() if paths is None else paths)
    tmp = f"{dest}.tmp{os.getpid()}"
    with open(tmp, "w", encoding="utf-8") as fh:
        fh.write(text)
    os.chmod(tmp, 0o755)  # noqa: S103  (a program on PATH: everyone may run it)
    os.replace(tmp, dest)


def main() -> int:
    if len(sys.argv) != 2:
        print(f"usage: VENV/bin/python {sys.argv[0]} DEST", file=sys.stderr)
        return 2
    if sys.prefix == sys.base_prefix:
        print(f"{sys.argv[0]}: run this with the install venv's python, not {sys.executable}",
              file=sys.stderr)
        return 2
    write(sys.argv[1])
    return 0


if __name__ == "__main__":
    sys.exit(main())
