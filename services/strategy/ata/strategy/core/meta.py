"""The meta-strategy: per symbol, every strategy's signal in, one target weight out.

Per bar of a symbol, in this order (all from bars ``0..t`` and context known at ``t``):

1. **Track.** Each strategy's return over the bar is its previous strength times the bar's simple
   return. It feeds an EW tracker over all bars and one per regime (the regime in force when the
   position was taken).
2. **Switch (adaptive, with hysteresis).** A strategy whose tracked annualised Sharpe falls below
   ``switch_off_sharpe`` is switched off; it comes back only above ``switch_on_sharpe`` (higher),
   and no switch happens within ``min_dwell_bars`` of the previous one. Switched-off strategies
   keep being tracked on paper. If every strategy with a signal is off, all of them are used.
3. **Signals.** Each strategy updates (regime-adaptive parameters when enabled, see
   :mod:`ata.strategy.core.strategies.adaptive`).
4. **Method by regime.** ``methods_by_regime[regime]`` (else ``default_method``) chooses:

   - ``equal_weight``: ``w_i = 1``;
   - ``inverse_volatility``: ``w_i = 1 / std_i`` of the tracked returns;
   - ``performance_regime``: ``w_i = max(0, Sharpe_i | regime)``, the strategy's tracked Sharpe
     in the regime in force;
   - ``rl``: the weights of the RL policy's action for the current feature state;
   - ``risk_budget`` (needs ``coordination``): capital by a risk budget per strategy, tilted by
     its tracked performance in the regime in force and down-weighted when redundant (see
     :mod:`ata.strategy.core.coordination`).

   A method that cannot answer falls back along rl → performance_regime → inverse_volatility →
   equal_weight (risk_budget → inverse_volatility): no policy, fewer than ``min_history_bars``
   observations for some strategy (``min_correlation_bars`` returns for risk_budget), or all
   weights zero. A policy whose prediction fails at this bar (it raised, its outputs are not
   finite, or its weights are non-finite, negative or not over its strategies) falls back the
   same way, and the decision carries the failure as a :class:`FallbackRecord` (component
   ``rl_policy``, ``method`` = the method used instead) for the engine to publish.
   With ``coordination.down_weight_redundant`` the weights of every other method are multiplied
   by the strategies' redundancy factors (from the rolling correlation of their tracked returns,
   bars up to ``t`` only). The method published is the one actually used.
   Weights are normalised to sum 1.
5. **Conflict rule.** ``net = sum(w_i * s_i)``, ``gross = sum(w_i * |s_i|)``, agreement
   ``a = |net| / gross`` (1 when every signal is flat). If ``a < min_agreement`` the signals cancel
   out and the target is 0 (stand aside); otherwise ``target = net * a * max_abs_target``: full
   size when the strategies agree, shrunk quadratically as they disagree. Contributions are the
   per-strategy terms, ``weight_i = w_i * a * max_abs_target``, so ``sum(weight_i * s_i)`` equals
   the target exactly (the attribution relies on it).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import Any, Protocol

import numpy as np

from ata.quant.portfolio.coordination import FallbackReason, FallbackRecord
from ata.strategy.core.coordination import CoordinationConfig, CoordinationView, ReturnWindow, StrategyCoordination
from ata.strategy.core.features import FEATURE_NAMES, OnlineFeatures
from ata.strategy.core.policy import NumpyPolicy, PolicyError, PolicyOutputError
from ata.strategy.core.strategies import BUILTIN, Bar, MarketContext, RegimeAdaptive, Signal, Strategy, StrategyParams
from ata.strategy.core.tracking import EwStats, halflife_alpha


class Method(StrEnum):
    EQUAL = "equal_weight"
    INVERSE_VOL = "inverse_volatility"
    PERFORMANCE = "performance_regime"
    RL = "rl"
    RISK_BUDGET = "risk_budget"


#: The component a failing RL policy is reported as (at start and per decision alike).
RL_COMPONENT = "rl_policy"

FALLBACK: dict[Method, Method] = {Method.RL: Method.PERFORMANCE, Method.PERFORMANCE: Method.INVERSE_VOL,
                                  Method.INVERSE_VOL: Method.EQUAL, Method.RISK_BUDGET: Method.INVERSE_VOL}

#: Regime → aggregation method. Trending quiet markets reward what has worked in that regime;
#: volatile ones call for risk balance; sideways markets give no edge to rank on.
DEFAULT_METHODS: dict[str, Method] = {
    "bull_quiet": Method.PERFORMANCE,
    "bear_quiet": Method.PERFORMANCE,
    "bull_volatile": Method.INVERSE_VOL,
    "bear_volatile": Method.INVERSE_VOL,
    "crisis": Method.INVERSE_VOL,
    "sideways": Method.EQUAL,
}


class SignalSource(Protocol):
    signal_name: str

    def update(self, bar: Bar, context: MarketContext) -> Signal | None: ...

    def snapshot(self) -> dict[str, Any]: ...


@dataclass(frozen=True)
class MetaConfig:
    strategies: tuple[str, ...] = tuple(BUILTIN)
    params: Mapping[str, Mapping[str, float]] = field(default_factory=dict)
    methods_by_regime: Mapping[str, Method] = field(default_factory=lambda: dict(DEFAULT_METHODS))
    default_method: Method = Method.EQUAL
    halflife_bars: float = 63.0
    min_history_bars: int = 20
    periods_per_year: float = 252.0
    min_agreement: float = 0.2
    max_abs_target: float = 1.0
    switching: bool = True
    switch_off_sharpe: float = -0.5
    switch_on_sharpe: float = 0.0
    min_dwell_bars: int = 21
    adaptive_parameters: bool = True
    volatile_lookback_scale: float = 0.5
    volatile_threshold_scale: float = 1.5
    coordination: CoordinationConfig | None = None

    def __post_init__(self) -> None:
        if not self.strategies:
            raise ValueError("at least one strategy is needed")
        if self.coordination is None and Method.RISK_BUDGET in {self.default_method, *self.methods_by_regime.values()}:
            raise ValueError("default_method or methods_by_regime use risk_budget, which needs coordination configured")
        unknown = sorted(set(self.coordination.risk_budgets) - set(self.strategies)) if self.coordination else []
        if unknown:
            raise ValueError(f"coordination.risk_budgets names strategies not configured: {', '.join(unknown)}")
        if not self.switch_off_sharpe < self.switch_on_sharpe:
            raise ValueError("hysteresis needs switch_off_sharpe < switch_on_sharpe")
        if not 0.0 <= self.min_agreement <= 1.0:
            raise ValueError("min_agreement must be within [0, 1]")
        if not 0.0 < self.max_abs_target <= 10.0:
            raise ValueError("max_abs_target must be within (0, 10]")

    def method_for(self, regime: str) -> Method:
        return self.methods_by_regime.get(regime, self.default_method)


@dataclass(frozen=True, slots=True)
class Contribution:
    strategy: str
    strength: float
    weight: float


@dataclass(frozen=True, slots=True)
class Decision:
    """The meta-strategy's output for one bar of one symbol."""

    symbol: str
    ts_ns: int
    close: float
    regime: str
    method: Method
    signals: tuple[Signal, ...]
    target_weight: float
    agreement: float
    contributions: tuple[Contribution, ...]
    switched: tuple[tuple[str, bool], ...] = ()
    #: Per strategy with a signal, what cross-strategy coordination saw (empty when it is off).
    coordination: tuple[StrategyCoordination, ...] = ()
    #: The RL policy failed at this bar and ``method`` was used instead (None: it did not, or was not asked).
    fallback: FallbackRecord | None = None


