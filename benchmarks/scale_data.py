"""The data path at OpenSeek's scale: the 84 files of OpenSeek-Pretrain-100B at 1%, 10% and 100% of their real
token counts (`benchmarks/openseek_fixture.py`: real `.idx`, sparse `.bin`), ours beside megatron-core on the same
files in the same run.

Per scale (the run's length scales with the corpus: 24,576,000 samples of 4096 tokens at 100%, the 1.4B config's
`train_samples`, i.e. 100B tokens):

* `Corpus.load`: time and peak RSS;
* `mixsweep data inspect --json` and `mixsweep mixture show/convert` on the real catalog: wall time of the command;
* the blend of the OpenSeek baseline (the 1.4B config's `data_path`, 84 weighted files): ours
  (`BlendedSequenceDataset`, exact mode, Corpus.load included) vs megatron-core's `BlendedMegatronDatasetBuilder`
  (`BlendedDataset` over 84 `GPTDataset`s, split 100,0,0); time, samples/s, peak RSS, cache size on disk;
* with both caches in place, a new process per side: the time from the process' start to its first and to its
  1000th sample, then token delivery (tokens/s reading the stream's first samples in order, `seq_len + 1` tokens
  each, a cold pass then a warm one); megatron-core twice, with its memory-mapped `.bin` reader (its default) and
  with file reads (OpenSeek's `no_mmap_bin_files: true`); the fixture's `.bin` pages are dropped from the page
  cache before each side, and the goal compares our cold pass (a trainer reads a sample once) with the faster
  megatron reader's;
* a proxy trial (`trainers.train`, tiny_cpu at seq_len 256 on the baseline collapsed to its 79 domains): seconds
  from its process' start to its first optimizer step, its blend built by a first run and cached for the second.

Every measurement runs in its own child process, which reports its own peak RSS (VmHWM: file pages it maps and
touches count, as the kernel counts them); the `mixsweep` commands run in such a child too (typer in-process). The `.bin` files are sparse, so delivery reads page-cache zeros: it
measures the data path's CPU cost, not a disk. The benchmark waits while `/tmp/mixsweep-quiet` exists.

    .venv/bin/python benchmarks/scale_data.py --scales 0.01,0.1   # then --scales 1 (merged into the JSON)
    .venv/bin/python benchmarks/scale_data.py --dry-sweep         # item 4: the dry sweep at 100%, into the JSON
    .venv/bin/python benchmarks/scale_data.py --smoke             # 1e-4 scale, seconds, writes nothing
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import os
import platform
import shutil
import subprocess
import sys
import time
import warnings
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # run as a script: the repository's packages
    sys.path.insert(0, str(REPO))

from benchmarks.openseek_fixture import FixtureConfig, build_fixture, disk_usage  # noqa: E402
from mixture_search.files import atomic_write_json  # noqa: E402

RESULTS = REPO / "benchmarks" / "results" / "scale_data.json"
BASELINE = REPO.parent / "shared" / "fixtures" / "openseek" / "OpenSeek-Small-v1-Baseline" / "train"
BASELINE_YAML = BASELINE / "train_deepseek_v3_1_4b.yaml"
COUNTS = REPO.parent / "shared" / "fixtures" / "openseek" / "pretrain_100B_files_tokens.csv"
FULL_SAMPLES = 24_576_000  # the 1.4B config's train_samples: 100B tokens of 4096
SEQ_LEN = 4096
READ_SAMPLES = 4000  # samples per delivery pass (16M tokens)
TRIAL_SEQ_LEN = 256
QUIET = Path("/tmp/mixsweep-quiet")
GIB = 1 << 30


# -- children ---------------------------------------------------------------------------------------------------
def _stamp() -> float:
    return time.time()


def _baseline_mixture() -> Any:
    from mixture_search.formats import read_mixture

    return read_mixture(BASELINE_YAML).mixture


def child_load(root: Path, _cache: Path, _n: int, _seq: int) -> dict[str, Any]:
    from trainers.data import Corpus

    t = time.perf_counter()
    corpus = Corpus.load(root)
    _ = corpus.data_hash, corpus.catalog
    return {"seconds": time.perf_counter() - t, "domains": len(corpus.domains)}


def _ours(root: Path, cache: Path, n: int, seq: int) -> tuple[Any, float, float]:
    from trainers.data import BlendedSequenceDataset, Corpus

    t0 = time.perf_counter()
    corpus = Corpus.load(root)
    t1 = time.perf_counter()
    ds = BlendedSequenceDataset(corpus, _baseline_mixture(), seq_len=seq, num_samples=n, seed=0, cache_dir=cache)
    return ds, t1 - t0, time.perf_counter() - t1


def _megatron(root: Path, cache: Path, n: int, seq: int, *, mmap_bin_files: bool = True) -> Any:
    import types

    import torch.distributed as dist  # lazy: torch/megatron only in the child that measures them

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from megatron.core.datasets.blended_megatron_dataset_builder import BlendedMegatronDatasetBuilder
        from megatron.core.datasets.gpt_dataset import GPTDataset, GPTDatasetConfig

    from benchmarks.openseek_fixture import EOD_ID, VOCAB_SIZE

    if not dist.is_initialized():
        os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
        os.environ.setdefault("MASTER_PORT", str(29500 + os.getpid() % 1000))
        dist.init_process_group("gloo", rank=0, world_size=1)
    mix = _baseline_mixture()
    tok = types.SimpleNamespace(
        vocab_size=VOCAB_SIZE, eod=EOD_ID, pad=-1, unique_identifiers={"class": "openseek-fixture"}
    )
    config = GPTDatasetConfig(
        random_seed=0,
        sequence_length=seq,
        blend=([str(root / p) for p in mix.names], list(mix.weights)),
        split="100,0,0",
        path_to_cache=str(cache),
        tokenizer=tok,
        reset_position_ids=False,
        reset_attention_mask=False,
        eod_mask_loss=False,
        create_attention_mask=False,
        mmap_bin_files=mmap_bin_files,
    )
    return BlendedMegatronDatasetBuilder(GPTDataset, [n, 0, 0], lambda: True, config).build()[0]


def child_blend_ours(root: Path, cache: Path, n: int, seq: int) -> dict[str, Any]:
    ds, load_s, blend_s = _ours(root, cache, n, seq)
    return {"load_seconds": load_s, "blend_seconds": blend_s, "samples": len(ds), "cache": str(ds.cache_path)}


def child_blend_megatron(root: Path, cache: Path, n: int, seq: int) -> dict[str, Any]:
    t = time.perf_counter()
    ds = _megatron(root, cache, n, seq)
    return {"blend_seconds": time.perf_counter() - t, "samples": len(ds)}


def _deliver(get: Any, n: int) -> dict[str, Any]:
    first = _stamp()
    get(0)
    at_first = _stamp()
    for i in range(1, min(1000, n)):
        get(i)
    at_1000 = _stamp()
    k = min(READ_SAMPLES, n)
    passes = []
    for _ in range(2):
        t = time.perf_counter()
        tokens = sum(get(i) for i in range(k))
        passes.append(tokens / (time.perf_counter() - t))
    del first
    return {
        "first_sample_at": at_first,
        "sample_1000_at": at_1000,
        "cold_tokens_per_s": passes[0],
        "warm_tokens_per_s": passes[1],
        "read_samples": k,
    }


def child_read_ours(root: Path, cache: Path, n: int, seq: int) -> dict[str, Any]:
    ds, _, _ = _ours(root, cache, n, seq)
    return _deliver(lambda i: ds[i]["tokens"].numel(), len(ds))


def child_read_megatron(root: Path, cache: Path, n: int, seq: int) -> dict[str, Any]:
    ds = _megatron(root, cache, n, seq)
    return _deliver(lambda i: ds[i]["tokens"].numel() + 1, len(ds))  # + the shifted label's extra token


def child_read_megatron_file(root: Path, cache: Path, n: int, seq: int) -> dict[str, Any]:
    """OpenSeek's own setting (`no_mmap_bin_files: true`): megatron-core reads `.bin` with file reads."""
    ds = _megatron(root, cache, n, seq, mmap_bin_files=False)
    return _deliver(lambda i: ds[i]["tokens"].numel() + 1, len(ds))


