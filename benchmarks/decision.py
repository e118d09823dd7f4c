"""The decision a sweep ends with: how far the recommended mixture is from the true optimum (issue 13, 6a).

Ground truth (`mixture_search.synthetic.MixingLawProblem`): per-domain losses follow the data mixing
law, for m = 4, 8 and 16 domains; log-normal token counts and a cap of 4 epochs of each domain in a
run of the corpus' size (the smallest domains get a few percent), as in `benchmarks/search.py`. Three
objectives per problem: the mean of the domain losses, one domain's loss, and a weighted pair
(0.7 / 0.3 of two domains), the domains drawn per problem. Their true optimum over the space comes
from the problem's own convex optimiser (SLSQP from 8 starts).

The runs are a sweep's first round: n = 8, 16 or 32 mixtures, the sweep's two anchors (natural and
uniform, `SearchSpace.anchor`) and then draws of the `dirichlet` sampler (token prior, seeded), each
measured once with the problem's run noise (0.01 shared by every domain of a run, 0.01 per domain).
The n = 8 and 16 runs are the first ones of the 32 (paired comparisons), and every method sees the
same runs (so `best_observed` is never worse than the measured natural or uniform run). The
per-domain losses are the objective's parts (for the mean and the pair; one domain's loss has none).

Methods, by regret = true objective of the mixture - true optimum (nats, lower is better):

- `recommendation`: what a sweep exports (the product): `mixture_search.recommend.recommend_mixture`'s
  proposal with its defaults, then the confirmation stage with its default of 2 seeds (the proposal
  and the best observed run measured again with 2 new noisy runs each; the better mean is exported);
- `proposal`: the proposal alone, before the confirmation;
- `regmix` (the named peer): RegMix's recipe, written out below: LightGBM regression of the objective
  on the shares (1000 rounds, learning rate 0.01; leaf size n // 10 clipped to [2, 20], because
  LightGBM's default of 20 predicts a constant below 40 runs), scored on mixtures drawn from the same
  Dirichlet prior and kept inside the caps, and the average of the 100 best predicted;
- `best_observed`: the run with the lowest measured objective;
- `natural`, `uniform`: the two anchors (`SearchSpace.anchor`: token shares, equal shares, in the space);
- `optimum`: the true optimum's own mixture through the same path (its regret must be 0).

Both proposal methods score 20,000 candidate mixtures (the product's default is 100,000) to keep a
full run near 25 minutes on one core. Nothing is cached between runs.

    nice -n 10 .venv/bin/python benchmarks/decision.py          # writes benchmarks/results/decision.{json,png}
    .venv/bin/python benchmarks/decision.py --quick             # seconds: a tiny grid, into runs/benchmarks/
    .venv/bin/python benchmarks/decision.py --from benchmarks/results/decision.json   # summaries again, no runs
"""

from __future__ import annotations

import argparse
import inspect
import json
import os
import platform
import subprocess
import sys
import time
import warnings
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from flows.steps.spec import ConfirmSpec
from flows.steps.validate_report import Stat
from mixture_search import SAMPLERS, SURROGATES, SearchSpace
from mixture_search.files import atomic_save, atomic_write_json
from mixture_search.recommend import recommend_mixture
from mixture_search.space import ANCHORS
from mixture_search.synthetic import MixingLawProblem

RESULTS = Path(__file__).parent / "results" / "decision.json"
QUICK_OUT = Path("runs") / "benchmarks" / "decision-quick.json"
OBJECTIVES = ("mean", "single", "pair")
PAIR = (0.7, 0.3)
TOP_K = 100  # RegMix averages the top 100 predicted mixtures
METHODS = ("recommendation", "proposal", "regmix", "best_observed", "natural", "uniform", "optimum")
COMPARED = ("regmix", "best_observed", "natural", "uniform")  # what the recommendation's win rates are against
GOAL_VS_REGMIX = 0.5  # mean regret at most half of RegMix's recipe's
GOAL_WIN_RATE = 0.9  # beats natural and uniform on at least 90% of problems
CONFIRM_SEEDS = ConfirmSpec().seeds  # the confirmation stage's default (`confirm.seeds`)


