"""Orchestration overhead: an 8-trial sweep through Prefect + Ray Tune + MLflow vs the same 8 trainings
called directly with the same parallelism.

1. `sweep`: the real local stack (Prefect server + MLflow server on free loopback ports, as `mixsweep
   up` starts them), then `mixsweep sweep SPEC` in a fresh process: one round of 8 mixtures, 2 trials at
   a time on Ray, each trial logged to MLflow, then the surrogate fit, ranking, plots and exports.
2. `direct` (the peer): a fresh process that trains the same 8 mixtures (read from the sweep's summary)
   with `trainers.train.train()` in a pool of 2 worker processes, into an empty folder, with the
   threads a Ray trial of 1 CPU gets (`OMP_NUM_THREADS=1` in its environment, as Ray sets it).
3. `sweep` again, as a second experiment into a fresh folder: the same 8 trainings again.
4. With `--pairs N`, steps 2 and 3 N times: sweep, peer, sweep, peer, ..., sweep.

The sweeps bracket each peer, so a machine whose speed drifts in one direction over a bracket slows or
speeds both sides alike: a bracket's ratio is the mean of its two sweeps over its peer. The speed of
these shared machines also jumps by 7-12% within minutes, which no single bracket cancels: the overhead
is the median of the brackets, each reported. Every side is timed from process start to exit, so
interpreter and import costs count on both sides; the servers' start-up is not counted (a stack serves
many sweeps). The ratio is the overhead (goal <= 1.10).

The per-trial training length is a flag. Its default, 600 steps (about a minute a trial on 2 cores), is
the shortest proxy length this project would decide with: its decision benchmark needs 450 steps before
the spread between mixtures clears the spread between seeds. A sweep's fixed costs (Prefect's import and
flow run, Ray's start, the final fit, plots and exports: about 16 s) weigh less as trials grow, and at
150 steps (16-20 s a trial) they are most of the overhead.

    .venv/bin/python benchmarks/sweep.py            # writes benchmarks/results/sweep.json
    .venv/bin/python benchmarks/sweep.py --pairs 3  # three bracketed peers, the median (about 30 min)
    .venv/bin/python benchmarks/sweep.py --smoke    # a couple of minutes; checks the script runs
    .venv/bin/python benchmarks/sweep.py --steps 150 --out benchmarks/results/sweep_150steps.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import warnings
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "benchmarks" / "results" / "sweep.json"
GOAL = 1.10
BIN = Path(sys.executable).parent


def _train_one(args: tuple) -> tuple[float, float, dict[str, float]]:
    """One direct training (in a pool worker): what a trial does, without Prefect, Ray or MLflow."""
    warnings.filterwarnings("ignore")
    # in the pool worker only, after the filter: the peer's parent process stays as light as the sweep's
    from mixture_search.mixture import Mixture  # worker only, as above
    from trainers.budget import TrainBudget  # worker only, as above
    from trainers.config import ProxyConfig  # worker only, as above
    from trainers.train import train  # torch: worker only, as above

    weights, corpus, proxy, budget, backend, out, threads = args
    import torch  # loaded by trainers.train already; worker only

    torch.set_num_threads(threads)  # as a Ray trial of `resources.cpus` CPUs runs (OMP_NUM_THREADS)
    started = time.perf_counter()
    mixture = Mixture.from_dict(weights)
    result = train(mixture, corpus, ProxyConfig.from_dict(proxy), TrainBudget.from_dict(budget), backend, out)
    assert result.final is not None
    return float(result.final.mean_bpb), float(result.tokens_per_s), _phases(result, time.perf_counter() - started)


def _phases(result: Any, call_s: float) -> dict[str, float]:
    """Where one training's time went: the caller's whole call (a trial: `run_trial` from its start to its
    report), `train()` from its start to its result, and the training steps within it."""
    steps_s = result.tokens / result.tokens_per_s if result.tokens_per_s > 0 else 0.0
    return {"call_s": call_s, "train_s": float(result.wall_time_s), "steps_s": steps_s}


def direct(job: dict) -> list[tuple[float, float, dict[str, float]]]:
    """The peer: the same trainings in a pool of `parallel` fresh processes."""
    args = [
        (w, job["corpus"], job["proxy"], job["budget"], job["backend"], job["out"], job["threads"])
        for w in job["mixtures"]
    ]
    with ProcessPoolExecutor(job["parallel"], mp_context=get_context("spawn")) as pool:
        return list(pool.map(_train_one, args))


def spec(corpus: Path, out: Path, trials: int, steps: int, parallel: int, name: str = "bench-overhead") -> dict:
    return {
        "name": name,
        "corpus": str(corpus),
        "search": {"sampler": "sobol", "adaptive": None, "rounds": 1, "per_round": trials, "proposal_samples": 5000},
        "proxy": {"preset": "tiny_cpu", "overrides": {"seq_len": 128}},
        "budget": {"steps": steps, "micro_batch": 4, "global_batch": 8, "eval_interval": max(steps // 2, 1),
                   "eval_windows_per_domain": 4},
        "backend": "megatron",
        "resources": {"cpus": 1},
        "max_concurrent": parallel,
        "confirm": {"enabled": False},  # the same trainings on both sides: no confirmation stage
        "mlflow": {"experiment": name},
        "output_dir": str(out),
    }  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--corpus", default="runs/data/demo", help="a prepared corpus (default: the demo corpus)")
    ap.add_argument("--trials", type=int, default=8)
    ap.add_argument(
        "--steps", type=int, default=600, help="training steps per trial (default: 600, a proxy that learns)"
    )
    ap.add_argument("--parallel", type=int, default=2, help="trials at a time, on both sides")
    ap.add_argument(
        "--pairs",
        type=int,
        default=1,
        help="peer runs, each between two sweeps (sweep, peer, sweep, peer, sweep, ...); the overhead is the "
        "median over the peers: more pairs, a figure less at the mercy of the machine's speed (default 1)",
    )
    ap.add_argument("--smoke", action="store_true", help="4 trials of 10 steps; results not written")
    ap.add_argument("--out", type=Path, default=RESULTS, help=f"where the JSON goes (default {RESULTS.name})")
    ap.add_argument("--direct", help=argparse.SUPPRESS)  # internal: the peer's process
    args = ap.parse_args()
    if args.direct:
        sys.path.insert(0, str(REPO))
        print(json.dumps(direct(json.loads(args.direct))))
        return
    if args.smoke:
        args.trials, args.steps = 4, 10
    sys.path.insert(0, str(REPO))
    # the driver's only: the --direct peer and its spawned workers (which import this file) skip them
    from benchmarks.load import mlflow_requests  # driver only, as above; needs REPO on sys.path
    from flows.stack.local import LocalStack, StackConfig, free_port  # driver only, as above
    from mixture_search.files import atomic_write  # driver only, as above
    from mixture_search.mixture import Mixture  # driver only, as above

    corpus = (REPO / args.corpus).resolve()
    with tempfile.TemporaryDirectory(prefix="mixsweep-bench-") as tmp:
        work = Path(tmp)
        stack = LocalStack(StackConfig(home=work / "stack", prefect_port=free_port(), mlflow_port=free_port()))
        stack.up()
        try:
            first = _sweep(stack, corpus, work / "sweep", "bench-overhead", args)
            requests = mlflow_requests(stack.cfg.home / "logs" / "mlflow-server.log")
            rows = first["rows"]
            job = {
                "mixtures": [dict(r["mixture"]) for r in rows],
                "corpus": str(corpus),
                "proxy": first["summary"]["proxy"],
                "budget": first["summary"]["budget"],
                "backend": "megatron",
                "parallel": args.parallel,
                "threads": 1,  # the spec's resources.cpus
            }
            sweeps, peers = [first], []
            for k in range(1, args.pairs + 1):  # each peer into an empty folder, each sweep into a fresh one
                peers.append(_direct({**job, "out": str(work / f"direct-{k}")}))
                sweeps.append(_sweep(stack, corpus, work / f"sweep-{k + 1}", f"bench-overhead-{k + 1}", args))
        finally:
            stack.down()
    peer = peers[0]
    peer_bpb = {Mixture(m).key: b for m, b in zip(job["mixtures"], peer["bpb"], strict=True)}
    missing = [r["mixture"] for sw in sweeps for r in sw["rows"] if Mixture(r["mixture"]).key not in peer_bpb]
    if missing:  # the same spec but its name: every sweep must train the same mixtures
        raise SystemExit(f"a later sweep trained other mixtures than the first: {missing[:2]}")
    bpb_pairs = [
        (r["metrics"]["val.bpb.mean"], peer_bpb[Mixture(r["mixture"]).key]) for sw in sweeps for r in sw["rows"]
    ] + [(b, a) for pe in peers[1:] for a, b in zip(peer["bpb"], pe["bpb"], strict=True)]
    trial_tps = [r["metrics"]["train.tokens_per_s"] for sw in sweeps for r in sw["rows"]]
    sweep_s = sum(sw["wall_s"] for sw in sweeps) / len(sweeps)
    direct_s = sum(pe["wall_s"] for pe in peers) / len(peers)
    bracketed = brackets(
        [sw["wall_s"] for sw in sweeps],
        [pe["wall_s"] for pe in peers],
        [_mean_tps(sw) for sw in sweeps],
        [_mean_tps(pe) for pe in peers],
    )
    summary, tree_cpu = first["summary"], first["tree_cpu"]
    flow = summary.get("timings_s", {})
    # where the (first) sweep's time went: the process outside the flow (interpreter, imports, the CLI's
    # own check of the spec, Prefect's flow-run start), each stage of the flow, and the trials' own wall time
    breakdown = {
        "process_outside_flow_s": round(first["wall_s"] - flow.get("total", 0.0), 2),
        **{f"flow.{k}_s": v for k, v in flow.items()},
        "ray_start_background_s": summary.get("ray_start_s"),
        "trial_wall_s_sum": round(sum(r["wall_s"] for r in rows), 2),
        # the same training inside a Ray trial and in a plain pool process: the trainers' own tokens/s
        "train_tokens_per_s_trial_mean": round(sum(trial_tps) / len(trial_tps), 1),
        "train_tokens_per_s_direct_mean": round(sum(peer["tps"]) / len(peer["tps"]), 1),
        # one training's time, mean over every sweep's trials and over every peer's trainings: the whole call
        # (a trial from its start to its report; the peer's call of train()), train() alone, and its steps
        "per_training_s_trial": _mean_phases([r["phases"] for sw in sweeps for r in sw["rows"]]),
        "per_training_s_direct": _mean_phases([ph for pe in peers for ph in pe["phases"]]),
        # CPU seconds, on a machine of `machine.cpus` cores shared by the trials: the sweep's own
        # process per flow stage (`process`: from its start), and each server during the sweep
        "sweep_process_cpu_s": summary.get("cpu_s", {}),
        "server_cpu_s_during_sweep": first["server_cpu"],
        # every process the sweep started, by kind (Ray's daemons, its trial workers, ...), sampled
        # while they ran: what shares the machine's cores with the trainings
        "sweep_tree_cpu_s": tree_cpu,
        "sweep_tree_cpu_s_total": round(sum(tree_cpu.values()), 2),
        "direct_tree_cpu_s": peer["tree_cpu"],
        "direct_tree_cpu_s_total": round(sum(peer["tree_cpu"].values()), 2),
        "mlflow_requests_per_trial": round(requests / max(len(rows), 1), 2),
        "evaluation_s": 0.0,  # this spec evaluates with validation loss only (no LightEval process)
    }
    report = {
        "benchmark": "sweep orchestration overhead",
        "peer": "the same trainings called directly (trainers.train.train in a process pool of the same size, "
        "1 thread each as in a Ray trial of 1 CPU)",
        "order": f"sweep, then {args.pairs} x (peer, the same sweep again into a fresh folder): two sweeps "
        "bracket each peer",
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform()},
        "trials": len(rows),
        "steps_per_trial": args.steps,
        "parallel": args.parallel,
        "sweep_s": round(sweep_s, 2),
        "sweep_s_each": [round(sw["wall_s"], 2) for sw in sweeps],
        "direct_s": round(direct_s, 2),
        "direct_s_each": [round(pe["wall_s"], 2) for pe in peers],
        **bracketed,
        "overhead_s_per_trial": round((sweep_s - direct_s) / max(len(rows), 1), 2),
        "breakdown": breakdown,
        # every run in order, in brief: which side lost time, and where (steps, fixed costs, other CPU)
        "sweeps_each": [_each(sw, sweep=True) for sw in sweeps],
        "peers_each": [_each(pe, sweep=False) for pe in peers],
        "max_rel_diff_bpb": max(abs(a - b) / abs(b) for a, b in bpb_pairs),  # every trial of every run
    }
    print(json.dumps(report, indent=2))
    if not args.smoke:
        atomic_write(args.out, json.dumps(report, indent=2) + "\n")
        print(f"wrote {args.out}")


def _sweep(stack: Any, corpus: Path, out: Path, name: str, args: argparse.Namespace) -> dict[str, Any]:
    """`mixsweep sweep` of the benchmark's spec in a fresh process on the running stack, timed from start to
    exit, with the CPU of every process it started and of the servers meanwhile."""
    out.mkdir(parents=True)
    spec_path = out.parent / f"{out.name}.json"
    spec_path.write_text(json.dumps(spec(corpus, out, args.trials, args.steps, args.parallel, name)))
    print(f"sweep {name}: {args.trials} trials x {args.steps} steps, {args.parallel} at a time", flush=True)
    servers = _server_processes(stack)
    server_cpu = _cpu_seconds(servers)
    machine_cpu = _machine_busy_s()
    t0 = time.perf_counter()
    env = {**os.environ, **stack.cfg.client_env()}
    proc = subprocess.Popen([str(BIN / "mixsweep"), "sweep", str(spec_path)], env=env, cwd=REPO)
    tree_cpu = _watch_tree(proc)
    wall_s = time.perf_counter() - t0
    machine_cpu = _machine_busy_s() - machine_cpu
    if proc.returncode != 0:
        raise SystemExit(f"the sweep {name} failed (exit {proc.returncode})")
    from trainers.result import TrainResult  # driver only, as in main()

    rows = [r for r in json.loads((out / "results.json").read_text()) if r["status"] == "finished"]
    for r in rows:  # each trial's phases, from the training's own result beside its checkpoint
        r["phases"] = _phases(TrainResult.load(Path(r["paths"]["run_dir"]) / "result.json"), r["wall_s"])
    return {
        "wall_s": wall_s,
        "tree_cpu": tree_cpu,
        "machine_cpu": machine_cpu,
        "server_cpu": {k: round(v - server_cpu.get(k, 0.0), 2) for k, v in _cpu_seconds(servers).items()},
        "summary": json.loads((out / "summary.json").read_text()),
        "rows": rows,
    }


def _direct(job: dict[str, Any]) -> dict[str, Any]:
    """The peer in a fresh process, timed from start to exit, with the threads of a Ray trial of
    `job["threads"]` CPUs: Ray sets OMP_NUM_THREADS so in each trial worker's environment."""
    print(f"direct: the same {len(job['mixtures'])} trainings, {job['parallel']} worker processes", flush=True)
    machine_cpu = _machine_busy_s()
    t0 = time.perf_counter()
    peer = subprocess.Popen(
        [sys.executable, __file__, "--direct", json.dumps(job)],
        cwd=REPO,
        env={**os.environ, "OMP_NUM_THREADS": str(job["threads"])},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    out: dict[str, str] = {}
    reader = threading.Thread(target=lambda: out.update(zip(("out", "err"), peer.communicate(), strict=True)))
    reader.start()
    tree_cpu = _watch_tree(peer)
    reader.join()
    wall_s = time.perf_counter() - t0
    machine_cpu = _machine_busy_s() - machine_cpu
    if peer.returncode != 0:
        raise SystemExit(f"the direct trainings failed: {out['err'][-2000:]}")
    bpb, tps, phases = zip(*json.loads(out["out"].strip().splitlines()[-1]), strict=True)
    return {
        "wall_s": wall_s,
        "tree_cpu": tree_cpu,
        "machine_cpu": machine_cpu,
        "bpb": bpb,
        "tps": tps,
        "phases": list(phases),
    }


def _mean_phases(phases: list[dict[str, float]]) -> dict[str, float]:
    return {k: round(statistics.fmean(p[k] for p in phases), 2) for k in phases[0]}


def judge(ratio: float, trial_tps: float, peer_tps: float) -> dict[str, Any]:
    """The goal, read with the machine's drift in mind. The sides run one after the other, and a shared
    machine's speed drifts between them (the two sweeps around the peer cancel a steady drift, not a
    sudden one). The sweep's trials train beside everything the sweep adds, so they are never faster
    per token than the same trainings alone: when the peer trained slower than they did, the machine
    slowed down under the peer, and a ratio at or under the goal is not counted as met."""
    drifted = peer_tps < trial_tps
    verdict = (
        f"{ratio:.3f}x: the peer trained slower per token than the sweep's own trials "
        f"({peer_tps:,.0f} vs {trial_tps:,.0f} tokens/s), so the machine slowed between the two sides; "
        "the ratio is flattered and the goal is not counted as met"
        if drifted
        else f"{ratio:.3f}x against the goal of {GOAL}x"
    )
    return {"goal_met": ratio <= GOAL and not drifted, "peer_slower_than_trials": drifted, "verdict": verdict}


def brackets(
    sweep_s: list[float], peer_s: list[float], sweep_tps: list[float], peer_tps: list[float]
) -> dict[str, Any]:
    """The overhead of runs in the order sweep, peer, sweep, ..., peer, sweep (wall seconds, and each run's
    mean training tokens/s). Bracket k is peer k between sweeps k and k+1: its ratio is their mean over the
    peer, judged by `judge` against the mean tokens/s of their trials. A bracket whose peer was flattered
    (it trained slower per token than the trials around it) is not counted. The overhead is the median of
    the counted brackets (of all of them when none counts), and the goal is met when that median is."""
    if len(sweep_s) != len(peer_s) + 1 or len(sweep_tps) != len(sweep_s) or len(peer_tps) != len(peer_s):
        raise ValueError("runs go sweep, peer, sweep, ..., peer, sweep: one sweep more than peers")
    each = []
    for k, peer in enumerate(peer_s):
        ratio = (sweep_s[k] + sweep_s[k + 1]) / 2 / peer
        each.append((ratio, judge(ratio, (sweep_tps[k] + sweep_tps[k + 1]) / 2, peer_tps[k])))
    counted = [ratio for ratio, verdict in each if not verdict["peer_slower_than_trials"]]
    overall = statistics.median(counted or [ratio for ratio, _ in each])
    flattered = len(each) - len(counted)
    return {
        "overhead_ratio": round(overall, 3),
        "overhead_ratio_brackets": [round(ratio, 3) for ratio, _ in each],
        "brackets_counted": len(counted),
        "goal": f"<= {GOAL}",
        "goal_met": bool(counted) and overall <= GOAL,
        "peer_slower_than_trials": [verdict["peer_slower_than_trials"] for _, verdict in each],
        "verdict": f"{overall:.3f}x (median of {len(counted or each)} bracketed peer runs) against the goal of "
        f"{GOAL}x"
        + (f"; {flattered} flattered bracket(s) not counted" if flattered and counted else "")
        + ("; every bracket was flattered, so the goal is not counted as met" if not counted else ""),
        "verdict_each": [verdict["verdict"] for _, verdict in each],
    }


def _server_processes(stack: Any) -> dict[str, list[Any]]:
    """The stack's running processes (psutil), each with its children (e.g. MLflow's uvicorn)."""
    import psutil  # driver only, as above

    procs: dict[str, list[Any]] = {}
    for row in stack.status():
        if row["state"] != "running":
            continue
        try:
            p = psutil.Process(int(row["pid"]))
            procs[str(row["name"])] = [p, *p.children(recursive=True)]
        except psutil.Error:
            continue
    return procs


def _watch_tree(proc: subprocess.Popen[Any], every: float = 0.25) -> dict[str, float]:
    """Wait for `proc`; meanwhile sample the CPU seconds of it and every descendant, summed by kind
    (`_kind`). A process that ends between two samples loses at most its last `every` seconds."""
    import psutil  # driver only, as above

    last: dict[int, tuple[str, float]] = {}
    kinds: dict[int, str] = {}
    root = psutil.Process(proc.pid)
    while proc.poll() is None:
        try:
            tree = [root, *root.children(recursive=True)]
        except psutil.Error:
            tree = []
        for p in tree:
            try:
                with p.oneshot():
                    cpu = p.cpu_times()
                    cmd = p.cmdline()
                    # named again at every sample: a child is seen first as a copy of its parent (forked,
                    # not yet exec'd) and a Ray worker sets its title later; an exiting process has no
                    # command line any more and keeps its name
                    if cmd or p.pid not in kinds:
                        kinds[p.pid] = _kind(p.name(), cmd, kinds.get(p.ppid(), "?"))
                    last[p.pid] = (kinds[p.pid], cpu.user + cpu.system)
            except psutil.Error:
                continue
        time.sleep(every)
    out: dict[str, float] = {}
    for kind, cpu in last.values():
        out[kind] = round(out.get(kind, 0.0) + cpu, 2)
    return dict(sorted(out.items(), key=lambda kv: -kv[1]))


def _kind(name: str, cmd: list[str], parent: str) -> str:
    """What a process is: Ray's process title (`ray::ImplicitFunc` runs the trials), a Python
    script's name, a multiprocessing child named for its parent, or the executable."""
    title = cmd[0] if cmd else name
    if title.startswith("ray::"):
        return "ray::ImplicitFunc (trials)" if title.startswith("ray::ImplicitFu") else title.split()[0]
    if any(c.startswith("from multiprocessing") for c in cmd[1:4]):
        return f"{parent} > multiprocessing child"
    if Path(title).name.startswith("python") and len(cmd) > 1:
        if "-c" in cmd[1:3]:
            return "python -c"
        return Path(next((c for c in cmd[1:] if not c.startswith("-")), cmd[1])).name
    return Path(title).name


def _machine_busy_s() -> float:
    """CPU seconds the whole machine has spent busy (every core, every process) since boot."""
    import psutil  # driver only, as above

    t = psutil.cpu_times()
    return float(t.user + t.nice + t.system + getattr(t, "irq", 0.0) + getattr(t, "softirq", 0.0))


def _mean_tps(run: dict[str, Any]) -> float:
    """A run's mean training tokens/s: its trials' (a sweep: `rows`) or its trainings' (a peer: `tps`)."""
    return statistics.fmean([r["metrics"]["train.tokens_per_s"] for r in run["rows"]] if "rows" in run else run["tps"])


def _each(run: dict[str, Any], sweep: bool) -> dict[str, Any]:
    """One run (a sweep or a peer) in brief: its wall time, its trainings' mean tokens/s, the CPU of its
    own process tree, and the CPU the machine spent outside that tree meanwhile (the servers, the
    benchmark's own sampling, and anything else on the machine)."""
    tree = sum(run["tree_cpu"].values())
    row: dict[str, Any] = {"wall_s": round(run["wall_s"], 2)}
    if sweep:
        flow = run["summary"].get("timings_s", {})
        row["outside_flow_s"] = round(run["wall_s"] - flow.get("total", 0.0), 2)
        row |= {f"flow.{k}_s": flow[k] for k in ("trials", "finish", "cv") if k in flow}
    phases = [r["phases"] for r in run["rows"]] if sweep else run["phases"]
    row["tokens_per_s_mean"] = round(_mean_tps(run), 1)
    row["steps_s_mean"] = round(statistics.fmean(ph["steps_s"] for ph in phases), 2)
    row["tree_cpu_s"] = round(tree, 2)
    row["outside_tree_cpu_s"] = round(run["machine_cpu"] - tree, 2)
    return row


def _cpu_seconds(procs: dict[str, list[Any]]) -> dict[str, float]:
    """CPU seconds (user + system) of each group of processes so far."""
    import psutil  # driver only, as above

    out: dict[str, float] = {}
    for name, group in procs.items():
        total = 0.0
        for p in group:
            try:
                t = p.cpu_times()
                total += t.user + t.system
            except psutil.Error:
                continue
        out[name] = total
    return out


if __name__ == "__main__":
    main()