def child_trial(root: Path, cache: Path, _n: int, _seq: int) -> dict[str, Any]:
    from trainers.budget import TrainBudget
    from trainers.data import Corpus
    from trainers.presets import tiny_cpu
    from trainers.train import train

    corpus = Corpus.load(root)
    cat = corpus.catalog
    mix = cat.collapse(_baseline_mixture(), "domain")
    stamps: list[float] = []

    def progress(p: Any) -> None:
        if not stamps:
            stamps.append(_stamp())

    budget = TrainBudget(steps=200, micro_batch=1, global_batch=1, eval_windows_per_domain=1, warmup_steps=1)
    out = cache / f"runs-{os.getpid()}"
    train(mix, corpus, tiny_cpu(seq_len=TRIAL_SEQ_LEN), budget, out_dir=out, stop_at_step=1, progress=progress)
    shutil.rmtree(out, ignore_errors=True)
    return {"first_step_at": stamps[0], "domains": len(mix)}


CHILDREN = {
    "load": child_load,
    "blend_ours": child_blend_ours,
    "blend_megatron": child_blend_megatron,
    "read_ours": child_read_ours,
    "read_megatron": child_read_megatron,
    "read_megatron_file": child_read_megatron_file,
    "trial": child_trial,
}


# -- parent -----------------------------------------------------------------------------------------------------
def wait_quiet() -> None:
    while QUIET.exists():
        time.sleep(20)


