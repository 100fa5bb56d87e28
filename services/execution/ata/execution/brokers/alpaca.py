"""The broker port on Alpaca: alpaca-py's ``TradingClient`` (paper or live) and ``TradingStream``, made robust.

What alpaca-py leaves out, and this adapter adds:

- **Timeouts.** alpaca-py sets no HTTP timeout. Every REST call runs in a worker thread whose
  ``requests`` session carries a default timeout (a mounted adapter), and the whole call is
  bounded again by ``asyncio.timeout``. alpaca-py's own retry of 429/504 (which sleeps in the
  thread) is switched off: the engine decides about retries, by client order id.
- **The port's error contract** (:mod:`ata.execution.core.ports`): a connection that was never
  established is :class:`BrokerUnavailableError`; a timeout, a reset after sending or a 5xx is
  :class:`AmbiguousOutcomeError` (resolved by looking the order up, never by resubmitting
  elsewhere); HTTP 422 "client_order_id must be unique" is :class:`DuplicateClientOrderIdError`
  (the order exists); 401, and 403 "forbidden", are :class:`AlpacaCredentialsError` naming the
  settings to check; any other 4xx on submission is :class:`OrderRejectedError`.
- **Quantities.** Alpaca reports cumulative ``filled_qty`` and ``filled_avg_price``; they are
  passed on as cumulative values and the state machine derives incremental fills. A trade
  update's ``execution_id``, ``price`` and ``qty`` describe the last execution exactly.
- **Stream watchdog.** alpaca-py's stream reconnects silently forever (also on rejected keys).
  The adapter observes every (re)connection, pings the socket itself every
  ``silence_timeout_s / 3`` when nothing arrived, and when nothing — message or pong — arrived
  for ``silence_timeout_s``, or no connection was established within it, it tears the stream
  down and starts a new one after a :class:`~ata.runtime.resilience.Backoff` delay.
- **No update lost, none duplicated.** After every connection (the first included: updates may
  have happened before it) the adapter polls the open orders and every order it knows to be
  live, and yields those snapshots; snapshots that repeat the last yielded (status, cumulative
  quantity) of an order are dropped, and the state machine drops any remaining repeat.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
import time
from collections.abc import AsyncIterator, Callable, Mapping
from datetime import datetime
from typing import Any, TypeVar

import requests
import urllib3.exceptions
from requests import PreparedRequest, Response
from requests.adapters import HTTPAdapter
from typing_extensions import override

from ata.events import OrderStatus, OrderType, Side, TimeInForce
from ata.execution.core.ports import (
    DUPLICATE_MESSAGE,
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
from ata.runtime.resilience import Backoff

log = logging.getLogger(__name__)

S = OrderStatus
T = TypeVar("T")

#: Queued by the observed stream each time it has connected, authenticated and subscribed.
_CONNECTED = object()
#: Open orders are listed in pages of this size (Alpaca's maximum).
PAGE = 500
CREDENTIALS_HINT = "check ATA_EXECUTION_ALPACA_API_KEY, ATA_EXECUTION_ALPACA_SECRET_KEY and ATA_EXECUTION_ALPACA_BASE_URL"

#: Alpaca order statuses with a fixed meaning here; the others are live and judged by the filled quantity.
_FIXED_STATUS = {"filled": S.FILLED, "canceled": S.CANCELED, "expired": S.EXPIRED, "rejected": S.REJECTED,
                 "pending_cancel": S.PENDING_CANCEL, "replaced": S.CANCELED}
_TYPES = {"market": OrderType.MARKET, "limit": OrderType.LIMIT, "stop": OrderType.STOP, "stop_limit": OrderType.LIMIT}
_TIF = {"day": TimeInForce.DAY, "gtc": TimeInForce.GTC, "ioc": TimeInForce.IOC, "fok": TimeInForce.IOC}
_FILL_EVENTS = frozenset({"fill", "partial_fill"})


class AlpacaCredentialsError(BrokerUnavailableError):
    """Alpaca refused the API key / secret. Nothing was applied, so it is also "unavailable"."""


class _TimeoutAdapter(HTTPAdapter):
    """Gives every request of a ``requests`` session a default timeout."""

    def __init__(self, timeout_s: float, pool_size: int) -> None:
        super().__init__(pool_connections=pool_size, pool_maxsize=pool_size)
        self.timeout_s = timeout_s

    @override
    def send(self, request: PreparedRequest, stream: bool = False,  # the signature is requests'
             timeout: float | tuple[float | None, float | None] | None = None, verify: bool | str = True,
             cert: str | tuple[str, str] | None = None, proxies: dict[str, str] | None = None) -> Response:
        return super().send(request, stream=stream, timeout=self.timeout_s if timeout is None else timeout, verify=verify,
                            cert=cert, proxies=proxies)


# -- JSON shapes ---------------------------------------------------------------------------------
def parse_ts(text: str | None) -> int:
    """Alpaca's RFC 3339 timestamps (up to nanoseconds, ``Z`` or an offset) as ns since the epoch; 0 if absent."""
    if not text:
        return 0
    stamp = text.replace("Z", "+00:00")
    head, dot, rest = stamp.partition(".")
    if not dot:
        return int(datetime.fromisoformat(stamp).timestamp()) * 1_000_000_000
    digits = "".join(c for c in rest[:9] if c.isdigit())
    zone = rest[len(digits):]
    seconds = int(datetime.fromisoformat(head + zone).timestamp())
    return seconds * 1_000_000_000 + int(digits.ljust(9, "0")[:9])