@dataclass(frozen=True)
class Grid:
    ms: tuple[int, ...] = (4, 8, 16)
    objectives: tuple[str, ...] = OBJECTIVES
    ns: tuple[int, ...] = (8, 16, 32)
    seeds: int = 20
    n_samples: int = 20_000

    def __post_init__(self) -> None:
        if any(m < 2 for m in self.ms):
            raise SystemExit("--ms: every problem needs at least 2 domains (the pair objective)")
        if any(o not in OBJECTIVES for o in self.objectives):
            raise SystemExit(f"--objectives: choose from {', '.join(OBJECTIVES)}")
        if any(n < 3 for n in self.ns):
            raise SystemExit("--ns: a recommendation needs at least 3 runs")
        if self.seeds < 1 or self.n_samples < TOP_K:
            raise SystemExit(f"--seeds must be >= 1 and --n-samples >= {TOP_K}")


QUICK = Grid(ms=(4,), ns=(8,), seeds=2, n_samples=2_000)


# -- the ground truth of one problem ----------------------------------------------------------------


@dataclass(frozen=True)
class Truth:
    """One problem: the space, the objectives' weights and optima, the first round's noisy runs."""

    m: int
    seed: int
    problem: MixingLawProblem
    space: SearchSpace
    weights: dict[str, np.ndarray]  # objective -> (m,) weights of the domain losses
    optimum: dict[str, tuple[np.ndarray, float]]  # objective -> (mixture, true objective)
    X: np.ndarray  # (max n, m) the runs' shares, in the order the sampler drew them
    L: np.ndarray  # (max n, m) their measured (noisy) domain losses
    pool: np.ndarray  # RegMix's candidates: Dirichlet draws inside the caps
    reference: np.ndarray  # (k, m) uniform draws over the space, to scale regrets

    def objective(self, name: str, X: np.ndarray) -> np.ndarray:
        return self.problem.objective(X, self.weights[name])


def make_space(problem: MixingLawProblem, seed: int) -> SearchSpace:
    rng = np.random.default_rng([problem.m, seed, 0])
    tokens = np.exp(rng.normal(np.log(5e9), 1.2, problem.m))
    return problem.space(tokens=tokens.tolist(), target_tokens=float(tokens.sum()), max_epochs=4.0)


