"""News impact event study: recovers a known effect, estimates betas before the event only, CLI writes a plot."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from ata.sentiment.cli import app, weekday_closes
from ata.sentiment.core.impact import NewsEvent, StudyParams, event_study, market_model, summarize, synthetic_closes

DAY = 86_400 * 10**9


def test_market_model_is_ordinary_least_squares() -> None:
    rng = np.random.default_rng(1)
    market = rng.normal(0, 0.01, 500)
    stock = 0.001 + 1.3 * market + rng.normal(0, 0.002, 500)
    alpha, beta, n = market_model(stock, market)
    ref_beta, ref_alpha = np.polyfit(market, stock, 1)
    assert n == 500
    assert beta == pytest.approx(ref_beta, rel=1e-9)
    assert alpha == pytest.approx(ref_alpha, rel=1e-9)


def test_event_study_recovers_the_injected_effect_by_label() -> None:
    times = weekday_closes(date(2022, 1, 3), date(2024, 12, 31))
    rng = np.random.default_rng(3)
    symbols = [f"S{i}" for i in range(8)]
    events = [
        NewsEvent(symbols[i % 8], times[int(k)] + 3600 * 10**9, "wire", "earnings", label)
        for i, (k, label) in enumerate(zip(rng.integers(200, len(times) - 10, 240),
                                           ["positive", "negative", "neutral"] * 80, strict=True))
    ]
    effect = {"positive": 0.03, "negative": -0.03, "neutral": 0.0}
    closes, market, betas = synthetic_closes(times, symbols, events, seed=5, impact_by_label=effect)
    study = event_study(times, closes, market, events, StudyParams(estimation_days=150, horizon_days=3))
    assert study.skipped == 0
    # Betas come from 150 noisy days that also hold other events' shocks: right on the whole, not exactly.
    assert float(np.median([abs(r.beta - betas[r.event.symbol]) for r in study.results])) < 0.15
    by_label = {s.key: s for s in summarize(study.results, lambda e: e.label)}
    assert by_label["positive"].mean_car[0] == pytest.approx(0.03, abs=0.01)
    assert by_label["negative"].mean_car[0] == pytest.approx(-0.03, abs=0.01)
    assert abs(by_label["neutral"].mean_car[0]) < 0.01
    assert by_label["positive"].t_stat > 3 > -3 > by_label["negative"].t_stat


def test_day_zero_is_the_first_close_after_availability_and_the_estimate_ignores_it() -> None:
    times = weekday_closes(date(2023, 1, 2), date(2023, 12, 29))
    rng = np.random.default_rng(9)
    market = 100 * np.cumprod(1 + rng.normal(0, 0.01, len(times)))
    stock = 100 * np.cumprod(1 + rng.normal(0, 0.01, len(times)))
    k = 150
    event = NewsEvent("X", times[k], "wire", "legal", "negative")  # exactly at a close: that close is too early
    params = StudyParams(estimation_days=100, gap_days=5, horizon_days=2, min_estimation=50)
    (base,) = event_study(times, {"X": stock}, market, [event], params).results
    # Changing prices from day 0 on (k + 1) must not change alpha and beta.
    shocked = stock.copy()
    shocked[k + 1:] *= 1.5
    (after,) = event_study(times, {"X": shocked}, market, [event], params).results
    assert (after.alpha, after.beta) == (base.alpha, base.beta)
    assert after.abnormal[0] == pytest.approx(base.abnormal[0] + (1.5 * stock[k + 1] / stock[k] - stock[k + 1] / stock[k]))
    # A change at close k (before availability) does not enter the event window.
    before = stock.copy()
    before[k] *= 1.01
    (moved,) = event_study(times, {"X": before}, market, [event], params).results
    assert moved.abnormal[1:] == pytest.approx(base.abnormal[1:])


def test_cli_impact_prints_tables_and_writes_a_png(tmp_path: Path) -> None:
    out = tmp_path / "impact.png"
    result = CliRunner().invoke(app, ["impact", "--out", str(out), "--seed", "11"])
    assert result.exit_code == 0, result.output
    assert "by scored sentiment" in result.output and "by source" in result.output and "by category" in result.output
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_cli_evaluate_prints_both_splits() -> None:
    result = CliRunner().invoke(app, ["evaluate"])
    assert result.exit_code == 0, result.output
    assert "dev" in result.output and "heldout" in result.output
