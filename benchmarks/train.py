"""Training throughput: the Megatron-Core and DeepSpeed backends vs a plain PyTorch loop, one run.

All three train the identical model shape on the identical token batches (fp32): the plain loop is
`trainers.models.gpt.GPT` + `torch.optim.AdamW` + gradient clipping, written out here with nothing
else; the backends run exactly the `Engine.train_step` that `trainers.train.train()` drives. Rounds
are interleaved with a rotating order, and each backend's ratio to the plain loop is taken within a
round, then the median over rounds, so load from other processes on a shared machine cancels out as
far as it can. Two passes: one thread timed by process CPU time (a single thread does not spin-wait,
so other load barely moves it), and all threads timed by the wall clock.

Achieved FLOP/s (model FLOPs, `ProxyConfig.flops_per_token`) is compared with this machine's
matmul peak, measured here as the best fp32 `torch.mm` rate over a few sizes.

    .venv/bin/python benchmarks/train.py            # writes benchmarks/results/train.json
    .venv/bin/python benchmarks/train.py --smoke    # seconds; checks the script runs
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import torch

warnings.filterwarnings("ignore", message=".*(Transformer Engine|Apex).*not installed.*")

from mixture_search.files import atomic_write_json  # noqa: E402
from trainers.backends.deepspeed import DeepSpeedBackend  # noqa: E402
from trainers.backends.megatron import MegatronBackend  # noqa: E402
from trainers.budget import TrainBudget  # noqa: E402
from trainers.config import ProxyConfig  # noqa: E402
from trainers.distributed import Parallelism, process_group  # noqa: E402
from trainers.models.gpt import GPT  # noqa: E402
from trainers.presets import deepseek_v3_moe  # noqa: E402

RESULTS = Path(__file__).parent / "results" / "train.json"
GOAL = 0.95  # each backend >= 0.95x the plain loop


def shapes(smoke: bool) -> dict[str, ProxyConfig]:
    """STACK-FACTS' measurement shape: 4 layers, hidden 192, seq 256, batch 8, vocab 8192."""
    seq = 64 if smoke else 256
    dense = ProxyConfig(
        name="bench_dense",
        num_layers=2 if smoke else 4,
        hidden_size=192,
        num_attention_heads=6,
        num_query_groups=2,
        ffn_hidden_size=512,
        seq_len=seq,
        vocab_size=8192,
    )
    moe = dense.replace(name="bench_moe", moe=deepseek_v3_moe(num_experts=8, expert_ffn=256))
    return {"dense": dense, "moe": moe}


def matmul_peak(smoke: bool) -> dict[str, float]:
    """Best fp32 GEMM rate over a few square sizes (FLOP/s = 2 n^3 / t)."""
    best: dict[str, float] = {}
    for n in (512, 1024) if smoke else (1024, 2048, 3072):
        a, b = torch.randn(n, n), torch.randn(n, n)
        torch.mm(a, b)
        rates = []
        for _ in range(3 if smoke else 8):
            t0 = time.perf_counter()
            torch.mm(a, b)
            rates.append(2 * n**3 / (time.perf_counter() - t0))
        best[str(n)] = max(rates)
    return best


class PlainLoop:
    """The peer: the same model and optimizer, no framework."""

    def __init__(self, proxy: ProxyConfig, budget: TrainBudget) -> None:
        torch.manual_seed(budget.seed)
        self.model = GPT(proxy)
        self.budget = budget
        params = list(self.model.parameters())
        self.opt = torch.optim.AdamW(
            [
                {"params": [p for p in params if p.dim() >= 2], "weight_decay": budget.weight_decay},
                {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0},
            ],
            lr=budget.lr,
            betas=(budget.adam_beta1, budget.adam_beta2),
            foreach=True,
        )

    def train_step(self, batches: list[torch.Tensor], lr: float) -> float:
        self.model.train()
        for group in self.opt.param_groups:
            group["lr"] = lr
        total = 0.0
        for tokens in batches:
            loss, aux = self.model(tokens[:, :-1], tokens[:, 1:])
            loss = loss.mean()
            ((loss + aux) / len(batches)).backward()
            total += float(loss.detach())
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.budget.grad_clip, foreach=True)
        self.opt.step()
        self.opt.zero_grad(set_to_none=True)
        self.model.update_expert_bias()
        return total / len(batches)


def _rounds(runners: dict, batches: list[torch.Tensor], *, steps: int, rounds: int, warmup: int, tokens: int) -> dict:
    """Per round, every runner once, the order rotating round to round; returns tokens/s per round
    by wall clock and by process CPU time."""
    for run in runners.values():
        for i in range(warmup):
            run([batches[i % len(batches)]], 1e-3)
    names = list(runners)
    wall: dict[str, list[float]] = {name: [] for name in names}
    cpu: dict[str, list[float]] = {name: [] for name in names}
    for r in range(rounds):
        for name in names[r % len(names) :] + names[: r % len(names)]:
            t0, c0 = time.perf_counter(), time.process_time()
            for i in range(steps):
                runners[name]([batches[(r * steps + i) % len(batches)]], 1e-3)
            wall[name].append(steps * tokens / (time.perf_counter() - t0))
            cpu[name].append(steps * tokens / (time.process_time() - c0))
    return {"wall": wall, "cpu": cpu}


