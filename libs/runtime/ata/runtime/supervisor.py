"""Process supervisor for ``make run`` / ``ata up``: one child process per service.

Contract:
- every child runs in its own session (process group), so a terminal's Ctrl-C reaches the
  supervisor only and the supervisor decides how children stop;
- a child that exits while the supervisor is running is restarted after a
  :class:`~ata.runtime.resilience.Backoff` delay that grows with consecutive crashes; a
  child that stayed up for ``stable_after_s`` has its crash count reset;
- :meth:`Supervisor.stop` sends SIGTERM to every child's process group, waits up to
  ``stop_grace_s`` (10 s, the services' own drain budget) and then SIGKILLs what is left;
  it returns only when every child has been reaped;
- a child that exits with :data:`CONFIG_ERROR_EXIT` (a service refusing its configuration) is
  not restarted, since a restart cannot fix it: it stays ``failed`` and :meth:`Supervisor.failed`
  names it; :func:`run_until_signalled` then returns, as on a signal;
- each child gets ``ATA_HTTP_PORT`` (a free port unless the spec fixes one); the supervisor
  polls ``/readyz`` there and shows the result in its status table.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import signal
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path

import aiohttp
from rich.table import Table

from ata.runtime.infra import free_port
from ata.runtime.resilience import Backoff, Clock

STOP_GRACE_S = 10.0
DEFAULT_BACKOFF = Backoff(initial_s=0.5, multiplier=2.0, cap_s=30.0, max_attempts=None)
READY_POLL_S = 1.0
READY_TIMEOUT_S = 1.0
#: The exit code of a service that refused its configuration (:func:`ata.runtime.service.run_service`).
CONFIG_ERROR_EXIT = 2


class ChildState(StrEnum):
    STARTING = "starting"
    RUNNING = "running"
    BACKOFF = "backoff"
    STOPPING = "stopping"
    STOPPED = "stopped"
    FAILED = "failed"  # exited with CONFIG_ERROR_EXIT: not restarted


@dataclass(frozen=True)
class ChildSpec:
    """How to run one child. ``http_port`` None: a free port is picked at each start.

    ``env`` may carry secrets (broker keys), so it is left out of the ``repr``.
    """

    name: str
    argv: tuple[str, ...]
    env: Mapping[str, str] = field(default_factory=dict, repr=False)
    http_port: int | None = None


@dataclass
class ChildStatus:
    """What the status table shows for one child; ``restart_delays_s`` lists every planned wait."""

    name: str
    state: ChildState = ChildState.STARTING
    pid: int | None = None
    http_port: int | None = None
    restarts: int = 0
    started_at: float | None = None
    last_exit_code: int | None = None
    ready: str = "-"
    restart_delays_s: list[float] = field(default_factory=list)

    def uptime_s(self, now: float) -> float | None:
        if self.state is not ChildState.RUNNING or self.started_at is None:
            return None
        return now - self.started_at


class Supervisor:
    """Runs, restarts and stops a set of child processes (see the module docstring)."""

    def __init__(
        self,
        specs: Sequence[ChildSpec],
        *,
        backoff: Backoff = DEFAULT_BACKOFF,
        rng: random.Random | None = None,
        clock: Clock = time.monotonic,
        stop_grace_s: float = STOP_GRACE_S,
        stable_after_s: float = 60.0,
        log_dir: Path | None = None,
        probe_readiness: bool = True,
    ) -> None:
        names = [spec.name for spec in specs]
        if len(set(names)) != len(names):
            raise ValueError(f"duplicate child names in {names}")
        self._specs = list(specs)
        self._backoff = backoff
        self._rng = rng or random.Random()
        self._clock = clock
        self._stop_grace_s = stop_grace_s
        self._stable_after_s = stable_after_s
        self._log_dir = log_dir
        self._probe = probe_readiness
        self._status = {spec.name: ChildStatus(spec.name) for spec in specs}
        self._procs: dict[str, asyncio.subprocess.Process] = {}
        self._stopping = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []

    # -- lifecycle -----------------------------------------------------------------------------
    def start(self) -> None:
        """Start every child (call from a running event loop)."""
        if self._tasks:
            raise RuntimeError("supervisor already started")
        self._tasks = [asyncio.create_task(self._keep_running(spec), name=f"supervise-{spec.name}") for spec in self._specs]
        if self._probe:
            self._tasks.append(asyncio.create_task(self._poll_readiness(), name="supervise-readiness"))

    async def stop(self) -> None:
        """Stop all children: SIGTERM, ``stop_grace_s`` to exit, then SIGKILL; reap every one."""
        self._stopping.set()
        for name, proc in list(self._procs.items()):
            self._status[name].state = ChildState.STOPPING
            _signal_group(proc, signal.SIGTERM)
        # Each child's task returns once its process is gone (a child spawned concurrently is
        # signalled by its own task), so waiting for the tasks is waiting for the children.
        pending: set[asyncio.Task[None]] = set(self._tasks)
        if pending:
            _, pending = await asyncio.wait(pending, timeout=self._stop_grace_s)
        if pending:
            for proc in list(self._procs.values()):
                _signal_group(proc, signal.SIGKILL)
            await asyncio.wait(pending, timeout=self._stop_grace_s)
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        for status in self._status.values():
            status.pid, status.ready = None, "-"
            if status.state is not ChildState.FAILED:
                status.state = ChildState.STOPPED

    def snapshot(self) -> list[ChildStatus]:
        return [self._status[spec.name] for spec in self._specs]

    def failed(self) -> list[str]:
        """Names of the children that refused their configuration (not restarted)."""
        return [spec.name for spec in self._specs if self._status[spec.name].state is ChildState.FAILED]

    def pids(self) -> list[int]:
        """Pids of the children running right now."""
        return [proc.pid for proc in self._procs.values() if proc.returncode is None]

    # -- per child -----------------------------------------------------------------------------
    async def _keep_running(self, spec: ChildSpec) -> None:
        status = self._status[spec.name]
        crashes = 0
        while not self._stopping.is_set():
            status.state, status.ready = ChildState.STARTING, "-"
            started = self._clock()
            try:
                proc = await self._spawn(spec, status)
            except OSError:
                status.last_exit_code = 127  # could not execute, as a shell reports it
            else:
                status.state = ChildState.RUNNING
                if self._stopping.is_set():
                    _signal_group(proc, signal.SIGTERM)
                status.last_exit_code = await proc.wait()
                _signal_group(proc, signal.SIGKILL)  # whatever the child left in its group
                self._procs.pop(spec.name, None)
                status.pid = None
            if self._stopping.is_set():
                return
            if status.last_exit_code == CONFIG_ERROR_EXIT:
                status.state = ChildState.FAILED
                return
            if self._clock() - started >= self._stable_after_s:
                crashes = 0
            delay = self._backoff.delay(crashes, self._rng)
            crashes += 1
            status.state = ChildState.BACKOFF
            status.restart_delays_s.append(delay)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), delay)
            if not self._stopping.is_set():
                status.restarts += 1

    async def _spawn(self, spec: ChildSpec, status: ChildStatus) -> asyncio.subprocess.Process:
        port = spec.http_port or free_port()
        env = {**os.environ, **spec.env, "ATA_HTTP_PORT": str(port)}
        log_path = Path(os.devnull) if self._log_dir is None else self._log_dir / f"{spec.name}.log"
        if self._log_dir is not None:
            self._log_dir.mkdir(parents=True, exist_ok=True)
        # The child inherits the descriptor; ours is closed as soon as the child exists.
        with log_path.open("ab") as log:
            proc = await asyncio.create_subprocess_exec(
                *spec.argv, env=env, stdin=asyncio.subprocess.DEVNULL, stdout=log, stderr=asyncio.subprocess.STDOUT,
                start_new_session=True,
            )
        self._procs[spec.name] = proc
        status.pid, status.http_port, status.started_at = proc.pid, port, self._clock()
        return proc

    async def _poll_readiness(self) -> None:
        timeout = aiohttp.ClientTimeout(total=READY_TIMEOUT_S)
        async with aiohttp.ClientSession(timeout=timeout) as session:
            while not self._stopping.is_set():
                await asyncio.gather(*(self._probe_one(session, s) for s in self._status.values()
                                       if s.state is ChildState.RUNNING and s.http_port))
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stopping.wait(), READY_POLL_S)

    @staticmethod
    async def _probe_one(session: aiohttp.ClientSession, status: ChildStatus) -> None:
        try:
            async with session.get(f"http://127.0.0.1:{status.http_port}/readyz") as response:
                status.ready = "ready" if response.status == 200 else f"not ready ({response.status})"
        except (aiohttp.ClientError, TimeoutError):
            status.ready = "no http"


def _signal_group(proc: asyncio.subprocess.Process, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, sig)


def _format_uptime(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}"


def status_table(statuses: Sequence[ChildStatus], now: float, title: str = "services") -> Table:
    """The live status table: service, pid, state, restarts, uptime, /readyz, last exit code."""
    table = Table(title=title)
    for column in ("service", "pid", "state", "restarts", "uptime", "ready", "http", "last exit"):
        table.add_column(column)
    for s in statuses:
        table.add_row(s.name, str(s.pid or "-"), s.state.value, str(s.restarts), _format_uptime(s.uptime_s(now)),
                      s.ready, str(s.http_port or "-"), "-" if s.last_exit_code is None else str(s.last_exit_code))
    if not statuses:
        table.add_row("(no services installed)", "", "", "", "", "", "", "")
    return table


async def run_until_signalled(supervisor: Supervisor, on_tick: Callable[[], None], tick_s: float = 0.5) -> None:
    """Start ``supervisor``, call ``on_tick`` periodically until SIGINT/SIGTERM or a child failed, then stop it."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        supervisor.start()
        while not stop.is_set() and not supervisor.failed():
            on_tick()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), tick_s)
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
        await supervisor.stop()
        on_tick()
