"""`ata infra up/down` starts real processes, they answer, and down leaves nothing behind."""

from __future__ import annotations

import socket
from pathlib import Path

from ata.runtime import infra


def _answers(address: str) -> bool:
    host, port = address.rsplit(":", 1)
    try:
        with socket.create_connection((host, int(port)), timeout=1):
            return True
    except OSError:
        return False


def test_up_then_down_leaves_no_process(tmp_path: Path) -> None:
    state = infra.up(tmp_path)
    try:
        assert state.broker_pid and state.redis_pid
        assert _answers(state.kafka_bootstrap)
        assert _answers(state.redis_url.removeprefix("redis://").removesuffix("/0"))
        again = infra.up(tmp_path)
        assert again.broker_pid == state.broker_pid, "a running infrastructure is reused, not doubled"
    finally:
        stopped = infra.down(tmp_path)
    assert stopped is not None
    for pid in stopped.owned_pids():
        assert not infra.pid_alive(pid)
    assert not _answers(state.kafka_bootstrap)
    assert infra.InfraState.load(tmp_path) is None


def test_external_endpoints_start_nothing(tmp_path: Path) -> None:
    state = infra.up(tmp_path, kafka_bootstrap="127.0.0.1:1", redis_url="redis://127.0.0.1:2/0")
    assert state.owned_pids() == []
    assert infra.down(tmp_path) is not None
