"""The shipped labelled headlines and default universe (package data).

``data/headlines.jsonl``: one hand-written headline per line with ``id``, ``published_at``
(UTC, RFC 3339), ``source``, ``symbols``, ``category``, ``label`` (positive / negative /
neutral) and ``split``. The split was fixed before the phrase layer was written: within each
label, headlines ordered by the SHA-256 of their text alternate between ``dev`` (used to build
and tune the phrase layer and ensemble weights) and ``heldout`` (only ever measured). The
companies are fictional; the universe (``data/universe.json``: symbol → company name and
aliases) is the default entity map.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from importlib import resources
from typing import Literal

from ata.sentiment.core.news import Article

Split = Literal["dev", "heldout"]


@dataclass(frozen=True, slots=True)
class LabelledHeadline:
    article: Article
    label: str
    split: Split


def _data(name: str) -> str:
    return resources.files("ata.sentiment").joinpath("data", name).read_text(encoding="utf-8")


def parse_time_ns(text: str) -> int:
    """RFC 3339 / ISO 8601 with a zone (``Z`` accepted) → ns since epoch; a naive time is refused."""
    moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    if moment.tzinfo is None:
        raise ValueError(f"timestamp without a time zone: {text!r}")
    return int(moment.timestamp()) * 10**9 + moment.microsecond * 1000


def default_universe() -> dict[str, list[str]]:
    data: dict[str, list[str]] = json.loads(_data("universe.json"))
    return data


def labelled_headlines(split: Split | None = None) -> list[LabelledHeadline]:
    """The shipped fixtures in publication order, optionally one split only."""
    rows = []
    for line in _data("headlines.jsonl").splitlines():
        raw = json.loads(line)
        if split is not None and raw["split"] != split:
            continue
        article = Article(
            news_source=raw["source"], headline=raw["headline"], published_ns=parse_time_ns(raw["published_at"]),
            article_id=raw["id"], symbols=tuple(raw["symbols"]), category=raw["category"],
        )
        rows.append(LabelledHeadline(article, raw["label"], raw["split"]))
    return rows
