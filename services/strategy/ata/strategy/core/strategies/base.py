"""What every strategy is: a pure, parameterised, per-symbol state machine over bars.

Contract
--------
- One instance follows one symbol. ``update(bar, context)`` consumes the bar that just closed
  and returns that bar's :class:`Signal`, or ``None`` while the strategy is warming up. It is
  ``step`` (advance the state, return the raw strength) followed by ``signal_of`` (clip it and
  build the signal), so a caller that discards a signal can skip building it.
- Bars carry positive finite prices, as ``BarClosed`` guarantees; strategies do not check
  them again per bar.
- No look-ahead: the signal of bar ``t`` depends only on bars ``0..t`` and on the context
  known at ``t`` (regime as of the previous bar, sentiment published up to the bar's close).
- ``strength`` is in [-1, 1]; ``direction`` is its sign (0 for a flat signal); ``horizon_bars``
  is how many bars the view is meant to hold (a function of the parameters only).
- State goes through :meth:`Strategy.snapshot` / :meth:`Strategy.restore`: a restored
  strategy continues bit-for-bit like the original.
- Parameters are a frozen dataclass (:class:`StrategyParams`) that validates itself, names
  which fields are lookbacks and thresholds (so the adaptive layer can scale them by regime),
  and declares its search space for the genetic optimiser.
"""

from __future__ import annotations

import dataclasses
import math
from abc import ABC
from dataclasses import dataclass
from typing import Any, ClassVar, Self

from ata.quant.indicators import StreamingIndicator
from ata.quant.windows import SlidingChannel, SlidingMoments, SlidingRealizedVolatility

__all__ = ["Bar", "MarketContext", "Signal", "Strategy", "StrategyParams", "clip_unit"]


@dataclass(frozen=True, slots=True)
class Bar:
    """One closed OHLCV bar; ``ts_ns`` is its close time."""

    ts_ns: int
    open: float
    high: float
    low: float
    close: float
    volume: float = 0.0


@dataclass(frozen=True, slots=True)
class MarketContext:
    """What a strategy may know besides bars: the regime label in force (``""`` unknown) and the
    latest decayed sentiment score of the symbol (``None`` before any score)."""

    regime: str = ""
    sentiment: float | None = None


@dataclass(frozen=True, slots=True)
class Signal:
    strategy: str
    direction: int
    strength: float
    horizon_bars: int


def clip_unit(x: float) -> float:
    """``x`` clipped to [-1, 1]."""
    return -1.0 if x < -1.0 else 1.0 if x > 1.0 else x


@dataclass(frozen=True)
class StrategyParams:
    """Base of the parameter dataclasses.

    ``LOOKBACKS`` name integer window fields, ``THRESHOLDS`` float threshold fields (both scaled
    by :meth:`scaled`). ``SPACE`` maps tunable fields to inclusive (low, high) bounds; integer
    fields stay integers.
    """

    LOOKBACKS: ClassVar[tuple[str, ...]] = ()
    THRESHOLDS: ClassVar[tuple[str, ...]] = ()
    SPACE: ClassVar[dict[str, tuple[float, float]]] = {}

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) or value <= 0:
                raise ValueError(f"{type(self).__name__}.{f.name} must be a positive finite number, got {value!r}")
        self.validate()

    def validate(self) -> None:
        """Cross-field checks of a subclass; raise ``ValueError``."""

    def scaled(self, lookback_factor: float = 1.0, threshold_factor: float = 1.0) -> Self:
        """These parameters with lookbacks and thresholds multiplied (lookbacks stay integers >= 2)."""
        changes: dict[str, Any] = {name: max(2, round(getattr(self, name) * lookback_factor)) for name in self.LOOKBACKS}
        changes.update({name: getattr(self, name) * threshold_factor for name in self.THRESHOLDS})
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, float | int]:
        # Every field is a number (checked at construction): no need for asdict's recursive deep copy,
        # which made this the largest part of a strategy's snapshot.
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Self:
        """Build from a (partial) mapping; unknown names raise ``ValueError``."""
        names = {f.name: f for f in dataclasses.fields(cls)}
        if unknown := sorted(set(data) - set(names)):
            raise ValueError(f"{cls.__name__}: unknown parameters {', '.join(unknown)}")
        typed = {k: int(v) if isinstance(getattr(cls(), k), int) else float(v) for k, v in data.items()}
        return cls(**typed)