def objective_weights(m: int, seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng([m, seed, 1])
    single, pair = np.zeros(m), np.zeros(m)
    single[rng.integers(m)] = 1.0
    pair[rng.choice(m, 2, replace=False)] = PAIR
    return {"mean": np.full(m, 1.0 / m), "single": single, "pair": pair}


def regmix_pool(space: SearchSpace, n: int, seed: int) -> np.ndarray:
    """n draws from the first round's Dirichlet prior (the same ladder and temperature) that respect
    the caps: RegMix rejects the mixtures that would repeat a domain too often."""
    sampler: Any = SAMPLERS.build("dirichlet", space=space, seed=seed)
    kept: list[np.ndarray] = []
    total = 0
    for _ in range(1000):
        raw = sampler.draw(max(1000, 2 * (n - total)))
        inside = raw[np.asarray(space.contains(raw), dtype=bool)]
        kept.append(inside)
        total += len(inside)
        if total >= n:
            return np.vstack(kept)[:n]
    raise RuntimeError(f"the caps reject almost every Dirichlet draw ({total} of {n} kept)")


def make_truth(m: int, seed: int, grid: Grid) -> Truth:
    problem = MixingLawProblem.random(m, seed)
    space = make_space(problem, seed)
    weights = {k: v for k, v in objective_weights(m, seed).items() if k in grid.objectives}
    optimum = {k: problem.optimum(space, weights=w) for k, w in weights.items()}
    # the sweep's first round: its anchors (natural, uniform), then the dirichlet sampler's draws
    sampler = SAMPLERS.build("dirichlet", space=space, seed=seed)
    drawn = space.to_array(sampler.suggest(max(grid.ns) - len(ANCHORS)))
    X = np.vstack([np.array([space.anchor(a) for a in ANCHORS]), drawn])
    if len(X) < max(grid.ns):
        raise RuntimeError(f"the dirichlet sampler gave {len(drawn)} of {max(grid.ns)} runs (m={m}, seed={seed})")
    _, L = problem.run(X, np.random.default_rng([m, seed, 2]))
    pool = regmix_pool(space, grid.n_samples, 10_000 + seed)
    reference = space.sample_uniform(np.random.default_rng([m, seed, 3]), 4000)
    return Truth(m, seed, problem, space, weights, optimum, X, L, pool, reference)


# -- the methods ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Case:
    """What every method sees: the space, the runs, their measured objective and parts."""

    space: SearchSpace
    X: np.ndarray
    y: np.ndarray
    parts: dict[str, np.ndarray] | None
    part_weights: dict[str, float] | None
    seed: int
    n_samples: int


def case_for(truth: Truth, objective: str, n: int, n_samples: int) -> Case:
    w = truth.weights[objective]
    L = truth.L[:n]
    used = np.flatnonzero(w)
    parts = part_weights = None
    if len(used) > 1:  # the mean and the pair are weighted sums of domain losses; one domain's loss is not
        names = [truth.space.domains[i] for i in used]
        parts = {d: L[:, i] for d, i in zip(names, used)}
        part_weights = {d: float(w[i]) for d, i in zip(names, used)}
    return Case(truth.space, truth.X[:n], L @ w, parts, part_weights, truth.seed, n_samples)


def recommendation(case: Case) -> tuple[np.ndarray, str]:
    rec = recommend_mixture(
        case.space,
        case.X,
        case.y,
        parts=case.parts,
        part_weights=case.part_weights,
        seed=case.seed,
        n_samples=case.n_samples,
    )
    return case.space.to_array(rec.proposal.mixture), rec.model


def regmix(case: Case, pool: np.ndarray) -> np.ndarray:
    """RegMix's recipe: LightGBM on the shares (the `lightgbm` surrogate's main booster: RegMix's
    settings, leaf size scaled to the run count), then the mean of the 100 best-predicted candidates."""
    model: Any = SURROGATES.build("lightgbm", seed=case.seed, n_bags=0).fit(case.X, case.y)
    predicted = model.predict_mean(pool)
    top = pool[np.argsort(predicted, kind="stable")[:TOP_K]]
    return np.asarray(top.mean(axis=0))  # the space is convex: an average of feasible mixtures is feasible


def confirm(truth: Truth, objective: str, n: int, proposal: np.ndarray, best: np.ndarray) -> tuple[np.ndarray, str]:
    """The sweep's confirmation stage (`confirm:`, on by default): the proposal and the best observed
    run measured again with `CONFIRM_SEEDS` new runs each (the problem's run noise, a seed of their
    own); the better mean is exported, the proposal on a tie. Returns (exported mixture, which)."""
    rng = np.random.default_rng([truth.m, truth.seed, 4, n, OBJECTIVES.index(objective)])
    _, L = truth.problem.run(np.repeat(np.vstack([proposal, best]), CONFIRM_SEEDS, axis=0), rng)
    y = (L @ truth.weights[objective]).reshape(2, CONFIRM_SEEDS).mean(axis=1)
    return (best, "best_observed") if y[1] < y[0] else (proposal, "proposal")


def decide(truth: Truth, objective: str, n: int, n_samples: int) -> dict[str, Any]:
    """Every method on one (problem, objective, n): the mixtures' regrets, and the proposers' seconds."""
    case = case_for(truth, objective, n, n_samples)
    space = truth.space
    seconds: dict[str, float] = {}
    start = time.perf_counter()
    proposal, model = recommendation(case)
    seconds["recommendation"] = time.perf_counter() - start
    best = case.X[int(np.argmin(case.y))]
    rec, exported = confirm(truth, objective, n, proposal, best)
    start = time.perf_counter()
    peer = regmix(case, truth.pool)
    seconds["regmix"] = time.perf_counter() - start
    mixtures = {
        "recommendation": rec,
        "proposal": proposal,
        "regmix": peer,
        "best_observed": best,
        "natural": space.anchor("natural"),
        "uniform": space.anchor("uniform"),
        "optimum": truth.optimum[objective][0],
    }
    # every mixture takes the same path to its regret: a Mixture value, normalised, in the space's order
    X = space.to_array([space.to_mixture(mixtures[k]) for k in METHODS])
    f_opt = truth.optimum[objective][1]
    regret = truth.objective(objective, X) - f_opt
    scale = float(np.median(truth.objective(objective, truth.reference))) - f_opt
    return {
        "m": truth.m,
        "objective": objective,
        "n": n,
        "seed": truth.seed,
        "regret": {k: float(r) for k, r in zip(METHODS, regret)},
        "feasible": {k: bool(v) for k, v in zip(METHODS, np.asarray(space.contains(X, tol=1e-6)))},
        # a dense check of the optimiser: the best of the uniform reference draws (never below 0)
        "reference_best_regret": float(truth.objective(objective, truth.reference).min() - f_opt),
        "median_regret": scale,  # regret of the space's median mixture: the scale of normalised regret
        "model": model,
        "exported": exported,
        "seconds": {k: round(v, 3) for k, v in seconds.items()},
    }


# -- summaries --------------------------------------------------------------------------------------


def interval(values: Sequence[float] | np.ndarray) -> dict[str, Any]:
    """Mean with a 95% t interval over the problems, and the median."""
    arr = np.asarray(values, dtype=np.float64)
    stat = Stat.of(arr.tolist())
    assert stat is not None
    return {
        "mean": round(stat.mean, 6),
        "ci95": [round(stat.low, 6), round(stat.high, 6)],
        "median": round(float(np.median(arr)), 6),
    }


def win_rate(ours: np.ndarray, theirs: np.ndarray) -> float:
    """Share of problems where the recommendation's regret is lower (equal within 1e-9 counts half)."""
    diff = theirs - ours
    return round(float(np.mean(np.where(np.abs(diff) <= 1e-9, 0.5, diff > 0))), 4)


def summarise(rows: list[dict[str, Any]]) -> dict[str, Any]:
    regret = {k: np.array([r["regret"][k] for r in rows]) for k in METHODS}
    normalised = {k: regret[k] / np.array([r["median_regret"] for r in rows]) for k in METHODS}
    models: dict[str, int] = {}
    for r in rows:
        models[r["model"]] = models.get(r["model"], 0) + 1
    rec, peer = regret["recommendation"].mean(), regret["regmix"].mean()
    return {
        "problems": len(rows),
        "regret": {k: interval(v) for k, v in regret.items()},
        "normalised_regret_mean": {k: round(float(v.mean()), 4) for k, v in normalised.items()},
        "win_rate": {f"vs_{k}": win_rate(regret["recommendation"], regret[k]) for k in COMPARED},
        "recommendation_over_regmix": round(float(rec / peer), 4) if peer > 0 else None,
        "models": dict(sorted(models.items())),
        # how often the confirmation exported the best observed run instead of the proposal
        "exported_best_observed": round(float(np.mean([r.get("exported") == "best_observed" for r in rows])), 4),
        "seconds_mean": {
            k: round(float(np.mean([r["seconds"][k] for r in rows])), 3) for k in ("recommendation", "regmix")
        },
    }


def group(rows: list[dict[str, Any]], *keys: str) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = {}
    for r in rows:
        out.setdefault(" ".join(f"{k}={r[k]}" for k in keys), []).append(r)
    return out


def bootstrap_ratio(a: np.ndarray, b: np.ndarray, seed: int = 0, draws: int = 2000) -> list[float]:
    """95% paired bootstrap interval of mean(a) / mean(b) over problems."""
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(a), (draws, len(a)))
    ratios = a[idx].mean(axis=1) / np.maximum(b[idx].mean(axis=1), 1e-300)
    return [round(float(q), 4) for q in np.quantile(ratios, [0.025, 0.975])]


