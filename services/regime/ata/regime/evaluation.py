"""Score regime detection against the seeded synthetic market's ground truth.

The synthetic generator (:mod:`ata.quant.synthetic`) knows each bar's true regime and
whether it is *calm* or *stress*. Every key's **confirmed** label is mapped to a
volatility class (``bull_volatile``, ``bear_volatile``, ``crisis`` → stress; the rest →
calm) and compared with the truth of the same bar, after a warm-up.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

from ata.events.values import MARKET_KEY
from ata.quant.synthetic import CALM, SESSION_MINUTES, STRESS, SyntheticConfig, SyntheticMarket
from ata.regime.core.detector import DetectorParams, RegimeDetector
from ata.regime.core.labels import is_volatile
from ata.regime.core.replay import BarInput, replay

#: 2020-01-06 13:30 UTC (a Monday, US session open) in ns: synthetic bars are placed in sessions from here.
_EPOCH_NS = 1_578_317_400 * 10**9
_MINUTE_NS = 60 * 10**9
_DAY_NS = 86_400 * 10**9
CLASSES = (CALM, STRESS)

#: Settings for one-minute synthetic bars: regimes last a few sessions, so windows span weeks.
SYNTHETIC_PARAMS = DetectorParams(
    momentum_lookbacks=(30, 120, 390),
    trend_window=120,
    rv_window=30,
    rv_history_bars=5000,
    correlation_window=120,
    correlation_history_bars=5000,
    fit_window_bars=12_000,
    min_fit_bars=4_000,
    refit_every_bars=8_000,
    three_state_keys="none",
    hysteresis_bars=5,
)


def symbol_name(i: int) -> str:
    return f"SYN{i:03d}"


def synthetic_ts(step: int) -> int:
    """Close time of synthetic bar ``step``: one-minute bars, 390 per session, one session per day."""
    day, minute = divmod(step, SESSION_MINUTES)
    return _EPOCH_NS + day * _DAY_NS + (minute + 1) * _MINUTE_NS


@dataclass
class Evaluation:
    """Confusion matrices (truth x prediction) per key, over bars after warm-up."""

    warmup_bars: int
    matrices: dict[str, dict[tuple[str, str], int]] = field(default_factory=dict)
    raw_matrices: dict[str, dict[tuple[str, str], int]] = field(default_factory=dict)

    def add(self, key: str, truth: str, confirmed: str, raw: str) -> None:
        m = self.matrices.setdefault(key, dict.fromkeys(((t, p) for t in CLASSES for p in CLASSES), 0))
        m[(truth, confirmed)] += 1
        r = self.raw_matrices.setdefault(key, dict.fromkeys(((t, p) for t in CLASSES for p in CLASSES), 0))
        r[(truth, raw)] += 1

    @staticmethod
    def accuracy_of(matrix: dict[tuple[str, str], int]) -> float:
        total = sum(matrix.values())
        return sum(v for (t, p), v in matrix.items() if t == p) / total if total else 0.0

    def total(self, raw: bool = False) -> dict[tuple[str, str], int]:
        out = dict.fromkeys(((t, p) for t in CLASSES for p in CLASSES), 0)
        for m in (self.raw_matrices if raw else self.matrices).values():
            for cell, v in m.items():
                out[cell] += v
        return out

    def accuracy(self, raw: bool = False) -> float:
        return self.accuracy_of(self.total(raw))


def synthetic_bars(config: SyntheticConfig, n_bars: int) -> tuple[list[BarInput], list[str]]:
    """The generator's bars in arrival order (per timestamp, every symbol) and each step's true volatility class."""
    block = SyntheticMarket(config).generate(n_bars)
    truth = [config.regimes[int(r)].volatility_regime for r in block.regime]
    bars = [
        BarInput(symbol_name(j), synthetic_ts(step), float(block.close[step, j]), float(block.volume[step, j]), "1m")
        for step in range(n_bars)
        for j in range(config.n_symbols)
    ]
    return bars, truth


def evaluate(
    n_symbols: int = 3,
    n_bars: int = 40_000,
    seed: int = 7,
    warmup_bars: int | None = None,
    params: DetectorParams = SYNTHETIC_PARAMS,
) -> Evaluation:
    """Run detection over the seeded synthetic market and score every key after ``warmup_bars``.

    The default warm-up is the first fit plus one refit period, so every scored bar
    comes from a model fitted on at least ``min_fit_bars`` bars.
    """
    config = SyntheticConfig(n_symbols=n_symbols, seed=seed)
    bars, truth = synthetic_bars(config, n_bars)
    warm = params.min_fit_bars + params.refit_every_bars if warmup_bars is None else warmup_bars
    result = Evaluation(warm)
    step_of = {synthetic_ts(i): i for i in range(n_bars)}
    for state in replay(RegimeDetector(params), bars):
        step = step_of[state.ts_event]
        if step < warm:
            continue
        confirmed = STRESS if is_volatile(state.confirmed_label) else CALM
        raw = STRESS if is_volatile(state.label) else CALM
        result.add(state.key, truth[step], confirmed, raw)
    return result


def keys_in_order(evaluation: Evaluation) -> Iterator[str]:
    """Symbols first, ``_market`` last."""
    keys = sorted(k for k in evaluation.matrices if k != MARKET_KEY)
    yield from keys
    if MARKET_KEY in evaluation.matrices:
        yield MARKET_KEY
