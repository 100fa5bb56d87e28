"""Online regime detection per symbol and for ``_market``: factors, filters, labels, confirmation.

Per bar and key the detector advances O(1) streaming factors and the frozen-parameter
filters of :mod:`ata.quant.regime_filters`, applies the label rule of
:mod:`ata.regime.core.labels` and the confirmation, and returns a :class:`RegimeState`.
Nothing here reads a clock or does I/O; outputs at bar t depend on bars up to t only.

Models are (re)fitted off the hot path: :meth:`RegimeDetector.needs_refit` hands out
:class:`~ata.regime.core.refit.RefitRequest` s (data up to the requesting bar),
:meth:`RegimeDetector.apply_refit` installs a result whenever it arrives and catches the
filters up over the returns seen since the request. Until a key's first 2-state fit is
applied it is *warming up* and emits no state.

``_market`` is the equal-weighted mean of the symbols' log returns at a timestamp. A
timestamp's cross-section is complete when every symbol seen so far has reported it,
or when a bar with a later timestamp arrives (a symbol that reports after that is left
out of that timestamp's market return).
"""

from __future__ import annotations

import functools
import math
from collections import deque
from dataclasses import dataclass
from typing import Any, Literal, NamedTuple

from ata.events.regime import RegimeLabel
from ata.events.values import MARKET_KEY
from ata.quant.regime_filters import Garch11Filter, HamiltonFilter, RollingRank, expected_durations
from ata.quant.windows import SlidingMoments
from ata.regime.core.correlation import CorrelationWindow
from ata.regime.core.labels import Confirmation, LabelRule, is_volatile
from ata.regime.core.refit import RefitRequest, RefitResult

_NS_PER_DAY = 86_400 * 10**9
#: Smoothing of the EWMA variance that scales momentum until GARCH is fitted.
_EWMA_ALPHA = 0.06
_EWMA_KEEP = 1.0 - _EWMA_ALPHA
# Module-level names for the functions the per-bar code calls several times per key
# (a global load instead of a global plus an attribute load each time).
_log = math.log
_sqrt = math.sqrt
_isfinite = math.isfinite
_isnan = math.isnan


@dataclass(frozen=True, slots=True)
class DetectorParams:
    """Tuning of the detector; windows and lookbacks count bars of the input timeframe."""

    momentum_lookbacks: tuple[int, ...] = (20, 60, 120)
    trend_window: int = 60
    rv_window: int = 20
    rv_history_bars: int = 1000
    volume_window: int = 60
    amihud_window: int = 60
    correlation_window: int = 60
    correlation_history_bars: int = 1000
    fit_window_bars: int = 1000
    min_fit_bars: int = 250
    refit_every_bars: int = 250
    em_iterations: int = 30
    three_state_keys: Literal["none", "market", "all"] = "market"
    crisis_rv_percentile: float = 0.9
    trend_threshold: float = 0.5
    trend_softness: float = 0.25
    hysteresis_bars: int = 5
    probability_margin: float = 0.1
    min_bucket_bars: int = 3

    def __post_init__(self) -> None:
        # A config file gives a list (TOML and JSON have no tuples); the lookbacks key a cache.
        object.__setattr__(self, "momentum_lookbacks", tuple(self.momentum_lookbacks))
        if not self.momentum_lookbacks or min(self.momentum_lookbacks) < 1:
            raise ValueError("momentum_lookbacks must be positive")
        if self.min_fit_bars < 50 or self.min_fit_bars > self.fit_window_bars:
            raise ValueError("need 50 <= min_fit_bars <= fit_window_bars")
        if self.refit_every_bars < 1 or self.hysteresis_bars < 1:
            raise ValueError("refit_every_bars and hysteresis_bars must be >= 1")
        if min(self.trend_window, self.amihud_window, self.correlation_window) < 1 or min(self.rv_window, self.volume_window) < 2:
            raise ValueError("windows must be >= 1 bar (rv_window and volume_window >= 2: they measure a spread)")


