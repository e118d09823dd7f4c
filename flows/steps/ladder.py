"""Scale in a sweep: repetition-matched proxies and proxy ladders, as plain steps.

Repetition. With `space.target_tokens` (and `proxy.match_repetition` not false) every proxy reads a subset of
each domain sized so that the domain repeats as often as in the target run (`trainers.data.subsets`).
`repetition_target` checks the settings; `epoch_params` is what each run logs (`epochs.proxy.<domain>`,
`epochs.target.<domain>`).

Ladders (`proxy.scales`: 2-4 scales, smallest first). The design rule:

1. every candidate of every round trains at the smallest scale (the search is there, where runs are cheap);
2. after the last round, each larger scale k trains `counts[k]` of the mixtures that finished at scale k - 1:
   the best half (ceil(n / 2), by the objective at scale k - 1; tag `scale.why=best<i>`) and, for the rest, a
   spread: repeatedly the mixture farthest (L1, shares) from every one already chosen (`scale.why=spread`).
   The best carry the decision (is the winner still the winner when it grows?); the spread lets the
   scale-aware surrogate see how the ranking moves with scale away from the winners, not only among them;
3. `counts[k]` is half of scale k - 1's, at least 3 (the largest scale's ranking is the held-out CV, which
   needs 3 runs), never more than scale k - 1 trained; with `proxy.compute_budget` (FLOPs, 6 N D per run) the
   budget left after the smallest scale (and the confirmation, which runs at the largest scale) is shared
   among the larger scales in turn, each taking what its share affords (at most scale k - 1's count), the
   rest rolling on to the next. A budget that cannot afford 3 runs at a scale is refused before training;
4. the proposal: a surrogate of (mixture, scale) chosen by holding out the largest scale
   (`mixture_search.surrogates.scale`), optimised at the target's scale (`target.params`,
   `space.target_tokens`); the confirmation trains at the largest proxy scale.

Without `proxy.scales` none of this runs and every key is what it was.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from flows.steps.report import rank
from flows.steps.spec import SpecError, SweepSpec
from flows.trials.result import TrialResult
from mixture_search.catalog import DomainCatalog
from mixture_search.errors import MixSweepError
from mixture_search.mixture import Mixture
from mixture_search.proposal import TrustRegion, propose
from mixture_search.space import SearchSpace
from mixture_search.surrogates import SURROGATES
from mixture_search.surrogates.scale import (
    LargestScaleSurrogate,
    Scale,
    choose_by_largest_scale,
    holdout_largest_scale,
    is_scale_aware_name,
)
from mixture_search.units import format_count, parse_count
from trainers.budget import TrainBudget
from trainers.config import ProxyConfig
from trainers.data.subsets import epoch_params as subset_epoch_params
from trainers.data.subsets import repetition_plan
from trainers.errors import ConfigError
from trainers.presets import PRESETS, preset

#: the MLflow stage of a run at a larger scale of the ladder (not a trial: its own key, never a candidate)
SCALE_STAGE = "scale"
#: the largest scale's ranking is the held-out CV: it needs this many runs, and so does every larger scale
MIN_PER_SCALE = 3


# -- repetition ------------------------------------------------------------------------------------


def repetition_target(spec: SweepSpec) -> int | None:
    """The target's tokens when proxies are repetition-matched (`proxy.match_repetition`, on by default with
    `space.target_tokens`), else None."""
    match = spec.proxy.match_repetition
    target = spec.space.target_tokens
    if match is None:
        match = target is not None
    if not match:
        return None
    if target is None:
        raise SpecError(
            "matching the target's repetition needs space.target_tokens (the run it matches)",
            where="proxy.match_repetition",
        )
    return parse_count(target, field="space.target_tokens")


def run_tokens(proxy: ProxyConfig, budget: TrainBudget) -> int:
    """Tokens a proxy trains on: whole steps of `global_batch` sequences."""
    return budget.total_steps(proxy.seq_len) * budget.global_batch * proxy.seq_len


def epoch_params(
    catalog: DomainCatalog, mixture: Mixture, proxy: ProxyConfig, budget: TrainBudget, target_tokens: int
) -> dict[str, dict[str, float]]:
    """Each drawn domain's epochs in the proxy (over its subset) and in the target run (over the corpus)."""
    tokens = {d: int(t or 0) for d, t in catalog.tokens("domain").items()}
    shares = dict(zip(mixture.names, mixture.normalized))
    plan = repetition_plan(
        tokens, shares, seq_len=proxy.seq_len, proxy_tokens=run_tokens(proxy, budget), target_tokens=target_tokens
    )
    return subset_epoch_params(plan)


