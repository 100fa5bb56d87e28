"""Data integrity: every raw record in, clean events or anomalies out. Pure and deterministic.

Contract
--------
:meth:`IntegrityChecker.process` takes one :data:`~ata.marketdata.core.records.SourceItem`
and returns the events it causes, in order:

- a clean bar becomes :class:`BarClosed`, a clean quote :class:`QuoteUpdated`, a regime
  observation :class:`GroundTruthRegimeObserved`;
- each problem becomes a :class:`DataAnomalyDetected` (kind, severity, symbol, evidence).
  A *quarantined* record is not published as a clean event. Per symbol the checks are:
  out-of-order / duplicate timestamps (quarantined), invalid OHLC and non-positive prices or
  negative volume (quarantined, critical), zero volume (info, published unless
  ``quarantine_zero_volume``), gaps against the session calendar (warning, the bar is
  published), price spikes by robust z-score of log returns (quarantined; after
  ``spike_max_consecutive`` spikes in a row at a consistent new level the level is accepted,
  e.g. an unadjusted split), crossed or non-positive quotes (quarantined), disagreement with
  a reference source beyond ``disagreement_tolerance_bps`` (warning), stale feed from
  :meth:`IntegrityChecker.tick` (warning) and malformed rows (warning, or
  :class:`MalformedRecordError` when ``on_bad_row == "stop"``);
- a per-symbol :class:`DataBreaker` counts anomalies of severity warning or worse per bar:
  it opens when ``breaker_open_after_anomalies`` of the last ``breaker_window_bars`` bars
  were anomalous and closes after ``breaker_close_after_clean_bars`` clean bars in a row;
  each transition emits :class:`DataReliabilityChanged`.

Event ids are derived from natural keys only (dataset, symbol, timeframe, bar open time,
kind, occurrence), never from wall time or instance, so replaying the same input
reproduces the same ids. Time is the event time of the data; :meth:`tick` gets "now"
in that same domain from the shell. :meth:`snapshot` / :meth:`restore` round-trip the state.

Why not ``ata.runtime.resilience.CircuitBreaker``: that breaker guards calls to a dependency
over a wall-clock window with a cooldown and has no snapshot; data reliability is counted
in bars of event time and must survive a restart exactly, so the small breaker here is a
plain state machine over bar outcomes.
"""

from __future__ import annotations

import bisect
import math
import re
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from ata.events import (
    AnomalyKind,
    BarClosed,
    DataAnomalyDetected,
    DataReliabilityChanged,
    Message,
    QuoteUpdated,
    Severity,
)
from ata.events.envelope import MAX_TS_NS, MIN_TS_NS
from ata.events.values import MARKET_KEY
from ata.marketdata.core.batch import RollingWindows, log_returns, missing_by_time, missing_slots, order_gap_value_ok
from ata.marketdata.core.calendar import SessionCalendar
from ata.marketdata.core.outputs import CleanEvents
from ata.marketdata.core.records import (
    I64,
    SYMBOL_REGEX,
    BadRecord,
    BarBatch,
    CleanBars,
    MalformedRecordError,
    RawBar,
    RawQuote,
    RegimeObservation,
    SourceItem,
    timeframe_ns,
)

#: BarClosed's timeframe constraint (the batch path proves it once per batch).
_TIMEFRAME_PATTERN = re.compile(BarClosed.model_fields["timeframe"].metadata[0].pattern)
#: Rows screened at once by the batch path: the most at first (a screen costs about as much per call as
#: for thousands of rows), few after an anomaly (where the next may be near), doubling while rows stay clean.
_MIN_BLOCK, _MAX_BLOCK = 64, 8192
#: Scale factor making the median absolute deviation a consistent estimator of sigma.
MAD_TO_SIGMA = 1.4826
Evidence = dict[str, str | float | int | bool | None]
#: ``report(kind, severity, quarantine, evidence)``: how a check records an anomaly.
Report = Callable[[AnomalyKind, Severity, bool, Evidence], None]


