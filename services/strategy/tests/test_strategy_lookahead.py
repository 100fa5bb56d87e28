"""Look-ahead guard: changing anything after bar t never changes an output at or before t."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from ata.events import RegimeLabel
from ata.strategy.core import MetaConfig, MetaStrategy, Method
from ata.strategy.core.coordination import CoordinationConfig
from ata.strategy.core.strategies import BUILTIN, Bar, MarketContext

N_BARS = 320
LABELS = [label.value for label in RegimeLabel]


def market(seed: int, n: int = N_BARS) -> tuple[list[Bar], list[MarketContext]]:
    rng = np.random.default_rng(seed)
    close = 100 * np.exp(np.cumsum(rng.normal(0.0003, rng.choice([0.005, 0.02]), n)))
    spread = close * rng.uniform(0.001, 0.02, n)
    bars = [Bar(i * 86_400_000_000_000, float(c), float(c + s), float(c - s), float(c), 1e6)
            for i, (c, s) in enumerate(zip(close, spread, strict=True))]
    contexts = [MarketContext(str(rng.choice(LABELS)), float(rng.uniform(-1, 1))) for _ in range(n)]
    return bars, contexts


Market = tuple[list[Bar], list[MarketContext]]


def altered_after(seed: int, other_seed: int, t: int) -> tuple[Market, Market]:
    bars, contexts = market(seed)
    other_bars, other_contexts = market(other_seed)
    scale = bars[t].close / other_bars[t].close
    moved = [Bar(b.ts_ns, b.open * scale, b.high * scale, b.low * scale, b.close * scale, b.volume) for b in other_bars]
    return (bars, contexts), (bars[: t + 1] + moved[t + 1 :], contexts[: t + 1] + other_contexts[t + 1 :])


@pytest.mark.parametrize("name", list(BUILTIN))
@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), other=st.integers(0, 2**32 - 1), t=st.integers(0, N_BARS - 2))
def test_strategy_never_looks_ahead(name: str, seed: int, other: int, t: int) -> None:
    (bars, contexts), (bars2, contexts2) = altered_after(seed, other, t)
    cls = BUILTIN[name]
    a, b = cls(), cls()
    first = [a.update(bar, ctx) for bar, ctx in zip(bars, contexts, strict=True)]
    second = [b.update(bar, ctx) for bar, ctx in zip(bars2, contexts2, strict=True)]
    assert first[: t + 1] == second[: t + 1]


@settings(max_examples=20, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), other=st.integers(0, 2**32 - 1), t=st.integers(100, N_BARS - 2),
       method=st.sampled_from(list(Method)), coordinated=st.booleans())
def test_meta_strategy_never_looks_ahead(seed: int, other: int, t: int, method: Method, coordinated: bool) -> None:
    """Also with cross-strategy coordination (rolling strategy correlation, risk budgets) on."""
    assume(seed != other)
    (bars, contexts), (bars2, contexts2) = altered_after(seed, other, t)
    coordination = (CoordinationConfig(correlation_window_bars=30, min_correlation_bars=10, redundancy_threshold=0.3)
                    if coordinated or method is Method.RISK_BUDGET else None)
    config = MetaConfig(methods_by_regime={}, default_method=method, min_history_bars=5, min_dwell_bars=3,
                        coordination=coordination)
    a, b = MetaStrategy(config), MetaStrategy(config)
    first = [a.on_bar("X", bar, ctx) for bar, ctx in zip(bars, contexts, strict=True)]
    second = [b.on_bar("X", bar, ctx) for bar, ctx in zip(bars2, contexts2, strict=True)]
    assert first[: t + 1] == second[: t + 1]
    assert first[t + 1 :] != second[t + 1 :], "the altered future must matter, or the test proves nothing"
    if coordination is not None:  # the correlation window was in use before t
        assert any(c.max_correlation is not None for d in first[: t + 1] if d is not None for c in d.coordination)
