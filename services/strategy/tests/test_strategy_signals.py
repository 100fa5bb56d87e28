"""Each strategy's streaming signals on the real S&P 500 series equal a plain pandas computation."""

from __future__ import annotations

import math
from collections.abc import Callable

import arch.data.sp500
import numpy as np
import pandas as pd
import pytest

from ata.strategy.core.strategies import (
    BUILTIN,
    DonchianBreakout,
    DonchianParams,
    MaCrossoverParams,
    MarketContext,
    MeanReversion,
    MeanReversionParams,
    MomentumParams,
    MovingAverageCrossover,
    SentimentParams,
    SentimentTilt,
    Strategy,
    TimeSeriesMomentum,
    VolatilityManaged,
    VolManagedParams,
)
from ata.strategy.data import bars_from_frame

SP500 = arch.data.sp500.load()
CLOSE = SP500["Close"]
BARS = bars_from_frame(SP500)


def run(strategy: Strategy, contexts: list[MarketContext] | None = None) -> pd.DataFrame:
    """Streaming signals as a frame (NaN rows during warm-up)."""
    rows = []
    for i, bar in enumerate(BARS):
        signal = strategy.update(bar, contexts[i] if contexts is not None else MarketContext())
        rows.append((math.nan,) * 3 if signal is None else (signal.strength, signal.direction, signal.horizon_bars))
    return pd.DataFrame(rows, index=SP500.index, columns=["strength", "direction", "horizon"])


def assert_matches(actual: pd.DataFrame, strength: pd.Series, horizon: int) -> None:
    assert actual["strength"].isna().equals(strength.isna()), "warm-up differs from the reference"
    valid = strength.notna()
    assert valid.sum() > 4000
    np.testing.assert_allclose(actual["strength"][valid], strength[valid], rtol=1e-9, atol=1e-12)
    clear = valid & (strength.abs() > 1e-9)
    assert (actual["direction"][clear] == np.sign(strength[clear])).all()
    assert (actual["direction"][valid & (strength == 0)] == 0).all()
    assert (actual["horizon"][valid] == horizon).all()
    assert actual["strength"][valid].between(-1, 1).all()


def test_ma_crossover_matches_pandas() -> None:
    p = MaCrossoverParams(fast=20, slow=100, band=0.05)
    gap = CLOSE.rolling(p.fast).mean() / CLOSE.rolling(p.slow).mean() - 1
    reference = (gap / p.band).clip(-1, 1)
    out = run(MovingAverageCrossover(p))
    assert_matches(out, reference, p.fast)
    assert (out["direction"] == 1).sum() > 1000 and (out["direction"] == -1).sum() > 500


def test_ts_momentum_matches_pandas() -> None:
    p = MomentumParams(lookback=126, vol_window=60, full_t=2.0)
    log_close = np.log(CLOSE)
    sigma = log_close.diff().rolling(p.vol_window).std()
    reference = (log_close.diff(p.lookback) / (sigma * math.sqrt(p.lookback)) / p.full_t).clip(-1, 1)
    assert_matches(run(TimeSeriesMomentum(p)), reference, p.lookback // 4)


def test_mean_reversion_matches_pandas() -> None:
    p = MeanReversionParams(window=20, entry_z=1.0, full_z=2.5)
    z = (CLOSE - CLOSE.rolling(p.window).mean()) / CLOSE.rolling(p.window).std()
    reference = (-z / p.full_z).clip(-1, 1).where(z.abs() >= p.entry_z, 0.0).where(z.notna())
    out = run(MeanReversion(p))
    assert_matches(out, reference, p.window // 2)
    assert (out["strength"] == 0).sum() > 1000 and (out["strength"] > 0).sum() > 500


def test_donchian_breakout_matches_pandas() -> None:
    p = DonchianParams(window=55)
    upper = SP500["High"].rolling(p.window).max().shift(1)
    lower = SP500["Low"].rolling(p.window).min().shift(1)
    events = pd.Series(np.where(upper < CLOSE, 1.0, np.where(lower > CLOSE, -1.0, np.nan)), index=CLOSE.index)
    reference = events.ffill().fillna(0.0).where(upper.notna())
    out = run(DonchianBreakout(p))
    assert_matches(out, reference, p.window)
    assert (out["direction"].diff().abs() == 2).sum() > 10, "the rule must stop and reverse several times"


def test_vol_managed_matches_pandas() -> None:
    p = VolManagedParams(vol_window=20, target_vol_annual=0.12)
    rv = np.sqrt(252 * (np.log(CLOSE).diff() ** 2).rolling(p.vol_window).mean())
    reference = np.minimum(1.0, p.target_vol_annual / rv)
    out = run(VolatilityManaged(p))
    assert_matches(out, reference, p.vol_window)
    assert out["strength"].min() < 0.25, "2008 volatility must cut the exposure"


def test_sentiment_tilt_matches_pandas() -> None:
    p = SentimentParams(threshold=0.05, full_score=0.5, horizon_bars=5)
    rng = np.random.default_rng(7)
    scores = pd.Series(rng.uniform(-0.8, 0.8, len(SP500)), index=SP500.index)
    scores.iloc[:30] = np.nan  # no news yet
    contexts = [MarketContext("", None if math.isnan(s) else float(s)) for s in scores]
    reference = (scores / p.full_score).clip(-1, 1).where(scores.abs() >= p.threshold, 0.0).where(scores.notna())
    assert_matches(run(SentimentTilt(p), contexts), reference, p.horizon_bars)


@pytest.mark.parametrize("name", list(BUILTIN))
def test_snapshot_restore_continues_identically(name: str) -> None:
    cls = BUILTIN[name]
    contexts = [MarketContext("", 0.3 * math.sin(i / 7)) for i in range(len(SP500))]
    bars = BARS
    whole, first = cls(), cls()
    expected = [whole.update(b, c) for b, c in zip(bars, contexts, strict=True)]
    cut = 1500
    head = [first.update(b, c) for b, c in zip(bars[:cut], contexts[:cut], strict=True)]
    resumed = cls.restore(first.snapshot())
    tail = [resumed.update(b, c) for b, c in zip(bars[cut:], contexts[cut:], strict=True)]
    assert head + tail == expected


@pytest.mark.parametrize(("params", "factory"), [
    (lambda: MaCrossoverParams(fast=30, slow=20), MovingAverageCrossover),
    (lambda: MomentumParams(lookback=0), TimeSeriesMomentum),
    (lambda: MeanReversionParams(entry_z=float("nan")), MeanReversion),
])
def test_invalid_parameters_are_refused(params: Callable[[], object], factory: type[Strategy]) -> None:
    with pytest.raises(ValueError):
        factory(params())  # type: ignore[arg-type]


def test_scaled_parameters_keep_types_and_bounds() -> None:
    fast = MaCrossoverParams(fast=20, slow=100, band=0.05).scaled(0.5, 1.5)
    assert (fast.fast, fast.slow) == (10, 50) and math.isclose(fast.band, 0.075)
    assert MomentumParams(lookback=3, vol_window=3).scaled(0.1).lookback == 2