@dataclass(frozen=True)
class IntegrityConfig:
    """Thresholds of the integrity checks (units in the names; bars count records of one symbol)."""

    spike_window_bars: int = 50
    spike_min_observations: int = 20
    spike_robust_z_threshold: float = 15.0
    #: Floor of the robust scale (log return): flat, tick-bound prices have a MAD of 0, and a
    #: one-tick move must not be a spike; with the threshold, a spike needs a move of >= 1.5 %.
    spike_min_scale: float = 1e-3
    spike_max_consecutive: int = 3
    max_staleness_ms: int = 120_000
    detect_gaps: bool = True
    duplicate_memory_bars: int = 256
    quarantine_zero_volume: bool = False
    disagreement_tolerance_bps: float = 50.0
    reconcile_memory_bars: int = 256
    breaker_window_bars: int = 20
    breaker_open_after_anomalies: int = 3
    breaker_close_after_clean_bars: int = 10
    on_bad_row: Literal["skip", "stop"] = "skip"

    def __post_init__(self) -> None:
        if self.spike_window_bars < 3 or not 3 <= self.spike_min_observations <= self.spike_window_bars:
            raise ValueError("need 3 <= spike_min_observations <= spike_window_bars")
        if self.spike_robust_z_threshold <= 0 or self.spike_min_scale <= 0 or self.spike_max_consecutive < 1:
            raise ValueError("spike thresholds must be positive")
        if self.max_staleness_ms < 0 or self.duplicate_memory_bars < 1 or self.reconcile_memory_bars < 1:
            raise ValueError("max_staleness_ms >= 0 and memories >= 1 required")
        if not 1 <= self.breaker_open_after_anomalies <= self.breaker_window_bars:
            raise ValueError("need 1 <= breaker_open_after_anomalies <= breaker_window_bars")
        if self.breaker_close_after_clean_bars < 1 or self.disagreement_tolerance_bps < 0:
            raise ValueError("breaker_close_after_clean_bars >= 1 and disagreement_tolerance_bps >= 0 required")


@dataclass
class DataBreaker:
    """Per-symbol reliability breaker over bar outcomes (True = anomalous bar)."""

    window_bars: int
    open_after: int
    close_after: int
    outcomes: deque[bool] = field(default_factory=deque)
    open: bool = False
    clean_run: int = 0

    def record(self, anomalous: bool) -> bool | None:
        """Add one bar's outcome; returns the new reliability if it changed, else ``None``."""
        if self.open:
            self.clean_run = 0 if anomalous else self.clean_run + 1
            if self.clean_run >= self.close_after:
                self.open, self.clean_run = False, 0
                self.outcomes.clear()
                return True
            return None
        self.outcomes.append(anomalous)
        if len(self.outcomes) > self.window_bars:
            self.outcomes.popleft()
        if anomalous and sum(self.outcomes) >= self.open_after:
            self.open, self.clean_run = True, 0
            return False
        return None

    def snapshot(self) -> dict[str, Any]:
        return {"outcomes": list(self.outcomes), "open": self.open, "clean_run": self.clean_run}

    def restore(self, state: dict[str, Any]) -> None:
        self.outcomes = deque(bool(x) for x in state["outcomes"])
        self.open = bool(state["open"])
        self.clean_run = int(state["clean_run"])


