"""The finance phrase layer: what general-purpose lexicons miss in news headlines.

VADER is tuned for social media and LM for annual reports; neither knows that "misses
expectations", "cuts guidance" or "downgraded" are bad news, that "plunge" is bad (VADER
scores "shares plunge after deliveries miss expectations" as positive; LM's stemmer turns
"plunge" into "plung", which its dictionary lacks, and drops "miss"), or that "beats estimates"
is good. Each :class:`Rule` is a regular expression over the lower-cased text with a weight in
[-1, 1]: ±0.8 for the decisive facts of a headline (beat/miss, guidance up/down, rating
change, approval/rejection, recall, lawsuit), ±0.5 for market-move verbs (jump, plunge)
that report the reaction rather than the fact.

Negation: a rule flagged ``negatable`` flips sign when one of :data:`NEGATORS` appears in
the few words before the match ("fails to beat", "did not raise guidance", "suspends
buyback"). The phrase score of a text is the clipped sum of the weights of its matches
(overlapping matches of the same span count once).

Neutral markers (scheduling, filings, appointments) do not score; :func:`is_routine` lets
the ensemble damp the general lexicons on such items, whose words ("present", "appoints")
carry no market sentiment.
"""

from __future__ import annotations

import re
import re._constants as sre_constants  # the stdlib's own regex parser: used only to read literal prefixes
import re._parser as sre_parser
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

#: Words before a phrase that reverse it ("fails to beat", "no longer expects to raise", "suspends buyback").
NEGATORS = (
    "not", "no", "never", "fail", "fails", "failed", "failing", "didn't", "doesn't", "won't", "without",
    "unable", "nor", "suspend", "suspends", "suspended", "halt", "halts", "halted", "scrap", "scraps",
    "scrapped", "withdraw", "withdraws", "withdrew", "cancel", "cancels", "canceled", "cancelled", "end", "ends",
)
#: How many words before a match the negation scope reaches.
NEGATION_WINDOW = 3

_EST = (
    r"(?:(?:analyst|analysts'?|street|wall street|consensus|market|its own|profit|earnings|revenue|sales)\s+)*"
    r"(?:estimates?|expectations?|forecasts?|views?|targets?|consensus|projections?)"
)
_OUTLOOK = r"(?:[\w-]+\s+){0,4}?(?:guidance|outlook|forecasts?|targets?|projections?)"
_GAP = r"\s+(?:\w+\s+){0,3}?"


_ZERO_WIDTH = (sre_constants.AT, sre_constants.ASSERT, sre_constants.ASSERT_NOT)
_WORD_START = re.compile(r"\b\w")
#: Word prefixes are indexed by up to this many leading characters.
_KEY_LENGTH = 3


def _word_prefixes(items: Iterable[tuple[Any, Any]], anchored: bool = False) -> frozenset[str] | None:
    """Strings one of which every match of the parsed sequence starts with, at a word start
    (a ``\\b`` followed by a word character); ``None`` when that cannot be shown."""
    prefix = ""
    for op, arg in items:
        if op is sre_constants.LITERAL and (prefix or anchored):
            prefix += chr(arg)
            continue
        if prefix:
            # The parser factors common prefixes out of alternations ("a(?:bove|head of)"): extend through them.
            tails = _word_prefixes([(op, arg)], anchored=True) if op in (sre_constants.BRANCH, sre_constants.SUBPATTERN) else None
            return frozenset(prefix + tail for tail in tails) if tails else frozenset({prefix})
        if op is sre_constants.AT and arg is sre_constants.AT_BOUNDARY:
            anchored = True
        elif op in _ZERO_WIDTH:
            continue
        elif op is sre_constants.SUBPATTERN:
            return _word_prefixes(arg[-1], anchored)
        elif op is sre_constants.BRANCH:
            union: set[str] = set()
            for branch in arg[1]:
                found = _word_prefixes(branch, anchored)
                if found is None:
                    return None
                union |= found
            return frozenset(union)
        else:
            return None
    if prefix and (prefix[0].isalnum() or prefix[0] == "_"):
        return frozenset({prefix})
    return None


def word_prefixes(pattern: re.Pattern[str]) -> frozenset[str] | None:
    """Where ``pattern`` can start: at a word start that begins with one of these strings.

    ``None`` when the pattern does not start with ``\\b`` and a literal (then it always runs).
    """
    try:
        return _word_prefixes(sre_parser.parse(pattern.pattern, pattern.flags))
    except Exception:  # an unforeseen parser shape only costs speed, never correctness
        return None


