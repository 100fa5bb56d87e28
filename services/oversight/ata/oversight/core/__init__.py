"""The pure core of oversight: subjects and policy, prompts, the verdict schema, the rule-based reviewer, the engine.

No Kafka, Redis, HTTP or clock here: the shell performs provider calls between
:meth:`OversightEngine.observe` and :meth:`OversightEngine.reviewed`.
"""

from ata.oversight.core.engine import OversightEngine, ReviewOutcome, rule_limits
from ata.oversight.core.prompt import BEGIN_DATA, END_DATA, Prompt, PromptLimits, build_prompt, data_block
from ata.oversight.core.rules import RuleLimits, RuleReviewer
from ata.oversight.core.subjects import (
    Headline,
    RegimeView,
    ReviewPolicy,
    ReviewRequest,
    StrategySwitch,
    SubjectKind,
    kind_of,
)
from ata.oversight.core.verdict import Unusable, VerdictAnswer, check_bounds, parse_verdict

__all__ = [
    "BEGIN_DATA", "END_DATA", "Headline", "OversightEngine", "Prompt", "PromptLimits", "RegimeView", "ReviewOutcome",
    "ReviewPolicy", "ReviewRequest", "RuleLimits", "RuleReviewer", "StrategySwitch", "SubjectKind", "Unusable",
    "VerdictAnswer", "build_prompt", "check_bounds", "data_block", "kind_of", "parse_verdict", "rule_limits",
]