# -- the ladder ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Rung:
    """One scale of the ladder: its proxy and budget, and what they amount to."""

    index: int
    proxy: ProxyConfig
    budget: TrainBudget
    params: int
    tokens: int

    @property
    def flops(self) -> float:
        """Training FLOPs of one run (the trainers' own count per token, about 6 N)."""
        return float(self.proxy.flops_per_token()) * self.tokens

    @property
    def scale(self) -> Scale:
        return Scale(float(self.params), float(self.tokens))

    def params_dict(self) -> dict[str, Any]:
        """What a run at this scale logs: `scale.index`, `scale.params`, `scale.tokens`."""
        return {"index": self.index, "params": self.params, "tokens": self.tokens}


@dataclass(frozen=True)
class Ladder:
    rungs: tuple[Rung, ...]
    target: Scale
    counts: tuple[int, ...]  # planned runs per scale (the smallest: every trial)
    compute_budget: float | None

    @property
    def largest(self) -> Rung:
        return self.rungs[-1]

    def planned_flops(self, confirm_runs: int) -> float:
        return sum(n * r.flops for n, r in zip(self.counts, self.rungs)) + confirm_runs * self.largest.flops

    def to_dict(self, confirm_runs: int = 0) -> dict[str, Any]:
        return {
            "scales": [
                {**r.params_dict(), "flops_per_run": r.flops, "runs": n} for r, n in zip(self.rungs, self.counts)
            ],
            "target": {"params": self.target.params, "tokens": self.target.tokens},
            "compute_budget": self.compute_budget,
            "planned_flops": self.planned_flops(confirm_runs),
        }


def _rung(spec: SweepSpec, k: int, vocab: int) -> Rung:
    entry = spec.proxy.scales[k] if spec.proxy.scales else None
    assert entry is not None
    where = f"proxy.scales[{k}]"
    name = entry.preset or spec.proxy.preset
    if name not in PRESETS:
        raise SpecError(f"unknown preset {name!r} (known: {', '.join(PRESETS)})", where=f"{where}.preset")
    overrides = (
        {**spec.proxy.overrides, **entry.overrides} if entry.preset in (None, spec.proxy.preset) else entry.overrides
    )
    try:
        proxy = preset(name, **overrides).resolve_vocab(vocab)
    except (ConfigError, TypeError) as exc:
        raise SpecError(f"{' '.join(str(exc).split())}", where=f"{where}.overrides") from None
    try:
        budget = spec.budget.replace(**entry.budget) if entry.budget else spec.budget
    except ConfigError as exc:
        raise SpecError(str(exc).replace("budget.", f"{where}.budget.", 1), where=None) from None
    except TypeError as exc:
        raise SpecError(" ".join(str(exc).split()), where=f"{where}.budget") from None
    return Rung(k, proxy, budget, int(proxy.param_counts().total), run_tokens(proxy, budget))


def build_ladder(spec: SweepSpec, vocab: int) -> Ladder | None:
    """The ladder of `proxy.scales` checked against itself and the target (one line naming the field), with
    the runs planned at each scale; None without scales."""
    if spec.proxy.scales is None:
        return None
    rungs = tuple(_rung(spec, k, vocab) for k in range(len(spec.proxy.scales)))
    for prev, r in itertools.pairwise(rungs):
        if r.params < prev.params or r.tokens < prev.tokens or r.flops <= prev.flops:
            raise SpecError(
                f"scale {r.index} ({format_count(r.params)} params, {format_count(r.tokens)} tokens) does not grow "
                f"from scale {prev.index} ({format_count(prev.params)}, {format_count(prev.tokens)}): list scales "
                "smallest first, each larger in params or tokens and smaller in neither",
                where=f"proxy.scales[{r.index}]",
            )
    if spec.target.params is None:
        raise SpecError("a ladder predicts at the target's scale: give the target's parameters", where="target.params")
    if spec.space.target_tokens is None:
        raise SpecError(
            "a ladder predicts at the target's scale: give the target's tokens", where="space.target_tokens"
        )
    target = Scale(
        float(parse_count(spec.target.params, field="target.params")),
        float(parse_count(spec.space.target_tokens, field="space.target_tokens")),
    )
    top = rungs[-1]
    for axis, where, value, proxy_value in (
        ("params", "target.params", target.params, top.params),
        ("tokens", "space.target_tokens", target.tokens, top.tokens),
    ):
        if value < proxy_value:
            raise SpecError(
                f"the target's {format_count(value)} {axis} are fewer than the largest proxy's "
                f"{format_count(proxy_value)} (scale {top.index})",
                where=where,
            )
    budget = None if spec.proxy.compute_budget is None else float(parse_count(spec.proxy.compute_budget, field="x"))
    counts = plan_counts(rungs, spec.search.rounds * spec.search.per_round, budget, confirm_runs(spec))
    return Ladder(rungs, target, counts, budget)


