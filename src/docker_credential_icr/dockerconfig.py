"""`configure-docker`: route ICR hosts to this helper in Docker's config.json.

One job: add (or remove) `"credHelpers": {host: "icr"}` entries in one JSON file —
Docker's `$DOCKER_CONFIG/config.json`, or with `--containers` the `auth.json` that
Podman, Buildah and Skopeo read first. The file belongs to the user and to Docker,
so the edit is conservative: every other key keeps its value and its place, the
file is replaced atomically after a timestamped backup, a run that changes nothing
writes nothing, and a file we do not understand is refused and left byte for byte
as it was.

This is a command for people, not the protocol: stdout carries only `--dry-run`'s
resulting file (so it can be piped or diffed); everything else goes to stderr.
"""

from __future__ import annotations

import argparse
import errno
import json
import os
import shutil
import sys
import time
from collections.abc import Iterable, Sequence

from docker_credential_icr import fsutil, hosts, log
from docker_credential_icr.i18n import _, argument_parser
from docker_credential_icr.protocol import PROGRAM

# The `credHelpers` value: Docker runs `docker-credential-<value>`.
HELPER = "icr"
COMMAND = f"{PROGRAM} configure-docker"
DEFAULT_MODE = 0o600  # Docker's own mode for config.json: it may hold base64 passwords.



def examples() -> str:
    """The --help epilog, in the user's language (the commands stay as they are)."""
    rows = [
        ("", _("route the 14 public ICR hosts (icr.io, us.icr.io, de.icr.io, ...) to {program}").format(
            program=PROGRAM)),
        (" --registries us.icr.io,de.icr.io", _("only these hosts")),
        (" --private --legacy",
         _("also the private endpoints (private.*.icr.io) and registry.*.bluemix.net")),
        (" --dry-run", _("print the resulting config.json on stdout; write nothing")),
        (" --containers", _("the same in containers' auth.json (podman, buildah, skopeo)")),
        (" --uninstall", _("remove every credHelpers entry that points at {helper}").format(helper=HELPER)),
    ]
    lines = [_("examples:")]
    for options, text in rows:
        lines += [f"  {COMMAND}{options}", f"      {text}"]
    lines += ["", _("The file is $DOCKER_CONFIG/config.json (default ~/.docker/config.json). Every other\n"
                    "key is kept; the previous file is saved as config.json.bak-YYYYmmddHHMMSS.")]
    return "\n".join(lines) + "\n"


class ConfigureError(Exception):
    """A refusal or failure: one line on stderr, exit status 1, nothing written."""


# --- where the file is -------------------------------------------------------------

def docker_config_path() -> str:
    # Docker's rule: $DOCKER_CONFIG is the directory (used as given), else ~/.docker.
    directory = os.environ.get("DOCKER_CONFIG") or os.path.join(os.path.expanduser("~"), ".docker")
    return os.path.join(directory, "config.json")


def containers_auth_path() -> str:
    """The auth file containers/image reads first (and `podman login` writes).

    REGISTRY_AUTH_FILE when set (then it is the only file those tools read), else on
    Linux $XDG_RUNTIME_DIR/containers/auth.json, else $XDG_CONFIG_HOME (~/.config)
    /containers/auth.json, which the tools read next on every platform.
    """
    explicit = os.environ.get("REGISTRY_AUTH_FILE")
    if explicit:
        return explicit
    runtime_dir = os.environ.get("XDG_RUNTIME_DIR")
    if runtime_dir and sys.platform.startswith("linux"):
        return os.path.join(runtime_dir, "containers", "auth.json")
    config_home = os.environ.get("XDG_CONFIG_HOME") or os.path.join(os.path.expanduser("~"), ".config")
    return os.path.join(config_home, "containers", "auth.json")


# --- which hosts -------------------------------------------------------------------