def goals(rows: list[dict[str, Any]]) -> dict[str, Any]:
    regret = {k: np.array([r["regret"][k] for r in rows]) for k in METHODS}
    rec = regret["recommendation"]
    vs_regmix = float(rec.mean() / regret["regmix"].mean())
    vs_best = float(rec.mean() / regret["best_observed"].mean())
    wins = {k: win_rate(rec, regret[k]) for k in ("natural", "uniform")}
    return {
        "regret_at_most_half_regmix": {
            "figure": round(vs_regmix, 4),
            "what": "mean regret of the recommendation / mean regret of RegMix's recipe, over every problem",
            "goal": f"<= {GOAL_VS_REGMIX}",
            "ci95": bootstrap_ratio(rec, regret["regmix"]),
            "met": bool(vs_regmix <= GOAL_VS_REGMIX),
        },
        "regret_below_best_observed": {
            "figure": round(vs_best, 4),
            "what": "mean regret of the recommendation / mean regret of the best observed run",
            "goal": "< 1",
            "ci95": bootstrap_ratio(rec, regret["best_observed"]),
            "met": bool(vs_best < 1.0),
        },
        "beats_natural_and_uniform_90pct": {
            "figure": min(wins.values()),
            "what": "the lower of the recommendation's win rates against natural and against uniform",
            "win_rates": wins,
            "goal": f">= {GOAL_WIN_RATE}",
            "met": bool(min(wins.values()) >= GOAL_WIN_RATE),
        },
    }


