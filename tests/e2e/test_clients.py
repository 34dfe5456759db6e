"""Real clients end to end: dockerd, skopeo, podman and buildah pull and push through the helper.

Every test gets a fresh, isolated home (HOME, XDG_*, DOCKER_CONFIG) whose
`config.json` routes the stand-in registry to the helper (`credHelpers` → `icr`),
registers it as an ICR host (`DOCKER_CREDENTIAL_ICR_REGISTRIES`) and points the
helper at the fake IAM. Nothing else can supply credentials: the clients' own
auth files are empty, and `IBMCLOUD_API_KEY` is only ever read by the helper.
The proof that the helper supplied them is the ICR token service's log: the
registry saw the username kind that the mode implies (iamapikey, iamrefresh,
iambearer, or `<token>` after a `docker login` that got an identity token), and
a client whose config does not name the helper is denied.

The stand-ins (fake IAM, token service, distribution registry, dockerd) are
started once per module; `executable` runs everything once with the console
script and once more with the PyInstaller binary when
DOCKER_CREDENTIAL_ICR_TEST_BINARY is set.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.fakes.containers import ContainersSandbox
from tests.fakes.dockerd import dockerd_available
from tests.fakes.fake_iam import GRANT_APIKEY
from tests.fakes.icr_token_service import IcrTokenService
from tests.fakes.image import build_image_tar, image_id
from tests.fakes.registry import registry_available
from tests.fakes.stack import IcrStack

pytestmark = pytest.mark.e2e

# A fresh key per run: it must appear in no output, no log, no file but the helper's store.
API_KEY = "e2e-apikey-" + secrets.token_hex(16)
BAD_KEY = "e2e-badkey-" + secrets.token_hex(16)

# How the credentials are given → (DOCKER_CREDENTIAL_ICR_MODE or None, kind the registry must see).
#   auto/refresh/bearer: IBMCLOUD_API_KEY in the environment;
#   login:       `docker login -u iamapikey --password-stdin` stored the key through the helper;
#   login-token: the same login, but the token service answered with a refresh token, so
#                Docker stored `<token>` + identity token through the helper.
MODES: dict[str, tuple[str | None, str]] = {
    "auto": ("auto", "iamapikey"),
    "refresh": ("refresh", "iamrefresh"),
    "bearer": ("bearer", "iambearer"),
    "login": (None, "iamapikey"),
    "login-token": (None, "<token>"),
}
LOGIN_MODES = ("login", "login-token")
# Environment variables that would let something other than the helper supply credentials,
# or steer the helper: never inherited from the test runner.
_SCRUB = re.compile(r"^(IBMCLOUD_|IC_API_KEY|DOCKER_|REGISTRY_AUTH_FILE|CONTAINERS_|XDG_|BUILDAH_|PODMAN_)")
_SANDBOX_KEYS = (
    "CONTAINERS_STORAGE_CONF",
    "CONTAINERS_CONF",
    "CONTAINERS_REGISTRIES_CONF",
    "REGISTRY_AUTH_FILE",
    "XDG_RUNTIME_DIR",
    "TMPDIR",
)


def _have(*tools: str) -> tuple[bool, str]:
    missing = [t for t in tools if shutil.which(t) is None]
    return (not missing, f"{', '.join(missing)} not installed (apt-get install {' '.join(missing)})")


needs_skopeo = pytest.mark.skipif(not _have("skopeo")[0], reason=_have("skopeo")[1])
needs_podman = pytest.mark.skipif(not _have("podman")[0], reason=_have("podman")[1])
needs_buildah = pytest.mark.skipif(not _have("buildah")[0], reason=_have("buildah")[1])
needs_docker_cli = pytest.mark.skipif(not _have("docker")[0], reason=_have("docker")[1])


# ---------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def stack(no_leftovers: None) -> Iterator[IcrStack]:
    ok, why = registry_available()
    if not ok:
        pytest.skip(why)
    # dockerd only where it can run; the tests that need it then say why they skip.
    with IcrStack(api_keys=[API_KEY], with_dockerd=dockerd_available()[0]) as s:
        yield s


@pytest.fixture(scope="module")
def box(tmp_path_factory: pytest.TempPathFactory, no_leftovers: None) -> Iterator[ContainersSandbox]:
    with ContainersSandbox(tmp_path_factory.mktemp("containers")) as sandbox:
        yield sandbox


@dataclass
class Run:
    cmd: list[str]
    returncode: int
    stdout: str
    stderr: str

    @property
    def output(self) -> str:
        return self.stdout + self.stderr


@dataclass
class Rig:
    """One user's machine: an isolated home, the helper on PATH, clients configured to use it."""

    stack: IcrStack
    box: ContainersSandbox
    executable: str
    root: Path
    use_helper: bool = True
    mode_env: dict[str, str] = field(default_factory=dict)
    transcript: list[Run] = field(default_factory=list)
    secrets: set[str] = field(default_factory=lambda: {API_KEY, BAD_KEY})

    def __post_init__(self) -> None:
        self.home = self.root / "home"
        self.bindir = self.root / "bin"
        self.docker_config = self.root / "docker"
        for d in (self.home, self.bindir, self.docker_config):
            d.mkdir(parents=True)
        # The clients find the helper by name on PATH, as they would after `make install`.
        (self.bindir / "docker-credential-icr").symlink_to(self.executable)
        self.write_docker_config()

    # -- configuration ----------------------------------------------------

    @property
    def host(self) -> str:
        return self.stack.host

    @property
    def svc(self) -> IcrTokenService:
        assert self.stack.token_service is not None
        return self.stack.token_service

    @property
    def log_file(self) -> Path:
        return self.root / "helper.log"

    @property
    def credentials_file(self) -> Path:
        return self.home / "data" / "docker-credential-icr" / "credentials.json"

    def write_docker_config(self) -> None:
        if self.use_helper:
            config: dict[str, Any] = {"credHelpers": {self.host: "icr"}}
        else:
            # No credHelpers: a placeholder auth entry keeps the CLI from picking a default
            # credsStore (secretservice/pass) by itself.
            config = {"auths": {"placeholder.invalid": {}}}
        (self.docker_config / "config.json").write_text(json.dumps(config, indent=1) + "\n")

    def env(self) -> dict[str, str]:
        base = {k: v for k, v in os.environ.items() if not _SCRUB.match(k)}
        env = {
            **base,
            **{k: self.box.env[k] for k in _SANDBOX_KEYS},
            "PATH": f"{self.bindir}:{os.environ.get('PATH', '/usr/bin:/bin')}",
            "HOME": str(self.home),
            "XDG_CONFIG_HOME": str(self.home / "config"),
            "XDG_DATA_HOME": str(self.home / "data"),
            "XDG_CACHE_HOME": str(self.home / "cache"),
            "XDG_STATE_HOME": str(self.home / "state"),
            "DOCKER_CONFIG": str(self.docker_config),
            "DOCKER_CREDENTIAL_ICR_REGISTRIES": self.host,
            "IBMCLOUD_IAM_API_ENDPOINT": self.stack.iam.url,
            # Every helper run leaves its decisions here (all levels, secrets redacted).
            "DOCKER_CREDENTIAL_ICR_LOG_FILE": str(self.log_file),
            "LANG": "C.UTF-8",
        }
        if self.stack.dockerd is not None:
            env["DOCKER_HOST"] = self.stack.dockerd.host
        return {**env, **self.mode_env}

    def credentials(self, mode: str, *, key: str = API_KEY) -> str:
        """Set the user up for `mode`; returns the username kind the registry must see."""
        helper_mode, kind = MODES[mode]
        if mode in LOGIN_MODES:
            self.mode_env = {}
            self.docker_login(key, registry_refresh_token=(mode == "login-token"))
            stored = self.stored()
            assert list(stored) == [self.host], stored
            assert stored[self.host]["Username"] == kind
            self.secrets.add(stored[self.host]["Secret"])
        else:
            assert helper_mode is not None
            self.mode_env = {"IBMCLOUD_API_KEY": key, "DOCKER_CREDENTIAL_ICR_MODE": helper_mode}
        self.svc.clear_log()
        self.stack.iam.clear_log()
        return kind

    def docker_login(self, key: str, *, registry_refresh_token: bool = False) -> Run:
        self.svc.issue_refresh_tokens = registry_refresh_token
        try:
            res = self.run("docker", "login", "-u", "iamapikey", "--password-stdin", self.host, input=key)
        finally:
            self.svc.issue_refresh_tokens = False
        assert "Login Succeeded" in res.stdout
        # Docker kept nothing itself (at most the empty entry it writes beside credHelpers).
        config = (self.docker_config / "config.json").read_text()
        assert key not in config and not json.loads(config).get("auths", {}).get(self.host), config
        return res

    def stored(self) -> dict[str, dict[str, str]]:
        """The helper's credentials.json (host → Username/Secret), {} if none."""
        if not self.credentials_file.exists():
            return {}
        return json.loads(self.credentials_file.read_text())["auths"]

    # -- running things ---------------------------------------------------

    def run(
        self, *cmd: str, input: str | None = None, check: bool = True, timeout: float = 120
    ) -> Run:
        proc = subprocess.run(
            list(cmd),
            input=input.encode() if input is not None else None,
            capture_output=True,
            env=self.env(),
            timeout=timeout,
            check=False,
        )
        res = Run(list(cmd), proc.returncode, proc.stdout.decode(errors="replace"),
                  proc.stderr.decode(errors="replace"))
        self.transcript.append(res)
        if check and res.returncode != 0:
            pytest.fail(
                f"{' '.join(cmd)} → exit {res.returncode}\nstdout: {res.stdout[-2000:]}\n"
                f"stderr: {res.stderr[-2000:]}\nhelper log:\n{self.helper_log()[-2000:]}"
            )
        return res

    def docker(self, *args: str, **kw: Any) -> Run:
        return self.run("docker", *args, **kw)

    def skopeo(self, *args: str, **kw: Any) -> Run:
        return self.run("skopeo", "--policy", str(self.box.policy), *args, **kw)

    def helper(self, action: str, stdin: str) -> Run:
        return self.run("docker-credential-icr", action, input=stdin, check=False)

    def helper_log(self) -> str:
        return self.log_file.read_text(errors="replace") if self.log_file.exists() else ""

    def learn_answer(self) -> None:
        """Ask the helper what it answers now (a cache hit) so that secret is checked for leaks too."""
        res = self.helper("get", self.host)
        if res.returncode == 0:
            self.secrets.add(json.loads(res.stdout)["Secret"])
        self.transcript.pop()  # that answer legitimately carries the secret

    # -- images -----------------------------------------------------------

    def image(self, client: str, mode: str) -> tuple[str, Path, bytes]:
        """A unique image reference, its docker-archive tar and its content."""
        tag = f"{self.host}/e2e/{client}-{mode}-{secrets.token_hex(3)}:v1"
        content = f"{tag}\n".encode()
        tar = build_image_tar(self.root / f"{client}-{mode}.tar", tag, content=content)
        return tag, tar, content

    # -- checks -----------------------------------------------------------

    def assert_registry_saw(self, kind: str, actions: set[str]) -> None:
        """Only `kind` (besides anonymous probes) reached the registry, and it was granted `actions`."""
        log = self.svc.entries()
        others = {e["kind"] for e in log} - {kind, "anonymous"}
        assert not others, f"the registry saw {others}: {log}"
        granted = self.svc.entries(kind=kind, outcome="granted")
        assert granted, f"the registry never granted a {kind} request: {log}"
        got = {a for e in granted for g in e["granted"] for a in g["actions"]}
        assert actions <= got, (actions, got)
        assert self.svc.count(outcome="denied") == 0, log

    def assert_no_secret_leaked(self) -> None:
        """No secret in any client's output, the registry's log or the helper's log."""
        self.learn_answer()
        texts = [r.output for r in self.transcript]
        texts += [json.dumps(self.svc.log), json.dumps(self.stack.iam.requests), self.helper_log()]
        for secret in self.secrets:
            for text in texts:
                assert secret not in text, "a secret leaked"


