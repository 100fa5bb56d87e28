"""Structured logs, W3C trace propagation through Kafka-style headers, and metric helpers."""

from __future__ import annotations

import importlib.util
import io
import logging

import orjson
import pytest
from opentelemetry.trace import SpanKind

from ata.events import HeartbeatEmitted, ServiceStatus
from ata.runtime import metrics, telemetry
from ata.runtime.heartbeat import HeartbeatEmitter, HeartbeatStats


@pytest.fixture
def log_stream() -> io.StringIO:
    stream = io.StringIO()
    telemetry.configure_logging("svc-a", "svc-a/0", "DEBUG", stream=stream)
    yield stream
    root = logging.getLogger()
    for handler in list(root.handlers):
        if isinstance(handler, logging.StreamHandler) and handler.stream is stream:
            root.removeHandler(handler)


def _lines(stream: io.StringIO) -> list[dict[str, object]]:
    return [orjson.loads(line) for line in stream.getvalue().splitlines()]


def test_log_lines_are_json_with_service_extras_and_trace_ids(log_stream: io.StringIO) -> None:
    log = logging.getLogger("ata.test.telemetry")
    log.info("outside %s", "span", extra={"symbol": "AAPL", "qty": 3})
    with telemetry.tracer().start_as_current_span("work") as span:
        log.warning("inside")
        context = span.get_span_context()
    try:
        raise ValueError("boom")
    except ValueError:
        log.exception("failed")

    outside, inside, failed = _lines(log_stream)
    assert outside["msg"] == "outside span"
    assert outside["level"] == "INFO"
    assert outside["logger"] == "ata.test.telemetry"
    assert (outside["service"], outside["instance"]) == ("svc-a", "svc-a/0")
    assert (outside["symbol"], outside["qty"]) == ("AAPL", 3)
    assert "trace_id" not in outside
    assert str(outside["ts"]).endswith("Z")
    assert inside["trace_id"] == format(context.trace_id, "032x")
    assert inside["span_id"] == format(context.span_id, "016x")
    assert "ValueError: boom" in str(failed["exc"])


def test_configure_logging_twice_keeps_one_json_handler(log_stream: io.StringIO) -> None:
    second = io.StringIO()
    telemetry.configure_logging("svc-b", "svc-b/0", "INFO", stream=second)
    logging.getLogger("ata.test.telemetry").info("once")
    assert log_stream.getvalue() == ""
    assert [line["service"] for line in _lines(second)] == ["svc-b"]


def test_headers_carry_trace_context_in_both_header_shapes() -> None:
    with telemetry.tracer().start_as_current_span("producer") as span:
        headers = telemetry.inject_headers({"other": "kept"})
        sent = span.get_span_context()
    assert headers["other"] == "kept"
    assert headers["traceparent"].split("-")[1] == format(sent.trace_id, "032x")

    as_kafka_list = [(key, value.encode()) for key, value in headers.items()]
    for carrier in (headers, as_kafka_list):
        received = telemetry.extract_context(carrier)
        with telemetry.tracer().start_as_current_span("child", context=received) as child:
            assert child.get_span_context().trace_id == sent.trace_id


def test_no_span_no_headers_and_garbage_headers_start_a_new_trace() -> None:
    assert telemetry.inject_headers() == {}
    exporter = telemetry.memory_exporter()
    with telemetry.consumer_span("svc", "t.garbage.v1", [("traceparent", b"not-a-traceparent")]) as span:
        assert span.get_span_context().is_valid
    finished = [s for s in exporter.get_finished_spans() if s.context.span_id == span.get_span_context().span_id]
    assert finished[0].parent is None


def test_consumer_span_is_parented_by_incoming_headers_and_outputs_inherit_it() -> None:
    exporter = telemetry.memory_exporter()
    with telemetry.producer_span("svc-a", "t.in.v1") as producer:
        incoming = telemetry.inject_headers()
    with telemetry.consumer_span("svc-b", "t.in.v1", incoming, attributes={"messaging.kafka.offset": 7}) as consumer:
        outgoing = telemetry.inject_headers()
    trace_id = producer.get_span_context().trace_id
    assert consumer.get_span_context().trace_id == trace_id
    assert outgoing["traceparent"].split("-")[2] == format(consumer.get_span_context().span_id, "016x")

    spans = {s.name: s for s in exporter.get_finished_spans() if s.context.trace_id == trace_id}
    process = spans["t.in.v1 process"]
    assert process.kind is SpanKind.CONSUMER
    assert process.parent is not None and process.parent.span_id == producer.get_span_context().span_id
    assert process.attributes is not None
    assert process.attributes["ata.service"] == "svc-b"
    assert process.attributes["messaging.kafka.offset"] == 7
    assert spans["t.in.v1 publish"].kind is SpanKind.PRODUCER


