"""Mixture search on a synthetic ground truth: surrogate accuracy vs runs, and regret vs runs per sampler.

Ground truth (`mixture_search.synthetic.MixingLawProblem`): each domain's validation loss follows the
data mixing law L_i(r) = c_i + k_i exp(sum_j t_ij r_j) (Ye et al., 2024) and the objective is their
mean. A run reports it with noise: 0.01 nats shared by all domains (seed, data order) plus 0.01 per
domain (finite validation sets), about what small proxies show from seed to seed. Domains get
log-normal token counts; the search space caps every domain at 4 epochs of its tokens in a target
run of as many tokens as the corpus has (so the smallest domains are capped at a few percent).

Part 1, surrogates (peer: RegMix's LightGBM): runs drawn with RegMix's Dirichlet design, a held-out
set of 1000 more from the same design; Spearman of the predictions against the noise-free objective
(and against noisy held-out runs, as RegMix measures) for n = 16 .. 512 runs. Anchors: RegMix reports
~0.90 with 64 runs and ~0.99 with 512 (1M-parameter proxies). Goal: >= 0.95 with 64 runs.

Part 2, samplers (peer: RegMix's Dirichlet design): batches of 4 runs; after each batch, the true
objective of the best run so far, and at 2m + 8 and 4m + 16 runs the true objective of the proposal
(GP surrogate fitted to the noisy runs, `propose`). Both as a percentile of the objective over 100k
uniform mixtures of the space (0 = better than all of them) and as regret normalised by
(median - optimum). Goal: the adaptive sampler in the top 1% within 2m + 8 runs.

    .venv/bin/python benchmarks/search.py           # writes benchmarks/results/search.json (~40 min on 2 cores)
    .venv/bin/python benchmarks/search.py --smoke   # a minute; checks the script runs (writes nothing)
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from mixture_search import SAMPLERS, SURROGATES, Observation, SearchSpace, propose
from mixture_search.files import atomic_write, atomic_write_json
from mixture_search.surrogates import MultiTarget, scores
from mixture_search.synthetic import MixingLawProblem

RESULTS = Path(__file__).parent / "results" / "search.json"
SPEARMAN_GOAL = 0.95  # at 64 runs
TOP_PERCENT_GOAL = 1.0  # adaptive search, within 2m + 8 runs
ANCHORS = {"regmix_spearman_64_runs": 0.90, "regmix_spearman_512_runs": 0.99}


def space_for(problem: MixingLawProblem, seed: int) -> SearchSpace:
    rng = np.random.default_rng(1000 + seed)
    tokens = np.exp(rng.normal(np.log(5e9), 1.2, problem.m))
    return problem.space(tokens=tokens.tolist(), target_tokens=float(tokens.sum()), max_epochs=4.0)


def reference(problem: MixingLawProblem, space: SearchSpace) -> dict[str, Any]:
    values = np.sort(problem.objective(space.sample_uniform(np.random.default_rng(7), 100_000)))
    _, best = problem.optimum(space)
    return {"values": values, "optimum": best, "median": float(np.median(values)), "top1": float(values[999])}


def percentile(ref: dict[str, Any], f: float) -> float:
    return float(100.0 * np.searchsorted(ref["values"], f) / len(ref["values"]))


def regret(ref: dict[str, Any], f: float) -> float:
    return float((f - ref["optimum"]) / (ref["median"] - ref["optimum"]))


# -- part 1 -----------------------------------------------------------------------------------------


def surrogate_part(
    ms: list[int], seeds: list[int], ns: list[int], names: list[str], auto_max: int, progress: Progress
) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    task = progress.add_task("surrogates", total=len(ms) * len(seeds) * len(ns))
    for m in ms:
        for seed in seeds:
            problem = MixingLawProblem.random(m, seed)
            space = space_for(problem, seed)
            design = SAMPLERS.build("dirichlet", space=space, seed=seed)
            X = space.to_array(design.suggest(max(ns) + 1000))
            rng = np.random.default_rng(seed)
            y, losses = problem.run(X, rng)
            truth = problem.objective(X)
            test, train = slice(0, 1000), slice(1000, None)
            Xtr, ytr, Ltr = X[train], y[train], losses[train]
            for n in ns:
                progress.update(task, description=f"surrogates m={m} seed={seed} n={n}")
                fits: list[tuple[str, Any, np.ndarray]] = []
                for name in names + (["auto"] if n <= auto_max else []):
                    start = time.perf_counter()
                    model = SURROGATES.build(name, seed=seed).fit(Xtr[:n], ytr[:n])
                    fits.append((name, model, np.array(time.perf_counter() - start)))
                start = time.perf_counter()
                law = MultiTarget([f"loss{i}" for i in range(m)], surrogate="mixing_law", seed=seed)
                law.fit(Xtr[:n], Ltr[:n])
                fits.append(("mixing_law_per_domain", law, np.array(time.perf_counter() - start)))
                for name, model, seconds in fits:
                    pred = model.predict(X[test])[0]
                    row = {
                        "m": m,
                        "seed": seed,
                        "n": n,
                        "surrogate": name,
                        "spearman_truth": scores(truth[test], pred)["spearman"],
                        "spearman_runs": scores(y[test], pred)["spearman"],
                        "pairwise_truth": scores(truth[test], pred)["pairwise"],
                        "fit_seconds": round(float(seconds), 3),
                    }
                    if name == "auto":
                        row["chosen"] = model.chosen
                    rows.append(row)
                progress.advance(task)
            # what the noise alone allows: held-out runs against their own noise-free values
            rows.append(
                {"m": m, "seed": seed, "n": None, "surrogate": "noise_ceiling",
                 "spearman_runs": scores(truth[test], y[test])["spearman"]}
            )  # fmt: skip
    return rows


def summarise_surrogates(rows: list[dict[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for m in sorted({r["m"] for r in rows}):
        per: dict[str, Any] = {}
        for name in dict.fromkeys(r["surrogate"] for r in rows if r["n"] is not None):
            curve = {}
            for n in sorted({r["n"] for r in rows if r["n"] is not None}):
                sel = [r for r in rows if r["m"] == m and r["surrogate"] == name and r["n"] == n]
                if sel:
                    curve[str(n)] = {
                        "spearman_truth": _mean_sd([r["spearman_truth"] for r in sel]),
                        "spearman_runs": _mean_sd([r["spearman_runs"] for r in sel]),
                        "fit_seconds": round(float(np.mean([r["fit_seconds"] for r in sel])), 2),
                    }
            per[name] = curve
        ceiling = [r["spearman_runs"] for r in rows if r["m"] == m and r["surrogate"] == "noise_ceiling"]
        per["noise_ceiling_spearman_runs"] = _mean_sd(ceiling)
        out[f"m={m}"] = per
    return out


# -- part 2 -----------------------------------------------------------------------------------------

SAMPLER_RUNS: list[tuple[str, str, dict[str, Any]]] = [
    ("dirichlet (RegMix, peer)", "dirichlet", {}),
    ("sobol", "sobol", {}),
    ("lhs", "lhs", {}),
    ("grid", "grid", {"resolution": 10}),  # finer where the caps leave fewer than 2 x budget points
    ("local", "local", {}),
    ("tpe", "tpe", {}),
    ("optuna_gp", "optuna_gp", {}),
    ("adaptive ei (gp)", "adaptive", {}),
    ("adaptive lcb (gp)", "adaptive", {"acquisition": "lcb"}),
    ("adaptive uncertainty (gp)", "adaptive", {"acquisition": "uncertainty"}),
]


def sampler_part(ms: list[int], seeds: list[int], batch: int, progress: Progress) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    task = progress.add_task("samplers", total=len(ms) * len(seeds) * len(SAMPLER_RUNS))
    for m in ms:
        budget = 2 * m + 8
        for seed in seeds:
            problem = MixingLawProblem.random(m, 100 + seed)
            space = space_for(problem, 100 + seed)
            ref = reference(problem, space)
            for label, name, options in SAMPLER_RUNS:
                progress.update(task, description=f"samplers m={m} seed={seed} {label}")
                rng = np.random.default_rng(seed)
                sampler = SAMPLERS.build(name, space=space, seed=seed, **options)
                while (
                    name == "grid" and getattr(sampler, "size", 0) < 2 * budget
                ):  # caps can leave a coarse lattice too few points
                    options = {**options, "resolution": options["resolution"] + 5}
                    sampler = SAMPLERS.build(name, space=space, seed=seed, **options)
                X_all, y_all, curve, proposals = np.zeros((0, m)), np.zeros(0), [], {}
                start = time.perf_counter()
                while len(y_all) < 2 * budget:
                    stop = budget if len(y_all) < budget else 2 * budget
                    mixtures = sampler.suggest(min(batch, stop - len(y_all)))
                    if not mixtures:
                        raise RuntimeError(f"sampler {label} ran out of mixtures")
                    X = space.to_array(mixtures)
                    y, _ = problem.run(X, rng)
                    sampler.observe([Observation(mx, float(v)) for mx, v in zip(mixtures, y)])
                    X_all, y_all = np.vstack([X_all, X]), np.concatenate([y_all, y])
                    best_true = float(problem.objective(X_all).min())
                    curve.append({"runs": len(y_all), "best_run_percentile": percentile(ref, best_true)})
                    if len(y_all) in (budget, 2 * budget):
                        model = SURROGATES.build("gp", seed=seed).fit(X_all, y_all)
                        p = propose(model, space, n_samples=20_000, top_k=50, seed=seed)
                        f = float(problem.objective(space.to_array(p.mixture))[0])
                        proposals[str(len(y_all))] = {
                            "best_run_percentile": percentile(ref, best_true),
                            "best_run_regret": regret(ref, best_true),
                            "proposal_percentile": percentile(ref, f),
                            "proposal_regret": regret(ref, f),
                        }
                rows.append(
                    {
                        "m": m,
                        "seed": seed,
                        "sampler": label,
                        "budget": budget,
                        "curve": curve,
                        "at": proposals,
                        "seconds": round(time.perf_counter() - start, 1),
                    }
                )
                progress.advance(task)
    return rows


def summarise_samplers(rows: list[dict[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for m in sorted({r["m"] for r in rows}):
        budget = 2 * m + 8
        per = {}
        for label in dict.fromkeys(r["sampler"] for r in rows):
            sel = [r for r in rows if r["m"] == m and r["sampler"] == label]
            entry: dict[str, Any] = {}
            for runs in (budget, 2 * budget):
                at = [r["at"][str(runs)] for r in sel]
                entry[f"{runs}_runs"] = {
                    key: _mean_sd([a[key] for a in at])
                    for key in ("best_run_percentile", "best_run_regret", "proposal_percentile", "proposal_regret")
                }
                entry[f"{runs}_runs"]["share_top1_best_run"] = float(
                    np.mean([a["best_run_percentile"] <= TOP_PERCENT_GOAL for a in at])
                )
                entry[f"{runs}_runs"]["share_top1_proposal"] = float(
                    np.mean([a["proposal_percentile"] <= TOP_PERCENT_GOAL for a in at])
                )
            entry["seconds"] = round(float(np.mean([r["seconds"] for r in sel])), 1)
            curves = [{c["runs"]: c["best_run_percentile"] for c in r["curve"]} for r in sel]
            entry["best_run_percentile_by_runs"] = {
                str(n): round(float(np.mean([c[n] for c in curves])), 3) for n in sorted(curves[0])
            }
            per[label] = entry
        out[f"m={m} (budget {budget} runs)"] = per
    return out


def goals(surrogates: dict[str, Any], samplers: dict[str, Any]) -> dict[str, Any]:
    """The issue's goals, judged on `auto` (the default surrogate, one model of the objective)."""
    out: dict[str, Any] = {}
    for key, per in surrogates.items():
        at64 = {name: c["64"] for name, c in per.items() if isinstance(c, dict) and "64" in c}
        if "auto" not in at64:
            continue
        auto = at64["auto"]
        out[f"spearman_64_runs {key}"] = {
            "goal": SPEARMAN_GOAL,
            "auto_vs_truth": auto["spearman_truth"]["mean"],
            "auto_vs_noisy_runs": auto["spearman_runs"]["mean"],
            "noise_ceiling_vs_noisy_runs": per["noise_ceiling_spearman_runs"]["mean"],
            "lightgbm_regmix_peer_vs_truth": at64.get("lightgbm", {}).get("spearman_truth", {}).get("mean"),
            "mixing_law_per_domain_vs_truth": at64.get("mixing_law_per_domain", {})
            .get("spearman_truth", {})
            .get("mean"),
            "met": auto["spearman_truth"]["mean"] >= SPEARMAN_GOAL,
        }
    for key, per in samplers.items():
        entry = per.get("adaptive ei (gp)")
        if entry is None:
            continue
        at = next(v for k, v in entry.items() if k.endswith("_runs"))
        out[f"adaptive_top1 {key}"] = {
            "goal": "top 1% within 2m+8 runs",
            "share_of_problems_best_run": at["share_top1_best_run"],
            "share_of_problems_proposal": at["share_top1_proposal"],
            "regmix_dirichlet_peer_best_run": per["dirichlet (RegMix, peer)"][
                next(k for k in entry if k.endswith("_runs"))
            ]["share_top1_best_run"],
            "met": at["share_top1_best_run"] == 1.0,
        }
    return out


