"""``make run`` end to end: ``ata up`` from an empty state directory to a first paper fill.

One run of ``ata up`` (its defaults: synthetic multi-symbol replay, the simulated broker on market
time) in a subprocess, observed from outside as a user would: every service reports ready (its
heartbeats), a first ``FillReported`` appears; kill -9 of strategy is followed by a restart that
becomes ready again; the order ledger has no duplicate order and every order command is answered;
SIGINT stops everything with exit code 0 and leaves no process behind.
"""

from __future__ import annotations

import asyncio
import collections
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import TypeVar

import psutil
import pytest

from ata.events import FillReported, HeartbeatEmitted, OrderAccepted, OrderRejected, OrderSubmitted, ServiceStatus, SubmitOrder
from ata.runtime.cli import installed_services
from ata.runtime.testing import read_messages

pytestmark = pytest.mark.slow

START_TIMEOUT_S = 240.0  # eight Python services importing numpy/pandas/scipy on a small, busy machine
STEP_TIMEOUT_S = 120.0
STOP_TIMEOUT_S = 60.0
VICTIM = "strategy"
ANSWERS = (OrderSubmitted, OrderAccepted, OrderRejected)
T = TypeVar("T")


async def eventually(probe: Callable[[], Awaitable[T | None]], timeout_s: float, what: str, log: Path) -> T:
    deadline = time.monotonic() + timeout_s
    while True:
        found = await probe()
        if found is not None:
            return found
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}; ata up output ends with:\n{text_of(log)[-3000:]}")
        await asyncio.sleep(1.0)


def text_of(path: Path) -> str:
    return path.read_text(errors="replace") if path.exists() else ""


def alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def service_pids(up: psutil.Process) -> dict[str, int]:
    """Service name -> pid of the supervisor's children running ``ata.runtime.cli run <name>``."""
    found: dict[str, int] = {}
    for child in up.children():
        try:
            argv = child.cmdline()
        except psutil.Error:
            continue
        if argv[-2:-1] == ["run"]:
            found[argv[-1]] = child.pid
    return found


@pytest.fixture
def ata_up(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[bytes], Path, Path]]:
    state = tmp_path / "state"
    log = tmp_path / "ata-up.out"
    env = {k: v for k, v in os.environ.items() if not k.startswith("ATA_")}
    env |= {"ATA_STATE_DIR": str(state), "ATA_SERVICE_HEARTBEAT_INTERVAL_MS": "1000", "COLUMNS": "160"}
    with log.open("wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "ata.runtime.cli", "up"], env=env, stdin=subprocess.DEVNULL,
                                stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        yield proc, state, log
    finally:
        if proc.poll() is None:  # the test failed midway: stop it the way a user would, then make sure
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(STOP_TIMEOUT_S)


async def test_make_run_reaches_a_fill_survives_a_kill_and_stops_cleanly(
        ata_up: tuple[subprocess.Popen[bytes], Path, Path]) -> None:
    proc, state, log = ata_up
    names = sorted(installed_services())
    assert VICTIM in names and "execution" in names and "risk" in names

    async def infra_ready() -> dict[str, object] | None:
        try:
            return json.loads(text_of(state / "infra.json") or "null")  # type: ignore[no-any-return]
        except json.JSONDecodeError:
            return None  # being written

    infra = await eventually(infra_ready, STEP_TIMEOUT_S, "the embedded infrastructure", log)
    bootstrap = str(infra["kafka_bootstrap"])
    up = psutil.Process(proc.pid)

    async def ready_pids() -> dict[str, int] | None:
        """Every service's current pid, once each of them has a READY heartbeat from that pid."""
        pids = service_pids(up)
        if set(pids) != set(names):
            return None
        ready = {(m.service, m.instance.rsplit("-", 1)[-1]) for m in await read_messages(bootstrap, "system.heartbeats.v1")
                 if isinstance(m, HeartbeatEmitted) and m.status is ServiceStatus.READY}
        return pids if all((name, str(pid)) in ready for name, pid in pids.items()) else None

    async def first_fill() -> FillReported | None:
        fills = [m for m in await read_messages(bootstrap, "orders.fills.v1") if isinstance(m, FillReported)]
        return fills[0] if fills else None

    pids = await eventually(ready_pids, START_TIMEOUT_S, "every service ready", log)
    fill = await eventually(first_fill, START_TIMEOUT_S, "a first fill", log)
    assert fill.quantity > 0 and fill.client_order_id.startswith("ata-")

    os.kill(pids[VICTIM], signal.SIGKILL)

    async def restarted() -> dict[str, int] | None:
        again = await ready_pids()
        return again if again is not None and again[VICTIM] != pids[VICTIM] else None

    after = await eventually(restarted, STEP_TIMEOUT_S, f"{VICTIM} restarted and ready", log)
    assert {n: p for n, p in after.items() if n != VICTIM} == {n: p for n, p in pids.items() if n != VICTIM}

    # The ledger, read while the broker is still up: orders submitted by then are all answered.
    commands = [m for m in await read_messages(bootstrap, "orders.commands.v1") if isinstance(m, SubmitOrder)]
    assert commands
    per_order = collections.Counter(coid for coid, _ in {(c.client_order_id, c.event_id) for c in commands})
    assert [coid for coid, n in per_order.items() if n > 1] == []  # redelivery repeats an event id, never an order

    async def all_answered() -> dict[str, set[type]] | None:
        answers: dict[str, set[type]] = collections.defaultdict(set)
        for m in await read_messages(bootstrap, "orders.events.v1"):
            if isinstance(m, ANSWERS):
                answers[m.client_order_id].add(type(m))
        return answers if set(per_order) <= set(answers) else None

    answers = await eventually(all_answered, STEP_TIMEOUT_S, "an answer to every order command", log)
    submitted = collections.Counter(m.client_order_id for m in {
        m.event_id: m for m in await read_messages(bootstrap, "orders.events.v1") if isinstance(m, OrderSubmitted)}.values())
    assert [coid for coid, n in submitted.items() if n > 1] == []  # execution sent no order twice
    assert all(answers[coid] for coid in per_order)

    leftovers = {p.pid for p in up.children(recursive=True)} | {int(infra["broker_pid"]), int(infra["redis_pid"])}
    proc.send_signal(signal.SIGINT)
    assert proc.wait(STOP_TIMEOUT_S) == 0
    assert sorted(pid for pid in leftovers if alive(pid)) == []
    output = text_of(log)
    assert "services stopped" in output and "infrastructure stopped" in output
