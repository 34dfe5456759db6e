"""Soak: many concurrent `get`/`store`/`erase`/`list` processes over several hosts.

Phase 1 starts SOAK_PROCESSES helper processes at once (40 in `make test`, 200 in
`make soak`) while a watcher keeps parsing credentials.json. Phase 2 runs one
serialised chain of operations per host, the chains side by side, so that each
host's final state is known exactly. Afterwards: the file parses, nothing stored
was lost, every host holds what its last operation left, and the `get`s that
exchanged the one shared API key made (almost) one IAM request between them.
"""

from __future__ import annotations

import concurrent.futures
import json
import os
import random
import threading
import time

import pytest

from tests.conftest import Result
from tests.hardening._support import LEDGER, HardHelper, RecordingIAM, Running

SOAK_PROCESSES = int(os.environ.get("SOAK_PROCESSES", "40"))
# Stored exactly once each, during phase 1, and never erased: a lost update would show.
STABLE = ["us.icr.io", "uk.icr.io", "de.icr.io"]
# Stored and erased at random in phase 1; one serialised chain each in phase 2.
CHURN = ["au.icr.io", "jp.icr.io", "ca.icr.io", "br.icr.io"]
# Never stored: answered from the shared API key, exchanged at IAM (refresh mode).
FROM_KEY = ["es.icr.io", "fr2.icr.io", "in.icr.io", "private.us.icr.io"]
IAM_BOUND = 2  # one exchange for everybody; one more tolerated


def _payload(host: str, secret: str) -> str:
    return json.dumps({"ServerURL": host, "Username": "<token>", "Secret": secret})


@pytest.mark.soak
def test_soak(hard: HardHelper, riam: RecordingIAM) -> None:
    key = riam.add_api_key()
    env = {"IBMCLOUD_API_KEY": key, "DOCKER_CREDENTIAL_ICR_MODE": "refresh",
           "IBMCLOUD_IAM_API_ENDPOINT": riam.url}
    riam.delay = 0.3  # keep the one exchange in flight while the others pile up behind it
    rng = random.Random(20261124)
    written: dict[str, list[str]] = {h: [] for h in STABLE + CHURN}
    erased: set[str] = set()

    # -- phase 1: everything at once ---------------------------------------------------
    plan: list[tuple[str, str, str]] = [("store", h, LEDGER.new_secret(f"soak-{h}")) for h in STABLE]
    while len(plan) < SOAK_PROCESSES:
        roll = rng.random()
        if roll < 0.45:
            plan.append(("get", rng.choice(STABLE + CHURN + FROM_KEY), ""))
        elif roll < 0.70:
            host = rng.choice(CHURN)
            plan.append(("store", host, LEDGER.new_secret(f"soak-{host}")))
        elif roll < 0.88:
            plan.append(("erase", rng.choice(CHURN), ""))
        else:
            plan.append(("list", "", ""))
    rng.shuffle(plan)
    for action, host, secret in plan:
        if action == "store":
            written[host].append(secret)
        elif action == "erase":
            erased.add(host)

    stop = threading.Event()
    watch = {"reads": 0, "bad": 0}

    def watcher() -> None:
        while not stop.wait(0.001):  # leave the CPUs to the helpers
            try:
                raw = hard.credentials_file.read_bytes()
            except FileNotFoundError:
                continue
            watch["reads"] += 1
            try:
                json.loads(raw)
            except ValueError:
                watch["bad"] += 1

    # Every process started and waiting on its stdin, then all let go at once.
    running: list[tuple[str, str, Running]] = []
    for action, host, secret in plan:
        stdin = _payload(host, secret) if action == "store" else host
        running.append((action, host, hard.start(action, stdin, env=env, hold=True)))
    time.sleep(0.5)
    watching = threading.Thread(target=watcher, daemon=True)
    watching.start()
    started = time.monotonic()
    for _, _, proc in running:
        proc.release()
    results: list[tuple[str, str, Result]] = [(a, h, r.finish(timeout=120)) for a, h, r in running]
    phase1 = time.monotonic() - started
    stop.set()
    watching.join(10)

    failures = [f"{a} {h}: {r!r}" for a, h, r in results if r.returncode != 0]
    assert failures == [], "\n".join(failures[:10])
    assert watch["bad"] == 0, f"{watch['bad']} of {watch['reads']} reads saw a partial file"
    refresh_tokens = set()
    for action, host, res in results:
        assert res.stdout.count("\n") <= 1 and "Traceback" not in res.stderr, res
        if action != "get":
            continue
        got = json.loads(res.stdout)
        if got["Username"] == "<token>":
            assert got["Secret"] in written[host], f"{host} answered a secret never stored for it"
        else:
            assert got["Username"] == "iamrefresh", got
            assert riam.validate_refresh_token(got["Secret"]) is not None
            refresh_tokens.add(got["Secret"])
    auths = json.loads(hard.credentials_file.read_text())["auths"]
    for host in STABLE:  # stored once, concurrently with everything: never lost
        assert auths[host] == {"Username": "<token>", "Secret": written[host][0]}
    for host in CHURN:
        if host in auths:
            assert auths[host]["Secret"] in written[host]
        else:
            assert host in erased or not written[host]
    assert set(auths) <= set(STABLE + CHURN)

    # -- phase 2: one serialised chain per host, the chains concurrently ----------------
    def chain(host: str) -> tuple[str, str | None]:
        local = random.Random(host)
        last: str | None = None
        for _ in range(max(3, SOAK_PROCESSES // 20)):
            if local.random() < 0.7:
                last = LEDGER.new_secret(f"chain-{host}")
                assert hard.run("store", stdin=_payload(host, last), env=env).returncode == 0
            else:
                assert hard.run("erase", stdin=host, env=env).returncode == 0
                last = None
            res = hard.run("get", stdin=host, env=env)
            assert res.returncode == 0, res
            got = json.loads(res.stdout)
            if last is None:
                assert got["Username"] == "iamrefresh"  # erased: back to the shared key
            else:
                assert got == {"ServerURL": host, "Username": "<token>", "Secret": last}
        return host, last

    with concurrent.futures.ThreadPoolExecutor(len(CHURN)) as pool:
        finals = dict(pool.map(chain, CHURN))
    auths = json.loads(hard.credentials_file.read_text())["auths"]
    for host, last in finals.items():
        if last is None:
            assert host not in auths
        else:
            assert auths[host] == {"Username": "<token>", "Secret": last}
    for host in STABLE:
        assert auths[host]["Secret"] == written[host][0]
    listed = json.loads(hard.run("list").stdout)
    assert listed == {h: e["Username"] for h, e in auths.items()}
    assert sorted(p.name for p in hard.data_dir.glob(".*.tmp")) == []
    assert riam.count() <= IAM_BOUND, f"{riam.count()} IAM requests"
    assert len(refresh_tokens) <= IAM_BOUND

    counts = {a: sum(1 for x, _, _ in plan if x == a) for a in ("get", "store", "erase", "list")}
    LEDGER.notes["soak"] = (
        f"{SOAK_PROCESSES} concurrent processes ({counts['get']} get, {counts['store']} store, "
        f"{counts['erase']} erase, {counts['list']} list) over {len(STABLE + CHURN + FROM_KEY)} hosts "
        f"in {phase1:.1f} s: 0 failures, {watch['reads']} concurrent reads of credentials.json all "
        f"parsed, 0 lost credentials; then {len(CHURN)} serialised chains side by side, final state "
        f"exact; IAM requests: {riam.count()} (bound {IAM_BOUND})")
    LEDGER.bump("soak processes", SOAK_PROCESSES)
