"""Market time: the clock execution's engine and in-process simulated broker run on.

Over replayed (or backtested) data, "now" is the time of the market data, not of the
machine: an order placed after the bar of 10:31 must be judged against the bar of 10:32,
whatever the wall clock says. :class:`MarketClock` therefore reads the latest market data
time execution has received (bars and quotes) and never goes backwards. Until the first
market data arrives, an order command's ``ts_event`` (inherited from the market event that
caused it) seeds it; afterwards commands do not move it, since an upstream stage may stamp
them with its own clock.
"""

from __future__ import annotations

from collections.abc import Callable


class MarketClock:
    """A clock (ns) that is the latest event time observed; ``fallback`` until the first one.

    ``fallback`` (the wall clock in the service) only stamps what happens before any market
    data arrived, e.g. reconciliation at start; :attr:`started` says whether market time is known,
    so timers can wait for it.
    """

    def __init__(self, fallback: Callable[[], int]) -> None:
        self._fallback = fallback
        self._latest: int | None = None

    @property
    def started(self) -> bool:
        return self._latest is not None

    def observe(self, ts_ns: int) -> None:
        """Market data at ``ts_ns``: advance to it if it is later than the time already known."""
        if self._latest is None or ts_ns > self._latest:
            self._latest = ts_ns

    def seed(self, ts_ns: int) -> None:
        """A command at ``ts_ns``: market time until market data says otherwise; ignored once started."""
        if self._latest is None:
            self._latest = ts_ns

    def __call__(self) -> int:
        return self._fallback() if self._latest is None else self._latest