def run_child(argv: list[str], env: dict[str, str] | None = None) -> dict[str, Any]:
    """Run a command, returning its wall time and the JSON it printed last (its own peak RSS among it)."""
    wait_quiet()
    start = time.time()
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, env={**os.environ, **(env or {})}, cwd=REPO)
    out, _ = proc.communicate()
    wall = time.time() - start
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(argv[:6])} ... failed with {proc.returncode}")
    result: dict[str, Any] = {}
    for line in out.decode().splitlines():
        if line.startswith("RESULT "):
            result = json.loads(line[7:])
    for key in [k for k in result if k.endswith("_at")]:
        result[key.removesuffix("_at") + "_seconds_from_start"] = result.pop(key) - start
    return {**result, "wall_seconds": wall}


def child_argv(kind: str, root: Path, cache: Path, n: int, seq: int) -> list[str]:
    return [sys.executable, str(Path(__file__).resolve()), "--child", kind, str(root), str(cache), str(n), str(seq)]


def measure(kind: str, root: Path, cache: Path, n: int, seq: int) -> dict[str, Any]:
    row = run_child(child_argv(kind, root, cache, n, seq))
    print(f"    {kind:<15} {json.dumps({k: round(v, 3) if isinstance(v, float) else v for k, v in row.items()})}")
    return row


def evict_bins(root: Path) -> None:
    """Drop the fixture's `.bin` pages from the page cache (POSIX_FADV_DONTNEED on those files only)."""
    for path in root.rglob("*.bin"):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)


def dir_bytes(path: Path) -> int:
    return disk_usage(path)[1] if path.exists() else 0


def cli(args: list[str]) -> dict[str, Any]:
    row = run_child([sys.executable, str(Path(__file__).resolve()), "--child-cli", *args])
    print(f"    mixsweep {args[0]} {args[1]:<8} {row['wall_seconds']:.2f} s, {row['peak_rss_gib']:.2f} GiB")
    return {"seconds": row["wall_seconds"], "peak_rss_gib": row["peak_rss_gib"]}