class RegimeState(NamedTuple):
    """The detector's output for one key and bar.

    Immutable like a frozen dataclass, but a named tuple: one is made per key and bar,
    and a tuple is several times cheaper to build than a frozen dataclass (whose
    ``__init__`` goes through ``object.__setattr__`` field by field).
    """

    key: str
    ts_event: int
    label: RegimeLabel
    confirmed_label: RegimeLabel
    previous_label: RegimeLabel | None
    changed: bool
    probabilities: dict[RegimeLabel, float]
    confidence: float
    factors: dict[str, float]
    transition_matrix: tuple[tuple[float, ...], ...]


def bucket_ns(timeframe: str) -> int:
    """Higher-timeframe bucket for confirmation: a day for intraday bars, a week for daily, 28 days above."""
    unit = timeframe[-1]
    if unit in "smh":
        return _NS_PER_DAY
    if unit == "d":
        return 7 * _NS_PER_DAY
    return 28 * _NS_PER_DAY


def _bucket_offset(size: int) -> int:
    """What to add to a timestamp before dividing it by the bucket ``size``.

    +3 days aligns week buckets to Mondays (1970-01-01 was a Thursday).
    """
    return 3 * _NS_PER_DAY if size == 7 * _NS_PER_DAY else 0


class _Track:
    """State of one key (a symbol or ``_market``)."""

    __slots__ = (
        "abs_move",
        "amihud",
        "bucket",
        "bucket_n",
        "bucket_offset",
        "bucket_size",
        "bucket_sum_sq",
        "closes",
        "confirmation",
        "drift",
        "durations",
        "ewma_var",
        "garch",
        "key",
        "last_close",
        "last_refit_bar",
        "momentum_terms",
        "ms2",
        "ms3",
        "n_returns",
        "next_refit",
        "params",
        "prev_bucket_n",
        "prev_bucket_sum_sq",
        "refit_in_flight",
        "returns",
        "rv",
        "rv_rank",
        "stress_threshold",
        "three_state",
        "volume_z",
    )

    def __init__(self, key: str, three_state: bool, params: DetectorParams, bucket_size: int = _NS_PER_DAY) -> None:
        self.key = key
        self.three_state = three_state
        self.params = params
        self.bucket_size = bucket_size
        self.bucket_offset = _bucket_offset(bucket_size)
        self.momentum_terms = _momentum_terms(params.momentum_lookbacks)
        self.last_close = math.nan
        self.n_returns = 0
        self.returns: deque[float] = deque(maxlen=params.fit_window_bars)
        self.closes: deque[float] = deque(maxlen=max(params.momentum_lookbacks) + 1)
        self.ewma_var = math.nan
        self.garch: Garch11Filter | None = None
        self.ms2: HamiltonFilter | None = None
        self.ms3: HamiltonFilter | None = None
        self.rv = SlidingMoments(params.rv_window)
        self.rv_rank = RollingRank(params.rv_history_bars)
        self.drift = SlidingMoments(params.trend_window)
        self.abs_move = SlidingMoments(params.trend_window)
        self.volume_z = SlidingMoments(params.volume_window)
        self.amihud = SlidingMoments(params.amihud_window)
        self.bucket = -1
        self.bucket_sum_sq = 0.0
        self.bucket_n = 0
        self.prev_bucket_sum_sq = 0.0
        self.prev_bucket_n = 0
        self.confirmation = Confirmation()
        self.last_refit_bar = -1
        self.refit_in_flight = False
        self.next_refit = params.min_fit_bars
        # Functions of the 2-state parameters, recomputed when they change (not per bar).
        self.stress_threshold = math.nan
        self.durations = (math.nan, math.nan)

    # -- per-bar -----------------------------------------------------------------------
    def absorb(self, ts: int, close: float, dollar_volume: float, factors: dict[str, float]) -> float | None:
        """Advance every factor with a bar; return the log return in percent (``None`` for a first bar).

        Raises ``ValueError`` when the bar makes a factor input non-finite (e.g. a zero or
        infinite close or dollar volume).
        """
        prev = self.last_close
        self.last_close = close
        closes = self.closes
        closes.append(close)
        traded = dollar_volume > 0.0
        if traded:
            log_volume = _log(dollar_volume)
            if not _isfinite(log_volume):
                raise ValueError(f"{self.key}: non-finite dollar volume {dollar_volume!r}")
            volume_z = self.volume_z
            volume_z.push(log_volume)
            vz = volume_z.zscore()
            if not _isnan(vz):
                factors["volume_z"] = vz
        if _isnan(prev):  # the key's first bar
            return None
        r = 100.0 * _log(close / prev)
        if not _isfinite(r):
            raise ValueError(f"{self.key}: non-finite return from close {prev!r} -> {close!r}")
        self.n_returns += 1
        self.returns.append(r)
        r2 = r * r
        bucket = (ts + self.bucket_offset) // self.bucket_size
        if bucket != self.bucket:
            self.prev_bucket_sum_sq, self.prev_bucket_n = self.bucket_sum_sq, self.bucket_n
            self.bucket, self.bucket_sum_sq, self.bucket_n = bucket, 0.0, 0
        self.bucket_sum_sq += r2
        self.bucket_n += 1
        garch = self.garch
        if garch is not None:
            # GARCH variance of this bar, taken before the recursion absorbs it.
            factors["garch_vol_pct"] = _sqrt(garch.variance)
            garch.step(r)
        ewma = self.ewma_var
        self.ewma_var = ewma = r2 if _isnan(ewma) else _EWMA_ALPHA * r2 + _EWMA_KEEP * ewma
        rv_window = self.rv
        rv_window.push(r)
        rv = rv_window.std()
        if not _isnan(rv):
            factors["realized_vol_pct"] = rv
            factors["realized_vol_percentile"] = self.rv_rank.rank_push(rv)
        abs_r = abs(r)
        drift = self.drift.push(r)
        moved = self.abs_move.push(abs_r)
        if moved > 0.0:
            factors["trend_strength"] = abs(drift) / moved
        if traded:
            amihud = self.amihud.push(abs_r / dollar_volume * 1e6)
            if not _isnan(amihud):
                factors["amihud_illiquidity"] = amihud
        # Momentum is scaled by the conditional volatility per bar: GARCH once fitted, EWMA before.
        sigma = _sqrt(garch.variance) if garch is not None else _sqrt(ewma) if ewma > 0.0 else 0.0
        # The mean of the scores as ``sum(list) / len(list)`` computes it (left to right from 0).
        score_sum = 0.0
        n_scores = 0
        available = len(closes)
        for n, name, root_n in self.momentum_terms:
            if available > n:
                mom = 100.0 * _log(close / closes[-1 - n])
                factors[name] = mom
                if sigma > 0.0:
                    score_sum += mom / (sigma * root_n)
                    n_scores += 1
        factors["trend_score"] = score_sum / n_scores if n_scores else 0.0
        return r

    def higher_timeframe_variance(self, min_bucket_bars: int) -> float:
        if self.bucket_n >= min_bucket_bars or self.prev_bucket_n == 0:
            return self.bucket_sum_sq / max(self.bucket_n, 1)
        return (self.bucket_sum_sq + self.prev_bucket_sum_sq) / (self.bucket_n + self.prev_bucket_n)

    # -- refits ------------------------------------------------------------------------
    def refit_due(self) -> bool:
        return not self.refit_in_flight and self.n_returns >= self.next_refit

    def _schedule(self) -> None:
        p = self.params
        last = self.last_refit_bar
        self.next_refit = p.min_fit_bars if last < 0 else max(p.min_fit_bars, last + p.refit_every_bars)

    def _install_ms2(self, filt: HamiltonFilter | None) -> None:
        self.ms2 = filt
        if filt is not None:
            variances = filt.params.variances
            self.stress_threshold = math.sqrt(variances[0] * variances[1])
            calm, stress = expected_durations(filt.params.transition)
            self.durations = (calm, stress)

    def apply(self, result: RefitResult) -> None:
        self.refit_in_flight = False
        self.last_refit_bar = result.request_bar
        self._schedule()
        missed = self.n_returns - result.request_bar
        if missed < 0 or missed > len(self.returns):
            return  # the request came from another run of this key (e.g. before a restore)
        catch_up = list(self.returns)[len(self.returns) - missed :] if missed else []
        if result.garch is not None and result.garch_variance is not None:
            self.garch = Garch11Filter(result.garch, result.garch_variance)
            for r in catch_up:
                self.garch.step(r)
        for k, fitted in result.markov.items():
            filt = HamiltonFilter(fitted.params, fitted.probabilities)
            for r in catch_up:
                filt.step(r)
            if k == 2:
                self._install_ms2(filt)
            elif k == 3 and self.three_state:
                self.ms3 = filt

    # -- persistence -------------------------------------------------------------------
    def snapshot(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "three_state": self.three_state,
            "bucket_size": self.bucket_size,
            "last_close": None if math.isnan(self.last_close) else self.last_close,
            "n_returns": self.n_returns,
            "returns": list(self.returns),
            "closes": list(self.closes),
            "ewma_var": {
                "kind": "Ema",
                "version": 1,
                "alpha": _EWMA_ALPHA,
                "_value": None if math.isnan(self.ewma_var) else self.ewma_var,
            },
            "garch": None if self.garch is None else self.garch.snapshot(),
            "ms2": None if self.ms2 is None else self.ms2.snapshot(),
            "ms3": None if self.ms3 is None else self.ms3.snapshot(),
            "rv": self.rv.snapshot("RollingStd"),
            "rv_rank": self.rv_rank.snapshot(),
            "drift": self.drift.snapshot("Sma"),
            "abs_move": self.abs_move.snapshot("Sma"),
            "volume_z": self.volume_z.snapshot("ZScore"),
            "amihud": self.amihud.snapshot("Sma"),
            "bucket": [self.bucket, self.bucket_sum_sq, self.bucket_n, self.prev_bucket_sum_sq, self.prev_bucket_n],
            "confirmation": self.confirmation.snapshot(),
            "last_refit_bar": self.last_refit_bar,
        }

    @classmethod
    def restore(cls, state: dict[str, Any], params: DetectorParams) -> _Track:
        track = cls(str(state["key"]), bool(state["three_state"]), params, int(state["bucket_size"]))
        track.last_close = math.nan if state["last_close"] is None else float(state["last_close"])
        track.n_returns = int(state["n_returns"])
        track.returns.extend(float(r) for r in state["returns"])
        track.closes.extend(float(c) for c in state["closes"])
        ewma = state["ewma_var"]
        if ewma.get("kind") != "Ema" or ewma.get("alpha") != _EWMA_ALPHA:
            raise ValueError(f"unexpected EWMA variance state {ewma!r}")
        track.ewma_var = math.nan if ewma["_value"] is None else float(ewma["_value"])
        track.garch = None if state["garch"] is None else Garch11Filter.restore(state["garch"])
        track._install_ms2(None if state["ms2"] is None else HamiltonFilter.restore(state["ms2"]))
        track.ms3 = None if state["ms3"] is None else HamiltonFilter.restore(state["ms3"])
        track.rv = SlidingMoments.restore(state["rv"])
        track.rv_rank = RollingRank.restore(state["rv_rank"])
        track.drift = SlidingMoments.restore(state["drift"])
        track.abs_move = SlidingMoments.restore(state["abs_move"])
        track.volume_z = SlidingMoments.restore(state["volume_z"])
        track.amihud = SlidingMoments.restore(state["amihud"])
        b = state["bucket"]
        track.bucket, track.bucket_sum_sq, track.bucket_n = int(b[0]), float(b[1]), int(b[2])
        track.prev_bucket_sum_sq, track.prev_bucket_n = float(b[3]), int(b[4])
        track.confirmation = Confirmation.restore(state["confirmation"])
        track.last_refit_bar = int(state["last_refit_bar"])
        track._schedule()
        return track


