"""Acceptance: synthetic ground truth via the CLI, the real S&P 500 crisis and label stability."""

from __future__ import annotations

import re

import pandas as pd
import pytest
from arch.data import sp500
from typer.testing import CliRunner

from ata.events.regime import RegimeLabel
from ata.regime.cli import app
from ata.regime.core import DetectorParams, RegimeDetector, RegimeState
from ata.regime.core.replay import BarInput, replay

#: Documented bound (services/regime/README.md): confirmed label changes per calendar year
#: on daily bars with the default parameters.
MAX_CONFIRMED_CHANGES_PER_YEAR = 15
#: 21:00 UTC: after the US close, so a daily bar's close time falls on its trading date.
CLOSE_OFFSET_NS = 21 * 3600 * 10**9


@pytest.mark.slow
def test_evaluate_cli_gets_the_synthetic_volatility_regime_right_on_90_percent_of_bars() -> None:
    result = CliRunner().invoke(app, ["evaluate", "--symbols", "2", "--bars", "30000", "--seed", "7"])
    assert result.exit_code == 0, result.output
    assert "truth \\ predicted" in result.output and "_market: confirmed label" in result.output
    accuracy = float(re.search(r"volatility-regime accuracy \(confirmed\): ([0-9.]+)", result.output).group(1))  # type: ignore[union-attr]
    assert accuracy >= 0.90


@pytest.fixture(scope="module")
def sp500_states() -> list[RegimeState]:
    data = sp500.load()
    bars = [
        BarInput("SPX", int(ts.value) + CLOSE_OFFSET_NS, float(close), float(volume), "1d")
        for ts, close, volume in zip(data.index, data["Adj Close"], data["Volume"], strict=True)
    ]
    return list(replay(RegimeDetector(DetectorParams()), bars))


def _series(states: list[RegimeState], key: str, attr: str) -> pd.Series:
    chosen = [s for s in states if s.key == key]
    return pd.Series([getattr(s, attr) for s in chosen], index=pd.to_datetime([s.ts_event for s in chosen]))


@pytest.mark.slow
@pytest.mark.parametrize("key", ["SPX", "_market"])
def test_sp500_autumn_2008_to_march_2009_is_crisis_or_bear_volatile(sp500_states: list[RegimeState], key: str) -> None:
    labels = _series(sp500_states, key, "confirmed_label")["2008-09-01":"2009-03-31"]
    assert len(labels) > 140
    share = labels.isin([RegimeLabel.CRISIS, RegimeLabel.BEAR_VOLATILE]).mean()
    assert share > 0.5, labels.value_counts()


@pytest.mark.slow
@pytest.mark.parametrize("key", ["SPX", "_market"])
def test_sp500_confirmed_label_changes_stay_within_the_documented_bound(sp500_states: list[RegimeState], key: str) -> None:
    changed = _series(sp500_states, key, "previous_label").notna()
    per_year = changed.groupby(changed.index.year).sum()
    assert per_year.max() <= MAX_CONFIRMED_CHANGES_PER_YEAR, per_year.to_dict()
    raw = _series(sp500_states, key, "label")
    # the confirmation does real work: the raw label changes far more often
    assert (raw != raw.shift()).sum() > 3 * changed.sum()


def test_seasonality_cli_reports_both_effects_with_p_values() -> None:
    result = CliRunner().invoke(app, ["seasonality", "--dataset", "sp500"])
    assert result.exit_code == 0, result.output
    for grouping in ("day_of_week", "month_of_year"):
        assert re.search(grouping + r":\s+Kruskal-Wallis p=[0-9.e-]+,\s+ANOVA p=[0-9.e-]+", result.output)
    assert "Mon" in result.output and "Dec" in result.output
