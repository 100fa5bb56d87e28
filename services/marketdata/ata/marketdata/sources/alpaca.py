"""Alpaca live minute bars: alpaca-py ``StockDataStream`` + ``StockHistoricalDataClient``, made robust.

alpaca-py sets no HTTP timeout and its stream reconnects silently forever (even on rejected
credentials). This adapter adds, around the library:

- a credential check over REST before streaming: rejected keys raise
  :class:`AlpacaCredentialsError` with a clear message instead of an endless retry loop;
- a timeout on every REST request (the client's HTTP session gets a default timeout) and on
  the whole call;
- the stream runs under :class:`~ata.runtime.alpaca_stream.StreamWatchdog`: each connect + auth
  bounded by ``timeout_s``; when no bar arrives for ``silence_timeout_s`` the stream is torn
  down and reconnected, waiting :class:`~ata.runtime.resilience.Backoff` delays between attempts
  (a dropped connection is re-established by alpaca-py itself, with its own backoff);
- every (re)connection is observed, and after each but the first the hole is filled from REST
  (the last ``backfill_bars`` minutes); bars are de-duplicated per symbol by their open time, so
  a bar delivered by the stream and the backfill, or twice by the stream, is yielded once.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, Self

from requests import PreparedRequest, Response
from requests.adapters import HTTPAdapter
from typing_extensions import override

from ata.marketdata.core.records import RawBar, RawQuote, SourceItem, parse_timestamp, timeframe_ns
from ata.marketdata.sources.base import HealthValue
from ata.runtime.alpaca_stream import CONNECTED, DataStreamLike, StreamCredentialsError, StreamWatchdog
from ata.runtime.resilience import Backoff

log = logging.getLogger(__name__)

SOURCE = "alpaca"
TIMEFRAME = "1m"
BAR_NS = timeframe_ns(TIMEFRAME)


class AlpacaCredentialsError(RuntimeError):
    """Alpaca refused the configured API key / secret."""


class _TimeoutAdapter(HTTPAdapter):
    """Gives every request of a ``requests`` session a default timeout."""

    def __init__(self, timeout_s: float) -> None:
        super().__init__()
        self.timeout_s = timeout_s

    @override
    def send(self, request: PreparedRequest, stream: bool = False,  # the signature is requests'
             timeout: float | tuple[float | None, float | None] | None = None, verify: bool | str = True,
             cert: str | tuple[str, str] | None = None, proxies: dict[str, str] | None = None) -> Response:
        return super().send(request, stream=stream, timeout=self.timeout_s if timeout is None else timeout, verify=verify,
                            cert=cert, proxies=proxies)


def _ns(stamp: Any) -> int:
    """Alpaca's ``t``: a msgpack Timestamp on the stream, ISO text over REST."""
    if isinstance(stamp, str):
        return parse_timestamp(stamp)[0]
    if hasattr(stamp, "to_unix_nano"):
        return int(stamp.to_unix_nano())
    return int(stamp.timestamp() * 1e9)


def quote_from_alpaca(raw: Mapping[str, Any], feed: str) -> RawQuote:
    """A stream quote (``T == "q"``) as a :class:`RawQuote` (crossed or not: the checker judges)."""
    return RawQuote(SOURCE, str(raw["S"]), _ns(raw["t"]), float(raw["bp"]), float(raw["ap"]), float(raw.get("bs", 0.0)),
                    float(raw.get("as", 0.0)), venue=f"alpaca-{feed}")


def bar_from_alpaca(symbol: str, raw: Mapping[str, Any], feed: str) -> RawBar:
    """A stream (msgpack) or REST (JSON) bar as a :class:`RawBar`."""
    ts_open = _ns(raw["t"])
    return RawBar(SOURCE, symbol, TIMEFRAME, ts_open, ts_open + BAR_NS, float(raw["o"]), float(raw["h"]), float(raw["l"]),
                  float(raw["c"]), float(raw["v"]), venue=f"alpaca-{feed}")


