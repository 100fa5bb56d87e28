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

# Members as module constants: ``RegimeLabel.X`` goes through the enum class's attribute
# machinery on every access, which the per-bar rule below would pay a dozen times.
_BULL_QUIET = RegimeLabel.BULL_QUIET
_BULL_VOLATILE = RegimeLabel.BULL_VOLATILE
_BEAR_QUIET = RegimeLabel.BEAR_QUIET
_BEAR_VOLATILE = RegimeLabel.BEAR_VOLATILE
_SIDEWAYS = RegimeLabel.SIDEWAYS
_CRISIS = RegimeLabel.CRISIS

VOLATILE_LABELS = frozenset({_BULL_VOLATILE, _BEAR_VOLATILE, _CRISIS})


def is_volatile(label: RegimeLabel) -> bool:
    return label in VOLATILE_LABELS


_exp = math.exp  # a module global: called three times per key and bar


def _sigmoid(x: float) -> float:
    if x >= 0.0:
        return 1.0 / (1.0 + _exp(-x))
    z = _exp(x)
    return z / (1.0 + z)


@dataclass(frozen=True, slots=True)
class LabelRule:
    trend_threshold: float = 0.5
    trend_softness: float = 0.25

    def classify(self, stress: float, extreme: float, trend: float) -> RegimeLabel:
        if stress > 0.5:
            if trend < 0.0:
                return _CRISIS if extreme > 0.5 else _BEAR_VOLATILE
            return _BULL_VOLATILE
        if trend > self.trend_threshold:
            return _BULL_QUIET
        if trend < -self.trend_threshold:
            return _BEAR_QUIET
        return _SIDEWAYS

    def probabilities(self, stress: float, extreme: float, trend: float) -> dict[RegimeLabel, float]:
        w = self.trend_softness
        threshold = self.trend_threshold
        up = _sigmoid(trend / w)
        bull = _sigmoid((trend - threshold) / w)
        bear = _sigmoid((-trend - threshold) / w)
        e = min(1.0, extreme / stress) if stress > 0.0 else 0.0
        quiet = 1.0 - stress
        down = 1.0 - up
        return {
            _BULL_QUIET: quiet * bull,
            _BULL_VOLATILE: stress * up,
            _BEAR_QUIET: quiet * bear,
            _BEAR_VOLATILE: stress * (1.0 - e) * down,
            _SIDEWAYS: max(0.0, quiet * (1.0 - bull - bear)),
            _CRISIS: stress * e * down,
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
        volatile = label in VOLATILE_LABELS
        changes_class = volatile != (previous in VOLATILE_LABELS)
        if changes_class and higher_timeframe_volatile != volatile:
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
