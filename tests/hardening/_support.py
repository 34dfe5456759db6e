"""Shared machinery for the hardening tests: a ledger of every secret used and every
byte the helper printed, a recording fake IAM (plain and TLS), and real filesystem
conditions (immutable directories, small tmpfs mounts) where the machine allows them.

The ledger is what the final secrets scan (test_zz_secrets_scan.py) reads: every
hardening test runs the helper through `HardHelper`, which captures stdout, stderr and
a debug log file per run, and every secret the tests create or the fake IAM issues is
registered here.
"""

from __future__ import annotations

import contextlib
import datetime
import ipaddress
import json
import os
import secrets
import shutil
import ssl
import subprocess
import threading
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import ThreadingHTTPServer
from pathlib import Path
from typing import Any

from docker_credential_icr.hosts import BUILTIN_HOSTS, canonical_host, parse_registry_list
from tests.conftest import Helper, Result
from tests.fakes._util import ServedHTTP
from tests.fakes.fake_iam import FakeIAM, _Answer, _Handler

LOG_ENV = {"DOCKER_CREDENTIAL_ICR_LOG": "debug"}


# -- the ledger ------------------------------------------------------------------


@dataclass
class Capture:
    """What one helper run printed, and whether its stdout is an intended `get` answer."""

    test: str
    action: str
    returncode: int | None
    stdout: str
    stderr: str
    log: str
    registries: str = ""

    def intended_answer(self) -> dict[str, str] | None:
        """The parsed `get` answer when it is one for an exact ICR host, else None."""
        if self.action != "get" or self.returncode != 0:
            return None
        try:
            doc = json.loads(self.stdout)
        except ValueError:
            return None
        if not isinstance(doc, dict) or sorted(doc) != ["Secret", "ServerURL", "Username"]:
            return None
        host = canonical_host(str(doc["ServerURL"]))
        extra = parse_registry_list(self.registries, "test") if self.registries else frozenset()
        if host is None or (host not in BUILTIN_HOSTS and host not in extra):
            return None
        return doc

    def scanned_texts(self) -> Iterator[tuple[str, str]]:
        """(stream name, text) pairs that must hold no secret at all."""
        answer = self.intended_answer()
        if answer is None:
            yield "stdout", self.stdout
        else:
            # Only the Secret field of an intended answer may carry a secret.
            yield "stdout (ServerURL)", str(answer["ServerURL"])
            yield "stdout (Username)", str(answer["Username"])
        yield "stderr", self.stderr
        yield "log file", self.log


@dataclass
class Ledger:
    secrets: set[str] = field(default_factory=set)
    captures: list[Capture] = field(default_factory=list)
    figures: Counter[str] = field(default_factory=Counter)
    notes: dict[str, Any] = field(default_factory=dict)
    current_test: str = "?"
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def secret(self, value: str) -> str:
        """Register `value` as a secret that must never be printed; returns it."""
        if value:
            with self._lock:
                self.secrets.add(value)
        return value

    def new_secret(self, kind: str) -> str:
        return self.secret(f"hard-{kind}-{secrets.token_urlsafe(18)}")

    def record(self, capture: Capture) -> None:
        with self._lock:
            self.captures.append(capture)
            self.figures["helper runs captured"] += 1
            self.figures["bytes captured"] += len(capture.stdout) + len(capture.stderr) + len(capture.log)

    def bump(self, key: str, n: int = 1) -> None:
        with self._lock:
            self.figures[key] += n

    def leaks(self, captures: list[Capture] | None = None) -> list[str]:
        """One line per (capture, stream, secret) hit; the secret itself is never shown."""
        with self._lock:
            known = sorted(self.secrets, key=len, reverse=True)
            todo = list(self.captures if captures is None else captures)
        found = []
        for cap in todo:
            for stream, text in cap.scanned_texts():
                for value in known:
                    if value in text:
                        found.append(f"{cap.test} [{cap.action}, rc={cap.returncode}] {stream}: "
                                     f"secret {value[:10]}… ({len(value)} chars)")
        return found

    def captures_of(self, test: str) -> list[Capture]:
        with self._lock:
            return [c for c in self.captures if c.test == test]


LEDGER = Ledger()


# -- the helper, recorded --------------------------------------------------------


class Running:
    """A helper process started by `HardHelper.start`; `finish()` records what it printed."""

    def __init__(self, helper: HardHelper, action: str, proc: subprocess.Popen[bytes],
                 log_path: Path, registries: str, stdin: bytes) -> None:
        self.helper = helper
        self.action = action
        self.proc = proc
        self.log_path = log_path
        self.registries = registries
        self.stdin = stdin

    def release(self) -> None:
        """Write the request and close stdin: the helper reads it and answers."""
        assert self.proc.stdin is not None
        try:
            self.proc.stdin.write(self.stdin)
            self.proc.stdin.close()
        except BrokenPipeError:
            pass
        self.proc.stdin = None  # written and closed: communicate() must not touch it again

    def finish(self, timeout: float = 60) -> Result:
        out, err = self.proc.communicate(timeout=timeout)
        proc = subprocess.CompletedProcess(self.proc.args, self.proc.returncode, out, err)
        return self.helper._record(self.action, proc, self.log_path, self.registries)

    def kill(self) -> Result:
        with contextlib.suppress(ProcessLookupError):
            self.proc.kill()
        return self.finish(timeout=30)


