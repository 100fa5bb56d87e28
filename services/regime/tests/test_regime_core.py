"""Core behaviour: look-ahead guard, snapshot/restore, confirmation, refit scheduling, seasonality."""

from __future__ import annotations

import itertools
import json
import math
import warnings
from dataclasses import asdict, replace
from datetime import UTC, datetime

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from statsmodels.tsa.regime_switching.markov_regression import MarkovRegression

from ata.events.regime import RegimeLabel
from ata.events.values import MARKET_KEY
from ata.regime.core import Confirmation, DetectorParams, LabelRule, RegimeDetector, RegimeState, run_refit
from ata.regime.core.refit import _em_fit
from ata.regime.core.replay import BarInput, replay
from ata.regime.core.seasonality import seasonality_report

DAY_NS = 86_400 * 10**9
START_NS = 1_600_000_000 * 10**9
#: Small windows so fits are quick and happen several times within a short series.
SMALL = DetectorParams(
    momentum_lookbacks=(5, 20),
    trend_window=20,
    rv_window=10,
    rv_history_bars=100,
    volume_window=20,
    amihud_window=20,
    correlation_window=20,
    correlation_history_bars=100,
    fit_window_bars=150,
    min_fit_bars=60,
    refit_every_bars=40,
    three_state_keys="market",
    hysteresis_bars=3,
)
N_BARS = 220
SYMBOLS = ("AAA", "BBB")


def make_bars(seed: int, n: int = N_BARS) -> list[BarInput]:
    """Two symbols, a calm-stress-calm volatility path, one bar per symbol per day."""
    rng = np.random.default_rng(seed)
    vol = np.where((np.arange(n) > 90) & (np.arange(n) < 150), 3.0, 0.7)
    market = rng.standard_normal(n)
    bars = []
    closes = [100.0, 50.0]
    for t in range(n):
        for j, sym in enumerate(SYMBOLS):
            r = vol[t] * (0.6 * market[t] + 0.8 * rng.standard_normal()) / 100.0
            closes[j] *= math.exp(r)
            bars.append(BarInput(sym, START_NS + t * DAY_NS, closes[j], float(rng.integers(1_000, 5_000)), "1d"))
    return bars


def run(bars: list[BarInput], detector: RegimeDetector | None = None) -> list[RegimeState]:
    return list(replay(detector or RegimeDetector(SMALL), bars))


@pytest.fixture(scope="module")
def base_bars() -> list[BarInput]:
    return make_bars(1)


@pytest.fixture(scope="module")
def base_states(base_bars: list[BarInput]) -> list[RegimeState]:
    return run(base_bars)


def test_every_key_emits_states_after_warmup_and_labels_the_stress_window(base_states: list[RegimeState]) -> None:
    keys = {s.key for s in base_states}
    assert keys == {*SYMBOLS, MARKET_KEY}
    market = [s for s in base_states if s.key == MARKET_KEY]
    # warm-up: the first fit is due after min_fit_bars returns (bar index min_fit_bars); states start with the next bar
    assert market[0].ts_event == START_NS + (SMALL.min_fit_bars + 1) * DAY_NS
    stress = [s for s in market if START_NS + 110 * DAY_NS <= s.ts_event <= START_NS + 145 * DAY_NS]
    assert sum(s.label in {RegimeLabel.BULL_VOLATILE, RegimeLabel.BEAR_VOLATILE, RegimeLabel.CRISIS} for s in stress) > 0.8 * len(
        stress
    )
    for s in base_states:
        assert math.isclose(sum(s.probabilities.values()), 1.0, rel_tol=1e-9)
        assert s.confidence == s.probabilities[s.label]
        assert all(math.isfinite(v) for v in s.factors.values())
    assert {"avg_correlation", "correlation_percentile"} <= set(market[-1].factors)
    assert {"garch_vol_pct", "realized_vol_percentile", "momentum_20", "trend_strength", "volume_z", "amihud_illiquidity"} <= set(
        base_states[-1].factors
    )


def test_changes_are_reported_only_on_confirmation(base_states: list[RegimeState]) -> None:
    for key in (*SYMBOLS, MARKET_KEY):
        states = [s for s in base_states if s.key == key]
        assert states[0].changed and states[0].previous_label is None
        for prev, cur in itertools.pairwise(states):
            assert cur.changed == (cur.confirmed_label != prev.confirmed_label)
            if cur.changed:
                assert cur.previous_label == prev.confirmed_label


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(t=st.integers(min_value=0, max_value=N_BARS - 2), seed=st.integers(min_value=0, max_value=2**16))
def test_changing_bars_after_t_never_changes_outputs_at_or_before_t(
    base_bars: list[BarInput], base_states: list[RegimeState], t: int, seed: int
) -> None:
    rng = np.random.default_rng(seed)
    cutoff = START_NS + t * DAY_NS
    altered = [
        b if b.ts_event <= cutoff else replace(b, close=b.close * math.exp(rng.normal(0, 0.05)), volume=b.volume * 3.0)
        for b in base_bars
    ]
    before = [s for s in base_states if s.ts_event <= cutoff]
    after = [s for s in run(altered) if s.ts_event <= cutoff]
    assert after == before


