"""Sentiment scoring throughput on the lexicon route (VADER + Loughran–McDonald + finance phrases).

- ``sentiment.scoring``: the shipped labelled headlines scored repeatedly by one warm
  :class:`~ata.sentiment.core.Scorer`. The goal (>= 5,000 headlines/s on one core) is checked
  against CPU time of this process, because scoring is single-threaded pure Python and on a
  shared machine the wall clock also counts time the process waited for a core; the
  wall-clock rate is reported beside it. Also the full engine path (scoring, decay, novelty,
  one ``SentimentScored`` per symbol) for the same items.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

from ata.sentiment.core import EngineParams, EntityMapper, Scorer, SentimentEngine, to_news_event
from ata.sentiment.fixtures import default_universe, labelled_headlines
from bench.runner import Context, Metric, benchmark


def _best(func: Callable[[], object], repeat: int) -> tuple[float, float]:
    """Best wall and best CPU seconds of ``repeat`` runs."""
    wall, cpu = [], []
    for _ in range(repeat):
        started_wall, started_cpu = time.perf_counter(), time.process_time()
        func()
        wall.append(time.perf_counter() - started_wall)
        cpu.append(time.process_time() - started_cpu)
    return min(wall), min(cpu)


@benchmark(
    name="sentiment.scoring",
    goal="headlines scored per second on the lexicon route: >= 5,000/s on one core (CPU time)",
    params={"rounds": 20, "repeat": 3},
    quick={"rounds": 3, "repeat": 1},
)
def bench_scoring(ctx: Context) -> Iterator[Metric]:
    rows = labelled_headlines()
    headlines = [r.article.headline for r in rows]
    scorer = Scorer()
    for text in headlines:  # warm the per-word stemming cache, as a running service would be
        scorer.score(text)
    rounds, repeat = ctx.params["rounds"], ctx.params["repeat"]
    ctx.status(f"{rounds} x {len(headlines)} headlines")
    scored = rounds * len(headlines)
    wall, cpu = _best(lambda: [scorer.score(t) for _ in range(rounds) for t in headlines], repeat)
    mapper = EntityMapper(default_universe())
    items = [to_news_event(r.article, mapper, source="bench", ts_init=0) for r in rows]

    def replay() -> None:
        for n in range(rounds):
            engine = SentimentEngine(scorer, EngineParams(availability_delay_ns=0), source=f"bench{n}")
            for item in items:
                engine.on_news(item)

    engine_wall, engine_cpu = _best(replay, repeat)
    ctx.record("headlines", len(headlines))
    yield Metric("headlines scored, per CPU second", scored / cpu, "headlines/s", at_least=5_000)
    yield Metric("headlines scored, per wall second", scored / wall, "headlines/s")
    yield Metric("items through the engine (score, decay, novelty, event), per CPU second", scored / engine_cpu, "items/s")
    yield Metric("items through the engine, per wall second", scored / engine_wall, "items/s")
