"""`doctor`: why would a pull work or fail? Checks everything `get` depends on.

For each ICR host Docker routes to us: the Docker config entry, the source and mode
that would answer, the cached token's expiry, the IAM endpoint (probed unless
--offline), our files and their permissions, and whether Docker can find us on PATH.
Never prints a secret: at most its last 4 characters. Exit 1 when something would
make a pull fail.
"""

from __future__ import annotations

import os
import shutil
import stat
import sys
import time

from docker_credential_icr import answer, hosts, log, paths, settings, sources
from docker_credential_icr.i18n import _, argument_parser
from docker_credential_icr.protocol import PROGRAM, HelperError
from docker_credential_icr.store import CredentialStore

# The verdict tags stay English in every language: short, fixed markers to scan and grep
# for (like systemd's [FAILED]); the text after them is translated.
OK, WARN, FAIL = "ok", "warning", "FAIL"


class Report:
    def __init__(self) -> None:
        self.failed = False

    def line(self, verdict: str, text: str) -> None:
        if verdict == FAIL:
            self.failed = True
        sys.stdout.write(log.redact(f"  [{verdict:>7}] {text}") + "\n")

    def section(self, title: str) -> None:
        sys.stdout.write(f"{title}\n")


def fingerprint(secret: str) -> str:
    return f"…{secret[-4:]}" if len(secret) >= 12 else _("(short)")


def _routed_hosts(report: Report, only: str | None) -> list[str]:
    from docker_credential_icr import dockerconfig

    path = dockerconfig.docker_config_path()
    report.section(_("Docker config: {path}").format(path=path))
    try:
        _original, doc = dockerconfig.load(path)
    except dockerconfig.ConfigureError as exc:
        report.line(FAIL, str(exc))
        doc = {}
    helpers = doc.get("credHelpers") if isinstance(doc.get("credHelpers"), dict) else {}
    routed = sorted(h for h, v in helpers.items() if v == "icr")  # type: ignore[union-attr]
    if doc.get("credsStore"):
        report.line(OK, _("credsStore is {store}: credHelpers entries take precedence "
                          "for their hosts").format(store=repr(doc["credsStore"])))
    if only is not None:
        host = hosts.canonical_host(only) or only
        if host in routed:
            report.line(OK, _("{host} is routed to {program}").format(host=host, program=PROGRAM))
        else:
            report.line(FAIL, _("{host} is not in credHelpers: run `{program} configure-docker "
                                "--registries {host}`").format(host=host, program=PROGRAM))
        return [host]
    if not routed:
        report.line(FAIL, _("no credHelpers entry points at 'icr': run `{program} configure-docker`").format(
            program=PROGRAM))
        return ["us.icr.io"]
    report.line(OK, _("{count} host(s) routed to {program}: {hosts}").format(
        count=len(routed), program=PROGRAM, hosts=", ".join(routed)))
    return routed


def _check_path(report: Report) -> None:
    found = shutil.which(PROGRAM)
    if found:
        report.line(OK, _("{program} on PATH: {path}").format(program=PROGRAM, path=found))
    else:
        report.line(FAIL, _("{program} is not on PATH: Docker will fail with \"executable file not "
                            "found\"; run `make install` or add its directory to PATH").format(
            program=PROGRAM))


def _check_file(report: Report, path: str, want: int, what: str) -> None:
    try:
        st = os.stat(path)
    except FileNotFoundError:
        report.line(OK, _("{what}: {path} (not created yet)").format(what=what, path=path))
        return
    mode = stat.S_IMODE(st.st_mode)
    if sys.platform != "win32" and mode & ~want & 0o777:
        report.line(FAIL, _("{what}: {path} has mode {mode}, should be {want}: chmod {want} {path}").format(
            what=what, path=path, mode=f"{mode:o}", want=f"{want:o}"))
    else:
        report.line(OK, _("{what}: {path} (mode {mode})").format(what=what, path=path, mode=f"{mode:o}"))


def _check_files(report: Report) -> None:
    report.section(_("Files"))
    data_dir = paths.data_dir()
    _check_file(report, data_dir, 0o700, _("data directory"))
    _check_file(report, paths.credentials_file(), 0o600, _("stored credentials"))
    _check_file(report, paths.cache_dir(), 0o700, _("token cache"))
    config = paths.config_file()
    if os.path.exists(config):
        report.line(OK, _("config file: {path}").format(path=config))
    else:
        report.line(OK, _("config file: {path} (none)").format(path=config))


def _describe_source(report: Report, host: str, cfg: settings.Settings,
                     store: CredentialStore) -> sources.Identity | None:
    try:
        identity = sources.find(host, cfg, store)
    except HelperError as exc:
        report.line(FAIL, f"{host}: {exc}")
        return None
    if identity is None:
        fix = (_("docker login -u cp cp.icr.io (entitlement key)") if host == hosts.ENTITLED_HOST
               else _("export IBMCLOUD_API_KEY=… or `docker login -u iamapikey {host}`").format(host=host))
        report.line(FAIL, _("{host}: no credentials (Docker gets 'not found' and pulls anonymously): "
                            "{fix}").format(host=host, fix=fix))
        return None
    kind = {sources.APIKEY: _("API key"), sources.REFRESH: _("refresh token"),
            sources.BEARER: _("access token"), sources.OPAQUE: _("registry secret"),
            sources.CR_TOKEN: _("compute-resource token"), sources.VPC: _("VPC instance identity"),
            }.get(identity.kind, identity.kind)
    shown = f" {fingerprint(identity.secret)}" if identity.secret else ""
    report.line(OK, _("{host}: {kind}{fingerprint} from {origin}").format(
        host=host, kind=kind, fingerprint=shown, origin=identity.describe()))
    return identity


