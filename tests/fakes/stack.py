"""The whole fake ICR side in one context manager: IAM, token service, registry (and dockerd).

    with IcrStack(api_keys=["KEY"]) as stack:
        stack.iam.url             # IBMCLOUD_IAM_API_ENDPOINT for the helper
        stack.host                # "127.0.0.1:PORT", the registry (add it to the helper's ICR hosts)
        stack.token_service.log   # which username kinds the registry saw
        stack.dockerd             # a Dockerd when with_dockerd=True, else None

Everything is stopped on exit, in reverse order, even if starting failed halfway.
`python -m tests.fakes.stack --api-key KEY --ready-file F` runs it as a process for demos.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import sys
import threading
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from tests.fakes._util import write_atomically
from tests.fakes.dockerd import Dockerd
from tests.fakes.fake_iam import FakeIAM
from tests.fakes.icr_token_service import IcrTokenService
from tests.fakes.registry import Registry


class IcrStack:
    """FakeIAM + IcrTokenService + Registry (+ Dockerd), started and stopped together."""

    def __init__(
        self,
        *,
        api_keys: Iterable[str] = (),
        with_dockerd: bool = False,
        lifetime: int = 3600,
        issue_refresh_tokens: bool = False,
        token_log_file: str | os.PathLike[str] | None = None,
        service: str = "registry",
    ) -> None:
        self.iam = FakeIAM(lifetime=lifetime)
        for key in api_keys:
            self.iam.add_api_key(key)
        self.token_service: IcrTokenService | None = None
        self.registry: Registry | None = None
        self.dockerd: Dockerd | None = None
        self._with_dockerd = with_dockerd
        self._token_kwargs: dict[str, Any] = {
            "service": service,
            "issue_refresh_tokens": issue_refresh_tokens,
            "log_file": token_log_file,
        }
        self._exit = contextlib.ExitStack()

    @property
    def host(self) -> str:
        assert self.registry is not None, "stack not started"
        return self.registry.host

    def start(self) -> IcrStack:
        try:
            self._exit.enter_context(self.iam)
            self.token_service = self._exit.enter_context(IcrTokenService(self.iam.url, **self._token_kwargs))
            self.registry = self._exit.enter_context(Registry.for_token_service(self.token_service))
            if self._with_dockerd:
                self.dockerd = self._exit.enter_context(Dockerd())
        except BaseException:
            self._exit.close()
            raise
        return self

    def stop(self) -> None:
        self._exit.close()

    def __enter__(self) -> IcrStack:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def info(self) -> dict[str, Any]:
        """Handles as JSON-able data (for the process mode's ready file)."""
        assert self.token_service is not None and self.registry is not None, "stack not started"
        return {
            "iam_url": self.iam.url,
            "token_realm": self.token_service.realm,
            "registry_host": self.registry.host,
            "registry_pid": self.registry.pid,
            "dockerd_host": self.dockerd.host if self.dockerd else None,
            "dockerd_pid": self.dockerd.pid if self.dockerd else None,
        }


def main(argv: list[str] | None = None) -> int:
    """Run the stack until SIGTERM/SIGINT; print (and write to --ready-file) its handles as JSON."""
    parser = argparse.ArgumentParser(prog="python -m tests.fakes.stack")
    parser.add_argument("--api-key", action="append", default=[], help="a valid API key (repeatable)")
    parser.add_argument("--dockerd", action="store_true", help="also start a private dockerd")
    parser.add_argument("--lifetime", type=int, default=3600, help="IAM access token lifetime, seconds")
    parser.add_argument("--issue-refresh-tokens", action="store_true")
    parser.add_argument("--token-log", help="JSON lines: what the token service saw (never secrets)")
    parser.add_argument("--ready-file")
    args = parser.parse_args(argv)

    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    signal.signal(signal.SIGINT, lambda *_: done.set())
    stack = IcrStack(
        api_keys=args.api_key,
        with_dockerd=args.dockerd,
        lifetime=args.lifetime,
        issue_refresh_tokens=args.issue_refresh_tokens,
        token_log_file=Path(args.token_log) if args.token_log else None,
    )
    with stack:
        info = json.dumps(stack.info())
        print(info, flush=True)
        if args.ready_file:
            write_atomically(args.ready_file, info + "\n")
        while not done.wait(0.5):
            pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
