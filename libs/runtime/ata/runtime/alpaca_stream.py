"""Driving an alpaca-py market-data stream with enforced timeouts, a silence watchdog and backoff.

alpaca-py's ``DataStream._run_forever`` owns connect, auth and subscribe, and on any failure it
retries forever without telling its caller: rejected keys, a peer that accepts the socket but
never says ``connected``, and a connection that stays open but mute all look the same from
outside. :class:`StreamWatchdog` runs such a stream (built by a caller's factory) and makes those
states visible:

- the connect + auth step (``_start_ws``) of every attempt is bounded by ``connect_timeout_s``
  (alpaca-py's ``recv`` of the ``connected`` and ``authenticated`` frames has no timeout);
- an auth answer ``auth failed`` (Alpaca's error 402) ends the iteration with
  :class:`StreamCredentialsError`: retrying cannot fix a rejected key;
- after each successful connect + auth the iteration yields :data:`CONNECTED`, so the caller can
  fill the hole the reconnect left (REST catch-up) — alpaca-py reconnects dropped connections by
  itself, and each of those reconnects is observed too;
- when neither a message nor a connect arrives for ``silence_timeout_s`` the stream is torn down
  and a new one built, after a :class:`~ata.runtime.resilience.Backoff` delay that grows while
  restarts bring no messages and starts over once one does.

Messages are yielded as the stream's handler receives them (raw dicts when the stream was built
with ``raw_data=True``). The watchdog relies on two alpaca-py internals, ``_run_forever`` and
``_start_ws``/``_auth`` (stable across 0.3x–0.4x); that is the price of not re-implementing the
protocol.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, Final, Protocol

from ata.runtime.resilience import Backoff

log = logging.getLogger(__name__)


class _Connected:
    def __repr__(self) -> str:
        return "CONNECTED"


#: Yielded after every successful connect + auth of the stream.
CONNECTED: Final = _Connected()


class StreamCredentialsError(RuntimeError):
    """The stream refused the API key / secret."""


class _Rejected:
    def __init__(self, reason: str) -> None:
        self.reason = reason


class DataStreamLike(Protocol):
    """What the watchdog uses of an alpaca-py ``DataStream``."""

    async def _run_forever(self) -> None: ...

    async def _start_ws(self) -> None: ...

    async def _auth(self) -> None: ...

    async def close(self) -> None: ...


#: Given the callback that receives messages, build a stream subscribed to what the caller needs.
StreamFactory = Callable[[Callable[[Any], Awaitable[None]]], DataStreamLike]


def _is_rejection(reason: str) -> bool:
    return "auth failed" in reason.lower()


def _enqueuer(queue: asyncio.Queue[Any]) -> Callable[[Any], Awaitable[None]]:
    async def on_message(raw: Any) -> None:
        queue.put_nowait(raw)

    return on_message


class StreamWatchdog:
    """Runs streams built by ``factory`` under the contract of the module docstring."""

    def __init__(self, factory: StreamFactory, *, name: str, connect_timeout_s: float = 10.0,
                 silence_timeout_s: float = 90.0, backoff: Backoff | None = None, rng: random.Random | None = None) -> None:
        if connect_timeout_s <= 0 or silence_timeout_s <= 0:
            raise ValueError("connect_timeout_s and silence_timeout_s must be > 0")
        self.factory = factory
        self.name = name
        self.connect_timeout_s = connect_timeout_s
        self.silence_timeout_s = silence_timeout_s
        self.backoff = backoff or Backoff(initial_s=0.5, cap_s=30.0, max_attempts=None)
        self._rng = rng or random.Random()
        self._closed = asyncio.Event()
        self.connects = 0
        self.silences = 0
        self.connect_timeouts = 0

    def _instrument(self, stream: DataStreamLike, queue: asyncio.Queue[Any]) -> None:
        """Wrap the stream's connect + auth step: bounded, observed, rejections reported."""
        start_ws, auth = stream._start_ws, stream._auth

        async def observed_auth() -> None:
            try:
                await auth()
            except ValueError as exc:
                if _is_rejection(str(exc)):
                    queue.put_nowait(_Rejected(str(exc)))
                raise

        async def bounded_start_ws() -> None:
            try:
                async with asyncio.timeout(self.connect_timeout_s):
                    await start_ws()
            except TimeoutError:
                self.connect_timeouts += 1
                log.warning("%s stream: no connect + auth within %.1fs", self.name, self.connect_timeout_s)
                raise
            queue.put_nowait(CONNECTED)

        # Instance attributes shadow the methods, and alpaca-py calls them through ``self``.
        stream._auth = observed_auth  # type: ignore[method-assign]
        stream._start_ws = bounded_start_ws  # type: ignore[method-assign]

    async def __aiter__(self) -> AsyncIterator[Any]:
        attempt = 0
        while not self._closed.is_set():
            queue: asyncio.Queue[Any] = asyncio.Queue()
            stream = self.factory(_enqueuer(queue))
            self._instrument(stream, queue)
            task = asyncio.create_task(stream._run_forever(), name=f"{self.name}-stream")
            received = False
            try:
                while not self._closed.is_set():
                    try:
                        async with asyncio.timeout(self.silence_timeout_s):
                            item = await queue.get()
                    except TimeoutError:
                        self.silences += 1
                        log.warning("%s stream silent for %.1fs; restarting", self.name, self.silence_timeout_s)
                        break
                    if isinstance(item, _Rejected):
                        raise StreamCredentialsError(f"{self.name}: the stream rejected the API key/secret ({item.reason})")
                    if item is CONNECTED:
                        self.connects += 1
                    else:
                        received = True
                    yield item
            finally:
                await self._shutdown(stream, task)
            if self._closed.is_set():
                return
            attempt = 0 if received else attempt + 1
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.backoff.delay(attempt, self._rng)):
                    await self._closed.wait()

    async def _shutdown(self, stream: DataStreamLike, task: asyncio.Task[None]) -> None:
        task.cancel()
        try:
            # wait() neither raises the stream task's outcome nor swallows a cancellation of this task: a
            # suppressed CancelledError here kept a cancelled iteration reconnecting for ever (a stop hung).
            done, _ = await asyncio.wait([task], timeout=self.connect_timeout_s)
            for finished in done:
                if not finished.cancelled():
                    finished.exception()  # retrieved (and dropped, as before): the stream is being replaced
        finally:
            with contextlib.suppress(Exception):
                async with asyncio.timeout(self.connect_timeout_s):
                    await stream.close()

    async def close(self) -> None:
        """End the iteration at the next message, silence or backoff wait."""
        self._closed.set()