def worst_cells(cells: dict[str, dict[str, Any]], top: int = 5) -> dict[str, list[dict[str, Any]]]:
    """The cells furthest from each goal: highest regret ratio to RegMix and to the best observed run,
    lowest win rate against natural and against uniform."""

    def ratio(peer: str) -> list[dict[str, Any]]:
        rows = [
            {
                "cell": key,
                "recommendation": c["regret"]["recommendation"]["mean"],
                peer: c["regret"][peer]["mean"],
                "ratio": round(c["regret"]["recommendation"]["mean"] / max(c["regret"][peer]["mean"], 1e-12), 3),
            }
            for key, c in cells.items()
        ]
        return sorted(rows, key=lambda r: -r["ratio"])[:top]

    def wins(peer: str) -> list[dict[str, Any]]:
        rows = [
            {
                "cell": key,
                "win_rate": c["win_rate"][f"vs_{peer}"],
                "recommendation": c["regret"]["recommendation"]["mean"],
                peer: c["regret"][peer]["mean"],
            }
            for key, c in cells.items()
        ]
        return sorted(rows, key=lambda r: r["win_rate"])[:top]

    return {
        "ratio_to_regmix": ratio("regmix"),
        "ratio_to_best_observed": ratio("best_observed"),
        "win_rate_vs_natural": wins("natural"),
        "win_rate_vs_uniform": wins("uniform"),
    }


def plot(rows: list[dict[str, Any]], path: Path) -> None:
    import matplotlib  # lazy: only the full run draws

    matplotlib.use("Agg")  # before pyplot: no display
    import matplotlib.pyplot as plt  # after the backend is chosen

    objectives = list(dict.fromkeys(r["objective"] for r in rows))
    ns = sorted({r["n"] for r in rows})
    fig, axes = plt.subplots(1, len(objectives), figsize=(4.2 * len(objectives), 3.6), squeeze=False, sharey=True)
    for ax, objective in zip(axes[0], objectives):
        for method in METHODS[:-1]:
            means = [
                np.mean([r["regret"][method] for r in rows if r["objective"] == objective and r["n"] == n]) for n in ns
            ]
            ax.plot(ns, means, marker="o", label=method, lw=2.2 if method == "recommendation" else 1.2)
        ax.set_xscale("log", base=2)
        ax.set_xticks(ns, [str(n) for n in ns])
        ax.set_yscale("log")
        ax.set_title(f"{objective} (m = {', '.join(str(m) for m in sorted({r['m'] for r in rows}))})", fontsize=10)
        ax.set_xlabel("runs")
        ax.grid(alpha=0.3, which="both")
    axes[0][0].set_ylabel("mean regret (nats, log)")
    axes[0][-1].legend(fontsize=8)
    fig.tight_layout()
    atomic_save(path, lambda tmp: fig.savefig(tmp, dpi=110, format="png"))
    plt.close(fig)


