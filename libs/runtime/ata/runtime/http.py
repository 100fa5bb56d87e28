"""The operational HTTP endpoints every service serves: ``/healthz``, ``/readyz``, ``/metrics``.

- ``/healthz``: 200 while the process is alive (its event loop answers and the liveness
  probe reports no failure), else 503 with the reason; an orchestrator restarts on failure.
- ``/readyz``: 200 only when the readiness probe reports ready, else 503 with a JSON
  ``reason``; an orchestrator routes traffic / rolls out only to ready instances.
- ``/metrics``: the Prometheus registry in the text exposition format.

A probe is a callable returning ``None`` when fine, or a short human-readable reason
when not. It runs on the event loop, so it must be cheap and non-blocking.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry

from ata.runtime.metrics import render

__all__ = ["HealthServer", "Probe"]

#: ``None`` when fine, otherwise why not.
Probe = Callable[[], str | None]

log = logging.getLogger(__name__)


def _always_fine() -> str | None:
    return None


class HealthServer:
    """An aiohttp server for the three endpoints, bound to ``host:port`` (port 0: a free port).

    After :meth:`start`, :attr:`port` is the port actually bound.
    """

    def __init__(
        self,
        host: str,
        port: int,
        *,
        readiness: Probe,
        liveness: Probe = _always_fine,
        registry: CollectorRegistry = REGISTRY,
    ) -> None:
        self._host = host
        self._requested_port = port
        self._readiness = readiness
        self._liveness = liveness
        self._registry = registry
        self._runner: web.AppRunner | None = None
        self._port: int | None = None

    @property
    def port(self) -> int:
        """The bound port; only valid after :meth:`start`."""
        if self._port is None:
            raise RuntimeError("HealthServer is not started")
        return self._port

    @property
    def url(self) -> str:
        """Base URL of the server, e.g. ``http://127.0.0.1:8080``."""
        return f"http://{self._host}:{self.port}"

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get("/healthz", self._healthz)
        app.router.add_get("/readyz", self._readyz)
        app.router.add_get("/metrics", self._metrics)
        runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await runner.setup()
        site = web.TCPSite(runner, self._host, self._requested_port, reuse_address=True)
        try:
            await site.start()
        except OSError:
            await runner.cleanup()
            raise
        self._runner = runner
        self._port = int(runner.addresses[0][1])
        log.info("http endpoints listening", extra={"http_host": self._host, "http_port": self._port})

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    @staticmethod
    def _probe_response(probe: Probe, ok_status: str) -> web.Response:
        try:
            reason = probe()
        except Exception as exc:  # a broken probe must answer "not ok", not crash the endpoint
            reason = f"probe failed: {exc!r}"
        if reason is None:
            return web.json_response({"status": ok_status})
        return web.json_response({"status": "unavailable", "reason": reason}, status=503)

    async def _healthz(self, _request: web.Request) -> web.Response:
        return self._probe_response(self._liveness, "alive")

    async def _readyz(self, _request: web.Request) -> web.Response:
        return self._probe_response(self._readiness, "ready")

    async def _metrics(self, _request: web.Request) -> web.Response:
        return web.Response(body=render(self._registry), headers={"Content-Type": CONTENT_TYPE_LATEST})
