"""Offline data for the research commands: the real daily series shipped with ``arch``."""

from __future__ import annotations

from collections.abc import Callable

import pandas as pd

from ata.strategy.core.strategies import Bar


def _sp500() -> pd.DataFrame:
    import arch.data.sp500

    return arch.data.sp500.load()


def _nasdaq() -> pd.DataFrame:
    import arch.data.nasdaq

    return arch.data.nasdaq.load()


DATASETS: dict[str, Callable[[], pd.DataFrame]] = {"sp500": _sp500, "nasdaq": _nasdaq}


def load_frame(dataset: str) -> pd.DataFrame:
    """The OHLCV frame of a built-in dataset (``sp500`` or ``nasdaq``), indexed by date."""
    try:
        return DATASETS[dataset]()
    except KeyError:
        raise ValueError(f"unknown dataset {dataset!r}; known: {', '.join(DATASETS)}") from None


def bars_from_frame(frame: pd.DataFrame) -> list[Bar]:
    """Bars from a frame with Open/High/Low/Close/Volume columns; the index is the bar's time."""
    stamps = pd.DatetimeIndex(frame.index).as_unit("ns").asi8
    columns = zip(stamps, frame["Open"], frame["High"], frame["Low"], frame["Close"], frame["Volume"], strict=True)
    return [Bar(int(ts), float(o), float(h), float(lo), float(c), float(v)) for ts, o, h, lo, c, v in columns]


def load_bars(dataset: str) -> list[Bar]:
    return bars_from_frame(load_frame(dataset))
