"""each_message: a batch handled message by message, a failing message answered by its exception, the rest handled."""

from __future__ import annotations

from collections.abc import Sequence

from ata.events import BarClosed, Message
from ata.runtime.batching import each_message
from ata.runtime.bus import Delivery

T0 = 1_700_000_000_000_000_000
MINUTE_NS = 60_000_000_000


def bar(n: int) -> BarClosed:
    ts = T0 + (n + 1) * MINUTE_NS
    return BarClosed.origin(natural_key=("each", n), ts_event=ts, ts_init=ts, source="test/0", symbol="SPY",
                            timeframe="1m", ts_open=ts - MINUTE_NS, open=100.0, high=101.0, low=99.0, close=100.0,
                            volume=float(n))


def test_each_message_answers_in_order_with_outputs_or_the_exception_and_goes_on() -> None:
    bars = [bar(n) for n in range(4)]
    batch = [(b, Delivery("bars", 0, n, "SPY", {}, b"")) for n, b in enumerate(bars)]
    seen: list[Message] = []

    def handle(message: Message) -> Sequence[Message]:
        seen.append(message)
        if message is bars[1]:
            raise ValueError("refused")
        return [message] * 2

    results = each_message(batch, handle)
    assert seen == bars  # every message, in batch order, also after the failure
    assert isinstance(results[1], ValueError) and str(results[1]) == "refused"
    assert [results[0], results[2], results[3]] == [[bars[0]] * 2, [bars[2]] * 2, [bars[3]] * 2]
