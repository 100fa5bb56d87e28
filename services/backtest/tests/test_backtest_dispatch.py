"""Both backtest buses deliver to plain and coroutine handlers alike: subscription order, outputs routed by topic."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest

from ata.backtest.dispatch import DirectBus, MemoryBusAdapter
from ata.events import BarClosed, GroundTruthRegimeObserved, Message
from ata.events.values import MARKET_KEY
from ata.runtime.testing import numbered_bar

BARS, TRUTH = "market.bars.v1", "market.ground_truth.v1"


def truth_of(bar: BarClosed) -> GroundTruthRegimeObserved:
    return GroundTruthRegimeObserved.origin(natural_key=("test", bar.ts_event), ts_event=bar.ts_event, ts_init=bar.ts_event,
                                            source="test/0", symbol=MARKET_KEY, regime="bull", volatility_regime="calm")


@pytest.mark.parametrize("bus_type", [DirectBus, MemoryBusAdapter])
def test_plain_and_coroutine_handlers_in_subscription_order(bus_type: type[DirectBus | MemoryBusAdapter]) -> None:
    bus = bus_type()
    seen: list[tuple[str, Message]] = []

    def plain(message: Message) -> Sequence[Message]:  # answers each bar with a message on another topic
        seen.append(("plain", message))
        return [truth_of(message)] if isinstance(message, BarClosed) else []

    async def awaited(message: Message) -> Sequence[Message]:
        await asyncio.sleep(0)
        seen.append(("awaited", message))
        return ()

    bus.subscribe([BARS], plain)
    bus.subscribe([BARS, TRUTH], awaited)
    bars = [numbered_bar("dispatch", "SYN", n) for n in range(2)]
    asyncio.run(bus.publish(bars))
    truths = [truth_of(bar) for bar in bars]
    assert seen == [("plain", bars[0]), ("awaited", bars[0]), ("plain", bars[1]), ("awaited", bars[1]),
                    ("awaited", truths[0]), ("awaited", truths[1])]
    assert dict(bus.counts) == {BARS: 2, TRUTH: 2}
