"""The engine's output events, built fast and byte-for-byte as validated construction builds them.

A bar of a symbol yields up to seven events; built with ``Message.caused_by`` (pydantic validation
plus ``uuid.uuid5``) they cost more than the whole meta-strategy. :class:`OutputFactory` builds
the same events with :mod:`ata.events.fastpath`: ids by ``derived_ids``, and
``SignalGenerated``/``TargetProposed`` assembled without re-validation when every value passes
the checks here (plain Python: exact types, bounds, finiteness, lengths, the symbol pattern). Any
value that fails a check sends that event through ``caused_by`` instead, so invalid values raise
the same ``ValidationError`` as before. The tests hold both paths to equal models and identical
wire bytes, at every bound.
"""

from __future__ import annotations

import math
import re
import uuid
from collections.abc import Sequence
from typing import Final

from ata.events import BarClosed, Message
from ata.events.envelope import MAX_TS_NS, MIN_TS_NS
from ata.events.fastpath import assemblable, assembled, derived_ids
from ata.events.strategy import ContributingSignal, SignalGenerated, TargetProposed
from ata.events.values import SYMBOL_PATTERN
from ata.strategy.core.meta import Contribution, Decision, Method
from ata.strategy.core.strategies import Signal

__all__ = ["OutputFactory"]

_ENVELOPE: Final = ("event_id", "event_type", "schema_version", "ts_event", "ts_init", "source", "correlation_id",
                    "causation_id")
_SIGNAL_FIELDS: Final = (*_ENVELOPE, "strategy", "symbol", "direction", "strength", "horizon_bars")
_TARGET_FIELDS: Final = (*_ENVELOPE, "symbol", "target_weight", "reference_price", "method", "regime", "contributions")
_FAST: Final = (assemblable(SignalGenerated, _SIGNAL_FIELDS) and assemblable(TargetProposed, _TARGET_FIELDS)
                and assemblable(ContributingSignal, ("strategy", "strength", "weight")))
_METHOD_VALUES: Final = {m: m.value for m in Method}
_SYMBOL: Final = re.compile(SYMBOL_PATTERN)


def _unit(x: object) -> bool:
    return type(x) is float and -1.0 <= x <= 1.0


def _finite(x: object) -> bool:
    return type(x) is float and math.isfinite(x)