class AlpacaSource:
    """A :class:`~ata.marketdata.sources.base.LiveSource` of Alpaca minute bars (see the module docstring)."""

    def __init__(self, *, api_key: str, secret_key: str, symbols: Sequence[str], feed: str = "iex", stream_url: str | None = None,
                 data_url: str | None = None, timeout_s: float = 10.0, silence_timeout_s: float = 90.0,
                 backoff: Backoff | None = None, backfill_bars: int = 30, quotes: bool = False, rng: random.Random | None = None,
                 now: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        if not symbols:
            raise ValueError("Alpaca needs at least one symbol")
        self.name = f"alpaca-{feed}"
        self._key, self._secret = api_key, secret_key
        self.symbols = [s.upper() for s in symbols]
        self.feed = feed
        self._stream_url, self._data_url = stream_url or None, data_url or None
        self.timeout_s, self.silence_timeout_s = timeout_s, silence_timeout_s
        self.backoff = backoff or Backoff(initial_s=0.5, cap_s=30.0, max_attempts=None)
        self.backfill_bars = backfill_bars
        self.quotes = quotes
        self._rng = rng or random.Random()
        self._now = now
        self._last_open: dict[str, int] = {}
        self.watchdog = StreamWatchdog(self._stream, name=self.name, connect_timeout_s=timeout_s,
                                       silence_timeout_s=silence_timeout_s, backoff=self.backoff, rng=self._rng)
        self.duplicates_dropped = 0
        self.bars = 0

    @classmethod
    def from_settings(cls, settings: Any) -> Self:
        """Build from :class:`~ata.marketdata.config.MarketDataSettings` (keys are required there for source=alpaca)."""
        return cls(
            api_key=settings.alpaca_api_key.get_secret_value(), secret_key=settings.alpaca_secret_key.get_secret_value(),
            symbols=settings.symbols, feed=settings.alpaca_feed, stream_url=settings.alpaca_stream_url,
            data_url=settings.alpaca_data_url, timeout_s=settings.alpaca_timeout_s,
            silence_timeout_s=settings.alpaca_silence_timeout_s,
            backoff=Backoff(initial_s=settings.alpaca_backoff_initial_s, cap_s=settings.alpaca_backoff_cap_s, max_attempts=None),
            backfill_bars=settings.alpaca_backfill_bars, quotes=settings.alpaca_quotes,
        )

    # -- REST -------------------------------------------------------------------------------------
    def _client(self) -> Any:
        from alpaca.data.historical import StockHistoricalDataClient

        client = StockHistoricalDataClient(self._key, self._secret, raw_data=True, url_override=self._data_url)
        # alpaca-py exposes no timeout setting; its requests session is the only place to put one.
        adapter = _TimeoutAdapter(self.timeout_s)
        client._session.mount("http://", adapter)
        client._session.mount("https://", adapter)
        return client

    @staticmethod
    def _rejected(what: str) -> AlpacaCredentialsError:
        return AlpacaCredentialsError(
            f"Alpaca rejected the API key/secret ({what}); check "
            "ATA_MARKETDATA_ALPACA_API_KEY and ATA_MARKETDATA_ALPACA_SECRET_KEY"
        )

    async def _rest(self, call: Callable[[], Any], what: str) -> Any:
        from alpaca.common.exceptions import APIError

        try:
            async with asyncio.timeout(self.timeout_s):
                return await asyncio.to_thread(call)
        except APIError as exc:
            if exc.status_code in (401, 403):
                raise self._rejected(f"{exc.status_code} on {what}") from None
            raise

    async def check_credentials(self) -> None:
        """One bounded REST call that Alpaca answers 401/403 for bad keys."""
        from alpaca.data.requests import StockLatestBarRequest

        client = self._client()
        request = StockLatestBarRequest(symbol_or_symbols=self.symbols, feed=self.feed)
        await self._rest(lambda: client.get_stock_latest_bar(request), "latest bars")

    async def backfill(self) -> list[RawBar]:
        """Bars of the last ``backfill_bars`` minutes (REST), oldest first per symbol."""
        if self.backfill_bars == 0:
            return []
        from alpaca.data.requests import StockBarsRequest
        from alpaca.data.timeframe import TimeFrame

        client = self._client()
        request = StockBarsRequest(symbol_or_symbols=self.symbols, timeframe=TimeFrame.Minute, feed=self.feed,
                                   start=self._now() - timedelta(minutes=self.backfill_bars))
        raw = await self._rest(lambda: client.get_stock_bars(request), "bars backfill")
        return [bar_from_alpaca(symbol, item, self.feed) for symbol, items in raw.items() for item in items]

    # -- stream -----------------------------------------------------------------------------------
    def _fresh(self, bar: RawBar) -> bool:
        """True the first time a symbol's bar open time is seen (bars per symbol arrive in time order)."""
        if bar.ts_open <= self._last_open.get(bar.symbol, -1):
            self.duplicates_dropped += 1
            return False
        self._last_open[bar.symbol] = bar.ts_open
        return True

    def _stream(self, on_message: Callable[[Any], Awaitable[None]]) -> DataStreamLike:
        from alpaca.data.enums import DataFeed
        from alpaca.data.live import StockDataStream

        stream = StockDataStream(
            self._key, self._secret, raw_data=True, feed=DataFeed(self.feed), url_override=self._stream_url,
            websocket_params={"open_timeout": self.timeout_s, "close_timeout": self.timeout_s, "ping_interval": 10,
                              "ping_timeout": self.timeout_s, "max_queue": 1024},
        )
        stream.subscribe_bars(on_message, *self.symbols)
        if self.quotes:
            stream.subscribe_quotes(on_message, *self.symbols)
        return stream

    @property
    def connects(self) -> int:
        return self.watchdog.connects

    @property
    def silences(self) -> int:
        return self.watchdog.silences

    async def __aiter__(self) -> AsyncIterator[SourceItem]:
        await self.check_credentials()
        try:
            async for raw in self.watchdog:
                if raw is CONNECTED:
                    bars = await self.backfill() if self.connects > 1 else []
                elif raw.get("T") == "q":
                    yield quote_from_alpaca(raw, self.feed)
                    continue
                else:
                    bars = [bar_from_alpaca(str(raw["S"]), raw, self.feed)]
                for bar in bars:
                    if self._fresh(bar):
                        self.bars += 1
                        yield bar
        except StreamCredentialsError:
            raise self._rejected("stream auth") from None

    async def close(self) -> None:
        await self.watchdog.close()

    def health(self) -> dict[str, HealthValue]:
        return {"source": "alpaca", "feed": self.feed, "connects": self.connects, "reconnects": max(0, self.connects - 1),
                "silences": self.silences, "duplicates_dropped": self.duplicates_dropped, "bars_received": self.bars}