class HardHelper(Helper):
    """`Helper` whose every run logs at debug level to its own file and lands in LEDGER."""

    def __init__(self, executable: str, home: Path) -> None:
        super().__init__(executable, home)
        self.logs = home.parent / "logs"
        self.logs.mkdir(exist_ok=True)
        self._n = 0
        self._n_lock = threading.Lock()

    def _log_path(self) -> Path:
        with self._n_lock:
            self._n += 1
            return self.logs / f"run-{self._n}.log"

    def _env(self, env: dict[str, str] | None, log_path: Path) -> dict[str, str]:
        return {**self.env, **LOG_ENV, "DOCKER_CREDENTIAL_ICR_LOG_FILE": str(log_path), **(env or {})}

    def _record(self, action: str, proc: subprocess.CompletedProcess[bytes], log_path: Path,
                registries: str) -> Result:
        result = Result(proc)
        log = log_path.read_bytes().decode("utf-8", "replace") if log_path.exists() else ""
        LEDGER.record(Capture(LEDGER.current_test, action, proc.returncode, result.stdout,
                              result.stderr, log, registries))
        return result

    def run(self, *args: str, stdin: bytes | str = b"", env: dict[str, str] | None = None,
            timeout: float = 60) -> Result:
        data = stdin.encode("utf-8") if isinstance(stdin, str) else stdin
        log_path = self._log_path()
        full_env = self._env(env, log_path)
        proc = subprocess.run([self.executable, *args], input=data, capture_output=True,
                              env=full_env, timeout=timeout, check=False)
        action = args[0] if len(args) == 1 else " ".join(args)
        return self._record(action, proc, log_path, full_env.get("DOCKER_CREDENTIAL_ICR_REGISTRIES", ""))

    def start(self, action: str, stdin: bytes | str, env: dict[str, str] | None = None,
              hold: bool = False) -> Running:
        """Start `action` without waiting; stdin is written and closed at once, or — with
        `hold` — only at `release()`, so that many processes can be let go together."""
        data = stdin.encode("utf-8") if isinstance(stdin, str) else stdin
        log_path = self._log_path()
        full_env = self._env(env, log_path)
        proc = subprocess.Popen([self.executable, action], stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=full_env)
        running = Running(self, action, proc, log_path,
                          full_env.get("DOCKER_CREDENTIAL_ICR_REGISTRIES", ""), data)
        if not hold:
            running.release()
        return running


def one_line_error(res: Result) -> None:
    """The protocol's failure shape: exit 1, exactly one line on stdout, no traceback."""
    assert res.returncode == 1, res
    assert res.stdout.endswith("\n") and res.stdout.count("\n") == 1, res
    assert "Traceback" not in res.stderr, res


# -- the fake IAM, recording what it issues ----------------------------------------

# An IAM error body that tries everything a hostile or broken IAM could: line breaks,
# a lone surrogate (as a JSON escape), Unicode line separators and a huge message.
HOSTILE_FAULT = "hostile_error"


class RecordingIAM(FakeIAM):
    """FakeIAM whose keys and issued tokens all go into LEDGER, plus a hostile error body."""

    def add_api_key(self, key: str | None = None, *, iam_id: str | None = None) -> str:
        return LEDGER.secret(super().add_api_key(key, iam_id=iam_id))

    def add_refresh_token(self, token: str | None = None, *, iam_id: str = "IBMid-fakeuser",
                          expires_in: float | None = None) -> str:
        return LEDGER.secret(super().add_refresh_token(token, iam_id=iam_id, expires_in=expires_in))

    def _new_refresh_token(self) -> str:
        return LEDGER.secret(super()._new_refresh_token())

    def _access_token(self, iam_id: str, sub_type: str, grant_type: str, client: str) -> tuple[str, int, int]:
        token, now, exp = super()._access_token(iam_id, sub_type, grant_type, client)
        LEDGER.secret(token)
        return token, now, exp

    def _deliver_with_fault(self, h: _Handler, answer: _Answer, fault: Any, entry: dict[str, Any]) -> None:
        if fault == HOSTILE_FAULT:
            echoed = ", ".join(sorted(self.api_keys))  # IAM echoing the key back: must be redacted
            message = ("refused\r\nInjected: line\u2028two\u2029three\ud800 key=" + echoed + " "
                       + "x" * 100_000)
            body = json.dumps({"errorCode": "BXNIM0415E\r\nX", "errorMessage": message}).encode()
            entry["status"] = 400
            h.deliver(_Answer(400, body))
            return
        super()._deliver_with_fault(h, answer, fault, entry)