def confirm_runs(spec: SweepSpec) -> int:
    return 2 * spec.confirm.seeds if spec.confirm.enabled else 0


def plan_counts(rungs: Sequence[Rung], first: int, budget: float | None, confirm: int = 0) -> tuple[int, ...]:
    """Runs per scale by the design rule (module docstring, 3.), from `first` trials at the smallest scale."""
    counts = [first]
    if budget is None:
        for _ in rungs[1:]:
            counts.append(min(counts[-1], max(MIN_PER_SCALE, math.ceil(counts[-1] / 2))))
    else:
        left = budget - first * rungs[0].flops - confirm * rungs[-1].flops
        if left < 0:
            raise SpecError(
                f"{budget:.3g} FLOPs do not cover the smallest scale's {first} trials "
                f"({first * rungs[0].flops:.3g}) and the confirmation",
                where="proxy.compute_budget",
            )
        for k, r in enumerate(rungs[1:], start=1):
            share = left / (len(rungs) - k)
            n = min(counts[-1], int(share // r.flops))
            if n < MIN_PER_SCALE:
                raise SpecError(
                    f"{budget:.3g} FLOPs afford {n} runs at scale {k} ({r.flops:.3g} FLOPs each); a larger "
                    f"scale needs {MIN_PER_SCALE} (raise the budget, or shrink scale {k})",
                    where="proxy.compute_budget",
                )
            counts.append(n)
            left -= n * r.flops
    if counts[0] < MIN_PER_SCALE:
        raise SpecError(
            f"a ladder needs {MIN_PER_SCALE} trials at the smallest scale, the search has {counts[0]}",
            where="search.per_round",
        )
    return tuple(counts)


def thin_largest_scale(ladder: Ladder, domains: int) -> str | None:
    """Advice when the largest scale trains fewer runs than there are domain shares (and the scale below
    could give it more), else None. Checked by training (README, "With a proxy ladder"): on the demo corpus's
    technical objective the ladder's model ranked a 4x target's mixtures with Spearman 0.86 from 6 runs at
    the largest scale for 8 domains, and 1.00 from 12. Needed, not enough: on the all-domain objective,
    where the proxies barely separate the mixtures, 12 runs gave 0.74."""
    want = min(domains, ladder.counts[-2])
    n = ladder.counts[-1]
    if n >= want:
        return None
    return (
        f"the largest scale trains {n} runs for {domains} domain shares: the ladder's model of (mixture, scale) "
        f"is then at its weakest; give it at least {want} with proxy.compute_budget (README, 'With a proxy ladder')"
    )


def describe(
    ladder: Ladder | None, repetition: int | None, confirm: int = 0, domains: int = 0
) -> list[tuple[str, str]]:
    """Rows for `mixsweep sweep --dry-run`: the ladder's scales and runs (with `thin_largest_scale`'s advice
    for `domains` domains), and the repetition matching."""
    rows = []
    if ladder is not None:
        scales = "; ".join(
            f"{r.index}: {r.proxy.name} {format_count(r.params)} params x {format_count(r.tokens)} tokens, {n} runs"
            for r, n in zip(ladder.rungs, ladder.counts)
        )
        rows.append(
            (
                "ladder",
                f"{scales}; proposal at {format_count(ladder.target.params)} params x "
                f"{format_count(ladder.target.tokens)} tokens; {ladder.planned_flops(confirm):.3g} FLOPs planned",
            )
        )
        advice = thin_largest_scale(ladder, domains)
        if advice is not None:
            rows.append(("ladder advice", advice))
    if repetition is not None:
        rows.append(
            ("repetition", f"each domain read from a subset that repeats it as in {format_count(repetition)} tokens")
        )
    return rows


# -- which mixtures climb --------------------------------------------------------------------------


@dataclass(frozen=True)
class Pick:
    """A mixture chosen for a larger scale, with why (`best<i>` or `spread`)."""

    trial: TrialResult
    why: str


def choose(results: Sequence[TrialResult], n: int, domains: Sequence[str], *, maximize: bool) -> list[Pick]:
    """The design rule's picks among the finished `results` of the previous scale: the best ceil(n / 2),
    then a farthest-point spread (L1 over the shares) for the rest."""
    ranked = [r for r in rank(results, maximize=maximize) if r.ok]
    unique: list[TrialResult] = []
    seen: set[str] = set()
    for r in ranked:  # one run per mixture (a mixture may have trained twice, with another seed)
        if r.mixture.key not in seen:
            seen.add(r.mixture.key)
            unique.append(r)
    n = min(n, len(unique))
    best = math.ceil(n / 2)
    picks = [Pick(r, f"best{i}") for i, r in enumerate(unique[:best], start=1)]
    X = np.array([[r.mixture.share(d) for d in domains] for r in unique])
    chosen = list(range(best))
    left = list(range(best, len(unique)))
    while len(picks) < n and left:
        dist = np.abs(X[left][:, None, :] - X[chosen][None, :, :]).sum(axis=2).min(axis=1)
        j = left[int(np.argmax(dist))]  # ties: the better-ranked (left is in rank order)
        picks.append(Pick(unique[j], "spread"))
        chosen.append(j)
        left.remove(j)
    return picks


# -- results per scale -----------------------------------------------------------------------------


@dataclass
class LadderResults:
    """What every scale of the ladder trained: `by_scale[k]` the finished and failed runs at scale k (the
    smallest: the sweep's trials, as observed), `why` the design rule's reason per run key."""

    ladder: Ladder
    by_scale: list[list[TrialResult]]
    why: dict[str, str] = field(default_factory=dict)

    def observations(self, domains: Sequence[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(X shares, y objectives, S (n, 2) params and tokens) over every finished run of every scale."""
        rows, ys, scales = [], [], []
        for k, runs in enumerate(self.by_scale):
            for r in runs:
                if r.ok:
                    rows.append([r.mixture.share(d) for d in domains])
                    ys.append(float(r.objective or 0.0))
                    scales.append([self.ladder.rungs[k].params, self.ladder.rungs[k].tokens])
        return np.array(rows, dtype=float), np.array(ys, dtype=float), np.array(scales, dtype=float).reshape(-1, 2)

    @property
    def unusable(self) -> str | None:
        """Why the runs cannot support a proposal at the target's scale (None: they can): the largest
        scale's ranking is the held-out CV, so it needs MIN_PER_SCALE finished runs."""
        done = sum(r.ok for r in self.by_scale[-1])
        if len(self.by_scale) < 2 or done < MIN_PER_SCALE:
            return (
                f"{done} runs finished at the largest scale, {MIN_PER_SCALE} are needed to propose at the target's "
                "scale: proposed from the smallest scale's trials instead"
            )
        return None

    def rows(self, domains: Sequence[str], *, maximize: bool) -> list[dict[str, Any]]:
        """The ladder's leaderboard: one row per mixture, its objective at each scale (None: not trained
        there), ranked by the largest scale it reached, then by its objective there."""
        table: dict[str, dict[str, Any]] = {}
        reached: dict[str, tuple[int, float]] = {}
        for k, runs in enumerate(self.by_scale):
            for r in runs:
                row = table.setdefault(
                    r.mixture.key,
                    {"mixture": r.mixture.key[:8], **{f"scale{i}": None for i in range(len(self.by_scale))}},
                )
                if r.ok:
                    row[f"scale{k}"] = round(float(r.objective or 0.0), 5)
                    reached[r.mixture.key] = (k, float(r.objective or 0.0))
                if k > 0 and r.trial_key in self.why:
                    row[f"why{k}"] = self.why[r.trial_key]
                for d in domains:
                    row[d] = round(r.mixture.share(d), 4)
        sign = -1.0 if maximize else 1.0
        order = sorted(table, key=lambda m: (-reached.get(m, (-1, 0.0))[0], sign * reached.get(m, (0, math.inf))[1]))
        return [table[m] for m in order]


# -- the proposal at the target's scale ------------------------------------------------------------


def fit_scale_model(
    results: LadderResults, domains: Sequence[str], *, surrogate: str, seed: int
) -> tuple[Any, str, Any]:
    """(model of (mixture, scale), its name, its held-out-largest-scale CV) fitted on every scale's runs:
    `auto` chooses by holding out the largest scale; a named surrogate is scored that way and fitted (a
    scale-free one as `LargestScaleSurrogate`, which fits the largest scale's runs). `model.at(scale)`
    predicts at any scale. What the sweep's proposal optimises and `mixsweep validate` checks."""
    X, y, S = results.observations(domains)
    try:
        if surrogate == "auto":
            model, cvs, chosen = choose_by_largest_scale(X, y, S, seed=seed)
            return model, chosen, next(c for c in cvs if c.surrogate == chosen)
        base: Any = SURROGATES.build(surrogate, seed=seed)
        cv = holdout_largest_scale(base, X, y, S, seed=seed)[0]
        model = base if is_scale_aware_name(surrogate) else LargestScaleSurrogate(seed=seed, surrogate=surrogate)
        return model.fit(X, y, scales=S), surrogate, cv
    except MixSweepError as exc:
        raise SpecError(f"the ladder's runs do not support a proposal: {exc}", where="proxy.scales") from None


@dataclass(frozen=True)
class TargetProposal:
    mixture: Mixture
    summary: dict[str, Any]
    ranked: list[TrialResult]  # the largest scale's finished runs, best first


def propose_at_target(
    space: SearchSpace,
    domains: Sequence[str],
    results: LadderResults,
    *,
    surrogate: str,
    maximize: bool,
    seed: int,
    n_samples: int,
    trust_region: float | None,
    extrapolate: float | None,
    uncertainty: float,
) -> TargetProposal:
    """A surrogate of (mixture, scale), chosen (`auto`) or scored by holding out the largest scale, optimised
    at the target's scale inside a trust region around the largest scale's runs (objectives of different
    scales do not compare). The confirmation then trains at the largest proxy scale."""
    X, y, S = results.observations(domains)
    ladder = results.ladder
    top = results.by_scale[-1]
    ranked = [r for r in rank(top, maximize=maximize) if r.ok]
    model, chosen, cv = fit_scale_model(results, domains, surrogate=surrogate, seed=seed)
    last = (S[:, 0] == ladder.largest.params) & (S[:, 1] == ladder.largest.tokens)
    region = None
    if trust_region is not None or extrapolate is not None:
        region = TrustRegion.around(
            space, X[last], y[last], maximize=maximize, radius=trust_region, extrapolate=extrapolate
        )
    noise = cv.rmse if math.isfinite(cv.rmse) else None
    proposal = propose(
        model.at(ladder.target),
        space,
        n_samples=n_samples,
        seed=seed,
        maximize=maximize,
        noise_std=noise,
        region=region,
        uncertainty=uncertainty,
    )
    shares = np.array([[proposal.mixture.share(d) for d in domains]])
    at_largest = float(model.at(ladder.largest.scale).predict_mean(shares)[0])
    summary = {
        **proposal.to_dict(),
        "at": {"params": ladder.target.params, "tokens": ladder.target.tokens},
        "predicted_at_largest_proxy": at_largest,
        "surrogate": chosen,
        "cv_largest_scale": {
            k: v for k, v in dataclasses.asdict(cv).items() if not isinstance(v, float) or math.isfinite(v)
        },
    }
    return TargetProposal(proposal.mixture, summary, ranked)


__all__ = [
    "MIN_PER_SCALE",
    "SCALE_STAGE",
    "Ladder",
    "LadderResults",
    "Pick",
    "Rung",
    "TargetProposal",
    "build_ladder",
    "choose",
    "describe",
    "epoch_params",
    "fit_scale_model",
    "plan_counts",
    "propose_at_target",
    "repetition_target",
    "run_tokens",
    "thin_largest_scale",
]
