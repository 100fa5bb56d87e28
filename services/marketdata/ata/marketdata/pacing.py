"""Pacing of historical replay: when, in wall time, a record with a given event time is due.

:class:`Pacer` maps event time to wall time at ``speed_factor`` event seconds per wall second,
anchored at the first record. With a ``skip`` function it also leaves out stretches of event
time between two consecutive records: :func:`closed_gap_skip` skips the part of a
market-closed stretch (nights, weekends, holidays) beyond a small wall allowance, so a replay
at 600x does not sit idle for 105 s every simulated night. Only the pace changes: records keep
their event times, so everything downstream that runs on event time sees the same data.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from ata.marketdata.core import SessionCalendar
from ata.marketdata.core.records import NS_PER_S

#: ``skip(previous, following)``: event ns between two consecutive record times that take no wall time.
Skip = Callable[[int, int], int]


class Pacer:
    """Maps event time to wall time at ``speed_factor`` (event ns per wall ns), anchored at the first record.

    ``skip`` (optional) is asked once per step forward in event time, for the stretch between the
    latest record time seen and the next one; what it returns is taken out of the schedule at the
    start of that stretch, so the replay clock (:meth:`now_event_ns`) jumps over it the moment the
    next record is known. Records at or before the latest time seen (several symbols at one bar
    time, out-of-order data) skip nothing.
    """

    def __init__(self, speed_factor: float, clock: Callable[[], float] = time.monotonic, skip: Skip | None = None) -> None:
        if speed_factor <= 0:
            raise ValueError("speed_factor must be > 0 to pace")
        self.speed = speed_factor
        self._clock = clock
        self._skip = skip
        self._anchor: tuple[int, float] | None = None
        self._latest = 0
        #: Event ns left out of the schedule so far.
        self.skipped_ns = 0

    def wait_s(self, event_ns: int) -> float:
        """Seconds to wait before the record at ``event_ns`` is due (0 when already due)."""
        now = self._clock()
        if self._anchor is None:
            self._anchor = (event_ns, now)
            self._latest = event_ns
            return 0.0
        if event_ns > self._latest:
            if self._skip is not None:
                self.skipped_ns += self._skip(self._latest, event_ns)
            self._latest = event_ns
        first_event, first_wall = self._anchor
        return max(0.0, first_wall + (event_ns - first_event - self.skipped_ns) / NS_PER_S / self.speed - now)

    def now_event_ns(self) -> int | None:
        """The replay clock: the event time that is due now."""
        if self._anchor is None:
            return None
        first_event, first_wall = self._anchor
        return first_event + self.skipped_ns + int((self._clock() - first_wall) * self.speed * NS_PER_S)


def closed_gap_skip(calendar: SessionCalendar, max_wait_s: float, speed_factor: float) -> Skip:
    """A :data:`Skip` that lets a market-closed stretch take at most ``max_wait_s`` of wall time at ``speed_factor``.

    Open-market time between two records is paced as usual (a missing bar in a session still
    takes its time, so the stale-feed check sees it); of the closed time (``calendar``'s
    :meth:`~SessionCalendar.closed_ns`), the part beyond ``max_wait_s`` wall seconds is skipped.
    """
    allowance_ns = int(max_wait_s * speed_factor * NS_PER_S)

    def skip(previous: int, following: int) -> int:
        return max(0, calendar.closed_ns(previous, following) - allowance_ns)

    return skip
