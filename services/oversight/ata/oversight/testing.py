"""Test support: event builders and a scripted LLM server speaking the OpenAI and Anthropic HTTP APIs.

:class:`ScriptedLLMServer` listens on 127.0.0.1 (a free port) and answers
``POST /v1/chat/completions`` (OpenAI-compatible) and ``POST /v1/messages`` (Anthropic) with
what a *responder* function decides for each request body: a reply text, an HTTP error, a
delay before the reply, or a stall. Every request is recorded (path, headers, JSON body) so
tests can inspect the prompts that left the service. Stalls end when the server stops, so
closing never waits for them.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Self

import orjson
from aiohttp import web
from aiokafka import AIOKafkaConsumer, TopicPartition

from ata.events import (
    ContributingSignal,
    Message,
    NewsPublished,
    RegimeChanged,
    RegimeLabel,
    RegimeStateUpdated,
    StrategySwitched,
    TargetProposed,
)
from ata.runtime.codec import decode

NS_PER_S = 1_000_000_000
T0 = 1_700_000_000 * NS_PER_S


# ---------------------------------------------------------------------- events
def target(symbol: str, ts: int, weight: float, price: float = 100.0, *, key: object = 0,
           contributions: tuple[tuple[str, float, float], ...] = (), regime: str = "") -> TargetProposed:
    return TargetProposed.origin(
        natural_key=("test", symbol, ts, key), ts_event=ts, ts_init=ts, source="strategy/test", symbol=symbol,
        target_weight=weight, reference_price=price, method="test", regime=regime,
        contributions=tuple(ContributingSignal(strategy=s, strength=st, weight=w) for s, st, w in contributions))


def regime_state(symbol: str, ts: int, label: RegimeLabel, probabilities: dict[str, float] | None = None,
                 confidence: float = 0.9) -> RegimeStateUpdated:
    return RegimeStateUpdated.origin(
        natural_key=("test", symbol, ts), ts_event=ts, ts_init=ts, source="regime/test", symbol=symbol, label=label,
        confirmed_label=label, probabilities=probabilities or {label.value: 1.0}, confidence=confidence)


def regime_change(symbol: str, ts: int, previous: RegimeLabel | None, current: RegimeLabel,
                  confidence: float = 0.9) -> RegimeChanged:
    return RegimeChanged.origin(natural_key=("test", symbol, ts), ts_event=ts, ts_init=ts, source="regime/test",
                                symbol=symbol, previous=previous, current=current, confidence=confidence)


def news(ts: int, headline: str, *, symbols: tuple[str, ...] = (), summary: str = "", key: object = 0) -> NewsPublished:
    return NewsPublished.origin(natural_key=("test", ts, key), ts_event=ts, ts_init=ts, source="sentiment/test",
                                article_id=f"a-{ts}-{key}", news_source="wire", headline=headline, summary=summary,
                                symbols=symbols)


def strategy_switch(symbol: str, ts: int, previous: str, current: str, reason: str = "") -> StrategySwitched:
    """The strategy service's switch event (``current`` turned on), as it publishes it."""
    return StrategySwitched.origin(natural_key=("test", symbol, ts), ts_event=ts, ts_init=ts, source="strategy/test",
                                   symbol=symbol, strategy=current, active=True, previous_strategy=previous,
                                   current_strategy=current, reason=reason or "performance", tracked_sharpe=0.0)


def verdict_json(verdict: str, *, rationale: str = "scripted", confidence: float = 0.8, flags: tuple[str, ...] = (),
                 max_target_weight: float | None = None) -> str:
    return orjson.dumps({"verdict": verdict, "rationale": rationale, "confidence": confidence, "risk_flags": list(flags),
                         "max_target_weight": max_target_weight}).decode()


# ---------------------------------------------------------------------- scripted server
@dataclass(frozen=True)
class Reply:
    """Answer ``text`` as the assistant's message (after ``delay_s``), or fail with ``status`` when it is not 200."""

    text: str = ""
    status: int = 200
    delay_s: float = 0.0
    prompt_tokens: int = 11
    completion_tokens: int = 7


@dataclass(frozen=True)
class Stall:
    """Hold the request open for ``seconds`` (or until :meth:`ScriptedLLMServer.release` or the server stops), then
    answer ``text``."""

    seconds: float = 30.0
    text: str = ""


