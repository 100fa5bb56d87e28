"""pipeline.live's per-service drain rate from sampled committed offsets."""

from __future__ import annotations

from bench.bench_pipeline import Progress

S = 1_000_000_000  # ns


def progress(group: str, committed: list[int], base: int = 100) -> Progress:
    """One sample a second: the group's committed offsets (``base`` + records) at each."""
    return Progress([(i * S, 0, {group: base + n}) for i, n in enumerate(committed)])


def test_rate_over_the_middle_of_a_steady_drain() -> None:
    # 100 records a second: last sample below 20 % (of 1000) has 100, first at 80 % has 800.
    assert progress("g", [0, 100, 200, 300, 400, 500, 600, 700, 800, 900, 1000]).drain_rate("g", 100, 1000) == 100.0


def test_a_group_that_commits_everything_at_once_still_has_a_rate() -> None:
    # Nothing, then all 1000 between two samples: 1000 records in one second at least.
    assert progress("g", [0, 0, 1000, 1000]).drain_rate("g", 100, 1000) == 1000.0


def test_no_rate_without_a_sample_before_or_after_the_middle() -> None:
    assert progress("g", [300, 1000]).drain_rate("g", 100, 1000) is None  # first sample already past 20 %
    assert progress("g", [0, 500]).drain_rate("g", 100, 1000) is None  # never reached 80 %