def parse_hosts(values: Iterable[str]) -> list[str]:
    """`--registries a,b --registries c` → canonical hosts, in order, without repeats."""
    out: list[str] = []
    for value in values:
        for item in value.split(","):
            item = item.strip()
            if not item:
                continue
            host = hosts.canonical_host(item)
            if host is None:
                raise ConfigureError(_("--registries: {item} is not a registry host[:port] "
                                       "(example: us.icr.io or myreg.example.com:5000)").format(
                    item=repr(item)))
            if host not in out:
                out.append(host)
    return out


def selected_hosts(args: argparse.Namespace) -> list[str] | None:
    """The hosts to act on: --registries (else the public hosts), plus --private, --legacy.

    None means "no choice made", which only --uninstall sees: then every entry that
    points at us goes, whatever its host.
    """
    if args.uninstall and args.registries is None and not args.private and not args.legacy:
        return None
    if args.registries is not None:
        chosen = parse_hosts(args.registries)
        if not chosen:
            raise ConfigureError(_("--registries: no host given (example: --registries us.icr.io,de.icr.io)"))
    else:
        chosen = list(hosts.PUBLIC_HOSTS)
    if args.private:
        chosen += [h for h in hosts.PRIVATE_HOSTS if h not in chosen]
    if args.legacy:
        chosen += [h for h in hosts.LEGACY_HOSTS if h not in chosen]
    return chosen


# --- the JSON document -------------------------------------------------------------

def load(path: str) -> tuple[bytes | None, dict[str, object]]:
    """(original bytes or None when missing, parsed top-level object)."""
    try:
        raw = fsutil.read_bytes(path)
    except IsADirectoryError:
        raise ConfigureError(_("{path} is a directory, not a file; nothing changed").format(
            path=path)) from None
    except NotADirectoryError:
        raise ConfigureError(_("cannot use {path}: one of its parents is a file, not a directory; "
                               "nothing changed").format(path=path)) from None
    except OSError as exc:
        raise ConfigureError(_("cannot read {path}: {reason}; nothing changed").format(
            path=path, reason=exc.strerror or exc)) from None
    if raw is None:
        return None, {}
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise ConfigureError(_("{path} is not UTF-8 text; fix or move it, nothing changed").format(
            path=path)) from None
    if not text.strip():
        # Docker reads an empty file as an empty configuration; so do we.
        return raw, {}
    try:
        # Plain dicts keep the file's key order, so the rewrite keeps it too.
        doc = json.loads(text)
    except ValueError as exc:
        raise ConfigureError(_("{path} is not valid JSON ({error}); fix or move it, nothing changed").format(
            path=path, error=exc)) from None
    if not isinstance(doc, dict):
        raise ConfigureError(_("{path}: the top level is a JSON {type}, not an object; "
                               "fix or move it, nothing changed").format(path=path, type=_json_type(doc)))
    helpers = doc.get("credHelpers")
    if helpers is not None and not isinstance(helpers, dict):
        raise ConfigureError(_("{path}: {key} is a JSON {type}, not an object; fix or move it, nothing "
                               "changed").format(path=path, key='"credHelpers"', type=_json_type(helpers)))
    return raw, doc


def _json_type(value: object) -> str:
    if isinstance(value, list):
        return "array"
    if isinstance(value, str):
        return "string"
    if isinstance(value, bool):
        return "boolean"
    if value is None:
        return "null"
    return "number"


def render(doc: dict[str, object]) -> bytes:
    # Docker writes config.json with json.MarshalIndent(…, "", "\t"): same indentation,
    # same separators, non-ASCII kept as is.
    return (json.dumps(doc, indent="\t", ensure_ascii=False) + "\n").encode("utf-8")


def add(doc: dict[str, object], wanted: Sequence[str]) -> tuple[dict[str, object], list[str]]:
    """A copy of `doc` routing `wanted` to us; and one line per change."""
    new = dict(doc)  # an existing credHelpers keeps its position among the keys
    old_helpers = doc.get("credHelpers")
    helpers: dict[str, object] = dict(old_helpers) if isinstance(old_helpers, dict) else {}
    changes: list[str] = []
    for host in wanted:
        previous = helpers.get(host)
        if previous == HELPER:
            continue
        if previous is None:
            changes.append(f"  + {host}")
        else:
            changes.append(f"  ~ {host} " + _("(was {previous}; the backup keeps it)").format(
                previous=repr(previous)))
        helpers[host] = HELPER
    new["credHelpers"] = helpers
    return (new, changes) if changes else (doc, [])


