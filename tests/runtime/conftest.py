"""``ata up`` as a user runs it, for the end-to-end tests (``test_make_run``, ``test_parity``).

The ``ata_up`` fixture starts ``python -m ata.runtime.cli up [args]`` in a subprocess with an
empty state directory (plus the given ``ATA_*`` settings; no ``ATA_*`` or ``APCA_*`` variable is
inherited, so Alpaca keys in the developer's shell never switch a test run to Alpaca) and yields an
:class:`UpRun` that observes it from outside: the infrastructure file, the supervisor's children,
the services' READY heartbeats. A run the test did not stop is stopped on teardown (SIGINT, then
SIGKILL of its process group).
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import psutil
import pytest

from ata.events import HeartbeatEmitted, ServiceStatus
from ata.runtime.testing import read_messages

T = TypeVar("T")


def text_of(path: Path) -> str:
    return path.read_text(errors="replace") if path.exists() else ""


@dataclass
class UpRun:
    proc: subprocess.Popen[bytes]
    state: Path
    log: Path

    START_TIMEOUT_S = 300.0  # eight Python services importing numpy/pandas/scipy on a small, busy machine
    STEP_TIMEOUT_S = 120.0
    STOP_TIMEOUT_S = 60.0

    @property
    def service_logs(self) -> Path:
        return self.state / "logs" / "services"

    def output_tail(self) -> str:
        """The end of ``ata up``'s output and of every service's log (for failure messages)."""
        tails = "".join(f"\n--- {p.name}:\n{text_of(p)[-1500:]}" for p in sorted(self.service_logs.glob("*.log")))
        return f"ata up output ends with:\n{text_of(self.log)[-3000:]}{tails}"

    async def eventually(self, probe: Callable[[], Awaitable[T | None]], timeout_s: float, what: str) -> T:
        """Poll ``probe`` every second until it returns something; fail after ``timeout_s``."""
        deadline = time.monotonic() + timeout_s
        while True:
            found = await probe()
            if found is not None:
                return found
            if time.monotonic() > deadline:
                pytest.fail(f"timed out waiting for {what}; {self.output_tail()}")
            await asyncio.sleep(1.0)

    async def infra(self) -> dict[str, object]:
        async def written() -> dict[str, object] | None:
            try:
                return json.loads(text_of(self.state / "infra.json") or "null")  # type: ignore[no-any-return]
            except json.JSONDecodeError:
                return None  # being written

        return await self.eventually(written, self.STEP_TIMEOUT_S, "the embedded infrastructure")

    def service_pids(self) -> dict[str, int]:
        """Service name -> pid of the supervisor's children running ``ata.runtime.cli run <name>``."""
        found: dict[str, int] = {}
        for child in psutil.Process(self.proc.pid).children():
            try:
                argv = child.cmdline()
            except psutil.Error:
                continue
            if argv[-2:-1] == ["run"]:
                found[argv[-1]] = child.pid
        return found

    async def ready_pids(self, bootstrap: str, names: Sequence[str]) -> dict[str, int] | None:
        """Every service's current pid, once each of ``names`` has a READY heartbeat from that pid."""
        pids = self.service_pids()
        if set(pids) != set(names):
            return None
        ready = {(m.service, m.instance.rsplit("-", 1)[-1]) for m in await read_messages(bootstrap, "system.heartbeats.v1")
                 if isinstance(m, HeartbeatEmitted) and m.status is ServiceStatus.READY}
        return pids if all((name, str(pid)) in ready for name, pid in pids.items()) else None

    def interrupt(self) -> int:
        """Ctrl-C: SIGINT and wait for the exit code."""
        self.proc.send_signal(signal.SIGINT)
        return self.proc.wait(self.STOP_TIMEOUT_S)


@pytest.fixture
def ata_up(tmp_path: Path) -> Iterator[Callable[[Sequence[str], Mapping[str, str]], UpRun]]:
    """``start(args, settings)`` runs ``ata up *args`` with ``ATA_*`` ``settings`` (see the module docstring)."""
    runs: list[UpRun] = []

    def start(args: Sequence[str] = (), settings: Mapping[str, str] | None = None) -> UpRun:
        state, log = tmp_path / "state", tmp_path / "ata-up.out"
        env = {k: v for k, v in os.environ.items() if not k.startswith(("ATA_", "APCA_"))}
        env |= {"ATA_STATE_DIR": str(state), "ATA_SERVICE_HEARTBEAT_INTERVAL_MS": "1000", "COLUMNS": "160", **(settings or {})}
        with log.open("wb") as out:
            proc = subprocess.Popen([sys.executable, "-m", "ata.runtime.cli", "up", *args], env=env, stdin=subprocess.DEVNULL,
                                    stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        runs.append(UpRun(proc, state, log))
        return runs[-1]

    try:
        yield start
    finally:
        for run in runs:
            if run.proc.poll() is None:  # the test failed midway: stop it the way a user would, then make sure
                try:
                    run.interrupt()
                except subprocess.TimeoutExpired:
                    os.killpg(run.proc.pid, signal.SIGKILL)
                    run.proc.wait(UpRun.STOP_TIMEOUT_S)
