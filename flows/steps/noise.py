"""Does the sweep's proxy separate the mixtures? The spread of the trials' objectives set against the
spread between seeds of one mixture.

A proxy that barely learns decides nothing: when the trials differ about as much as two trainings of
one mixture with different seeds do, the ranking, the surrogate and the proposal rest on luck. A sweep
with a confirmation stage (or replicates) has trained some mixtures again with fresh seeds, so it can
say which case it is in:

- seed noise: the standard deviation of one run around its mixture's mean, pooled over the mixtures
  trained with several seeds (`pooled_std`): the confirmation's proposal and best trial over their new
  seeds (not the best trial's own run, which won a contest among noisy runs and so sits low), and each
  replicated mixture over its trial and replicate (conservative: that trial was a top one too);
- trial spread: the standard deviation of the finished trials' objectives, one seed each, so it holds
  the mixtures' effect and the seed noise (variances add); the mixtures' part is
  sqrt(max(spread^2 - noise^2, 0)), and below the seed noise the proxy barely separates the mixtures;
- the top: two runs of one seed each differ by seed noise alone with a standard deviation of
  sqrt(2) x noise, so a trial within 1.96 x that of the best one is not told apart from it (`band`):
  when any is, the top of the ranking is not resolved.

The noise of a sweep with the default 2 confirmation seeds rests on 2 degrees of freedom: a rough
figure (its 95% interval spans about 0.5x to 6x), and the verdict says how many it had. More seeds
(`confirm.seeds`, `search.replicates`) measure it better.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

from flows.steps.confirm import Confirmation
from flows.steps.replicates import SeedMeans, pooled_std
from flows.trials.result import TrialResult

#: a trial within this many standard deviations of a difference of two single-seed runs (sqrt(2) x the
#: seed noise) of the best trial is not told apart from it (a two-sided 95% band)
Z95 = 1.96
#: below this many degrees of freedom the noise is a rough figure (the 95% interval of a standard
#: deviation on 4 is 0.6x to 2.9x), and a verdict of separation says so
ROUGH_DOF = 5


@dataclass(frozen=True)
class Separation:
    """The trials' spread against the seed noise (see the module docstring). `ratio` is
    `signal_std / seed_std` (None when the noise is unmeasured or 0); `within_noise_of_best` counts
    the other trials within `band` of the best one; `level` is "well", "top_within_noise", "barely" or
    "unknown", and `verdict` the one line a user reads."""

    trials: int
    trial_std: float
    seed_std: float | None
    seed_runs: int
    seed_dof: int
    signal_std: float | None
    ratio: float | None
    band: float | None
    within_noise_of_best: int | None
    level: str
    verdict: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def separation(
    trials: Sequence[TrialResult],
    confirmed: Confirmation | None = None,
    means: SeedMeans | None = None,
    *,
    maximize: bool = False,
) -> Separation | None:
    """How well the sweep's proxies separate its mixtures (None with fewer than 2 finished trials)."""
    values = [float(t.objective) for t in trials if t.ok and t.objective is not None and math.isfinite(t.objective)]
    if len(values) < 2:
        return None
    groups = [g for g in _seed_groups(confirmed, means) if len(g) >= 2]
    trial_std = statistics.stdev(values)
    seed_std = pooled_std(groups)
    dof = sum(len(g) - 1 for g in groups)
    runs = sum(len(g) for g in groups)
    spread = f"the {len(values)} trials' objectives spread by {trial_std:.4g} (standard deviation)"
    if seed_std is None:
        verdict = (
            f"seed noise not measured ({spread}; no mixture trained with several seeds: turn on the "
            "confirmation or search.replicates to know whether the proxies separate the mixtures)"
        )
        return Separation(len(values), trial_std, None, 0, 0, None, None, None, None, "unknown", verdict)
    signal = math.sqrt(max(trial_std**2 - seed_std**2, 0.0))
    ratio = signal / seed_std if seed_std > 0 else None
    band = Z95 * math.sqrt(2.0) * seed_std
    best = max(values) if maximize else min(values)
    tied = sum(1 for v in values if abs(v - best) <= band) - 1
    noise = f"seeds of one mixture by {seed_std:.4g} (pooled over {runs} runs, {dof} degrees of freedom)"
    if ratio is not None and ratio < 1.0:
        level = "barely"
        verdict = (
            f"the proxies barely separate the mixtures ({ratio:.2g}x the seed noise): {spread}, {noise}; "
            "train them longer (budget.steps) or with more seeds (confirm.seeds, search.replicates) "
            "before trusting the ranking or the proposal"
        )
    elif tied > 0:
        level = "top_within_noise"
        verdict = (
            f"the top of the ranking is within seed noise: {tied} other trial{'s are' if tied > 1 else ' is'} "
            f"within {band:.4g} of the best, where seeds alone differ; {spread}, {noise}"
        )
    else:
        level = "well"
        verdict = f"the proxies separate the mixtures: no trial is within seed noise of the best; {spread}, {noise}"
        if dof < ROUGH_DOF:  # a small noise estimate can be luck too: say how far to trust it
            verdict += f" (a rough figure on {dof} degrees of freedom: more confirm.seeds measure the noise better)"
    return Separation(len(values), trial_std, seed_std, runs, dof, signal, ratio, band, tied, level, verdict)


def _seed_groups(confirmed: Confirmation | None, means: SeedMeans | None) -> list[list[float]]:
    """The objectives of each mixture trained with several seeds (see the module docstring)."""
    groups: list[list[float]] = []
    if confirmed is not None:
        for runs in (confirmed.proposal, confirmed.best):
            groups.append([v for v in runs if v is not None and math.isfinite(v)])
    if means is not None:
        groups.extend(list(means.objectives[k]) for k in means.replicated if k in means.objectives)
    return groups


__all__ = ["ROUGH_DOF", "Z95", "Separation", "separation"]