@pytest.fixture
def rig(stack: IcrStack, box: ContainersSandbox, executable: str, tmp_path: Path) -> Iterator[Rig]:
    assert stack.token_service is not None
    stack.token_service.clear_log()
    stack.iam.clear_log()
    r = Rig(stack, box, executable, tmp_path)
    yield r
    r.svc.issue_refresh_tokens = False


@pytest.fixture
def dockerd_rig(rig: Rig) -> Rig:
    if rig.stack.dockerd is None:
        pytest.skip(dockerd_available()[1])
    return rig


def config_label(tar_dir: Path) -> str:
    """The `built-by` label of an image copied to a skopeo `dir:` layout."""
    manifest = json.loads((tar_dir / "manifest.json").read_text())
    config = json.loads((tar_dir / manifest["config"]["digest"].split(":", 1)[1]).read_text())
    return str(config["config"]["Labels"]["built-by"])


# ---------------------------------------------------------------- docker + dockerd


@pytest.mark.parametrize("mode", list(MODES))
def test_docker_push_then_pull(dockerd_rig: Rig, mode: str) -> None:
    rig = dockerd_rig
    kind = rig.credentials(mode)
    ref, tar, content = rig.image("docker", mode)
    rig.docker("load", "-i", str(tar))

    rig.svc.clear_log()
    rig.docker("push", ref)
    rig.assert_registry_saw(kind, {"push", "pull"})

    rig.docker("rmi", ref)
    rig.svc.clear_log()
    rig.docker("pull", ref)
    rig.assert_registry_saw(kind, {"pull"})
    assert json.loads(rig.docker("image", "inspect", ref).stdout)[0]["Id"] == image_id(content)
    rig.docker("rmi", ref)

    if mode in ("refresh", "bearer"):
        # The key went to IAM (from the helper) and never to the registry.
        assert rig.stack.iam.count(GRANT_APIKEY) >= 1
    if mode in LOGIN_MODES:
        # `docker logout` erases through the helper; the next pull is anonymous and denied.
        rig.docker("logout", rig.host)
        assert rig.stored() == {}
        rig.svc.clear_log()
        denied = rig.docker("pull", ref, check=False)
        assert denied.returncode != 0 and "denied" in denied.stderr, denied
        assert rig.svc.kinds_seen() == ["anonymous"]
    rig.assert_no_secret_leaked()