class TLSRecordingIAM(RecordingIAM):
    """The recording fake IAM behind TLS with a certificate of our own making."""

    def __init__(self, cert: Path, key: Path, **kw: Any) -> None:
        super().__init__(**kw)
        self._context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self._context.load_cert_chain(str(cert), str(key))

    @property
    def url(self) -> str:
        return f"https://{self.host}:{self.port}"

    def _serve(self) -> None:
        if self._served is not None:
            return
        context = self._context

        class TLSServer(ThreadingHTTPServer):
            def get_request(self) -> tuple[Any, Any]:
                sock, addr = self.socket.accept()
                # The handshake happens in the handler thread, on first read.
                return context.wrap_socket(sock, server_side=True, do_handshake_on_connect=False), addr

            def handle_error(self, request: Any, client_address: Any) -> None:
                return  # a client refusing our certificate is the point of the test

        self._served = ServedHTTP(_Handler, self.host, self.port, "iam", self, "fake-iam-tls",
                                  server_class=TLSServer)
        self.port = self._served.port


def make_cert(directory: Path, *, ip: str | None = "127.0.0.1", dns: str = "localhost") -> tuple[Path, Path]:
    """A self-signed certificate (its own CA) for `ip`/`dns`; returns (cert.pem, key.pem)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"hardening test {dns}")])
    now = datetime.datetime.now(datetime.UTC)
    alt: list[x509.GeneralName] = [x509.DNSName(dns)]
    if ip:
        alt.append(x509.IPAddress(ipaddress.ip_address(ip)))
    ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
    cert = (
        x509.CertificateBuilder()
        .subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName(alt), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                     content_commitment=False, key_encipherment=False,
                                     data_encipherment=False, key_agreement=False,
                                     encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(ski, critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski), critical=False)
        .sign(key, hashes.SHA256())
    )
    directory.mkdir(parents=True, exist_ok=True)
    cert_path, key_path = directory / f"{dns}.crt", directory / f"{dns}.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path


# -- real filesystem conditions -------------------------------------------------------


def is_root() -> bool:
    return hasattr(os, "geteuid") and os.geteuid() == 0


_PROBES: dict[str, bool] = {}


def _probe(name: str, scratch: Path) -> bool:
    if name in _PROBES:
        return _PROBES[name]
    ok = False
    if name == "chattr" and shutil.which("chattr") and is_root():
        target = scratch / "chattr-probe"
        target.mkdir(exist_ok=True)
        ok = subprocess.run(["chattr", "+i", str(target)], capture_output=True, check=False).returncode == 0
        if ok:
            try:
                (target / "x").write_text("x")
                ok = False  # immutable did not stop root: not a real condition
            except OSError:
                pass
            subprocess.run(["chattr", "-i", str(target)], capture_output=True, check=False)
    elif name == "mount" and shutil.which("mount") and is_root():
        target = scratch / "mount-probe"
        target.mkdir(exist_ok=True)
        ok = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(target)],
                            capture_output=True, check=False).returncode == 0
        if ok:
            _umount(target)
    _PROBES[name] = ok
    return ok


def can_chattr(scratch: Path) -> bool:
    """`chattr +i` works here and really stops even root from creating files."""
    return _probe("chattr", scratch)


def can_mount(scratch: Path) -> bool:
    """`mount -t tmpfs` is permitted (root, and a mount namespace that allows it)."""
    return _probe("mount", scratch)


def _umount(path: Path) -> None:
    for args in (["umount", str(path)], ["umount", "-l", str(path)]):
        if subprocess.run(args, capture_output=True, check=False).returncode == 0:
            return
    raise RuntimeError(f"could not unmount {path}")


@contextlib.contextmanager
def tmpfs(path: Path, size: str, *, readonly: bool = False) -> Iterator[Path]:
    """A tmpfs of `size` mounted at `path` (created 0700), always unmounted afterwards."""
    path.mkdir(parents=True, exist_ok=True)
    opts = f"size={size},mode=0700" + (",ro" if readonly else "")
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", opts, "tmpfs", str(path)],
                          capture_output=True, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"mount tmpfs at {path} failed: {proc.stderr.decode(errors='replace')}")
    try:
        yield path
    finally:
        _umount(path)


@contextlib.contextmanager
def immutable(path: Path) -> Iterator[Path]:
    """`chattr +i` on `path` for the duration (stops root too), always undone afterwards."""
    subprocess.run(["chattr", "+i", str(path)], check=True, capture_output=True)
    try:
        yield path
    finally:
        subprocess.run(["chattr", "-i", str(path)], check=False, capture_output=True)


def fill_filesystem(directory: Path) -> int:
    """Write into `directory` until the filesystem says ENOSPC; returns the bytes written."""
    import errno

    written = 0
    with open(directory / "filler", "wb", buffering=0) as fh:
        chunk = b"\0" * 4096
        while True:
            try:
                n = fh.write(chunk)
            except OSError as exc:
                if exc.errno != errno.ENOSPC:
                    raise
                break
            written += n or 0
    # Small writes too, until not even one byte fits.
    with open(directory / "filler", "ab", buffering=0) as fh:
        while True:
            try:
                fh.write(b"\0")
            except OSError:
                break
    return written
