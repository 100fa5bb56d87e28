"""Seeded synthetic market: regime-switching, volatility-clustered, correlated OHLCV bars.

Model
-----
- A Markov chain over regimes (shared by every symbol: it is the market's regime). The
  chain is simulated by holding times: a regime lasts a geometric number of bars with mean
  ``expected_duration_bars``, then the next regime is drawn from the row of
  ``transition_weights`` (diagonal ignored).
- Each regime sets an annualised drift and volatility and a pairwise correlation. Shocks
  follow a one-factor model, ``z = sqrt(rho) * m + sqrt(1 - rho) * e``, so every pair of
  symbols has correlation ``rho`` of the current regime (rising in stress regimes).
- Volatility clusters through a unit-mean GARCH(1,1) multiplier per symbol,
  ``g_t = (1 - a - b) + (a * z_{t-1}^2 + b) * g_{t-1}``; the bar's volatility is
  ``sigma_regime * sqrt(g_t)``, so a regime switch changes volatility at once and
  clustering acts within a regime.
- Log return ``r = (mu - sigma^2 g / 2) dt + sigma sqrt(g dt) z``; a bar opens at the previous
  close; high and low extend ``max(open, close)`` / ``min(open, close)`` by half-normal
  wicks scaled with the bar's volatility, so OHLC is valid by construction
  (``low <= min(open, close) <= max(open, close) <= high``, all prices > 0). Volume is
  positive and rises with volatility.

Determinism: bars are produced in fixed-size blocks; block ``k`` draws from a generator
seeded with ``(seed, k)`` and starts from the carried state of block ``k - 1``. So a seed
fully determines the series, any prefix is the same whatever length is requested, and
``snapshot()`` / ``restore()`` resume exactly. Everything is vectorised over bars and
symbols except the regime chain (one Python step per regime switch) and the GARCH scan
(one numpy step per ``scan_chunk`` bars): a million bars take well under a second.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]

CALM = "calm"
STRESS = "stress"
#: Trading minutes in a regular US equity session.
SESSION_MINUTES = 390
TRADING_DAYS_PER_YEAR = 252


@dataclass(frozen=True)
class Regime:
    """One market regime. ``volatility_regime`` is ``"calm"`` or ``"stress"``."""

    name: str
    volatility_regime: str
    drift_annual: float
    volatility_annual: float
    correlation: float
    expected_duration_bars: float

    def __post_init__(self) -> None:
        if self.volatility_regime not in (CALM, STRESS):
            raise ValueError(f"regime {self.name}: volatility_regime must be {CALM!r} or {STRESS!r}")
        if self.volatility_annual <= 0:
            raise ValueError(f"regime {self.name}: volatility_annual must be > 0")
        if not 0.0 <= self.correlation < 1.0:
            raise ValueError(f"regime {self.name}: correlation must be in [0, 1)")
        if self.expected_duration_bars < 1:
            raise ValueError(f"regime {self.name}: expected_duration_bars must be >= 1")


#: Durations suit 1-minute bars: calm regimes last about five sessions, stress about two.
DEFAULT_REGIMES: tuple[Regime, ...] = (
    Regime("bull_quiet", CALM, drift_annual=0.15, volatility_annual=0.10, correlation=0.25, expected_duration_bars=5 * 390),
    Regime("bear_quiet", CALM, drift_annual=-0.10, volatility_annual=0.14, correlation=0.35, expected_duration_bars=4 * 390),
    Regime("crisis", STRESS, drift_annual=-0.60, volatility_annual=0.50, correlation=0.75, expected_duration_bars=2 * 390),
)


@dataclass(frozen=True)
class SyntheticConfig:
    """Parameters of :class:`SyntheticMarket`.

    ``transition_weights[i][j]`` is the relative chance of moving from regime ``i`` to ``j``
    when regime ``i`` ends (the diagonal is ignored); ``None`` means uniform.
    ``bars_per_year`` converts annual drift/volatility to a bar (default: 1-minute bars).
    """

    n_symbols: int = 10
    seed: int = 0
    regimes: tuple[Regime, ...] = DEFAULT_REGIMES
    transition_weights: tuple[tuple[float, ...], ...] | None = None
    initial_regime: int = 0
    bars_per_year: float = float(TRADING_DAYS_PER_YEAR * SESSION_MINUTES)
    garch_alpha: float = 0.06
    garch_beta: float = 0.92
    initial_price_min: float = 20.0
    initial_price_max: float = 500.0
    base_volume: float = 10_000.0
    volume_dispersion: float = 0.3
    block_bars: int = 8192
    scan_chunk: int = 256

    def __post_init__(self) -> None:
        if self.n_symbols < 1:
            raise ValueError("n_symbols must be >= 1")
        if len(self.regimes) < 2:
            raise ValueError("at least two regimes are needed")
        if not 0 <= self.initial_regime < len(self.regimes):
            raise ValueError("initial_regime out of range")
        if not (self.garch_alpha >= 0 and self.garch_beta > 0 and self.garch_alpha + self.garch_beta < 1):
            raise ValueError("GARCH needs alpha >= 0, beta > 0 and alpha + beta < 1")
        if not 0 < self.initial_price_min <= self.initial_price_max:
            raise ValueError("initial prices must be positive and min <= max")
        if self.block_bars < 1 or self.scan_chunk < 1 or self.bars_per_year <= 0 or self.base_volume <= 0:
            raise ValueError("block_bars, scan_chunk, bars_per_year and base_volume must be positive")
        if self.transition_weights is not None:
            n = len(self.regimes)
            if len(self.transition_weights) != n or any(len(row) != n for row in self.transition_weights):
                raise ValueError("transition_weights must be a square matrix over regimes")
            for i, row in enumerate(self.transition_weights):
                off = [w for j, w in enumerate(row) if j != i]
                if any(w < 0 for w in off) or sum(off) <= 0:
                    raise ValueError(f"transition_weights row {i} needs a positive off-diagonal weight")

    def exit_probabilities(self) -> FloatArray:
        """Row-stochastic matrix of the next regime once the current one ends (zero diagonal)."""
        n = len(self.regimes)
        weights = np.ones((n, n)) if self.transition_weights is None else np.array(self.transition_weights, dtype=float)
        np.fill_diagonal(weights, 0.0)
        probs: FloatArray = weights / weights.sum(axis=1, keepdims=True)
        return probs

    def transition_matrix(self) -> FloatArray:
        """Per-bar regime transition matrix implied by the durations and exit probabilities."""
        stay = np.array([1.0 - 1.0 / r.expected_duration_bars for r in self.regimes])
        matrix: FloatArray = (1.0 - stay)[:, None] * self.exit_probabilities()
        np.fill_diagonal(matrix, stay)
        return matrix


@dataclass(frozen=True)
class BarBlock:
    """Consecutive bars for every symbol: arrays shaped ``(n_bars, n_symbols)``; ``regime`` is ``(n_bars,)``."""

    start_step: int
    regime: IntArray
    open: FloatArray
    high: FloatArray
    low: FloatArray
    close: FloatArray
    volume: FloatArray

    @property
    def n_bars(self) -> int:
        return int(self.regime.shape[0])

    @staticmethod
    def concat(blocks: list[BarBlock]) -> BarBlock:
        if not blocks:
            raise ValueError("nothing to concatenate")
        return BarBlock(
            start_step=blocks[0].start_step,
            regime=np.concatenate([b.regime for b in blocks]),
            open=np.concatenate([b.open for b in blocks]),
            high=np.concatenate([b.high for b in blocks]),
            low=np.concatenate([b.low for b in blocks]),
            close=np.concatenate([b.close for b in blocks]),
            volume=np.concatenate([b.volume for b in blocks]),
        )

    def head(self, n: int) -> BarBlock:
        return BarBlock(
            self.start_step, self.regime[:n], self.open[:n], self.high[:n], self.low[:n], self.close[:n], self.volume[:n]
        )


@dataclass
class _Carry:
    """State handed from one block to the next."""

    block_index: int
    regime: int
    bars_left: int  # bars the current regime still lasts (0: draw a new holding time first)
    close: FloatArray
    garch: FloatArray
    last_shock: FloatArray
    volume_scale: FloatArray


def affine_scan(a: FloatArray, b: float, x0: FloatArray, chunk: int) -> FloatArray:
    """Solve ``x_t = a_t * x_{t-1} + b`` along axis 0 from ``x0`` (vectorised over columns).

    Within a chunk ``x_t = P_t (x0 + b * sum_{k<=t} 1/P_k)`` with ``P_t`` the running
    product of ``a``; chunks keep ``P`` far from underflow. Requires ``a > 0``.
    """
    out = np.empty_like(a)
    x = x0
    for start in range(0, a.shape[0], chunk):
        prod = np.cumprod(a[start : start + chunk], axis=0)
        seg = prod * (x + b * np.cumsum(1.0 / prod, axis=0))
        out[start : start + chunk] = seg
        x = seg[-1]
    return out


class SyntheticMarket:
    """Deterministic generator of :class:`BarBlock` s for a :class:`SyntheticConfig`."""

    def __init__(self, config: SyntheticConfig) -> None:
        self.config = config
        self._exit = config.exit_probabilities()
        self._corr = np.array([r.correlation for r in config.regimes])
        self._mu = np.array([r.drift_annual for r in config.regimes]) / config.bars_per_year
        self._sigma = np.array([r.volatility_annual for r in config.regimes]) / math.sqrt(config.bars_per_year)
        self._calm_sigma = float(min(self._sigma))
        self._carry = self._initial_carry()

    @property
    def regime_names(self) -> tuple[str, ...]:
        return tuple(r.name for r in self.config.regimes)

    @property
    def next_step(self) -> int:
        """Index of the first bar the next call to :meth:`next_block` returns."""
        return self._carry.block_index * self.config.block_bars

    def _initial_carry(self) -> _Carry:
        cfg = self.config
        rng = np.random.default_rng([cfg.seed, 2**32 - 1])  # a stream no block uses
        close = np.exp(rng.uniform(math.log(cfg.initial_price_min), math.log(cfg.initial_price_max), cfg.n_symbols))
        volume_scale = cfg.base_volume * np.exp(rng.normal(0.0, 0.5, cfg.n_symbols))
        return _Carry(
            block_index=0,
            regime=cfg.initial_regime,
            bars_left=0,
            close=close,
            garch=np.ones(cfg.n_symbols),
            last_shock=np.zeros(cfg.n_symbols),
            volume_scale=volume_scale,
        )

    def _regime_path(self, rng: np.random.Generator, n: int, carry: _Carry) -> IntArray:
        path = np.empty(n, dtype=np.int64)
        regime, left, filled = carry.regime, carry.bars_left, 0
        while filled < n:
            if left == 0:
                left = int(rng.geometric(1.0 / self.config.regimes[regime].expected_duration_bars))
            take = min(left, n - filled)
            path[filled : filled + take] = regime
            filled += take
            left -= take
            if left == 0:
                regime = int(rng.choice(len(self.config.regimes), p=self._exit[regime]))
        carry.regime, carry.bars_left = regime, left
        return path

    def next_block(self) -> BarBlock:
        """The next ``block_bars`` bars; advances the generator."""
        cfg = self.config
        carry = self._carry
        rng = np.random.default_rng([cfg.seed, carry.block_index])
        n, s = cfg.block_bars, cfg.n_symbols
        regime = self._regime_path(rng, n, carry)

        rho = self._corr[regime][:, None]
        market = rng.standard_normal((n, 1))
        shocks = np.sqrt(rho) * market + np.sqrt(1.0 - rho) * rng.standard_normal((n, s))

        alpha, beta = cfg.garch_alpha, cfg.garch_beta
        prev_shock = np.vstack([carry.last_shock[None, :], shocks[:-1]])
        garch = affine_scan(alpha * prev_shock**2 + beta, 1.0 - alpha - beta, carry.garch, cfg.scan_chunk)

        sigma = self._sigma[regime][:, None] * np.sqrt(garch)
        log_ret = self._mu[regime][:, None] - 0.5 * sigma**2 + sigma * shocks
        close = carry.close * np.exp(np.cumsum(log_ret, axis=0))
        open_ = np.vstack([carry.close[None, :], close[:-1]])
        high = np.maximum(open_, close) * np.exp(0.5 * sigma * np.abs(rng.standard_normal((n, s))))
        low = np.minimum(open_, close) * np.exp(-0.5 * sigma * np.abs(rng.standard_normal((n, s))))
        activity = sigma / self._calm_sigma
        noise = np.exp(rng.normal(0.0, cfg.volume_dispersion, (n, s)))
        volume = np.maximum(1.0, np.round(carry.volume_scale * activity * noise))

        block = BarBlock(carry.block_index * n, regime, open_, high, low, close, volume)
        carry.block_index += 1
        carry.close = close[-1].copy()
        carry.garch = garch[-1].copy()
        carry.last_shock = shocks[-1].copy()
        return block

    def blocks(self) -> Iterator[BarBlock]:
        """Endless stream of blocks from the current state."""
        while True:
            yield self.next_block()

    def generate(self, n_bars: int) -> BarBlock:
        """The next ``n_bars`` bars as one block (whole blocks are drawn; the rest is discarded)."""
        if n_bars < 1:
            raise ValueError("n_bars must be >= 1")
        blocks: list[BarBlock] = []
        total = 0
        while total < n_bars:
            blocks.append(self.next_block())
            total += blocks[-1].n_bars
        return BarBlock.concat(blocks).head(n_bars)

    def snapshot(self) -> dict[str, Any]:
        """Plain-data state; :meth:`restore` continues exactly where this left off."""
        c = self._carry
        return {
            "block_index": c.block_index,
            "regime": c.regime,
            "bars_left": c.bars_left,
            "close": c.close.tolist(),
            "garch": c.garch.tolist(),
            "last_shock": c.last_shock.tolist(),
            "volume_scale": c.volume_scale.tolist(),
        }

    def restore(self, state: dict[str, Any]) -> None:
        self._carry = _Carry(
            block_index=int(state["block_index"]),
            regime=int(state["regime"]),
            bars_left=int(state["bars_left"]),
            close=np.array(state["close"], dtype=float),
            garch=np.array(state["garch"], dtype=float),
            last_shock=np.array(state["last_shock"], dtype=float),
            volume_scale=np.array(state["volume_scale"], dtype=float),
        )


def generate_bars(config: SyntheticConfig, n_bars: int) -> BarBlock:
    """Convenience: the first ``n_bars`` bars of a fresh :class:`SyntheticMarket`."""
    return SyntheticMarket(config).generate(n_bars)
