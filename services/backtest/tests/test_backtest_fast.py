"""The vectorised fast path trades exactly like a plain per-bar loop of the same rule, and like the
event form of the strategy running through the full pipeline's strategy core."""

from __future__ import annotations

import numpy as np
import pytest

from ata.backtest.fast import run_fast
from ata.backtest.sma import SmaCrossover, SmaCrossParams
from ata.backtest.sma import reference_trades as reference
from ata.quant.synthetic import SyntheticConfig, generate_bars
from ata.strategy.core.strategies import Bar, MarketContext

N_BARS = 50_000


@pytest.fixture(scope="module")
def bars() -> tuple[np.ndarray, np.ndarray]:
    block = generate_bars(SyntheticConfig(n_symbols=1, seed=3), N_BARS)
    return block.open[:, 0].copy(), block.close[:, 0].copy()


def test_backtest_fast_path_trades_equal_numpy_reference(bars: tuple[np.ndarray, np.ndarray]) -> None:
    open_, close = bars
    result = run_fast(SmaCrossover(), open_, close)
    expected, equity = reference(open_, close)
    got = [(tr.signal_bar, tr.fill_bar, tr.quantity, tr.price) for tr in result.trades]
    assert len(got) > 100
    assert got == expected
    assert np.allclose(result.equity, equity, rtol=1e-12, atol=1e-6)
    assert {tr.quantity for tr in result.trades} == {100.0, -100.0}


def test_backtest_sma_event_form_equals_vectorised_form(bars: tuple[np.ndarray, np.ndarray]) -> None:
    _, close = bars
    strategy = SmaCrossover(SmaCrossParams())
    states = []
    for t, c in enumerate(close[:10_000].tolist()):
        signal = strategy.update(Bar(t, c, c, c, c), MarketContext())
        states.append(0.0 if signal is None else signal.strength * 100.0)
    assert states == SmaCrossover().target_quantities(close[:10_000]).tolist()
