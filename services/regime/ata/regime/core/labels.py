"""The label rule and the confirmation (hysteresis + multi-timeframe) that keeps labels from flapping.

Label rule (documented contract)
--------------------------------
Inputs per bar: ``stress`` = P(high-variance regime | returns so far) from the
2-state Markov-switching filter; ``extreme`` = P(highest-variance regime) from the
3-state filter when the key has one, else 1 if the realised-volatility percentile is at
least ``crisis_rv_percentile``, else 0; ``trend`` = the volatility-scaled momentum
score (mean over lookbacks n of ``momentum_n / (sigma_bar * sqrt(n))``, a t-statistic).

1. Volatility class: *volatile* if ``stress > 0.5``, else *quiet*.
2. Volatile: ``crisis`` if ``trend < 0`` and ``extreme > 0.5``; else ``bear_volatile`` if
   ``trend < 0``; else ``bull_volatile``.
3. Quiet: ``bull_quiet`` if ``trend > trend_threshold``, ``bear_quiet`` if
   ``trend < -trend_threshold``, else ``sideways``.

Label probabilities are the soft version of the same tree, with ``up = sigmoid(trend / w)``,
``bull = sigmoid((trend - threshold) / w)``, ``bear = sigmoid((-trend - threshold) / w)``
(``w`` = ``trend_softness``), and the extreme share of stress ``e = min(1, extreme / stress)``::

    bull_volatile = stress * up          bull_quiet = (1 - stress) * bull
    bear_volatile = stress * (1 - e) * (1 - up)   bear_quiet = (1 - stress) * bear
    crisis        = stress * e * (1 - up)         sideways   = (1 - stress) * (1 - bull - bear)

They sum to one. The confidence of a state is the probability of its label.

Confirmation
------------
A raw label different from the confirmed one becomes a *candidate*; it is confirmed when
(a) it has been the raw label for ``hysteresis_bars`` consecutive bars, (b) its
probability exceeds the confirmed label's by at least ``probability_margin``, and (c) if
it changes the volatility class, the higher timeframe agrees: the realised variance per
bar of the current higher-timeframe bucket (a day for intraday bars, a week for daily
bars; the previous bucket is included while the current one has fewer than
``min_bucket_bars`` bars) lies on the candidate's side of the calm/stress threshold
``sqrt(var_calm * var_stress)`` of the 2-state model. The first label of a key is
confirmed at once (there is nothing to flap from).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from ata.events.regime import RegimeLabel

VOLATILE_LABELS = frozenset({RegimeLabel.BULL_VOLATILE, RegimeLabel.BEAR_VOLATILE, RegimeLabel.CRISIS})


def is_volatile(label: RegimeLabel) -> bool:
    return label in VOLATILE_LABELS


def _sigmoid(x: float) -> float:
    if x >= 0.0:
        return 1.0 / (1.0 + math.exp(-x))
    z = math.exp(x)
    return z / (1.0 + z)


@dataclass(frozen=True, slots=True)
class LabelRule:
    trend_threshold: float = 0.5
    trend_softness: float = 0.25

    def classify(self, stress: float, extreme: float, trend: float) -> RegimeLabel:
        if stress > 0.5:
            if trend < 0.0:
                return RegimeLabel.CRISIS if extreme > 0.5 else RegimeLabel.BEAR_VOLATILE
            return RegimeLabel.BULL_VOLATILE
        if trend > self.trend_threshold:
            return RegimeLabel.BULL_QUIET
        if trend < -self.trend_threshold:
            return RegimeLabel.BEAR_QUIET
        return RegimeLabel.SIDEWAYS

    def probabilities(self, stress: float, extreme: float, trend: float) -> dict[RegimeLabel, float]:
        w = self.trend_softness
        up = _sigmoid(trend / w)
        bull = _sigmoid((trend - self.trend_threshold) / w)
        bear = _sigmoid((-trend - self.trend_threshold) / w)
        e = min(1.0, extreme / stress) if stress > 0.0 else 0.0
        quiet = 1.0 - stress
        return {
            RegimeLabel.BULL_QUIET: quiet * bull,
            RegimeLabel.BULL_VOLATILE: stress * up,
            RegimeLabel.BEAR_QUIET: quiet * bear,
            RegimeLabel.BEAR_VOLATILE: stress * (1.0 - e) * (1.0 - up),
            RegimeLabel.SIDEWAYS: max(0.0, quiet * (1.0 - bull - bear)),
            RegimeLabel.CRISIS: stress * e * (1.0 - up),
        }


class Confirmation:
    """Hysteresis state of one key (see the module docstring for the rule)."""

    __slots__ = ("candidate", "confirmed", "count")

    def __init__(self) -> None:
        self.confirmed: RegimeLabel | None = None
        self.candidate: RegimeLabel | None = None
        self.count = 0

    def update(
        self,
        label: RegimeLabel,
        probabilities: dict[RegimeLabel, float],
        higher_timeframe_volatile: bool,
        hysteresis_bars: int,
        probability_margin: float,
    ) -> RegimeLabel | None:
        """Feed this bar's raw label; return the previous label if a change got confirmed, else ``None``.

        The first confirmation returns ``None`` as the previous label too; callers tell it
        apart by ``confirmed`` having been ``None`` before the call.
        """
        previous = self.confirmed
        if previous is None:
            self.confirmed = label
            return None
        if label == previous:
            self.candidate, self.count = None, 0
            return None
        if label == self.candidate:
            self.count += 1
        else:
            self.candidate, self.count = label, 1
        if self.count < hysteresis_bars:
            return None
        if probabilities[label] - probabilities[previous] < probability_margin:
            return None
        if is_volatile(label) != is_volatile(previous) and higher_timeframe_volatile != is_volatile(label):
            return None
        self.confirmed, self.candidate, self.count = label, None, 0
        return previous

    def snapshot(self) -> dict[str, Any]:
        return {"confirmed": self.confirmed, "candidate": self.candidate, "count": self.count}

    @classmethod
    def restore(cls, state: dict[str, Any]) -> Confirmation:
        conf = cls()
        conf.confirmed = None if state["confirmed"] is None else RegimeLabel(state["confirmed"])
        conf.candidate = None if state["candidate"] is None else RegimeLabel(state["candidate"])
        conf.count = int(state["count"])
        return conf
