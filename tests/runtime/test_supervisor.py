"""The supervisor runs real child processes: crashes are restarted with growing delays, stop leaves nothing."""

from __future__ import annotations

import asyncio
import itertools
import sys
import time
from collections.abc import Callable
from pathlib import Path

from ata.runtime.infra import pid_alive
from ata.runtime.resilience import Backoff
from ata.runtime.supervisor import CONFIG_ERROR_EXIT, ChildSpec, ChildState, Supervisor, run_until_signalled, status_table

WAIT_S = 30.0

CRASHER = """
import sys, time
from pathlib import Path
log = Path(sys.argv[1])
with log.open("a") as f:
    f.write(f"{time.monotonic()}\\n")
sys.exit(3)
"""

SLEEPER_IGNORING_SIGTERM = """
import signal, subprocess, sys, time
from pathlib import Path
signal.signal(signal.SIGTERM, signal.SIG_IGN)
grandchild = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
Path(sys.argv[1]).write_text(str(grandchild.pid))
time.sleep(600)
"""

GRACEFUL = """
import signal, sys, time
from pathlib import Path
def bye(*_):
    Path(sys.argv[1]).write_text("terminated")
    sys.exit(0)
signal.signal(signal.SIGTERM, bye)
Path(sys.argv[1]).with_suffix(".started").write_text("started")
time.sleep(600)
"""


def script(tmp_path: Path, name: str, body: str) -> Path:
    path = tmp_path / f"{name}.py"
    path.write_text(body)
    return path


async def wait_until(predicate: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + WAIT_S
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.02)


async def test_crashing_child_is_restarted_with_increasing_delay(tmp_path: Path) -> None:
    starts = tmp_path / "starts.log"
    spec = ChildSpec("crasher", (sys.executable, str(script(tmp_path, "crasher", CRASHER)), str(starts)))
    backoff = Backoff(initial_s=0.05, multiplier=2.0, cap_s=0.4, max_attempts=None, jitter=False)
    supervisor = Supervisor([spec], backoff=backoff, log_dir=tmp_path / "logs", probe_readiness=False)
    supervisor.start()
    (status,) = supervisor.snapshot()
    try:
        # stop while waiting to restart, so the last exit is a crash, not our SIGTERM
        await wait_until(lambda: len(status.restart_delays_s) >= 5 and status.state is ChildState.BACKOFF, "five crashes")
    finally:
        await supervisor.stop()
    assert status.last_exit_code == 3
    assert status.restarts >= 4
    assert status.restart_delays_s[:5] == [0.05, 0.1, 0.2, 0.4, 0.4]  # grows, then capped
    times = [float(t) for t in starts.read_text().split()]
    gaps = [later - earlier for earlier, later in itertools.pairwise(times)]
    for gap, planned in zip(gaps, status.restart_delays_s, strict=False):
        assert gap >= planned, "a restart never comes before its backoff delay"
    assert status.state is ChildState.STOPPED


async def test_stop_kills_stubborn_children_and_their_groups(tmp_path: Path) -> None:
    marker = tmp_path / "grandchild.pid"
    spec = ChildSpec("stubborn", (sys.executable, str(script(tmp_path, "stubborn", SLEEPER_IGNORING_SIGTERM)), str(marker)))
    supervisor = Supervisor([spec], stop_grace_s=0.5, probe_readiness=False)
    supervisor.start()
    await wait_until(marker.is_file, "the child to start its grandchild")
    (child_pid,) = supervisor.pids()
    grandchild_pid = int(marker.read_text())
    assert pid_alive(child_pid) and pid_alive(grandchild_pid)
    await supervisor.stop()
    assert not pid_alive(child_pid)
    await wait_until(lambda: not pid_alive(grandchild_pid), "the grandchild to be killed")  # reaped by init
    assert supervisor.pids() == []
    assert supervisor.snapshot()[0].restarts == 0, "a stopped child is not restarted"


async def test_stop_sends_sigterm_first(tmp_path: Path) -> None:
    marker = tmp_path / "graceful.txt"
    spec = ChildSpec("graceful", (sys.executable, str(script(tmp_path, "graceful", GRACEFUL)), str(marker)))
    supervisor = Supervisor([spec], probe_readiness=False)
    supervisor.start()
    await wait_until(marker.with_suffix(".started").is_file, "the child to start")
    await supervisor.stop()
    assert marker.read_text() == "terminated"
    assert supervisor.snapshot()[0].last_exit_code == 0


async def test_missing_executable_is_retried_not_fatal(tmp_path: Path) -> None:
    spec = ChildSpec("ghost", (str(tmp_path / "does-not-exist"),))
    supervisor = Supervisor([spec], backoff=Backoff(initial_s=0.01, cap_s=0.01, max_attempts=None, jitter=False),
                            probe_readiness=False)
    supervisor.start()
    try:
        await wait_until(lambda: supervisor.snapshot()[0].restarts >= 2, "two restarts")
    finally:
        await supervisor.stop()
    assert supervisor.snapshot()[0].last_exit_code == 127


async def test_a_child_refusing_its_configuration_is_not_restarted_and_ends_the_run(tmp_path: Path) -> None:
    starts = tmp_path / "starts.log"
    refusing = CRASHER.replace("sys.exit(3)", f"sys.exit({CONFIG_ERROR_EXIT})")
    specs = [ChildSpec("refusing", (sys.executable, str(script(tmp_path, "refusing", refusing)), str(starts))),
             ChildSpec("graceful", (sys.executable, str(script(tmp_path, "graceful", GRACEFUL)), str(tmp_path / "g.txt")))]
    supervisor = Supervisor(specs, backoff=Backoff(initial_s=0.01, cap_s=0.01, max_attempts=None, jitter=False),
                            probe_readiness=False)
    await asyncio.wait_for(run_until_signalled(supervisor, lambda: None), WAIT_S)  # returns without a signal
    assert supervisor.failed() == ["refusing"]
    refused, graceful = supervisor.snapshot()
    assert (refused.state, refused.restarts, refused.last_exit_code) == (ChildState.FAILED, 0, CONFIG_ERROR_EXIT)
    assert len(starts.read_text().split()) == 1
    assert graceful.state is ChildState.STOPPED and supervisor.pids() == []


def test_status_table_lists_children_or_says_none() -> None:
    from rich.console import Console

    console = Console(width=160, record=True)
    console.print(status_table([], now=0.0))
    assert "no services installed" in console.export_text()