class PrefixDispatch:
    """Runs a list of patterns only where they can start, with ``finditer``'s results.

    Python's ``re`` tries every alternative at every position (about 20 µs per rule on a
    headline). Each pattern's word prefixes (:func:`word_prefixes`) are indexed by their first
    characters; the text's word starts are looked up, and ``pattern.match`` runs only at the
    word starts where one of its prefixes can begin, left to right, skipping positions inside
    the previous match: exactly the matches ``finditer`` yields, because every match starts at
    a word start with one of the prefixes. Patterns without known prefixes use ``finditer``.
    """

    def __init__(self, patterns: Sequence[re.Pattern[str]]) -> None:
        self.patterns = tuple(patterns)
        self._index: dict[str, list[int]] = {}
        self._always: list[int] = []
        for number, pattern in enumerate(self.patterns):
            prefixes = word_prefixes(pattern)
            if prefixes is None:
                self._always.append(number)
                continue
            for prefix in prefixes:
                listed = self._index.setdefault(prefix[:_KEY_LENGTH], [])
                if number not in listed:
                    listed.append(number)
        self._lengths = sorted({len(key) for key in self._index})

    def matches(self, text: str) -> list[list[re.Match[str]]]:
        """Per pattern, its non-overlapping matches in ``text`` (as ``finditer`` would give)."""
        starts: dict[int, list[int]] = {}
        index, lengths = self._index, self._lengths
        for word in _WORD_START.finditer(text):
            i = word.start()
            for length in lengths:
                for number in index.get(text[i:i + length], ()):
                    found = starts.setdefault(number, [])
                    if not found or found[-1] != i:
                        found.append(i)
        result: list[list[re.Match[str]]] = [[] for _ in self.patterns]
        for number in self._always:
            result[number] = list(self.patterns[number].finditer(text))
        for number, positions in starts.items():
            pattern, out, end = self.patterns[number], result[number], -1
            for start in sorted(positions):
                if start < end:
                    continue
                m = pattern.match(text, start)
                if m is not None:
                    out.append(m)
                    end = m.end() if m.end() > m.start() else start + 1
        return result


@dataclass(frozen=True, slots=True)
class Rule:
    """A phrase with its weight; ``negatable`` rules flip sign after a negator."""

    name: str
    pattern: re.Pattern[str]
    weight: float
    negatable: bool = True


def _words(words: str) -> str:
    """``\\b(?:w1|w2|...)\\b`` from space-separated regex fragments (``_`` stands for a space)."""
    return r"\b(?:" + "|".join(w.replace("_", " ") for w in words.split()) + r")\b"


def _rule(name: str, weight: float, *alternatives: str, negatable: bool = True) -> Rule:
    return Rule(name, re.compile("|".join(alternatives)), weight, negatable)


_BEAT = _words(r"beat beats beating top tops topped topping exceeds? exceeded surpass(?:es|ed)? crush(?:es|ed)?")
_MISS = _words(r"miss misses missed missing")
_RAISE = _words(r"raises? raised lifts? lifted boosts? boosted hikes? hiked ups upped increases? increased improves?")
_CUT = _words(r"cuts? cutting lowers? lowered slash(?:es|ed)? trims? trimmed reduces? reduced withdraws? withdrew pulls? "
              r"suspends? scraps?")
_THAN_EXPECTED = r"[- ]than[- ](?:expected|forecast|feared)\b"
_VS_EXPECTATIONS = r"\s+(?:\w+\s+)?(?:expectations|estimates|forecasts)\b"