@functools.cache
def _momentum_terms(lookbacks: tuple[int, ...]) -> tuple[tuple[int, str, float], ...]:
    """Per lookback n: n, its factor name and sqrt(n) (the horizon scaling of the trend score)."""
    return tuple((n, f"momentum_{n}", math.sqrt(n)) for n in lookbacks)


class _CrossSection:
    """Collects one timestamp's symbol returns for ``_market`` and keeps the average pairwise correlation."""

    def __init__(self, params: DetectorParams) -> None:
        self.params = params
        self.ts = -1
        self.returns: dict[str, float] = {}
        self.dollar_volume = 0.0
        self.level = 1.0
        self.window = CorrelationWindow(params.correlation_window)
        self.corr_rank = RollingRank(params.correlation_history_bars)

    def snapshot(self) -> dict[str, Any]:
        return {
            "ts": self.ts,
            "returns": dict(self.returns),
            "dollar_volume": self.dollar_volume,
            "level": self.level,
            "window": self.window.rows(),
            "corr_rank": self.corr_rank.snapshot(),
        }

    def restore(self, state: dict[str, Any]) -> None:
        self.ts = int(state["ts"])
        self.returns = {str(k): float(v) for k, v in state["returns"].items()}
        self.dollar_volume = float(state["dollar_volume"])
        self.level = float(state["level"])
        self.window = CorrelationWindow(self.params.correlation_window)
        for row in state["window"]:
            self.window.push({str(k): float(v) for k, v in row.items()})
        self.corr_rank = RollingRank.restore(state["corr_rank"])


