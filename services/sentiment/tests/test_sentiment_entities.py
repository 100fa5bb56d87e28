"""Entity → symbol mapping: cashtags, tickers, names and aliases from config, nothing outside the universe."""

from __future__ import annotations

from ata.sentiment.core import Article, EntityMapper, to_news_event
from ata.sentiment.fixtures import default_universe, labelled_headlines

UNIVERSE = {
    "HLVM": ["Halvorsen Motors", "Halvorsen"],
    "ON": ["Onward Semiconductor"],
    "ATFL": ["Atlas Freight Lines", "Atlas Freight"],
}


def test_every_fixture_headline_maps_to_its_labelled_symbol() -> None:
    mapper = EntityMapper(default_universe())
    for row in labelled_headlines():
        assert mapper.symbols_in(row.article.headline) == row.article.symbols, row.article.headline


def test_cashtags_tickers_names_aliases_and_possessives() -> None:
    mapper = EntityMapper(UNIVERSE, cashtag_only=("ON",))
    assert mapper.symbols_in("$hlvm jumps") == ("HLVM",)
    assert mapper.symbols_in("Shares of HLVM rose") == ("HLVM",)
    assert mapper.symbols_in("halvorsen's recall widens") == ("HLVM",)
    assert mapper.symbols_in("Atlas Freight Lines and Halvorsen Motors sign deal") == ("ATFL", "HLVM")
    # A ticker that is also a word counts only as a cashtag.
    assert mapper.symbols_in("Rates weigh ON the market") == ()
    assert mapper.symbols_in("$ON beats") == ("ON",)
    assert mapper.symbols_in("Onward Semiconductor beats") == ("ON",)
    # Lower-case words and substrings are not tickers or names.
    assert mapper.symbols_in("hlvm halvorsenite") == ()


def test_symbols_outside_the_universe_are_never_returned() -> None:
    mapper = EntityMapper(UNIVERSE)
    assert mapper.symbols_in("$AAPL and $TSLA soar; MSFT flat") == ()
    assert mapper.resolve("Halvorsen recalls cars", declared=("AAPL", "hlvm")) == ("HLVM",)


def test_news_event_ids_are_deterministic_and_dedup_keys_fall_back_to_content() -> None:
    mapper = EntityMapper(UNIVERSE)
    article = Article(news_source="rss", headline="Halvorsen  recalls cars", published_ns=1_700_000_000 * 10**9)
    same_story = Article(news_source="rss", headline="halvorsen recalls cars ", published_ns=1_700_000_100 * 10**9)
    assert article.key() == same_story.key()
    assert article.key().startswith("h-")
    first = to_news_event(article, mapper, source="sentiment/t", ts_init=1)
    again = to_news_event(article, mapper, source="sentiment/t", ts_init=2)
    assert first.event_id == again.event_id
    assert first.symbols == ("HLVM",)
    assert first.category == "recall"
    assert first.ts_event == article.published_ns
