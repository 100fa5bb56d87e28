"""The ``ata`` command against real processes and the real broker."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from confluent_kafka.admin import AdminClient
from rich.console import Console
from typer.testing import CliRunner

from ata.events import BarClosed, RegimeStateUpdated
from ata.events.topics import REGISTRY, Topic
from ata.runtime import cli, infra
from ata.runtime.cli_topics import render_graph
from ata.runtime.cli_up import READY_LINE

WAIT_S = 60.0
runner = CliRunner()


def test_infra_up_status_down(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ATA_STATE_DIR", str(tmp_path))
    monkeypatch.delenv("ATA_KAFKA_BOOTSTRAP", raising=False)
    monkeypatch.delenv("ATA_REDIS_URL", raising=False)
    try:
        started = runner.invoke(cli.app, ["infra", "up"])
        assert started.exit_code == 0, started.output
        state = infra.InfraState.load(tmp_path)
        assert state is not None and state.broker_pid and state.redis_pid
        assert f"ATA_KAFKA_BOOTSTRAP={state.kafka_bootstrap}" in started.output
        status = runner.invoke(cli.app, ["infra", "status"])
        assert status.exit_code == 0, status.output
        assert str(state.broker_pid) in status.output and state.kafka_bootstrap in status.output
    finally:
        stopped = runner.invoke(cli.app, ["infra", "down"])
    assert stopped.exit_code == 0
    assert not any(infra.pid_alive(pid) for pid in state.owned_pids())
    assert runner.invoke(cli.app, ["infra", "status"]).exit_code == 1


def test_topics_list_and_describe() -> None:
    listed = runner.invoke(cli.app, ["topics", "list"])
    assert listed.exit_code == 0
    for topic in REGISTRY.data_topics():
        assert topic.name in listed.output
    described = runner.invoke(cli.app, ["topics", "describe", "orders.commands.v1"])
    assert described.exit_code == 0
    assert "client_order_id" in described.output and "SubmitOrder" in described.output
    assert runner.invoke(cli.app, ["topics", "describe", "nope.nothing.v1"]).exit_code == 2


def test_topics_graph_of_the_registry_succeeds() -> None:
    result = runner.invoke(cli.app, ["topics", "graph"])
    assert result.exit_code == 0, result.output
    assert "marketdata -> market.bars.v1 -> regime" in result.output
    assert "acyclic" in result.output


def test_graph_command_fails_on_a_crafted_cycle() -> None:
    cyclic = [
        Topic("market.bars.v1", (BarClosed,), "symbol", 1, ("marketdata",), ("regime",)),
        Topic("regime.states.v1", (RegimeStateUpdated,), "symbol", 1, ("regime",), ("marketdata",)),
    ]
    console = Console(record=True, width=200)
    assert render_graph(cyclic, console) == 1
    text = console.export_text()
    assert "cycle" in text and "regime -> regime.states.v1 -> marketdata" in text


def test_topics_provision_creates_every_registry_topic(kafka_bootstrap: str) -> None:
    for _ in range(2):  # idempotent
        result = runner.invoke(cli.app, ["topics", "provision", "--bootstrap", kafka_bootstrap])
        assert result.exit_code == 0, result.output
    on_broker = AdminClient({"bootstrap.servers": kafka_bootstrap}).list_topics(timeout=10).topics
    for topic in REGISTRY:
        assert topic.name in on_broker
        assert len(on_broker[topic.name].partitions) == topic.partitions


def test_run_unknown_service_names_the_installed_ones() -> None:
    result = runner.invoke(cli.app, ["run", "no-such-service"])
    assert result.exit_code == 2
    assert "installed:" in result.output


def test_extension_apps_are_mounted(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "ata_cli_demo_ext.py").write_text(
        "import typer\napp = typer.Typer()\n@app.command()\ndef hello() -> None:\n    print('hello from demo')\n"
        "@app.command()\ndef bye() -> None:\n    print('bye')\n"
    )
    (tmp_path / "ata_cli_broken_ext.py").write_text("raise RuntimeError('broken package')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    group = cli.metadata.EntryPoint  # the stdlib class, not a stand-in
    fake_eps = [group(name="demo", value="ata_cli_demo_ext:app", group=cli.CLI_GROUP),
                group(name="broken", value="ata_cli_broken_ext:app", group=cli.CLI_GROUP)]
    real = cli.metadata.entry_points
    monkeypatch.setattr(cli.metadata, "entry_points",
                        lambda **kw: fake_eps if kw.get("group") == cli.CLI_GROUP else real(**kw))
    app = cli.typer.Typer()
    app.command("noop")(lambda: None)
    cli.mount_extensions(app)
    assert "cannot load ata.cli entry point 'broken'" in capsys.readouterr().err
    result = runner.invoke(app, ["demo", "hello"])
    assert result.exit_code == 0, result.output
    assert "hello from demo" in result.output


def _wait_for_line(proc: subprocess.Popen[str], needle: str, seen: list[str]) -> None:
    deadline = time.monotonic() + WAIT_S
    assert proc.stdout is not None
    os.set_blocking(proc.stdout.fileno(), False)
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if line:
            seen.append(line)
            if needle in line:
                return
        elif proc.poll() is not None:
            break
        else:
            time.sleep(0.05)
    raise AssertionError(f"{needle!r} not printed; output so far:\n{''.join(seen)}")


def test_ata_up_without_services_starts_infra_and_stops_cleanly(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("ATA_KAFKA_BOOTSTRAP", "ATA_REDIS_URL")}
    env["ATA_STATE_DIR"] = str(tmp_path)
    proc = subprocess.Popen([sys.executable, "-m", "ata.runtime.cli", "up", "--services", ""], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    seen: list[str] = []
    try:
        _wait_for_line(proc, READY_LINE, seen)
        _wait_for_line(proc, "no services installed", seen)
        recorded = json.loads((tmp_path / infra.STATE_FILE).read_text())
        pids = [recorded["broker_pid"], recorded["redis_pid"]]
        assert all(infra.pid_alive(pid) for pid in pids)
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=WAIT_S) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=WAIT_S)
    output = "".join(seen) + (proc.stdout.read() if proc.stdout else "")
    assert "infrastructure stopped" in output
    assert not any(infra.pid_alive(pid) for pid in pids)
    assert not (tmp_path / infra.STATE_FILE).exists()
