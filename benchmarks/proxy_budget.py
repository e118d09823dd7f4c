"""How long must a ladder's largest proxy train to rank mixtures as the target does?

`mixsweep validate` on a ladder trains a handful of mixtures at the sweep's proxy scales and at a larger
target, with seeds, and scores how the proxies' ranking agrees with the target's. When the proxies barely
separate the mixtures (their spread within the seed noise), no model of their results can rank what they
do not resolve. This study takes the mixtures and the stored target results of one validation
(`validation.json`), trains the mixtures again at the ladder's largest proxy with other budgets (more
steps, a larger held-out sample), each with the same seeds and the same repetition matching as the
sweep, and reports for each budget:

- `spearman_vs_target`: the proxy's ranking of the mixtures (mean over seeds) against the target's mean;
- `spread` (standard deviation of the mixtures' means), `seed_noise` (pooled standard deviation of one
  mixture's seeds) and their ratio: a proxy separates the mixtures when the spread is well above the
  noise;
- `train_s_sum`: its trainings' time, summed (as each training recorded it).

The validation's own largest-proxy results come first, as the budget the sweep used. The target's
ranking is itself measured with seeds: `target_seed_agreement` says how far any proxy can agree with it.

    .venv/bin/python benchmarks/proxy_budget.py \\
        --validation docs/validate/ladder-budget/validation.json \\
        --spec deploy/specs/validate_ladder_budget.yaml \\
        --budget steps=40,eval_windows_per_domain=16 --budget steps=120,eval_windows_per_domain=16
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import platform
import statistics
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path
from typing import Any

from scipy.stats import spearmanr

ROOT = Path(__file__).resolve().parent
if str(ROOT.parent) not in sys.path[:1]:  # run as a script: the repository's packages before benchmarks/eval.py
    sys.path.insert(0, str(ROOT.parent))

from flows.steps.noise import Z95  # noqa: E402
from flows.steps.replicates import pooled_std  # noqa: E402
from flows.steps.validate import load_validate_spec, prepare_validation  # noqa: E402
from mixture_search.files import atomic_write_json  # noqa: E402
from trainers.budget import TrainBudget  # noqa: E402
from trainers.errors import ConfigError  # noqa: E402


def _train_one(args: tuple) -> dict[str, Any]:
    # lazy: torch and megatron load in the pool's workers only
    from mixture_search.mixture import Mixture
    from trainers.config import ProxyConfig
    from trainers.train import train

    weights, corpus, proxy, budget, backend, out, target_tokens, domains = args
    import torch  # loaded by trainers.train already; worker only

    torch.set_num_threads(1)  # as a Ray trial of 1 CPU runs
    result = train(
        Mixture.from_dict(weights),
        corpus,
        ProxyConfig.from_dict(proxy),
        TrainBudget.from_dict(budget),
        backend,
        out,
        target_tokens=target_tokens,
    )
    assert result.final is not None
    return {
        "objective": statistics.fmean(result.final.bpb[d] for d in domains),
        "train_s": float(result.wall_time_s),  # as recorded by the training (a reused run keeps its own)
    }


def parse_budget(text: str) -> dict[str, int | float]:
    """`steps=120,lr=0.01` as {"steps": 120, "lr": 0.01}; a malformed one exits with a one-line error."""
    out: dict[str, int | float] = {}
    for part in text.split(","):
        name, _, value = part.partition("=")
        try:
            out[name.strip()] = int(value)
        except ValueError:
            try:
                out[name.strip()] = float(value)
            except ValueError:
                raise SystemExit(f"--budget {text!r}: expected field=number[,field=number...]") from None
    return out


def changed_budget(budget: TrainBudget, text: str) -> tuple[dict[str, int | float], TrainBudget]:
    """The fields of `--budget TEXT` and `budget` with them; an unknown field or a value the budget
    refuses exits with a one-line error."""
    change = parse_budget(text)
    try:
        return change, dataclasses.replace(budget, **change)
    except (TypeError, ConfigError) as exc:
        raise SystemExit(f"--budget {text!r}: {exc}") from None


def summarize(per_mixture: dict[str, list[float]], target: dict[str, float]) -> dict[str, Any]:
    """One budget's runs (objectives per mixture, one per seed) against the target's means: the rank
    agreement, the spread of the mixtures' means, the pooled seed noise of one run, and how many
    mixtures are within seed noise of the best (lowest) mean: the band of `flows.steps.noise`, for
    means of as many seeds as the runs have."""
    names = list(per_mixture)
    means = [statistics.fmean(per_mixture[n]) for n in names]
    spread = statistics.stdev(means)
    noise = pooled_std([list(v) for v in per_mixture.values() if len(v) > 1])
    rho, p = spearmanr(means, [target[n] for n in names])
    seeds = min(len(v) for v in per_mixture.values())
    tied = None
    if noise is not None:
        band = Z95 * math.sqrt(2.0 / seeds) * noise
        tied = sum(1 for m in means if m - min(means) <= band) - 1
    return {
        "spearman_vs_target": round(float(rho), 4),
        "p": round(float(p), 4),
        "spread": round(spread, 4),
        "seed_noise": None if noise is None else round(noise, 4),
        "spread_over_noise": round(spread / noise, 2) if noise else None,
        "within_noise_of_best": tied,
        "means": {n: round(m, 4) for n, m in zip(names, means)},
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--validation", required=True, help="a ladder validation's validation.json")
    ap.add_argument("--spec", required=True, help="the validate spec it came from (the sweep's ladder and corpus)")
    ap.add_argument(
        "--budget",
        action="append",
        required=True,
        help="fields of the largest proxy's budget to change, e.g. steps=120,eval_windows_per_domain=16 (repeatable)",
    )
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    ap.add_argument("--parallel", type=int, default=2)
    ap.add_argument("--out", default="runs/bench/proxy_budget", help="training folders (finished ones are reused)")
    ap.add_argument("--json", default=str(ROOT / "results" / "proxy_budget.json"))
    args = ap.parse_args()

    stored = json.loads(Path(args.validation).read_text())
    plan = prepare_validation(load_validate_spec(args.spec))
    if plan.sweep.ladder is None:
        raise SystemExit(f"{args.spec}: its sweep has no ladder (proxy.scales)")
    rung = plan.sweep.ladder.largest
    mixtures = {m["name"]: m for m in stored["mixtures"] if m.get("largest_proxy") and m.get("target")}
    target = {n: float(m["target"]["mean"]) for n, m in mixtures.items()}
    seeds_target = [{n: float(m["target_seeds"][str(s)]) for n, m in mixtures.items()} for s in stored["seeds"]]
    agreement = [
        round(float(spearmanr(list(a.values()), list(b.values()))[0]), 4)
        for i, a in enumerate(seeds_target)
        for b in seeds_target[i + 1 :]
    ]
    stored_runs = {n: [float(v) for v in m["largest_proxy_seeds"].values()] for n, m in mixtures.items()}
    rows = [
        {
            "budget": {"steps": rung.budget.steps, "eval_windows_per_domain": rung.budget.eval_windows_per_domain},
            "source": "the validation's own largest-proxy runs (the sweep's budget)",
            **summarize(stored_runs, target),
        }
    ]
    corpus = str(plan.sweep_spec.corpus)
    domains = list(plan.target_domains)
    names = [name for name in mixtures for _ in args.seeds]  # of each job below, in order
    for change, budget in [changed_budget(rung.budget, text) for text in args.budget]:  # all checked first
        tokens = budget.total_steps(rung.proxy.seq_len) * budget.global_batch * rung.proxy.seq_len
        jobs = [
            (
                mixtures[name]["weights"],
                corpus,
                rung.proxy.to_dict(),
                dataclasses.replace(budget, seed=seed).to_dict(),
                plan.sweep_spec.backend,
                args.out,
                plan.sweep.repetition,
                domains,
            )
            for name in mixtures
            for seed in args.seeds
        ]
        with ProcessPoolExecutor(args.parallel, mp_context=get_context("spawn")) as pool:
            done = list(pool.map(_train_one, jobs))
        per: dict[str, list[float]] = {n: [] for n in mixtures}
        for name, r in zip(names, done):
            per[name].append(r["objective"])
        rows.append(
            {
                "budget": change,
                "tokens": tokens,
                "source": f"trained here, seeds {args.seeds}",
                "train_s_sum": round(sum(r["train_s"] for r in done), 1),
                **summarize(per, target),
            }
        )
        print(json.dumps(rows[-1]), flush=True)
    out = {
        "benchmark": "proxy budget against the target's ranking",
        "validation": args.validation,
        "spec": args.spec,
        "when": time.strftime("%Y-%m-%d"),
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform()},
        "largest_proxy": f"{rung.proxy.name}: {rung.proxy.param_counts().total:,} parameters",
        "target": stored["setup"]["target"],
        "objective": stored["setup"]["objective"],
        "repetition_target_tokens": plan.sweep.repetition,
        "target_means": {n: round(v, 4) for n, v in target.items()},
        "target_seed_agreement": agreement,
        "budgets": rows,
    }
    atomic_write_json(args.json, out)
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