StrategyFactory = Callable[[str], SignalSource]


def make_factory(config: MetaConfig, registry: Mapping[str, type[Strategy]] = BUILTIN) -> StrategyFactory:
    """A factory building the configured strategy ``name`` (regime-adaptive when enabled)."""
    unknown = sorted(set(config.strategies) - set(registry))
    if unknown:
        raise ValueError(f"unknown strategies: {', '.join(unknown)} (known: {', '.join(registry)})")

    def build(name: str) -> SignalSource:
        cls = registry[name]
        params: StrategyParams = cls.params_type.from_dict(dict(config.params.get(name, {})))
        if config.adaptive_parameters:
            return RegimeAdaptive(cls, params, lookback_scale=config.volatile_lookback_scale,
                                  threshold_scale=config.volatile_threshold_scale)
        return cls(params)

    return build


class SymbolBook:
    """Everything the meta-strategy keeps for one symbol."""

    def __init__(self, config: MetaConfig, factory: StrategyFactory, with_features: bool) -> None:
        self.config = config
        self.sources = [factory(name) for name in config.strategies]
        self.names = [s.signal_name for s in self.sources]
        alpha = halflife_alpha(config.halflife_bars)
        self.overall = {n: EwStats(alpha) for n in self.names}
        self.by_regime: dict[str, dict[str, EwStats]] = {}
        self.last_strength: dict[str, float] = {}
        self.active = dict.fromkeys(self.names, True)
        self.since_switch = dict.fromkeys(self.names, 0)
        self.prev_close = math.nan
        self.prev_regime = ""
        #: The switches of the latest bar, ``(strategy, now_active)`` in order (even without a decision).
        self.last_switched: tuple[tuple[str, bool], ...] = ()
        self.features = OnlineFeatures() if with_features else None
        self.last_features: np.ndarray[Any, np.dtype[np.float64]] | None = None
        coordination = config.coordination
        self.returns = None if coordination is None else ReturnWindow(coordination.correlation_window_bars)
        self.columns = {n: i for i, n in enumerate(self.names)}

    def regime_stats(self, regime: str) -> dict[str, EwStats]:
        stats = self.by_regime.get(regime)
        if stats is None:
            alpha = halflife_alpha(self.config.halflife_bars)
            stats = self.by_regime[regime] = {n: EwStats(alpha) for n in self.names}
        return stats

    def track(self, close: float) -> tuple[tuple[str, bool], ...]:
        """Book each strategy's return over the bar that closed at ``close``; apply switching."""
        cfg = self.config
        if math.isnan(self.prev_close):
            return ()
        r = close / self.prev_close - 1.0
        if self.returns is not None:
            held = self.last_strength
            self.returns.add(tuple(held.get(n, 0.0) * r for n in self.names))
        in_regime = self.regime_stats(self.prev_regime)
        switched: list[tuple[str, bool]] = []
        for name, strength in self.last_strength.items():
            ret = strength * r
            stats = self.overall[name]
            stats.update(ret)
            in_regime[name].update(ret)
            self.since_switch[name] += 1
            if not cfg.switching or stats.count < cfg.min_history_bars or self.since_switch[name] < cfg.min_dwell_bars:
                continue
            sharpe = stats.sharpe(cfg.periods_per_year)
            if math.isnan(sharpe):
                continue
            active = self.active[name]
            if (active and sharpe < cfg.switch_off_sharpe) or (not active and sharpe > cfg.switch_on_sharpe):
                self.active[name] = not self.active[name]
                self.since_switch[name] = 0
                switched.append((name, self.active[name]))
        return tuple(switched)


