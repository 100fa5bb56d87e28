"""An optimiser plugin: equal weight on every symbol that may be held, each capped at ``cap``."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import numpy.typing as npt

from ata.quant.portfolio.constraints import Constraints, project
from ata.quant.portfolio.optimisers import OptimisationResult


@dataclass(frozen=True)
class CappedEqual:
    name: ClassVar[str] = "example_capped_equal"
    cap: float = 0.3

    def weights(
        self,
        cov: npt.ArrayLike,
        expected: npt.ArrayLike | None = None,
        previous: npt.ArrayLike | None = None,
        constraints: Constraints | None = None,
    ) -> OptimisationResult:
        n = np.shape(cov)[0]
        cons = constraints or Constraints.long_only_portfolio(n)
        w, _ = project(np.minimum(np.full(n, 1.0 / n), self.cap), cons)
        return OptimisationResult(w, not cons.violations(w), self.name, {"cap": self.cap})
