"""3-class accuracy of the scorer on the shipped fixtures, per split."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from ata.sentiment.core import Scorer
from ata.sentiment.fixtures import LabelledHeadline, labelled_headlines

LABELS = ("positive", "neutral", "negative")


@dataclass(frozen=True, slots=True)
class SplitResult:
    split: str
    total: int
    correct: int
    confusion: dict[tuple[str, str], int] = field(default_factory=dict)

    @property
    def accuracy(self) -> float:
        return self.correct / self.total if self.total else 0.0


def evaluate_split(scorer: Scorer, rows: list[LabelledHeadline], split: str) -> SplitResult:
    confusion: Counter[tuple[str, str]] = Counter()
    for row in rows:
        confusion[(row.label, scorer.score(row.article.headline).label.value)] += 1
    correct = sum(n for (truth, predicted), n in confusion.items() if truth == predicted)
    return SplitResult(split, len(rows), correct, dict(confusion))


def evaluate(scorer: Scorer | None = None) -> dict[str, SplitResult]:
    """Accuracy on the ``dev`` and ``heldout`` halves of the shipped fixtures."""
    scorer = scorer or Scorer()
    rows = labelled_headlines()
    return {split: evaluate_split(scorer, [r for r in rows if r.split == split], split) for split in ("dev", "heldout")}
