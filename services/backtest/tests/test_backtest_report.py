"""The S&P 500 backtest writes a complete report whose metrics are ata.quant's on the same curve."""

from __future__ import annotations

import asyncio
import json
import math
from pathlib import Path

import numpy as np
import pytest

from ata.backtest.config import BacktestConfig
from ata.backtest.data import DataSpec
from ata.backtest.engine import run_backtest
from ata.backtest.report import write_report
from ata.quant.metrics import summarize

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.mark.timeout(900)
def test_backtest_sp500_report_metrics_equal_quant_summary(tmp_path: Path) -> None:
    config = BacktestConfig()
    records, stats = asyncio.run(run_backtest(DataSpec(data="sp500"), config))
    assert records.bars > 4900  # the whole 1999-2018 series
    files = write_report(records, tmp_path, run={"name": "sp500", "data": "sp500", "symbols": records.symbols, "seed": 0,
                                                 "stages": config.stages_in_order(), "start": "", "end": "",
                                                 "bars": stats.bars, "seconds": stats.seconds},
                         periods_per_year=config.periods_per_year)
    document = json.loads(files.json.read_text())
    recomputed = summarize(
        np.asarray(document["curve"]["equity"]), document["periods_per_year"],
        positions=np.asarray(document["positions"]["market_value"]), trade_pnls=np.asarray(document["trade_pnls"]),
    ).to_dict()
    assert set(recomputed) == set(document["metrics"])
    for key, value in recomputed.items():
        reported = document["metrics"][key]
        if value is None:
            assert reported is None, key
        else:
            assert math.isclose(reported, value, rel_tol=0, abs_tol=0), (key, reported, value)
    for key in ("cagr", "annual_volatility", "sharpe", "sortino", "max_drawdown", "calmar", "turnover_annual", "hit_rate",
                "exposure"):
        assert document["metrics"][key] is not None, key
    assert document["fills"] and document["attribution"]
    assert math.isclose(sum(document["attribution"].values()), document["curve"]["equity"][-1] - records.initial_cash,
                        rel_tol=1e-9, abs_tol=1e-6)
    for png in files.pngs.values():
        assert png.read_bytes().startswith(PNG_MAGIC)
    html = files.html.read_text()
    assert html.count("data:image/png;base64,") == 3
    for heading in ("Metrics", "Per-strategy attribution", "Equity and regimes", "Trades", "Sharpe", "Calmar", "Hit rate"):
        assert heading in html
    assert "src=\"http" not in html and "href=\"http" not in html  # self-contained
