"""A fake Alpaca trading API on 127.0.0.1: REST (``/v2``) and the trade-update websocket (``/stream``).

It answers in Alpaca's JSON shapes (orders, positions, FILL activities, error bodies with
``code``/``message``) and speaks the stream protocol alpaca-py's ``TradingStream`` uses:
``authenticate`` → ``authorization``, ``listen`` → ``listening``, then ``trade_updates``
messages (sent as binary frames, as Alpaca does). Orders are created ``accepted``; tests move
them on with :meth:`FakeAlpaca.fill` and the endpoint DELETE, and inject faults:

- ``submit_delay_s``: a submission is recorded, then the answer is held back (a client timeout
  after the order exists);
- :meth:`silence_streams`: the current connections stop delivering and stop answering pings;
- :meth:`drop_streams`: the current connections are closed by the server;
- ``replay_last_on_connect``: a new connection first receives the last trade update again (a
  duplicate delivery);
- wrong credentials: 401 ``request is not authorized`` over REST, ``unauthorized`` on the stream.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
import uuid
from datetime import UTC, datetime
from typing import Any

from aiohttp import WSMsgType, web

ISO_NS = "%Y-%m-%dT%H:%M:%S"


def iso(ns: int) -> str:
    """RFC 3339 with nanoseconds, as Alpaca writes timestamps."""
    seconds, frac = divmod(ns, 1_000_000_000)
    return datetime.fromtimestamp(seconds, UTC).strftime(ISO_NS) + f".{frac:09d}Z"


def _error(status: int, code: int | None, message: str) -> web.Response:
    body: dict[str, Any] = {"message": message} if code is None else {"code": code, "message": message}
    return web.json_response(body, status=status)


class _Stream:
    def __init__(self, ws: web.WebSocketResponse) -> None:
        self.ws = ws
        self.listening = False
        self.silent = asyncio.Event()


class FakeAlpaca:
    """See the module docstring. ``start()`` binds a free port; ``url`` is the REST base, ``stream_url`` the socket."""

    def __init__(self, key: str = "PKTEST", secret: str = "sktest") -> None:
        self.key, self.secret = key, secret
        self.orders: dict[str, dict[str, Any]] = {}  # by Alpaca order id
        self.by_client_id: dict[str, str] = {}
        self.activities: list[dict[str, Any]] = []
        self.posts = 0  # POST /v2/orders requests, duplicates and rejections included
        self.submissions: list[str] = []  # client order ids of orders created
        self.stream_connections = 0
        self.submit_delay_s = 0.0
        self.replay_last_on_connect = False
        self.refuse_orders_message = ""  # non-empty: submissions answered 403 with this message
        #: The answer to wrong credentials: Alpaca's 401 body, or (403, None, "forbidden.") as its gateway sends.
        self.auth_failure: tuple[int, int | None, str] = (401, 40110000, "request is not authorized")
        self._streams: list[_Stream] = []
        self._last_update: bytes | None = None
        self._runner: web.AppRunner | None = None
        self.port = 0

    # -- lifecycle --------------------------------------------------------------------------------
    async def start(self) -> None:
        app = web.Application(middlewares=[self._auth])
        app.router.add_get("/v2/account", self._account)
        app.router.add_post("/v2/orders", self._submit)
        app.router.add_get("/v2/orders", self._list)
        app.router.add_get("/v2/orders:by_client_order_id", self._by_client_id)
        app.router.add_get("/v2/orders/{order_id}", self._get)
        app.router.add_delete("/v2/orders/{order_id}", self._cancel)
        app.router.add_get("/v2/positions", self._positions)
        app.router.add_get("/v2/account/activities/FILL", self._fills)
        app.router.add_get("/stream", self._stream)
        self._runner = web.AppRunner(app, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = int(self._runner.addresses[0][1])

    async def close(self) -> None:
        for stream in list(self._streams):
            with contextlib.suppress(Exception):
                await stream.ws.close()
        if self._runner is not None:
            await self._runner.cleanup()

    async def __aenter__(self) -> FakeAlpaca:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def stream_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/stream"

    # -- test controls -----------------------------------------------------------------------------
    def order(self, client_order_id: str) -> dict[str, Any]:
        return self.orders[self.by_client_id[client_order_id]]

    def seed(self, client_order_id: str, symbol: str, side: str, qty: float) -> dict[str, Any]:
        """An order placed outside the platform (no POST counted)."""
        return self._create({"symbol": symbol, "qty": str(qty), "side": side, "type": "market", "time_in_force": "day",
                             "client_order_id": client_order_id})

    async def fill(self, client_order_id: str, qty: float, price: float) -> dict[str, Any]:
        """Execute ``qty`` more at ``price``: cumulative quantities, a FILL activity and a trade update."""
        order = self.order(client_order_id)
        before = float(order["filled_qty"])
        cum = before + qty
        avg = (before * float(order["filled_avg_price"] or 0.0) + qty * price) / cum
        now = time.time_ns()
        done = cum >= float(order["qty"])
        order.update(filled_qty=_num(cum), filled_avg_price=_num(avg), updated_at=iso(now),
                     status="filled" if done else "partially_filled", filled_at=iso(now) if done else None)
        execution_id = str(uuid.uuid4())
        event = "fill" if done else "partial_fill"
        self.activities.append({
            "id": f"{iso(now)[:10].replace('-', '')}000000000::{execution_id}", "activity_type": "FILL",
            "transaction_time": iso(now), "type": event, "price": _num(price), "qty": _num(qty), "side": order["side"],
            "symbol": order["symbol"], "leaves_qty": _num(float(order["qty"]) - cum), "order_id": order["id"],
            "cum_qty": _num(cum), "order_status": order["status"]})
        await self._publish(event, order, now, execution_id=execution_id, price=price, qty=qty)
        return order

    async def close_order(self, client_order_id: str, status: str = "canceled") -> dict[str, Any]:
        """The broker closes an order on its own (canceled from its dashboard, expired at the close)."""
        order = self.order(client_order_id)
        now = time.time_ns()
        order.update(status=status, updated_at=iso(now), **{f"{status}_at": iso(now)})
        await self._publish(status, order, now)
        return order

    def silence_streams(self) -> None:
        """Current connections go quiet: no messages, no pongs (a half-dead TCP peer)."""
        for stream in self._streams:
            stream.silent.set()

    async def drop_streams(self) -> None:
        """Close every current connection from the server side."""
        for stream in list(self._streams):
            await stream.ws.close()

    @property
    def live_streams(self) -> int:
        return sum(1 for s in self._streams if s.listening and not s.silent.is_set())

    # -- REST ---------------------------------------------------------------------------------
    @web.middleware
    async def _auth(self, request: web.Request, handler: Any) -> web.StreamResponse:
        if request.path == "/stream":
            response: web.StreamResponse = await handler(request)  # the stream authenticates in-band
            return response
        if request.headers.get("APCA-API-KEY-ID") != self.key or request.headers.get("APCA-API-SECRET-KEY") != self.secret:
            return _error(*self.auth_failure)
        answer: web.StreamResponse = await handler(request)
        return answer

    async def _account(self, _: web.Request) -> web.Response:
        return web.json_response({"id": "904837e3-3b76-47ec-b432-046db621571b", "account_number": "PA3TEST00001",
                                  "status": "ACTIVE", "currency": "USD", "cash": "100000", "buying_power": "400000",
                                  "equity": "100000", "pattern_day_trader": False, "trading_blocked": False,
                                  "transfers_blocked": False, "account_blocked": False, "shorting_enabled": True})

    async def _submit(self, request: web.Request) -> web.Response:
        self.posts += 1
        body = await request.json()
        if body.get("client_order_id") in self.by_client_id:
            return _error(422, 40010001, "client_order_id must be unique")
        if self.refuse_orders_message:
            return _error(403, 40310000, self.refuse_orders_message)
        order = self._create(body)
        await self._publish("new", order, time.time_ns())
        if self.submit_delay_s:
            await asyncio.sleep(self.submit_delay_s)
        return web.json_response(order)

    def _create(self, body: dict[str, Any]) -> dict[str, Any]:
        now = iso(time.time_ns())
        order_id = str(uuid.uuid4())
        kind = body.get("type", "market")
        order = {
            "id": order_id, "client_order_id": body.get("client_order_id") or str(uuid.uuid4()), "created_at": now,
            "updated_at": now, "submitted_at": now, "filled_at": None, "expired_at": None, "canceled_at": None,
            "failed_at": None, "replaced_at": None, "replaced_by": None, "replaces": None,
            "asset_id": str(uuid.uuid5(uuid.NAMESPACE_DNS, body["symbol"])), "symbol": body["symbol"],
            "asset_class": "us_equity", "notional": None, "qty": str(body["qty"]), "filled_qty": "0",
            "filled_avg_price": None, "order_class": "", "order_type": kind, "type": kind, "side": body["side"],
            "position_intent": "buy_to_open" if body["side"] == "buy" else "sell_to_close",
            "time_in_force": body["time_in_force"], "limit_price": body.get("limit_price"),
            "stop_price": body.get("stop_price"), "status": "accepted", "extended_hours": False, "legs": None,
            "trail_percent": None, "trail_price": None, "hwm": None, "subtag": None, "source": None, "expires_at": None,
        }
        self.orders[order_id] = order
        self.by_client_id[order["client_order_id"]] = order_id
        self.submissions.append(order["client_order_id"])
        return order

    async def _list(self, request: web.Request) -> web.Response:
        status = request.query.get("status", "open")
        limit = int(request.query.get("limit", "50"))
        after = request.query.get("after")
        orders = sorted(self.orders.values(), key=lambda o: o["submitted_at"],
                        reverse=request.query.get("direction", "desc") == "desc")
        open_ = ("accepted", "new", "partially_filled", "pending_new", "pending_cancel")
        if status == "open":
            orders = [o for o in orders if o["status"] in open_]
        elif status == "closed":
            orders = [o for o in orders if o["status"] not in open_]
        if after:
            orders = [o for o in orders if o["submitted_at"] > after]
        return web.json_response(orders[:limit])

    async def _by_client_id(self, request: web.Request) -> web.Response:
        coid = request.query.get("client_order_id", "")
        if coid not in self.by_client_id:
            return _error(404, 40410000, f"order not found for {coid}")
        return web.json_response(self.order(coid))

    async def _get(self, request: web.Request) -> web.Response:
        order = self.orders.get(request.match_info["order_id"])
        if order is None:
            return _error(404, 40410000, "order not found")
        return web.json_response(order)

    async def _cancel(self, request: web.Request) -> web.Response:
        order = self.orders.get(request.match_info["order_id"])
        if order is None:
            return _error(404, 40410000, "order not found")
        if order["status"] in ("filled", "canceled", "expired", "rejected"):
            return _error(422, 42210000, "order is not cancelable")
        now = time.time_ns()
        order.update(status="canceled", canceled_at=iso(now), updated_at=iso(now))
        await self._publish("canceled", order, now)
        return web.Response(status=204)

    async def _positions(self, _: web.Request) -> web.Response:
        book: dict[str, list[float]] = {}
        for fill in self.activities:
            sign = 1.0 if fill["side"] == "buy" else -1.0
            qty, cost = book.setdefault(fill["symbol"], [0.0, 0.0])
            book[fill["symbol"]] = [qty + sign * float(fill["qty"]), cost + sign * float(fill["qty"]) * float(fill["price"])]
        positions = []
        for symbol, (qty, cost) in sorted(book.items()):
            if qty == 0:
                continue
            avg = cost / qty
            positions.append({"asset_id": str(uuid.uuid5(uuid.NAMESPACE_DNS, symbol)), "symbol": symbol, "exchange": "NASDAQ",
                              "asset_class": "us_equity", "asset_marginable": True, "qty": _num(qty),
                              "qty_available": _num(qty), "avg_entry_price": _num(avg), "side": "long" if qty > 0 else "short",
                              "market_value": _num(qty * avg), "cost_basis": _num(qty * avg), "unrealized_pl": "0",
                              "unrealized_plpc": "0", "unrealized_intraday_pl": "0", "unrealized_intraday_plpc": "0",
                              "current_price": _num(avg), "lastday_price": _num(avg), "change_today": "0"})
        return web.json_response(positions)

    async def _fills(self, request: web.Request) -> web.Response:
        token = request.query.get("page_token")
        size = int(request.query.get("page_size", "100"))
        ids = [a["id"] for a in self.activities]
        start = ids.index(token) + 1 if token in ids else 0
        return web.json_response(self.activities[start:start + size])

    # -- stream -------------------------------------------------------------------------------
    async def _stream(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(autoping=False)
        await ws.prepare(request)
        self.stream_connections += 1
        stream = _Stream(ws)
        self._streams.append(stream)
        try:
            async for msg in ws:
                if stream.silent.is_set():
                    continue
                if msg.type is WSMsgType.PING:
                    await ws.pong(msg.data)
                    continue
                if msg.type not in (WSMsgType.TEXT, WSMsgType.BINARY):
                    continue
                payload = json.loads(msg.data)
                action, data = payload.get("action"), payload.get("data") or {}
                if action == "authenticate":
                    ok = data.get("key_id") == self.key and data.get("secret_key") == self.secret
                    await ws.send_bytes(json.dumps({"stream": "authorization", "data": {
                        "action": "authenticate", "status": "authorized" if ok else "unauthorized"}}).encode())
                    if not ok:
                        await ws.close()
                elif action == "listen":
                    streams = [s for s in data.get("streams", []) if s == "trade_updates"]
                    await ws.send_bytes(json.dumps({"stream": "listening", "data": {"streams": streams}}).encode())
                    if self.replay_last_on_connect and self._last_update is not None:
                        await ws.send_bytes(self._last_update)
                    stream.listening = bool(streams)
        finally:
            self._streams.remove(stream)
        return ws

    async def _publish(self, event: str, order: dict[str, Any], ts: int, **execution: Any) -> None:
        data: dict[str, Any] = {"event": event, "timestamp": iso(ts), "order": dict(order)}
        if "execution_id" in execution:
            position = sum((1.0 if a["side"] == "buy" else -1.0) * float(a["qty"]) for a in self.activities
                           if a["symbol"] == order["symbol"])
            data.update(execution_id=execution["execution_id"], price=_num(execution["price"]), qty=_num(execution["qty"]),
                        position_qty=_num(position))
        frame = json.dumps({"stream": "trade_updates", "data": data}).encode()
        self._last_update = frame
        for stream in list(self._streams):
            if stream.listening and not stream.silent.is_set():
                with contextlib.suppress(ConnectionError, RuntimeError):
                    await stream.ws.send_bytes(frame)


def _num(value: float) -> str:
    """Alpaca's decimal strings ("10", "179.08")."""
    return f"{value:.10f}".rstrip("0").rstrip(".") or "0"
