"""Event builders (and a misbehaving RL policy) for tests and benchmarks of the strategy service."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ata.events import BarClosed, RegimeLabel, RegimeStateUpdated, SentimentScored
from ata.quant.synthetic import SyntheticConfig, generate_bars
from ata.strategy.core.features import FEATURE_NAMES
from ata.strategy.core.policy import NumpyPolicy
from ata.strategy.core.strategies import Bar
from ata.strategy.data import load_bars

DAY_NS = 86_400_000_000_000


def bar_event(symbol: str, bar: Bar, timeframe: str = "1d") -> BarClosed:
    return BarClosed.origin(
        natural_key=("test", symbol, bar.ts_ns), ts_event=bar.ts_ns, ts_init=bar.ts_ns, source="marketdata/test",
        symbol=symbol, timeframe=timeframe, ts_open=bar.ts_ns, open=bar.open, high=bar.high, low=bar.low, close=bar.close,
        volume=bar.volume,
    )


def regime_state(symbol: str, ts: int, label: RegimeLabel) -> RegimeStateUpdated:
    return RegimeStateUpdated.origin(
        natural_key=("test", symbol, ts), ts_event=ts, ts_init=ts, source="regime/test", symbol=symbol, label=label,
        confirmed_label=label, probabilities={label.value: 1.0}, confidence=1.0,
    )


def sentiment_score(symbol: str, ts: int, score: float) -> SentimentScored:
    return SentimentScored.origin(
        natural_key=("test", symbol, ts), ts_event=ts, ts_init=ts, source="sentiment/test", symbol=symbol,
        item_score=score, decayed_score=score, novelty=1.0, news_volume=1.0,
    )


def universe_bars(n_bars: int, *, synthetic: int = 1, seed: int = 7, start: int = 2000) -> dict[str, list[Bar]]:
    """Daily bars of a small universe on common dates: the real S&P 500 (``SPX``) and NASDAQ (``NDX``)
    series from ``start`` on, plus ``synthetic`` seeded symbols (``SYN0``...) stamped with the same times."""
    real = {"SPX": load_bars("sp500"), "NDX": load_bars("nasdaq")}
    common = sorted(set.intersection(*({b.ts_ns for b in bars} for bars in real.values())))[start : start + n_bars]
    keep = set(common)
    out = {symbol: [b for b in bars if b.ts_ns in keep] for symbol, bars in real.items()}
    if synthetic:
        gen = generate_bars(SyntheticConfig(n_symbols=synthetic, seed=seed, bars_per_year=252.0), len(common))
        for j in range(synthetic):
            out[f"SYN{j}"] = [Bar(ts, float(gen.open[i, j]), float(gen.high[i, j]), float(gen.low[i, j]),
                                  float(gen.close[i, j]), float(gen.volume[i, j])) for i, ts in enumerate(common)]
    return out


def interleaved(bars: dict[str, list[Bar]], order: Sequence[str] | None = None) -> list[BarClosed]:
    """Bar events time by time, the symbols of each time in ``order`` (default: sorted)."""
    symbols = list(order or sorted(bars))
    return [bar_event(s, bars[s][i]) for i in range(len(bars[symbols[0]])) for s in symbols]


def overflowing_policy(strategies: Sequence[str]) -> NumpyPolicy:
    """A policy that passes every load-time check (finite weights, shapes that chain) but whose forward
    pass overflows (a non-finite output) on each bar with a positive ``ret_1``; on the other bars it picks
    its equal-weight action. A run-time failure, decided by the data, that no check of the file can see."""
    n_features, k = len(FEATURE_NAMES), len(strategies)
    hidden = np.zeros((2, n_features))
    hidden[:, FEATURE_NAMES.index("ret_1")] = 1e200  # relu: 1e200 * ret_1 when the bar rose, else 0
    output = np.zeros((k + 1, 2))
    output[0] = (1e200, -1e200)  # overflows once the hidden units are large
    equal_weight = np.zeros(k + 1)
    equal_weight[k] = 1.0  # the last action wins while every output is finite
    return NumpyPolicy(kind="ppo", activation="relu", strategies=tuple(strategies),
                       actions=np.vstack([np.eye(k), np.full((1, k), 1.0 / k)]), obs_mean=np.zeros(n_features),
                       obs_std=np.ones(n_features), weights=(hidden, output), biases=(np.zeros(2), equal_weight))