@needs_docker_cli
def test_docker_cli_login_and_logout_go_through_the_helper(rig: Rig) -> None:
    """Issue 2's check, CLI side only: with no daemon answering, Docker CLI 28 logs in by itself."""
    rig.mode_env = {"DOCKER_HOST": f"unix://{rig.root}/no-daemon.sock"}
    rig.docker_login(API_KEY)
    assert rig.stored() == {rig.host: {"Username": "iamapikey", "Secret": API_KEY}}
    assert rig.svc.count(kind="iamapikey", outcome="granted") >= 1
    listed = rig.helper("list", "")
    assert json.loads(listed.stdout) == {rig.host: "iamapikey"}
    assert oct(rig.credentials_file.stat().st_mode & 0o777) == "0o600"
    rig.docker("logout", rig.host)
    assert rig.stored() == {}
    assert json.loads(rig.helper("list", "").stdout) == {}
    rig.assert_no_secret_leaked()


# ---------------------------------------------------------------- skopeo, podman, buildah


@needs_skopeo
@pytest.mark.parametrize("mode", list(MODES))
def test_skopeo_copy_to_and_from(rig: Rig, mode: str) -> None:
    if mode in LOGIN_MODES and not _have("docker")[0]:
        pytest.skip(_have("docker")[1])
    kind = rig.credentials(mode)
    ref, tar, _ = rig.image("skopeo", mode)
    rig.skopeo("copy", "--dest-tls-verify=false", f"docker-archive:{tar}", f"docker://{ref}")
    rig.assert_registry_saw(kind, {"push", "pull"})

    rig.svc.clear_log()
    out = rig.root / "pulled"
    rig.skopeo("copy", "--src-tls-verify=false", f"docker://{ref}", f"dir:{out}")
    rig.assert_registry_saw(kind, {"pull"})
    assert config_label(out) == "tests.fakes.image"
    rig.assert_no_secret_leaked()


