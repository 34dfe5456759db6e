"""`doctor`: why would a pull work or fail? Checks everything `get` depends on.

For each ICR host Docker routes to us: the Docker config entry, the source and mode
that would answer, the cached token's expiry, the IAM endpoint (probed unless
--offline), our files and their permissions, and whether Docker can find us on PATH.
Never prints a secret: at most its last 4 characters. Exit 1 when something would
make a pull fail.
"""

from __future__ import annotations

import argparse
import os
import shutil
import stat
import sys
import time

from docker_credential_icr import answer, hosts, log, paths, settings, sources
from docker_credential_icr.protocol import PROGRAM, HelperError
from docker_credential_icr.store import CredentialStore

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
    return f"…{secret[-4:]}" if len(secret) >= 12 else "(short)"


def _routed_hosts(report: Report, only: str | None) -> list[str]:
    from docker_credential_icr import dockerconfig

    path = dockerconfig.docker_config_path()
    report.section(f"Docker config: {path}")
    try:
        _original, doc = dockerconfig.load(path)
    except dockerconfig.ConfigureError as exc:
        report.line(FAIL, str(exc))
        doc = {}
    helpers = doc.get("credHelpers") if isinstance(doc.get("credHelpers"), dict) else {}
    routed = sorted(h for h, v in helpers.items() if v == "icr")  # type: ignore[union-attr]
    if doc.get("credsStore"):
        report.line(OK, f"credsStore is {doc['credsStore']!r}: credHelpers entries take precedence "
                        "for their hosts")
    if only is not None:
        host = hosts.canonical_host(only) or only
        if host in routed:
            report.line(OK, f"{host} is routed to {PROGRAM}")
        else:
            report.line(FAIL, f"{host} is not in credHelpers: run `{PROGRAM} configure-docker "
                              f"--registries {host}`")
        return [host]
    if not routed:
        report.line(FAIL, f"no credHelpers entry points at 'icr': run `{PROGRAM} configure-docker`")
        return ["us.icr.io"]
    report.line(OK, f"{len(routed)} host(s) routed to {PROGRAM}: {', '.join(routed)}")
    return routed


def _check_path(report: Report) -> None:
    found = shutil.which(PROGRAM)
    if found:
        report.line(OK, f"{PROGRAM} on PATH: {found}")
    else:
        report.line(FAIL, f"{PROGRAM} is not on PATH: Docker will fail with \"executable file not "
                          "found\"; run `make install` or add its directory to PATH")


def _check_file(report: Report, path: str, want: int, what: str) -> None:
    try:
        st = os.stat(path)
    except FileNotFoundError:
        report.line(OK, f"{what}: {path} (not created yet)")
        return
    mode = stat.S_IMODE(st.st_mode)
    if sys.platform != "win32" and mode & ~want & 0o777:
        report.line(FAIL, f"{what}: {path} has mode {mode:o}, should be {want:o}: chmod {want:o} {path}")
    else:
        report.line(OK, f"{what}: {path} (mode {mode:o})")


def _check_files(report: Report) -> None:
    report.section("Files")
    data_dir = paths.data_dir()
    _check_file(report, data_dir, 0o700, "data directory")
    _check_file(report, paths.credentials_file(), 0o600, "stored credentials")
    _check_file(report, paths.cache_dir(), 0o700, "token cache")
    config = paths.config_file()
    report.line(OK, f"config file: {config}" + ("" if os.path.exists(config) else " (none)"))


