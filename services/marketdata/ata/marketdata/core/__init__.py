"""Pure core of the market data service: raw records, session calendar, integrity checks.

No I/O and no wall clock here: sources (files, generators, Alpaca) live in
:mod:`ata.marketdata.sources`, publishing in :mod:`ata.marketdata.service`.
"""

from ata.marketdata.core.calendar import SessionCalendar
from ata.marketdata.core.integrity import DataBreaker, IntegrityChecker, IntegrityConfig
from ata.marketdata.core.records import (
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

__all__ = [
    "BadRecord", "BarBatch", "CleanBars", "DataBreaker", "IntegrityChecker", "IntegrityConfig", "MalformedRecordError",
    "RawBar", "RawQuote", "RegimeObservation", "SessionCalendar", "SourceItem", "timeframe_ns",
]
