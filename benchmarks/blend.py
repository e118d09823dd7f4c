"""Blending: our engine vs megatron-core's compiled helper, HF `interleave_datasets` and an EasyDeL-style block
mixer, all in one run on this machine; then token delivery through the blend vs megatron-core's BlendedDataset +
GPTDataset on the same indexed files.

1. Build throughput and accuracy, 8 domains with weights [7, 5, 4, 3, 2, 1.5, 1, 0.5] / 24, 10M samples:
   samples/s of building the domain sequence, the max share error |count/n - w| at prefixes 1k/10k/100k, and the
   largest drift |count - w n| in samples over every prefix. Those weights are ratios of small integers, which our
   engine turns into one exact repeating period; the same weights with a 1e-6 relative perturbation are general
   floats and take its split-tree path (`trainers/data/splits.py`): that case is `general_vs_megatron`, our
   samples/s over megatron-core's on the same weights and size, with its largest prefix drift.
2. Schedules, which Megatron lacks: 0.2/0.8 -> 0.5/0.5 linearly over 10,000 optimizer steps of 512 samples
   (EasyDeL's example), ours vs the block mixer evaluating `get_weights(step)` per block.
3. Token delivery: tokens/s reading `seq_len + 1` windows through the blend, ours (`BlendedSequenceDataset`) vs
   megatron-core's `BlendedMegatronDatasetBuilder(GPTDataset)` on the same files, same weights.

The peers: Megatron's helper is its real compiled `build_blending_indices`; HF is the real `datasets`
`interleave_datasets` (map-style, probabilities, seed); EasyDeL is not installable here, so its block mixer is
written from its documented semantics (blocks of `block_size` samples, per-block counts rounded, shuffled within
the block). Rounds are repeated and the median counts (the machine is shared).

    .venv/bin/python benchmarks/blend.py            # writes benchmarks/results/blend.json
    .venv/bin/python benchmarks/blend.py --smoke    # seconds; checks the script runs
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

warnings.filterwarnings("ignore")

from mixture_search.files import atomic_write_json  # noqa: E402
from mixture_search.mixture import Mixture  # noqa: E402
from trainers.data.engine import exact_stream, max_drift, megatron_stream  # noqa: E402
from trainers.data.schedule import Targets, WeightSchedule  # noqa: E402

RESULTS = Path(__file__).parent / "results" / "blend.json"
WEIGHTS = np.array([7, 5, 4, 3, 2, 1.5, 1, 0.5])
PREFIXES = (1_000, 10_000, 100_000)
EASYDEL_BLOCK = 1000


def timed(fn: Callable[[], Any], rounds: int) -> tuple[float, Any]:
    times, out = [], None
    for _ in range(rounds):
        t = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times), out


def share_errors(unit: np.ndarray, targets: Targets) -> dict[str, float]:
    out = {}
    for n in PREFIXES:
        if n > len(unit):
            continue
        counts = np.bincount(unit[:n].astype(np.int64), minlength=targets.domains)
        out[str(n)] = float(np.max(np.abs(counts / n - targets.at(np.array([n]))[0] / n)))
    return out


def hf_parts(weights: np.ndarray, n: int) -> list[Any]:
    """One map-style `datasets.Dataset` per domain, each with enough rows for n samples (built off the clock)."""
    from datasets import Dataset

    w = weights / weights.sum()
    return [Dataset.from_dict({"d": np.full(int(n * wi) + 64, i, dtype=np.int16)}) for i, wi in enumerate(w)]


def hf_interleave(parts: list[Any], weights: np.ndarray) -> Any:
    """`datasets.interleave_datasets` with probabilities and a seed: builds the interleaved index mapping."""
    from datasets import interleave_datasets

    w = weights / weights.sum()
    return interleave_datasets(parts, probabilities=w.tolist(), seed=0, stopping_strategy="first_exhausted")


def hf_domains(mixed: Any, n: int) -> np.ndarray:
    """The domain of each of the first n interleaved rows (read off the clock: HF's row access is slow)."""
    return np.asarray(mixed.with_format("numpy")["d"][:n], dtype=np.int16)


def easydel_blocks(get_weights: Callable[[int], np.ndarray], n: int, block: int, samples_per_step: int) -> np.ndarray:
    """EasyDeL-style block mixer: each block of `block` samples takes round(w * block) of each domain (weights
    from `get_weights(step)` at the block's first step), shuffled within the block."""
    rng = np.random.default_rng(0)
    out = []
    total = 0
    while total < n:
        w = get_weights(total // samples_per_step)
        counts = np.round(w * block).astype(np.int64)
        blk = np.repeat(np.arange(len(w), dtype=np.int16), counts)
        rng.shuffle(blk)
        out.append(blk)
        total += len(blk)
    return np.concatenate(out)[:n]


def bench_static(n: int, rounds: int, hf_n: int) -> dict[str, Any]:
    w = WEIGHTS / WEIGHTS.sum()
    targets = Targets.from_segments(np.array([0]), w[None, :])
    perturbed = w * (1 + 1e-6 * np.random.default_rng(0).standard_normal(len(w)))
    perturbed /= perturbed.sum()
    ptargets = Targets.from_segments(np.array([0]), perturbed[None, :])
    rows: dict[str, Any] = {}

    def row(name: str, seconds: float, unit: np.ndarray, tg: Targets, samples: int) -> None:
        rows[name] = {
            "samples": samples,
            "seconds": seconds,
            "samples_per_s": samples / seconds,
            "max_share_error": share_errors(unit, tg),
            "max_drift_samples": max_drift(unit, tg),
        }
        print(f"  {name:<34} {samples / seconds / 1e6:9.2f} M samples/s   drift {rows[name]['max_drift_samples']:.3f}")

    megatron_stream(w, 1000)  # imports and first calls outside the clock
    exact_stream(targets, 1000)
    exact_stream(ptargets, 1000)
    t_meg, (u_meg, _) = timed(lambda: megatron_stream(w, n), rounds)
    row("megatron_helper", t_meg, u_meg, targets, n)
    t_ours, (u_ours, _) = timed(lambda: exact_stream(targets, n), rounds)
    row("ours_exact", t_ours, u_ours, targets, n)
    t_meg_p, (u_meg_p, _) = timed(lambda: megatron_stream(perturbed, n), rounds)
    row("megatron_helper_perturbed_weights", t_meg_p, u_meg_p, ptargets, n)
    t_ours_p, (u_ours_p, _) = timed(lambda: exact_stream(ptargets, n), rounds)
    row("ours_exact_perturbed_weights", t_ours_p, u_ours_p, ptargets, n)
    parts = hf_parts(WEIGHTS, hf_n)
    t_hf, mixed = timed(lambda: hf_interleave(parts, WEIGHTS), 1)
    row("hf_interleave_datasets", t_hf * hf_n / len(mixed), hf_domains(mixed, hf_n), targets, hf_n)
    t_ez, u_ez = timed(lambda: easydel_blocks(lambda _s: w, n, EASYDEL_BLOCK, 1), rounds)
    row("easydel_style_blocks", t_ez, u_ez, targets, n)
    rows["ratio_ours_vs_megatron"] = t_meg / t_ours
    rows["ratio_ours_vs_megatron_perturbed_weights"] = t_meg_p / t_ours_p
    rows["easydel_drift_at_1M"] = max_drift(u_ez[: min(n, 1_000_000)], targets)
    return rows


def bench_schedule(steps: int, batch: int, rounds: int) -> dict[str, Any]:
    sched = WeightSchedule(
        ((0, Mixture({"a": 0.2, "b": 0.8})), (steps, Mixture({"a": 0.5, "b": 0.5}))), "linear", batch
    )
    n = steps * batch
    targets = sched.targets(n)
    t, (unit, _) = timed(lambda: exact_stream(targets, n), rounds)
    ours = {"samples": n, "samples_per_s": n / t, "max_drift_samples": max_drift(unit, targets)}
    t_ez, u_ez = timed(lambda: easydel_blocks(lambda s: sched.weights_at([s])[0], n, EASYDEL_BLOCK, batch), 1)
    ez = {"samples": n, "samples_per_s": n / t_ez, "max_drift_samples": max_drift(u_ez, targets)}
    print(f"  schedule ours   {n / t / 1e6:7.2f} M samples/s  drift {ours['max_drift_samples']:.3f}")
    print(f"  schedule blocks {n / t_ez / 1e6:7.2f} M samples/s  drift {ez['max_drift_samples']:.1f}")
    return {"steps": steps, "samples_per_step": batch, "ours_exact": ours, "easydel_style_blocks": ez}


def _corpus(smoke: bool) -> Path:
    """The demo corpus when it has been prepared (`mixsweep data prepare --demo`), else a small generated one."""
    demo = Path("runs/data/demo")
    if not smoke and (demo / "corpus.json").is_file():
        return demo
    from trainers.data.prepare import PrepareConfig, prepare
    from trainers.data.sources import Source

    rng = np.random.default_rng(0)
    words = [
        "the",
        "model",
        "reads",
        "data",
        "from",
        "many",
        "domains",
        "and",
        "the",
        "mixture",
        "decides",
        "what",
        "it",
        "learns",
    ]

    def domain(name: str, n: int) -> Source:
        docs = [" ".join(rng.choice(words, int(rng.integers(50, 400)))) for _ in range(n)]
        return Source(name, name, lambda: iter(docs), lambda: [name, n], "generated")

    out = Path(tempfile.mkdtemp(prefix="blend-bench-")) / "generated"
    sources = [domain(f"d{i}", 200) for i in range(8)]
    prepare(sources, PrepareConfig(out=out, vocab_size=512, workers=1), log=lambda _m: None, progress=False)
    return out


def bench_tokens(smoke: bool, samples: int, seq_len: int, rounds: int) -> dict[str, Any]:
    import torch

    from trainers.data import BlendedSequenceDataset, Corpus

    root = _corpus(smoke)
    corpus = Corpus.load(root)
    names = corpus.domains
    w = (WEIGHTS[: len(names)] if len(names) <= len(WEIGHTS) else np.ones(len(names))).astype(float)
    mixture = Mixture(dict(zip(names, w.tolist())))
    cache = Path(tempfile.mkdtemp(prefix="blend-cache-"))
    ours = BlendedSequenceDataset(corpus, mixture, seq_len=seq_len, num_samples=samples, cache_dir=cache)

    # megatron-core on the same files: BlendedMegatronDatasetBuilder(GPTDataset), world of one (gloo)
    import types

    import torch.distributed as dist
    from megatron.core.datasets.blended_megatron_dataset_builder import BlendedMegatronDatasetBuilder
    from megatron.core.datasets.gpt_dataset import GPTDataset, GPTDatasetConfig

    if not dist.is_initialized():
        os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
        os.environ.setdefault("MASTER_PORT", str(29500 + os.getpid() % 1000))
        dist.init_process_group("gloo", rank=0, world_size=1)
    tok = types.SimpleNamespace(
        vocab_size=corpus.vocab_size,
        eod=corpus.eod_id or 0,
        pad=-1,
        unique_identifiers={"class": "corpus-tokenizer", "vocab_size": corpus.vocab_size},
    )
    prefixes = [str(root / corpus.domain(n).train[0].prefix) for n in names]
    config = GPTDatasetConfig(
        random_seed=0,
        sequence_length=seq_len,
        blend=(prefixes, w.tolist()),
        split="100,0,0",
        path_to_cache=str(cache / "megatron"),
        tokenizer=tok,
        reset_position_ids=False,
        reset_attention_mask=False,
        eod_mask_loss=False,
        create_attention_mask=False,
        mid_level_dataset_surplus=0.5,
    )
    meg = BlendedMegatronDatasetBuilder(GPTDataset, [samples, 0, 0], lambda: True, config).build()[0]

    def read_ours() -> int:
        got = 0
        for i in range(samples):
            got += ours[i]["tokens"].numel()
        return got

    def read_megatron() -> int:
        got = 0
        for i in range(samples):
            item = meg[i]
            got += item["tokens"].numel() + 1  # tokens + the shifted label's extra token = seq_len + 1
        return got

    read_ours()
    read_megatron()  # warm the page cache for both
    times_o, times_m = [], []
    for _ in range(rounds):
        t = time.perf_counter()
        tokens_o = read_ours()
        times_o.append(time.perf_counter() - t)
        t = time.perf_counter()
        tokens_m = read_megatron()
        times_m.append(time.perf_counter() - t)
    to, tm = statistics.median(times_o), statistics.median(times_m)
    del torch
    print(f"  tokens ours     {tokens_o / to / 1e6:7.2f} M tokens/s")
    print(f"  tokens megatron {tokens_m / tm / 1e6:7.2f} M tokens/s")
    return {
        "corpus": str(root),
        "domains": list(names),
        "samples": samples,
        "seq_len": seq_len,
        "ours_tokens_per_s": tokens_o / to,
        "megatron_tokens_per_s": tokens_m / tm,
        "ratio_ours_vs_megatron": tm / to,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--smoke", action="store_true", help="tiny sizes; checks that the script runs")
    ap.add_argument("--out", type=Path, default=RESULTS)
    args = ap.parse_args()
    smoke = args.smoke
    n = 200_000 if smoke else 10_000_000
    rounds = 1 if smoke else 3
    print(f"build: 8 domains, weights {WEIGHTS.tolist()} / {WEIGHTS.sum():g}, {n:,} samples")
    static = bench_static(n, rounds, 20_000 if smoke else 1_000_000)
    print("schedule: 0.2/0.8 -> 0.5/0.5 linear over optimizer steps")
    schedule = bench_schedule(200 if smoke else 10_000, 64 if smoke else 512, 1)
    print("token delivery")
    tokens = bench_tokens(smoke, 500 if smoke else 20_000, 256, 1 if smoke else 3)
    result = {
        "benchmark": "blend",
        "when": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "python": platform.python_version()},
        "smoke": smoke,
        "weights": WEIGHTS.tolist(),
        "static": static,
        "schedule": schedule,
        "tokens": tokens,
        "general_vs_megatron": static["ratio_ours_vs_megatron_perturbed_weights"],
        "general_max_drift_samples": static["ours_exact_perturbed_weights"]["max_drift_samples"],
        "general_megatron_max_drift_samples": static["megatron_helper_perturbed_weights"]["max_drift_samples"],
        "goals": {
            "general_vs_megatron_at_least": 1.0,
            "build_ratio_vs_megatron_at_least": 1.0,
            "token_ratio_vs_megatron_at_least": 1.0,
        },
    }
    if not smoke:
        atomic_write_json(args.out, result, indent=2)
        print(f"wrote {args.out}")
    print(
        f"build ratio ours/megatron: {static['ratio_ours_vs_megatron']:.2f} "
        f"(general float weights {result['general_vs_megatron']:.2f}, drift "
        f"{result['general_max_drift_samples']:.3f}); "
        f"token ratio {tokens['ratio_ours_vs_megatron']:.2f}"
    )


if __name__ == "__main__":
    main()
