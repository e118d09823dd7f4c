"""Where a Ray Tune trial's per-token gap goes: the same 2 trainings as Tune trials of 1 CPU against the
peer, plain spawned processes (`benchmarks/sweep.py`'s peer), 2 at a time, alternated round by round.

Each training reads its own thread's scheduler figures around `trainers.train.train()`:
`/proc/thread-self/schedstat` (time on a CPU, time runnable but waiting for one, time slices) and
`getrusage` (involuntary switches; the process's other threads' CPU). The rest of the wall time the
thread was blocked. No Prefect, MLflow or sweep runs beside it: what differs is Ray and Tune alone.

    .venv/bin/python benchmarks/trial_gap.py            # writes benchmarks/results/trial_gap.json
    .venv/bin/python benchmarks/trial_gap.py --smoke    # a minute; checks the script runs
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path[:1]:  # run as a script: the repository's packages before benchmarks/eval.py
    sys.path.insert(0, str(REPO))

from mixture_search.files import atomic_write_json  # noqa: E402
from trainers.data.corpus import Corpus  # noqa: E402

RESULTS = REPO / "benchmarks" / "results" / "trial_gap.json"
FIGURES = (
    "wall_s",
    "cpu_s",
    "run_s",
    "runq_wait_s",
    "blocked_s",
    "slices",
    "nivcsw",
    "other_threads_cpu_s",
    "tokens_per_s",
)


def _schedstat() -> list[int]:
    return [int(x) for x in Path("/proc/thread-self/schedstat").read_text().split()]


def _usage(who: int) -> tuple[float, int]:
    r = resource.getrusage(who)
    return r.ru_utime + r.ru_stime, r.ru_nivcsw


def train_one(args: tuple[dict[str, float], str, int, str]) -> dict[str, float]:
    """One training, in whatever process and thread calls it; its thread's scheduler figures."""
    warnings.filterwarnings("ignore")
    # torch and megatron (through trainers.train): in the training process only
    import torch

    from mixture_search.mixture import Mixture
    from trainers.budget import TrainBudget
    from trainers.presets import preset
    from trainers.train import train

    weights, corpus, steps, out = args
    torch.set_num_threads(1)  # as a Ray trial of 1 CPU runs (OMP_NUM_THREADS=1)
    budget = TrainBudget.from_dict(
        {"steps": steps, "micro_batch": 4, "global_batch": 8, "eval_interval": steps, "eval_windows_per_domain": 4}
    )
    s0, p0, t0, started = (
        _schedstat(),
        _usage(resource.RUSAGE_SELF),
        _usage(resource.RUSAGE_THREAD),
        time.perf_counter(),
    )
    result = train(Mixture.from_dict(weights), corpus, preset("tiny_cpu", seq_len=128), budget, "megatron", out)
    wall = time.perf_counter() - started
    s1, p1, t1 = _schedstat(), _usage(resource.RUSAGE_SELF), _usage(resource.RUSAGE_THREAD)
    run, wait = (s1[0] - s0[0]) / 1e9, (s1[1] - s0[1]) / 1e9
    return {
        "wall_s": wall,
        "cpu_s": t1[0] - t0[0],  # the thread's user + system time (getrusage): the scheduler's run time, counted apart
        "run_s": run,
        "runq_wait_s": wait,
        "blocked_s": wall - run - wait,
        "slices": float(s1[2] - s0[2]),
        "nivcsw": float(t1[1] - t0[1]),
        "other_threads_cpu_s": (p1[0] - p0[0]) - (t1[0] - t0[0]),
        "tokens_per_s": float(result.tokens_per_s),
    }


def plain(jobs: list[tuple]) -> list[dict[str, float]]:
    with ProcessPoolExecutor(len(jobs), mp_context=get_context("spawn")) as pool:
        return list(pool.map(train_one, jobs))


