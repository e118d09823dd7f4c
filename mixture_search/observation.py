"""What a finished trial tells a sampler: the mixture it ran, its objective and its metrics."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field

from mixture_search.mixture import Mixture


@dataclass(frozen=True)
class Observation:
    """One finished run. `objective` None (or NaN) marks a failed run: it is never suggested again
    but is left out of every model. Lower is better unless the sampler was built with maximize=True."""

    mixture: Mixture
    objective: float | None
    metrics: Mapping[str, float] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.objective is not None and math.isfinite(self.objective)