class OutputFactory:
    """Outputs of a decision, for one ``source`` (``service/instance``); see the module contract."""

    def __init__(self, source: str) -> None:
        self.source = source
        service = source.split("/", maxsplit=1)[0]
        self._signal_salt = f"{service}:{SignalGenerated.__name__}"
        self._target_salt = f"{service}:{TargetProposed.__name__}"
        # Strategy names, symbols, methods and regimes are few and repeat every bar: each is checked
        # once and remembered.
        self._source_ok = type(source) is str and 1 <= len(source) <= 200
        self._valid_names: set[str] = set()
        self._valid_symbols: set[str] = set()
        self._valid_labels: set[tuple[object, object]] = set()

    def build(self, bar: BarClosed, decision: Decision, signals: Sequence[int] | None = None) -> list[Message]:
        """``SignalGenerated`` of the signals at positions ``signals`` of ``decision`` (index = position; None:
        every signal), then ``TargetProposed`` (index 0), all caused by ``bar``."""
        envelope_ok = self._envelope_ok(bar)
        positions = range(len(decision.signals)) if signals is None else signals
        out: list[Message] = self._signals(bar, decision, positions, envelope_ok) if positions else []
        out.append(self._target(bar, decision.target_weight, _METHOD_VALUES[decision.method], decision.regime,
                                decision.contributions, envelope_ok=envelope_ok))
        return out

    def signals(self, bar: BarClosed, decision: Decision, positions: Sequence[int]) -> list[Message]:
        """``SignalGenerated`` of the signals at ``positions`` of ``decision`` (index = position), caused by ``bar``."""
        return self._signals(bar, decision, positions, self._envelope_ok(bar)) if positions else []

    def target(self, bar: BarClosed, weight: float, method: str, regime: str,
               contributions: Sequence[Contribution]) -> TargetProposed:
        """The ``TargetProposed`` of ``bar``'s symbol (index 0 of ``bar``): ``weight``, decided by ``method``."""
        return self._target(bar, weight, method, regime, contributions, envelope_ok=self._envelope_ok(bar))

    def _signals(self, bar: BarClosed, decision: Decision, positions: Sequence[int], envelope_ok: bool) -> list[Message]:
        out: list[Message] = []
        ids = derived_ids(bar.event_id, self._signal_salt, positions)
        for i, event_id in zip(positions, ids, strict=True):
            s = decision.signals[i]
            fast = self._fast_signal(bar, event_id, s) if envelope_ok else None
            out.append(fast or SignalGenerated.caused_by(
                bar, index=i, source=self.source, strategy=s.strategy, symbol=bar.symbol, direction=s.direction,
                strength=s.strength, horizon_bars=s.horizon_bars))
        return out

    def _target(self, bar: BarClosed, weight: float, method: str, regime: str, contributions: Sequence[Contribution],
                *, envelope_ok: bool) -> TargetProposed:
        parts = tuple(
            assembled(ContributingSignal, {"strategy": c.strategy, "strength": c.strength, "weight": c.weight})
            if envelope_ok and type(c.strategy) is str and _unit(c.strength) and _finite(c.weight)
            else ContributingSignal(strategy=c.strategy, strength=c.strength, weight=c.weight)
            for c in contributions)
        (target_id,) = derived_ids(bar.event_id, self._target_salt, (0,))
        fast = self._fast_target(bar, target_id, weight, method, regime, contributions=parts) if envelope_ok else None
        return fast or TargetProposed.caused_by(
            bar, index=0, source=self.source, symbol=bar.symbol, target_weight=weight, reference_price=bar.close,
            method=method, regime=regime, contributions=parts)

    # -- checks: True only when validation would accept the value unchanged ------------------------

    def _envelope_ok(self, bar: BarClosed) -> bool:
        ts = bar.ts_event
        return (_FAST and self._source_ok and type(ts) is int and MIN_TS_NS <= ts <= MAX_TS_NS
                and type(bar.event_id) is uuid.UUID and type(bar.correlation_id) is uuid.UUID
                and self._symbol_ok(bar.symbol))

    def _symbol_ok(self, symbol: object) -> bool:
        if symbol in self._valid_symbols:
            return True
        if type(symbol) is str and _SYMBOL.fullmatch(symbol):
            self._valid_symbols.add(symbol)
            return True
        return False

    def _name_ok(self, name: object) -> bool:
        if name in self._valid_names:
            return True
        if type(name) is str and 1 <= len(name) <= 64:
            self._valid_names.add(name)
            return True
        return False

    def _labels_ok(self, method: object, regime: object) -> bool:
        key = (method, regime)
        if key in self._valid_labels:
            return True
        if type(method) is str and type(regime) is str and 1 <= len(method) <= 64 and len(regime) <= 64:
            self._valid_labels.add(key)
            return True
        return False

    # -- fast paths: the event, or None when some value needs validation -----------------------------

    def _fast_signal(self, bar: BarClosed, event_id: uuid.UUID, s: Signal) -> SignalGenerated | None:
        d, h, strength = s.direction, s.horizon_bars, s.strength
        if not (type(d) is int and -1 <= d <= 1 and type(h) is int and h >= 1 and _unit(strength)
                and self._name_ok(s.strategy)):
            return None
        ts = bar.ts_event
        return assembled(SignalGenerated, {
            "event_id": event_id, "event_type": "SignalGenerated", "schema_version": SignalGenerated.SCHEMA_VERSION,
            "ts_event": ts, "ts_init": ts, "source": self.source, "correlation_id": bar.correlation_id,
            "causation_id": bar.event_id, "strategy": s.strategy, "symbol": bar.symbol, "direction": d,
            "strength": strength, "horizon_bars": h,
        })

    def _fast_target(self, bar: BarClosed, event_id: uuid.UUID, w: float, method: str, regime: str, *,
                     contributions: tuple[ContributingSignal, ...]) -> TargetProposed | None:
        price = bar.close
        if not (_finite(w) and -10.0 <= w <= 10.0 and _finite(price) and price > 0.0 and self._labels_ok(method, regime)):
            return None
        ts = bar.ts_event
        return assembled(TargetProposed, {
            "event_id": event_id, "event_type": "TargetProposed", "schema_version": TargetProposed.SCHEMA_VERSION,
            "ts_event": ts, "ts_init": ts, "source": self.source, "correlation_id": bar.correlation_id,
            "causation_id": bar.event_id, "symbol": bar.symbol, "target_weight": w, "reference_price": price,
            "method": method, "regime": regime, "contributions": contributions,
        })
