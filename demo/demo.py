"""`make demo`: push and pull through docker-credential-icr with the real Docker engine, in every mode.

Starts local stand-ins for IBM Cloud (a fake IAM, an ICR-like token service and
the CNCF distribution registry with token auth) and a private dockerd, all on
127.0.0.1; routes the registry to the helper with `credHelpers`; then, for each
way of giving credentials, pushes an image and pulls it back and reports which
username kind the registry saw. Prints no secret. Everything lives in one temp
dir and is stopped by PID at the end. Run through `demo/run` (or `make demo`),
which installs what is missing and builds the venv first.

Options: --helper PATH (another build of the helper, e.g. dist/bin/docker-credential-icr),
--keep-going (finish the table after a failure).
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent

# Everything the stand-ins create (token-service cert, registry storage, shared-litter state)
# goes under our own temp dir: set before the fakes are imported and used.
WORK = Path(tempfile.mkdtemp(prefix="icr-demo-"))
os.environ["TMPDIR"] = str(WORK)
tempfile.tempdir = str(WORK)
sys.path.insert(0, str(ROOT))

from tests.fakes.containers import ContainersSandbox  # noqa: E402
from tests.fakes.dockerd import dockerd_available  # noqa: E402
from tests.fakes.fake_iam import GRANT_APIKEY  # noqa: E402
from tests.fakes.image import build_image_tar  # noqa: E402
from tests.fakes.registry import registry_available  # noqa: E402
from tests.fakes.stack import IcrStack  # noqa: E402

API_KEY = "demo-apikey-" + secrets.token_hex(16)


class Failed(Exception):
    """A step failed; the message is safe to print (secrets redacted)."""


@dataclass
class Row:
    client: str
    mode: str
    credentials: str
    saw: str = "-"
    iam_calls: str = "-"
    push: str = "-"
    pull: str = "-"
    result: str = "FAIL"
    why: str = ""


@dataclass
class Demo:
    stack: IcrStack
    helper: str
    box: ContainersSandbox | None
    secrets: set[str] = field(default_factory=lambda: {API_KEY})
    outputs: list[str] = field(default_factory=list)
    mode_env: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.home = WORK / "home"
        self.bindir = WORK / "bin"
        self.docker_config = WORK / "docker"
        for d in (self.home, self.bindir, self.docker_config):
            d.mkdir()
        (self.bindir / "docker-credential-icr").symlink_to(self.helper)
        config = {"credHelpers": {self.host: "icr"}}
        (self.docker_config / "config.json").write_text(json.dumps(config, indent=1) + "\n")
        self.tar = build_image_tar(WORK / "image.tar", f"{self.host}/demo/hello:v1",
                                   content=b"hello from make demo\n")

    @property
    def host(self) -> str:
        return self.stack.host

    @property
    def svc(self) -> Any:
        return self.stack.token_service

    def env(self) -> dict[str, str]:
        keep = ("PATH", "LANG", "LC_ALL", "TERM")
        env = {k: os.environ[k] for k in keep if k in os.environ}
        env.update(
            PATH=f"{self.bindir}:{os.environ.get('PATH', '/usr/bin:/bin')}",
            HOME=str(self.home),
            XDG_CONFIG_HOME=str(self.home / "config"),
            XDG_DATA_HOME=str(self.home / "data"),
            XDG_CACHE_HOME=str(self.home / "cache"),
            XDG_STATE_HOME=str(self.home / "state"),
            TMPDIR=str(WORK),
            DOCKER_CONFIG=str(self.docker_config),
            DOCKER_CREDENTIAL_ICR_REGISTRIES=self.host,
            IBMCLOUD_IAM_API_ENDPOINT=self.stack.iam.url,
        )
        if self.stack.dockerd is not None:
            env["DOCKER_HOST"] = self.stack.dockerd.host
        if self.box is not None:
            for k in ("CONTAINERS_STORAGE_CONF", "CONTAINERS_CONF", "CONTAINERS_REGISTRIES_CONF",
                      "REGISTRY_AUTH_FILE", "XDG_RUNTIME_DIR"):
                env[k] = self.box.env[k]
        return {**env, **self.mode_env}

    def redact(self, text: str) -> str:
        for s in sorted(self.secrets, key=len, reverse=True):
            text = text.replace(s, "***")
        return text

    def run(self, *cmd: str, input: str | None = None, ok: bool = True) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(list(cmd), input=input, capture_output=True, text=True, env=self.env(),
                              timeout=90, check=False)
        self.outputs += [proc.stdout, proc.stderr]
        if ok and proc.returncode != 0:
            tail = self.redact((proc.stderr or proc.stdout).strip())[-600:]
            raise Failed(f"`{' '.join(cmd[:2])} …` exited {proc.returncode}: {tail}")
        return proc

    def stored(self) -> dict[str, dict[str, str]]:
        path = self.home / "data" / "docker-credential-icr" / "credentials.json"
        return json.loads(path.read_text())["auths"] if path.exists() else {}

    def reset_logs(self) -> None:
        self.svc.clear_log()
        self.stack.iam.clear_log()

    def saw(self) -> str:
        kinds = [k for k in self.svc.kinds_seen() if k != "anonymous"]
        return ",".join(kinds) or "anonymous"

    def check_saw(self, want: str) -> None:
        if self.svc.count(outcome="denied") or self.saw() != want:
            raise Failed(f"the registry saw {self.saw()!r}, expected {want!r}")

    # -- scenarios ---------------------------------------------------------

    def docker_push_pull(self, row: Row, repo: str, want: str) -> None:
        ref = f"{self.host}/demo/{repo}:v1"
        self.run("docker", "tag", f"{self.host}/demo/hello:v1", ref)
        self.run("docker", "push", ref)
        self.check_saw(want)
        row.push = "ok"
        self.run("docker", "rmi", ref)
        self.run("docker", "pull", ref)
        self.check_saw(want)
        self.run("docker", "rmi", ref)
        row.pull = "ok"

    def skopeo_copy(self, row: Row, repo: str, want: str) -> None:
        assert self.box is not None
        ref = f"docker://{self.host}/demo/{repo}:v1"
        policy = str(self.box.policy)
        src = f"docker-archive:{self.tar}"
        self.run("skopeo", "--policy", policy, "copy", "--dest-tls-verify=false", src, ref)
        self.check_saw(want)
        row.push = "ok"
        out = WORK / f"pulled-{repo}"
        self.run("skopeo", "--policy", policy, "copy", "--src-tls-verify=false", ref, f"dir:{out}")
        self.check_saw(want)
        row.pull = "ok"

    def env_key(self, row: Row, client: str, mode: str, want: str) -> None:
        self.mode_env = {"IBMCLOUD_API_KEY": API_KEY, "DOCKER_CREDENTIAL_ICR_MODE": mode}
        # A fresh token cache for each row, so the IAM column shows what one push+pull costs.
        shutil.rmtree(self.home / "cache", ignore_errors=True)
        self.reset_logs()
        (self.docker_push_pull if client == "docker" else self.skopeo_copy)(row, f"{client}-{mode}", want)
        row.iam_calls = str(self.stack.iam.count(GRANT_APIKEY))

    def docker_login(self, row: Row, *, identity_token: bool) -> None:
        self.mode_env = {}
        self.svc.issue_refresh_tokens = identity_token
        try:
            self.run("docker", "login", "-u", "iamapikey", "--password-stdin", self.host, input=API_KEY)
        finally:
            self.svc.issue_refresh_tokens = False
        stored = self.stored().get(self.host, {})
        want = "<token>" if identity_token else "iamapikey"
        if stored.get("Username") != want:
            raise Failed(f"the helper stored {stored.get('Username')!r}, expected {want!r}")
        self.secrets.add(stored["Secret"])
        self.reset_logs()
        self.docker_push_pull(row, "login-token" if identity_token else "login", want)
        row.iam_calls = str(self.stack.iam.count())
        self.run("docker", "logout", self.host)
        if self.stored():
            raise Failed("`docker logout` did not erase the stored credentials")

    def no_credentials(self, row: Row) -> None:
        self.mode_env = {}
        self.reset_logs()
        res = self.run("docker", "pull", f"{self.host}/demo/docker-auto:v1", ok=False)
        if res.returncode == 0 or "denied" not in res.stderr:
            raise Failed("a pull without credentials was not denied")
        if self.saw() != "anonymous":
            raise Failed(f"the registry saw {self.saw()!r}")
        row.pull, row.iam_calls = "denied", str(self.stack.iam.count())

    def learn_helper_answers(self) -> None:
        """The tokens the helper handed out (cache hits) join the secrets that must not show."""
        for mode in ("refresh", "bearer"):
            self.mode_env = {"IBMCLOUD_API_KEY": API_KEY, "DOCKER_CREDENTIAL_ICR_MODE": mode}
            proc = subprocess.run(["docker-credential-icr", "get"], input=self.host, capture_output=True,
                                  text=True, env=self.env(), timeout=30, check=False)
            if proc.returncode == 0:
                self.secrets.add(json.loads(proc.stdout)["Secret"])
        self.mode_env = {}

    def leaks(self) -> list[str]:
        texts = [*self.outputs, json.dumps(self.svc.log), json.dumps(self.stack.iam.requests)]
        return [f"…{s[-4:]}" for s in self.secrets if any(s in t for t in texts)]


def _version(*cmd: str) -> str:
    try:
        out = subprocess.run(list(cmd), capture_output=True, text=True, timeout=20, check=False).stdout
    except OSError:
        return "?"
    return out.strip().splitlines()[0] if out.strip() else "?"


def _print_table(rows: list[Row]) -> None:
    head = Row("client", "mode", "credentials", "registry saw", "IAM calls", "push", "pull", "result")
    cols = ["client", "mode", "credentials", "saw", "iam_calls", "push", "pull", "result"]
    widths = [max(len(str(getattr(r, c))) for r in [head, *rows]) for c in cols]
    for r in [head, *rows]:
        cells = (str(getattr(r, c)).ljust(w) for c, w in zip(cols, widths, strict=True))
        print(("  " + "  ".join(cells)).rstrip())
        if r.why:
            print(f"      ↳ {r.why}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="demo/run", description=__doc__.split("\n\n")[0])
    parser.add_argument("--helper", default=str(Path(sys.executable).parent / "docker-credential-icr"))
    parser.add_argument("--keep-going", action="store_true", help="finish the table after a failure")
    args = parser.parse_args(argv)
    helper = str(Path(args.helper).resolve())
    for ok, why in (registry_available(), dockerd_available()):
        if not ok:
            print(f"make demo: {why}", file=sys.stderr)
            return 1
    if not os.access(helper, os.X_OK):
        print(f"make demo: no helper at {helper} (make venv, or --helper PATH)", file=sys.stderr)
        return 1

    t0 = time.monotonic()
    rows: list[Row] = []
    leaked: list[str] = []
    with (
        IcrStack(api_keys=[API_KEY], with_dockerd=True) as stack,
        ContainersSandbox(WORK / "containers") as box,
    ):
        assert stack.dockerd is not None and stack.token_service is not None
        demo = Demo(stack, helper, box if shutil.which("skopeo") else None)
        engine = _version("docker", "--host", stack.dockerd.host, "version", "--format",
                          "dockerd {{.Server.Version}}, docker CLI {{.Client.Version}}")
        print("docker-credential-icr demo — real clients, local stand-ins for IBM Cloud, all on 127.0.0.1")
        print(f"  helper    {helper}")
        routing = json.dumps({"credHelpers": {demo.host: "icr"}})
        print(f"            routed by $DOCKER_CONFIG/config.json: {routing}")
        print(f"  registry  {demo.host}: {_version('docker-registry', '--version').split(' ', 1)[-1]}, "
              f"token auth at {stack.token_service.realm}")
        print(f"  IAM       {stack.iam.url} (a fake IAM that knows one API key)")
        print(f"  engine    {engine} (private data root, vfs)")
        print()
        demo.run("docker", "load", "-i", str(demo.tar))

        plan: list[tuple[Row, Any]] = [
            (Row("docker", "auto", "IBMCLOUD_API_KEY → registry as iamapikey"),
             lambda r: demo.env_key(r, "docker", "auto", "iamapikey")),
            (Row("docker", "refresh", "IBMCLOUD_API_KEY → IAM → refresh token"),
             lambda r: demo.env_key(r, "docker", "refresh", "iamrefresh")),
            (Row("docker", "bearer", "IBMCLOUD_API_KEY → IAM → access token"),
             lambda r: demo.env_key(r, "docker", "bearer", "iambearer")),
            (Row("docker", "login", "docker login -u iamapikey (stored by the helper)"),
             lambda r: demo.docker_login(r, identity_token=False)),
            (Row("docker", "login", "docker login, registry answered an identity token"),
             lambda r: demo.docker_login(r, identity_token=True)),
        ]
        if demo.box is not None:
            plan += [
                (Row("skopeo", mode, f"IBMCLOUD_API_KEY, mode {mode}"),
                 lambda r, m=mode, k=kind: demo.env_key(r, "skopeo", m, k))
                for mode, kind in (("auto", "iamapikey"), ("refresh", "iamrefresh"), ("bearer", "iambearer"))
            ]
        plan.append((Row("docker", "-", "none (helper answers not-found)"), demo.no_credentials))
        for row, step in plan:
            try:
                step(row)
            except (Failed, subprocess.TimeoutExpired) as exc:
                row.why = demo.redact(str(exc))
            else:
                row.result = "OK"
            row.saw = demo.saw()
            rows.append(row)
            if row.result != "OK" and not args.keep_going:
                break
        demo.learn_helper_answers()
        leaked = demo.leaks()
        demo.run("docker", "rmi", f"{demo.host}/demo/hello:v1", ok=False)

    _print_table(rows)
    print()
    passed = sum(r.result == "OK" for r in rows)
    if leaked:
        print(f"FAIL: a secret appeared in some output or log (ending {', '.join(leaked)})")
    else:
        print("No secret appeared in any client output or in the registry's and IAM's logs.")
    print(f"{passed}/{len(plan)} OK in {time.monotonic() - t0:.1f} s; "
          "stopped the registry, token service, IAM and dockerd; removing the temp dir.")
    return 0 if passed == len(plan) and not leaked else 1


def _stop_on_sigterm(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, _stop_on_sigterm)
    try:
        status = main()
    except KeyboardInterrupt:
        print("make demo: interrupted; stopped everything", file=sys.stderr)
        status = 130
    finally:
        shutil.rmtree(WORK, ignore_errors=True)
    sys.exit(status)