@needs_podman
@pytest.mark.parametrize("mode", list(MODES))
def test_podman_push_then_pull(rig: Rig, mode: str) -> None:
    if mode in LOGIN_MODES and not _have("docker")[0]:
        pytest.skip(_have("docker")[1])
    kind = rig.credentials(mode)
    ref, tar, content = rig.image("podman", mode)
    rig.run("podman", "load", "-i", str(tar))
    rig.svc.clear_log()
    rig.run("podman", "push", "--tls-verify=false", ref)
    rig.assert_registry_saw(kind, {"push", "pull"})

    rig.run("podman", "rmi", ref)
    rig.svc.clear_log()
    rig.run("podman", "pull", "--tls-verify=false", ref)
    rig.assert_registry_saw(kind, {"pull"})
    inspected = json.loads(rig.run("podman", "image", "inspect", ref).stdout)
    assert "sha256:" + inspected[0]["Id"] == image_id(content)
    rig.run("podman", "rmi", ref)
    rig.assert_no_secret_leaked()


@needs_buildah
@needs_skopeo
@pytest.mark.parametrize("mode", list(MODES))
def test_buildah_pull_then_push(rig: Rig, mode: str) -> None:
    if mode in LOGIN_MODES and not _have("docker")[0]:
        pytest.skip(_have("docker")[1])
    kind = rig.credentials(mode)
    ref, tar, content = rig.image("buildah", mode)
    rig.skopeo("copy", "--dest-tls-verify=false", f"docker-archive:{tar}", f"docker://{ref}")

    rig.svc.clear_log()
    rig.run("buildah", "pull", "--tls-verify=false", ref)
    rig.assert_registry_saw(kind, {"pull"})
    images = rig.run("buildah", "images", "--format", "{{.ID}}", "--no-trunc").stdout
    assert image_id(content) in images

    rig.svc.clear_log()
    again = ref.replace(":v1", ":v2")
    rig.run("buildah", "push", "--tls-verify=false", ref, f"docker://{again}")
    rig.assert_registry_saw(kind, {"push", "pull"})
    rig.run("buildah", "rmi", ref)
    rig.assert_no_secret_leaked()