@dataclass
class _SymbolState:
    breaker: DataBreaker
    last_ts_open: int | None = None
    last_slot: int | None = None
    last_quarantined: bool = False
    last_clean_close: float | None = None
    returns: deque[float] = field(default_factory=deque)
    sorted_returns: list[float] = field(default_factory=list)
    consecutive_spikes: int = 0
    seen: OrderedDict[int, tuple[float, float, float, float, float]] = field(default_factory=OrderedDict)
    occurrences: dict[int, int] = field(default_factory=dict)
    last_timeframe: str = ""
    last_ts_close: int = 0
    stale: bool = False
    primary_closes: OrderedDict[int, float] = field(default_factory=OrderedDict)
    reference_closes: OrderedDict[int, float] = field(default_factory=OrderedDict)
    last_quote_ts: int = -1
    quote_occurrence: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "breaker": self.breaker.snapshot(),
            "last_ts_open": self.last_ts_open,
            "last_slot": self.last_slot,
            "last_quarantined": self.last_quarantined,
            "last_clean_close": self.last_clean_close,
            "returns": list(self.returns),
            "consecutive_spikes": self.consecutive_spikes,
            "seen": [[ts, *values] for ts, values in self.seen.items()],
            "occurrences": [[ts, n] for ts, n in self.occurrences.items()],
            "last_timeframe": self.last_timeframe,
            "last_ts_close": self.last_ts_close,
            "stale": self.stale,
            "primary_closes": list(self.primary_closes.items()),
            "reference_closes": list(self.reference_closes.items()),
            "last_quote_ts": self.last_quote_ts,
            "quote_occurrence": self.quote_occurrence,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any], breaker: DataBreaker) -> _SymbolState:
        breaker.restore(data["breaker"])
        returns = [float(x) for x in data["returns"]]
        return cls(
            breaker=breaker,
            last_ts_open=data["last_ts_open"],
            last_slot=data["last_slot"],
            last_quarantined=bool(data["last_quarantined"]),
            last_clean_close=data["last_clean_close"],
            returns=deque(returns),
            sorted_returns=sorted(returns),
            consecutive_spikes=int(data["consecutive_spikes"]),
            seen=OrderedDict((int(row[0]), (row[1], row[2], row[3], row[4], row[5])) for row in data["seen"]),
            occurrences={int(ts): int(n) for ts, n in data["occurrences"]},
            last_timeframe=data["last_timeframe"],
            last_ts_close=int(data["last_ts_close"]),
            stale=bool(data["stale"]),
            primary_closes=OrderedDict((int(ts), float(c)) for ts, c in data["primary_closes"]),
            reference_closes=OrderedDict((int(ts), float(c)) for ts, c in data["reference_closes"]),
            last_quote_ts=int(data["last_quote_ts"]),
            quote_occurrence=int(data["quote_occurrence"]),
        )


def _put_bounded(memory: OrderedDict[int, Any], key: int, value: Any, limit: int) -> None:
    memory[key] = value
    if len(memory) > limit:
        memory.popitem(last=False)