def bench_scale(scale: float, fixture_root: Path, cache_root: Path, seq: int) -> dict[str, Any]:
    wait_quiet()
    cfg = FixtureConfig(fixture_root, scale=scale)
    t = time.perf_counter()
    manifest = build_fixture(cfg)
    apparent, allocated = disk_usage(fixture_root)
    n = max(1000, round(FULL_SAMPLES * scale))
    print(
        f"  scale {scale:g}: {manifest['tokens']:,} tokens, {manifest['documents']:,} documents, {n:,} samples "
        f"(fixture {time.perf_counter() - t:.1f} s, {apparent / GIB:.1f} GiB apparent, {allocated / GIB:.2f} on disk)"
    )
    if cache_root.exists():
        shutil.rmtree(cache_root)
    ours_cache, meg_cache, trial_cache = cache_root / "ours", cache_root / "megatron", cache_root / "trial"
    row: dict[str, Any] = {
        "scale": scale,
        "tokens": manifest["tokens"],
        "documents": manifest["documents"],
        "samples": n,
        "seq_len": seq,
        "fixture_apparent_gib": apparent / GIB,
        "fixture_on_disk_gib": allocated / GIB,
    }
    row["corpus_load"] = measure("load", fixture_root, ours_cache, n, seq)
    row["data_inspect"] = cli(["data", "inspect", str(fixture_root), "--json"])
    row["mixture_show"] = cli(
        [
            "mixture",
            "show",
            str(BASELINE_YAML),
            "--catalog",
            str(COUNTS),
            "--base-dir",
            str(fixture_root),
            "--check-paths",
            "--by",
            "domain",
            "--json",
        ]
    )
    row["mixture_convert"] = cli(
        ["mixture", "convert", str(BASELINE_YAML), "--to", "megatron", "--base-dir", str(fixture_root), "--check-paths"]
    )
    ours = measure("blend_ours", fixture_root, ours_cache, n, seq)
    ours["samples_per_s"] = ours["samples"] / ours["blend_seconds"]
    ours["cache_bytes"] = dir_bytes(ours_cache)
    meg = measure("blend_megatron", fixture_root, meg_cache, n, seq)
    meg["samples_per_s"] = meg["samples"] / meg["blend_seconds"]
    meg["cache_bytes"] = dir_bytes(meg_cache)
    row["blend"] = {
        "ours": ours,
        "megatron": meg,
        "ratio_ours_vs_megatron": meg["blend_seconds"] / ours["blend_seconds"],
    }
    reads = {}
    for side, kind, cache in (
        ("ours", "read_ours", ours_cache),
        ("megatron", "read_megatron", meg_cache),
        ("megatron_file_reads", "read_megatron_file", meg_cache),
    ):
        evict_bins(fixture_root)  # every side starts with none of the fixture's tokens in the page cache
        reads[side] = measure(kind, fixture_root, cache, n, seq)
    best = max(reads["megatron"]["cold_tokens_per_s"], reads["megatron_file_reads"]["cold_tokens_per_s"])
    best_warm = max(reads["megatron"]["warm_tokens_per_s"], reads["megatron_file_reads"]["warm_tokens_per_s"])
    row["delivery"] = {
        **reads,
        "ratio_ours_vs_megatron": reads["ours"]["cold_tokens_per_s"] / best,
        "warm_ratio_ours_vs_megatron": reads["ours"]["warm_tokens_per_s"] / best_warm,
    }
    first = run_child(child_argv("trial", fixture_root, trial_cache, n, seq))
    second = run_child(child_argv("trial", fixture_root, trial_cache, n, seq))
    print(
        f"    trial           first step {first['first_step_seconds_from_start']:.1f} s (blend built), "
        f"{second['first_step_seconds_from_start']:.1f} s (cached); {second['peak_rss_gib']:.2f} GiB"
    )
    row["trial"] = {"uncached": first, "cached": second}
    return row


