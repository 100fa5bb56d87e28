"""Articles as sources deliver them, and how they become ``NewsPublished`` events.

Contract:
- :class:`Article` is what every source yields: a headline, a publication time in ns, the
  source's own id when it has one, and optional summary, url, declared symbols and category.
- :meth:`Article.key` identifies the article for dedup: the source's id when given, else a
  content hash of the normalised headline and summary (so the same story re-fetched from a
  feed is recognised even without an id).
- :func:`to_news_event` builds the ``NewsPublished`` origin event: its id derives from
  ``(news source, key)``, so re-acquiring an article yields the same event id; ``ts_event`` is
  the publication time; symbols come from :meth:`EntityMapper.resolve`; the category is the
  source's, else :func:`categorize`'s guess.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

from ata.events import NewsPublished
from ata.events.values import SYMBOL_PATTERN
from ata.sentiment.core.entities import EntityMapper
from ata.sentiment.core.phrases import is_routine, phrase_matches

_SPACES = re.compile(r"\s+")
_SYMBOL = re.compile(SYMBOL_PATTERN)

#: Phrase rule → news category, first match wins (order of the rules in :mod:`.phrases`).
RULE_CATEGORY = {
    "beat_estimates": "earnings", "beat": "earnings", "better_than_expected": "earnings", "miss_estimates": "earnings",
    "miss": "earnings", "falls_short": "earnings", "worse_than_expected": "earnings", "swing_profit": "earnings",
    "swing_loss": "earnings", "raise_guidance": "guidance", "cut_guidance": "guidance", "warns": "guidance",
    "upgrade": "analyst", "downgrade": "analyst", "positive_rating": "analyst", "negative_rating": "analyst",
    "target_raised": "analyst", "target_cut": "analyst", "buyback": "buyback", "dividend_up": "dividend",
    "dividend_cut": "dividend", "acquired_premium": "deal", "wins_contract": "deal", "accretive": "deal",
    "approval": "regulatory", "rejection": "regulatory", "trial_success": "trial", "trial_failure": "trial",
    "lawsuit": "legal", "fraud_penalty": "legal", "investigation": "investigation", "recall": "recall",
    "layoffs": "layoffs",
}


def normalise(text: str) -> str:
    return _SPACES.sub(" ", text).strip().casefold()


def content_hash(headline: str, summary: str = "") -> str:
    return hashlib.sha256(f"{normalise(headline)}\x1f{normalise(summary)}".encode()).hexdigest()


def categorize(text: str) -> str:
    """A coarse category from the phrase rules; ``routine`` for schedules/filings, else ``other``."""
    lowered = text.lower()
    for name, _ in phrase_matches(lowered):
        if category := RULE_CATEGORY.get(name):
            return category
    return "routine" if is_routine(lowered) else "other"


@dataclass(frozen=True, slots=True)
class Article:
    """One news item as acquired. ``published_ns`` is the publication time (ns since epoch)."""

    news_source: str
    headline: str
    published_ns: int
    article_id: str = ""
    summary: str = ""
    url: str = ""
    symbols: tuple[str, ...] = ()
    category: str = ""

    def key(self) -> str:
        """Dedup key: the source's id when present, else ``h-`` and a content hash."""
        return self.article_id or f"h-{content_hash(self.headline, self.summary)[:32]}"


def to_news_event(article: Article, mapper: EntityMapper, *, source: str, ts_init: int) -> NewsPublished:
    """The ``NewsPublished`` origin event of ``article`` (deterministic id, see the module contract)."""
    text = f"{article.headline}\n{article.summary}" if article.summary else article.headline
    return NewsPublished.origin(
        natural_key=(article.news_source, article.key()),
        ts_event=article.published_ns,
        ts_init=ts_init,
        source=source,
        article_id=article.key()[:256],
        news_source=article.news_source[:128],
        headline=article.headline[:2000],
        summary=article.summary[:20000],
        url=article.url[:2000],
        symbols=tuple(s for s in mapper.resolve(text, article.symbols) if _SYMBOL.match(s)),
        category=(article.category or categorize(article.headline))[:64],
    )
