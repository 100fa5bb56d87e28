"""The simulated broker as its own process: a small HTTP/JSON server over a :class:`SimulatedExchange`.

Running it apart from execution lets a test kill execution (``kill -9``) and restart it while
the broker keeps its orders, exactly as a real broker would. Event time for submissions is
the server's wall clock; fills are driven by the market data posted to ``/v1/market``.

Endpoints (JSON bodies; errors as ``{"message": ...}``):

- ``POST /v1/orders`` — an :class:`OrderRequest`; 200 with the order, 409 "client_order_id must
  be unique", 422 rejected, 503 simulated disconnect; an injected timeout records the order
  and answers only after ``timeout_delay_s`` (longer than any sane client timeout);
- ``GET /v1/orders/{client_order_id}`` (404 when unknown), ``DELETE`` cancels it;
- ``GET /v1/orders`` — open orders; ``GET /v1/positions``; ``GET /v1/fills?cursor=``;
- ``GET /v1/updates?after=<seq>&wait_ms=`` — order snapshots after ``seq`` (long poll);
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

MAX_WAIT_MS = 5_000


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
        self._changed = asyncio.Condition()
        self._runner: web.AppRunner | None = None
        app = web.Application()
        app.add_routes([
            web.post("/v1/orders", self._submit),
            web.get("/v1/orders", self._open_orders),
            web.get("/v1/orders/{coid}", self._get),
            web.delete("/v1/orders/{coid}", self._cancel),
            web.get("/v1/positions", self._positions),
            web.get("/v1/fills", self._fills),
            web.get("/v1/updates", self._updates),
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
        if self._runner is not None:
            await self._runner.cleanup()

    async def _notify(self) -> None:
        async with self._changed:
            self._changed.notify_all()

    async def _submit(self, request: web.Request) -> web.Response:
        order_request = OrderRequest.from_json(orjson.loads(await request.read()))
        try:
            placed = self.exchange.submit(order_request, time.time_ns())
        except DuplicateClientOrderIdError as exc:
            self.duplicate_refusals += 1
            return _json({"message": str(exc)}, 409)
        except OrderRejectedError as exc:
            return _json({"message": exc.reason}, 422)
        except BrokerUnavailableError as exc:
            return _json({"message": str(exc)}, 503)
        except AmbiguousOutcomeError:
            await self._notify()
            await asyncio.sleep(self.timeout_delay_s)  # the order exists; the answer comes too late
            found = self.exchange.get(order_request.client_order_id)
            return _json(found.to_json() if found else {"message": "lost"}, 200 if found else 500)
        await self._notify()
        return _json(placed.to_json())

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

    async def _updates(self, request: web.Request) -> web.Response:
        after = int(request.query.get("after", "-1"))
        if after < 0:
            return _json({"orders": [], "seq": self.exchange.update_seq})
        wait_s = min(int(request.query.get("wait_ms", "1000")), MAX_WAIT_MS) / 1000
        batch, seq = self.exchange.updates_since(after)
        if not batch:
            async with self._changed:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._changed.wait(), wait_s)
            batch, seq = self.exchange.updates_since(after)
        return _json({"orders": [o.to_json() for o in batch], "seq": seq})

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
