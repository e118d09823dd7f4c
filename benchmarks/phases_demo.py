"""A two-phase sweep against a static sweep on the demo corpus (issue 15, item 4): same trials, same tokens.

Both sweeps are real (`mixsweep sweep`: Prefect, Ray Tune, MLflow, Megatron-Core proxies): `tiny_cpu`
proxies (seq 64), 24 steps of 8 sequences with the `wsd` LR schedule (decay over the last 25%), 2 rounds
of 4 trials (dirichlet, then adaptive), objective the mean held-out bits per byte over the 8 domains, no
confirmation. The phased sweep searches two mixtures, the second for the last 25% of the run (the decay);
the static sweep one mixture. Then each sweep's recommendation is trained again with new seeds, and the
two are compared paired by seed (95% t interval of phased - static).

What the interval covers: training seeds (initialisation and data order) of these two recommendations;
not the sweeps' own randomness (one sweep of each, sweep seed 0).

    .venv/bin/python -m benchmarks.phases_demo      # ~10 min on 2 cores; writes benchmarks/results/phases_demo.json

Needs the demo corpus (`mixsweep data prepare --demo`). A rerun resumes both sweeps from MLflow and reuses
the finished seed runs (their folders are keyed by their inputs).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from benchmarks.decision import code_state
from flows.steps.validate_report import Stat
from mixture_search.files import atomic_write_json
from mixture_search.mixture import Mixture
from trainers import TrainBudget
from trainers.data.schedule import WeightSchedule
from trainers.presets import preset

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "benchmarks" / "results" / "phases_demo.json"
BUDGET: dict[str, Any] = {
    "steps": 24,
    "micro_batch": 8,
    "global_batch": 8,
    "eval_interval": 24,
    "eval_windows_per_domain": 4,
    "lr": 0.003,
    "warmup_steps": 2,
    "schedule": "wsd",
    "decay_fraction": 0.25,
}


def spec(kind: str, corpus: Path, out: Path) -> dict[str, Any]:
    space: dict[str, Any] = {"prior": "tokens"}
    if kind == "phased":
        space["phases"] = [{"until": 0.75}, {"until": 1.0}]  # the second phase is the LR decay
    return {
        "name": f"phases-demo-{kind}",
        "corpus": str(corpus),
        "space": space,
        "search": {
            "sampler": "dirichlet",
            "adaptive": "adaptive",
            "rounds": 2,
            "per_round": 4,
            "proposal_samples": 5000,
        },
        "confirm": {"enabled": False},
        "proxy": {"preset": "tiny_cpu", "overrides": {"seq_len": 64}},
        "budget": BUDGET,
        "backend": "megatron",
        "objective": {"metric": "val.bpb.mean"},
        "resources": {"cpus": 1},
        "max_concurrent": 2,
        "mlflow": {"experiment": f"phases-demo-{kind}"},
        "output_dir": str(out / kind),
    }


def run_sweep(kind: str, corpus: Path, out: Path) -> dict[str, Any]:
    path = out / f"{kind}.json"  # JSON is YAML: the CLI reads it as a spec file
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(spec(kind, corpus, out)))
    done = subprocess.run(
        [str(REPO / ".venv" / "bin" / "mixsweep"), "sweep", str(path)], cwd=REPO, capture_output=True, text=True
    )
    if done.returncode:
        raise SystemExit(f"the {kind} sweep failed:\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}")
    return dict(json.loads((out / kind / "summary.json").read_text()))


def retrain(kind: str, summary: dict[str, Any], corpus: Path, out: Path, seeds: list[int]) -> list[float]:
    from trainers.train import train  # torch and Megatron: only when training

    proposal = summary["proposal"]
    schedule = None
    if kind == "phased":
        phases = [(p["until"], Mixture(p["weights"])) for p in proposal["schedule"]["phases"]]
        start, schedule = phases[0][1], WeightSchedule.from_phases(phases, BUDGET["steps"], BUDGET["global_batch"])
    else:
        start = Mixture(proposal["weights"])
    values = []
    for seed in seeds:
        budget = TrainBudget(**BUDGET, seed=seed)
        result = train(
            start, corpus, preset("tiny_cpu", seq_len=64), budget, "megatron", out / "seeds", schedule=schedule
        )
        assert result.final is not None
        values.append(float(result.final.mean_bpb))
        print(kind, seed, values[-1], file=sys.stderr, flush=True)
    return values


def main() -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--corpus", type=Path, default=REPO / "runs" / "data" / "demo")
    ap.add_argument("--out", type=Path, default=REPO / "runs" / "benchmarks" / "phases_demo")
    ap.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3, 4])
    args = ap.parse_args()
    os.environ.setdefault("MIXSWEEP_ALLOW_OUTSIDE_DATA_ROOT", "1")
    started = time.perf_counter()
    summaries = {kind: run_sweep(kind, args.corpus, args.out) for kind in ("static", "phased")}
    values = {kind: retrain(kind, summaries[kind], args.corpus, args.out, args.seeds) for kind in summaries}
    diff = [p - s for p, s in zip(values["phased"], values["static"])]
    stat = Stat.of(diff)
    assert stat is not None
    verdict = "phased better" if stat.high < 0 else "static better" if stat.low > 0 else "within noise"
    result = {
        "benchmark": "phases_demo",
        "question": "a two-phase sweep vs a static sweep on the demo corpus, same trials and tokens",
        "code": code_state(),
        "wall_s": round(time.perf_counter() - started, 1),
        "specs": {kind: spec(kind, args.corpus, args.out) for kind in summaries},
        "sweeps": {
            kind: {
                "trials": s["trials"],
                "best_trial_objective": s["best"]["objective"],
                "proposal_predicted": s["proposal"].get("predicted"),
                "proposal": s["proposal"].get("schedule") or s["proposal"]["weights"],
            }
            for kind, s in summaries.items()
        },
        "seeds": args.seeds,
        "val_bpb_mean": values,
        "diff_phased_minus_static": {"per_seed": diff, "mean": stat.mean, "ci95": [stat.low, stat.high]},
        "verdict": verdict,
        "caveat": "one sweep of each (sweep seed 0): the interval covers training seeds of the two recommendations, "
        "not the sweeps' own randomness",
    }
    atomic_write_json(RESULTS, result)
    print(json.dumps({"diff": result["diff_phased_minus_static"], "verdict": verdict}))
    return result


if __name__ == "__main__":  # dist_checkpointing spawns a Manager
    main()