def _describe_source(report: Report, host: str, cfg: settings.Settings,
                     store: CredentialStore) -> sources.Identity | None:
    try:
        identity = sources.find(host, cfg, store)
    except HelperError as exc:
        report.line(FAIL, f"{host}: {exc}")
        return None
    if identity is None:
        fix = ("docker login -u cp cp.icr.io (entitlement key)" if host == hosts.ENTITLED_HOST
               else f"export IBMCLOUD_API_KEY=… or `docker login -u iamapikey {host}`")
        report.line(FAIL, f"{host}: no credentials (Docker gets 'not found' and pulls anonymously): {fix}")
        return None
    kind = {sources.APIKEY: "API key", sources.REFRESH: "refresh token",
            sources.BEARER: "access token", sources.OPAQUE: "registry secret",
            sources.CR_TOKEN: "compute-resource token", sources.VPC: "VPC instance identity",
            }.get(identity.kind, identity.kind)
    shown = f" {fingerprint(identity.secret)}" if identity.secret else ""
    report.line(OK, f"{host}: {kind}{shown} from {identity.origin}")
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
            report.line(FAIL, f"{host}: the stored access token expired at {_when(expiry)}: "
                              f"`docker login -u iamapikey {host}`")
        elif expiry is not None:
            report.line(OK, f"{host}: the stored access token expires at {_when(expiry)}")
        return
    token = answer.cached_token(identity, cfg)
    if token is None:
        report.line(OK, f"{host}: no cached token yet (the next `get` asks IAM)")
    elif token.refresh_due(time.time()):
        report.line(OK, f"{host}: cached token due for refresh (expires {_when(token.expiration)})")
    else:
        report.line(OK, f"{host}: cached token valid until {_when(token.expiration)}")


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
        report.line(OK, f"IAM endpoint {url} (not probed: --offline)")
        return
    import requests

    try:
        # An empty grant: IAM answers 400 with a BXNIM code, which proves it is there.
        response = requests.post(url, data={}, headers={"Accept": "application/json"}, timeout=5)
        report.line(OK, f"IAM endpoint {url} answers (HTTP {response.status_code})")
    except requests.RequestException as exc:
        verdict = FAIL if required else WARN
        need = "needed for this mode" if required else "not needed while answering with API keys"
        report.line(verdict, f"IAM endpoint {url} unreachable ({type(exc).__name__}; {need})")


def run(host: str | None, offline: bool) -> int:
    report = Report()
    sys.stdout.write(f"{PROGRAM} doctor\n")
    routed = _routed_hosts(report, host)
    _check_path(report)
    report.section("Settings")
    try:
        cfg = settings.load()
    except HelperError as exc:
        report.line(FAIL, str(exc))
        return 1
    report.line(OK, f"mode: {cfg.mode}; deadline {cfg.deadline:g} s; extra registries: "
                    f"{', '.join(sorted(cfg.registries)) or 'none'}")
    # Files before credentials: reading the store repairs loose modes, and doctor must
    # report what it found, not what it left.
    _check_files(report)
    report.section("Credentials")
    store = CredentialStore()
    endpoints: dict[str, bool] = {}
    for name in routed:
        canonical = hosts.canonical_host(name)
        if not hosts.is_icr_host(canonical, cfg.registries):
            report.line(FAIL, f"{name} is not an ICR host: add it to DOCKER_CREDENTIAL_ICR_REGISTRIES")
            continue
        identity = _describe_source(report, canonical, cfg, store)
        if identity is None:
            continue
        kind = _answer_kind(identity, cfg.mode)
        report.line(OK, f"{canonical}: `get` answers as {kind} (mode {cfg.mode})")
        if identity.kind == sources.BEARER or _needs_iam(identity, cfg.mode):
            _check_token(report, canonical, identity, cfg)
        if identity.kind != sources.OPAQUE:
            endpoint = identity.endpoint or cfg.iam_endpoint
            endpoints[endpoint] = endpoints.get(endpoint, False) or _needs_iam(identity, cfg.mode)
    report.section("IAM")
    for endpoint, required in (endpoints or {cfg.iam_endpoint: False}).items():
        _probe_iam(report, endpoint, required, offline)
    sys.stdout.write("Result: " + ("problems found (see FAIL above)\n" if report.failed
                                    else "everything a pull needs is in place\n"))
    return 1 if report.failed else 0


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog=f"{PROGRAM} doctor",
        description="Check everything `docker pull` needs from this helper; never prints a secret.",
        epilog=f"examples:\n  {PROGRAM} doctor\n  {PROGRAM} doctor us.icr.io --offline",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("host", nargs="?", help="check only this registry host")
    parser.add_argument("--offline", action="store_true", help="do not probe the IAM endpoint")
    args = parser.parse_args(argv)
    return run(args.host, args.offline)