# -- the run ----------------------------------------------------------------------------------------


def run(grid: Grid, progress: Progress | None = None) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    total = len(grid.ms) * grid.seeds * len(grid.objectives) * len(grid.ns)
    task = progress.add_task("decisions", total=total) if progress is not None else None
    for m in grid.ms:
        for seed in range(grid.seeds):
            truth = make_truth(m, seed, grid)
            for objective in grid.objectives:
                for n in grid.ns:
                    if progress is not None and task is not None:
                        progress.update(task, description=f"m={m} seed={seed} {objective} n={n}")
                    rows.append(decide(truth, objective, n, grid.n_samples))
                    if progress is not None and task is not None:
                        progress.advance(task)
            if progress is not None:  # a line per problem, which a log file keeps too
                done = rows[-len(grid.objectives) * len(grid.ns) :]
                progress.console.log(
                    f"m={m} seed={seed}: {len(rows)}/{total} decisions, recommendation "
                    f"{np.mean([r['seconds']['recommendation'] for r in done]):.1f} s each"
                )
    return rows


def code_state() -> dict[str, Any]:
    """The commit measured, and the library files that differed from it when the run started."""
    root = Path(__file__).resolve().parent.parent

    def git(*args: str) -> str:
        done = subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, check=False)
        return done.stdout.strip()

    return {"commit": git("rev-parse", "HEAD"), "changed": git("status", "--porcelain", "mixture_search").splitlines()}


def describe(grid: Grid) -> dict[str, Any]:
    """The run's setup, in words and numbers, for the JSON."""
    return {
        **asdict(grid),
        "problems": "MixingLawProblem.random(m, seed), seed = 0 .. seeds-1; caps: 4 epochs of log-normal token counts",
        "noise": {"run": 0.01, "per_domain": 0.01},
        "objective_definitions": {
            "mean": "mean of the domain losses",
            "single": "one domain's loss",
            "pair": f"{PAIR[0]} / {PAIR[1]} of two domains",
        },
        "runs": "a sweep's first round: its anchors (natural, uniform), then the dirichlet sampler's draws (seeded); n = 8 and 16 are the first runs of the 32",
        "n_samples": f"{grid.n_samples} candidate mixtures for both proposal methods (the product's default is 100,000)",
        "recommendation": f"recommend_mixture(space, X, y, parts=per-domain losses for mean and pair, part_weights, seed, n_samples), other options default; then the confirmation: proposal and best observed run measured with {CONFIRM_SEEDS} new noisy runs each, the better mean exported (the proposal on a tie)",
        "proposal": "recommend_mixture's proposal alone (no confirmation)",
        "recommendation_defaults": {
            name: p.default
            for name, p in inspect.signature(recommend_mixture).parameters.items()
            if p.kind is p.KEYWORD_ONLY and name not in ("parts", "part_weights", "seed", "n_samples")
        },
        "regmix": f"lightgbm surrogate (1000 rounds, lr 0.01, leaf size n // 10 in [2, 20]); mean of the top {TOP_K} of {grid.n_samples} Dirichlet draws inside the caps",
        "regret": "true objective of the mixture - true optimum (nats); normalised: / (median over 4000 uniform mixtures - optimum)",
        "intervals": "95% t intervals over problems; goal ratios with a 95% paired bootstrap",
    }