def slope(rows: dict[str, Any], get: Any) -> float | None:
    """Largest log-log slope of a figure between consecutive scales (1: linear; below: sub-linear)."""
    pts = sorted((float(r["scale"]), float(get(r))) for r in rows.values())
    out = None
    for (s0, f0), (s1, f1) in itertools.pairwise(pts):
        if f0 > 0 and f1 > 0:
            k = math.log(f1 / f0) / math.log(s1 / s0)
            out = k if out is None else max(out, k)
    return out


FIGURES = {
    "corpus_load_seconds": lambda r: r["corpus_load"]["seconds"],
    "corpus_load_peak_rss_gib": lambda r: r["corpus_load"]["peak_rss_gib"],
    "data_inspect_seconds": lambda r: r["data_inspect"]["seconds"],
    "blend_seconds": lambda r: r["blend"]["ours"]["blend_seconds"],
    "blend_peak_rss_gib": lambda r: r["blend"]["ours"]["peak_rss_gib"],
    "blend_cache_bytes": lambda r: r["blend"]["ours"]["cache_bytes"],
    "first_sample_seconds": lambda r: r["delivery"]["ours"]["first_sample_seconds_from_start"],
    "sample_1000_seconds": lambda r: r["delivery"]["ours"]["sample_1000_seconds_from_start"],
    "trial_first_step_seconds": lambda r: r["trial"]["cached"]["first_step_seconds_from_start"],
}
#: a figure "grows at most linearly" when its log-log slope between consecutive scales is at most 1 plus this
#: (timings on a shared 2-core machine move by about 10%)
SLOPE_TOLERANCE = 0.1


def goals(rows: dict[str, Any]) -> dict[str, Any]:
    slopes = {name: slope(rows, get) for name, get in FIGURES.items()} if len(rows) > 1 else {}
    worst = max((v for v in slopes.values() if v is not None), default=None)
    full = rows.get("1")
    out: dict[str, Any] = {
        "linear_growth": {
            "figure": worst,
            "slopes": slopes,
            "at_most": 1.0 + SLOPE_TOLERANCE,
            "met": worst is not None and worst <= 1.0 + SLOPE_TOLERANCE,
        }
    }

    def at_full(name: str, get: Any, ok: Any, target: float) -> None:
        value = get(full) if full else None
        out[name] = {"figure": value, "target": target, "met": value is not None and ok(value)}

    at_full("blend_vs_megatron_at_100pct", lambda r: r["blend"]["ratio_ours_vs_megatron"], lambda v: v >= 1.0, 1.0)
    at_full(
        "delivery_vs_megatron_at_100pct", lambda r: r["delivery"]["ratio_ours_vs_megatron"], lambda v: v >= 1.0, 1.0
    )
    at_full(
        "load_plus_blend_peak_rss_gib_at_100pct", lambda r: r["blend"]["ours"]["peak_rss_gib"], lambda v: v < 4.0, 4.0
    )
    at_full(
        "trial_first_step_seconds_at_100pct",
        lambda r: r["trial"]["cached"]["first_step_seconds_from_start"],
        lambda v: v <= 60.0,
        60.0,
    )
    return out


