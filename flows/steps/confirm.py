"""The confirmation stage of a sweep as plain steps: after the last round, train the proposal and the
best observed trial again with new seeds, at the proxy scale and budget, and export the better one.

Why: the best trial won a contest among many noisy trainings, so its objective is biased in its favour
(the winner's curse), and the proposal is a surrogate's extrapolation that was never trained. Training
both with the same fresh seeds compares them on equal terms, paired by seed (a seed fixes the
initialisation and data order for both, so most of the seed noise cancels in the difference).

- `plan_confirmation`: what to train (nothing when the proposal is the best trial's mixture, e.g. with
  fewer than 4 finished trials), each run keyed like a trial with its seed and `stage: confirm`, so a
  rerun finds it and it never takes a trial's place;
- `confirmation`: per seed the difference proposal - best trial, its mean and 95% Student-t interval
  over seeds, the mixture to export (the better mean) and a one-line verdict;
- `confirmation_markdown`: the report (a Prefect artifact).
"""

from __future__ import annotations

import statistics
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from flows.steps.prepare import Prepared
from flows.steps.validate_report import Stat
from flows.trials.result import TrialResult
from mixture_search.mixture import Mixture

CONFIRM_STAGE = "confirm"
Role = Literal["proposal", "best_trial"]
ROLES: tuple[Role, Role] = ("proposal", "best_trial")
Exported = Literal["proposal", "best_trial"]
Outcome = Literal["proposal", "best_trial", "noise", "skipped", "failed"]


@dataclass(frozen=True)
class ConfirmRun:
    """One confirmation training: a mixture (the proposal or the best trial's) with one new seed."""

    role: Role
    seed: int
    key: str
    mixture: Mixture


@dataclass(frozen=True)
class ConfirmPlan:
    """What the confirmation trains: `runs` (every role with every seed), or nothing and why (`skip`)."""

    proposal: Mixture
    best_trial: str  # the best observed trial's key
    seeds: tuple[int, ...]
    runs: tuple[ConfirmRun, ...] = ()
    skip: str | None = None


def confirm_seeds(prepared: Prepared) -> tuple[int, ...]:
    """`confirm.seeds` new training seeds: the ones after the trials' own (`budget.seed`), so none
    repeats a trial's training and the same spec always confirms with the same seeds."""
    first = prepared.budget.seed + 1
    return tuple(range(first, first + prepared.spec.confirm.seeds))


def plan_confirmation(prepared: Prepared, ranked: Sequence[TrialResult], proposal: Mixture) -> ConfirmPlan:
    """The runs that confirm `proposal` against the best of `ranked` (finished trials, best first)."""
    best = ranked[0]
    seeds = confirm_seeds(prepared)
    if proposal.key == best.mixture.key:
        return ConfirmPlan(
            proposal,
            best.trial_key,
            seeds,
            skip="the proposal is the best trial's mixture (e.g. too few trials for a surrogate): nothing to compare",
        )
    mixtures: dict[Role, Mixture] = {"proposal": proposal, "best_trial": best.mixture}
    runs = tuple(
        ConfirmRun(role, seed, prepared.trial_key(mixtures[role], seed=seed, stage=CONFIRM_STAGE), mixtures[role])
        for seed in seeds
        for role in ROLES
    )
    return ConfirmPlan(proposal, best.trial_key, seeds, runs)


@dataclass
class Confirmation:
    """The proposal against the best trial, trained again with the same new seeds.

    `diffs[i]` is proposal - best trial with `seeds[i]` (None when either run failed); `diff` their
    mean over the seeds where both finished (`pairs`), `lo`/`hi` its 95% Student-t interval (None with
    fewer than 2 pairs). `proposal_mean` and `best_mean` are over the same paired seeds. `exported` is
    the better mean (the proposal on a tie or when no pair finished); `verdict` says it in one line."""

    seeds: list[int]
    maximize: bool
    best_trial: str
    proposal: list[float | None] = field(default_factory=list)
    best: list[float | None] = field(default_factory=list)
    diffs: list[float | None] = field(default_factory=list)
    pairs: int = 0
    proposal_mean: float | None = None
    best_mean: float | None = None
    diff: float | None = None
    lo: float | None = None
    hi: float | None = None
    outcome: Outcome = "skipped"
    exported: Exported = "proposal"
    verdict: str = ""
    runs: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def confirmation(plan: ConfirmPlan, results: Mapping[str, TrialResult], *, maximize: bool) -> Confirmation:
    """The verdict of the confirmation runs in `results` (by key; missing ones count as failed)."""
    c = Confirmation(list(plan.seeds), maximize, plan.best_trial)
    if plan.skip is not None:
        c.verdict = f"confirmation skipped: {plan.skip}; exporting the proposal"
        return c
    by: dict[tuple[Role, int], TrialResult | None] = {(r.role, r.seed): results.get(r.key) for r in plan.runs}
    for r in plan.runs:
        res = by[(r.role, r.seed)]
        c.runs.append(
            {
                "role": r.role,
                "seed": r.seed,
                "trial_key": r.key,
                "run_id": res.run_id if res else None,
                "status": res.status if res else "missing",
                "objective": res.objective if res and res.ok else None,
                "error": res.error if res else "no result",
            }
        )
    pairs: list[tuple[float, float]] = []
    for seed in plan.seeds:
        p, b = (_objective(by.get((role, seed))) for role in ROLES)
        c.proposal.append(p)
        c.best.append(b)
        c.diffs.append(p - b if p is not None and b is not None else None)
        if p is not None and b is not None:
            pairs.append((p, b))
    c.pairs = len(pairs)
    if not pairs:
        c.outcome = "failed"
        c.verdict = f"confirmation failed: no seed of {len(plan.seeds)} has both runs finished; exporting the proposal"
        return c
    diffs = [p - b for p, b in pairs]
    c.proposal_mean = statistics.fmean(p for p, _ in pairs)
    c.best_mean = statistics.fmean(b for _, b in pairs)
    c.diff = statistics.fmean(diffs)
    c.lo, c.hi = t_interval(diffs)
    c.outcome, c.exported, c.verdict = _verdict(c)
    return c


