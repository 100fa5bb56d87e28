"""The engine composes the live cores deterministically over an in-process bus."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from pydantic import ValidationError

from ata.backtest.config import BacktestConfig
from ata.backtest.data import DataSpec
from ata.backtest.engine import run_backtest
from ata.backtest.recorder import Records

SPEC = DataSpec(data="synthetic", symbols=("SYNA", "SYNB"), seed=11, synthetic_bars=2000, calendar="")
#: Short windows so a few thousand minute bars produce regime states, trades and fills.
CONFIG = {
    "regime": {"min_fit_bars": 100, "fit_window_bars": 400, "refit_every_bars": 400, "rv_history_bars": 300},
    "strategy": {"strategies": ["ma_crossover", "mean_reversion"], "params": {"ma_crossover": {"fast": 5, "slow": 20}}},
    "risk": {"bars_per_year": 98280, "max_staleness_ms": 3_600_000},
    "periods_per_year": 98280,
}


def run(spec: DataSpec, config: BacktestConfig) -> Records:
    records, _ = asyncio.run(run_backtest(spec, config))
    return records


def ledger(records: Records) -> tuple[list[tuple[object, ...]], list[tuple[object, ...]]]:
    orders = [(o["client_order_id"], o["symbol"], o["side"], o["quantity"]) for o in records.orders]
    fills = [(f["client_order_id"], f["fill_id"], f["side"], f["quantity"], f["price"]) for f in records.fills]
    return orders, fills


def test_backtest_full_pipeline_is_deterministic_and_trades() -> None:
    config = BacktestConfig.model_validate(CONFIG)
    first, second = run(SPEC, config), run(SPEC, config)
    assert first.bars == 2000
    assert first.messages["regime.states.v1"] > 0
    assert first.messages["oversight.reviews.v1"] > 0
    assert first.fills, "the pipeline produced no fill"
    assert ledger(first) == ledger(second)
    assert first.equity.tolist() == second.equity.tolist()
    # every fill belongs to an order risk sent, and no order is filled beyond its quantity
    ordered = {o["client_order_id"]: o["quantity"] for o in first.orders}
    filled: dict[str, float] = {}
    for f in first.fills:
        filled[f["client_order_id"]] = filled.get(f["client_order_id"], 0.0) + f["quantity"]
    assert set(filled) <= set(ordered)
    assert all(filled[c] <= ordered[c] + 1e-9 for c in filled)


def test_backtest_direct_dispatch_equals_in_memory_bus() -> None:
    direct = run(SPEC, BacktestConfig.model_validate({**CONFIG, "bus": "direct"}))
    memory = run(SPEC, BacktestConfig.model_validate({**CONFIG, "bus": "memory"}))
    assert ledger(direct) == ledger(memory)
    assert direct.equity.tolist() == memory.equity.tolist()
    assert direct.messages == memory.messages


def test_backtest_composition_leaves_out_stages() -> None:
    config = BacktestConfig.model_validate({**CONFIG, "stages": ["strategy", "risk", "execution"]})
    records = run(SPEC, config)
    assert "regime.states.v1" not in records.messages
    assert "oversight.reviews.v1" not in records.messages
    assert records.fills
    assert set(records.regimes) == {""}


def test_backtest_window_and_fill_timing_on_sp500() -> None:
    config = BacktestConfig.model_validate({"stages": ["strategy", "risk", "execution"]})
    records = run(DataSpec(data="sp500", start="2010-01-01", end="2010-12-31"), config)
    days = records.timestamps.astype("datetime64[ns]").astype("datetime64[D]")
    assert str(days[0]) >= "2010-01-04" and str(days[-1]) <= "2010-12-31"
    assert records.orders and records.fills
    # market orders are sent at a close and fill at a later bar's open, never at the signal bar
    sent = {o["client_order_id"]: o["ts"] for o in records.orders}
    assert all(f["ts"] > sent[f["client_order_id"]] for f in records.fills)


def test_backtest_config_errors_name_the_key(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text('stages = ["strategy"]\nunknown_knob = 1\n')
    with pytest.raises(ValidationError, match="unknown_knob"):
        BacktestConfig.load(bad)
    with pytest.raises(ValidationError, match="stages"):
        BacktestConfig.model_validate({"stages": ["teleport"]})
