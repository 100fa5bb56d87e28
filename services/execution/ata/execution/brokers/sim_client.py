"""The broker port over HTTP to a simulated broker process (:mod:`ata.execution.brokers.sim_server`).

Every request has a total timeout. Transport failures are translated per the port contract:
a refused connection means the request never arrived (:class:`BrokerUnavailableError`);
a timeout or a connection dropped after sending is ambiguous (:class:`AmbiguousOutcomeError`).
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

LONG_POLL_MS = 1000


class SimulatedHttpBroker:
    """:class:`~ata.execution.core.ports.BrokerPort` for a simulated broker served over HTTP."""

    def __init__(self, name: str, base_url: str, *, timeout_s: float = 2.0) -> None:
        self.name = name
        self.base_url = base_url.rstrip("/")
        self.timeout_s = timeout_s
        self._session: aiohttp.ClientSession | None = None
        self._closed = asyncio.Event()

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=self.timeout_s),
                connector=aiohttp.TCPConnector(limit=64, force_close=False),
            )
        return self._session

    async def _call(self, method: str, path: str, *, body: bytes | None = None, timeout_s: float | None = None,
                    params: dict[str, str] | None = None) -> tuple[int, Any]:
        timeout = aiohttp.ClientTimeout(total=timeout_s) if timeout_s is not None else None
        try:
            async with self._client().request(method, self.base_url + path, data=body, params=params, timeout=timeout,
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
        status, payload = await self._call("POST", "/v1/orders", body=orjson.dumps(request.to_json()))
        self._check(status, payload)
        return BrokerOrder.from_json(payload)

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
        """Order snapshots from now on, by long polling; transport errors are retried after a pause."""
        seq: int | None = None
        while not self._closed.is_set():
            try:
                if seq is None:
                    _, head = await self._call("GET", "/v1/updates", params={"after": "-1"})
                    seq = int(head["seq"])
                    continue
                status, payload = await self._call("GET", "/v1/updates", params={"after": str(seq), "wait_ms": str(LONG_POLL_MS)},
                                                   timeout_s=self.timeout_s + LONG_POLL_MS / 1000)
                self._check(status, payload)
            except BrokerError:
                await asyncio.sleep(0.2)
                continue
            seq = int(payload["seq"])
            for order in payload["orders"]:
                yield BrokerOrder.from_json(order)

    async def close(self) -> None:
        self._closed.set()
        if self._session is not None:
            await self._session.close()
            self._session = None
