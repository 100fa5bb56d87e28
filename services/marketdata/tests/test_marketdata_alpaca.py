"""The Alpaca adapter against a local fake speaking Alpaca's websocket (msgpack) and REST protocols on 127.0.0.1."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import pytest

from ata.marketdata.core import RawBar, RawQuote
from ata.marketdata.sources.alpaca import AlpacaCredentialsError, AlpacaSource
from ata.marketdata.testing import KEY, MIN, SECRET, T0, WAIT_S, Endpoints, FakeAlpaca, start_fake
from ata.runtime.resilience import Backoff


def source(endpoints: Endpoints, *, key: str = KEY, silence_s: float = 5.0) -> AlpacaSource:
    return AlpacaSource(api_key=key, secret_key=SECRET, symbols=["aaa"], stream_url=endpoints.stream_url,
                        data_url=endpoints.data_url, timeout_s=5.0, silence_timeout_s=silence_s,
                        backoff=Backoff(initial_s=0.05, cap_s=0.2, max_attempts=None), backfill_bars=10,
                        now=lambda: datetime.fromtimestamp(T0 / 1e9 + 600, tz=UTC))


async def collect(src: AlpacaSource, count: int) -> list[RawBar]:
    out: list[RawBar] = []
    async with asyncio.timeout(WAIT_S):
        async for item in src:
            assert isinstance(item, RawBar)
            out.append(item)
            if len(out) == count:
                await src.close()
                break
    return out


@pytest.fixture
async def endpoints(request: pytest.FixtureRequest) -> AsyncIterator[Endpoints]:
    scripts, backfill = request.param
    async for ep in start_fake(FakeAlpaca(scripts, backfill)):
        yield ep


@pytest.mark.parametrize("endpoints", [([([0], "silent")], [])], indirect=True)
async def test_bad_credentials_give_a_clear_error(endpoints: Endpoints) -> None:
    with pytest.raises(AlpacaCredentialsError, match=r"rejected the API key/secret.*ATA_MARKETDATA_ALPACA_API_KEY"):
        async with asyncio.timeout(WAIT_S):
            async for _ in source(endpoints, key="wrong"):
                pass
    assert endpoints.fake.rest_calls == ["latest"] and endpoints.fake.connections == 0


@pytest.mark.parametrize("endpoints", [([([0, 1, 2], "close"), ([1, 2, 3, 4], "silent")], [0, 1, 2, 3])], indirect=True)
async def test_dropped_connection_reconnects_backfills_and_never_duplicates(endpoints: Endpoints) -> None:
    src = source(endpoints)
    bars = await collect(src, 5)
    assert [(b.ts_open - T0) // MIN for b in bars] == [0, 1, 2, 3, 4]
    assert bars[0].close == 100.1 and bars[0].ts_close == T0 + MIN and bars[0].symbol == "AAA"
    assert endpoints.fake.connections == 2 and src.health()["reconnects"] == 1
    # Backfill 0-3 after the drop overlaps 0-2; the new stream resends 1-3: six repeats dropped, none yielded.
    assert src.duplicates_dropped == 6
    assert "bars" in endpoints.fake.rest_calls


@pytest.mark.parametrize("endpoints", [([([0], "silent"), ([1], "silent")], [])], indirect=True)
async def test_silent_stream_is_detected_and_reconnected(endpoints: Endpoints) -> None:
    src = source(endpoints, silence_s=0.5)
    bars = await collect(src, 2)
    assert [(b.ts_open - T0) // MIN for b in bars] == [0, 1]
    assert src.silences >= 1 and endpoints.fake.connections >= 2
    assert src.health()["silences"] == src.silences


async def test_quotes_are_streamed_when_enabled() -> None:
    async for endpoints in start_fake(FakeAlpaca([([0], "silent")], quotes=[(0, 99.9, 100.1), (0, 100.2, 100.1)])):
        src = AlpacaSource(api_key=KEY, secret_key=SECRET, symbols=["AAA"], stream_url=endpoints.stream_url,
                           data_url=endpoints.data_url, timeout_s=5.0, quotes=True)
        items = []
        async with asyncio.timeout(WAIT_S):
            async for item in src:
                items.append(item)
                if len(items) == 3:
                    await src.close()
                    break
        quotes = [i for i in items if isinstance(i, RawQuote)]
        expected = [(99.9, 100.1, 3.0, 4.0, T0), (100.2, 100.1, 3.0, 4.0, T0)]  # the second is crossed: the checker's call
        assert [(q.bid, q.ask, q.bid_size, q.ask_size, q.ts) for q in quotes] == expected
        assert [type(i) for i in items].count(RawBar) == 1
