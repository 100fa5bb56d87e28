"""``ata portfolio evaluate`` on the real NASDAQ and S&P 500 series plus synthetic symbols."""

from __future__ import annotations

import re

import numpy as np
from typer.testing import CliRunner

from ata.strategy.cli import app as strategy_app
from ata.strategy.portfolio_cli import OPTIMISERS, app, universe


def test_universe_aligns_the_real_indices_and_appends_synthetic_symbols() -> None:
    names, returns = universe(3, seed=1)
    assert names == ["NASDAQ", "SP500", "SYN0", "SYN1", "SYN2"]
    assert returns.shape[1] == 5 and returns.shape[0] > 4000
    corr = abs(float(np.corrcoef(returns[:, 0], returns[:, 1])[0, 1]))
    assert corr > 0.8  # same dates: the two indices move together


def table_rows(output: str) -> dict[str, list[str]]:
    """The result table's cells by optimiser name."""
    rows = {}
    for line in output.splitlines():
        cells = [c.strip() for c in re.split(r"[│┃]", line) if c.strip()]
        if cells and cells[0] in OPTIMISERS:
            rows[cells[0]] = cells[1:]
    return rows


def check_table(output: str) -> None:
    rows = table_rows(output)
    assert set(rows) == set(OPTIMISERS)
    for name, (sharpe, vol, mdd, turnover, _cagr, fallbacks) in rows.items():
        assert -3 < float(sharpe) < 3, name
        assert 0 < float(vol.rstrip("%")) < 60 and 0 < float(mdd.rstrip("%")) < 100, name
        assert float(turnover) >= 0 and fallbacks == "0", name
    # diversifying by risk lowers volatility against equal weight on this universe
    assert float(rows["minimum_variance"][1].rstrip("%")) < float(rows["equal_weight"][1].rstrip("%"))


def test_evaluate_prints_every_optimiser_beside_equal_weight() -> None:
    result = CliRunner().invoke(app, ["evaluate", "--synthetic", "2", "--rebalance-every", "63", "--window", "126"],
                                env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    check_table(result.output)


def test_strategy_evaluate_portfolio_runs_the_same_evaluation() -> None:
    result = CliRunner().invoke(strategy_app, ["evaluate", "--portfolio", "--synthetic", "2"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert "4 symbols (NASDAQ, SP500, SYN0, SYN1)" in result.output
    check_table(result.output)
