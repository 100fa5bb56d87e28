"""Prometheus metrics of the oversight service (``ata_oversight_*``)."""

from __future__ import annotations

from ata.runtime import metrics

#: Provider calls up to a stalled minute.
CALL_BUCKETS_S = (0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 15.0, 30.0, 60.0)

CALLS = metrics.counter("ata_oversight_calls_total", "Provider call attempts by outcome (ok, timeout, transient, http_error, "
                        "malformed, out_of_bounds)", ("provider", "outcome"))
TOKENS = metrics.counter("ata_oversight_tokens_total", "Tokens billed by providers", ("provider", "kind"))
CALL_SECONDS = metrics.histogram("ata_oversight_call_duration_seconds", "Latency of one provider call attempt", ("provider",),
                                 buckets=CALL_BUCKETS_S)
REVIEW_SECONDS = metrics.histogram("ata_oversight_review_duration_seconds", "Time from request to verdict, fallback included",
                                   ("mode",), buckets=CALL_BUCKETS_S)
CACHE = metrics.counter("ata_oversight_cache_total", "Prompt cache lookups by result (hit, miss)", ("result",))
BUDGET_REFUSALS = metrics.counter("ata_oversight_budget_refusals_total", "Provider calls refused by a call budget",
                                  ("window",))
FALLBACKS = metrics.counter("ata_oversight_fallbacks_total", "Reviews answered by the fallback, by reason", ("reason",))
REVIEWS = metrics.counter("ata_oversight_reviews_total", "Published verdicts", ("subject_type", "verdict"))