RULES: tuple[Rule, ...] = (
    # Earnings against expectations
    _rule("beat_estimates", 0.8, _BEAT + _GAP + _EST),
    _rule("beat", 0.6, r"\b(?:beats|beat|tops|topped)\b(?!\s+(?:by|down))"),
    _rule("better_than_expected", 0.7, _words("better stronger higher") + _THAN_EXPECTED,
          r"\b(?:above|ahead of)" + _VS_EXPECTATIONS, r"\bahead of schedule\b",
          r"\bmore\s+(?:[\w-]+\s+){0,3}than (?:expected|forecast)\b"),
    _rule("miss_estimates", -0.8, _MISS + _GAP + _EST),
    _rule("miss", -0.6, _MISS),
    _rule("falls_short", -0.7, r"\b(?:falls?|fell|coming|comes?|came)\s+short\b", r"\bshort of" + _VS_EXPECTATIONS),
    _rule("worse_than_expected", -0.7, _words("worse weaker lower wider bigger larger deeper") + _THAN_EXPECTED,
          r"\bbelow" + _VS_EXPECTATIONS),
    _rule("record", 0.6, r"\brecord(?:[- ]high)?\s+" + _words("revenue profit sales quarter quarterly earnings deliveries high "
                                                                "order output fee year"),
          r"\b(?:all[- ]time|record)\s+high\b", r"\bhits? (?:a )?record\b", r"\bto record\b"),
    _rule("swing_profit", 0.7, r"\b(?:swings?|swung|returns?|returned)\s+to\s+(?:a\s+)?(?:quarterly\s+)?profit\b",
          r"\bsurprise profit\b", r"\bfirst (?:annual |quarterly )?profit\b"),
    _rule("swing_loss", -0.7, r"\b(?:swings?|swung)\s+to\s+(?:a\s+)?(?:quarterly\s+)?loss\b", r"\bsurprise loss\b",
          r"\b(?:posts?|reports?)\s+(?:\w+\s+){0,2}loss\b", r"\bquarterly loss\b", r"\bloss widens\b"),
    # Guidance
    _rule("raise_guidance", 0.8, _RAISE + r"\s+" + _OUTLOOK),
    _rule("cut_guidance", -0.8, _CUT + r"\s+" + _OUTLOOK),
    _rule("warns", -0.6, _words("warns? warned warning"), r"\bgoing[- ]concern\b"),
    # Analysts
    _rule("upgrade", 0.8, r"\bupgrad(?:e|es|ed)\b(?!\s+cycle)"),
    _rule("downgrade", -0.8, r"\bdowngrad(?:e|es|ed)\b"),
    _rule("positive_rating", 0.5,
          r"\b(?:to|at|initiated at|reiterated at|rated)\s+(?:strong\s+)?(?:buy|outperform|overweight)\b"),
    _rule("negative_rating", -0.5, r"\b(?:to|at|initiated at|rated)\s+(?:sell|underperform|underweight|strong sell)\b"),
    _rule("target_raised", 0.6, r"\b(?:price target|target) (?:raised|lifted|boosted|increased)\b",
          r"\b(?:raises?|lifts?|boosts?)\s+(?:price\s+)?target\b"),
    _rule("target_cut", -0.6, r"\b(?:price target|target) (?:cut|lowered|slashed|reduced)\b",
          r"\b(?:cuts?|lowers?|slashes?)\s+(?:price\s+)?target\b"),
    # Capital return
    _rule("buyback", 0.6, _words("buyback buy-back share_repurchase stock_repurchase repurchase_program "
                                 "repurchase_authori[sz]ation")),
    _rule("dividend_up", 0.7, _RAISE + r"\s+(?:\w+\s+){0,2}dividend\b", r"\bdividend (?:increase|hike)\b",
          r"\bspecial dividend\b"),
    _rule("dividend_cut", -0.8,
          _words(r"cuts? slash(?:es|ed)? suspends? suspended eliminates? omits? reduces?") + r"\s+(?:\w+\s+){0,2}dividend\b",
          r"\bdividend (?:cut|at risk|suspension)\b", negatable=False),
    # Deals and contracts
    _rule("acquired_premium", 0.7,
          _words("to_be_(?:acquired|bought) agrees?_to_(?:buy|acquire)_it takeover_(?:bid|offer) buyout"),
          r"(?<=\d)% premium\b", r"\bpremium of \d+%"),
    _rule("wins_contract", 0.6, _words("wins? won lands? landed secures? secured awarded signs? signed")
          + r"\s+(?:[\w$.,-]+\s+){0,5}?(?:contract|order|deal|agreement|partnership)s?\b"),
    _rule("accretive", 0.5, r"\baccretive\b"),
    _rule("lower_costs", 0.6, r"\b(?:lower|reduced|narrower|smaller)\s+(?:\w+\s+)?(?:loss|losses|costs)\b"),
    # Regulatory and clinical
    _rule("approval", 0.7, _words("approves? approved approval clearance clears? cleared"),
          r"\bbreakthrough (?:therapy )?designation\b"),
    _rule("rejection", -0.8,
          _words("rejects? rejected rejection complete_response_letter refuses?_to_approve denie[sd]_approval"),
          negatable=False),
    _rule("trial_success", 0.7, r"\bmeets?\s+(?:its\s+)?(?:primary|main)\s+(?:endpoint|goal)\b",
          r"\bpositive (?:results|data|topline)\b", r"\b(?:survival|efficacy) benefit\b"),
    _rule("trial_failure", -0.8, r"\b(?:fails?|failed)\s+to\s+meet\b", r"\bhalts?\s+(?:\w+\s+){0,3}trial\b",
          r"\bpatient deaths?\b", r"\btrial fail", negatable=False),
    # Legal, investigations, accidents
    _rule("lawsuit", -0.6, _words(r"lawsuits? sued sues suing class_action litigation verdict ordered_to_pay "
                                  r"settle(?:s|d)?_(?:charges|claims)"), negatable=False),
    _rule("fraud_penalty", -0.6, _words("fraud bribery kickbacks? penalty penalties fined? fines charges?_filed wrongfully "
                                        "misleading accused"), negatable=False),
    _rule("investigation", -0.6, _words("investigations? investigates? investigated probes? probed subpoena(?:s|ed)? inquiry"),
          negatable=False),
    _rule("recall", -0.7, r"\brecall(?:s|ed|ing)?\b", negatable=False),
    _rule("operational_failure", -0.6, _words(r"outages? breach(?:es)? strikes? grounds? grounded defects? defective faulty "
                                              r"spills? explosions? fatal accidents? crash(?:es)? contaminat\w* hazards? "
                                              r"injur(?:y|ies) deaths? halts?_production shutdowns? bankruptcy default(?:s|ed)?"),
          negatable=False),
    # Workforce and restructuring
    _rule("layoffs", -0.6, _words(r"lay(?:s|ing)?_off laid_off layoffs? job_cuts restructuring"),
          r"\bcut(?:s|ting)?\s+(?:[\d,]+\s+)?jobs\b", r"\bcut(?:s|ting)?\s+(?:\d+% of )?(?:its )?(?:staff|workforce|headcount)\b",
          r"\bclos(?:e|es|ing)\s+(?:[\d,]+\s+)?(?:stores|plants?|factories|branches)\b", negatable=False),
    _rule("dilution", -0.6, r"\b(?:dilutive|dilution)\b", negatable=False),
    # Market-move verbs: the reaction, weaker than the fact
    _rule("move_up", 0.5, _words(r"surges? surged soars? soared jumps? jumped rall(?:y|ies|ied) climbs? climbed gains? gained "
                                 r"rises? rose spikes? leaps? skyrockets? accelerates? expands? widen doubles? doubled "
                                 r"improves? improving rebounds? recover recovers")),
    _rule("move_down", -0.5, _words(r"plunges? plunged plummets? plummeted tumbles? tumbled sinks? sank sunk slumps? slumped "
                                    r"slides? slid craters? cratered falls? fell drops? dropped declines? declined "
                                    r"collapses? collapsed slows? slowed slowing weakens? weakening weaker weak erodes? "
                                    r"squeeze slowdown stalls? loses? lost shortfall glut pull_back shrinks? deepens weighs?")),
)

