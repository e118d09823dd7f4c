"""Does searching a two-phase schedule pay off? Ground truth with phase effects (issue 15, item 4).

Ground truth: the data mixing law of `mixture_search.synthetic.MixingLawProblem` (m = 4 or 8 domains,
log-normal token counts, a cap of 4 epochs of each domain in a run of the corpus' size, as in
`benchmarks/decision.py`), applied to an *effective* mixture that weights the end of the run more:

    E = (1 - rho) * (run shares) + rho * (shares of the last phase)

`rho` is the phase effect (the recency of annealing / mid-training data): 0 means only the run's
totals matter (then the best schedule is a static mixture and a phased search only pays for its extra
dimensions), larger values mean the last phase counts more. Each domain's run share stays capped, so
a small good domain can only be pushed past its cap's effect by concentrating it in the last phase:
that is what a schedule can gain. The schedule has two phases, the boundary fixed at 0.8 (the decay
of a `wsd` LR schedule in `deploy/specs/two_phase.yaml`).

Both sweeps get the same number of runs (n, each the same length, so the same tokens) from the
`dirichlet` sampler (a sweep's first round; 24 runs, two rounds of the demo), measured with the problem's run noise (0.01 per run and
per domain), and propose with the product's `recommend_mixture` (defaults; the per-domain losses are
the objective's parts, as a sweep on `val.bpb.mean` does; 5,000 candidates to keep the run near 10
minutes on a shared core):

- `phased`: over the `PhasedSpace` cells;
- `static`: over the base space (a static mixture is a schedule with equal phases).

Regret = true objective - the true optimum over schedules (nats, lower is better). The optimum comes
from SLSQP over the cells (the objective is convex in them; the static optimum likewise over shares).
The comparison is paired (same problem, same seed): `phased - static` with a 95% t interval.

    nice -n 10 .venv/bin/python -m benchmarks.phases          # writes benchmarks/results/phases.json
    .venv/bin/python -m benchmarks.phases --quick             # seconds: a tiny grid, into runs/benchmarks/
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
import warnings
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
from scipy.optimize import minimize

from benchmarks.decision import code_state, make_space
from flows.steps.validate_report import Stat
from mixture_search import SAMPLERS, SearchSpace
from mixture_search.files import atomic_write_json
from mixture_search.phases import PhasedSpace
from mixture_search.recommend import recommend_mixture
from mixture_search.synthetic import MixingLawProblem

RESULTS = Path(__file__).parent / "results" / "phases.json"
QUICK_OUT = Path("runs") / "benchmarks" / "phases-quick.json"
BOUNDARY = 0.8
#: goals: where the phase effect is strong (rho >= STRONG) the phased sweep's regret is below the static
#: one's (paired 95% interval below 0); without a phase effect it costs at most NO_EFFECT_COST nats (upper end)
STRONG = 0.3
NO_EFFECT_COST = 0.01


@dataclass(frozen=True)
class Grid:
    ms: tuple[int, ...] = (4, 8)
    rhos: tuple[float, ...] = (0.0, 0.5)
    n: int = 24
    seeds: int = 10
    n_samples: int = 5_000


QUICK = Grid(ms=(4,), rhos=(0.0, 0.6), n=12, seeds=2, n_samples=2_000)


@dataclass(frozen=True)
class Truth:
    problem: MixingLawProblem
    base: SearchSpace
    phased: PhasedSpace
    rho: float

    def effective(self, cells: np.ndarray) -> np.ndarray:
        """(n, m) effective mixtures of cell rows (n, 2m)."""
        C = np.atleast_2d(cells).reshape(-1, 2, self.base.size)
        last = C[:, 1] / np.maximum(C[:, 1].sum(axis=1, keepdims=True), 1e-300)
        return (1 - self.rho) * C.sum(axis=1) + self.rho * last

    def of_schedule(self, cells: np.ndarray) -> np.ndarray:
        return self.problem.objective(self.effective(cells))

    def of_static(self, shares: np.ndarray) -> np.ndarray:
        return self.problem.objective(np.atleast_2d(shares))  # E = x for a schedule with equal phases

    def optimum(self, starts: int = 8, seed: int = 0) -> tuple[np.ndarray, float]:
        """The best schedule: the objective is convex in the cells (E is linear in them with the
        boundary fixed), so SLSQP from a few starts, under the phase sums and the run caps."""
        m, space = self.base.size, self.phased
        caps = np.array([1.0 if c is None else c for c in self.base.caps.values()])
        lengths = np.array([BOUNDARY, 1 - BOUNDARY])
        A = np.zeros((2, 2 * m))
        A[0, :m], A[1, m:] = 1.0, 1.0
        constraints = [
            {"type": "eq", "fun": lambda x: A @ x - lengths, "jac": lambda x: A},
            {
                "type": "ineq",
                "fun": lambda x: caps - x[:m] - x[m:],
                "jac": lambda x: -np.hstack([np.eye(m), np.eye(m)]),
            },
        ]
        rng = np.random.default_rng(seed)
        best_x, best_f = None, np.inf
        for x0 in space.sample_uniform(rng, starts):
            res = minimize(
                lambda x: float(self.of_schedule(x)[0]),
                x0,
                bounds=[(0.0, float(u)) for u in np.repeat(lengths, m)],
                constraints=constraints,
                method="SLSQP",
                options={"ftol": 1e-12, "maxiter": 500},
            )
            x = space.project(res.x)
            f = float(self.of_schedule(x)[0])
            if f < best_f:
                best_x, best_f = x, f
        assert best_x is not None
        return best_x, best_f


def make_truth(m: int, rho: float, seed: int) -> Truth:
    problem = MixingLawProblem.random(m, seed)
    base = make_space(problem, seed)
    phased = PhasedSpace(base=base, phases=({"until": BOUNDARY}, {"until": 1.0}))
    return Truth(problem, base, phased, rho)


def sweep(truth: Truth, space: SearchSpace, n: int, seed: int, n_samples: int, phased: bool) -> np.ndarray:
    """n runs from the first round's sampler, measured with noise, and the product's proposal."""
    sampler = SAMPLERS.build("dirichlet", space=space, seed=seed)
    X = space.to_array(sampler.suggest(n))
    E = truth.effective(X) if phased else X
    y, L = truth.problem.run(E, np.random.default_rng([seed, 2, int(phased)]))
    names = truth.base.domains
    rec = recommend_mixture(
        space,
        X,
        y,
        parts={d: L[:, i] for i, d in enumerate(names)},
        part_weights={d: 1.0 / len(names) for d in names},
        seed=seed,
        n_samples=n_samples,
    )
    return np.asarray(space.to_array(rec.proposal.mixture))


def decide(m: int, rho: float, seed: int, grid: Grid) -> dict[str, Any]:
    truth = make_truth(m, rho, seed)
    _, best = truth.optimum()
    _, static_best = truth.problem.optimum(truth.base)
    t0 = time.perf_counter()
    x_phased = sweep(truth, truth.phased, grid.n, seed, grid.n_samples, phased=True)
    x_static = sweep(truth, truth.base, grid.n, seed, grid.n_samples, phased=False)
    regret_phased = float(truth.of_schedule(x_phased)[0]) - best
    regret_static = float(truth.of_static(x_static)[0]) - best
    return {
        "m": m,
        "rho": rho,
        "seed": seed,
        "optimum": round(best, 6),
        "static_optimum_gap": round(static_best - best, 6),  # what a schedule can gain at best
        "regret_phased": round(regret_phased, 6),
        "regret_static": round(regret_static, 6),
        "diff": round(regret_phased - regret_static, 6),
        "last_phase_shift": round(
            float(
                np.abs(
                    truth.phased.to_schedule(x_phased).shares()[1] - truth.phased.to_schedule(x_phased).shares()[0]
                ).sum()
            ),
            4,
        ),
        "seconds": round(time.perf_counter() - t0, 2),
    }


def interval(values: Sequence[float]) -> dict[str, Any]:
    stat = Stat.of([float(v) for v in values])
    assert stat is not None
    return {"mean": round(stat.mean, 6), "ci95": [round(stat.low, 6), round(stat.high, 6)]}


def verdict_of(diff: dict[str, Any]) -> str:
    lo, hi = diff["ci95"]
    if hi < 0:
        return "phased better"
    if lo > 0:
        return "static better"
    return "within noise"


def summarise(rows: list[dict[str, Any]]) -> dict[str, Any]:
    cells: dict[str, Any] = {}
    for key in sorted({(r["m"], r["rho"]) for r in rows}):
        sel = [r for r in rows if (r["m"], r["rho"]) == key]
        diff = interval([r["diff"] for r in sel])
        cells[f"m={key[0]} rho={key[1]:g}"] = {
            "problems": len(sel),
            "regret_phased": interval([r["regret_phased"] for r in sel]),
            "regret_static": interval([r["regret_static"] for r in sel]),
            "static_optimum_gap": interval([r["static_optimum_gap"] for r in sel]),
            "diff_phased_minus_static": diff,
            "phased_wins": round(float(np.mean([r["diff"] < 0 for r in sel])), 3),
            "verdict": verdict_of(diff),
        }
    return cells


def goals(rows: list[dict[str, Any]]) -> dict[str, Any]:
    strong = [r["diff"] for r in rows if r["rho"] >= STRONG]
    none = [r["diff"] for r in rows if r["rho"] == 0]
    out: dict[str, Any] = {}
    if strong:
        d = interval(strong)
        out["phased_beats_static_with_phase_effects"] = {
            "goal": f"rho >= {STRONG}: phased - static regret, paired 95% interval below 0",
            "value": d,
            "met": d["ci95"][1] < 0,
        }
    if none:
        d = interval(none)
        out["small_cost_without_phase_effects"] = {
            "goal": f"rho = 0: phased - static regret, upper end of the paired 95% interval <= {NO_EFFECT_COST}",
            "value": d,
            "met": d["ci95"][1] <= NO_EFFECT_COST,
        }
    return out


def verdict(cells: dict[str, Any], goal: dict[str, Any]) -> str:
    parts = [
        f"{k}: {v['verdict']} ({v['diff_phased_minus_static']['mean']:+.4f} {v['diff_phased_minus_static']['ci95']})"
        for k, v in cells.items()
    ]
    met = [k for k, g in goal.items() if g["met"]]
    return "; ".join(parts) + f". Goals met: {len(met)} of {len(goal)}" + (f" ({', '.join(met)})" if met else "")


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="a tiny grid in seconds, written to runs/benchmarks/")
    ap.add_argument("--seeds", type=int, default=None)
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args(argv)
    grid = QUICK if args.quick else Grid()
    if args.seeds:
        grid = Grid(**{**asdict(grid), "seeds": args.seeds})
    out = args.out or (QUICK_OUT if args.quick else RESULTS)
    warnings.filterwarnings("ignore")
    started = time.perf_counter()
    rows = []
    for m in grid.ms:
        for rho in grid.rhos:
            for seed in range(grid.seeds):
                rows.append(decide(m, rho, seed, grid))
                print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
    cells = summarise(rows)
    goal = goals(rows)
    result = {
        "benchmark": "phases",
        "question": "two-phase sweep vs static sweep, same runs and tokens: regret against the best schedule",
        "grid": asdict(grid),
        "boundary": BOUNDARY,
        "code": code_state(),
        "machine": {"python": platform.python_version(), "platform": platform.platform()},
        "wall_s": round(time.perf_counter() - started, 1),
        "cells": cells,
        "goals": goal,
        "verdict": verdict(cells, goal),
        "rows": rows,
    }
    atomic_write_json(out, result)
    print(result["verdict"])
    return result


if __name__ == "__main__":
    main()
