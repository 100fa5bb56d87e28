"""The broker port over HTTP to a simulated broker process (:mod:`ata.execution.brokers.sim_server`).

Every request has a total timeout. Transport failures are translated per the port contract:
a refused connection means the request never arrived (:class:`BrokerUnavailableError`);
a timeout or a connection dropped after sending is ambiguous (:class:`AmbiguousOutcomeError`).

Submissions are pipelined: each :meth:`SimulatedHttpBroker.submit` still answers for its own
order, but the submissions made while a request is in flight travel together in the next one
(at most ``MAX_BATCH``), so a burst costs a few round trips instead of one per order. A
transport failure of that request is the outcome of every order it carried (ambiguous ones
are each resolved by the caller's lookup). Execution reports come back on a pushed stream.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import orjson

from ata.events import BarClosed, QuoteUpdated
from ata.execution.core.ports import (
    AmbiguousOutcomeError,
    BrokerError,
    BrokerFill,
    BrokerOrder,
    BrokerPosition,
    BrokerUnavailableError,
    DuplicateClientOrderIdError,
    FillPage,
    OrderRejectedError,
    OrderRequest,
)
from ata.runtime.codec import encode

#: An update stream silent this long (the server writes keep-alives every second) is reconnected.
STREAM_SILENCE_S = 5.0
#: Connections to the simulated broker (submissions use one at a time; look-ups and the stream the rest).
MAX_CONNECTIONS = 32
#: Most orders carried by one submission request.
MAX_BATCH = 500


class SimulatedHttpBroker:
    """:class:`~ata.execution.core.ports.BrokerPort` for a simulated broker served over HTTP."""

    def __init__(self, name: str, base_url: str, *, timeout_s: float = 2.0) -> None:
        self.name = name
        self.base_url = base_url.rstrip("/")
        self.timeout_s = timeout_s
        self._session: aiohttp.ClientSession | None = None
        self._closed = asyncio.Event()
        self._queued: list[tuple[OrderRequest, asyncio.Future[tuple[int, Any]]]] = []
        self._sender: asyncio.Task[None] | None = None
        #: Submission requests made (for the bench and tests: pipelining is visible here).
        self.submit_requests = 0

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=self.timeout_s),
                connector=aiohttp.TCPConnector(limit=MAX_CONNECTIONS, force_close=False),
            )
        return self._session

    async def _call(self, method: str, path: str, *, body: bytes | None = None,
                    params: dict[str, str] | None = None) -> tuple[int, Any]:
        # Under the session's total timeout (an explicit ``timeout=None`` would mean none at all).
        try:
            async with self._client().request(method, self.base_url + path, data=body, params=params,
                                              headers={"content-type": "application/json"}) as response:
                payload = orjson.loads(await response.read())
                return response.status, payload
        except aiohttp.ClientConnectorError as exc:
            raise BrokerUnavailableError(f"{self.name}: cannot connect: {exc}") from exc
        except (TimeoutError, aiohttp.ClientError, orjson.JSONDecodeError) as exc:
            raise AmbiguousOutcomeError(f"{self.name}: {type(exc).__name__}: {exc}") from exc

    @staticmethod
    def _check(status: int, payload: Any) -> None:
        if status >= 400:
            message = payload.get("message", "") if isinstance(payload, dict) else str(payload)
            if status == 409:
                raise DuplicateClientOrderIdError(message)
            if status == 422:
                raise OrderRejectedError(message)
            if status == 503:
                raise BrokerUnavailableError(message)
            raise BrokerError(f"HTTP {status}: {message}")

    async def submit(self, request: OrderRequest) -> BrokerOrder:
        answer: asyncio.Future[tuple[int, Any]] = asyncio.get_running_loop().create_future()
        self._queued.append((request, answer))
        if self._sender is None or self._sender.done():
            self._sender = asyncio.create_task(self._send_queued(), name=f"{self.name}:submissions")
        status, payload = await answer
        self._check(status, payload)
        return BrokerOrder.from_json(payload)

    async def _send_queued(self) -> None:
        """Send the queued submissions, a request at a time, until none is left."""
        while self._queued:
            batch, self._queued = self._queued[:MAX_BATCH], self._queued[MAX_BATCH:]
            self.submit_requests += 1
            try:
                status, payload = await self._call("POST", "/v1/orders", body=orjson.dumps([r.to_json() for r, _ in batch]))
                self._check(status, payload)
                try:
                    results = [(int(item["status"]), item["body"]) for item in payload]
                except (KeyError, TypeError, ValueError) as exc:
                    raise AmbiguousOutcomeError(f"{self.name}: malformed answer to submissions: {exc!r}") from exc
                if len(results) != len(batch):
                    raise AmbiguousOutcomeError(f"{self.name}: {len(results)} answers to {len(batch)} submissions")
            except asyncio.CancelledError:  # closed while the request was out: it may have arrived
                self._fail(batch, AmbiguousOutcomeError(f"{self.name}: closed while submitting"))
                raise
            except BrokerError as exc:
                self._fail(batch, exc)
                continue
            for (_, answer), result in zip(batch, results, strict=True):
                if not answer.done():  # its caller may have been cancelled meanwhile
                    answer.set_result(result)

    @staticmethod
    def _fail(batch: list[tuple[OrderRequest, asyncio.Future[tuple[int, Any]]]], exc: BrokerError) -> None:
        for _, answer in batch:
            if not answer.done():
                answer.set_exception(type(exc)(*exc.args))  # one exception object per waiter

    async def cancel(self, client_order_id: str) -> BrokerOrder | None:
        status, payload = await self._call("DELETE", f"/v1/orders/{client_order_id}")
        if status == 404:
            return None
        self._check(status, payload)
        return BrokerOrder.from_json(payload)

    async def get_order(self, client_order_id: str) -> BrokerOrder | None:
        status, payload = await self._call("GET", f"/v1/orders/{client_order_id}")
        if status == 404:
            return None
        self._check(status, payload)
        return BrokerOrder.from_json(payload)

    async def open_orders(self) -> list[BrokerOrder]:
        status, payload = await self._call("GET", "/v1/orders")
        self._check(status, payload)
        return [BrokerOrder.from_json(o) for o in payload]

    async def positions(self) -> list[BrokerPosition]:
        status, payload = await self._call("GET", "/v1/positions")
        self._check(status, payload)
        return [BrokerPosition(p["symbol"], float(p["quantity"]), float(p["avg_price"])) for p in payload]

    async def fills_since(self, cursor: str | None) -> FillPage:
        status, payload = await self._call("GET", "/v1/fills", params={"cursor": cursor or ""})
        self._check(status, payload)
        return FillPage(tuple(BrokerFill.from_json(f) for f in payload["fills"]), str(payload["cursor"]))

    async def on_market(self, event: QuoteUpdated | BarClosed) -> None:
        status, payload = await self._call("POST", "/v1/market", body=encode(event))
        self._check(status, payload)

    async def inject(self, kind: str, count: int = 1) -> None:
        """Force a fault on the next ``count`` submissions (tests and chaos)."""
        status, payload = await self._call("POST", "/v1/faults", body=orjson.dumps({"kind": kind, "count": count}))
        self._check(status, payload)

    async def stats(self) -> dict[str, Any]:
        status, payload = await self._call("GET", "/v1/stats")
        self._check(status, payload)
        return dict(payload)

    async def updates(self) -> AsyncIterator[BrokerOrder]:
        """Order snapshots from now on, pushed by the server's update stream as they happen.

        A dropped or silent stream is reopened after a pause from the last sequence number
        seen, so no update is lost while the server keeps it (a repeat is harmless: reports
        are cumulative)."""
        seq = -1
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=self.timeout_s, sock_read=STREAM_SILENCE_S)
        while not self._closed.is_set():
            try:
                async with self._client().get(self.base_url + "/v1/stream", params={"after": str(seq)},
                                              timeout=timeout) as response:
                    if response.status != 200:
                        raise BrokerError(f"update stream answered HTTP {response.status}")
                    async for line in response.content:
                        message = orjson.loads(line)
                        seq = int(message["seq"])
                        if "order" in message:
                            yield BrokerOrder.from_json(message["order"])
            except (BrokerError, TimeoutError, aiohttp.ClientError, orjson.JSONDecodeError, ValueError):
                pass
            if not self._closed.is_set():
                await asyncio.sleep(0.2)

    async def close(self) -> None:
        self._closed.set()
        if self._sender is not None:
            self._sender.cancel()
        self._fail(self._queued, BrokerUnavailableError(f"{self.name}: client closed before sending"))
        self._queued = []
        if self._session is not None:
            await self._session.close()
            self._session = None
