"""The rule-based reviewer behind the provider interface: reads the structured request, never the prompt text."""

from __future__ import annotations

from ata.oversight.core import Prompt, ReviewRequest, RuleReviewer, VerdictAnswer, check_bounds
from ata.oversight.providers.base import Completion


class RuleProvider:
    name = "rules"
    model = "rules-v1"
    remote = False

    def __init__(self, reviewer: RuleReviewer) -> None:
        self.reviewer = reviewer

    def verdict(self, request: ReviewRequest) -> tuple[VerdictAnswer, str]:
        """The verdict on ``request`` and its JSON text (the text :meth:`complete` answers with). The rules
        answer within the subject's bounds by construction."""
        answer = self.reviewer.review(request)
        assert check_bounds(answer, request) is answer, answer
        return answer, answer.model_dump_json()

    async def complete(self, prompt: Prompt, *, timeout_s: float) -> Completion:
        return Completion(text=self.verdict(prompt.request)[1], model=self.model)

    async def aclose(self) -> None:
        """Nothing to release."""
