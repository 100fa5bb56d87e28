"""Trading sessions as bar slots: which bars a feed owes us, and when.

A :class:`SessionCalendar` is built from an ``exchange_calendars`` calendar (holidays and
early closes included); without one (``None``, a 24/7 market such as crypto) the integrity
checker falls back to plain time arithmetic. It
numbers the bar *slots* of a timeframe consecutively across sessions, so the number of
bars missing between two bars is a subtraction of their slots, and it says when the bar after a given
one is due (its close), which drives stale-feed detection.

Daily bars: one slot per session. A daily bar's ``ts_open`` may be the session open or
the session's date at 00:00 UTC (how daily files are usually stamped); both map to the
same slot. Intraday bars: slots of ``timeframe`` from each session's open to its close.
"""

from __future__ import annotations

import bisect

import numpy as np

from ata.marketdata.core.records import I64, NS_PER_DAY, timeframe_ns


class SessionCalendar:
    """Bar-slot arithmetic over sessions given as sorted ``open``/``close`` ns arrays."""

    def __init__(self, name: str, labels_ns: I64, opens_ns: I64, closes_ns: I64) -> None:
        if not (len(labels_ns) == len(opens_ns) == len(closes_ns)):
            raise ValueError("labels, opens and closes must have equal length")
        self.name = name
        self._labels = labels_ns.astype(np.int64)
        self._opens = opens_ns.astype(np.int64)
        self._closes = closes_ns.astype(np.int64)
        self._labels_list: list[int] = self._labels.tolist()
        self._opens_list: list[int] = self._opens.tolist()
        self._closes_list: list[int] = self._closes.tolist()
        self._cum_slots: dict[int, list[int]] = {}

    @classmethod
    def from_exchange(cls, code: str, start: str, end: str | None = None) -> SessionCalendar:
        """Sessions of exchange ``code`` (e.g. ``"XNYS"``) from ``start`` (ISO date) to ``end`` (default: the library's)."""
        import exchange_calendars

        calendar = exchange_calendars.get_calendar(code, start=start, end=end)
        schedule = calendar.schedule
        labels = schedule.index.to_numpy().astype("datetime64[ns]").astype(np.int64)
        opens = schedule["open"].dt.tz_convert(None).to_numpy().astype("datetime64[ns]").astype(np.int64)
        closes = schedule["close"].dt.tz_convert(None).to_numpy().astype("datetime64[ns]").astype(np.int64)
        return cls(code, labels, opens, closes)

    @property
    def first_open_ns(self) -> int:
        return self._opens_list[0]

    @property
    def last_close_ns(self) -> int:
        return self._closes_list[-1]

    # -- sessions -------------------------------------------------------------------------------
    def session_of_date(self, ts_ns: int) -> int | None:
        """Index of the session whose date (UTC) contains ``ts_ns``, or ``None`` if that day has none."""
        label = ts_ns - ts_ns % NS_PER_DAY
        i = bisect.bisect_left(self._labels_list, label)
        return i if i < len(self._labels_list) and self._labels_list[i] == label else None

    def session_at(self, ts_ns: int) -> int | None:
        """Index of the session open at ``ts_ns`` (open <= ts < close), else ``None``."""
        i = bisect.bisect_right(self._opens_list, ts_ns) - 1
        return i if i >= 0 and ts_ns < self._closes_list[i] else None

    def session_bounds(self, index: int) -> tuple[int, int]:
        return self._opens_list[index], self._closes_list[index]

    def bounds(self, indices: I64) -> tuple[I64, I64]:
        """``(opens, closes)`` of the sessions at ``indices``."""
        return self._opens[indices], self._closes[indices]

    def daily_bar_times(self, ts_ns: int) -> tuple[int, int] | None:
        """``(open, close)`` of the session on ``ts_ns``'s date, if it is a session (early closes included)."""
        index = self.session_of_date(ts_ns)
        return None if index is None else self.session_bounds(index)

    # -- slots ----------------------------------------------------------------------------------
    def _cumulative(self, bar_ns: int) -> list[int]:
        cum = self._cum_slots.get(bar_ns)
        if cum is None:
            per_session = -(-(self._closes - self._opens) // bar_ns)  # ceil: a short last bar still counts
            cum = [0, *np.cumsum(per_session).tolist()]
            self._cum_slots[bar_ns] = cum
        return cum

    def slot(self, ts_open_ns: int, timeframe: str) -> int | None:
        """Consecutive number of the bar slot opening at ``ts_open_ns``; ``None`` outside every session."""
        bar_ns = timeframe_ns(timeframe)
        if bar_ns >= NS_PER_DAY:
            return self.session_of_date(ts_open_ns) if bar_ns == NS_PER_DAY else None
        index = self.session_at(ts_open_ns)
        if index is None:
            return None
        return self._cumulative(bar_ns)[index] + (ts_open_ns - self._opens_list[index]) // bar_ns

    def slots(self, ts_open_ns: I64, timeframe: str) -> I64:
        """:meth:`slot` of every element of ``ts_open_ns`` at once, ``-1`` where :meth:`slot` is ``None``."""
        bar_ns = timeframe_ns(timeframe)
        none = np.full(len(ts_open_ns), -1, dtype=np.int64)
        if bar_ns > NS_PER_DAY:
            return none
        if bar_ns == NS_PER_DAY:
            labels = ts_open_ns - ts_open_ns % NS_PER_DAY
            index = np.searchsorted(self._labels, labels, side="left")
            found = index < len(self._labels)
            found[found] = self._labels[index[found]] == labels[found]
            return np.where(found, index, none)
        index = np.searchsorted(self._opens, ts_open_ns, side="right") - 1
        inside = index >= 0
        inside[inside] = ts_open_ns[inside] < self._closes[index[inside]]
        safe = np.where(inside, index, 0)
        cumulative = np.asarray(self._cumulative(bar_ns), dtype=np.int64)
        return np.where(inside, cumulative[safe] + (ts_open_ns - self._opens[safe]) // bar_ns, none)

    def next_due_ns(self, ts_open: int, timeframe: str) -> int | None:
        """Close time of the slot after the bar opening at ``ts_open``: when the next bar is due."""
        bar_ns = timeframe_ns(timeframe)
        if bar_ns == NS_PER_DAY:
            index = self.session_of_date(ts_open)
            if index is None:
                index = bisect.bisect_right(self._labels_list, ts_open) - 1
            nxt = index + 1
            return self._closes_list[nxt] if nxt < len(self._closes_list) else None
        index = self.session_at(ts_open)
        if index is None:
            index = bisect.bisect_right(self._opens_list, ts_open) - 1
            candidate = None
        else:
            candidate = ts_open - (ts_open - self._opens_list[index]) % bar_ns + bar_ns
        if candidate is not None and candidate < self._closes_list[index]:
            return min(candidate + bar_ns, self._closes_list[index])
        nxt = index + 1
        if nxt >= len(self._opens_list):
            return None
        return min(self._opens_list[nxt] + bar_ns, self._closes_list[nxt])

    def is_open(self, ts_ns: int) -> bool:
        return self.session_at(ts_ns) is not None

    def closed_ns(self, start_ns: int, end_ns: int) -> int:
        """Nanoseconds of ``[start_ns, end_ns)`` the market is closed, counted only where the calendar covers
        (from its first open to its last close): outside it nothing is known to be closed."""
        start, end = max(start_ns, self.first_open_ns), min(end_ns, self.last_close_ns)
        if end <= start:
            return 0
        first = bisect.bisect_right(self._closes_list, start)  # the first session still open after start
        last = bisect.bisect_left(self._opens_list, end)  # sessions from here on open at or after end
        opens = np.maximum(self._opens[first:last], start)
        closes = np.minimum(self._closes[first:last], end)
        return (end - start) - int(np.maximum(closes - opens, 0).sum())

    def bar_opens(self, start_ns: int, count: int, timeframe: str) -> I64:
        """Open times of the first ``count`` intraday slots at or after ``start_ns``."""
        bar_ns = timeframe_ns(timeframe)
        if bar_ns >= NS_PER_DAY:
            raise ValueError("bar_opens is for intraday timeframes")
        parts: list[I64] = []
        total = 0
        index = bisect.bisect_left(self._closes_list, start_ns + 1)
        while total < count:
            if index >= len(self._opens_list):
                raise ValueError(f"calendar {self.name} ends before {count} bars of {timeframe} after the start")
            session_open = self._opens_list[index]
            first = session_open + max(0, -(-(start_ns - session_open) // bar_ns)) * bar_ns  # aligned to the session's slots
            opens = np.arange(first, self._closes_list[index], bar_ns, dtype=np.int64)
            parts.append(opens[: count - total])
            total += len(parts[-1])
            index += 1
        return np.concatenate(parts)
