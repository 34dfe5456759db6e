"""Filesystem faults: read-only and full disks, kill -9 mid-write, loose permissions,
symlink tricks and corrupt files.

Real conditions are used wherever the machine allows them — `chattr +i` (which stops
root too), read-only and tiny tmpfs mounts (root only; always unmounted) — and each
test says which it used in LEDGER.notes (printed by the final scan). Where a real
condition is impossible the test says so: an ENOSPC simulated at the write call is
run in addition, in process, on every machine.
"""

from __future__ import annotations

import errno
import json
import os
import random
import signal
import stat
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from docker_credential_icr import fsutil
from docker_credential_icr.store import CredentialStore
from docker_credential_icr.tokens import Token, TokenCache
from tests.conftest import ROOT, Result
from tests.hardening._support import (
    LEDGER,
    HardHelper,
    RecordingIAM,
    can_chattr,
    can_mount,
    fill_filesystem,
    immutable,
    is_root,
    one_line_error,
    tmpfs,
)


def _note(key: str, text: str) -> None:
    LEDGER.notes.setdefault("filesystem", {})[key] = text


def bearer_env(iam: RecordingIAM, key: str) -> dict[str, str]:
    return {"IBMCLOUD_API_KEY": key, "DOCKER_CREDENTIAL_ICR_MODE": "bearer",
            "IBMCLOUD_IAM_API_ENDPOINT": iam.url, "DOCKER_CREDENTIAL_ICR_DEADLINE": "10"}


def tokens_dir(helper: HardHelper) -> Path:
    return helper.cache_dir / "tokens"


def cache_entries(helper: HardHelper) -> list[Path]:
    return sorted(tokens_dir(helper).glob("*.json"))


def leftovers(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.glob(".*.tmp")) if directory.is_dir() else []


def answers_with_fresh_token(res: Result, iam: RecordingIAM) -> None:
    assert res.returncode == 0, res
    got = json.loads(res.stdout)
    assert got["Username"] == "iambearer"
    assert iam.validate_access_token(got["Secret"]) is not None


# -- read-only cache --------------------------------------------------------------------

READONLY_KINDS = ["immutable directory (chattr +i)", "read-only tmpfs mount",
                  "cache parent is a regular file", "directory mode 0500 (non-root)"]


@pytest.fixture
def readonly_cache(request: pytest.FixtureRequest, hard: HardHelper,
                   tmp_path: Path) -> Iterator[dict[str, str]]:
    """Make the helper's token cache unwritable the way `request.param` says; yields extra env."""
    kind = request.param
    tokens = tokens_dir(hard)
    if kind.startswith("immutable"):
        if not can_chattr(tmp_path):
            pytest.skip("chattr +i is not available (or does not stop this user)")
        tokens.mkdir(parents=True, mode=0o700)
        with immutable(tokens):
            yield {}
    elif kind.startswith("read-only tmpfs"):
        if not can_mount(tmp_path):
            pytest.skip("mounting a tmpfs is not permitted here")
        with tmpfs(tokens, "64k", readonly=True):
            yield {}
    elif kind.startswith("cache parent"):
        blocker = tmp_path / "not-a-directory"
        blocker.write_text("a file where the cache directory should be\n")
        yield {"XDG_CACHE_HOME": str(blocker)}
    else:
        if is_root():
            pytest.skip("mode 0500 does not stop root (the chattr and mount variants cover root)")
        tokens.mkdir(parents=True, mode=0o700)
        os.chmod(tokens, 0o500)
        try:
            yield {}
        finally:
            os.chmod(tokens, 0o700)


@pytest.mark.parametrize("readonly_cache", READONLY_KINDS, indirect=True)
def test_readonly_cache_still_answers_without_caching(
        hard: HardHelper, riam: RecordingIAM, readonly_cache: dict[str, str],
        request: pytest.FixtureRequest) -> None:
    key = riam.add_api_key()
    env = {**bearer_env(riam, key), **readonly_cache}
    first = hard.get("us.icr.io", env=env)
    answers_with_fresh_token(first, riam)
    assert "cache" in first.stderr  # the user is told why every get asks IAM
    second = hard.get("us.icr.io", env=env)
    answers_with_fresh_token(second, riam)
    assert riam.count() == 2  # nothing was cached
    if tokens_dir(hard).is_dir():
        assert cache_entries(hard) == [] and leftovers(tokens_dir(hard)) == []
    kind = request.node.callspec.params["readonly_cache"]
    _note(f"read-only cache: {kind}", "answers (a warning on stderr), nothing cached, nothing left behind")
    LEDGER.bump("filesystem faults survived")