def _float(value: Any) -> float | None:
    return None if value is None or value == "" else float(value)


def status_from_alpaca(status: str, cum_qty: float, quantity: float) -> OrderStatus:
    """Our status for an Alpaca order status; live statuses (new, accepted, held, done_for_day...) by fill progress."""
    fixed = _FIXED_STATUS.get(status)
    if fixed is not None:
        return fixed
    if cum_qty <= 0:
        return S.ACCEPTED
    return S.FILLED if cum_qty >= quantity else S.PARTIALLY_FILLED


def order_from_alpaca(raw: Mapping[str, Any]) -> BrokerOrder:
    """An Alpaca order object (REST, or ``order`` of a trade update) as the broker's view of it."""
    quantity = float(raw["qty"])
    cum = _float(raw.get("filled_qty")) or 0.0
    kind = str(raw.get("order_type") or raw.get("type") or "market")
    request = OrderRequest(
        client_order_id=str(raw["client_order_id"]), symbol=str(raw["symbol"]), side=Side(raw["side"]), quantity=quantity,
        order_type=_TYPES.get(kind, OrderType.MARKET), limit_price=_float(raw.get("limit_price")),
        stop_price=_float(raw.get("stop_price")), time_in_force=_TIF.get(str(raw.get("time_in_force")), TimeInForce.DAY))
    status = status_from_alpaca(str(raw["status"]), cum, quantity)
    reason = f"alpaca status {raw['status']}" if status in (S.CANCELED, S.EXPIRED, S.REJECTED) else ""
    return BrokerOrder(request=request, broker_order_id=str(raw["id"]), status=status, cum_filled_qty=cum,
                       avg_fill_price=_float(raw.get("filled_avg_price")), reason=reason,
                       ts_event=parse_ts(raw.get("updated_at") or raw.get("submitted_at")))


def order_from_trade_update(data: Mapping[str, Any]) -> BrokerOrder:
    """The ``data`` of a ``trade_updates`` message: the order, plus the last execution for fill events."""
    order = order_from_alpaca(data["order"])
    ts = parse_ts(data.get("timestamp")) or order.ts_event
    if data.get("event") in _FILL_EVENTS and data.get("execution_id"):
        return BrokerOrder(request=order.request, broker_order_id=order.broker_order_id, status=order.status,
                           cum_filled_qty=order.cum_filled_qty, avg_fill_price=order.avg_fill_price, cum_fee=order.cum_fee,
                           reason=order.reason, ts_event=ts, fill_id=str(data["execution_id"]),
                           last_fill_price=_float(data.get("price")), last_fill_qty=_float(data.get("qty")))
    return BrokerOrder(request=order.request, broker_order_id=order.broker_order_id, status=order.status,
                       cum_filled_qty=order.cum_filled_qty, avg_fill_price=order.avg_fill_price, reason=order.reason,
                       ts_event=ts)


def _api_message(exc: Any) -> tuple[int | None, str, int | None]:
    """(HTTP status, message, Alpaca error code) of an alpaca-py ``APIError``."""
    text = str(exc)
    try:
        body = json.loads(text)
    except ValueError:
        body = {}
    if not isinstance(body, dict):
        body = {}
    code = body.get("code")
    return exc.status_code, str(body.get("message", text)), code if isinstance(code, int) else None