#: Scheduling, filings, appointments: routine announcements that carry no sentiment by themselves.
ROUTINE = re.compile(
    r"\b(?:to (?:report|present|host|hold|announce|release|webcast|participate|unveil)|schedules?|sets date|"
    r"files?|filed|10-[kq]|8-k|form 10|proxy|names|appoints?|elects?|regular (?:quarterly )?(?:cash )?dividend|"
    r"declares?|conference|annual meeting|shareholder meeting|investor day|analyst day|r&d day|opens?|launch(?:es)?|"
    r"announces|publishes|completes|releases|updates|renews|adds|rename)\b"
)

RULE_DISPATCH = PrefixDispatch([rule.pattern for rule in RULES])
_ROUTINE_DISPATCH = PrefixDispatch([ROUTINE])
_WORD = re.compile(r"[a-z']+")


def _negated(text: str, start: int) -> bool:
    before = _WORD.findall(text[max(0, start - 40):start])
    return any(word in NEGATORS for word in before[-NEGATION_WINDOW:])


def phrase_matches(text: str) -> list[tuple[str, float]]:
    """``(rule name, signed weight)`` for each rule matching lower-cased ``text``, negation applied.

    A later rule whose match overlaps an earlier rule's match of the same sign is not counted
    again ("beats estimates" is one beat, not a beat and a "beat").
    """
    taken: list[tuple[int, int, float]] = []
    matches: list[tuple[str, float]] = []
    for rule, found in zip(RULES, RULE_DISPATCH.matches(text), strict=True):
        for m in found:
            weight = -rule.weight if rule.negatable and _negated(text, m.start()) else rule.weight
            if any(m.start() < end and start < m.end() and (w > 0) == (weight > 0) for start, end, w in taken):
                continue
            taken.append((m.start(), m.end(), weight))
            matches.append((rule.name, weight))
    return matches


def phrase_score(text: str) -> float:
    """Clipped sum of the phrase weights in lower-cased ``text``, in [-1, 1]."""
    total = sum(weight for _, weight in phrase_matches(text))
    return max(-1.0, min(1.0, total))


def is_routine(text: str) -> bool:
    """True when lower-cased ``text`` reads like a routine announcement (schedule, filing, appointment)."""
    return bool(_ROUTINE_DISPATCH.matches(text)[0])
