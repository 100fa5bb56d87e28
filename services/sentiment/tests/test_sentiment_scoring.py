"""Scoring: accuracy on the shipped fixtures per split, and the finance cases general lexicons get wrong."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ata.sentiment.core import Label, Scorer
from ata.sentiment.core.phrases import ROUTINE, RULE_DISPATCH, RULES, is_routine, phrase_score
from ata.sentiment.evaluation import evaluate
from ata.sentiment.fixtures import labelled_headlines


@pytest.fixture(scope="module")
def scorer() -> Scorer:
    return Scorer()


def test_fixtures_are_large_balanced_and_split_in_halves() -> None:
    rows = labelled_headlines()
    assert len(rows) >= 300
    assert len({r.article.article_id for r in rows}) == len(rows)
    for label in ("positive", "negative", "neutral"):
        labelled = [r for r in rows if r.label == label]
        assert len(labelled) >= 90
        dev = sum(r.split == "dev" for r in labelled)
        assert abs(dev - (len(labelled) - dev)) <= 1
    times = [r.article.published_ns for r in rows]
    assert times == sorted(times)


def test_three_class_accuracy_on_dev_and_heldout(scorer: Scorer) -> None:
    results = evaluate(scorer)
    for name, result in results.items():
        print(f"\n{name}: {result.correct}/{result.total} = {result.accuracy:.1%}  confusion={result.confusion}")
    assert results["dev"].accuracy >= 0.80
    assert results["heldout"].accuracy >= 0.70


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Shares plunge after deliveries miss expectations", Label.NEGATIVE),
        ("Acme fails to beat estimates as margins shrink", Label.NEGATIVE),
        ("Acme did not raise guidance despite record orders", Label.NEGATIVE),
        ("Acme cuts guidance", Label.NEGATIVE),
        ("Acme beats estimates and raises guidance", Label.POSITIVE),
        ("Acme upgraded to Buy at a major broker", Label.POSITIVE),
        ("Acme downgraded to Sell", Label.NEGATIVE),
        ("Acme suspends buyback", Label.NEGATIVE),
        ("Acme to report fourth-quarter results on Feb 2", Label.NEUTRAL),
    ],
)
def test_finance_phrases_the_general_lexicons_miss(scorer: Scorer, text: str, expected: Label) -> None:
    assert scorer.score(text).label is expected


def test_vader_alone_calls_a_plunge_on_a_miss_positive_and_the_ensemble_does_not(scorer: Scorer) -> None:
    result = scorer.score("Shares plunge after deliveries miss expectations")
    assert result.components["vader"] > 0  # the measured failure the phrase layer exists for
    assert result.components["lm"] == 0.0  # LM's stemmer turns "plunge" into "plung", which it lacks
    assert result.components["phrase"] < 0
    assert result.score < 0


def test_negation_flips_a_phrase() -> None:
    assert phrase_score("acme beats estimates") > 0
    assert phrase_score("acme fails to beat estimates") < 0
    assert phrase_score("acme raises guidance") > 0
    assert phrase_score("acme does not raise guidance") < 0


def test_scores_are_bounded_and_deterministic(scorer: Scorer) -> None:
    other = Scorer()
    for row in labelled_headlines():
        first, second = scorer.score(row.article.headline), other.score(row.article.headline)
        assert first == second
        assert -1.0 <= first.score <= 1.0


_VOCABULARY = [
    "beats", "estimates", "misses", "raises", "cuts", "guidance", "outlook", "upgraded", "downgraded", "to", "buy", "sell",
    "above", "ahead", "of", "expectations", "better-than-expected", "swings", "loss", "profit", "recall", "fails", "meet",
    "price", "target", "raised", "35%", "premium", "dividend", "special", "files", "10-q", "acme", "shares", "plunge",
    "at", "not", "a", "record", "high", "lays", "off", "jobs", "wins", "contract", "$1.5", "billion", "(acme)", "-",
]


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from(_VOCABULARY), max_size=14), st.sampled_from([" ", "  ", ", "]))
def test_prefix_dispatch_finds_exactly_what_finditer_finds(words: list[str], sep: str) -> None:
    text = sep.join(words)
    for rule, found in zip(RULES, RULE_DISPATCH.matches(text), strict=True):
        assert [m.span() for m in found] == [m.span() for m in rule.pattern.finditer(text)], rule.name
    assert is_routine(text) == (ROUTINE.search(text) is not None)
