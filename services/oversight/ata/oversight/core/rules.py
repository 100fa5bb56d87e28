"""The deterministic rule-based reviewer: the embedded default and the fallback of every other provider.

It reads only numbers and enumerations (weights, regimes, probabilities, counts); free text
(headlines, reasons, names) never influences it, so no injected text can change a verdict.

Targets, first rule that applies wins:
1. ``|weight| >= reject_abs_weight``: reject (``weight_above_hard_limit``);
2. the symbol's or the market's confirmed regime is crisis and ``|weight| > crisis_max_abs_weight``:
   modify to that cap (``crisis_regime``);
3. ``|weight| > max_abs_weight``: modify to that cap (``weight_above_cap``);
4. otherwise approve.
Contributing signals that disagree (``|sum w*s| / sum |w*s|`` below ``min_signal_agreement``)
add the flag ``conflicting_signals`` and lower the confidence.

Regime changes (a second opinion):
1. the change's confidence is below ``regime_min_confidence``: escalate (``low_confidence``);
2. the latest state gives the new label a probability below 0.5: reject (``weak_evidence``);
3. otherwise approve; entering crisis adds ``crisis_entered``, a jump between the calm and the
   stressed extremes adds ``abrupt_transition``.

Strategy switches: more than ``max_switches`` in the window reject (``excessive_switching``);
otherwise approve.
"""

from __future__ import annotations

from dataclasses import dataclass

from ata.events import RegimeChanged, RegimeLabel, TargetProposed
from ata.oversight.core.subjects import ReviewRequest, SubjectKind
from ata.oversight.core.verdict import VerdictAnswer

CALM = frozenset({RegimeLabel.BULL_QUIET, RegimeLabel.SIDEWAYS})
STRESSED = frozenset({RegimeLabel.BEAR_VOLATILE, RegimeLabel.CRISIS})


@dataclass(frozen=True, slots=True)
class RuleLimits:
    max_abs_weight: float = 1.0
    reject_abs_weight: float = 2.0
    crisis_max_abs_weight: float = 0.25
    min_signal_agreement: float = 0.3
    regime_min_confidence: float = 0.5
    max_switches: int = 3


class RuleReviewer:
    """Pure and deterministic: the same request always gets the same verdict."""

    def __init__(self, limits: RuleLimits | None = None) -> None:
        self.limits = limits or RuleLimits()

    def review(self, request: ReviewRequest) -> VerdictAnswer:
        if request.below_threshold:
            return VerdictAnswer(verdict="approve", rationale="below the review thresholds; approved by policy",
                                 confidence=1.0)
        if request.kind is SubjectKind.TARGET:
            assert isinstance(request.subject, TargetProposed)
            return self._target(request, request.subject)
        if request.kind is SubjectKind.REGIME_CHANGE:
            assert isinstance(request.subject, RegimeChanged)
            return self._regime_change(request, request.subject)
        return self._switch(request)

    def _target(self, request: ReviewRequest, target: TargetProposed) -> VerdictAnswer:
        lim = self.limits
        weight = abs(target.target_weight)
        flags: list[str] = []
        confidence = 0.9
        agreement = _agreement(target)
        if agreement is not None and agreement < lim.min_signal_agreement:
            flags.append("conflicting_signals")
            confidence = 0.6
        crisis = any(view is not None and view.confirmed_label == RegimeLabel.CRISIS
                     for view in (request.regime, request.market_regime))
        if weight >= lim.reject_abs_weight:
            return VerdictAnswer(verdict="reject", confidence=0.95, risk_flags=("weight_above_hard_limit", *flags),
                                 rationale=f"|target weight| {weight:.4g} reaches the hard limit {lim.reject_abs_weight:.4g}")
        if crisis and weight > lim.crisis_max_abs_weight:
            return VerdictAnswer(verdict="modify", confidence=confidence, risk_flags=("crisis_regime", *flags),
                                 max_target_weight=lim.crisis_max_abs_weight,
                                 rationale=f"crisis regime: |target weight| {weight:.4g} capped at "
                                           f"{lim.crisis_max_abs_weight:.4g}")
        if weight > lim.max_abs_weight:
            return VerdictAnswer(verdict="modify", confidence=confidence, risk_flags=("weight_above_cap", *flags),
                                 max_target_weight=lim.max_abs_weight,
                                 rationale=f"|target weight| {weight:.4g} capped at {lim.max_abs_weight:.4g}")
        return VerdictAnswer(verdict="approve", confidence=confidence, risk_flags=tuple(flags),
                             rationale=f"|target weight| {weight:.4g} within limits")

    def _regime_change(self, request: ReviewRequest, change: RegimeChanged) -> VerdictAnswer:
        lim = self.limits
        current = change.current
        if change.confidence < lim.regime_min_confidence:
            return VerdictAnswer(verdict="escalate", confidence=0.7, risk_flags=("low_confidence",),
                                 rationale=f"change to {current.value} confirmed with confidence {change.confidence:.3g} "
                                           f"below {lim.regime_min_confidence:.3g}")
        probability = None if request.regime is None else request.regime.probability(current.value)
        if probability is not None and probability < 0.5:
            return VerdictAnswer(verdict="reject", confidence=0.7, risk_flags=("weak_evidence",),
                                 rationale=f"latest state gives {current.value} probability {probability:.3g} < 0.5")
        flags: list[str] = []
        if current is RegimeLabel.CRISIS:
            flags.append("crisis_entered")
        previous = change.previous
        if previous is not None and ((previous in CALM and current in STRESSED) or (previous in STRESSED and current in CALM)):
            flags.append("abrupt_transition")
        return VerdictAnswer(verdict="approve", confidence=0.8, risk_flags=tuple(flags),
                             rationale=f"change {previous.value if previous else 'none'} -> {current.value} is supported")

    def _switch(self, request: ReviewRequest) -> VerdictAnswer:
        if request.recent_switches > self.limits.max_switches:
            return VerdictAnswer(verdict="reject", confidence=0.8, risk_flags=("excessive_switching",),
                                 rationale=f"{request.recent_switches} switches in the window exceed {self.limits.max_switches}")
        return VerdictAnswer(verdict="approve", confidence=0.7,
                             rationale=f"{request.recent_switches} switches in the window are within {self.limits.max_switches}")


def _agreement(target: TargetProposed) -> float | None:
    """``|sum w*s| / sum |w*s|`` over the contributing signals (1: unanimous, 0: cancelling); None without any."""
    terms = [c.weight * c.strength for c in target.contributions]
    total = sum(abs(t) for t in terms)
    if total == 0:
        return None
    return abs(sum(terms)) / total
