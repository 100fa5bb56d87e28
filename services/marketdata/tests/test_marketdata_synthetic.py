"""The seeded synthetic market (ata.quant.synthetic) and the synthetic source."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ata.events import BarClosed, DataAnomalyDetected, DataReliabilityChanged, GroundTruthRegimeObserved
from ata.marketdata.core import IntegrityChecker, IntegrityConfig, RawBar, RegimeObservation, SessionCalendar
from ata.marketdata.sources import SyntheticSource, synthetic_symbols
from ata.quant.synthetic import STRESS, SyntheticConfig, SyntheticMarket, generate_bars


def log_returns(close: np.ndarray) -> np.ndarray:
    return np.diff(np.log(close), axis=0)


def test_same_seed_same_bars_and_prefix_stable() -> None:
    config = SyntheticConfig(n_symbols=4, seed=11, block_bars=1000)
    a, b = generate_bars(config, 5000), generate_bars(config, 2500)
    assert np.array_equal(a.close[:2500], b.close) and np.array_equal(a.regime[:2500], b.regime)
    other = generate_bars(SyntheticConfig(n_symbols=4, seed=12, block_bars=1000), 5000)
    assert not np.array_equal(a.close, other.close)


def test_snapshot_restore_continues_exactly() -> None:
    config = SyntheticConfig(n_symbols=3, seed=5, block_bars=500)
    whole = SyntheticMarket(config).generate(2000)
    market = SyntheticMarket(config)
    market.generate(1000)
    resumed = SyntheticMarket(config)
    resumed.restore(market.snapshot())
    assert np.array_equal(resumed.generate(1000).close, whole.close[1000:])


def test_regimes_are_statistically_distinct() -> None:
    config = SyntheticConfig(n_symbols=10, seed=3)
    block = generate_bars(config, 200_000)
    returns, regime = log_returns(block.close), block.regime[1:]
    stress = np.array([config.regimes[r].volatility_regime == STRESS for r in regime])
    assert 0.05 < stress.mean() < 0.6 and np.count_nonzero(np.diff(block.regime)) >= 10
    vol_ratio = returns[stress].std() / returns[~stress].std()
    upper = np.triu_indices(10, 1)
    corr_stress = np.corrcoef(returns[stress].T)[upper].mean()
    corr_calm = np.corrcoef(returns[~stress].T)[upper].mean()
    print(f"\nvolatility stress/calm {vol_ratio:.2f}; mean pairwise correlation stress {corr_stress:.2f}, calm {corr_calm:.2f}")
    assert vol_ratio >= 2.0
    assert corr_stress > corr_calm + 0.2
    # Volatility clusters: |returns| are autocorrelated within a calm regime.
    calm_abs = np.abs(returns[~stress][:, 0])
    assert np.corrcoef(calm_abs[:-1], calm_abs[1:])[0, 1] > 0.05


def test_one_million_bars_shape_and_validity() -> None:
    block = generate_bars(SyntheticConfig(n_symbols=10, seed=1), 100_000)
    assert block.close.shape == (100_000, 10) and block.close.size == 1_000_000
    assert (block.low <= np.minimum(block.open, block.close)).all() and (block.high >= np.maximum(block.open, block.close)).all()
    assert (block.low > 0).all() and (block.volume > 0).all()


@settings(max_examples=40, deadline=None)
@given(
    seed=st.integers(0, 2**31 - 1),
    n_symbols=st.integers(1, 6),
    alpha=st.floats(0.0, 0.2),
    beta=st.floats(0.5, 0.79),
    vol=st.floats(0.01, 3.0),
)
def test_ohlc_always_valid(seed: int, n_symbols: int, alpha: float, beta: float, vol: float) -> None:
    base = SyntheticConfig()
    regimes = tuple(type(r)(r.name, r.volatility_regime, r.drift_annual, r.volatility_annual * vol, r.correlation, 50)
                    for r in base.regimes)
    block = generate_bars(SyntheticConfig(n_symbols=n_symbols, seed=seed, regimes=regimes, garch_alpha=alpha,
                                          garch_beta=beta, block_bars=300), 700)
    assert np.isfinite(block.close).all()
    assert (block.low > 0).all()
    assert (block.low <= np.minimum(block.open, block.close)).all()
    assert (block.high >= np.maximum(block.open, block.close)).all()
    assert (block.volume >= 1).all()


def test_source_emits_truth_then_bars_on_session_minutes_and_passes_integrity() -> None:
    calendar = SessionCalendar.from_exchange("XNYS", "2023-06-01")
    symbols = synthetic_symbols(3)
    start = 1_704_153_600_000_000_000  # 2024-01-02 00:00 UTC
    source = SyntheticSource(SyntheticConfig(n_symbols=3, seed=9, block_bars=400), symbols=symbols, timeframe="1m",
                             start_ns=start, calendar=calendar, max_bars=3 * 1000)
    items = list(source)
    truths = [i for i in items if isinstance(i, RegimeObservation)]
    raw = [i for i in items if isinstance(i, RawBar)]
    assert len(truths) == 1000 and len(raw) == 3000
    assert isinstance(items[0], RegimeObservation) and [r.symbol for r in raw[:3]] == symbols
    assert raw[0].ts_open == 1_704_205_800_000_000_000  # the first session's open
    assert all(calendar.is_open(r.ts_open) for r in raw)

    checker = IntegrityChecker(IntegrityConfig(), calendar=calendar, source="marketdata/test")
    out = [m for item in items for m in checker.process(item, ts_init=0)]
    kinds = Counter(type(m).__name__ for m in out)
    assert kinds["GroundTruthRegimeObserved"] == 1000
    assert not [m for m in out if isinstance(m, DataAnomalyDetected) and m.kind.value in ("gap", "invalid_ohlc", "duplicate")]
    assert kinds["BarClosed"] >= 2990  # at most a handful of extreme draws may be flagged as spikes
    truth = [m for m in out if isinstance(m, GroundTruthRegimeObserved)]
    assert {t.volatility_regime for t in truth} <= {"calm", "stress"}
    again = [m.event_id for item in SyntheticSource(source.config, symbols=symbols, timeframe="1m", start_ns=start,
                                                    calendar=calendar, max_bars=3000)
             for m in IntegrityChecker(IntegrityConfig(), calendar=calendar, source="marketdata/other").process(item, 0)]
    assert again == [m.event_id for m in out]
    allowed = BarClosed | GroundTruthRegimeObserved | DataAnomalyDetected | DataReliabilityChanged
    assert all(isinstance(m, allowed) for m in out)


@pytest.mark.parametrize("bad", [{"garch_alpha": 0.5, "garch_beta": 0.6}, {"n_symbols": 0}, {"transition_weights": ((1.0,),)}])
def test_invalid_config_refused(bad: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        SyntheticConfig(**bad)  # type: ignore[arg-type]