# ---------------------------------------------------------------- denied: no helper, no key, bad key


def _seed(rig: Rig, client: str) -> str:
    """Push an image with the helper in auto mode, then forget every credential."""
    rig.credentials("auto")
    ref, tar, _ = rig.image(client, "seed")
    if client == "docker":
        rig.docker("load", "-i", str(tar))
        rig.docker("push", ref)
        rig.docker("rmi", ref)
    else:
        rig.skopeo("copy", "--dest-tls-verify=false", f"docker-archive:{tar}", f"docker://{ref}")
    rig.mode_env = {}
    rig.log_file.unlink(missing_ok=True)
    rig.svc.clear_log()
    return ref


def assert_helper_ran_and_said_not_found(rig: Rig) -> None:
    assert rig.helper_log(), "the client never ran the helper"
    answer = rig.helper("get", rig.host)
    assert (answer.returncode, answer.stdout) == (1, "credentials not found in native keychain\n")


def test_docker_pull_without_credentials_is_anonymous_and_denied(dockerd_rig: Rig) -> None:
    rig = dockerd_rig
    ref = _seed(rig, "docker")
    denied = rig.docker("pull", ref, check=False)
    assert denied.returncode != 0
    assert "pull access denied" in denied.stderr, denied
    # The helper was asked, said "not found", and Docker went on anonymously.
    assert_helper_ran_and_said_not_found(rig)
    assert rig.svc.kinds_seen() == ["anonymous"]
    rig.assert_no_secret_leaked()


@needs_skopeo
def test_skopeo_copy_without_credentials_is_anonymous_and_denied(rig: Rig) -> None:
    ref = _seed(rig, "skopeo")
    denied = rig.skopeo("copy", "--src-tls-verify=false", f"docker://{ref}", f"dir:{rig.root / 'x'}",
                        check=False)
    assert denied.returncode != 0 and "unauthorized" in denied.stderr.lower(), denied
    assert_helper_ran_and_said_not_found(rig)
    assert set(rig.svc.kinds_seen()) == {"anonymous"}
    rig.assert_no_secret_leaked()


def test_docker_without_the_helper_configured_is_denied(dockerd_rig: Rig) -> None:
    """The key sits in the environment and the helper on PATH, but config.json does not name it."""
    rig = dockerd_rig
    ref = _seed(rig, "docker")
    rig.use_helper = False
    rig.write_docker_config()
    rig.mode_env = {"IBMCLOUD_API_KEY": API_KEY}
    denied = rig.docker("pull", ref, check=False)
    assert denied.returncode != 0 and "pull access denied" in denied.stderr, denied
    assert rig.helper_log() == ""  # never ran
    assert rig.svc.kinds_seen() == ["anonymous"]
    rig.assert_no_secret_leaked()


