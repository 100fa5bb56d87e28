"""The verdict a reviewer must answer with, and its validation.

The answer is one JSON object (:class:`VerdictAnswer`); anything else is *unreviewed*:
text that is not JSON, extra or missing fields, a value out of range, or a verdict out of
the subject's bounds. Bounds:

- ``modify`` exists only for target proposals and must carry ``max_target_weight`` with
  ``0 <= max_target_weight <= |proposed weight|``: a reviewer may shrink a decision, never
  enlarge, flip or originate one;
- every other verdict must leave ``max_target_weight`` null.

:func:`parse_verdict` never raises on bad input; it returns :class:`Unusable` with the
reason, and the caller falls back (an unreviewed answer is never executed).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Annotated, Any, Literal

import orjson
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError

from ata.oversight.core.subjects import ReviewRequest

FLAG_PATTERN = r"^[a-z0-9_]{1,64}$"
Flag = Annotated[str, StringConstraints(pattern=FLAG_PATTERN)]
MAX_RATIONALE_CHARS = 2000
#: A model may wrap its JSON in a Markdown fence; only a fence around the whole answer is accepted.
_FENCE = re.compile(r"^```(?:json)?\s*\n?(?P<body>.*?)\n?```$", re.DOTALL)


class VerdictAnswer(BaseModel):
    """The JSON object every reviewer answers with (its schema is quoted in the prompt)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    verdict: Literal["approve", "reject", "modify", "escalate"]
    rationale: str = Field(min_length=1, max_length=MAX_RATIONALE_CHARS)
    confidence: float = Field(ge=0.0, le=1.0, allow_inf_nan=False)
    risk_flags: tuple[Flag, ...] = Field(default=(), max_length=10)
    max_target_weight: float | None = Field(default=None, ge=0.0, allow_inf_nan=False)


@dataclass(frozen=True, slots=True)
class Unusable:
    """Why an answer counts as unreviewed: ``malformed`` (not the schema) or ``out_of_bounds``."""

    kind: Literal["malformed", "out_of_bounds"]
    detail: str


def answer_schema() -> dict[str, Any]:
    """The JSON Schema of :class:`VerdictAnswer`, as quoted to the model."""
    return VerdictAnswer.model_json_schema()


def parse_verdict(text: str, request: ReviewRequest) -> VerdictAnswer | Unusable:
    """Validate a reviewer's raw answer against the schema and the subject's bounds."""
    body = text.strip()
    fenced = _FENCE.match(body)
    if fenced is not None:
        body = fenced.group("body").strip()
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        return Unusable("malformed", f"not JSON: {exc}"[:300])
    if not isinstance(data, dict):
        return Unusable("malformed", f"expected a JSON object, got {type(data).__name__}")
    try:
        # Strict: "0.9" is not a number and "yes" not a verdict; JSON arrays still fill tuples.
        answer = VerdictAnswer.model_validate_json(body, strict=True)
    except ValidationError as exc:
        return Unusable("malformed", _short(exc))
    return check_bounds(answer, request)


def check_bounds(answer: VerdictAnswer, request: ReviewRequest) -> VerdictAnswer | Unusable:
    """``answer`` if it is within the subject's bounds (module docstring), else :class:`Unusable`."""
    bound = request.max_modify_weight
    if answer.verdict == "modify":
        if bound is None:
            return Unusable("out_of_bounds", f"modify is not allowed for a {request.kind.value}")
        if answer.max_target_weight is None:
            return Unusable("out_of_bounds", "modify without max_target_weight")
        if answer.max_target_weight > bound:
            return Unusable("out_of_bounds", f"max_target_weight {answer.max_target_weight} exceeds the proposed {bound}")
    elif answer.max_target_weight is not None:
        return Unusable("out_of_bounds", f"max_target_weight given with verdict {answer.verdict}")
    return answer


def _short(exc: ValidationError) -> str:
    parts = [f"{'.'.join(str(p) for p in e['loc']) or 'answer'}: {e['msg']}" for e in exc.errors(include_url=False)]
    return "; ".join(parts)[:300]
