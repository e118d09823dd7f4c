"""Load: a sweep of 500 candidate mixtures through the real path (the Prefect flow `sweep`, Ray Tune
trials, one MLflow child run each), with a tiny trainable: the real trainer (`trainers.train`,
Megatron-Core) on a 1-layer, 16-wide proxy for 1 step, so what is measured is the sweep's own
overhead (scheduling, tracking, reporting), not training.

Measured: wall time and trials/s; the driver's RSS (the process running the flow) and the whole
process tree's (Ray's GCS, raylet and trial workers included) sampled every half second next to the
number of trials done, so memory can be seen to stay flat as trials accumulate; and MLflow's HTTP
requests per trial, counted in the MLflow server's access log.

    .venv/bin/python benchmarks/load.py                       # 500 mixtures, own stack; writes benchmarks/results/load.json
    .venv/bin/python benchmarks/load.py --mixtures 50 --out /tmp/load.json
    .venv/bin/python benchmarks/load.py --stack-home runs/stack   # on a running stack (`mixsweep up`)
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import psutil

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from flows.stack.local import LocalStack, StackConfig, free_port  # noqa: E402

TINY_PROXY = {
    "num_layers": 1,
    "hidden_size": 16,
    "num_attention_heads": 2,
    "num_query_groups": 1,
    "ffn_hidden_size": 32,
    "seq_len": 16,
}
TINY_BUDGET = {"steps": 1, "micro_batch": 1, "global_batch": 1, "eval_interval": 1, "eval_windows_per_domain": 1}
# an HTTP request in the MLflow server's (uvicorn) access log
REQUEST = re.compile(r'"(GET|POST|PATCH|PUT|DELETE) /(ajax-)?api/')


def load_spec(name: str, corpus: Path, out: Path, mixtures: int, rounds: int) -> dict[str, Any]:
    per_round = -(-mixtures // rounds)
    return {
        "name": name,
        "corpus": str(corpus),
        "search": {
            "sampler": "dirichlet",
            "adaptive": "adaptive",
            "rounds": rounds,
            "per_round": per_round,
            "proposal_samples": 2000,
            # the sweep's machinery is measured, not the surrogate: `auto` cross-validates every
            # candidate model inside a cross-validation, minutes at hundreds of trials on 2 cores
            "surrogate": "linear",
        },
        "proxy": {"preset": "tiny_cpu", "overrides": TINY_PROXY},
        "budget": TINY_BUDGET,
        "backend": "megatron",
        "max_concurrent": 2,
        "confirm": {"enabled": False},  # the sweep's machinery at scale, not a confirmation
        "mlflow": {"experiment": f"load-{name}"},
        "output_dir": str(out),
    }


class Sampler(threading.Thread):
    """RSS of the driver and of its whole process tree, with the trials done, every `every` seconds."""

    def __init__(self, pid: int, trials_dir: Path, every: float = 0.5) -> None:
        super().__init__(daemon=True)
        self.proc = psutil.Process(pid)
        self.trials_dir = trials_dir
        self.every = every
        self.samples: list[tuple[float, float, float, int]] = []  # (s, driver MB, tree MB, trials done)
        self.stop = threading.Event()
        self.t0 = time.monotonic()

    def run(self) -> None:
        while not self.stop.is_set():
            try:
                driver = self.proc.memory_info().rss
                tree = driver
                for child in self.proc.children(recursive=True):
                    try:
                        tree += child.memory_info().rss
                    except psutil.Error:
                        continue
            except psutil.Error:
                return
            if driver == 0:  # exited (a zombie reports no memory)
                return
            done = len(list(self.trials_dir.glob("*/result.json"))) if self.trials_dir.is_dir() else 0
            self.samples.append((round(time.monotonic() - self.t0, 2), driver / 2**20, tree / 2**20, done))
            self.stop.wait(self.every)


def mlflow_requests(log: Path) -> int:
    if not log.is_file():
        return 0
    with log.open(errors="replace") as fh:
        return sum(1 for line in fh if REQUEST.search(line))


def growth_per_100(samples: list[tuple[float, float, float, int]], column: int) -> float | None:
    """Least-squares slope of RSS (MB) against trials done over the second half of the trials, per 100
    trials: ~0 when memory stays flat (the first half includes start-up and imports)."""
    last = samples[-1][3] if samples else 0
    pts = [(s[3], s[column]) for s in samples if s[3] >= last / 2 and s[3] > 0]
    if len({x for x, _ in pts}) < 3:
        return None
    x, y = np.array(pts, dtype=float).T
    return float(np.polyfit(x, y, 1)[0] * 100)


def run(stack: LocalStack, corpus: Path, work: Path, *, mixtures: int, rounds: int, name: str = "load") -> dict:
    """One sweep of `mixtures` candidates on `stack`; returns the figures."""
    out = work / name
    spec = load_spec(name, corpus, out, mixtures, rounds)
    spec_file = work / f"{name}.json"
    spec_file.write_text(json.dumps(spec))
    log = work / f"{name}.log"
    mlflow_log = stack.cfg.home / "logs" / "mlflow-server.log"
    requests_before = mlflow_requests(mlflow_log)
    env = {**os.environ, **stack.cfg.client_env()}
    t0 = time.monotonic()
    with log.open("wb") as fh:
        proc = subprocess.Popen(
            [str(Path(sys.executable).parent / "mixsweep"), "sweep", str(spec_file)],
            env=env,
            stdout=fh,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    sampler = Sampler(proc.pid, out / "trials")
    sampler.start()
    rc = proc.wait()
    wall = time.monotonic() - t0
    sampler.stop.set()
    sampler.join()
    if rc != 0:
        raise RuntimeError(f"the sweep failed (exit {rc}): {log.read_text(errors='replace')[-3000:]}")
    time.sleep(1)  # the access log is written after each response
    requests = mlflow_requests(mlflow_log) - requests_before
    results = json.loads((out / "results.json").read_text())
    finished = sum(r["status"] == "finished" for r in results)
    trial_walls = sorted(float(r.get("wall_s", 0.0)) for r in results)
    samples = sampler.samples
    step = max(1, len(samples) // 200)  # at most ~200 samples in the JSON
    return {
        "mixtures": mixtures,
        "rounds": rounds,
        "trials": len(results),
        "finished": finished,
        "wall_s": round(wall, 1),
        "trials_per_s": round(len(results) / wall, 3),
        "trial_wall_s_median": round(trial_walls[len(trial_walls) // 2], 3) if trial_walls else None,
        "driver_rss_mb": {
            "peak": round(max(s[1] for s in samples), 1),
            "final": round(samples[-1][1], 1),
            "at_half_of_trials": round(next(s[1] for s in samples if s[3] >= len(results) / 2), 1),
            "growth_per_100_trials": _round(growth_per_100(samples, 1)),
        },
        "tree_rss_mb": {
            "peak": round(max(s[2] for s in samples), 1),
            "final": round(samples[-1][2], 1),
            "growth_per_100_trials": _round(growth_per_100(samples, 2)),
        },
        "mlflow_requests": requests,
        "mlflow_requests_per_trial": round(requests / max(1, len(results)), 2),
        "samples": [
            {"t_s": s[0], "driver_mb": round(s[1], 1), "tree_mb": round(s[2], 1), "trials_done": s[3]}
            for s in samples[::step]
        ],
        "spec": {"proxy": TINY_PROXY, "budget": TINY_BUDGET, "max_concurrent": spec["max_concurrent"]},
    }


def _round(x: float | None) -> float | None:
    return None if x is None else round(x, 2)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--mixtures", type=int, default=500)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--stack-home", type=Path, help="a running stack's home (default: start one, stop it after)")
    ap.add_argument("--corpus", type=Path, help="a prepared corpus (default: a tiny generated one)")
    ap.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "load.json")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="mixsweep-load-") as tmp:
        work = Path(tmp)
        corpus = args.corpus
        if corpus is None:
            from tests.data_support import build_tiny_corpus  # torch: only without --corpus; sweep.py imports us

            corpus = build_tiny_corpus(work / "corpus")
        own = args.stack_home is None
        stack = (
            LocalStack(StackConfig(home=work / "stack", prefect_port=free_port(), mlflow_port=free_port()))
            if own
            else LocalStack.at(args.stack_home)
        )
        try:
            if own:
                stack.up(deploy=False)
            figures = run(stack, corpus, work, mixtures=args.mixtures, rounds=args.rounds)
        finally:
            if own:
                stack.down()
    figures["machine"] = {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(figures, indent=1) + "\n")
    brief = {k: v for k, v in figures.items() if k not in ("samples", "spec", "machine")}
    print(json.dumps(brief, indent=1))


if __name__ == "__main__":
    main()