def _mean_sd(values: list[float]) -> dict[str, float]:
    arr = np.array([v for v in values if v is not None and np.isfinite(v)], dtype=float)
    if not len(arr):
        return {"mean": float("nan"), "sd": float("nan")}
    return {"mean": round(float(arr.mean()), 4), "sd": round(float(arr.std()), 4)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--smoke", action="store_true", help="tiny sizes, prints instead of writing the JSON")
    parser.add_argument("--part", choices=("all", "surrogates", "samplers"), default="all")
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--sampler-problems", type=int, default=5, help="ground truths per size in part 2")
    parser.add_argument(
        "--from", dest="sources", type=Path, nargs="+", help="recompute summaries from the raw rows of earlier outputs"
    )
    args = parser.parse_args()
    if args.sources:
        merged: dict[str, Any] = {}
        for source in args.sources:
            merged.update({k: v for k, v in json.loads(source.read_text()).items() if v is not None})
        if "surrogates_raw" in merged:
            merged["surrogates"] = summarise_surrogates(merged["surrogates_raw"])
        if "samplers_raw" in merged:
            merged["samplers"] = summarise_samplers(merged["samplers_raw"])
        if "surrogates" in merged and "samplers" in merged:
            merged["goals"] = goals(merged["surrogates"], merged["samplers"])
        order = [k for k in merged if not k.endswith("_raw")] + [k for k in merged if k.endswith("_raw")]
        atomic_write_json(args.out, {k: merged[k] for k in order}, default=float)
        print(f"wrote {args.out}")
        return
    warnings.filterwarnings("ignore")
    if args.smoke:
        ms, seeds, ns, auto_max = [5], [0], [16, 32], 32
    else:
        ms, seeds, ns, auto_max = [5, 10], [0, 1, 2], [16, 32, 64, 128, 256, 512], 128
    sampler_seeds = seeds if args.smoke else list(range(args.sampler_problems))
    names = ["lightgbm", "linear", "mixing_law", "gp", "ensemble"]
    started = time.perf_counter()
    result: dict[str, Any] = {
        "benchmark": "mixture search on a noisy data-mixing-law ground truth",
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()},
        "setup": {
            "domains": ms,
            "problems_per_size": {"surrogates": len(seeds), "samplers": len(sampler_seeds)},
            "noise": {"run": 0.01, "per_domain": 0.01},
            "caps": "4 epochs of each domain's tokens in a run of the corpus' size",
            "surrogate_design": "RegMix Dirichlet sampler; 1000 held-out runs from the same design",
            "sampler_batch": 4,
        },
        "anchors": ANCHORS,
    }
    with Progress(TextColumn("{task.description}"), BarColumn(), TimeElapsedColumn()) as progress:
        if args.part in ("all", "surrogates"):
            raw = surrogate_part(ms, seeds, ns, names, auto_max, progress)
            result["surrogates"] = summarise_surrogates(raw)
            result["surrogates_raw"] = raw
        if args.part in ("all", "samplers"):
            raw_s = sampler_part(ms, sampler_seeds, 4, progress)
            result["samplers"] = summarise_samplers(raw_s)
            result["samplers_raw"] = raw_s
    if "surrogates" in result and "samplers" in result:
        result["goals"] = goals(result["surrogates"], result["samplers"])
    result[f"seconds_{args.part}"] = round(time.perf_counter() - started, 1)
    text = json.dumps(result, indent=1, default=float)
    if args.smoke:
        print(json.dumps({k: result[k] for k in result if not k.endswith("_raw")}, indent=1, default=float)[:4000])
        return
    if args.part != "all" and args.out.exists():  # merge one part into an existing result
        previous = json.loads(args.out.read_text())
        previous.update(json.loads(text))
        if "surrogates" in previous and "samplers" in previous:
            previous["goals"] = goals(previous["surrogates"], previous["samplers"])
        text = json.dumps(previous, indent=1, default=float)
    atomic_write(args.out, text + "\n")
    print(f"wrote {args.out} in {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