class Strategy(ABC):
    """Base class of strategies (see the module contract).

    Subclasses set ``name``, ``description``, ``params_type``; list indicator attributes in
    ``_indicators``, :class:`SlidingMoments` attributes in ``_windows`` (with the indicator kind
    they snapshot as: ``Sma``, ``RollingStd`` or ``ZScore``, the format of earlier snapshots) and
    plain JSON-serialisable state attributes in ``_state``.
    """

    name: ClassVar[str]
    description: ClassVar[str] = ""
    params_type: ClassVar[type[StrategyParams]]
    _indicators: ClassVar[tuple[str, ...]] = ()
    _windows: ClassVar[dict[str, str]] = {}
    _state: ClassVar[tuple[str, ...]] = ()

    def __init__(self, params: StrategyParams | None = None) -> None:
        if params is None:
            params = self.params_type()
        if not isinstance(params, self.params_type):
            raise TypeError(f"{self.name} takes {self.params_type.__name__}, got {type(params).__name__}")
        self.params = params
        self.signal_name = self.name
        self.horizon_bars = max(1, int(self._horizon()))
        # The last signal built: handed out again while the strength does not change (a held
        # breakout position, a capped exposure, a flat band), which saves building one per bar.
        self._last_signal: Signal | None = None

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "name" in cls.__dict__ and cls.step is Strategy.step and cls.update is Strategy.update:
            raise TypeError(f"strategy {cls.__name__} must implement step() or update()")

    def _horizon(self) -> int:
        """The signal horizon in bars, from ``self.params`` (1 unless a strategy says otherwise)."""
        return 1

    def step(self, bar: Bar, context: MarketContext) -> float | None:
        """Advance the state by the bar that just closed; its raw (unclipped) strength, ``None``
        during warm-up. Strategies written against ``update`` alone get this from their signal."""
        signal = self.update(bar, context)
        return None if signal is None else signal.strength

    def update(self, bar: Bar, context: MarketContext) -> Signal | None:
        """The signal of the bar that just closed, or ``None`` during warm-up. A strategy overrides
        ``step`` (preferred: callers that discard signals skip building them) or this."""
        strength = self.step(bar, context)
        return None if strength is None else self.signal_of(strength)

    def signal_of(self, strength: float) -> Signal:
        """The signal of a raw strength (clipped to [-1, 1])."""
        s = clip_unit(strength) + 0.0  # + 0.0 turns -0.0 into 0.0
        last = self._last_signal
        if last is not None and last.strength == s and last.strategy == self.signal_name:
            return last
        last = self._last_signal = Signal(self.signal_name, (s > 0.0) - (s < 0.0), s, self.horizon_bars)
        return last

    def _signal(self, strength: float, horizon_bars: int) -> Signal:
        """A signal of ``strength`` (clipped) with an explicit horizon: for strategies that implement
        ``update`` and choose the horizon per bar."""
        s = clip_unit(strength) + 0.0
        return Signal(self.signal_name, (s > 0.0) - (s < 0.0), s, max(1, int(horizon_bars)))

    def snapshot(self) -> dict[str, Any]:
        """JSON-serialisable state, restorable with :meth:`restore`."""
        return {
            "strategy": self.name,
            "signal_name": self.signal_name,
            "params": self.params.to_dict(),
            "indicators": {**{n: getattr(self, n).snapshot() for n in self._indicators},
                           **{n: getattr(self, n).snapshot(kind) for n, kind in self._windows.items()}},
            "state": {n: _to_json(getattr(self, n)) for n in self._state},
        }

    @classmethod
    def restore(cls, state: dict[str, Any]) -> Self:
        if state.get("strategy") != cls.name:
            raise ValueError(f"not a {cls.name} snapshot: {state.get('strategy')!r}")
        obj = cls(cls.params_type.from_dict(state["params"]))
        obj.signal_name = state["signal_name"]
        for n in cls._indicators:
            indicator: StreamingIndicator | SlidingRealizedVolatility | SlidingChannel = getattr(obj, n)
            setattr(obj, n, type(indicator).restore(state["indicators"][n]))
        for n in cls._windows:
            setattr(obj, n, SlidingMoments.restore(state["indicators"][n]))
        for n in cls._state:
            setattr(obj, n, _from_json(getattr(obj, n), state["state"][n]))
        return obj


def _to_json(value: Any) -> Any:
    if isinstance(value, float) and math.isnan(value):
        return None
    if hasattr(value, "maxlen"):  # a deque
        return list(value)
    return value


def _from_json(template: Any, value: Any) -> Any:
    """Rebuild a state attribute shaped like ``template`` (the freshly constructed one)."""
    if isinstance(template, float) and value is None:
        return math.nan
    if hasattr(template, "maxlen"):
        return type(template)(value, maxlen=template.maxlen)
    return value