Action = Reply | Stall
Responder = Callable[[dict[str, Any]], Action]


@dataclass
class Recorded:
    path: str
    headers: dict[str, str]
    body: dict[str, Any]

    def prompt_text(self) -> str:
        """System and user text of the request, whichever API it used."""
        parts = [str(self.body.get("system", ""))]
        parts += [str(m.get("content", "")) for m in self.body.get("messages", [])]
        return "\n".join(parts)


def always(action: Action) -> Responder:
    return lambda _body: action


@dataclass
class ScriptedLLMServer:
    """``async with ScriptedLLMServer(responder) as server: server.openai_url / server.base_url``."""

    responder: Responder
    requests: list[Recorded] = field(default_factory=list)
    _runner: web.AppRunner | None = None
    _port: int = 0
    _released: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self._port}"

    @property
    def openai_url(self) -> str:
        return f"{self.base_url}/v1"

    async def __aenter__(self) -> Self:
        app = web.Application()
        app.router.add_post("/v1/chat/completions", self._openai)
        app.router.add_post("/v1/messages", self._anthropic)
        self._runner = web.AppRunner(app, shutdown_timeout=1.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        server = site._server
        assert isinstance(server, asyncio.Server) and server.sockets  # aiohttp exposes the bound port only here
        self._port = int(server.sockets[0].getsockname()[1])
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.release()
        if self._runner is not None:
            await self._runner.cleanup()

    def release(self) -> None:
        """Let every stalled request (held now or arriving later) answer at once."""
        self._released.set()

    async def _act(self, request: web.Request) -> tuple[Action, dict[str, Any]]:
        body = await request.json()
        self.requests.append(Recorded(request.path, dict(request.headers), body))
        action = self.responder(body)
        if isinstance(action, Stall):
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._released.wait(), timeout=action.seconds)
        elif action.delay_s:
            await asyncio.sleep(action.delay_s)
        return action, body

    async def _answer(self, request: web.Request, render: Callable[[str, str, tuple[int, int]], dict[str, Any]]) -> web.Response:
        """Play the scripted action; ``render(model, text, (prompt_tokens, completion_tokens))`` shapes a success."""
        action, body = await self._act(request)
        if isinstance(action, Reply) and action.status != 200:
            return web.json_response({"error": {"message": "scripted failure", "type": "server_error"}}, status=action.status)
        usage = (action.prompt_tokens, action.completion_tokens) if isinstance(action, Reply) else (0, 0)
        return web.json_response(render(str(body.get("model", "")), action.text, usage))

    async def _openai(self, request: web.Request) -> web.Response:
        return await self._answer(request, lambda model, text, usage: {
            "id": f"chatcmpl-{uuid.uuid4().hex[:12]}", "object": "chat.completion", "model": model,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": usage[0], "completion_tokens": usage[1], "total_tokens": sum(usage)},
        })

    async def _anthropic(self, request: web.Request) -> web.Response:
        return await self._answer(request, lambda model, text, usage: {
            "id": f"msg_{uuid.uuid4().hex[:12]}", "type": "message", "role": "assistant", "model": model,
            "content": [{"type": "text", "text": text}], "stop_reason": "end_turn", "stop_sequence": None,
            "usage": {"input_tokens": usage[0], "output_tokens": usage[1]},
        })


# ---------------------------------------------------------------------- topics
async def collect(bootstrap: str, topic: str, done: Callable[[list[Message]], bool], *, timeout_s: float = 30.0) -> list[Message]:
    """Read ``topic`` from the beginning up to its end, and on until ``done(messages so far)``.

    ``TimeoutError`` after ``timeout_s``."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, fetch_max_wait_ms=20)
    await consumer.start()
    try:
        partitions = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or ())]
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        seen: list[Message] = []
        async with asyncio.timeout(timeout_s):
            while True:
                for records in (await consumer.getmany(timeout_ms=100)).values():
                    seen.extend(decode(r.value) for r in records)
                positions = [(await consumer.position(tp), consumer.highwater(tp)) for tp in partitions]
                if all(high is not None and pos >= high for pos, high in positions) and done(seen):
                    return seen
    finally:
        await consumer.stop()
