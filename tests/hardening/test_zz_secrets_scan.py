"""The secrets scan: every byte the hardening tests captured, against every secret used.

Runs last in tests/hardening (file order). Captured: stdout, stderr and the debug log
file (DOCKER_CREDENTIAL_ICR_LOG=debug, DOCKER_CREDENTIAL_ICR_LOG_FILE) of every helper
run. Secrets: every key and token the tests made, and every access and refresh token
the fake IAMs issued. The one exemption: the Secret field of a `get` answer for an
exact ICR host — that is the helper's job. Set HARDENING_FIGURES=path to have the
figures written there as Markdown.
"""

from __future__ import annotations

import os
import sys

import pytest

from tests.hardening._support import LEDGER, Capture, Ledger


def test_the_scanner_finds_what_it_should() -> None:
    """The scan cannot pass vacuously: a planted secret is found, an intended answer is not."""
    ledger = Ledger()
    secret = ledger.new_secret("canary")
    answer = f'{{"ServerURL":"us.icr.io","Username":"iamapikey","Secret":"{secret}"}}\n'
    ledger.record(Capture("t", "get", 0, answer, "", ""))
    assert ledger.leaks() == []
    for leaky in (Capture("t", "get", 0, answer.replace("us.icr.io", "us.icr.io.evil.com"), "", ""),
                  Capture("t", "get", 0, answer.replace("iamapikey", secret), "", ""),
                  Capture("t", "get", 1, secret, "", ""),
                  Capture("t", "store", 0, "", f"warning: {secret}", ""),
                  Capture("t", "erase", 0, "", "", f"debug: {secret}\n")):
        assert len(ledger.leaks([leaky])) == 1, leaky


def _kinds(secrets: set[str]) -> dict[str, int]:
    kinds = {"API keys and tokens made by the tests": 0, "API keys registered at the fake IAM": 0,
             "refresh tokens issued by the fake IAM": 0, "access tokens issued by the fake IAM": 0}
    for value in secrets:
        if value.startswith("fakerefresh-"):
            kinds["refresh tokens issued by the fake IAM"] += 1
        elif value.startswith("fakekey-"):
            kinds["API keys registered at the fake IAM"] += 1
        elif value.count(".") == 2 and value.startswith("eyJ"):
            kinds["access tokens issued by the fake IAM"] += 1
        else:
            kinds["API keys and tokens made by the tests"] += 1
    return kinds


def figures_markdown(leaks: list[str]) -> str:
    figures = dict(LEDGER.figures)
    exempt = sum(1 for c in LEDGER.captures if c.intended_answer() is not None)
    knobs = [f"{k}={os.environ[k]}" for k in ("SOAK_PROCESSES", "HARDENING_WIRE_EXAMPLES",
                                              "HARDENING_KILL_LOOP", "HARDENING_FIGURES") if k in os.environ]
    command = " ".join([*knobs, ".venv/bin/python", "-m", "pytest", *sys.argv[1:]])
    lines = ["# Hardening figures", "", f"Command: `{command}`",
             f"Machine: {os.cpu_count()} CPUs, Python {sys.version.split()[0]}, "
             f"{'root' if hasattr(os, 'geteuid') and os.geteuid() == 0 else 'non-root'}",
             "", "## Inputs tried per property", ""]
    lines += [f"- {k.removeprefix('inputs tried: ')}: {v}" for k, v in sorted(figures.items())
              if k.startswith("inputs tried: ")]
    lines += ["", "## Faults", "",
              f"- IAM faults survived: {figures.get('IAM faults survived', 0)}",
              f"- filesystem faults survived: {figures.get('filesystem faults survived', 0)}", ""]
    for name, outcome in sorted(LEDGER.notes.get("iam faults", {}).items()):
        lines.append(f"- IAM: {name}: {outcome}")
    for name, outcome in sorted(LEDGER.notes.get("filesystem", {}).items()):
        lines.append(f"- FS: {name}: {outcome}")
    litter = LEDGER.notes.get("kill -9 temp files left", {})
    if litter:
        lines.append(f"- FS: kill -9 at a hooked point of atomic_write ({len(litter)} cases): old file "
                     f"intact every time; temp files left: {sum(litter.values())} (0600)")
    lines += ["", "## Soak", "", f"- {LEDGER.notes.get('soak', 'not run (deselected)')}", "",
              "## Secrets scan", "",
              f"- helper runs captured: {figures.get('helper runs captured', 0)} "
              f"({figures.get('bytes captured', 0)} bytes of stdout, stderr and debug logs)",
              f"- secrets checked: {len(LEDGER.secrets)}"]
    lines += [f"  - {k}: {v}" for k, v in _kinds(LEDGER.secrets).items()]
    lines += [f"- intended `get` answers exempted (Secret field only): {exempt}",
              f"- leaks found: {len(leaks)}", ""]
    return "\n".join(lines)


def test_no_secret_in_anything_captured() -> None:
    if not LEDGER.captures:
        pytest.skip("nothing captured: run it with the rest of tests/hardening")
    leaks = LEDGER.leaks()
    report = figures_markdown(leaks)
    target = os.environ.get("HARDENING_FIGURES")
    if target:
        with open(target, "w", encoding="utf-8") as fh:
            fh.write(report)
    print(report)
    assert leaks == [], "secrets printed:\n" + "\n".join(leaks[:50])
