"""argv → action. Stdout carries only the protocol answer or a one-line error.

Docker runs `docker-credential-icr ACTION` with the request on stdin. Anything that
is not the answer goes to stderr; every failure becomes one line on stdout, exit 1.
"""

from __future__ import annotations

import os
import sys

from docker_credential_icr import DIST_NAME, __version__, log
from docker_credential_icr.i18n import _
from docker_credential_icr.protocol import NOT_FOUND, PROGRAM, USAGE, HelperError


def _entries(rows: list[tuple[str, str]], width: int) -> list[str]:
    """`  name      text` rows; a text's further lines are indented under its first."""
    out = []
    for name, text in rows:
        first, *rest = text.split("\n")
        out.append(f"  {name:<{width}}{first}")
        out.extend(" " * (2 + width) + line for line in rest)
    return out


def help_text() -> str:
    """`--help`, in the user's language (commands, names and variables stay as they are)."""
    lines = [
        _("{program} — Docker credential helper for IBM Cloud Container Registry (icr.io)").format(
            program=PROGRAM),
        "",
        _("Docker, Podman, Buildah and Skopeo run this program themselves once\n"
          "~/.docker/config.json routes the ICR hosts to it:"),
        "",
        '    {"credHelpers": {"us.icr.io": "icr", "icr.io": "icr"}}',
        "",
        _("Protocol actions (request on stdin, answer on stdout):"),
        *_entries([
            ("get", _("print the credentials for the server URL read from stdin")),
            ("store", _("store {request} read from stdin (docker login)").format(
                request='{"ServerURL","Username","Secret"}')),
            ("erase", _("forget the credentials for the server URL read from stdin (docker logout)")),
            ("list", _("print {answer} for the stored credentials (never a secret)").format(
                answer="{host: username}")),
            ("version", _("print the version")),
        ], 11),
        "",
        _("Commands for people:"),
        *_entries([
            ("doctor [HOST]", _("check everything a pull needs (--offline: no IAM probe)")),
            ("configure-docker", _('add "credHelpers" entries for the ICR hosts to ~/.docker/config.json\n'
                                   "(--help for its options; --uninstall removes them)")),
            ("kubelet", _("kubelet image credential provider (CredentialProviderRequest on stdin;\n"
                          "see docs/kubernetes.md)")),
        ], 19),
        "",
        _("Options:"),
        *_entries([("-h, --help", _("this text")), ("--version", _("print the version"))], 16),
        "",
        _("Examples:"),
        f"  {PROGRAM} configure-docker",
        "  export IBMCLOUD_API_KEY=@$HOME/.bluemix/apikey.txt   # " + _("or the key itself"),
        f"  echo us.icr.io | {PROGRAM} get",
        '  echo "$KEY" | docker login -u iamapikey --password-stdin us.icr.io',
        "",
        _("Environment: {variables}").format(
            variables="IBMCLOUD_API_KEY / IC_API_KEY, DOCKER_CREDENTIAL_ICR_MODE"),
        "(auto|refresh|bearer|apikey), DOCKER_CREDENTIAL_ICR_REGISTRIES, DOCKER_CREDENTIAL_ICR_CONFIG,",
        "DOCKER_CREDENTIAL_ICR_LOG (debug|info|warning), DOCKER_CREDENTIAL_ICR_LOG_FILE.",
    ]
    return "\n".join(lines) + "\n"


def _read_request() -> str:
    from docker_credential_icr.protocol import MAX_REQUEST_BYTES, decode_request

    stdin = sys.stdin.buffer if sys.stdin is not None else None
    raw = stdin.read(MAX_REQUEST_BYTES + 1) if stdin is not None else b""
    return decode_request(raw)


def _get() -> str:
    from docker_credential_icr import answer, settings, sources
    from docker_credential_icr.hosts import canonical_host, is_icr_host
    from docker_credential_icr.protocol import NotFound, encode_credentials, parse_server_url
    from docker_credential_icr.store import CredentialStore

    server_url = parse_server_url(_read_request())
    cfg = settings.load()
    host = canonical_host(server_url)
    if not is_icr_host(host, cfg.registries):
        log.debug(f"get: {server_url!r} is not an ICR host")
        raise NotFound
    store = CredentialStore()
    identity = sources.find(host, cfg, store)
    if identity is None:
        log.debug(f"get: no credentials for {host}")
        raise NotFound
    username, secret = answer.answer(identity, cfg, store)
    log.debug(f"get: {host} answered as {username} from {identity.origin}")
    return encode_credentials(server_url, username, secret)


