"""Noise-aware ranking as plain steps: after the last round the top `search.replicates` trials train
again with a new seed, and every mixture is then judged by its mean over its seeds.

Why: a trial's objective is one draw of a noisy training (the seed sets initialisation and data
order), and the top of a leaderboard is where that noise flatters most (the winner's curse). Training
the top trials again averages the luck out where it decides the ranking, the surrogate and the proposal
see the means, and the spread between seeds measures the run noise instead of guessing it from the
surrogate's cross-validation.

- `plan_replicates`: the top trials by objective, each with the replicate seed, keyed like a trial with
  that seed and `stage: replicate` (a rerun finds them and they never take a trial's place);
- `seed_means`: one observation per mixture (the trial with the mean objective and metrics over its
  seeds), the objectives per seed, and the pooled seed standard deviation.
"""

from __future__ import annotations

import dataclasses
import math
import statistics
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from flows.steps.prepare import Prepared
from flows.steps.report import rank
from flows.trials.result import TrialResult
from mixture_search.mixture import Mixture

REPLICATE_STAGE = "replicate"
#: the replicate seed is `budget.seed` + this: far past the confirmation's seeds (`budget.seed` + 1, + 2,
#: ...), and independent of their number, so changing `confirm.seeds` keeps the replicates' keys
REPLICATE_SEED_OFFSET = 1000


@dataclass(frozen=True)
class ReplicateRun:
    """One replicate training: the mixture of a top trial (`trial`, its key) with the replicate seed."""

    trial: str
    role: str  # its place in the trials' ranking ("top1", ...): the MLflow run's name and sampler tag
    seed: int
    key: str
    mixture: Mixture


def replicate_seed(prepared: Prepared) -> int:
    """The seed every replicate trains with (one for all, so the replicated mixtures are paired)."""
    return prepared.budget.seed + REPLICATE_SEED_OFFSET


def plan_replicates(prepared: Prepared, trials: Sequence[TrialResult]) -> tuple[ReplicateRun, ...]:
    """The top `search.replicates` finished trials (fewer when fewer finished), best first."""
    spec = prepared.spec
    top = rank([t for t in trials if t.ok], maximize=spec.objective.maximize)[: spec.search.replicates]
    seed = replicate_seed(prepared)
    return tuple(
        ReplicateRun(
            t.trial_key, f"top{i}", seed, prepared.trial_key(t.mixture, seed=seed, stage=REPLICATE_STAGE), t.mixture
        )
        for i, t in enumerate(top, start=1)
    )


@dataclass(frozen=True)
class SeedMeans:
    """The trials as one observation per mixture.

    `results` are the trials in their order, a finished one with `objective` and `metrics` the means
    over its seeds (the trial itself, unchanged, when only it finished); `objectives` the objective of
    each finished trial's mixture per seed (the trial's first); `seed_std` the standard deviation of
    one run around its mixture's mean, pooled over the mixtures with at least 2 seeds (None without
    any); `replicated` the trials whose mixture trained again; `failed` the replicate runs without an
    objective (key -> why)."""

    results: list[TrialResult]
    objectives: dict[str, list[float]]
    seed_std: float | None
    replicated: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """The summary's form: seeds per mixture (by trial key), the seed std, the mixtures replicated
        with their objective per seed and their mean, and the failed replicate runs."""
        return {
            "seed_std": self.seed_std,
            "seeds_per_mixture": {k: len(v) for k, v in self.objectives.items()},
            "replicated": list(self.replicated),
            "objectives": {k: self.objectives[k] for k in self.replicated if k in self.objectives},
            "means": {k: statistics.fmean(self.objectives[k]) for k in self.replicated if k in self.objectives},
            "failed": dict(self.failed),
        }


def seed_means(trials: Sequence[TrialResult], replicates: Iterable[TrialResult]) -> SeedMeans:
    """Trials and replicate runs (matched by mixture) as one observation per mixture (see `SeedMeans`).
    A replicate run of a mixture that no finished trial has is left out."""
    runs: dict[str, list[TrialResult]] = {}
    replicated: list[str] = []
    failed: dict[str, str] = {}
    by_mixture = {t.mixture.key: t for t in trials if t.ok}
    for rep in replicates:
        trial = by_mixture.get(rep.mixture.key)
        if trial is None:
            continue
        if trial.trial_key not in replicated:
            replicated.append(trial.trial_key)
        if rep.ok:
            runs.setdefault(trial.trial_key, []).append(rep)
        else:
            failed[rep.trial_key] = rep.error or rep.status
    results: list[TrialResult] = []
    objectives: dict[str, list[float]] = {}
    for t in trials:
        if not t.ok:
            results.append(t)
            continue
        seeds = [t, *runs.get(t.trial_key, [])]
        objectives[t.trial_key] = [float(s.objective or 0.0) for s in seeds]
        results.append(t if len(seeds) == 1 else _mean(t, seeds))
    return SeedMeans(results, objectives, pooled_std(objectives.values()), replicated, failed)


def pooled_std(groups: Iterable[Sequence[float]]) -> float | None:
    """sqrt(sum of squares around each group's mean / sum of (n - 1)) over the groups of at least 2
    values: the spread of one value around its group's mean (None without such a group)."""
    squares, dof = 0.0, 0
    for values in groups:
        if len(values) >= 2:
            mean = statistics.fmean(values)
            squares += math.fsum((v - mean) ** 2 for v in values)
            dof += len(values) - 1
    return math.sqrt(squares / dof) if dof else None


def _mean(trial: TrialResult, seeds: Sequence[TrialResult]) -> TrialResult:
    """`trial` with the objective and each metric averaged over `seeds` (a metric over the seeds that
    report it with a finite value)."""
    names = dict.fromkeys(k for s in seeds for k in s.metrics)
    metrics = {}
    for name in names:
        values = [s.metrics[name] for s in seeds if name in s.metrics and math.isfinite(s.metrics[name])]
        metrics[name] = statistics.fmean(values) if values else math.nan
    objective = statistics.fmean(float(s.objective or 0.0) for s in seeds)
    return dataclasses.replace(trial, objective=objective, metrics=metrics)


__all__ = [
    "REPLICATE_SEED_OFFSET",
    "REPLICATE_STAGE",
    "ReplicateRun",
    "SeedMeans",
    "plan_replicates",
    "pooled_std",
    "replicate_seed",
    "seed_means",
]
