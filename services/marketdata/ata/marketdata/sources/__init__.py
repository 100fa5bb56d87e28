"""Market data sources: file/dataset replay, the synthetic generator and Alpaca."""

from ata.marketdata.sources.base import HistoricalSource, LiveSource, Source
from ata.marketdata.sources.replay import DATASETS, DatasetReplay, FileReplay
from ata.marketdata.sources.synthetic import SyntheticSource, synthetic_symbols

__all__ = ["DATASETS", "DatasetReplay", "FileReplay", "HistoricalSource", "LiveSource", "Source", "SyntheticSource",
           "synthetic_symbols"]
