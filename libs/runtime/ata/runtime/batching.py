"""Helpers for services that handle whole fetched batches (:meth:`ata.runtime.service.Service.handle_batch`)."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from ata.events import Message
from ata.runtime.bus import Delivery

__all__ = ["each_message", "pause_after_batch_s"]


def each_message(batch: Sequence[tuple[Message, Delivery]],
                 handle: Callable[[Message], Sequence[Message]]) -> list[Sequence[Message] | Exception]:
    """``handle`` applied to every message of ``batch`` in order, as ``handle_batch`` answers: a message's outputs,
    or the exception ``handle`` raised on it (the runtime dead-letters that message; the others go on)."""
    results: list[Sequence[Message] | Exception] = []
    for message, _ in batch:
        try:
            results.append(handle(message))
        except Exception as exc:  # one bad message must not stop the others
            results.append(exc)
    return results


def pause_after_batch_s(interval_s: float, *, full: bool, elapsed_s: float) -> float:
    """How long a paced consumer waits after a batch that took ``elapsed_s``: what is left of ``interval_s``,
    and nothing after a full batch (more is waiting) or with pacing off (``interval_s`` 0)."""
    if full or interval_s <= 0:
        return 0.0
    return max(0.0, interval_s - elapsed_s)