class IntegrityChecker:
    """The market data core. ``source`` is this service's ``Message.source`` (``marketdata/<instance>``);
    records from a source named in ``reference_sources`` are only compared, never published."""

    def __init__(
        self,
        config: IntegrityConfig,
        *,
        calendar: SessionCalendar | None,
        source: str,
        reference_sources: frozenset[str] = frozenset(),
    ) -> None:
        self.config = config
        self.calendar = calendar
        self.source = source
        self.reference_sources = reference_sources
        self._symbols: dict[str, _SymbolState] = {}
        self._staleness_ns = config.max_staleness_ms * 1_000_000
        self._events = CleanEvents(source)

    # -- entry points ---------------------------------------------------------------------------
    def process(self, item: SourceItem, ts_init: int) -> list[Message]:
        """All events caused by one source record (see the module contract)."""
        if isinstance(item, RawBar):
            if item.source in self.reference_sources:
                return self._on_reference_bar(item, ts_init)
            return self._on_bar(item, ts_init)
        if isinstance(item, RawQuote):
            return self._on_quote(item, ts_init)
        if isinstance(item, RegimeObservation):
            return [self._events.truth(item, ts_init)]
        return self._on_bad_record(item, ts_init)

    def process_batch(self, batch: BarBatch, ts_init: int) -> list[CleanBars | Message]:
        """What :meth:`process` gives for ``batch.items()`` one by one, with runs of clean bars left unbuilt.

        Per symbol (symbols in ``batch.symbols`` order, each symbol's rows in batch order) the
        outputs equal :meth:`process`'s for that symbol's records, except that a run of clean bars
        is returned as :class:`CleanBars` (rows whose :class:`BarClosed` satisfies every constraint
        of the model, proven here) instead of built messages; the checker's state afterwards is
        the same. Across symbols the order is by symbol, not by time (topics are keyed by symbol).

        While a symbol is in a steady state (a full spike window, breaker closed), its rows are
        screened in blocks with numpy (:mod:`ata.marketdata.core.batch`); a row the screen does not
        pass, and every row while the state is not steady, goes through :meth:`process`.
        """
        eligible = (batch.source not in self.reference_sources and not self.reference_sources
                    and _TIMEFRAME_PATTERN.fullmatch(batch.timeframe) is not None and 1 <= len(self.source) <= 200
                    and len(batch.venue) <= 64 and MIN_TS_NS <= ts_init <= MAX_TS_NS)
        order = np.argsort(batch.symbol_index, kind="stable")
        bounds = np.searchsorted(batch.symbol_index[order], np.arange(len(batch.symbols) + 1))
        out: list[CleanBars | Message] = []
        for code, symbol in enumerate(batch.symbols):
            rows = order[bounds[code]:bounds[code + 1]]
            fast = eligible and SYMBOL_REGEX.fullmatch(symbol) is not None
            pos, block = 0, _MAX_BLOCK
            while pos < len(rows):
                state = self._symbols.get(symbol)
                if fast and state is not None and self._steady(state):
                    clean = self._clean_run(batch, rows[pos:pos + block], state)
                    if clean:
                        out.append(CleanBars(batch, rows[pos:pos + clean]))
                    if clean == len(rows[pos:pos + block]):
                        pos, block = pos + clean, min(2 * block, _MAX_BLOCK)
                        continue
                    pos, block = pos + clean, _MIN_BLOCK
                out.extend(self.process(batch.raw(int(rows[pos])), ts_init))
                pos += 1
        return out

    def _steady(self, state: _SymbolState) -> bool:
        """Whether the next bars can be screened in bulk: a full spike window, a reference close, breaker closed."""
        return (state.last_ts_open is not None and state.last_clean_close is not None and not state.breaker.open
                and len(state.returns) == self.config.spike_window_bars)

    def _clean_run(self, batch: BarBatch, rows: I64, state: _SymbolState) -> int:
        """How many leading ``rows`` the per-record path would publish with no anomaly; advances ``state`` over them."""
        cfg = self.config
        assert state.last_ts_open is not None and state.last_clean_close is not None
        ts_open, ts_close = batch.ts_open[rows], batch.ts_close[rows]
        values = (batch.open[rows], batch.high[rows], batch.low[rows], batch.close[rows], batch.volume[rows])
        slots = None if self.calendar is None else self.calendar.slots(ts_open, batch.timeframe)
        missing = None
        if cfg.detect_gaps:
            missing = (missing_by_time(ts_open, state.last_ts_open, timeframe_ns(batch.timeframe)) if slots is None
                       else missing_slots(slots, state.last_slot))
        ok = order_gap_value_ok(ts_open, ts_close, values, last_ts_open=state.last_ts_open, missing=missing)
        clean = len(rows) if ok.all() else int(np.argmin(ok))
        returns = log_returns(values[3][:clean], state.last_clean_close)
        if clean:
            windows = RollingWindows(list(state.returns), returns, cfg.spike_window_bars)
            threshold = cfg.spike_robust_z_threshold * cfg.spike_min_scale
            for i, median in zip(*windows.beyond(threshold), strict=True):
                if self._robust_z_if_extreme(returns[i], median, windows.sorted_window(i)) is not None:
                    clean = i
                    break
        if clean:
            self._advance_clean(state, batch, rows[:clean], returns[:clean])
            if slots is not None:
                state.last_slot = int(slots[clean - 1]) if slots[clean - 1] >= 0 else None
        return clean

    def _advance_clean(self, state: _SymbolState, batch: BarBatch, rows: I64, returns: list[float]) -> None:
        """The state after :meth:`_on_bar` published ``rows`` as clean bars, one by one (``last_slot`` aside)."""
        cfg = self.config
        limit = cfg.duplicate_memory_bars
        recent = rows[-limit:]
        columns = (batch.open[recent], batch.high[recent], batch.low[recent], batch.close[recent], batch.volume[recent])
        stamps = batch.ts_open[recent].tolist()
        seen = zip(stamps, zip(*(c.tolist() for c in columns), strict=True), strict=True)
        if len(stamps) == limit:  # every remembered bar is pushed out: the memories are exactly these bars
            state.occurrences = dict.fromkeys(stamps, 1)
            state.seen = OrderedDict(seen)
        else:
            for ts, values in seen:
                state.occurrences[ts] = 1  # every ts is new: all earlier ones are <= last_ts_open
                if len(state.occurrences) > limit:
                    del state.occurrences[next(iter(state.occurrences))]
                _put_bounded(state.seen, ts, values, limit)
        last = int(rows[-1])
        state.last_ts_open = int(batch.ts_open[last])
        state.last_ts_close = int(batch.ts_close[last])
        state.last_timeframe = batch.timeframe
        state.last_quarantined = False
        state.stale = False
        state.last_clean_close = float(batch.close[last])
        state.consecutive_spikes = 0
        window = cfg.spike_window_bars  # the window keeps the last `window` returns of the old ones and the run's
        state.returns = deque(returns[-window:] if len(returns) >= window else [*state.returns, *returns][-window:])
        state.sorted_returns = sorted(state.returns)
        outcomes = state.breaker.outcomes
        outcomes.extend([False] * min(len(rows), state.breaker.window_bars))
        for _ in range(len(outcomes) - state.breaker.window_bars):
            outcomes.popleft()

    def tick(self, now_ns: int, ts_init: int) -> list[Message]:
        """Stale-feed check at event-time ``now_ns``: one anomaly per symbol and stale episode."""
        out: list[Message] = []
        for symbol, state in self._symbols.items():
            if state.stale or state.last_ts_open is None:
                continue
            due = self._next_due(state)
            if due is None or now_ns - due <= self._staleness_ns:
                continue
            state.stale = True
            key = ("stale", due)
            evidence: Evidence = {"due_ns": due, "now_ns": now_ns, "overdue_ms": (now_ns - due) // 1_000_000,
                                  "max_staleness_ms": self.config.max_staleness_ms, "last_ts_open": state.last_ts_open}
            out.append(self._anomaly(symbol, key, ts_event=now_ns, ts_init=ts_init, kind=AnomalyKind.STALE_FEED,
                                     severity=Severity.WARNING, quarantined=False, evidence=evidence))
            out.extend(self._breaker_outcome(symbol, state, anomalous=True, key=key, ts=now_ns, ts_init=ts_init))
        return out

    def reliability(self) -> dict[str, bool]:
        """Current reliability per symbol seen so far."""
        return {symbol: not state.breaker.open for symbol, state in self._symbols.items()}

    # -- bars -------------------------------------------------------------------------------------
    def _state(self, symbol: str) -> _SymbolState:
        state = self._symbols.get(symbol)
        if state is None:
            state = _SymbolState(breaker=self._new_breaker())
            self._symbols[symbol] = state
        return state

    def _new_breaker(self) -> DataBreaker:
        cfg = self.config
        return DataBreaker(cfg.breaker_window_bars, cfg.breaker_open_after_anomalies, cfg.breaker_close_after_clean_bars)

    def _on_bar(self, raw: RawBar, ts_init: int) -> list[Message]:
        state = self._state(raw.symbol)
        occurrence = state.occurrences.get(raw.ts_open, 0)
        state.occurrences[raw.ts_open] = occurrence + 1
        if len(state.occurrences) > self.config.duplicate_memory_bars:
            del state.occurrences[next(iter(state.occurrences))]
        key = (raw.timeframe, raw.ts_open, occurrence)
        anomalies: list[DataAnomalyDetected] = []
        quarantined = False

        def report(kind: AnomalyKind, severity: Severity, quarantine: bool, evidence: Evidence) -> None:
            nonlocal quarantined
            quarantined = quarantined or quarantine
            if raw.location:
                evidence["location"] = raw.location
            anomalies.append(self._anomaly(raw.symbol, (raw.source, *key, kind.value), ts_event=raw.ts_close, ts_init=ts_init,
                                           kind=kind, severity=severity, quarantined=quarantine, evidence=evidence))

        values = (raw.open, raw.high, raw.low, raw.close, raw.volume)
        ordered = self._check_order(raw, state, values, report)
        if ordered:
            self._check_values(raw, report)
            if not quarantined:
                self._check_zero_volume(raw, report)
            if not quarantined:
                self._check_spike(raw, state, report)
            self._advance(raw, state, values)
            if self.reference_sources:
                _put_bounded(state.primary_closes, raw.ts_open, raw.close, self.config.reconcile_memory_bars)
                self._compare_sources(raw, state, report)
            state.last_quarantined = quarantined

        out: list[Message] = [] if quarantined else [self._events.bar(raw, ts_init)]
        anomalous = False
        if anomalies:  # rare: a clean bar skips building the generator below
            out.extend(anomalies)
            anomalous = any(a.severity is not Severity.INFO for a in anomalies)
        if quarantined and not anomalous:
            return out  # a harmless redelivery (identical duplicate) says nothing about reliability
        out.extend(self._breaker_outcome(raw.symbol, state, anomalous=anomalous, key=(raw.source, *key), ts=raw.ts_close,
                                         ts_init=ts_init))
        return out

    def _check_order(self, raw: RawBar, state: _SymbolState, values: tuple[float, ...], report: Report) -> bool:
        """Duplicate / out-of-order / gap checks; False when the bar's time slot is not new.

        A different bar for the latest slot whose bar was quarantined is a correction, not a duplicate
        (the same bad bar sent again stays a duplicate, so repeats cannot talk a spike into a level).
        """
        last = state.last_ts_open
        if raw.ts_open == last and state.last_quarantined and state.seen.get(last) != values:
            return True
        if last is not None and raw.ts_open <= last:
            previous = state.seen.get(raw.ts_open)
            if previous is not None:
                identical = previous == values
                report(AnomalyKind.DUPLICATE, Severity.INFO if identical else Severity.WARNING, True,
                       {"ts_open": raw.ts_open, "identical": identical, "previous_close": previous[3]})
            else:
                report(AnomalyKind.OUT_OF_ORDER, Severity.WARNING, True, {"ts_open": raw.ts_open, "last_ts_open": last})
            return False
        if self.calendar is not None:
            slot = self.calendar.slot(raw.ts_open, raw.timeframe)
            missing = 0 if slot is None or state.last_slot is None else slot - state.last_slot - 1
            state.last_slot = slot
        elif last is not None:
            missing = (raw.ts_open - last) // timeframe_ns(raw.timeframe) - 1
        else:
            missing = 0
        if self.config.detect_gaps and missing > 0:
            evidence: Evidence = {"missing_bars": missing, "previous_ts_open": last, "ts_open": raw.ts_open}
            report(AnomalyKind.GAP, Severity.WARNING, False, evidence)
        return True

    @staticmethod
    def _check_values(raw: RawBar, report: Report) -> None:
        prices = (raw.open, raw.high, raw.low, raw.close)
        if not math.isfinite(raw.open + raw.high + raw.low + raw.close + raw.volume):  # NaN and inf propagate
            report(AnomalyKind.INVALID_OHLC, Severity.CRITICAL, True, {"reason": "non-finite value"})
            return
        if min(prices) <= 0 or raw.volume < 0:
            report(AnomalyKind.NON_POSITIVE, Severity.CRITICAL, True,
                   {"open": raw.open, "high": raw.high, "low": raw.low, "close": raw.close, "volume": raw.volume})
            return
        if not (raw.low <= min(raw.open, raw.close) and raw.high >= max(raw.open, raw.close)) or raw.ts_open > raw.ts_close:
            report(AnomalyKind.INVALID_OHLC, Severity.CRITICAL, True,
                   {"open": raw.open, "high": raw.high, "low": raw.low, "close": raw.close})

    def _check_zero_volume(self, raw: RawBar, report: Report) -> None:
        if raw.volume == 0:
            report(AnomalyKind.NON_POSITIVE, Severity.INFO, self.config.quarantine_zero_volume, {"volume": 0.0})

    def _check_spike(self, raw: RawBar, state: _SymbolState, report: Report) -> None:
        cfg = self.config
        reference = state.last_clean_close
        if reference is None:
            state.last_clean_close = raw.close
            return
        ret = math.log(raw.close / reference)
        window = state.sorted_returns
        if len(window) >= cfg.spike_min_observations:
            median = _median(window)
            z = self._robust_z_if_extreme(ret, median, window)
            if z is not None:
                state.consecutive_spikes += 1
                evidence: Evidence = {"robust_z": round(z, 3), "log_return": ret, "reference_close": reference,
                                      "close": raw.close, "threshold": cfg.spike_robust_z_threshold}
                if state.consecutive_spikes <= cfg.spike_max_consecutive:
                    report(AnomalyKind.PRICE_SPIKE, Severity.WARNING, True, evidence)
                    return
                evidence["accepted_level_shift"] = True
                report(AnomalyKind.PRICE_SPIKE, Severity.INFO, False, evidence)
                state.consecutive_spikes = 0
                state.last_clean_close = raw.close
                return
        state.consecutive_spikes = 0
        state.last_clean_close = raw.close
        state.returns.append(ret)
        bisect.insort(window, ret)
        if len(state.returns) > cfg.spike_window_bars:
            old = state.returns.popleft()
            del window[bisect.bisect_left(window, old)]

    def _robust_z_if_extreme(self, ret: float, median: float, window: list[float]) -> float | None:
        """The robust z-score of ``ret`` if it exceeds the threshold, else ``None``.

        The exact MAD costs a sort, so it is skipped when a cheap bound already settles the
        question: the MAD is at least the ceil(n/2)-th smallest deviation from the median, so
        if fewer than ceil(n/2) points lie closer to the median than ``|ret - median| / (T * 1.4826)``,
        ``|z| <= T`` for sure. Only candidates pay for the sort.
        """
        cfg = self.config
        distance = abs(ret - median)
        if distance <= cfg.spike_robust_z_threshold * cfg.spike_min_scale:
            return None
        bound = distance / (cfg.spike_robust_z_threshold * MAD_TO_SIGMA)
        closer = bisect.bisect_left(window, median + bound) - bisect.bisect_right(window, median - bound)
        if closer < (len(window) + 1) // 2:
            return None
        mad = _median(sorted([abs(x - median) for x in window]))
        z = (ret - median) / max(MAD_TO_SIGMA * mad, cfg.spike_min_scale)
        return z if abs(z) > cfg.spike_robust_z_threshold else None

    def _advance(self, raw: RawBar, state: _SymbolState, values: tuple[float, float, float, float, float]) -> None:
        state.last_ts_open = raw.ts_open
        _put_bounded(state.seen, raw.ts_open, values, self.config.duplicate_memory_bars)
        state.stale = False
        state.last_timeframe = raw.timeframe
        state.last_ts_close = raw.ts_close

    def _next_due(self, state: _SymbolState) -> int | None:
        """When the bar after the symbol's latest one is due (its close); computed only when asked."""
        assert state.last_ts_open is not None
        if self.calendar is not None:
            return self.calendar.next_due_ns(state.last_ts_open, state.last_timeframe)
        return state.last_ts_close + timeframe_ns(state.last_timeframe)

    # -- two sources ------------------------------------------------------------------------------
    def _on_reference_bar(self, raw: RawBar, ts_init: int) -> list[Message]:
        state = self._state(raw.symbol)
        _put_bounded(state.reference_closes, raw.ts_open, raw.close, self.config.reconcile_memory_bars)
        anomalies: list[DataAnomalyDetected] = []

        def report(kind: AnomalyKind, severity: Severity, quarantine: bool, evidence: Evidence) -> None:
            key = (raw.source, raw.timeframe, raw.ts_open, kind.value)
            anomalies.append(self._anomaly(raw.symbol, key, ts_event=raw.ts_close, ts_init=ts_init, kind=kind, severity=severity,
                                           quarantined=quarantine, evidence=evidence))

        self._compare_sources(raw, state, report)
        out: list[Message] = list(anomalies)
        if anomalies:
            out.extend(self._breaker_outcome(raw.symbol, state, anomalous=True, key=(raw.source, raw.ts_open), ts=raw.ts_close,
                                             ts_init=ts_init))
        return out

    def _compare_sources(self, raw: RawBar, state: _SymbolState, report: Report) -> None:
        primary = state.primary_closes.get(raw.ts_open)
        reference = state.reference_closes.get(raw.ts_open)
        if primary is None or reference is None or reference <= 0:
            return
        diff_bps = abs(primary - reference) / reference * 1e4
        if diff_bps > self.config.disagreement_tolerance_bps:
            report(AnomalyKind.SOURCE_DISAGREEMENT, Severity.WARNING, False,
                   {"primary_close": primary, "reference_close": reference, "difference_bps": round(diff_bps, 3),
                    "tolerance_bps": self.config.disagreement_tolerance_bps, "ts_open": raw.ts_open})

    # -- quotes, truth, bad rows ------------------------------------------------------------------
    def _on_quote(self, raw: RawQuote, ts_init: int) -> list[Message]:
        state = self._state(raw.symbol)
        if raw.ts == state.last_quote_ts:
            state.quote_occurrence += 1
        else:
            state.last_quote_ts, state.quote_occurrence = raw.ts, 0
        key = (raw.source, "quote", raw.ts, state.quote_occurrence)
        finite = all(math.isfinite(x) for x in (raw.bid, raw.ask, raw.bid_size, raw.ask_size))
        if not finite or raw.bid <= 0 or raw.ask <= 0 or raw.bid_size < 0 or raw.ask_size < 0:
            kind, severity = AnomalyKind.NON_POSITIVE, Severity.CRITICAL
        elif raw.bid > raw.ask:
            kind, severity = AnomalyKind.CROSSED_QUOTE, Severity.WARNING
        else:
            return [QuoteUpdated.origin(natural_key=(*key, raw.symbol), ts_event=raw.ts, ts_init=ts_init, source=self.source,
                                        symbol=raw.symbol, bid=raw.bid, ask=raw.ask, bid_size=raw.bid_size,
                                        ask_size=raw.ask_size, venue=raw.venue)]
        evidence: Evidence = {"bid": raw.bid, "ask": raw.ask, "bid_size": raw.bid_size, "ask_size": raw.ask_size}
        return [self._anomaly(raw.symbol, (*key, kind.value), ts_event=raw.ts, ts_init=ts_init, kind=kind, severity=severity,
                              quarantined=True, evidence=evidence)]

    def _on_bad_record(self, bad: BadRecord, ts_init: int) -> list[Message]:
        if self.config.on_bad_row == "stop":
            raise MalformedRecordError(bad.location, bad.reason)
        evidence: Evidence = {"location": bad.location, "reason": bad.reason[:500]}
        symbol = bad.symbol or MARKET_KEY
        return [self._anomaly(symbol, (bad.source, "malformed", bad.location), ts_event=bad.ts if bad.ts is not None else ts_init,
                              ts_init=ts_init, kind=AnomalyKind.MALFORMED_RECORD, severity=Severity.WARNING, quarantined=True,
                              evidence=evidence)]

    # -- builders ---------------------------------------------------------------------------------
    def _anomaly(self, symbol: str, key: tuple[object, ...], *, ts_event: int, ts_init: int, kind: AnomalyKind,
                 severity: Severity, quarantined: bool, evidence: Evidence) -> DataAnomalyDetected:
        return DataAnomalyDetected.origin(
            natural_key=(symbol, *key), ts_event=ts_event, ts_init=ts_init, source=self.source, symbol=symbol,
            kind=kind, severity=severity, quarantined=quarantined, evidence=evidence,
        )

    def _breaker_outcome(self, symbol: str, state: _SymbolState, *, anomalous: bool, key: tuple[object, ...], ts: int,
                         ts_init: int) -> list[Message]:
        changed = state.breaker.record(anomalous)
        if changed is None:
            return []
        cfg = self.config
        reason = (f"{cfg.breaker_close_after_clean_bars} clean bars in a row" if changed
                  else f"{sum(state.breaker.outcomes)} anomalous of the last {len(state.breaker.outcomes)} bars")
        return [DataReliabilityChanged.origin(natural_key=(symbol, "reliability", *key, changed), ts_event=ts, ts_init=ts_init,
                                              source=self.source, symbol=symbol, reliable=changed, reason=reason)]

    # -- state ------------------------------------------------------------------------------------
    def snapshot(self) -> dict[str, Any]:
        """Plain-data state of every symbol (JSON-serialisable)."""
        return {"symbols": {symbol: state.to_dict() for symbol, state in self._symbols.items()}}

    def restore(self, snapshot: dict[str, Any]) -> None:
        self._symbols = {
            symbol: _SymbolState.from_dict(data, self._new_breaker()) for symbol, data in snapshot["symbols"].items()
        }


def _median(sorted_values: list[float]) -> float:
    n = len(sorted_values)
    mid = n // 2
    return sorted_values[mid] if n % 2 else 0.5 * (sorted_values[mid - 1] + sorted_values[mid])
