"""The integrity checker's clean events, built as validated construction builds them, without its cost.

Every clean bar becomes a ``BarClosed`` and every regime observation a ``GroundTruthRegimeObserved``;
with ``Message.origin`` (pydantic validation and a fresh uuid5 name per event) building them cost
more than all the checks. :class:`CleanEvents` builds the same events with :mod:`ata.events.fastpath`:

- the strings of an event (dataset, symbol, timeframe, venue; regime labels) repeat for a whole
  series, so the first event of each combination is built by validated construction (which raises
  the usual ``ValidationError`` for an invalid string) and the combination is remembered as valid,
  together with its origin-id function (:func:`ata.events.envelope.origin_ids`);
- the numbers of each event are checked here, value by value, for what validation enforces
  (exact ``float``/``int`` types, positive finite prices, non-negative finite volume, a consistent
  OHLC, timestamps in range); any value that fails sends the event through validated construction.

The tests hold both paths to equal models, equal ``model_fields_set`` and identical wire bytes.
"""

from __future__ import annotations

import math
import uuid
from collections.abc import Callable
from typing import Final

from ata.events import BarClosed, GroundTruthRegimeObserved
from ata.events.envelope import MAX_TS_NS, MIN_TS_NS, origin_ids
from ata.events.fastpath import assemblable, assembled
from ata.events.values import MARKET_KEY
from ata.marketdata.core.records import RawBar, RegimeObservation

__all__ = ["CleanEvents"]

_ENVELOPE: Final = ("event_id", "event_type", "schema_version", "ts_event", "ts_init", "source", "correlation_id",
                    "causation_id")
_FAST: Final = (assemblable(BarClosed, (*_ENVELOPE, "symbol", "timeframe", "ts_open", "open", "high", "low", "close",
                                        "volume", "venue"))
                and assemblable(GroundTruthRegimeObserved, (*_ENVELOPE, "symbol", "regime", "volatility_regime")))
_INF: Final = math.inf

OriginIds = Callable[[object], uuid.UUID]


def _strings(values: tuple[object, ...]) -> bool:
    """Exact ``str`` each (validation turns a subclass into a plain ``str``: such a value takes that path)."""
    return all(type(value) is str for value in values)


def _timestamp(ts: object) -> bool:
    return type(ts) is int and MIN_TS_NS <= ts <= MAX_TS_NS


def _bar_numbers_ok(raw: RawBar) -> bool:
    """Whether validation accepts ``raw``'s numbers unchanged: exact types, ``0 < low <= open, close <= high``
    (positive, consistent; a NaN fails every comparison), finite, ``0 <= ts_open <= ts_close`` in range."""
    o, h, low, c, v, ts_open = raw.open, raw.high, raw.low, raw.close, raw.volume, raw.ts_open
    return (type(o) is float and type(h) is float and type(low) is float and type(c) is float and type(v) is float
            and 0.0 < low <= o <= h and low <= c <= h and h < _INF and 0.0 <= v < _INF
            and type(ts_open) is int and ts_open >= 0 and _timestamp(raw.ts_close) and ts_open <= raw.ts_close)


class CleanEvents:
    """``BarClosed`` / ``GroundTruthRegimeObserved`` as ``Message.origin`` builds them for the integrity
    checker publishing as ``source`` (see the module contract)."""

    def __init__(self, source: str) -> None:
        self.source = source
        self._bar_ids: dict[tuple[str, str, str, str], OriginIds] = {}  # (dataset, symbol, timeframe, venue)
        self._truth_ids: dict[tuple[str, str, str], OriginIds] = {}  # (dataset, regime, volatility regime)

    def bar(self, raw: RawBar, ts_init: int) -> BarClosed:
        """The ``BarClosed`` of a bar that passed the checks; its natural key is (dataset, symbol, timeframe, open time)."""
        venue = raw.venue or raw.source[:64]
        key = (raw.source, raw.symbol, raw.timeframe, venue)
        ids = self._bar_ids.get(key)
        if ids is None or not (_strings(key) and _bar_numbers_ok(raw) and _timestamp(ts_init)):
            bar = BarClosed.origin(
                natural_key=(raw.source, raw.symbol, raw.timeframe, raw.ts_open), ts_event=raw.ts_close, ts_init=ts_init,
                source=self.source, symbol=raw.symbol, timeframe=raw.timeframe, ts_open=raw.ts_open, open=raw.open,
                high=raw.high, low=raw.low, close=raw.close, volume=raw.volume, venue=venue,
            )
            if _FAST and ids is None and _strings(key):  # validation accepted these strings
                self._bar_ids[key] = origin_ids(BarClosed.__name__, raw.source, raw.symbol, raw.timeframe)
            return bar
        event_id = ids(raw.ts_open)
        return assembled(BarClosed, {
            "event_id": event_id, "event_type": "BarClosed", "schema_version": BarClosed.SCHEMA_VERSION,
            "ts_event": raw.ts_close, "ts_init": ts_init, "source": self.source, "correlation_id": event_id,
            "causation_id": None, "symbol": raw.symbol, "timeframe": raw.timeframe, "ts_open": raw.ts_open,
            "open": raw.open, "high": raw.high, "low": raw.low, "close": raw.close, "volume": raw.volume, "venue": venue,
        })

    def truth(self, obs: RegimeObservation, ts_init: int) -> GroundTruthRegimeObserved:
        """The market's true regime at ``obs.ts``; its natural key is (dataset, market key, time)."""
        key = (obs.source, obs.regime, obs.volatility_regime)
        ids = self._truth_ids.get(key)
        if ids is None or not (_strings(key) and _timestamp(obs.ts) and _timestamp(ts_init)):
            truth = GroundTruthRegimeObserved.origin(
                natural_key=(obs.source, MARKET_KEY, obs.ts), ts_event=obs.ts, ts_init=ts_init, source=self.source,
                symbol=MARKET_KEY, regime=obs.regime, volatility_regime=obs.volatility_regime,
            )
            if _FAST and ids is None and _strings(key):
                self._truth_ids[key] = origin_ids(GroundTruthRegimeObserved.__name__, obs.source, MARKET_KEY)
            return truth
        event_id = ids(obs.ts)
        return assembled(GroundTruthRegimeObserved, {
            "event_id": event_id, "event_type": "GroundTruthRegimeObserved",
            "schema_version": GroundTruthRegimeObserved.SCHEMA_VERSION, "ts_event": obs.ts, "ts_init": ts_init,
            "source": self.source, "correlation_id": event_id, "causation_id": None, "symbol": MARKET_KEY,
            "regime": obs.regime, "volatility_regime": obs.volatility_regime,
        })