class MetaStrategy:
    """Signals and a target per symbol and bar; see the module contract. ``snapshot``/``restore``."""

    def __init__(self, config: MetaConfig | None = None, *, factory: StrategyFactory | None = None,
                 policy: NumpyPolicy | None = None, features: bool = False) -> None:
        """``features``: compute the online features even without a policy (research runs)."""
        self.config = config or MetaConfig()
        self._features = features
        self.factory = factory or make_factory(self.config)
        self.policy = policy
        self.books: dict[str, SymbolBook] = {}
        if policy is not None:
            self._check_policy(policy)

    def _check_policy(self, policy: NumpyPolicy) -> None:
        if policy.n_features != len(FEATURE_NAMES):
            raise PolicyError(f"policy expects {policy.n_features} features, the feature set has {len(FEATURE_NAMES)}")

    @property
    def uses_features(self) -> bool:
        return self._features or self.policy is not None

    def book(self, symbol: str) -> SymbolBook:
        book = self.books.get(symbol)
        if book is None:
            book = self.books[symbol] = SymbolBook(self.config, self.factory, self.uses_features)
        return book

    def on_bar(self, symbol: str, bar: Bar, context: MarketContext) -> Decision | None:
        """Process one closed bar; ``None`` while every strategy is still warming up."""
        book = self.book(symbol)
        switched = book.last_switched = book.track(bar.close)
        signals: list[Signal] = []
        strengths: dict[str, float] = {}
        for source in book.sources:
            signal = source.update(bar, context)
            if signal is not None:
                signals.append(signal)
                strengths[signal.strategy] = signal.strength
        if book.features is not None:
            book.last_features = book.features.update(bar, context)
        book.last_strength = strengths
        book.prev_close = bar.close
        book.prev_regime = context.regime
        if not signals:
            return None
        names = [s.strategy for s in signals]
        usable = [n for n in names if book.active[n]] or names
        view = self._coordination(book, usable)
        method, weights, failure = self._weights(book, context.regime, names, usable, view)
        report = () if view is None else view.report(names, with_shares=method is Method.RISK_BUDGET)
        decision = self._combine(symbol, bar, context.regime, method=method, signals=signals, weights=weights,
                                 switched=switched, coordination=report)
        return decision if failure is None else replace(decision, fallback=replace(failure, method=method.value))

    # -- weighting -------------------------------------------------------------------------------

    def _coordination(self, book: SymbolBook, usable: list[str]) -> CoordinationView | None:
        coordination = self.config.coordination
        if coordination is None or book.returns is None:
            return None
        return CoordinationView(coordination, book.returns, book.columns, usable)

    def _weights(self, book: SymbolBook, regime: str, names: list[str], usable: list[str],
                 view: CoordinationView | None) -> tuple[Method, dict[str, float], FallbackRecord | None]:
        """The method used, its normalised weights over ``names``, and the RL policy's failure if it had one."""
        method: Method | None = self.config.method_for(regime)
        down_weight = view is not None and view.config.down_weight_redundant
        failure = None
        while method is not None:
            if method is Method.RL:
                raw, failure = self._policy_weights(book, usable)
            else:
                raw = self._raw_weights(method, book, regime, usable, view)
            if raw is not None:
                if down_weight and method is not Method.RISK_BUDGET:  # risk_budget has them in its budgets
                    assert view is not None
                    raw = {n: w * view.redundancy[n] for n, w in raw.items()}
                total = math.fsum(raw.values())
                if total > 0.0:
                    return method, {n: raw.get(n, 0.0) / total for n in names}, failure
            method = FALLBACK.get(method)
        return Method.EQUAL, {n: (1.0 / len(usable) if n in usable else 0.0) for n in names}, failure

    def _policy_weights(self, book: SymbolBook, names: list[str]) -> tuple[dict[str, float] | None, FallbackRecord | None]:
        """The RL policy's weights over ``names`` (None without a policy or features yet); when its prediction
        fails, None and the failure."""
        policy, features = self.policy, book.last_features
        if policy is None or features is None:
            return None, None
        try:
            chosen = policy.strategy_weights(features)
        except PolicyOutputError as exc:
            return None, FallbackRecord(RL_COMPONENT, FallbackReason.NON_FINITE, str(exc)[:1000])
        except Exception as exc:  # whatever a policy raises, trading goes on without it
            return None, FallbackRecord(RL_COMPONENT, FallbackReason.EXCEPTION, f"{type(exc).__name__}: {exc}"[:1000])
        problem = _weights_problem(policy.strategies, chosen)
        if problem is not None:
            return None, FallbackRecord(RL_COMPONENT, *problem)
        return {n: chosen.get(n, 0.0) for n in names}, None

    def _raw_weights(self, method: Method, book: SymbolBook, regime: str, names: list[str],
                     view: CoordinationView | None) -> dict[str, float] | None:
        cfg = self.config
        if method is Method.EQUAL:
            return dict.fromkeys(names, 1.0)
        if method is Method.RISK_BUDGET:
            if view is None:
                return None
            in_regime = book.regime_stats(regime)
            return view.capital([in_regime[n].sharpe(cfg.periods_per_year)
                                 if in_regime[n].count >= cfg.min_history_bars else None for n in names])
        stats = book.overall if method is Method.INVERSE_VOL else book.regime_stats(regime)
        if any(stats[n].count < cfg.min_history_bars for n in names):
            return None
        if method is Method.INVERSE_VOL:
            return {n: 1.0 / max(stats[n].std, 1e-8) for n in names}
        sharpes = {n: stats[n].sharpe(cfg.periods_per_year) for n in names}
        return {n: max(0.0, s) if not math.isnan(s) else 0.0 for n, s in sharpes.items()}

    # -- conflict rule ---------------------------------------------------------------------------

    def _combine(self, symbol: str, bar: Bar, regime: str, *, method: Method, signals: list[Signal],
                 weights: dict[str, float], switched: tuple[tuple[str, bool], ...],
                 coordination: tuple[StrategyCoordination, ...]) -> Decision:
        net, gross = combine(signals, weights)
        agreement = abs(net) / gross if gross > 0.0 else 1.0
        scale = 0.0 if agreement < self.config.min_agreement else agreement * self.config.max_abs_target
        contributions = tuple(Contribution(s.strategy, s.strength, weights[s.strategy] * scale) for s in signals)
        target = net * scale
        return Decision(symbol, bar.ts_ns, bar.close, regime, method, tuple(signals), target + 0.0, agreement,
                        contributions, switched, coordination)

    # -- state -----------------------------------------------------------------------------------

    def snapshot(self) -> dict[str, Any]:
        return {"books": {symbol: _book_snapshot(book) for symbol, book in self.books.items()}}

    def restore(self, state: dict[str, Any]) -> None:
        """Load ``snapshot()`` output into this (identically configured) meta-strategy."""
        self.books = {}
        for symbol, data in state["books"].items():
            book = self.book(symbol)
            book.sources = [_restored(source, saved) for source, saved in zip(book.sources, data["sources"], strict=True)]
            book.overall = {n: EwStats.restore(s) for n, s in data["overall"].items()}
            book.by_regime = {r: {n: EwStats.restore(s) for n, s in d.items()} for r, d in data["by_regime"].items()}
            book.last_strength = dict(data["last_strength"])
            book.active = dict(data["active"])
            book.since_switch = dict(data["since_switch"])
            book.prev_close = math.nan if data["prev_close"] is None else data["prev_close"]
            book.prev_regime = data["prev_regime"]
            if book.features is not None and data.get("features") is not None:
                book.features = OnlineFeatures.restore(data["features"])
            last = data.get("last_features")
            book.last_features = None if last is None else np.array(last, dtype=np.float64)
            if book.returns is not None:
                book.returns.restore(data.get("returns") or [])