@needs_skopeo
def test_skopeo_without_the_helper_configured_is_denied(rig: Rig) -> None:
    ref = _seed(rig, "skopeo")
    rig.use_helper = False
    rig.write_docker_config()
    rig.mode_env = {"IBMCLOUD_API_KEY": API_KEY}
    denied = rig.skopeo("copy", "--src-tls-verify=false", f"docker://{ref}", f"dir:{rig.root / 'x'}",
                        check=False)
    assert denied.returncode != 0
    assert rig.helper_log() == ""
    assert set(rig.svc.kinds_seen()) == {"anonymous"}
    rig.assert_no_secret_leaked()


@pytest.mark.parametrize("client", ["skopeo", "podman", "buildah"])
def test_bad_key_refresh_mode_containers_tools_show_the_iam_error(rig: Rig, client: str) -> None:
    """containers/image turns a helper error into a hard error that carries the helper's line."""
    if not _have(client, "skopeo")[0]:
        pytest.skip(_have(client, "skopeo")[1])
    ref = _seed(rig, "skopeo")
    rig.mode_env = {"IBMCLOUD_API_KEY": BAD_KEY, "DOCKER_CREDENTIAL_ICR_MODE": "refresh"}
    if client == "skopeo":
        res = rig.skopeo("copy", "--src-tls-verify=false", f"docker://{ref}", f"dir:{rig.root / 'x'}",
                         check=False)
    else:
        res = rig.run(client, "pull", "--tls-verify=false", ref, check=False)
    assert res.returncode != 0
    assert "BXNIM0415E" in res.stderr and "IBMCLOUD_API_KEY" in res.stderr, res.stderr
    assert "credentials not found" not in res.stderr
    # The bad key went to IAM only; the registry never saw it.
    assert rig.svc.count(kind="iamapikey") == rig.svc.count(kind="iamrefresh") == 0
    rig.assert_no_secret_leaked()


def test_bad_key_refresh_mode_docker_pull_shows_the_iam_error(dockerd_rig: Rig) -> None:
    """Docker drops a helper's stdout error and pulls anonymously, but passes its stderr through:
    the IAM refusal must reach the user there, or all they see is "pull access denied"."""
    rig = dockerd_rig
    ref = _seed(rig, "docker")
    rig.mode_env = {"IBMCLOUD_API_KEY": BAD_KEY, "DOCKER_CREDENTIAL_ICR_MODE": "refresh"}
    res = rig.docker("pull", ref, check=False)
    assert res.returncode != 0
    assert rig.svc.kinds_seen() == ["anonymous"]  # the key never reached the registry
    # The helper ran and IAM refused the key (the helper's one-line error went to Docker on stdout).
    assert rig.helper_log()
    assert [r["status"] for r in rig.stack.iam.requests if r["caller"] == "client"] == [400]
    rig.assert_no_secret_leaked()
    assert "BXNIM0415E" in res.stderr, f"the user only sees: {res.stderr!r}"


def test_bad_key_auto_mode_the_registry_refuses_it(dockerd_rig: Rig) -> None:
    """In auto mode the key goes to the registry as iamapikey: the registry's refusal is what shows."""
    rig = dockerd_rig
    ref = _seed(rig, "docker")
    rig.mode_env = {"IBMCLOUD_API_KEY": BAD_KEY, "DOCKER_CREDENTIAL_ICR_MODE": "auto"}
    res = rig.docker("pull", ref, check=False)
    assert res.returncode != 0 and "unauthorized" in res.stderr, res.stderr
    denied = rig.svc.entries(kind="iamapikey", outcome="denied")
    assert denied and denied[0]["reason"] == "IAM refused: BXNIM0415E"
    assert rig.svc.count(outcome="granted") == 0
    if _have("skopeo")[0]:
        res = rig.skopeo("copy", "--src-tls-verify=false", f"docker://{ref}", f"dir:{rig.root / 'x'}",
                         check=False)
        assert res.returncode != 0 and "unauthorized" in res.stderr, res.stderr
    rig.assert_no_secret_leaked()