# -- full filesystem ----------------------------------------------------------------------


def test_full_filesystem_cache_still_answers(hard: HardHelper, riam: RecordingIAM, tmp_path: Path) -> None:
    if not can_mount(tmp_path):
        pytest.skip("mounting a tmpfs is not permitted here (test_enospc_simulated covers the logic)")
    key = riam.add_api_key()
    with tmpfs(hard.home / "cache", "256k") as cache_root:
        filled = fill_filesystem(cache_root)
        res = hard.get("us.icr.io", env=bearer_env(riam, key))
        answers_with_fresh_token(res, riam)
        assert "No space left on device" in res.stderr, res
        assert cache_entries(hard) == [] and leftovers(tokens_dir(hard)) == []
        answers_with_fresh_token(hard.get("us.icr.io", env=bearer_env(riam, key)), riam)
        assert riam.count() == 2
    _note("full filesystem (token cache)",
          f"real 256 KiB tmpfs filled with {filled} bytes: answers, warns, caches nothing, no temp files")
    LEDGER.bump("filesystem faults survived")


def test_full_filesystem_credentials_survive(hard: HardHelper, tmp_path: Path) -> None:
    if not can_mount(tmp_path):
        pytest.skip("mounting a tmpfs is not permitted here (test_enospc_simulated covers the logic)")
    old_key, new_key = LEDGER.new_secret("fs-old"), LEDGER.new_secret("fs-new") + "n" * 40_000
    LEDGER.secret(new_key)
    with tmpfs(hard.home / "data", "256k") as data_root:
        assert hard.store("us.icr.io", "iamapikey", old_key).returncode == 0
        before = hard.credentials_file.read_bytes()
        fill_filesystem(data_root)
        for res in (hard.store("uk.icr.io", "iamapikey", new_key), hard.erase("us.icr.io")):
            one_line_error(res)
            assert "No space left on device" in res.stdout, res
            assert hard.credentials_file.read_bytes() == before
            assert leftovers(hard.data_dir) == []
        got = hard.get("us.icr.io")
        assert got.returncode == 0 and json.loads(got.stdout)["Secret"] == old_key
        (data_root / "filler").unlink()
        assert hard.store("uk.icr.io", "iamapikey", new_key).returncode == 0
        assert json.loads(hard.run("list").stdout) == {"uk.icr.io": "iamapikey", "us.icr.io": "iamapikey"}
    _note("full filesystem (credentials)",
          "real 256 KiB tmpfs: store/erase fail with one line naming ENOSPC; old file intact; "
          "works again once space is freed")
    LEDGER.bump("filesystem faults survived")


def test_enospc_simulated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                          capsys: pytest.CaptureFixture[str]) -> None:
    """The same, in process, on any machine: os.write says ENOSPC for files under tmp_path."""
    real_write = os.write

    def full_write(fd: int, data: bytes) -> int:
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            target = ""
        if target.startswith(str(tmp_path)):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real_write(fd, data)

    store = CredentialStore(str(tmp_path / "data" / "credentials.json"))
    store.put("us.icr.io", "iamapikey", "simulated-old-key")
    before = Path(store.path).read_bytes()
    cache = TokenCache(str(tmp_path / "cache" / "tokens"))
    monkeypatch.setattr(fsutil.os, "write", full_write)
    with pytest.raises(OSError) as info:
        store.put("uk.icr.io", "iamapikey", "simulated-new-key")
    assert info.value.errno == errno.ENOSPC
    assert Path(store.path).read_bytes() == before
    assert leftovers(tmp_path / "data") == []
    cache.write("k" * 40, Token("access", "refresh", time.time() + 3600, 3600))  # must not raise
    assert "continuing without it" in capsys.readouterr().err
    assert list((tmp_path / "cache" / "tokens").iterdir()) == []
    _note("ENOSPC simulated in process",
          "os.write raising ENOSPC: store raises (old file intact, no temp file); cache write warns")
    LEDGER.bump("filesystem faults survived")


# -- kill -9 in the middle of a write -----------------------------------------------------