def _answer_kind(identity: sources.Identity, mode: str) -> str:
    if identity.kind == sources.OPAQUE:
        return identity.username or "<token>"
    if identity.kind in (sources.BEARER, sources.CR_TOKEN, sources.VPC) or mode == "bearer":
        # Trusted profiles get no refresh token from IAM: they always answer with access tokens.
        return "iambearer"
    if identity.kind == sources.APIKEY and mode in ("auto", "apikey"):
        return "iamapikey"
    return "iamrefresh"


def _needs_iam(identity: sources.Identity, mode: str) -> bool:
    return _answer_kind(identity, mode) in ("iamrefresh", "iambearer") and identity.kind != sources.BEARER


def _check_token(report: Report, host: str, identity: sources.Identity, cfg: settings.Settings) -> None:
    if identity.kind == sources.BEARER:
        from docker_credential_icr import tokens

        expiry = tokens.jwt_expiry(identity.secret)
        if expiry is not None and expiry <= time.time():
            report.line(FAIL, _("{host}: the stored access token expired at {when}: "
                                "`docker login -u iamapikey {host}`").format(host=host, when=_when(expiry)))
        elif expiry is not None:
            report.line(OK, _("{host}: the stored access token expires at {when}").format(
                host=host, when=_when(expiry)))
        return
    token = answer.cached_token(identity, cfg)
    if token is None:
        report.line(OK, _("{host}: no cached token yet (the next `get` asks IAM)").format(host=host))
    elif token.refresh_due(time.time()):
        report.line(OK, _("{host}: cached token due for refresh (expires {when})").format(
            host=host, when=_when(token.expiration)))
    else:
        report.line(OK, _("{host}: cached token valid until {when}").format(
            host=host, when=_when(token.expiration)))


def _when(epoch: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(epoch))


def _probe_iam(report: Report, endpoint: str, required: bool, offline: bool) -> None:
    from docker_credential_icr import iam

    try:
        url = iam.token_url(endpoint)
    except HelperError as exc:
        report.line(FAIL if required else WARN, str(exc))
        return
    if offline:
        report.line(OK, _("IAM endpoint {url} (not probed: --offline)").format(url=url))
        return
    import requests

    try:
        # An empty grant: IAM answers 400 with a BXNIM code, which proves it is there.
        response = requests.post(url, data={}, headers={"Accept": "application/json"}, timeout=5)
        report.line(OK, _("IAM endpoint {url} answers (HTTP {status})").format(
            url=url, status=response.status_code))
    except requests.RequestException as exc:
        verdict = FAIL if required else WARN
        need = _("needed for this mode") if required else _("not needed while answering with API keys")
        report.line(verdict, _("IAM endpoint {url} unreachable ({error}; {need})").format(
            url=url, error=type(exc).__name__, need=need))


def run(host: str | None, offline: bool) -> int:
    report = Report()
    sys.stdout.write(f"{PROGRAM} doctor\n")
    routed = _routed_hosts(report, host)
    _check_path(report)
    report.section(_("Settings"))
    try:
        cfg = settings.load()
    except HelperError as exc:
        report.line(FAIL, str(exc))
        return 1
    report.line(OK, _("mode: {mode}; deadline {deadline} s; extra registries: {registries}").format(
        mode=cfg.mode, deadline=f"{cfg.deadline:g}",
        registries=", ".join(sorted(cfg.registries)) or _("none")))
    # Files before credentials: reading the store repairs loose modes, and doctor must
    # report what it found, not what it left.
    _check_files(report)
    report.section(_("Credentials"))
    store = CredentialStore()
    endpoints: dict[str, bool] = {}
    for name in routed:
        canonical = hosts.canonical_host(name)
        if not hosts.is_icr_host(canonical, cfg.registries):
            report.line(FAIL, _("{host} is not an ICR host: add it to "
                                "DOCKER_CREDENTIAL_ICR_REGISTRIES").format(host=name))
            continue
        identity = _describe_source(report, canonical, cfg, store)
        if identity is None:
            continue
        kind = _answer_kind(identity, cfg.mode)
        report.line(OK, _("{host}: `get` answers as {username} (mode {mode})").format(
            host=canonical, username=kind, mode=cfg.mode))
        if identity.kind == sources.BEARER or _needs_iam(identity, cfg.mode):
            _check_token(report, canonical, identity, cfg)
        if identity.kind != sources.OPAQUE:
            endpoint = identity.endpoint or cfg.iam_endpoint
            endpoints[endpoint] = endpoints.get(endpoint, False) or _needs_iam(identity, cfg.mode)
    report.section("IAM")
    for endpoint, required in (endpoints or {cfg.iam_endpoint: False}).items():
        _probe_iam(report, endpoint, required, offline)
    sys.stdout.write((_("Result: problems found (see FAIL above)") if report.failed
                      else _("Result: everything a pull needs is in place")) + "\n")
    return 1 if report.failed else 0


def main(argv: list[str]) -> int:
    import argparse

    parser = argument_parser(
        prog=f"{PROGRAM} doctor",
        description=_("Check everything `docker pull` needs from this helper; never prints a secret."),
        epilog=_("examples:") + f"\n  {PROGRAM} doctor\n  {PROGRAM} doctor us.icr.io --offline",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("host", nargs="?", help=_("check only this registry host"))
    parser.add_argument("--offline", action="store_true", help=_("do not probe the IAM endpoint"))
    args = parser.parse_args(argv)
    return run(args.host, args.offline)
