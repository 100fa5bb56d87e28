"""The /healthz, /readyz and /metrics endpoints over a real socket."""

from __future__ import annotations

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from ata.runtime import metrics
from ata.runtime.http import HealthServer

TIMEOUT = aiohttp.ClientTimeout(total=5)


async def test_endpoints_follow_probes_and_metrics_parse() -> None:
    ready_reason: list[str | None] = ["consumer not assigned"]
    live_reason: list[str | None] = [None]
    server = HealthServer("127.0.0.1", 0, readiness=lambda: ready_reason[0], liveness=lambda: live_reason[0])
    await server.start()
    metrics.EVENTS_IN.labels(service="http-test", topic="t.http.v1").inc(3)
    try:
        assert server.port > 0
        async with aiohttp.ClientSession(base_url=server.url, timeout=TIMEOUT) as http:
            async with http.get("/healthz") as resp:
                assert resp.status == 200
                assert (await resp.json())["status"] == "alive"
            async with http.get("/readyz") as resp:
                assert resp.status == 503
                assert (await resp.json())["reason"] == "consumer not assigned"
            ready_reason[0] = None
            async with http.get("/readyz") as resp:
                assert resp.status == 200
            live_reason[0] = "consumer task died"
            async with http.get("/healthz") as resp:
                assert resp.status == 503
                assert (await resp.json())["reason"] == "consumer task died"
            async with http.get("/metrics") as resp:
                assert resp.status == 200
                assert resp.headers["Content-Type"].startswith("text/plain")
                text = await resp.text()
    finally:
        await server.stop()

    families = {family.name: family for family in text_string_to_metric_families(text)}
    samples = [s for s in families["ata_events_in"].samples if s.labels.get("service") == "http-test"]
    assert [(s.name, s.value) for s in samples if s.name.endswith("_total")] == [("ata_events_in_total", 3.0)]


async def test_a_failing_probe_answers_503_instead_of_crashing() -> None:
    def broken() -> str | None:
        raise KeyError("missing")

    server = HealthServer("127.0.0.1", 0, readiness=broken)
    await server.start()
    try:
        async with aiohttp.ClientSession(base_url=server.url, timeout=TIMEOUT) as http, http.get("/readyz") as resp:
            assert resp.status == 503
            assert "probe failed" in (await resp.json())["reason"]
    finally:
        await server.stop()


async def test_port_in_use_fails_start_and_port_before_start_is_an_error() -> None:
    first = HealthServer("127.0.0.1", 0, readiness=lambda: None)
    await first.start()
    try:
        clash = HealthServer("127.0.0.1", first.port, readiness=lambda: None)
        with pytest.raises(RuntimeError, match="not started"):
            _ = clash.port
        with pytest.raises(OSError):
            await clash.start()
    finally:
        await first.stop()
