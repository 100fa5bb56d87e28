"""``ata up`` as a user runs it, for the end-to-end tests (``test_make_run*``, ``test_parity``).

The ``ata_up`` fixture starts ``python -m ata.runtime.cli up [args]`` in a subprocess, the
``make_run`` fixture ``make run`` itself (the Makefile's target, in the repository root). Either
runs with an empty state directory and no ``ATA_*`` or ``APCA_*`` variable inherited (so Alpaca keys
in the developer's shell never switch a test run to Alpaca); ``ata_up`` adds the given ``ATA_*``
settings and one-second heartbeats, ``make_run`` nothing else. Both yield an :class:`UpRun` that
observes the run from outside: the infrastructure file, the supervisor's children, the services'
READY heartbeats. A run the test did not stop is stopped on teardown (SIGINT, then SIGKILL of its
process group).
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

ROOT = Path(__file__).resolve().parents[2]
#: ``make run`` with the install stamp taken as up to date (``-o``): the venv running the tests is the
#: installed one, and a stamp older than a since-edited ``pyproject.toml`` must not make the test re-run
#: pip into the venv the rest of the suite is using (``make install`` is what ``make test`` and
#: ``make lint`` run first).
MAKE_RUN = ("make", "-C", str(ROOT), "-o", ".venv/.installed", "run")


def text_of(path: Path) -> str:
    return path.read_text(errors="replace") if path.exists() else ""


@dataclass
class UpRun:
    """``proc`` is ``ata up`` itself or, with ``through_make``, the ``make run`` whose one child is ``ata up``."""

    proc: subprocess.Popen[bytes]
    state: Path
    log: Path
    through_make: bool = False

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

    def supervisor(self) -> psutil.Process | None:
        """The ``ata up`` process (None while ``make`` has not started it yet, or once it is gone)."""
        try:
            top = psutil.Process(self.proc.pid)
            if not self.through_make:
                return top
            children = top.children()
        except psutil.NoSuchProcess:
            return None
        assert len(children) <= 1, f"make run started more than ata up: {children}"
        return children[0] if children else None

    def service_pids(self) -> dict[str, int]:
        """Service name -> pid of the supervisor's children running ``ata.runtime.cli run <name>``."""
        found: dict[str, int] = {}
        supervisor = self.supervisor()
        for child in supervisor.children() if supervisor is not None else ():
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

    def processes(self, infra: Mapping[str, object]) -> set[int]:
        """Every process of the run by now: the launched process's descendants, the embedded broker and Redis."""
        pids = {p.pid for p in psutil.Process(self.proc.pid).children(recursive=True)}
        return pids | {int(str(infra["broker_pid"])), int(str(infra["redis_pid"]))}

    @staticmethod
    def running(pids: set[int]) -> list[int]:
        """Those of ``pids`` still running (zombies do not count)."""
        def alive(pid: int) -> bool:
            try:
                return bool(psutil.Process(pid).status() != psutil.STATUS_ZOMBIE)
            except psutil.NoSuchProcess:
                return False

        return sorted(pid for pid in pids if alive(pid))

    def interrupt(self) -> int:
        """Ctrl-C: SIGINT to ``ata up`` and wait for the exit code (under ``make``, make passes ``ata up``'s on).

        Only ``ata up`` is signalled: a terminal's Ctrl-C reaches ``make`` as well, and an interrupted
        ``make`` always ends by SIGINT once its child is done, whatever the child's exit code. The
        services and the infrastructure run in sessions of their own, so in a terminal they do not
        get the SIGINT either: ``ata up`` stops them.
        """
        supervisor = self.supervisor()
        if supervisor is not None:
            supervisor.send_signal(signal.SIGINT)
        else:  # make has not started ata up yet: Ctrl-C as a terminal sends it, to make's whole group
            os.killpg(self.proc.pid, signal.SIGINT)
        return self.proc.wait(self.STOP_TIMEOUT_S)


@pytest.fixture
def launch_up(tmp_path: Path) -> Iterator[Callable[[Sequence[str], Mapping[str, str], bool], UpRun]]:
    """``launch(command, settings, through_make)`` starts one run (see the module docstring); stops it on teardown."""
    runs: list[UpRun] = []

    def launch(command: Sequence[str], settings: Mapping[str, str], through_make: bool) -> UpRun:
        state, log = tmp_path / "state", tmp_path / "ata-up.out"
        env = {k: v for k, v in os.environ.items() if not k.startswith(("ATA_", "APCA_"))}
        # COLUMNS: rich wraps the output at the console width, and the tests look for whole lines in it.
        env |= {"ATA_STATE_DIR": str(state), "COLUMNS": "160", **settings}
        with log.open("wb") as out:
            proc = subprocess.Popen(command, env=env, stdin=subprocess.DEVNULL,
                                    stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        runs.append(UpRun(proc, state, log, through_make))
        return runs[-1]

    try:
        yield launch
    finally:
        for run in runs:
            if run.proc.poll() is None:  # the test failed midway: stop it the way a user would, then make sure
                try:
                    run.interrupt()
                except subprocess.TimeoutExpired:
                    os.killpg(run.proc.pid, signal.SIGKILL)
                    run.proc.wait(UpRun.STOP_TIMEOUT_S)


@pytest.fixture
def ata_up(launch_up: Callable[[Sequence[str], Mapping[str, str], bool], UpRun]) -> Callable[..., UpRun]:
    """``start(args, settings)`` runs ``ata up *args`` with ``ATA_*`` ``settings`` (see the module docstring)."""

    def start(args: Sequence[str] = (), settings: Mapping[str, str] | None = None) -> UpRun:
        command = [sys.executable, "-m", "ata.runtime.cli", "up", *args]
        return launch_up(command, {"ATA_SERVICE_HEARTBEAT_INTERVAL_MS": "1000", **(settings or {})}, False)

    return start


@pytest.fixture
def make_run(launch_up: Callable[[Sequence[str], Mapping[str, str], bool], UpRun]) -> Callable[[], UpRun]:
    """``start()`` runs ``make run`` in the repository root, with nothing but a state directory of its own."""
    return lambda: launch_up(MAKE_RUN, {}, True)
