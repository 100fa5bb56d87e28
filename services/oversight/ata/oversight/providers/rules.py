"""The rule-based reviewer behind the provider interface: reads the structured request, never the prompt text."""

from __future__ import annotations

from ata.oversight.core import Prompt, RuleReviewer
from ata.oversight.providers.base import Completion


class RuleProvider:
    name = "rules"
    model = "rules-v1"
    remote = False

    def __init__(self, reviewer: RuleReviewer) -> None:
        self.reviewer = reviewer

    async def complete(self, prompt: Prompt, *, timeout_s: float) -> Completion:
        answer = self.reviewer.review(prompt.request)
        return Completion(text=answer.model_dump_json(), model=self.model)

    async def aclose(self) -> None:
        """Nothing to release."""