def tuned(jobs: list[tuple]) -> list[dict[str, float]]:
    """The same trainings as Tune trials on a local Ray started as `mixsweep sweep` starts it."""
    import ray  # the Tune side only
    from ray import tune

    from flows.trials.local_ray import init_now
    from flows.trials.tune import trial_loggers

    os.environ["TUNE_DISABLE_AUTO_CALLBACK_LOGGERS"] = "1"
    init_now(None)  # the sweep's own start of a local Ray: its environment and options

    def trainable(config: dict[str, Any]) -> None:
        tune.report({"figures": json.dumps(train_one(tuple(config["job"])))})

    storage = tempfile.mkdtemp(prefix="trial-gap-")
    tuner = tune.Tuner(
        tune.with_resources(trainable, {"cpu": 1}),
        param_space={"job": tune.grid_search([list(j) for j in jobs])},
        tune_config=tune.TuneConfig(max_concurrent_trials=len(jobs), reuse_actors=True),
        run_config=tune.RunConfig(storage_path=storage, verbose=0, callbacks=trial_loggers()),
    )
    grid = tuner.fit()
    ray.shutdown()
    return [json.loads(grid[i].metrics["figures"]) for i in range(len(grid))]


def _side(side: str, corpus: str, steps: int) -> list[dict[str, float]]:
    """One side in a fresh process (neither inherits the other's imports or threads)."""
    out = subprocess.run(
        [sys.executable, __file__, "--side", side, "--corpus", corpus, "--steps", str(steps)],
        cwd=REPO,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
        capture_output=True,
        text=True,
        check=False,
    )
    if out.returncode != 0:
        raise SystemExit(f"the {side} side failed: {out.stderr[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def _jobs(corpus: str, steps: int, root: str | None = None) -> list[tuple]:
    domains = sorted(Corpus.load(corpus).domains)
    uniform = {d: 1.0 for d in domains}
    tilted = {d: 2.0 if i % 2 else 1.0 for i, d in enumerate(domains)}
    root = root or tempfile.mkdtemp(prefix="trial-gap-out-")
    return [(uniform, corpus, steps, f"{root}/a"), (tilted, corpus, steps, f"{root}/b")]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--corpus", default="runs/data/demo", help="a prepared corpus (default: the demo corpus)")
    ap.add_argument("--steps", type=int, default=300, help="training steps of each of the 2 trainings")
    ap.add_argument("--rounds", type=int, default=3, help="alternations of plain then Tune")
    ap.add_argument("--smoke", action="store_true", help="1 round of 20 steps; results not written")
    ap.add_argument("--out", type=Path, default=RESULTS)
    ap.add_argument("--side", choices=("plain", "tune"), help=argparse.SUPPRESS)  # internal: one side's process
    args = ap.parse_args()
    corpus = str((REPO / args.corpus).resolve())  # an absolute --corpus stays itself
    if args.side:
        print(json.dumps((plain if args.side == "plain" else tuned)(_jobs(corpus, args.steps))))
        return
    if args.smoke:
        args.steps, args.rounds = 20, 1
    sides: dict[str, list[dict[str, float]]] = {"plain": [], "tune": []}
    for r in range(args.rounds):
        for side in ("plain", "tune"):
            rows = _side(side, corpus, args.steps)
            sides[side].extend(rows)
            print(f"round {r + 1} {side}: " + ", ".join(f"{x['tokens_per_s']:,.0f} tokens/s" for x in rows), flush=True)
    mean = {s: {f: round(statistics.mean(x[f] for x in rows), 3) for f in FIGURES} for s, rows in sides.items()}
    report = {
        "benchmark": "per-token gap of a Ray Tune trial against plain processes, by the training thread's schedstat",
        "peer": "the same trainings in spawned plain processes (benchmarks/sweep.py's peer)",
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform()},
        "when": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "steps": args.steps,
        "rounds": args.rounds,
        "mean": mean,
        "tune_minus_plain": {f: round(mean["tune"][f] - mean["plain"][f], 3) for f in FIGURES},
        "tune_wall_vs_plain": round(mean["tune"]["wall_s"] / mean["plain"]["wall_s"], 4),
        "trainings": sides,
    }
    print(json.dumps({k: report[k] for k in ("mean", "tune_minus_plain", "tune_wall_vs_plain")}, indent=1))
    if not args.smoke:
        atomic_write_json(args.out, report, indent=1)
        print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