@settings(max_examples=4, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(seed=st.integers(min_value=0, max_value=2**16))
def test_every_number_in_a_state_is_a_python_float_whatever_numbers_the_bars_carry(base_bars: list[BarInput], seed: int) -> None:
    # Event building takes the detector's word for this (state_events(..., floats=True)).
    rng = np.random.default_rng(seed)
    kinds = (float, np.float64, np.float32, round)
    bars = [
        replace(b, close=kinds[rng.integers(4)](b.close), volume=kinds[rng.integers(4)](b.volume))  # type: ignore[operator]
        for b in base_bars
    ]
    states = run(bars)
    assert {s.key for s in states} == {*SYMBOLS, MARKET_KEY}
    for s in states:
        matrix = itertools.chain.from_iterable(s.transition_matrix)
        numbers = [s.confidence, *s.probabilities.values(), *s.factors.values(), *matrix]
        assert [type(x) for x in numbers] == [float] * len(numbers), s


@pytest.mark.parametrize("cut", [70, 101, 180])
def test_snapshot_restore_mid_run_equals_uninterrupted_run(
    base_bars: list[BarInput], base_states: list[RegimeState], cut: int
) -> None:
    head, tail = base_bars[: cut * len(SYMBOLS)], base_bars[cut * len(SYMBOLS) :]
    first = RegimeDetector(SMALL)
    produced = run(head, first)
    state = json.loads(json.dumps(first.snapshot()))  # it must survive a plain JSON round trip
    resumed = RegimeDetector.restore(state, SMALL)
    produced += run(tail, resumed)
    assert produced == base_states


def test_refit_requests_are_scheduled_and_never_duplicated_while_in_flight(base_bars: list[BarInput]) -> None:
    det = RegimeDetector(SMALL)
    requests = []
    for bar in base_bars[: 2 * 130]:
        det.update(bar.symbol, bar.ts_event, bar.close, bar.volume, bar.timeframe)
        requests.extend(det.needs_refit())  # never applied: stays in flight
    assert sorted(r.key for r in requests) == sorted([*SYMBOLS, MARKET_KEY])
    assert all(r.request_bar == SMALL.min_fit_bars and len(r.returns) == SMALL.min_fit_bars for r in requests)
    assert next(r for r in requests if r.key == MARKET_KEY).markov_regimes == (2, 3)
    # a late result is caught up over the returns since the request and enables states at once
    det.apply_refit(run_refit(next(r for r in requests if r.key == "AAA")))
    bar = base_bars[2 * 130]
    states = det.update(bar.symbol, bar.ts_event, bar.close, bar.volume, bar.timeframe)
    assert [s.key for s in states] == ["AAA"]
    # AAA is due again (its result came 71 returns after the request, refit period 40); BBB only once released
    assert [r.key for r in det.needs_refit()] == ["AAA"]
    det.release_refit("BBB")
    assert [r.key for r in det.needs_refit()] == ["BBB"]


def test_late_refit_result_equals_filter_run_with_new_parameters_over_the_gap(base_bars: list[BarInput]) -> None:
    det = RegimeDetector(SMALL)
    aaa = [b for b in base_bars if b.symbol == "AAA"]
    for bar in aaa[:61]:
        det.update(bar.symbol, bar.ts_event, bar.close, bar.volume, bar.timeframe)
    request = next(r for r in det.needs_refit() if r.key == "AAA")
    for bar in aaa[61:90]:
        det.update(bar.symbol, bar.ts_event, bar.close, bar.volume, bar.timeframe)
    result = run_refit(request)
    det.apply_refit(result)
    inline = RegimeDetector(SMALL)
    for bar in aaa[:61]:
        inline.update(bar.symbol, bar.ts_event, bar.close, bar.volume, bar.timeframe)
    same = next(r for r in inline.needs_refit() if r.key == "AAA")
    assert same == request
    inline.apply_refit(run_refit(same))
    for bar in aaa[61:90]:
        inline.update(bar.symbol, bar.ts_event, bar.close, bar.volume, bar.timeframe)
    assert det.snapshot()["tracks"]["AAA"]["ms2"]["probabilities"] == pytest.approx(
        inline.snapshot()["tracks"]["AAA"]["ms2"]["probabilities"], abs=1e-12
    )


def test_params_read_from_a_config_file_run_like_the_same_params_in_code(
    base_bars: list[BarInput], base_states: list[RegimeState]
) -> None:
    # a TOML or JSON [regime] table gives lists where DetectorParams declares tuples
    from_file = DetectorParams(**json.loads(json.dumps(asdict(SMALL))))
    assert from_file == SMALL
    assert run(base_bars, RegimeDetector(from_file)) == base_states


def test_label_rule_tree_and_probabilities() -> None:
    rule = LabelRule(trend_threshold=0.5, trend_softness=0.25)
    assert rule.classify(0.9, 0.9, -1.0) is RegimeLabel.CRISIS
    assert rule.classify(0.9, 0.1, -1.0) is RegimeLabel.BEAR_VOLATILE
    assert rule.classify(0.9, 0.9, 1.0) is RegimeLabel.BULL_VOLATILE
    assert rule.classify(0.1, 0.0, 1.0) is RegimeLabel.BULL_QUIET
    assert rule.classify(0.1, 0.0, -1.0) is RegimeLabel.BEAR_QUIET
    assert rule.classify(0.1, 0.0, 0.2) is RegimeLabel.SIDEWAYS
    for stress, extreme, trend in [(0.9, 0.9, -1.0), (0.2, 0.1, 0.0), (0.6, 0.0, 3.0), (0.0, 0.0, -0.4)]:
        probs = rule.probabilities(stress, extreme, trend)
        assert math.isclose(sum(probs.values()), 1.0)
        assert max(probs, key=lambda k: probs[k]) is rule.classify(stress, extreme, trend) or stress in (0.2, 0.6)


def test_confirmation_needs_persistence_margin_and_higher_timeframe() -> None:
    conf = Confirmation()
    calm = {label: 0.0 for label in RegimeLabel}
    bull_q = {**calm, RegimeLabel.BULL_QUIET: 0.8, RegimeLabel.BULL_VOLATILE: 0.2}
    bull_v = {**calm, RegimeLabel.BULL_QUIET: 0.1, RegimeLabel.BULL_VOLATILE: 0.9}
    assert conf.update(RegimeLabel.BULL_QUIET, bull_q, False, 3, 0.1) is None and conf.confirmed is RegimeLabel.BULL_QUIET
    # two bars of a volatile candidate are not enough, a quiet bar resets the count
    assert conf.update(RegimeLabel.BULL_VOLATILE, bull_v, True, 3, 0.1) is None
    assert conf.update(RegimeLabel.BULL_VOLATILE, bull_v, True, 3, 0.1) is None
    assert conf.update(RegimeLabel.BULL_QUIET, bull_q, True, 3, 0.1) is None
    for _ in range(3):
        assert conf.update(RegimeLabel.BULL_VOLATILE, bull_v, False, 3, 0.1) is None  # higher timeframe still calm
    assert conf.update(RegimeLabel.BULL_VOLATILE, bull_v, True, 3, 0.1) is RegimeLabel.BULL_QUIET
    assert conf.confirmed is RegimeLabel.BULL_VOLATILE
    close = {**calm, RegimeLabel.BULL_VOLATILE: 0.45, RegimeLabel.BEAR_VOLATILE: 0.5}
    for _ in range(5):
        assert conf.update(RegimeLabel.BEAR_VOLATILE, close, True, 3, 0.1) is None  # margin 0.05 < 0.1


def test_seasonality_detects_a_planted_monday_effect_and_not_a_spurious_one() -> None:
    rng = np.random.default_rng(3)
    days = np.arange(3000)
    ts = [START_NS + int(d) * DAY_NS for d in days]
    weekday = np.array([datetime.fromtimestamp(t / 1e9, tz=UTC).weekday() for t in ts])
    noise = rng.standard_normal(len(days))
    dow, moy = seasonality_report(ts, noise + np.where(weekday == 0, -0.5, 0.0))
    assert dow.significant and dow.kruskal_p < 1e-6
    assert min(dow.groups, key=lambda g: g.mean).name == "Mon"
    plain_dow, plain_moy = seasonality_report(ts, noise)
    assert plain_dow.kruskal_p > 0.01 and plain_moy.kruskal_p > 0.01
    assert len(moy.groups) == 12


@pytest.mark.parametrize("k", [2, 3])
def test_em_fit_equals_statsmodels_fit_without_quasi_newton_bit_for_bit(k: int) -> None:
    """The refit's short path returns exactly the parameters and log-likelihood of statsmodels' own
    ``fit(em_iter=..., maxiter=0)``, cold and warm started (a statsmodels upgrade that changed this fails here)."""
    rng = np.random.default_rng(11)
    returns = np.concatenate([rng.normal(0.0, 1.0, 600), rng.normal(-0.2, 3.0, 400)])
    model = MarkovRegression(returns, k_regimes=k, switching_variance=True)
    params, _ = _em_fit(model, None, 30)
    for start in (None, params * 0.9 + 0.01 * (np.arange(len(params)) % 2)):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            fit = model.fit(start_params=start, em_iter=30, maxiter=0, cov_type="none", disp=False)
            got, got_llf = _em_fit(model, start, 30)
        assert np.array_equal(got, fit.params)
        assert got_llf == float(fit.llf)