def _store() -> str:
    from docker_credential_icr import settings, sources
    from docker_credential_icr.hosts import canonical_host, is_icr_host
    from docker_credential_icr.protocol import parse_store_request
    from docker_credential_icr.store import CredentialStore

    server_url, username, secret = parse_store_request(_read_request())
    log.remember_secret(secret)
    cfg = settings.load()
    host = canonical_host(server_url)
    if not is_icr_host(host, cfg.registries):
        raise HelperError(
            _("store: {server} is not an IBM Cloud Container Registry host; nothing "
              "stored (add it with DOCKER_CREDENTIAL_ICR_REGISTRIES if it is one)").format(
                server=repr(server_url[:200]))
        )
    sources.check_store_username(host, username)
    if not secret:
        raise HelperError(_("store: empty secret for {host}; nothing stored").format(host=host))
    CredentialStore().put(host, username, secret)
    log.info(f"store: saved {username} credentials for {host}")
    return ""


def _erase() -> str:
    from docker_credential_icr.hosts import canonical_host
    from docker_credential_icr.protocol import parse_server_url
    from docker_credential_icr.store import CredentialStore

    server_url = parse_server_url(_read_request())
    host = canonical_host(server_url)
    if host is None:
        raise HelperError(_("erase: {server} is not a registry host name; nothing erased").format(
            server=repr(server_url[:200])))
    if CredentialStore().delete(host):
        log.info(f"erase: removed stored credentials for {host}")
    else:
        log.debug(f"erase: nothing stored for {server_url!r}")
    return ""


def _list() -> str:
    from docker_credential_icr.protocol import encode_list
    from docker_credential_icr.store import CredentialStore

    return encode_list(CredentialStore().usernames())


def _version() -> str:
    return f"{PROGRAM} ({DIST_NAME}) {__version__}\n"


ACTIONS = {"get": _get, "store": _store, "erase": _erase, "list": _list, "version": _version}


def _one_line(message: str) -> str:
    """An error as one line of valid UTF-8, whatever it quotes (IAM's errorMessage, a path
    from the environment): line breaks of every kind become spaces, and lone surrogates
    (undecodable bytes in a path, "\\ud800" in JSON) are escaped instead of crashing."""
    text = " ".join(log.redact(message).splitlines())
    return text.encode("utf-8", "backslashreplace").decode("utf-8") + "\n"


def _run_action(name: str) -> int:
    try:
        out = ACTIONS[name]()
    except HelperError as exc:
        out, status = _one_line(str(exc)), 1
    except OSError as exc:
        where = f" ({exc.filename})" if exc.filename else ""
        out, status = _one_line(f"{name}: {exc.strerror or exc}{where}"), 1
    except Exception as exc:  # a bug: still one line, never a traceback with secrets
        log.debug(f"{name}: unexpected {type(exc).__name__}: {exc}")
        out, status = _("{action}: internal error ({error}); rerun with "
                        "DOCKER_CREDENTIAL_ICR_LOG=debug").format(
            action=name, error=type(exc).__name__) + "\n", 1
    else:
        status = 0
    if status and name == "get" and out != NOT_FOUND + "\n":
        # Docker drops a helper's stdout error and pulls anonymously: only stderr
        # reaches the user, and "pull access denied" alone would hide the cause.
        sys.stderr.write(f"{PROGRAM}: {out}")
    # The protocol is UTF-8 whatever the locale's encoding: write bytes, not text.
    sys.stdout.flush()
    sys.stdout.buffer.write(out.encode("utf-8", "backslashreplace"))
    sys.stdout.flush()
    return status


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if args and args[0] == "doctor":
        from docker_credential_icr import doctor

        return doctor.main(args[1:])
    if args and args[0] == "configure-docker":
        # A command for people, not the protocol: its argparse/json imports stay off `get`'s path.
        from docker_credential_icr import dockerconfig

        return dockerconfig.main(args[1:])
    if args and args[0] == "kubelet":
        # kubelet's image credential provider speaks its own protocol; loaded only here.
        from docker_credential_icr import kubelet

        return kubelet.main(args[1:])
    if args and args[0] in ("-h", "--help", "help"):
        sys.stdout.write(help_text())
        return 0
    if args == ["--version"]:
        args = ["version"]
    if len(args) != 1:
        # English on purpose: the line docker/docker-credential-helpers prints, word for word.
        sys.stdout.write(USAGE + "\n")
        return 1
    if args[0] not in ACTIONS:
        sys.stdout.write(_("{program}: unknown action: {action}").format(program=PROGRAM, action=args[0])
                         + "\n")
        return 1
    try:
        return _run_action(args[0])
    except KeyboardInterrupt:
        return 130
    finally:
        # A closed stdout (client gone) must not turn into a traceback on stderr.
        try:
            sys.stdout.flush()
        except OSError:
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