def _never_sent(exc: requests.RequestException) -> bool:
    """Whether a transport error happened before the request could reach the server."""
    if isinstance(exc, requests.exceptions.ConnectTimeout):
        return True
    if isinstance(exc, requests.exceptions.ConnectionError):
        reason = getattr(exc.args[0], "reason", None) if exc.args else None
        return isinstance(reason, urllib3.exceptions.NewConnectionError)
    return False


class AlpacaBroker:
    """:class:`~ata.execution.core.ports.BrokerPort` on an Alpaca account. See the module docstring.

    ``base_url`` overrides the REST endpoint (paper by default, live with ``paper=False``);
    ``stream_url`` the trade-update websocket (derived from ``base_url`` when only that is given).
    """

    def __init__(self, *, api_key: str, secret_key: str, name: str = "alpaca", paper: bool = True, base_url: str = "",
                 stream_url: str = "", timeout_s: float = 10.0, silence_timeout_s: float = 30.0,
                 backoff: Backoff | None = None, rng: random.Random | None = None) -> None:
        from alpaca.trading.client import TradingClient

        self.name = name
        self._key, self._secret, self.paper = api_key, secret_key, paper
        self.base_url = base_url.rstrip("/")
        if stream_url:
            self.stream_url = stream_url
        elif self.base_url:
            self.stream_url = self.base_url.replace("https://", "wss://", 1).replace("http://", "ws://", 1) + "/stream"
        else:
            self.stream_url = ""
        self.timeout_s = timeout_s
        self.silence_timeout_s = silence_timeout_s
        self.backoff = backoff or Backoff(initial_s=0.5, cap_s=30.0, max_attempts=None)
        self._rng = rng or random.Random()
        self._client = TradingClient(api_key, secret_key, paper=paper, raw_data=True, url_override=self.base_url or None)
        # alpaca-py exposes no timeout setting; its requests session is the only place to put one.
        adapter = _TimeoutAdapter(timeout_s, pool_size=32)
        self._client._session.mount("http://", adapter)
        self._client._session.mount("https://", adapter)
        # Its retry of 429/504 sleeps in the thread and resends; the engine owns retries.
        self._client._retry = 0
        self._live: dict[str, BrokerOrder] = {}  # orders last seen non-terminal, by client order id
        self._coid_by_id: dict[str, str] = {}  # Alpaca order id -> client order id (fills carry only the former)
        self._yielded: dict[str, tuple[OrderStatus, float]] = {}
        self._closed = asyncio.Event()
        self.connects = 0
        self.silences = 0
        self.restarts = 0
        self.updates_received = 0
        self.repeats_dropped = 0

    @classmethod
    def from_settings(cls, settings: Any) -> AlpacaBroker:
        """Build from :class:`~ata.execution.config.ExecutionSettings` (which requires the keys when alpaca is used)."""
        if settings.alpaca_api_key is None or settings.alpaca_secret_key is None:
            raise ValueError("ATA_EXECUTION_ALPACA_API_KEY and ATA_EXECUTION_ALPACA_SECRET_KEY are required for alpaca")
        return cls(api_key=settings.alpaca_api_key.get_secret_value(), secret_key=settings.alpaca_secret_key.get_secret_value(),
                   paper=settings.alpaca_paper, base_url=settings.alpaca_base_url, stream_url=settings.alpaca_stream_url,
                   timeout_s=settings.alpaca_timeout_s, silence_timeout_s=settings.alpaca_silence_timeout_s,
                   backoff=Backoff(initial_s=settings.alpaca_backoff_initial_s, cap_s=settings.alpaca_backoff_cap_s,
                                   max_attempts=None))

    # -- REST plumbing --------------------------------------------------------------------------
    async def _rest(self, what: str, call: Callable[[], T]) -> T:
        """Run one blocking alpaca-py call in a thread, bounded, with errors translated per the port."""
        from alpaca.common.exceptions import APIError

        try:
            async with asyncio.timeout(self.timeout_s):
                return await asyncio.to_thread(call)
        except TimeoutError:
            raise AmbiguousOutcomeError(f"{self.name}: {what} timed out after {self.timeout_s}s") from None
        except APIError as exc:
            raise self._api_error(what, exc) from None
        except requests.RequestException as exc:
            if _never_sent(exc):
                raise BrokerUnavailableError(f"{self.name}: {what}: cannot connect: {exc}") from None
            raise AmbiguousOutcomeError(f"{self.name}: {what}: {type(exc).__name__}: {exc}") from None

    def _api_error(self, what: str, exc: Any) -> BrokerError:
        status, message, code = _api_message(exc)
        if status == 401 or (status == 403 and code is None and "forbidden" in message.lower()):
            return AlpacaCredentialsError(f"{self.name}: Alpaca refused the credentials ({status} on {what}: {message}); "
                                          + CREDENTIALS_HINT)
        if status == 422 and DUPLICATE_MESSAGE in message:
            return DuplicateClientOrderIdError(message)
        if status == 429:
            return BrokerUnavailableError(f"{self.name}: rate limited on {what}")
        if status is None or status >= 500:
            return AmbiguousOutcomeError(f"{self.name}: {what}: HTTP {status}: {message}")
        return _HttpClientError(status, message)

    def _remember(self, order: BrokerOrder) -> BrokerOrder:
        self._coid_by_id[order.broker_order_id] = order.client_order_id
        if order.status.terminal:
            self._live.pop(order.client_order_id, None)
        else:
            self._live[order.client_order_id] = order
        return order

    # -- the port -------------------------------------------------------------------------------
    async def check_credentials(self) -> None:
        """One bounded call that Alpaca answers 401/403 for bad keys (raises :class:`AlpacaCredentialsError`)."""
        await self._rest("account", self._client.get_account)

    async def submit(self, request: OrderRequest) -> BrokerOrder:
        order_data = _alpaca_request(request)
        try:
            raw = await self._rest(f"submit {request.client_order_id}", lambda: self._client.submit_order(order_data))
        except _HttpClientError as exc:
            raise OrderRejectedError(f"alpaca {exc.status}: {exc.message}") from None
        return self._remember(order_from_alpaca(_mapping(raw)))

    async def get_order(self, client_order_id: str) -> BrokerOrder | None:
        try:
            raw = await self._rest(f"order {client_order_id}", lambda: self._client.get_order_by_client_id(client_order_id))
        except _HttpClientError as exc:
            if exc.status == 404:
                return None
            raise BrokerError(f"{self.name}: order lookup: HTTP {exc.status}: {exc.message}") from None
        return self._remember(order_from_alpaca(_mapping(raw)))

    async def cancel(self, client_order_id: str) -> BrokerOrder | None:
        order = await self.get_order(client_order_id)
        if order is None or order.status.terminal:
            return order
        try:
            await self._rest(f"cancel {client_order_id}", lambda: self._client.cancel_order_by_id(order.broker_order_id))
        except _HttpClientError as exc:
            # 422 "order is not cancelable" (it filled or closed meanwhile) / 404: the lookup below tells the truth.
            log.info("cancel of %s at %s answered %s: %s", client_order_id, self.name, exc.status, exc.message)
        return await self.get_order(client_order_id)

    async def open_orders(self) -> list[BrokerOrder]:
        from alpaca.common.enums import Sort
        from alpaca.trading.enums import QueryOrderStatus
        from alpaca.trading.requests import GetOrdersRequest

        orders: list[BrokerOrder] = []
        after: datetime | None = None
        while True:
            query = GetOrdersRequest(status=QueryOrderStatus.OPEN, limit=PAGE, direction=Sort.ASC, nested=False, after=after)
            try:
                page = await self._rest("open orders", lambda q=query: self._client.get_orders(q))  # type: ignore[misc]
            except _HttpClientError as exc:
                raise BrokerError(f"{self.name}: open orders: HTTP {exc.status}: {exc.message}") from None
            raws = [_mapping(item) for item in _sequence(page)]
            orders += [self._remember(order_from_alpaca(raw)) for raw in raws]
            if len(raws) < PAGE:
                return orders
            after = datetime.fromisoformat(str(raws[-1]["submitted_at"]).replace("Z", "+00:00"))

    async def positions(self) -> list[BrokerPosition]:
        try:
            raw = await self._rest("positions", self._client.get_all_positions)
        except _HttpClientError as exc:
            raise BrokerError(f"{self.name}: positions: HTTP {exc.status}: {exc.message}") from None
        positions = []
        for item in map(_mapping, _sequence(raw)):
            quantity = abs(float(item["qty"])) * (-1.0 if item.get("side") == "short" else 1.0)
            positions.append(BrokerPosition(str(item["symbol"]), quantity, _float(item.get("avg_entry_price")) or 0.0))
        return positions

    async def fills_since(self, cursor: str | None) -> FillPage:
        """Account activities of type FILL after ``cursor`` (an activity id), oldest first."""
        params: dict[str, Any] = {"direction": "asc", "page_size": 100}
        if cursor:
            params["page_token"] = cursor
        try:
            raw = await self._rest("fill activities", lambda: self._client.get("/account/activities/FILL", params))
        except _HttpClientError as exc:
            raise BrokerError(f"{self.name}: fill activities: HTTP {exc.status}: {exc.message}") from None
        fills = []
        for item in map(_mapping, _sequence(raw)):
            coid = await self._client_order_id(str(item["order_id"]))
            fills.append(BrokerFill(fill_id=str(item["id"]), client_order_id=coid, symbol=str(item["symbol"]),
                                    side=Side(item["side"]), quantity=float(item["qty"]), price=float(item["price"]), fee=0.0,
                                    ts_event=parse_ts(item.get("transaction_time"))))
        return FillPage(tuple(fills), fills[-1].fill_id if fills else (cursor or ""))

    async def _client_order_id(self, order_id: str) -> str:
        known = self._coid_by_id.get(order_id)
        if known is not None:
            return known
        try:
            raw = await self._rest(f"order id {order_id}", lambda: self._client.get_order_by_id(order_id))
        except _HttpClientError as exc:
            raise BrokerError(f"{self.name}: order {order_id}: HTTP {exc.status}: {exc.message}") from None
        return self._remember(order_from_alpaca(_mapping(raw))).client_order_id

    # -- trade updates --------------------------------------------------------------------------
    def _stream(self, queue: asyncio.Queue[Any]) -> Any:
        from alpaca.trading.stream import TradingStream

        async def on_update(raw: Any) -> None:
            queue.put_nowait(raw)

        class ObservedStream(TradingStream):
            async def _start_ws(self) -> None:
                await super()._start_ws()
                queue.put_nowait(_CONNECTED)

        # Keep-alive pings are the watchdog's (below), so a silent peer is judged by one rule.
        params = {"open_timeout": self.timeout_s, "close_timeout": self.timeout_s, "ping_interval": None,
                  "ping_timeout": None, "max_queue": 1024}
        stream = ObservedStream(self._key, self._secret, paper=self.paper, raw_data=True,
                                url_override=self.stream_url or None, websocket_params=params)
        stream.subscribe_trade_updates(on_update)
        return stream

    async def updates(self) -> AsyncIterator[BrokerOrder]:
        """Order snapshots from the trade-update stream, kept alive by the watchdog; ends on :meth:`close`."""
        attempt = 0
        while not self._closed.is_set():
            queue: asyncio.Queue[Any] = asyncio.Queue()
            stream = self._stream(queue)
            # alpaca-py's only asyncio entry point; it owns connect, auth, subscribe and its own reconnects.
            task = asyncio.create_task(stream._run_forever(), name=f"{self.name}:trade-updates")
            connects_before = self.connects
            try:
                async for update in self._watch(stream, queue):
                    yield update
            finally:
                await self._shutdown(stream, task)
            if self._closed.is_set():
                return
            self.restarts += 1
            attempt = 0 if self.connects > connects_before else attempt + 1
            delay = self.backoff.delay(attempt, self._rng)
            log.warning("%s trade-update stream restarted (attempt %d) in %.2fs", self.name, attempt, delay)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(delay):
                    await self._closed.wait()

    async def _watch(self, stream: Any, queue: asyncio.Queue[Any]) -> AsyncIterator[BrokerOrder]:
        """Follow one stream instance until it is judged dead (returns) or the adapter closes."""
        beat_s = self.silence_timeout_s / 3
        last_seen = time.monotonic()
        connected = False
        closer = asyncio.ensure_future(self._closed.wait())
        try:
            while not self._closed.is_set():
                getter = asyncio.ensure_future(queue.get())
                done, _ = await asyncio.wait({getter, closer}, timeout=beat_s, return_when=asyncio.FIRST_COMPLETED)
                if getter not in done:
                    getter.cancel()
                    if closer in done:
                        return
                    if connected and await self._ping(stream):
                        last_seen = time.monotonic()
                    elif time.monotonic() - last_seen >= self.silence_timeout_s:
                        self.silences += 1
                        log.warning("%s trade-update stream silent for %.1fs; restarting", self.name, self.silence_timeout_s)
                        return
                    continue
                last_seen = time.monotonic()
                item = getter.result()
                if item is _CONNECTED:
                    connected = True
                    self.connects += 1
                    for order in await self._catch_up():
                        if self._fresh(order):
                            yield order
                    continue
                data = item.get("data") if isinstance(item, dict) else None
                if not isinstance(data, dict) or "order" not in data:
                    continue
                self.updates_received += 1
                order = self._remember(order_from_trade_update(data))
                if self._fresh(order):
                    yield order
        finally:
            closer.cancel()

    async def _ping(self, stream: Any) -> bool:
        """Whether the current socket answers a ping within the REST timeout."""
        ws = stream._ws  # alpaca-py keeps the socket private; a ping is the only liveness probe there is
        if ws is None:
            return False
        try:
            async with asyncio.timeout(min(self.timeout_s, self.silence_timeout_s / 3)):
                await (await ws.ping())
        except Exception:  # closed, closing or no pong: all mean "not alive"
            return False
        return True

    async def _catch_up(self) -> list[BrokerOrder]:
        """Open orders and every order last seen live, polled after a (re)connection; [] if REST fails now."""
        try:
            views = {o.client_order_id: o for o in await self.open_orders()}
            for coid in [c for c in list(self._live) if c not in views]:
                found = await self.get_order(coid)
                if found is not None:
                    views[coid] = found
        except BrokerError as exc:
            # The engine's periodic poll and in-flight re-checks still reach these orders.
            log.warning("%s catch-up after connecting failed: %s", self.name, exc)
            return []
        return sorted(views.values(), key=lambda o: o.ts_event)

    def _fresh(self, order: BrokerOrder) -> bool:
        """False for a snapshot that repeats the last one yielded for the order (status and cumulative quantity)."""
        key = (order.status, order.cum_filled_qty)
        previous = self._yielded.get(order.client_order_id)
        if previous is not None and (previous == key or previous[1] > key[1]):
            self.repeats_dropped += 1
            return False
        self._yielded[order.client_order_id] = key
        return True

    async def _shutdown(self, stream: Any, task: asyncio.Task[None]) -> None:
        with contextlib.suppress(Exception):
            async with asyncio.timeout(self.timeout_s):
                await stream.stop_ws()
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            async with asyncio.timeout(self.timeout_s):
                await task
        with contextlib.suppress(Exception):
            async with asyncio.timeout(self.timeout_s):
                await stream.close()

    async def close(self) -> None:
        self._closed.set()
        self._client._session.close()

    def health(self) -> dict[str, int]:
        return {"connects": self.connects, "silences": self.silences, "restarts": self.restarts,
                "updates_received": self.updates_received, "repeats_dropped": self.repeats_dropped}


