"""Runs one scenario against locally supervised processes and judges it.

Contract:
- :meth:`ChaosRun.run` starts the embedded broker and Redis in its own state directory (never a
  developer's running ``ata up``), provisions the registry's topics, starts the simulated broker as
  its own process (when the scenario runs execution), and the scenario's services under the
  :class:`~ata.runtime.supervisor.Supervisor` that ``ata up`` uses; it always tears everything down.
- Steady-state hypothesis: every service answers ``/readyz`` 200 within ``steady_state.ready_within_s``.
- Faults run in order, each ``after_s`` after the previous one; a killed service must be back (a
  restart counted, ready again) and every service ready within ``verdict.recover_within_s`` of the
  end of the faults.
- With ``load.orders`` > 0 the ledger is checked: the simulated broker's orders are exactly the
  commanded client order ids (none lost, none twice), and ``orders.events.v1`` holds one
  ``OrderAccepted`` event id per order.
- Every wait is bounded; the :class:`Report` lists each check with what was expected and observed.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
import uuid
from collections import defaultdict
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

import aiohttp
from aiokafka import AIOKafkaConsumer

from ata.chaos.scenario import Fault, FaultKind, Scenario
from ata.events import OrderAccepted, Side, SubmitOrder, client_order_id_for
from ata.runtime import infra
from ata.runtime.bus import KafkaBus
from ata.runtime.cli_up import service_specs
from ata.runtime.codec import decode
from ata.runtime.config import RuntimeSettings
from ata.runtime.kafka import provision_topics
from ata.runtime.resilience import Backoff
from ata.runtime.supervisor import ChildSpec, ChildState, Supervisor

COMMANDS_TOPIC = "orders.commands.v1"
EVENTS_TOPIC = "orders.events.v1"
#: Restart killed services quickly: the verdict measures the platform, not the supervisor's patience.
RESTART_BACKOFF = Backoff(initial_s=0.2, multiplier=2.0, cap_s=5.0, max_attempts=None)
SIM_START_S = 30.0
POLL_S = 0.2


@dataclass(frozen=True)
class Check:
    name: str
    expected: str
    observed: str
    passed: bool


@dataclass
class Report:
    scenario: str
    checks: list[Check] = field(default_factory=list)
    timeline: list[dict[str, Any]] = field(default_factory=list)
    duration_s: float = 0.0

    @property
    def passed(self) -> bool:
        return bool(self.checks) and all(c.passed for c in self.checks)

    def to_json(self) -> dict[str, Any]:
        return {"scenario": self.scenario, "passed": self.passed, "duration_s": round(self.duration_s, 3),
                "checks": [asdict(c) for c in self.checks], "timeline": self.timeline}


async def _wait(predicate: Callable[[], Awaitable[bool] | bool], timeout_s: float) -> float | None:
    """Seconds until ``predicate`` held, or None if it did not within ``timeout_s``."""
    start = time.monotonic()
    while time.monotonic() - start < timeout_s:
        result = predicate()
        if not isinstance(result, bool):
            result = await result
        if result:
            return time.monotonic() - start
        await asyncio.sleep(POLL_S)
    return None


def _port(address: str) -> int:
    return int(address.rstrip("/").rsplit(":", 1)[1].split("/")[0])


def _spawn_sim_broker(port_file: Path, log_path: Path) -> subprocess.Popen[bytes]:
    """The simulated broker as its own process (its own session, so a terminal's Ctrl-C reaches only us)."""
    with log_path.open("ab") as log:
        return subprocess.Popen(
            [sys.executable, "-m", "ata.execution.brokers.sim_server", "--port", "0", "--port-file", str(port_file)],
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)


class ChaosRun:
    """One run of one scenario in ``state_dir`` (see the module docstring)."""

    def __init__(self, scenario: Scenario, state_dir: Path, progress: Callable[[str], None] = lambda _: None) -> None:
        self.scenario = scenario
        self.state_dir = state_dir
        self.progress = progress
        self.report = Report(scenario.name)
        self._t0 = time.monotonic()
        self._state: infra.InfraState | None = None
        self._sim: subprocess.Popen[bytes] | None = None
        self._sim_url = ""
        self._supervisor: Supervisor | None = None

    # -- bookkeeping -----------------------------------------------------------------------------
    def _event(self, what: str, **details: Any) -> None:
        self.report.timeline.append({"t_s": round(time.monotonic() - self._t0, 3), "event": what, **details})
        self.progress(what)

    def _check(self, name: str, expected: str, observed: str, passed: bool) -> None:
        self.report.checks.append(Check(name, expected, observed, passed))

    def services(self) -> list[str]:
        installed = sorted(ep.name for ep in metadata.entry_points(group="ata.services"))
        wanted = list(self.scenario.services) if self.scenario.services is not None else installed
        missing = sorted(set(wanted) - set(installed))
        if missing:
            raise ValueError(f"scenario {self.scenario.name} needs services that are not installed: {', '.join(missing)}")
        return wanted

    # -- the run -----------------------------------------------------------------------------------
    async def run(self) -> Report:
        names = self.services()
        try:
            await self._start(names)
            ready = await self._ready_within(self.scenario.steady_state.ready_within_s)
            self._check("steady state before faults", f"all ready within {self.scenario.steady_state.ready_within_s:g}s",
                        "not ready" if ready is None else f"ready after {ready:.1f}s", ready is not None)
            if ready is None:
                return self.report
            expected = await self._publish_orders() if self.scenario.load.orders else set()
            restarts_before = self._restarts()
            for fault in self.scenario.faults:
                await asyncio.sleep(fault.after_s)
                await self._inject(fault)
            faults_done = time.monotonic()
            await asyncio.sleep(self.scenario.duration_s)
            await self._judge_recovery(restarts_before, faults_done)
            if expected:
                await self._judge_ledger(expected)
        finally:
            await self._teardown()
            self.report.duration_s = time.monotonic() - self._t0
        return self.report

    async def _start(self, names: list[str]) -> None:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self._state = await asyncio.to_thread(infra.up, self.state_dir)
        await asyncio.to_thread(provision_topics, self._state.kafka_bootstrap)
        self._event("infrastructure up", kafka=self._state.kafka_bootstrap, redis=self._state.redis_url)
        extra = {"ATA_JOURNAL_URL": f"sqlite:///{self.state_dir / 'journal.db'}"}
        if self.scenario.sim_broker and "execution" in names:
            self._sim_url = await self._start_sim_broker()
            extra |= {"ATA_EXECUTION_SIM_BROKER_URL": self._sim_url,
                      # Re-check in-flight orders soon after a restart, so a verdict comes in seconds.
                      "ATA_EXECUTION_INFLIGHT_RECHECK_MS": "2000", "ATA_EXECUTION_POLL_INTERVAL_MS": "3000"}
        specs = [ChildSpec(s.name, s.argv, {**s.env, **extra}) for s in service_specs(names, self._state, self.state_dir)]
        self._supervisor = Supervisor(specs, backoff=RESTART_BACKOFF, log_dir=self.state_dir / "logs" / "services")
        self._supervisor.start()
        self._event("services started", services=names)

    async def _start_sim_broker(self) -> str:
        port_file = self.state_dir / "sim-broker.port"
        port_file.unlink(missing_ok=True)
        log_path = self.state_dir / "logs" / "sim-broker.log"
        log_path.parent.mkdir(parents=True, exist_ok=True)
        self._sim = await asyncio.to_thread(_spawn_sim_broker, port_file, log_path)
        waited = await _wait(lambda: port_file.exists() or self._sim is None or self._sim.poll() is not None, SIM_START_S)
        if waited is None or not port_file.exists():
            raise RuntimeError(f"the simulated broker did not start; see {log_path}")
        self._event("simulated broker up", pid=self._sim.pid)
        return f"http://127.0.0.1:{port_file.read_text().strip()}"

    async def _teardown(self) -> None:
        if self._supervisor is not None:
            await self._supervisor.stop()
        if self._sim is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self._sim.pid, signal.SIGCONT)  # a stalled broker cannot handle SIGTERM
            self._sim.terminate()
            try:
                await asyncio.to_thread(self._sim.wait, 10)
            except subprocess.TimeoutExpired:
                self._sim.kill()
                await asyncio.to_thread(self._sim.wait, 5)
        await asyncio.to_thread(infra.down, self.state_dir)
        self._event("torn down")

    # -- readiness ---------------------------------------------------------------------------------
    def _all_ready(self) -> bool:
        assert self._supervisor is not None
        return all(s.state is ChildState.RUNNING and s.ready == "ready" for s in self._supervisor.snapshot())

    async def _ready_within(self, timeout_s: float) -> float | None:
        return await _wait(self._all_ready, timeout_s)

    def _restarts(self) -> dict[str, int]:
        assert self._supervisor is not None
        return {s.name: s.restarts for s in self._supervisor.snapshot()}

    # -- faults ------------------------------------------------------------------------------------
    async def _inject(self, fault: Fault) -> None:
        assert self._supervisor is not None and self._state is not None
        if fault.kind is FaultKind.KILL_SERVICE:
            status = {s.name: s for s in self._supervisor.snapshot()}[str(fault.target)]
            if status.pid is None:
                raise RuntimeError(f"{fault.target} is not running; cannot kill it")
            os.kill(status.pid, signal.SIGKILL)
            self._event(f"kill -9 {fault.target}", pid=status.pid)
        elif fault.kind is FaultKind.RESTART_BROKER:
            await self._bounce("broker", fault.duration_s)
        elif fault.kind is FaultKind.STOP_REDIS:
            await self._bounce("redis", fault.duration_s)
        elif fault.kind is FaultKind.STALL_SIM_BROKER:
            if self._sim is None:
                raise RuntimeError("stall_sim_broker needs the simulated broker (execution with sim_broker: true)")
            os.kill(self._sim.pid, signal.SIGSTOP)
            self._event("simulated broker stalled", duration_s=fault.duration_s)
            await asyncio.sleep(fault.duration_s)
            os.kill(self._sim.pid, signal.SIGCONT)
            self._event("simulated broker resumed")

    async def _bounce(self, which: str, down_s: float) -> None:
        """Stop the embedded broker or Redis, keep it down ``down_s``, start it again on the same port."""
        state = self._state
        assert state is not None
        log_dir = Path(state.log_dir)
        if which == "broker":
            port, pid = _port(state.kafka_bootstrap), state.broker_pid
        else:
            port, pid = _port(state.redis_url), state.redis_pid
        if pid is None:
            raise RuntimeError(f"the {which} is external; chaos only stops the embedded one")
        await asyncio.to_thread(infra.stop_pid, pid)
        self._event(f"{which} stopped", duration_s=down_s)
        await asyncio.sleep(down_s)
        if which == "broker":
            proc, _ = await asyncio.to_thread(infra.start_broker, port, log_dir)
            state.broker_pid = proc.pid
            # The embedded broker keeps everything in memory: a restart starts empty, as after a crash.
            await asyncio.to_thread(provision_topics, state.kafka_bootstrap)
        else:
            proc, _ = await asyncio.to_thread(infra.start_redis, port, log_dir)
            state.redis_pid = proc.pid
        state.save(self.state_dir)
        self._event(f"{which} restarted", pid=proc.pid)

    # -- verdict -----------------------------------------------------------------------------------
    async def _judge_recovery(self, restarts_before: dict[str, int], faults_done: float) -> None:
        bound = self.scenario.verdict.recover_within_s
        killed = sorted({str(f.target) for f in self.scenario.faults if f.kind is FaultKind.KILL_SERVICE})

        def recovered() -> bool:
            after = self._restarts()
            return all(after[name] > restarts_before[name] for name in killed) and self._all_ready()

        remaining = max(0.0, bound - (time.monotonic() - faults_done))
        waited = await _wait(recovered, remaining)
        took = None if waited is None else time.monotonic() - faults_done
        self._event("recovered" if took is not None else "not recovered")
        after = self._restarts()
        self._check("services ready again after faults", f"within {bound:g}s",
                    "not ready" if took is None else f"ready {took:.1f}s after the last fault", took is not None)
        for name in killed:
            self._check(f"{name} restarted by the supervisor", "at least 1 restart",
                        f"{after[name] - restarts_before[name]} restarts", after[name] > restarts_before[name])

    async def _publish_orders(self) -> set[str]:
        assert self._state is not None
        run = uuid.uuid4().hex
        commands = []
        for index in range(self.scenario.load.orders):
            intent = uuid.uuid5(uuid.NAMESPACE_URL, f"chaos/{run}/{index}")
            commands.append(SubmitOrder.origin(
                natural_key=("chaos", run, index), ts_event=time.time_ns(), ts_init=time.time_ns(), source="chaos/load",
                intent_id=intent, client_order_id=client_order_id_for(intent), symbol="AAPL",
                side=Side.BUY if index % 2 else Side.SELL, quantity=1 + index % 5))
        settings = RuntimeSettings(kafka_bootstrap=self._state.kafka_bootstrap, instance_id=f"chaos-{run[:8]}")
        async with KafkaBus(settings, service="chaos") as bus:
            for command in commands:
                await bus.publish_to(COMMANDS_TOPIC, command, key=command.client_order_id)
        self._event("orders published", orders=len(commands))
        return {c.client_order_id for c in commands}

    async def _broker_stats(self, session: aiohttp.ClientSession) -> dict[str, Any]:
        async with session.get(f"{self._sim_url}/v1/stats") as response:
            response.raise_for_status()
            stats: dict[str, Any] = await response.json()
            return stats

    async def _judge_ledger(self, expected: set[str]) -> None:
        bound = self.scenario.verdict.recover_within_s
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as session:
            latest: dict[str, Any] = {"orders": []}

            async def all_at_broker() -> bool:
                with contextlib.suppress(aiohttp.ClientError, TimeoutError):
                    latest.update(await self._broker_stats(session))
                return set(latest["orders"]) >= expected

            await _wait(all_at_broker, bound)
        at_broker: list[str] = latest["orders"]
        lost = expected - set(at_broker)
        duplicated = len(at_broker) - len(set(at_broker))
        foreign = set(at_broker) - expected
        if self.scenario.verdict.no_lost_orders:
            self._check("no order lost (broker ledger)", f"{len(expected)} orders at the broker",
                        f"{len(expected) - len(lost)} present, {len(lost)} missing, {len(foreign)} unexpected",
                        not lost and not foreign)
        if self.scenario.verdict.no_duplicate_orders:
            self._check("no order placed twice (broker ledger)", "0 duplicates", f"{duplicated} duplicates", duplicated == 0)
            accepted = await self._accepted(expected, bound)
            twice = sorted(coid for coid, ids in accepted.items() if len(ids) > 1)
            self._check(f"one OrderAccepted per order ({EVENTS_TOPIC})", f"{len(expected)} orders, 1 event id each",
                        f"{len(accepted)} accepted, {len(twice)} with several event ids",
                        set(accepted) == expected and not twice)

    async def _accepted(self, expected: set[str], timeout_s: float) -> dict[str, set[uuid.UUID]]:
        """Distinct OrderAccepted event ids per client order id, read from the beginning of the topic."""
        assert self._state is not None
        found: dict[str, set[uuid.UUID]] = defaultdict(set)
        consumer = AIOKafkaConsumer(EVENTS_TOPIC, bootstrap_servers=self._state.kafka_bootstrap,
                                    group_id=f"chaos-check-{uuid.uuid4().hex}", auto_offset_reset="earliest",
                                    enable_auto_commit=False, fetch_max_wait_ms=50, session_timeout_ms=6000,
                                    heartbeat_interval_ms=1000)
        await consumer.start()
        try:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(timeout_s):
                    while True:
                        batches = await consumer.getmany(timeout_ms=200)
                        if not batches and set(found) >= expected:
                            break  # every order seen and nothing more to read: duplicates would be here
                        for records in batches.values():
                            for record in records:
                                event = decode(record.value) if record.value is not None else None
                                if isinstance(event, OrderAccepted):
                                    found[event.client_order_id].add(event.event_id)
        finally:
            await consumer.stop()
        return dict(found)
