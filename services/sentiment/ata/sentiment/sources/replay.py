"""Replay of timestamped headlines from JSONL or CSV, optionally paced.

Columns / keys: ``headline`` (required), ``published_at`` (RFC 3339 with a zone) or ``ts_ns``
(required, one of them), ``id``, ``source``, ``symbols`` (a JSON list, or in CSV a string
separated by spaces, commas or semicolons), ``summary``, ``url``, ``category``. Other keys
(``label``, ``split``) are ignored. A malformed row raises :class:`SourceError` naming the file and
line. Items are yielded in publication order; with ``speed`` > 0 the gaps between publication
times are slept through, divided by ``speed`` (1 = real time); 0 replays as fast as possible.
"""

from __future__ import annotations

import asyncio
import csv
import io
import json
import re
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

from ata.sentiment.core.news import Article
from ata.sentiment.fixtures import parse_time_ns
from ata.sentiment.sources.base import SourceError

_SEPARATORS = re.compile(r"[\s,;]+")


def _article(raw: dict[str, Any], default_source: str) -> Article:
    headline = str(raw.get("headline") or "").strip()
    if not headline:
        raise ValueError("missing headline")
    if raw.get("ts_ns") not in (None, ""):
        published = int(raw["ts_ns"])
    elif raw.get("published_at"):
        published = parse_time_ns(str(raw["published_at"]))
    else:
        raise ValueError("missing published_at / ts_ns")
    symbols = raw.get("symbols") or ()
    if isinstance(symbols, str):
        symbols = [s for s in _SEPARATORS.split(symbols) if s]
    return Article(
        news_source=str(raw.get("source") or default_source),
        headline=headline,
        published_ns=published,
        article_id=str(raw.get("id") or ""),
        summary=str(raw.get("summary") or ""),
        url=str(raw.get("url") or ""),
        symbols=tuple(str(s).upper() for s in symbols),
        category=str(raw.get("category") or ""),
    )


def _rows(path: Path, text: str) -> Iterator[tuple[int, dict[str, Any]]]:
    if path.suffix.lower() == ".csv":
        reader = csv.DictReader(io.StringIO(text))
        for row in reader:
            yield reader.line_num, dict(row)
        return
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            raw = json.loads(line)
        except json.JSONDecodeError as exc:
            raise SourceError(f"{path}:{number}: not JSON: {exc.msg}") from None
        if not isinstance(raw, dict):
            raise SourceError(f"{path}:{number}: expected a JSON object")
        yield number, raw


def load_articles(path: Path, default_source: str = "replay") -> list[Article]:
    """Every article of a JSONL/CSV file in publication order (stable for equal times)."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise SourceError(f"{path}: {exc.strerror or exc}") from None
    articles = []
    for number, raw in _rows(path, text):
        try:
            articles.append(_article(raw, default_source))
        except (TypeError, ValueError) as exc:
            raise SourceError(f"{path}:{number}: {exc}") from None
    return sorted(articles, key=lambda a: a.published_ns)


class ReplaySource:
    """Yields the articles of a file (see the module contract)."""

    def __init__(self, articles: list[Article], *, speed: float = 0.0, name: str = "replay") -> None:
        if speed < 0:
            raise ValueError("speed must be >= 0")
        self.name = name
        self.speed = speed
        self._articles = articles

    @classmethod
    def from_file(cls, path: Path, *, speed: float = 0.0) -> ReplaySource:
        return cls(load_articles(path), speed=speed, name=f"replay:{path.name}")

    async def articles(self) -> AsyncIterator[Article]:
        previous: int | None = None
        for article in self._articles:
            if self.speed > 0 and previous is not None and article.published_ns > previous:
                await asyncio.sleep((article.published_ns - previous) / 1e9 / self.speed)
            previous = article.published_ns
            yield article