def remove(doc: dict[str, object], wanted: Sequence[str] | None) -> tuple[dict[str, object], list[str]]:
    """A copy of `doc` without our entries (all of them when `wanted` is None)."""
    old_helpers = doc.get("credHelpers")
    if not isinstance(old_helpers, dict):
        return doc, []
    chosen = None if wanted is None else set(wanted)
    helpers: dict[str, object] = {}
    changes: list[str] = []
    for key, value in old_helpers.items():
        # Only entries that point at us: another helper's entry is not ours to remove.
        mine = value == HELPER and (chosen is None or hosts.canonical_host(key) in chosen)
        if mine:
            changes.append(f"  - {key}")
        else:
            helpers[key] = value
    if not changes:
        return doc, []
    new = dict(doc)
    if helpers:
        new["credHelpers"] = helpers
    else:
        # An empty credHelpers means nothing to Docker; dropping it gives back the file
        # as it was before configure-docker created it.
        del new["credHelpers"]
    return new, changes


# --- writing -----------------------------------------------------------------------

def _backup_name(path: str) -> str:
    stamp = time.strftime("%Y%m%d%H%M%S")
    name, n = f"{path}.bak-{stamp}", 1
    while os.path.lexists(name):  # two runs in one second must not overwrite a backup
        n += 1
        name = f"{path}.bak-{stamp}-{n}"
    return name


def _write_backup(path: str, data: bytes) -> str:
    name = _backup_name(path)
    # 0600 whatever the original's mode: config.json may hold base64-encoded passwords.
    fd = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o600)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
        os.fsync(fd)
    finally:
        os.close(fd)
    return name


def _write_error(path: str, directory: str, exc: OSError) -> ConfigureError:
    reason = exc.strerror or str(exc)
    if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return ConfigureError(_("cannot write {path}: directory {directory} is not writable ({reason}); "
                                "nothing changed").format(path=path, directory=directory, reason=reason))
    return ConfigureError(_("cannot write {path} in {directory}: {reason}; nothing changed").format(
        path=path, directory=directory, reason=reason))


def write(path: str, original: bytes | None, data: bytes) -> str | None:
    """Replace `path` with `data` atomically; returns the backup's name (None if new)."""
    # Docker follows a symlinked config.json and rewrites its target; keep the link.
    target = os.path.realpath(path) if os.path.islink(path) else path
    directory = os.path.dirname(target) or "."
    mode = DEFAULT_MODE
    if original is not None:
        try:
            mode = os.stat(target).st_mode & 0o777
        except OSError:
            pass
    else:
        try:
            # Docker creates its config directory 0700; an existing one is left as it is.
            os.makedirs(directory, mode=0o700, exist_ok=True)
        except OSError as exc:
            where = exc.filename or directory
            raise ConfigureError(_("cannot create directory {directory} for {path}: "
                                   "{reason}; nothing changed").format(
                directory=where, path=path, reason=exc.strerror or exc)) from None
    backup = None
    try:
        if original is not None:
            backup = _write_backup(target, original)
        # Another program (docker login, say) may have rewritten the file since we read
        # it: replacing it now would silently undo that program's change.
        if fsutil.read_bytes(target) != original:
            raise ConfigureError(_("{path} changed while it was being edited; nothing changed, "
                                   "run the command again").format(path=path))
        fsutil.atomic_write(target, data, mode)
        # The temp file was created through the umask; give back the original's exact mode.
        if os.stat(target).st_mode & 0o777 != mode:
            os.chmod(target, mode)
    except BaseException as exc:
        if backup is not None:
            try:
                os.unlink(backup)
            except OSError:
                pass
        if isinstance(exc, OSError):
            raise _write_error(path, directory, exc) from None
        raise
    return backup