def _summary(per_round: dict[str, list[float]]) -> dict:
    """Median tokens/s, and the median over rounds of each backend's ratio to the plain loop measured
    in the same round (paired, so load that hits a whole round cancels out)."""
    plain = per_round["plain_pytorch"]
    return {
        "tokens_per_s": {k: round(statistics.median(v), 1) for k, v in per_round.items()},
        "vs_plain": {
            k: round(statistics.median(x / p for x, p in zip(v, plain)), 3)
            for k, v in per_round.items()
            if k != "plain_pytorch"
        },
        "rounds": {k: [round(x, 1) for x in v] for k, v in per_round.items()},
    }


def measure(shape: str, proxy: ProxyConfig, *, steps: int, rounds: int, warmup: int, threads: int) -> dict:
    """Two passes of interleaved rounds over the same batches: one thread timed by process CPU time
    (robust to other processes on a shared machine: a single thread does not spin-wait), and all
    threads timed by the wall clock."""
    budget = TrainBudget(steps=10**6, micro_batch=8, global_batch=8, lr=1e-3, seed=0)
    g = torch.Generator().manual_seed(0)
    batches = [torch.randint(0, proxy.vocab, (8, proxy.seq_len + 1), generator=g) for _ in range(4)]
    tokens_per_step = budget.global_batch * proxy.seq_len
    with process_group() as world:
        runners: dict[str, Callable[[list[torch.Tensor], float], object]] = {}
        plain = PlainLoop(proxy, budget)
        runners["plain_pytorch"] = plain.train_step
        megatron = MegatronBackend().build(proxy, budget, Parallelism(), world)
        runners["megatron"] = megatron.train_step
        deepspeed = DeepSpeedBackend(zero_stage=0).build(proxy, budget, Parallelism(), world)
        runners["deepspeed"] = deepspeed.train_step
        try:
            torch.set_num_threads(1)
            one = _rounds(runners, batches, steps=steps, rounds=rounds, warmup=warmup, tokens=tokens_per_step)
            torch.set_num_threads(threads)
            many = _rounds(runners, batches, steps=steps, rounds=rounds, warmup=warmup, tokens=tokens_per_step)
        finally:
            megatron.close()
            deepspeed.close()
    fpt = proxy.flops_per_token()
    cpu1 = _summary(one["cpu"])
    wall = _summary(many["wall"])
    wall["achieved_flops_per_s"] = {k: round(v * fpt) for k, v in wall["tokens_per_s"].items()}
    out: dict = {
        "proxy": proxy.describe(),
        "params": proxy.param_counts().total,
        "flops_per_token": fpt,
        "tokens_per_step": tokens_per_step,
        "one_thread_cpu_time": cpu1,
        f"{threads}_threads_wall_clock": wall,
    }
    for label, part in (("1 thread, CPU time", cpu1), (f"{threads} threads, wall", wall)):
        rates = ", ".join(f"{k} {v:,.0f}" for k, v in part["tokens_per_s"].items())
        print(f"[{shape}] {label}: {rates} tok/s; vs plain (paired median) {part['vs_plain']}")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--smoke", action="store_true", help="tiny sizes, seconds; does not overwrite the results")
    parser.add_argument("--steps", type=int, default=2, help="timed steps per backend per round")
    parser.add_argument("--rounds", type=int, default=12, help="interleaved rounds per pass")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    if args.smoke:
        args.steps, args.rounds, args.warmup = 1, 2, 1
    out_path = args.out or (Path("/tmp/mixsweep_train_bench_smoke.json") if args.smoke else RESULTS)
    threads = torch.get_num_threads()
    peak = matmul_peak(args.smoke)
    peak_flops = max(peak.values())
    print(f"matmul peak (fp32, {threads} threads): {peak_flops / 1e9:.1f} GFLOP/s")
    results = {}
    for shape, proxy in shapes(args.smoke).items():
        r = measure(shape, proxy, steps=args.steps, rounds=args.rounds, warmup=args.warmup, threads=threads)
        wall = r[f"{threads}_threads_wall_clock"]
        wall["fraction_of_matmul_peak"] = {k: round(v / peak_flops, 3) for k, v in wall["achieved_flops_per_s"].items()}
        r["meets_goal"] = {
            k: r["one_thread_cpu_time"]["vs_plain"][k] >= GOAL and wall["vs_plain"][k] >= GOAL
            for k in r["one_thread_cpu_time"]["vs_plain"]
        }
        results[shape] = r
    report = {
        "benchmark": "benchmarks/train.py",
        "what": "training tokens/s of the Megatron-Core and DeepSpeed backends vs a plain PyTorch loop, same model shape and batches",
        "goal": f"each backend >= {GOAL}x the plain loop in the same run",
        "date": time.strftime("%Y-%m-%d %H:%M:%S"),
        "machine": {
            "cpu_count": os.cpu_count(),
            "torch_threads": torch.get_num_threads(),
            "load_average_1m_at_end": os.getloadavg()[0],
            "python": platform.python_version(),
            "torch": torch.__version__,
            "device": "cpu (no GPU on this machine; the GPU paths were not run)",
        },
        "settings": {"dtype": "float32", "micro_batch": 8, "steps_per_round": args.steps, "rounds": args.rounds},
        "method": (
            "interleaved rounds (order rotating); pass 1: one torch thread, tokens per second of process CPU "
            "time, robust to other load on a shared machine; pass 2: all threads, wall clock; vs_plain is the "
            "median over rounds of backend / plain loop in the same round; a backend meets the goal when both "
            "ratios are >= the goal"
        ),
        "matmul_peak_flops_per_s": round(peak_flops),
        "matmul_flops_per_s_by_size": {k: round(v) for k, v in peak.items()},
        "shapes": results,
    }
    atomic_write_json(out_path, report)
    print(f"wrote {out_path}")


if __name__ == "__main__":
    main()