def report(
    rows: list[dict[str, Any]], setup: dict[str, Any], seconds: dict[str, Any], quick: bool, code: dict[str, Any]
) -> dict[str, Any]:
    """`seconds`: {"wall": ..., "cpu": ...} of the whole run (CPU: this process, every thread)."""
    cells = {key: summarise(sel) for key, sel in group(rows, "m", "objective", "n").items()}
    return {
        "benchmark": "decision: regret of the recommended mixture on a noisy data-mixing-law ground truth",
        "command": " ".join(["benchmarks/decision.py", *sys.argv[1:]]),
        "when": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()},
        "code": code,
        "quick": quick,
        "seconds": seconds["wall"],
        "cpu_seconds": seconds.get("cpu"),
        "setup": setup,
        "goals": goals(rows),
        "overall": summarise(rows),
        "worst_cells": worst_cells(cells),
        "by_objective": {key: summarise(sel) for key, sel in group(rows, "objective").items()},
        "by_m": {key: summarise(sel) for key, sel in group(rows, "m").items()},
        "by_n": {key: summarise(sel) for key, sel in group(rows, "n").items()},
        "cells": cells,
        "raw": rows,
    }


def resummarise(source: Path, out: Path) -> dict[str, Any]:
    """The same report from the rows an earlier run measured (its setup, code and timing kept), after a
    change to the summaries: no decision is made again."""
    old = json.loads(source.read_text())
    seconds = {"wall": old["seconds"], "cpu": old.get("cpu_seconds")}
    result = report(old["raw"], old["setup"], seconds, old["quick"], old["code"])
    result.update({k: old[k] for k in ("command", "when", "machine")})
    atomic_write_json(out, result, default=float)
    plot(old["raw"], out.with_suffix(".png"))
    print(f"wrote {out} from the {len(old['raw'])} rows of {source}")
    return result


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help=f"a tiny grid ({QUICK}), written to {QUICK_OUT}")
    parser.add_argument("--out", type=Path, help=f"the JSON (default {RESULTS}); the plot goes beside it as .png")
    parser.add_argument("--ms", type=int, nargs="+", help="domain counts")
    parser.add_argument("--objectives", nargs="+", choices=OBJECTIVES)
    parser.add_argument("--ns", type=int, nargs="+", help="run counts")
    parser.add_argument("--seeds", type=int, help="problems per (m, objective, n)")
    parser.add_argument("--n-samples", type=int, help="candidate mixtures per proposal")
    parser.add_argument(
        "--from", dest="source", type=Path, help="recompute the summaries and the plot from an earlier JSON's raw rows"
    )
    args = parser.parse_args(argv)
    if args.source is not None:
        return resummarise(args.source, args.out or args.source)
    base = QUICK if args.quick else Grid()
    grid = Grid(
        ms=tuple(args.ms or base.ms),
        objectives=tuple(args.objectives or base.objectives),
        ns=tuple(sorted(args.ns or base.ns)),
        seeds=args.seeds or base.seeds,
        n_samples=args.n_samples or base.n_samples,
    )
    out: Path = args.out or (QUICK_OUT if args.quick else RESULTS)
    warnings.filterwarnings("ignore")
    code = code_state()  # before the run: the modules it uses were imported at start
    started, cpu = time.perf_counter(), time.process_time()
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
    )
    with Progress(*columns) as progress:
        rows = run(grid, progress)
    seconds = {"wall": round(time.perf_counter() - started, 1), "cpu": round(time.process_time() - cpu, 1)}
    result = report(rows, describe(grid), seconds, args.quick, code)
    atomic_write_json(out, result, default=float)
    plot(rows, out.with_suffix(".png"))
    overall = result["overall"]["regret"]
    print(f"wrote {out} and {out.with_suffix('.png').name} in {seconds['wall']:.0f} s ({seconds['cpu']:.0f} s CPU)")
    print("mean regret: " + ", ".join(f"{k} {overall[k]['mean']:.4f}" for k in METHODS))
    for name, goal in result["goals"].items():
        print(f"goal {name}: {goal['figure']} ({goal['goal']}) {'met' if goal['met'] else 'NOT met'}")
    return result


if __name__ == "__main__":
    main()