def peak_rss_gib() -> float:
    """This process' peak RSS since it started (VmHWM of its address space). Not `getrusage`: Linux starts a
    child's ru_maxrss at its parent's RSS at the fork and keeps it across exec, so every child of a parent that
    built the 100% fixture would read at least that."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024 / GIB
    raise RuntimeError("no VmHWM in /proc/self/status")


def run_cli(args: list[str]) -> None:
    """`mixsweep ARGS` in this process (output discarded), then its peak RSS as a RESULT line."""
    import contextlib
    import io

    from flows.cli import app

    with contextlib.redirect_stdout(io.StringIO()):
        app(args=args, standalone_mode=False)
    print("RESULT " + json.dumps({"peak_rss_gib": peak_rss_gib()}), flush=True)


DRY_SPEC = REPO / "deploy" / "specs" / "openseek_scale.yaml"


def dry_sweep(out: Path) -> None:
    """Item 4: `mixsweep sweep deploy/specs/openseek_scale.yaml --dry-run` on the 100% fixture, timed from the
    command's start (goal: under 30 s), merged into the JSON."""
    build_fixture(FixtureConfig(Path("/tmp/openseek-fixture-100pct"), scale=1.0))
    row = cli(["sweep", str(DRY_SPEC), "--dry-run"])
    result = json.loads(out.read_text())
    result["dry_sweep"] = {"spec": str(DRY_SPEC.relative_to(REPO)), **row}
    result["goals"]["dry_sweep_seconds_at_100pct"] = {
        "figure": row["seconds"],
        "target": 30.0,
        "met": row["seconds"] < 30,
    }
    atomic_write_json(out, result, indent=2)


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--child-cli":
        run_cli(sys.argv[2:])
        return
    if len(sys.argv) > 1 and sys.argv[1] == "--dry-sweep":
        dry_sweep(RESULTS)
        return
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--scales", default="0.01,0.1", help="comma-separated shares of the real size, e.g. 0.01,0.1,1")
    ap.add_argument("--smoke", action="store_true", help="scale 1e-4 only, writes nothing")
    ap.add_argument("--fixtures", type=Path, default=Path("/tmp"), help="fixtures go to <this>/openseek-fixture-<pct>")
    ap.add_argument("--keep-caches", action="store_true", help="keep the blend caches (deleted after each scale)")
    ap.add_argument("--out", type=Path, default=RESULTS)
    ap.add_argument("--child", nargs=5, metavar=("KIND", "ROOT", "CACHE", "N", "SEQ"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        kind, root, cache, n, seq = args.child
        warnings.filterwarnings("ignore")
        result = CHILDREN[kind](Path(root), Path(cache), int(n), int(seq))
        print("RESULT " + json.dumps({**result, "peak_rss_gib": peak_rss_gib()}), flush=True)
        return
    scales = [1e-4] if args.smoke else [float(s) for s in args.scales.split(",")]
    previous = json.loads(args.out.read_text()) if args.out.is_file() and not args.smoke else {}
    rows: dict[str, Any] = dict(previous.get("scales", {}))
    for scale in scales:
        tag = f"{scale * 100:g}pct"
        root = args.fixtures / f"openseek-fixture-{tag}"
        cache = args.fixtures / f"openseek-fixture-cache-{tag}"
        rows[f"{scale:g}"] = bench_scale(scale, root, cache, 256 if args.smoke else SEQ_LEN)
        if not args.keep_caches:
            shutil.rmtree(cache, ignore_errors=True)
        if args.smoke:
            shutil.rmtree(root, ignore_errors=True)
        result = {
            "benchmark": "scale_data",
            "when": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "python": platform.python_version()},
            "code": _code_state(),
            "setup": {
                "fixture": "benchmarks/openseek_fixture.py (real .idx, sparse .bin, log-normal document lengths)",
                "mixture": str(BASELINE_YAML.relative_to(REPO.parent)),
                "full_samples": FULL_SAMPLES,
                "seq_len": SEQ_LEN,
                "read_samples": READ_SAMPLES,
                "trial": f"tiny_cpu, seq_len {TRIAL_SEQ_LEN}, micro/global batch 1, to its first optimizer step",
            },
            "scales": dict(sorted(rows.items(), key=lambda kv: float(kv[0]))),
            "goals": goals(rows),
        }
        if not args.smoke:
            atomic_write_json(args.out, result, indent=2)
    print(json.dumps(goals(rows), indent=1))


def _code_state() -> dict[str, Any]:
    from benchmarks.decision import code_state

    state = code_state()
    changed = subprocess.run(
        ["git", "status", "--porcelain", "trainers/data"], cwd=REPO, capture_output=True, text=True, check=False
    )
    return {"commit": state["commit"], "changed": changed.stdout.splitlines()}


if __name__ == "__main__":
    main()
