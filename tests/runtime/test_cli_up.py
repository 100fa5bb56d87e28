"""``ata up`` paper-trading defaults passed to the children, and the account line read from risk's metrics."""

from __future__ import annotations

from pathlib import Path

import pytest

from ata.runtime import infra
from ata.runtime.cli_up import account_line, service_specs
from ata.runtime.up_modes import paper_defaults


def test_paper_defaults_replay_synthetic_data_or_the_sp500_series() -> None:
    synthetic = paper_defaults()
    assert synthetic["ATA_MARKETDATA_SOURCE"] == "synthetic" and synthetic["ATA_EXECUTION_BROKERS"] == "sim"
    assert synthetic["ATA_EXECUTION_CLOCK"] == "market" and float(synthetic["ATA_MARKETDATA_SPEED_FACTOR"]) > 0
    sp500 = paper_defaults("sp500", speed=3600.0)
    assert sp500["ATA_MARKETDATA_SOURCE"] == "dataset" and sp500["ATA_MARKETDATA_DATASET"] == "sp500"
    assert float(sp500["ATA_MARKETDATA_SPEED_FACTOR"]) == 3600.0


def test_the_environment_wins_over_the_defaults_and_infra_is_always_passed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ATA_EXECUTION_BROKERS", "alpaca")
    monkeypatch.delenv("ATA_MARKETDATA_SOURCE", raising=False)
    state = infra.InfraState(kafka_bootstrap="127.0.0.1:1", redis_url="redis://127.0.0.1:2/0")
    [spec] = service_specs(["execution"], state, tmp_path, paper_defaults())
    assert "ATA_EXECUTION_BROKERS" not in spec.env  # the child inherits alpaca from the environment
    assert spec.env["ATA_MARKETDATA_SOURCE"] == "synthetic"
    assert spec.env["ATA_KAFKA_BOOTSTRAP"] == "127.0.0.1:1" and spec.env["ATA_STATE_DIR"] == str(tmp_path)


def test_account_line_reads_equity_and_trading_state_from_prometheus_text() -> None:
    text = "# HELP ata_risk_equity Portfolio equity\n# TYPE ata_risk_equity gauge\nata_risk_equity 1.0012345e+06\n" \
           "ata_risk_trading_state 1.0\nata_risk_equity_other 3\n"
    assert account_line(text) == "equity 1,001,234.50 · trading REDUCING"
    assert account_line("process_cpu_seconds_total 1.0\n") == ""