CHILD = textwrap.dedent("""
    import os, signal, sys
    from docker_credential_icr import fsutil
    from docker_credential_icr.store import CredentialStore
    from docker_credential_icr.tokens import Token, TokenCache

    stage, what, path = sys.argv[1], sys.argv[2], sys.argv[3]
    die = lambda *a, **k: os.kill(os.getpid(), signal.SIGKILL)
    real_write = os.write
    if stage == "mid-write":
        def half_then_die(fd, data):
            real_write(fd, bytes(data[: len(data) // 2]))
            die()
        fsutil.os.write = half_then_die
    elif stage == "before-fsync":
        fsutil.os.fsync = die
    elif stage == "before-rename":
        fsutil.os.replace = die
    if what == "credentials":
        CredentialStore(path).put("us.icr.io", "iamapikey", "new-" + "n" * 50000)
    else:
        TokenCache(os.path.dirname(path)).write(
            os.path.basename(path)[:-5], Token("new-" + "a" * 50000, None, 2e9, 3600))
    print("survived the kill?")
""")


@pytest.mark.parametrize("what", ["credentials", "token cache"])
@pytest.mark.parametrize("stage", ["mid-write", "before-fsync", "before-rename"])
def test_kill_during_atomic_write_keeps_the_old_file(tmp_path: Path, stage: str, what: str,
                                                      hard: HardHelper) -> None:
    if what == "credentials":
        target = hard.credentials_file
        CredentialStore(str(target)).put("us.icr.io", "iamapikey", "old-key-123456")
    else:
        target = tokens_dir(hard) / ("c" * 40 + ".json")
        TokenCache(str(target.parent)).write("c" * 40, Token("old-access-token", None, 2e9, 3600))
    before = target.read_bytes()
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    proc = subprocess.run([sys.executable, "-c", CHILD, stage, what, str(target)], env=env,
                          capture_output=True, timeout=60, check=False)
    assert proc.returncode == -signal.SIGKILL, proc
    assert target.read_bytes() == before
    json.loads(before)
    if what == "credentials":
        # The lock died with its holder: the next docker login is not stuck.
        new_key = LEDGER.new_secret("after-kill")
        assert hard.store("de.icr.io", "iamapikey", new_key).returncode == 0
        assert json.loads(hard.run("list").stdout) == {"de.icr.io": "iamapikey", "us.icr.io": "iamapikey"}
    litter = leftovers(target.parent)
    for name in litter:  # a killed writer leaves its temp file: private, like the real one
        assert stat.S_IMODE((target.parent / name).stat().st_mode) == 0o600
    LEDGER.notes.setdefault("kill -9 temp files left", {})[f"{what} {stage}"] = len(litter)
    LEDGER.bump("filesystem faults survived")


def test_kill_loop_on_real_store_processes(hard: HardHelper) -> None:
    """`store` of a ~50 kB secret, SIGKILLed at random moments: the file is always whole."""
    keep = LEDGER.new_secret("untouched")
    assert hard.store("de.icr.io", "iamapikey", keep).returncode == 0
    written = [LEDGER.new_secret("v0")]
    assert hard.store("us.icr.io", "iamapikey", written[0]).returncode == 0
    rng = random.Random(9)
    killed = completed = 0
    iterations = int(os.environ.get("HARDENING_KILL_LOOP", "25"))
    for i in range(iterations):
        value = LEDGER.secret(f"{LEDGER.new_secret(f'v{i + 1}')}-{'p' * 50_000}")
        written.append(value)
        payload = json.dumps({"ServerURL": "us.icr.io", "Username": "iamapikey", "Secret": value})
        running = hard.start("store", payload)
        time.sleep(rng.uniform(0.0, 0.06))
        res = running.kill()
        if res.returncode == -signal.SIGKILL:
            killed += 1
        else:
            assert res.returncode == 0, res
            completed += 1
        auths = json.loads(hard.credentials_file.read_text())["auths"]
        assert auths["de.icr.io"]["Secret"] == keep
        assert auths["us.icr.io"]["Secret"] in written
    litter = leftovers(hard.data_dir)
    LEDGER.notes.setdefault("filesystem", {})["kill -9 loop (real `store` processes)"] = (
        f"{iterations} runs: {killed} killed mid-flight, {completed} finished; file always parsed, "
        f"untouched entry intact; {len(litter)} temp files left by killed writers")
    LEDGER.bump("filesystem faults survived")


# -- permissions ----------------------------------------------------------------------------