class RegimeDetector:
    """Regime detection for a universe of symbols plus ``_market`` (see the module docstring)."""

    def __init__(self, params: DetectorParams | None = None) -> None:
        self.params = params or DetectorParams()
        self.rule = LabelRule(self.params.trend_threshold, self.params.trend_softness)
        self._tracks: dict[str, _Track] = {}
        self._symbols: set[str] = set()
        self._cross = _CrossSection(self.params)
        #: Keys whose refit may be due: every change that can make one due adds its key, so
        #: :meth:`needs_refit` looks at these instead of scanning every key per bar.
        self._maybe_due: set[str] = set()

    # -- hot path ----------------------------------------------------------------------
    def update(self, symbol: str, ts_event: int, close: float, volume: float, timeframe: str = "1d") -> list[RegimeState]:
        """Absorb one bar; return the states it produces: the symbol's, then ``_market``'s if completed.

        A ``_market`` state may belong to an earlier timestamp (the cross-section that this
        bar proved complete); its ``ts_event`` says which. ``close`` and ``volume`` are taken
        as Python floats, so every number in a state is one (event building relies on it).
        """
        close = float(close)
        volume = float(volume)
        cross = self._cross
        market = None
        if cross.ts >= 0 and ts_event > cross.ts:
            market = self._close_cross_section(timeframe)
        track = self._tracks.get(symbol)
        if track is None:
            track = self._track(symbol, timeframe)
        prev_close = track.last_close
        state = self._step(track, ts_event, close, close * volume)
        out = [] if state is None else [state]
        if market is not None:
            out.append(market)
        self._symbols.add(symbol)
        if ts_event >= cross.ts and not math.isnan(prev_close):  # the bar has a return
            cross.ts = ts_event
            cross.returns[symbol] = 100.0 * math.log(close / prev_close)
            cross.dollar_volume += close * volume
            if len(cross.returns) == len(self._symbols):
                market = self._close_cross_section(timeframe)
                if market is not None:
                    out.append(market)
        return out

    def _track(self, key: str, timeframe: str) -> _Track:
        track = self._tracks.get(key)
        if track is None:
            mode = self.params.three_state_keys
            three = mode == "all" or (mode == "market" and key == MARKET_KEY)
            track = _Track(key, three, self.params, bucket_ns(timeframe))
            self._tracks[key] = track
        return track

    def _close_cross_section(self, timeframe: str) -> RegimeState | None:
        cross = self._cross
        rets = cross.returns
        if not rets:
            return None
        ts = cross.ts
        mean = sum(rets.values()) / len(rets)
        cross.level *= math.exp(mean / 100.0)
        cross.window.push(rets)
        dollar_volume = cross.dollar_volume
        cross.returns, cross.dollar_volume, cross.ts = {}, 0.0, -1
        extra: dict[str, float] = {}
        corr = cross.window.average()
        if not math.isnan(corr):
            extra["avg_correlation"] = corr
            extra["correlation_percentile"] = cross.corr_rank.rank_push(corr)
        track = self._track(MARKET_KEY, timeframe)
        if math.isnan(track.last_close):
            track.last_close = 1.0  # the index starts at 1 before its first return
        return self._step(track, ts, cross.level, dollar_volume, extra)

    def _step(
        self, track: _Track, ts: int, close: float, dollar_volume: float, extra: dict[str, float] | None = None
    ) -> RegimeState | None:
        factors: dict[str, float] = {} if extra is None else extra
        r = track.absorb(ts, close, dollar_volume, factors)
        if r is None:
            return None
        if track.n_returns >= track.next_refit and not track.refit_in_flight:
            # (a key in flight is added again when its result is applied or released)
            self._maybe_due.add(track.key)
        ms2 = track.ms2
        if ms2 is None:
            return None
        params = self.params
        stress = ms2.step(r)[1]
        if track.ms3 is not None:
            extreme = track.ms3.step(r)[2]
        else:
            extreme = 1.0 if factors.get("realized_vol_percentile", 0.0) >= params.crisis_rv_percentile else 0.0
        trend = factors["trend_score"]
        rule = self.rule
        label = rule.classify(stress, extreme, trend)
        probs = rule.probabilities(stress, extreme, trend)
        htf_volatile = track.higher_timeframe_variance(params.min_bucket_bars) > track.stress_threshold
        confirmation = track.confirmation
        first = confirmation.confirmed is None
        previous = confirmation.update(label, probs, htf_volatile, params.hysteresis_bars, params.probability_margin)
        confirmed = confirmation.confirmed
        assert confirmed is not None  # set by the first update
        factors["p_stress"] = stress
        factors["p_extreme"] = extreme
        factors["higher_timeframe_volatile"] = 1.0 if htf_volatile else 0.0
        factors["expected_duration_calm_bars"], factors["expected_duration_stress_bars"] = track.durations
        changed = first or previous is not None
        matrix = ms2.params.transition
        return RegimeState(track.key, ts, label, confirmed, previous, changed, probs, probs[label], factors, matrix)

    # -- refits ------------------------------------------------------------------------
    def needs_refit(self) -> list[RefitRequest]:
        """Refit requests that are due; each key has at most one in flight until :meth:`apply_refit`."""
        if not self._maybe_due:
            return []
        requests = []
        for key in sorted(self._maybe_due):
            track = self._tracks[key]
            if track.refit_due():
                track.refit_in_flight = True
                regimes = (2, 3) if track.three_state else (2,)
                previous = {f.params.k: f.params for f in (track.ms2, track.ms3) if f is not None}
                requests.append(
                    RefitRequest(key, track.n_returns, tuple(track.returns), regimes, previous, self.params.em_iterations)
                )
        self._maybe_due.clear()
        return requests

    def apply_refit(self, result: RefitResult) -> None:
        """Install fitted parameters (at any later bar); filters catch up over the returns since the request."""
        track = self._tracks.get(result.key)
        if track is not None:
            track.apply(result)
            self._maybe_due.add(result.key)

    def release_refit(self, key: str) -> None:
        """Forget an in-flight request that will never complete (e.g. its worker died); it is re-issued when due."""
        track = self._tracks.get(key)
        if track is not None:
            track.refit_in_flight = False
            self._maybe_due.add(key)

    # -- introspection and persistence -------------------------------------------------
    def tracked_keys(self) -> list[str]:
        """Symbols and ``_market`` seen so far, sorted."""
        return sorted(self._tracks)

    def is_volatile(self, key: str) -> bool | None:
        track = self._tracks.get(key)
        if track is None or track.confirmation.confirmed is None:
            return None
        return is_volatile(track.confirmation.confirmed)

    def snapshot(self) -> dict[str, Any]:
        """Plain-data state (JSON-serialisable); in-flight refits are not part of it and get re-requested."""
        return {
            "version": 1,
            "symbols": sorted(self._symbols),
            "tracks": {k: t.snapshot() for k, t in sorted(self._tracks.items())},
            "cross": self._cross.snapshot(),
        }

    @classmethod
    def restore(cls, state: dict[str, Any], params: DetectorParams | None = None) -> RegimeDetector:
        if state.get("version") != 1:
            raise ValueError(f"unsupported regime snapshot version {state.get('version')!r}")
        det = cls(params)
        det._symbols = set(state["symbols"])
        det._tracks = {k: _Track.restore(s, det.params) for k, s in state["tracks"].items()}
        det._cross.restore(state["cross"])
        det._maybe_due = set(det._tracks)
        return det