# --- advice ------------------------------------------------------------------------

def _note(text: str) -> None:
    sys.stderr.write(text + "\n")


def _warn_not_on_path() -> None:
    if shutil.which(PROGRAM) is not None:
        return
    if os.path.basename(sys.argv[0]) == PROGRAM:
        log.warning(_("{program} is not on PATH (this one is in {directory}): Docker looks it up there "
                      "and would fail with 'executable file not found in $PATH'. Add its directory to "
                      "PATH.").format(program=PROGRAM,
                                      directory=os.path.dirname(os.path.abspath(sys.argv[0]))))
    else:
        log.warning(_("{program} is not on PATH: Docker looks it up there and would fail with "
                      "'executable file not found in $PATH'. Add its directory to PATH.").format(
            program=PROGRAM))


def _warn_creds_store(doc: dict[str, object], path: str) -> None:
    store = doc.get("credsStore")
    if isinstance(store, str) and store:
        log.warning(_("{path} also sets \"credsStore\": \"{store}\". That is fine: credHelpers "
                      "entries win over credsStore for their hosts, so the ICR hosts use {program} "
                      "and every other registry keeps using docker-credential-{store}.").format(
            path=path, store=store, program=PROGRAM))


def _warn_old_logins(doc: dict[str, object], wanted: Sequence[str], path: str) -> None:
    auths = doc.get("auths")
    if not isinstance(auths, dict):
        return
    stale = [h for h in wanted if h in auths]
    if stale:
        # Only host names: the entries themselves may hold base64-encoded passwords.
        log.warning(_("{path} still has saved logins in \"auths\" for {hosts}; Docker now "
                      "asks {program} for these hosts instead. `docker logout HOST` removes them.").format(
            path=path, hosts=", ".join(stale), program=PROGRAM))


def _warn_unknown_hosts(wanted: Sequence[str]) -> None:
    custom = [h for h in wanted if h not in hosts.BUILTIN_HOSTS]
    if not custom:
        return
    from docker_credential_icr import settings

    try:
        extra = settings.load().registries
    except Exception as exc:  # a broken config must not stop configure-docker: say so
        log.warning(_("cannot check the helper's own configuration: {error}").format(error=exc))
        return
    unknown = [h for h in custom if h not in extra]
    if unknown:
        log.warning(_("{hosts}: not a built-in ICR host, so {program} answers "
                      "'credentials not found' for it until it is listed in DOCKER_CREDENTIAL_ICR_REGISTRIES "
                      "or in `registries` of the helper's config.toml.").format(
            hosts=", ".join(unknown), program=PROGRAM))


# --- the command -------------------------------------------------------------------