@pytest.mark.parametrize("action", ["get", "list", "store", "erase"])
def test_loose_credentials_permissions_are_fixed_and_reported(hard: HardHelper, action: str) -> None:
    key = LEDGER.new_secret("perm")
    assert hard.store("us.icr.io", "iamapikey", key).returncode == 0
    os.chmod(hard.credentials_file, 0o644)
    os.chmod(hard.data_dir, 0o755)
    if action == "store":
        res = hard.store("uk.icr.io", "iamapikey", LEDGER.new_secret("perm2"))
    elif action == "erase":
        res = hard.erase("uk.icr.io")
    else:
        res = hard.run(action, stdin="us.icr.io")
    assert res.returncode == 0, res
    assert "mode is now 600" in res.stderr and str(hard.credentials_file) in res.stderr
    assert stat.S_IMODE(hard.credentials_file.stat().st_mode) == 0o600
    if action == "store":
        assert stat.S_IMODE(hard.data_dir.stat().st_mode) == 0o700
    LEDGER.bump("filesystem faults survived")


def test_unreadable_credentials_file_is_a_clear_error(hard: HardHelper) -> None:
    if is_root():
        pytest.skip("root reads a mode-000 file anyway")
    assert hard.store("us.icr.io", "iamapikey", LEDGER.new_secret("unreadable")).returncode == 0
    os.chmod(hard.credentials_file, 0)
    try:
        res = hard.get("us.icr.io")
        one_line_error(res)
        assert "Permission denied" in res.stdout and str(hard.credentials_file) in res.stdout
    finally:
        os.chmod(hard.credentials_file, 0o600)


# -- symlinks -------------------------------------------------------------------------------


def _victim(tmp_path: Path, text: str = "the user's own file\n") -> Path:
    victim = tmp_path / "elsewhere" / "victim.txt"
    victim.parent.mkdir(exist_ok=True)
    victim.write_text(text)
    return victim


def test_symlinked_token_cache_entry_is_replaced_not_written_through(
        hard: HardHelper, riam: RecordingIAM, tmp_path: Path) -> None:
    key = riam.add_api_key()
    env = bearer_env(riam, key)
    answers_with_fresh_token(hard.get("us.icr.io", env=env), riam)
    [entry] = cache_entries(hard)
    victim = _victim(tmp_path)
    entry.unlink()
    entry.symlink_to(victim)
    answers_with_fresh_token(hard.get("us.icr.io", env=env), riam)  # the victim is no token
    assert victim.read_text() == "the user's own file\n"
    assert not entry.is_symlink() and stat.S_IMODE(entry.stat().st_mode) == 0o600
    LEDGER.bump("filesystem faults survived")


def test_symlinked_credentials_file_is_read_but_never_written_through(
        hard: HardHelper, tmp_path: Path) -> None:
    old = LEDGER.new_secret("dotfiles")
    victim = tmp_path / "dotfiles" / "credentials.json"
    victim.parent.mkdir()
    doc = {"version": 1, "auths": {"us.icr.io": {"Username": "iamapikey", "Secret": old}}}
    victim.write_text(json.dumps(doc))
    os.chmod(victim, 0o600)
    hard.data_dir.mkdir(parents=True, mode=0o700)
    hard.credentials_file.symlink_to(victim)
    got = hard.get("us.icr.io")
    assert got.returncode == 0 and json.loads(got.stdout)["Secret"] == old
    assert hard.store("uk.icr.io", "iamapikey", LEDGER.new_secret("new")).returncode == 0
    assert json.loads(victim.read_text()) == doc  # the link's target is untouched…
    assert not hard.credentials_file.is_symlink()  # …the link was replaced by our own file
    assert json.loads(hard.run("list").stdout) == {"uk.icr.io": "iamapikey", "us.icr.io": "iamapikey"}
    LEDGER.bump("filesystem faults survived")


def test_symlinked_cache_directory_is_followed_as_the_users_choice(
        hard: HardHelper, riam: RecordingIAM, tmp_path: Path) -> None:
    """A symlinked ~/.cache (to a bigger disk, say) is a user's choice and keeps working."""
    target = tmp_path / "bigdisk" / "tokens"
    target.mkdir(parents=True, mode=0o755)
    hard.cache_dir.mkdir(parents=True)
    tokens_dir(hard).symlink_to(target)
    key = riam.add_api_key()
    answers_with_fresh_token(hard.get("us.icr.io", env=bearer_env(riam, key)), riam)
    answers_with_fresh_token(hard.get("us.icr.io", env=bearer_env(riam, key)), riam)
    assert riam.count() == 1  # cached through the link
    assert stat.S_IMODE(target.stat().st_mode) == 0o700
    assert len(list(target.glob("*.json"))) == 1
    LEDGER.bump("filesystem faults survived")