def t_interval(values: Sequence[float]) -> tuple[float | None, float | None]:
    """The 95% Student-t interval of the mean of `values` (None, None with fewer than 2 values)."""
    stat = Stat.of(values)
    return (stat.low, stat.high) if stat is not None and stat.n >= 2 else (None, None)


def _objective(result: TrialResult | None) -> float | None:
    return result.objective if result is not None and result.ok else None


def _verdict(c: Confirmation) -> tuple[Outcome, Exported, str]:
    assert c.diff is not None and c.proposal_mean is not None and c.best_mean is not None
    proposal_better = c.diff > 0 if c.maximize else c.diff < 0
    exported: Exported = "best_trial" if c.diff != 0 and not proposal_better else "proposal"
    direction = "higher" if c.maximize else "lower"
    seeds = f"{c.pairs} seed{'s' if c.pairs != 1 else ''}"
    if c.lo is None or c.hi is None:
        figures = f"proposal - best = {c.diff:+.4g} with {seeds}, no interval from one seed; {direction} is better"
    else:
        figures = f"proposal - best = {c.diff:+.4g}, 95% interval [{c.lo:+.4g}, {c.hi:+.4g}] over {seeds}; {direction} is better"
    what = "exporting the proposal" if exported == "proposal" else "exporting the best trial"
    if c.lo is not None and c.hi is not None and c.lo <= 0 <= c.hi:
        return "noise", exported, f"within noise ({figures}): {what}, the better mean"
    if exported == "proposal":
        return "proposal", exported, f"the proposal beats the best trial ({figures}): {what}"
    return "best_trial", exported, f"the best trial beats the proposal: {what} ({figures})"


def confirmation_markdown(c: Confirmation, *, sweep: str, objective: str) -> str:
    """The confirmation as a markdown report: per seed both objectives and their difference, the means,
    the interval and the verdict."""
    lines = [f"# Confirmation of `{sweep}`", "", f"**{c.verdict}**", ""]
    if c.outcome == "skipped":
        return "\n".join(lines)
    direction = "higher" if c.maximize else "lower"
    lines += [
        f"The proposal and the best trial (`{c.best_trial[:8]}`) trained again with {len(c.seeds)} new "
        f"seed(s), at the sweep's proxy scale and budget; objective `{objective}` ({direction} is better).",
        "",
        "| seed | proposal | best trial | proposal - best |",
        "|---|---|---|---|",
    ]
    for seed, p, b, d in zip(c.seeds, c.proposal, c.best, c.diffs):
        lines.append(f"| {seed} | {_fmt(p)} | {_fmt(b)} | {_fmt(d, sign=True)} |")
    lines.append(
        f"| **mean** ({c.pairs} paired) | {_fmt(c.proposal_mean)} | {_fmt(c.best_mean)} | {_fmt(c.diff, sign=True)} |"
    )
    interval = (
        f"[{_fmt(c.lo, sign=True)}, {_fmt(c.hi, sign=True)}]"
        if c.lo is not None
        else "none (one seed: no estimate of the noise)"
    )
    lines += ["", f"95% Student-t interval of the mean difference: {interval}.", ""]
    lines.append(f"Exported: the {'proposal' if c.exported == 'proposal' else 'best trial'}.")
    failed = [r for r in c.runs if r["objective"] is None]
    if failed:
        lines += [
            "",
            "Runs without an objective: " + "; ".join(f"{r['role']} seed {r['seed']}: {r['error']}" for r in failed),
        ]
    return "\n".join(lines) + "\n"


def _fmt(value: float | None, *, sign: bool = False) -> str:
    if value is None:
        return "-"
    return f"{value:+.4f}" if sign else f"{value:.4f}"


__all__ = [
    "CONFIRM_STAGE",
    "ConfirmPlan",
    "ConfirmRun",
    "Confirmation",
    "confirm_seeds",
    "confirmation",
    "confirmation_markdown",
    "plan_confirmation",
    "t_interval",
]
