"""The simulated broker as its own process: a small HTTP/JSON server over a :class:`SimulatedExchange`.

Running it apart from execution lets a test kill execution (``kill -9``) and restart it while
the broker keeps its orders, exactly as a real broker would. Event time for submissions is
the server's wall clock; fills are driven by the market data posted to ``/v1/market``.

Endpoints (JSON bodies; errors as ``{"message": ...}``):

- ``POST /v1/orders`` — a JSON list of :class:`OrderRequest` (orders pipelined over one request,
  as a FIX session would carry them), answered by a list of ``{"status", "body"}`` in the same
  order: 200 with the order, 409 "client_order_id must be unique", 422 rejected, 503 simulated
  disconnect. An injected timeout records its order and stalls the whole answer for
  ``timeout_delay_s`` (longer than any sane client timeout): every order of that request is an
  ambiguous outcome to the client, and each is placed or not as its item says;
- ``GET /v1/orders/{client_order_id}`` (404 when unknown), ``DELETE`` cancels it;
- ``GET /v1/orders`` — open orders; ``GET /v1/positions``; ``GET /v1/fills?cursor=``;
- ``GET /v1/stream?after=<seq>`` — execution reports pushed as they happen (the trade-update
  stream): newline-delimited JSON, ``{"seq": n, "order": {...}}`` per order snapshot after
  ``seq``, oldest first; with ``after=-1`` from now on, announced by a first ``{"seq": n}``;
  ``{"seq": n}`` also every ``KEEPALIVE_S`` while nothing happens, so a reader detects silence;
- ``POST /v1/market`` — a ``QuoteUpdated`` or ``BarClosed`` event as JSON;
- ``POST /v1/faults`` — ``{"kind": "timeout", "count": 1}``; ``GET /v1/stats``; ``GET /healthz``.

``python -m ata.execution.brokers.sim_server --port 0 --port-file PATH`` writes the bound port to
``PATH`` once it listens.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import time
from pathlib import Path
from typing import Any

import orjson
from aiohttp import web

from ata.events import BarClosed, QuoteUpdated
from ata.execution.brokers.simulated import FaultKind, FeeModel, SimConfig, SimulatedExchange
from ata.execution.core.ports import (
    AmbiguousOutcomeError,
    BrokerUnavailableError,
    DuplicateClientOrderIdError,
    OrderRejectedError,
    OrderRequest,
)
from ata.execution.core.slippage import model_from_name
from ata.runtime.codec import decode

#: Seconds between keep-alive lines on an idle update stream.
KEEPALIVE_S = 1.0


def _json(data: Any, status: int = 200) -> web.Response:
    return web.Response(body=orjson.dumps(data), status=status, content_type="application/json")


class SimBrokerServer:
    """aiohttp application around one exchange. ``start()`` binds 127.0.0.1:``port`` (0 = free port)."""

    def __init__(self, exchange: SimulatedExchange, *, host: str = "127.0.0.1", port: int = 0,
                 timeout_delay_s: float = 30.0) -> None:
        self.exchange = exchange
        self.host = host
        self.port = port
        self.timeout_delay_s = timeout_delay_s
        self.duplicate_refusals = 0
        #: Update streams that have fixed their starting point: a report made from now on reaches each of them.
        self.open_streams = 0
        self._changed = asyncio.Condition()
        self._closing = False
        self._runner: web.AppRunner | None = None
        app = web.Application()
        app.add_routes([
            web.post("/v1/orders", self._submit),
            web.get("/v1/orders", self._open_orders),
            web.get("/v1/orders/{coid}", self._get),
            web.delete("/v1/orders/{coid}", self._cancel),
            web.get("/v1/positions", self._positions),
            web.get("/v1/fills", self._fills),
            web.get("/v1/stream", self._stream),
            web.post("/v1/market", self._market),
            web.post("/v1/faults", self._faults),
            web.get("/v1/stats", self._stats),
            web.get("/healthz", self._health),
        ])
        self.app = app

    async def start(self) -> int:
        self._runner = web.AppRunner(self.app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port)
        await site.start()
        server = site._server
        assert server is not None and server.sockets  # type: ignore[attr-defined]
        self.port = int(server.sockets[0].getsockname()[1])  # type: ignore[attr-defined]
        return self.port

    async def stop(self) -> None:
        self._closing = True
        await self._notify()  # open update streams end instead of holding up the shutdown
        if self._runner is not None:
            await self._runner.cleanup()

    async def _changed_within(self, timeout_s: float) -> bool:
        async with self._changed:
            try:
                await asyncio.wait_for(self._changed.wait(), timeout_s)
            except TimeoutError:
                return False
        return True

    async def _notify(self) -> None:
        async with self._changed:
            self._changed.notify_all()

    async def _submit(self, request: web.Request) -> web.Response:
        orders = [OrderRequest.from_json(item) for item in orjson.loads(await request.read())]
        now = time.time_ns()
        answers = [self._place(order, now) for order in orders]
        await self._notify()
        if any(answer is None for answer in answers):
            await asyncio.sleep(self.timeout_delay_s)  # the orders exist; the answer comes too late
            answers = [answer or self._found(order.client_order_id) for answer, order in zip(answers, orders, strict=True)]
        return _json(answers)

    def _place(self, order: OrderRequest, now: int) -> dict[str, Any] | None:
        """The answer to one submission; None for an injected timeout (placed, answered late)."""
        try:
            placed = self.exchange.submit(order, now)
        except DuplicateClientOrderIdError as exc:
            self.duplicate_refusals += 1
            return {"status": 409, "body": {"message": str(exc)}}
        except OrderRejectedError as exc:
            return {"status": 422, "body": {"message": exc.reason}}
        except BrokerUnavailableError as exc:
            return {"status": 503, "body": {"message": str(exc)}}
        except AmbiguousOutcomeError:
            return None
        return {"status": 200, "body": placed.to_json()}

    def _found(self, client_order_id: str) -> dict[str, Any]:
        found = self.exchange.get(client_order_id)
        return {"status": 200, "body": found.to_json()} if found else {"status": 500, "body": {"message": "lost"}}

    async def _get(self, request: web.Request) -> web.Response:
        found = self.exchange.get(request.match_info["coid"])
        return _json(found.to_json()) if found else _json({"message": "order not found"}, 404)

    async def _cancel(self, request: web.Request) -> web.Response:
        found = self.exchange.cancel(request.match_info["coid"], time.time_ns())
        await self._notify()
        return _json(found.to_json()) if found else _json({"message": "order not found"}, 404)

    async def _open_orders(self, request: web.Request) -> web.Response:
        return _json([o.to_json() for o in self.exchange.open_orders()])

    async def _positions(self, request: web.Request) -> web.Response:
        return _json([{"symbol": p.symbol, "quantity": p.quantity, "avg_price": p.avg_price} for p in self.exchange.positions()])

    async def _fills(self, request: web.Request) -> web.Response:
        page = self.exchange.fills_since(request.query.get("cursor") or None)
        return _json({"fills": [f.to_json() for f in page.fills], "cursor": page.cursor})

    async def _stream(self, request: web.Request) -> web.StreamResponse:
        after = int(request.query.get("after", "-1"))
        response = web.StreamResponse(headers={"content-type": "application/x-ndjson"})
        await response.prepare(request)
        if after < 0:
            after = self.exchange.update_seq
            await response.write(orjson.dumps({"seq": after}) + b"\n")
        self.open_streams += 1
        try:
            while not self._closing:
                batch = self.exchange.numbered_updates(after)
                if batch:
                    # Everything that happened since the last write goes out in one write.
                    await response.write(b"".join(orjson.dumps({"seq": seq, "order": order.to_json()}) + b"\n"
                                                  for seq, order in batch))
                    after = batch[-1][0]
                    continue
                if not await self._changed_within(KEEPALIVE_S):
                    await response.write(orjson.dumps({"seq": after}) + b"\n")
        finally:
            self.open_streams -= 1
        return response

    async def _market(self, request: web.Request) -> web.Response:
        event = decode(await request.read())
        if isinstance(event, QuoteUpdated):
            changed = self.exchange.on_quote(event)
        elif isinstance(event, BarClosed):
            changed = self.exchange.on_bar(event)
        else:
            return _json({"message": f"not market data: {event.event_type}"}, 422)
        await self._notify()
        return _json({"changed": len(changed)})

    async def _faults(self, request: web.Request) -> web.Response:
        body = orjson.loads(await request.read())
        self.exchange.inject(FaultKind(body["kind"]), int(body.get("count", 1)))
        return _json({"ok": True})

    async def _stats(self, request: web.Request) -> web.Response:
        return _json({"submissions": self.exchange.submissions, "update_seq": self.exchange.update_seq,
                      "duplicate_refusals": self.duplicate_refusals,
                      "orders": [o["request"]["client_order_id"] for o in self.exchange.snapshot()["orders"]]})

    async def _health(self, request: web.Request) -> web.Response:
        return _json({"ok": True})


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m ata.execution.brokers.sim_server", description=__doc__.split("\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--port-file", type=Path, default=None)
    parser.add_argument("--slippage", default="half_spread", choices=["fixed_bps", "half_spread", "sqrt_impact"])
    parser.add_argument("--slippage-bps", type=float, default=0.0)
    parser.add_argument("--fee-bps", type=float, default=0.0)
    parser.add_argument("--latency-ms", type=float, default=0.0)
    parser.add_argument("--participation", type=float, default=1.0)
    parser.add_argument("--timeout-delay-s", type=float, default=30.0)
    parser.add_argument("--seed", type=int, default=0)
    return parser.parse_args(argv)


async def _serve(args: argparse.Namespace) -> None:
    config = SimConfig(slippage=model_from_name(args.slippage, bps=args.slippage_bps), fees=FeeModel(bps=args.fee_bps),
                       latency_ns=int(args.latency_ms * 1e6), participation=args.participation, seed=args.seed)
    server = SimBrokerServer(SimulatedExchange(config), host=args.host, port=args.port, timeout_delay_s=args.timeout_delay_s)
    port = await server.start()
    if args.port_file is not None:
        tmp = args.port_file.with_suffix(".tmp")
        tmp.write_text(str(port))
        tmp.replace(args.port_file)  # atomic: a reader never sees a half-written port
    try:
        await asyncio.Event().wait()
    finally:
        await server.stop()


def main(argv: list[str] | None = None) -> None:
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_serve(_parse(argv)))


if __name__ == "__main__":
    main()