def test_consumer_span_records_an_escaping_error() -> None:
    exporter = telemetry.memory_exporter()
    with pytest.raises(RuntimeError), telemetry.consumer_span("svc", "t.err.v1", None) as span:
        raise RuntimeError("handler failed")
    (finished,) = [s for s in exporter.get_finished_spans() if s.context.span_id == span.get_span_context().span_id]
    assert not finished.status.is_ok
    assert any(event.name == "exception" for event in finished.events)


def test_batch_links_each_distinct_carried_context_once_in_first_seen_order() -> None:
    carried = []
    for name in ("a", "b"):
        with telemetry.producer_span("svc", f"t.{name}.v1") as span:
            carried.append((span.get_span_context(), [(k, v.encode()) for k, v in telemetry.inject_headers().items()]))
    (first, first_headers), (second, second_headers) = carried
    headers = [first_headers, None, second_headers, [("traceparent", b"garbage")], first_headers, {"other": "x"},
               dict(second_headers)]

    links = telemetry.carried_links(headers)

    assert [(link.context.trace_id, link.context.span_id) for link in links] == [
        (first.trace_id, first.span_id), (second.trace_id, second.span_id)]
    assert all(link.context.is_remote for link in links)


def test_batch_links_are_capped_at_distinct_contexts() -> None:
    def headers(span_id: int) -> list[tuple[str, bytes]]:
        return [("traceparent", f"00-{1:032x}-{span_id:016x}-01".encode())]

    repeated = [headers(1)] * (telemetry.MAX_BATCH_LINKS + 5)
    distinct = [headers(n) for n in range(1, telemetry.MAX_BATCH_LINKS + 6)]

    assert [link.context.span_id for link in telemetry.carried_links(repeated + distinct[1:])] == list(
        range(1, telemetry.MAX_BATCH_LINKS + 1))


def test_metric_helpers_get_or_create_and_refuse_conflicts() -> None:
    first = metrics.counter("ata_test_things_total", "things", ("service",))
    assert metrics.counter("ata_test_things_total", "things", ("service",)) is first
    with pytest.raises(ValueError, match="another type or with other labels"):
        metrics.gauge("ata_test_things_total", "things", ("service",))
    with pytest.raises(ValueError, match="another type or with other labels"):
        metrics.counter("ata_test_things_total", "things", ("service", "topic"))
    with pytest.raises(ValueError, match="must start with"):
        metrics.counter("things_total", "things")


def test_metrics_module_can_be_imported_twice() -> None:
    assert metrics.__file__ is not None
    spec = importlib.util.spec_from_file_location("ata_runtime_metrics_again", metrics.__file__)
    assert spec is not None and spec.loader is not None
    again = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(again)
    assert again.EVENTS_IN is metrics.EVENTS_IN
    assert again.SERVICE_READY is metrics.SERVICE_READY


async def test_heartbeat_emitter_survives_a_failed_publish_and_numbers_its_beats() -> None:
    clock = iter(range(1_000_000_000, 100_000_000_000, 1_500_000_000))
    sent: list[HeartbeatEmitted] = []
    fail = [True]

    async def send(beat: HeartbeatEmitted) -> None:
        if fail[0]:
            raise ConnectionError("broker down")
        sent.append(beat)

    emitter = HeartbeatEmitter(
        "svc-hb", "svc-hb/0", 1.0, stats=lambda: HeartbeatStats(ServiceStatus.READY, 5, 4, 2), send=send,
        clock_ns=lambda: next(clock),
    )
    assert await emitter.emit() is False
    fail[0] = False
    assert await emitter.emit() is True
    assert await emitter.emit() is True
    first, second = sent
    assert first.event_id != second.event_id
    assert (first.uptime_s, second.uptime_s) == (3.0, 4.5)  # the clock advances 1.5 s per reading
    assert (second.events_in, second.events_out, second.consumer_lag, second.status) == (5, 4, 2, ServiceStatus.READY)
    with pytest.raises(ValueError, match="positive"):
        HeartbeatEmitter("svc-hb", "svc-hb/0", 0.0, stats=lambda: HeartbeatStats(ServiceStatus.READY, 0, 0, 0), send=send)