def _weights_problem(strategies: tuple[str, ...], chosen: object) -> tuple[FallbackReason, str] | None:
    """Why a policy's weights cannot be used (None: they can): weights over exactly its strategies, finite, >= 0."""
    if not isinstance(chosen, Mapping) or set(chosen) != set(strategies):
        keys = sorted(map(str, chosen)) if isinstance(chosen, Mapping) else type(chosen).__name__
        return FallbackReason.INVALID_OUTPUT, f"weights over {keys}, the policy's strategies are {sorted(strategies)}"
    values = list(chosen.values())
    if not all(isinstance(w, float | int) and math.isfinite(w) for w in values):
        return FallbackReason.NON_FINITE, f"non-finite weights {dict(chosen)}"
    if any(w < 0 for w in values):
        return FallbackReason.BOUNDS_VIOLATED, f"negative weights {dict(chosen)}"
    return None


def combine(signals: list[Signal], weights: Mapping[str, float]) -> tuple[float, float]:
    """``(sum w_i * s_i, sum w_i * |s_i|)`` of the conflict rule."""
    net = math.fsum(weights[s.strategy] * s.strength for s in signals)
    gross = math.fsum(weights[s.strategy] * abs(s.strength) for s in signals)
    return net, gross


def _book_snapshot(book: SymbolBook) -> dict[str, Any]:
    return {
        "sources": [s.snapshot() for s in book.sources],
        "overall": {n: s.snapshot() for n, s in book.overall.items()},
        "by_regime": {r: {n: s.snapshot() for n, s in d.items()} for r, d in book.by_regime.items()},
        "last_strength": dict(book.last_strength),
        "active": dict(book.active),
        "since_switch": dict(book.since_switch),
        "prev_close": None if math.isnan(book.prev_close) else book.prev_close,
        "prev_regime": book.prev_regime,
        "features": None if book.features is None else book.features.snapshot(),
        "last_features": None if book.last_features is None else book.last_features.tolist(),
        "returns": None if book.returns is None else book.returns.snapshot(),
    }


def _restored(source: SignalSource, saved: dict[str, Any]) -> SignalSource:
    if isinstance(source, RegimeAdaptive) != bool(saved.get("adaptive")):
        raise ValueError(f"snapshot of {source.signal_name} does not match the configured adaptivity")
    if isinstance(source, RegimeAdaptive):
        source.restore_state(saved)
        return source
    assert isinstance(source, Strategy)
    return type(source).restore(saved)