@pytest.mark.parametrize("which", ["credentials lock", "token cache lock"])
def test_dangling_lock_symlink_creates_nothing_elsewhere(
        hard: HardHelper, riam: RecordingIAM, tmp_path: Path, which: str) -> None:
    victim = tmp_path / "elsewhere" / "created-by-the-helper"
    victim.parent.mkdir()
    key = riam.add_api_key()
    env = bearer_env(riam, key)
    if which == "credentials lock":
        assert hard.store("us.icr.io", "iamapikey", LEDGER.new_secret("lock")).returncode == 0
        lock = hard.data_dir / "credentials.lock"
        lock.unlink()
        lock.symlink_to(victim)
        res = hard.store("uk.icr.io", "iamapikey", LEDGER.new_secret("lock2"))
        if res.returncode != 0:
            one_line_error(res)
            assert str(lock) in res.stdout
    else:
        answers_with_fresh_token(hard.get("us.icr.io", env=env), riam)
        [entry] = cache_entries(hard)
        lock = entry.with_name(entry.name + ".lock")
        lock.unlink()
        lock.symlink_to(victim)
        entry.unlink()  # force a refresh, which takes the lock
        answers_with_fresh_token(hard.get("us.icr.io", env=env), riam)
    assert not victim.exists(), "the helper created a file through a symlink"
    LEDGER.bump("filesystem faults survived")


def test_precreated_temp_name_symlink_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Temp names are pid + 4 random bytes, opened O_EXCL: even a correctly guessed name
    that is a symlink is refused, not followed."""
    target = tmp_path / "credentials.json"
    target.write_text("{}")
    victim = _victim(tmp_path)
    monkeypatch.setattr(fsutil.os, "urandom", lambda n: b"\x00" * n)
    guessed = tmp_path / f".credentials.json.{os.getpid()}.{'00' * 4}.tmp"
    guessed.symlink_to(victim)
    with pytest.raises(FileExistsError):
        fsutil.atomic_write(str(target), b'{"new": true}')
    assert victim.read_text() == "the user's own file\n" and target.read_text() == "{}"
    LEDGER.bump("filesystem faults survived")


# -- corrupt files --------------------------------------------------------------------------

CORRUPT_EXAMPLES = [b"", b"\x00" * 10, b"[" * 100_000 + b"]" * 100_000, b'{"version": 1, "auths": []}',
                    b'{"version": 1, "auths": {"us.icr.io": {"Username": 1}}}', b"\xef\xbb\xbf{}",
                    b'{"version": 1, "auths": {"us.icr.io": {"Username": "iamapikey", "Secret": "k"}}',
                    b"NaN", b"1e999999", b'"' + b"\\u" * 10 + b'"']


@settings(max_examples=40, deadline=None, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(st.one_of(st.binary(max_size=200), st.sampled_from(CORRUPT_EXAMPLES)))
@example(b"[" * 100_000 + b"]" * 100_000)
def test_corrupt_credentials_file_is_named_never_overwritten(hard: HardHelper, content: bytes) -> None:
    LEDGER.bump("inputs tried: corrupt credentials.json (subprocess)")
    hard.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    hard.credentials_file.write_bytes(content)
    os.chmod(hard.credentials_file, 0o600)
    res = hard.get("us.icr.io", env={"IBMCLOUD_API_KEY": LEDGER.new_secret("corrupt-env")})
    one_line_error(res)
    assert "corrupt" in res.stdout and str(hard.credentials_file) in res.stdout, res
    res = hard.store("uk.icr.io", "iamapikey", "k-corrupt-1234")
    one_line_error(res)
    assert hard.credentials_file.read_bytes() == content


@pytest.mark.parametrize("content", [
    *CORRUPT_EXAMPLES[:4],
    b'{"access_token": 5, "expiration": 2e9, "expires_in": 3600}',
    b'{"access_token": "x", "expiration": "soon", "expires_in": 3600}',
    b'{"access_token": "x", "refresh_token": ["y"], "expiration": 2e9, "expires_in": 3600}',
], ids=["empty", "nul", "deep-nesting", "wrong-shape", "number-token", "string-expiry", "list-refresh"])
def test_corrupt_token_cache_entry_is_rebuilt(hard: HardHelper, riam: RecordingIAM, content: bytes) -> None:
    key = riam.add_api_key()
    env = bearer_env(riam, key)
    answers_with_fresh_token(hard.get("us.icr.io", env=env), riam)
    [entry] = cache_entries(hard)
    entry.write_bytes(content)
    answers_with_fresh_token(hard.get("us.icr.io", env=env), riam)
    assert riam.count() == 2
    json.loads(entry.read_text())  # rebuilt
    LEDGER.bump("filesystem faults survived")