class _HttpClientError(BrokerError):
    """A 4xx answer the caller interprets (rejection on submit, "not found" on a lookup)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"HTTP {status}: {message}")
        self.status = status
        self.message = message


def _mapping(raw: Any) -> Mapping[str, Any]:
    if not isinstance(raw, Mapping):
        raise AmbiguousOutcomeError(f"unexpected Alpaca answer: {type(raw).__name__}")
    return raw


def _sequence(raw: Any) -> list[Any]:
    if raw is None:
        return []
    if not isinstance(raw, list):
        raise BrokerError(f"unexpected Alpaca answer: {type(raw).__name__}")
    return raw


def _alpaca_request(request: OrderRequest) -> Any:
    """alpaca-py's request model for ``request``; the client order id is ours."""
    from alpaca.trading.enums import OrderSide
    from alpaca.trading.enums import TimeInForce as AlpacaTif
    from alpaca.trading.requests import LimitOrderRequest, MarketOrderRequest, StopOrderRequest

    common: dict[str, Any] = {"symbol": request.symbol, "qty": request.quantity, "side": OrderSide(request.side.value),
                              "time_in_force": AlpacaTif(request.time_in_force.value),
                              "client_order_id": request.client_order_id}
    if request.order_type is OrderType.LIMIT:
        return LimitOrderRequest(limit_price=request.limit_price, **common)
    if request.order_type is OrderType.STOP:
        return StopOrderRequest(stop_price=request.stop_price, **common)
    return MarketOrderRequest(**common)
