"""Entity → symbol mapping: which configured symbols a piece of text is about.

Contract: :meth:`EntityMapper.symbols_in` returns the configured symbols the text names, in
order of first mention, found by

- cashtags (``$HLVM``), case-insensitive;
- bare tickers in upper case on word boundaries (``(HLVM)``, ``HLVM upgraded``), except the
  symbols listed as cashtag-only because the ticker is also a common word (``ON``, ``ALL``, ``F``);
- company names and aliases, case-insensitive, on word boundaries, possessives included
  ("Corvane's" names CRVP).

Symbols outside the configured universe are never returned, whatever the text says.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence

#: Shorter bare tickers collide with ordinary words and initials too often to trust without a ``$``.
MIN_BARE_TICKER_LENGTH = 2


class EntityMapper:
    """Maps text to symbols of a fixed universe (symbol → company name and aliases)."""

    def __init__(self, universe: Mapping[str, Sequence[str]], cashtag_only: Iterable[str] = ()) -> None:
        self.universe = {symbol.upper(): tuple(names) for symbol, names in universe.items()}
        self.cashtag_only = {s.upper() for s in cashtag_only}
        self._cashtag = re.compile(r"\$([A-Za-z][A-Za-z0-9.\-]{0,9})\b")
        bare = sorted(
            (s for s in self.universe if s not in self.cashtag_only and len(s) >= MIN_BARE_TICKER_LENGTH), key=len, reverse=True
        )
        self._bare = re.compile(r"(?<![\w$])(" + "|".join(map(re.escape, bare)) + r")(?![\w])") if bare else None
        name_to_symbol: dict[str, str] = {}
        for symbol, names in self.universe.items():
            for name in names:
                name_to_symbol.setdefault(name.casefold(), symbol)
        self._name_to_symbol = name_to_symbol
        # Longest names first so "Atlas Freight Lines" wins over a shorter alias at the same place.
        alternatives = sorted(name_to_symbol, key=len, reverse=True)
        self._names = (
            re.compile(r"(?<!\w)(" + "|".join(re.escape(n) for n in alternatives) + r")(?:'s|’s)?(?!\w)", re.IGNORECASE)
            if alternatives
            else None
        )

    @property
    def symbols(self) -> frozenset[str]:
        return frozenset(self.universe)

    def symbols_in(self, text: str) -> tuple[str, ...]:
        """Configured symbols named in ``text``, in order of first mention."""
        found: list[tuple[int, str]] = []
        for m in self._cashtag.finditer(text):
            symbol = m.group(1).upper()
            if symbol in self.universe:
                found.append((m.start(), symbol))
        if self._bare is not None:
            found.extend((m.start(), m.group(1)) for m in self._bare.finditer(text))
        if self._names is not None:
            found.extend((m.start(), self._name_to_symbol[m.group(1).casefold()]) for m in self._names.finditer(text))
        ordered: dict[str, None] = {}
        for _, symbol in sorted(found):
            ordered.setdefault(symbol, None)
        return tuple(ordered)

    def resolve(self, text: str, declared: Iterable[str] = ()) -> tuple[str, ...]:
        """Symbols an item is about: those it declares (a source's own tagging) that are in the universe,
        then those its text names. An empty universe accepts declared symbols as they are."""
        declared_upper = [s.upper() for s in declared]
        if not self.universe:
            return tuple(dict.fromkeys(declared_upper))
        ordered = dict.fromkeys(s for s in declared_upper if s in self.universe)
        ordered.update(dict.fromkeys(self.symbols_in(text)))
        return tuple(ordered)