def _parser() -> argparse.ArgumentParser:
    parser = argument_parser(
        prog=COMMAND,
        description=_("Route IBM Cloud Container Registry hosts to {program}: add\n"
                      "{entries} entries to Docker's config.json.").format(
            program=PROGRAM, entries=f'"credHelpers": {{HOST: "{HELPER}"}}'),
        epilog=examples(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--registries", metavar="H1,H2", action="append",
                        help=_("these hosts (host[:port], comma-separated) instead of the 14 public "
                               "ICR hosts"))
    parser.add_argument("--private", action="store_true",
                        help=_("also the private endpoints private.icr.io, private.<region>.icr.io "
                               "(added to --registries or to the public hosts)"))
    parser.add_argument("--legacy", action="store_true",
                        help=_("also the deprecated registry.*.bluemix.net hosts"))
    parser.add_argument("--uninstall", action="store_true",
                        help=_("remove the entries pointing at {helper} (all of them, or only the "
                               "selected hosts)").format(helper=HELPER))
    parser.add_argument("--dry-run", action="store_true",
                        help=_("print the resulting file on stdout and write nothing"))
    parser.add_argument("--containers", action="store_true",
                        help=_("edit containers' auth.json ({variable}, else "
                               "$XDG_RUNTIME_DIR/containers/auth.json, else ~/.config/containers/auth.json), "
                               "read first by podman, buildah and skopeo, instead of Docker's "
                               "config.json").format(variable="REGISTRY_AUTH_FILE"))
    return parser


def run(args: argparse.Namespace) -> int:
    path = containers_auth_path() if args.containers else docker_config_path()
    what = "auth.json" if args.containers else _("Docker's config.json")
    wanted = selected_hosts(args)
    original, doc = load(path)

    if args.uninstall:
        new, changes = remove(doc, wanted)
    else:
        assert wanted is not None
        new, changes = add(doc, wanted)
        _warn_unknown_hosts(wanted)
        _warn_not_on_path()
        _warn_creds_store(doc, path)
        _warn_old_logins(doc, wanted, path)

    if args.dry_run:
        if changes:
            data = render(new)
        else:
            data = original or b""
        out = sys.stdout.buffer
        out.write(data)
        out.flush()
        if changes and args.uninstall:
            _note(_("Dry run: would remove in {path} (nothing written):").format(path=path)
                  + "\n" + "\n".join(changes))
        elif changes:
            _note(_("Dry run: would add in {path} (nothing written):").format(path=path)
                  + "\n" + "\n".join(changes))
        else:
            _note(_("Dry run: {path} would not change (nothing written).").format(path=path))
        return 0

    if not changes:
        if args.uninstall:
            if wanted is not None:
                _note(_("Nothing to remove: {path} has no credHelpers entry pointing at {helper} for the "
                        "selected hosts.").format(path=path, helper=HELPER))
            else:
                _note(_("Nothing to remove: {path} has no credHelpers entry pointing at {helper}.").format(
                    path=path, helper=HELPER))
        else:
            _note(_("Already configured: {what} {path} routes {count} host(s) to {program}; nothing "
                    "changed.").format(what=what, path=path, count=len(wanted or ()), program=PROGRAM))
        return 0

    backup = write(path, original, render(new))
    flag = " --containers" if args.containers else ""
    if args.uninstall:
        _note(_("Removed from {path}:").format(path=path) + "\n" + "\n".join(changes))
    else:
        _note(_("Updated {what} {path}: these hosts now use {program}:").format(
            what=what, path=path, program=PROGRAM) + "\n" + "\n".join(changes))
    if backup:
        _note(_("Previous file saved as {path}").format(path=backup))
    if args.uninstall:
        removed = ",".join(line[len("  - "):] for line in changes)
        _note(_("Undo: {command}").format(command=f"{COMMAND}{flag} --registries {removed}"))
    else:
        _note(_("Undo: {command}").format(command=f"{COMMAND}{flag} --uninstall"))
        if args.containers and _in_runtime_dir(path):
            _note(_("Note: $XDG_RUNTIME_DIR is emptied at logout and reboot. Podman, Buildah and Skopeo "
                    "also read Docker's config.json, which `{command}` (without --containers) "
                    "configures for good.").format(command=COMMAND))
    return 0


def _in_runtime_dir(path: str) -> bool:
    runtime_dir = os.environ.get("XDG_RUNTIME_DIR")
    if not runtime_dir or os.environ.get("REGISTRY_AUTH_FILE"):
        return False
    try:
        return os.path.commonpath([os.path.abspath(path), os.path.abspath(runtime_dir)]) == \
            os.path.abspath(runtime_dir)
    except ValueError:  # different drives on Windows
        return False


def main(argv: list[str]) -> int:
    args = _parser().parse_args(argv)
    try:
        return run(args)
    except ConfigureError as exc:
        sys.stderr.write(_("{command}: error: {message}").format(
            command=COMMAND, message=log.redact(str(exc))) + "\n")
        return 1
    except BrokenPipeError:
        # `--dry-run | head`: the reader left; nothing was written, nothing to report.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    except KeyboardInterrupt:
        return 130
