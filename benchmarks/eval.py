"""Evaluation costs against their peers, one run:

1. Reading a DeepSpeed ZeRO-3 checkpoint into one fp32 state dict: our `weights_only` reader
   (`eval.convert.sources.deepspeed_state_dict`) vs DeepSpeed's own `zero_to_fp32`
   (`get_fp32_state_dict_from_zero_checkpoint`, which unpickles). Same files; results must be equal.
2. Conversion of a DeepSeek-style MoE proxy (Megatron-Core `GPTModel`) to GLM-4-MoE, with the
   logits verification, vs the same conversion without it (what the check costs).
3. Per-domain bits per byte of held-out text, LightEval (local tasks) vs a plain transformers loop
   over the same documents (the peer: no LightEval), wall time and agreement of the numbers:
   - warm: one evaluation in the long-lived worker (`eval.isolated.EvalWorker`, a child process
     that imported LightEval already), request to answer -> `warm_ratio_vs_plain`;
   - `import_s_once_per_node`: that worker's start, up to ready (LightEval imported);
   - cold: a one-shot worker (a fresh process, as each trial used to pay) -> `cold_one_shot_s`;
   - in-process `eval.evaluate`, and where its time goes (cProfile, cumulative seconds per stage).

Rounds are interleaved and the median counts (the machine is shared).

    .venv/bin/python benchmarks/eval.py            # writes benchmarks/results/eval.json
    .venv/bin/python benchmarks/eval.py --smoke    # seconds; checks the script runs
"""

from __future__ import annotations

import argparse
import cProfile
import json
import math
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

os.environ.setdefault("DS_ACCELERATOR", "cpu")
os.environ.setdefault("LOCAL_RANK", "0")
warnings.filterwarnings("ignore")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import pstats  # noqa: E402

import torch  # noqa: E402

from eval.evaluate import EvalOptions, evaluate  # noqa: E402
from eval.isolated import EvalWorker  # noqa: E402
from eval.tasks.local import LocalTaskOptions  # noqa: E402
from mixture_search.files import atomic_write_json  # noqa: E402
from tests import eval_support as support  # noqa: E402

RESULTS = Path(__file__).parent / "results" / "eval.json"


def timed(fn: Any, *args: Any, **kwargs: Any) -> tuple[float, Any]:
    t0 = time.perf_counter()
    out = fn(*args, **kwargs)
    return time.perf_counter() - t0, out


def zero3(work: Path, rounds: int, smoke: bool) -> dict[str, Any]:
    from deepspeed.utils.zero_to_fp32 import get_fp32_state_dict_from_zero_checkpoint

    from eval.convert.sources import deepspeed_state_dict
    from trainers.backends.deepspeed import DeepSpeedEngine
    from trainers.budget import TrainBudget
    from trainers.distributed import process_group

    proxy = support.tiny_proxy(
        2048, num_layers=2 if smoke else 4, hidden_size=128 if smoke else 256, ffn_hidden_size=512
    )
    budget = TrainBudget(steps=1, micro_batch=2, global_batch=2)
    with process_group() as world:
        engine = DeepSpeedEngine(proxy, budget, world, zero_stage=3)
        engine.train_step([torch.randint(0, proxy.vocab, (2, proxy.seq_len + 1))], 1e-3)
        engine.save(work / "ds")
        engine.close()
    ours_t, theirs_t = [], []
    for _ in range(rounds):
        t, ours = timed(deepspeed_state_dict, work / "ds")
        ours_t.append(t)
        t, theirs = timed(get_fp32_state_dict_from_zero_checkpoint, str(work / "ds"), tag="state")
        theirs_t.append(t)
    equal = sorted(ours) == sorted(theirs) and all(torch.equal(ours[k], theirs[k].float()) for k in theirs)
    return {
        "params": sum(v.numel() for v in ours.values()),
        "ours_weights_only_s": statistics.median(ours_t),
        "deepspeed_zero_to_fp32_s": statistics.median(theirs_t),
        "ratio_ours_over_deepspeed": statistics.median(ours_t) / statistics.median(theirs_t),
        "identical_tensors": equal,
    }


def conversion(work: Path, rounds: int, smoke: bool) -> dict[str, Any]:
    from eval.convert import convert, from_module
    from eval.convert.sources import _megatron_model, _megatron_runtime
    from trainers.config import MoEConfig

    proxy = support.tiny_proxy(
        2048,
        num_layers=2 if smoke else 4,
        hidden_size=128,
        ffn_hidden_size=512,
        seq_len=128,
        moe=MoEConfig(
            num_experts=8, top_k=2, expert_ffn_hidden_size=128, shared_expert_ffn_hidden_size=128,
            score_function="sigmoid", expert_bias=True, num_groups=4, group_top_k=1, first_k_dense=1,
        ),
    )  # fmt: skip
    with _megatron_runtime():
        torch.manual_seed(0)
        source = from_module(_megatron_model(proxy), proxy)
    verified, plain, diffs = [], [], []
    for i in range(rounds):
        t, report = timed(convert, source, work / f"v{i}", force=True)
        verified.append(t)
        diffs.append(report.max_abs_diff)
        t, _ = timed(convert, source, work / f"n{i}", verify=False, force=True)
        plain.append(t)
    return {
        "architecture": report.architecture,
        "params": report.params,
        "verified_s": statistics.median(verified),
        "unverified_s": statistics.median(plain),
        "verification_overhead": statistics.median(verified) / statistics.median(plain) - 1,
        "max_abs_logit_diff": max(diffs),
    }


def direct_bpb(hf_dir: Path, tasks_root: Path) -> dict[str, float]:
    """The peer: bits per byte of the same bpb documents with a plain transformers loop."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(str(hf_dir), dtype=torch.float32).eval()
    tok = AutoTokenizer.from_pretrained(str(hf_dir))
    out = {}
    for path in sorted(tasks_root.glob("*/bpb_*/test.jsonl")):
        nats = nbytes = 0.0
        for line in path.read_text(encoding="utf-8").splitlines():
            row = json.loads(line)
            ctx = tok(row["context"], add_special_tokens=True)["input_ids"]
            cont = tok(row["continuation"], add_special_tokens=False)["input_ids"]
            with torch.no_grad():
                logp = torch.log_softmax(model(torch.tensor([ctx + cont])).logits.float(), dim=-1)[0]
            pos = torch.arange(len(ctx) - 1, len(ctx) + len(cont) - 1)
            nats += float(logp[pos, torch.tensor(cont)].sum())
            nbytes += len(row["continuation"].encode("utf-8"))
        out[path.parent.name.replace("bpb_", "")] = -nats / nbytes / math.log(2)
    return out


# where an in-process evaluation's time goes: (label, pstats function-name suffix)
STAGES = [
    ("held_out_text_and_task_files", "eval/evaluate.py:_heldout"),
    ("lighteval_tasks_and_data", "_init_tasks_and_requests"),
    ("lighteval_model_load", "pipeline.py:_init_model"),
    ("lighteval_model_forward", "transformers_model.py:_loglikelihood_tokens"),
    ("lighteval_metrics", "pipeline.py:_compute_metrics"),
    ("lighteval_aggregate_and_stderr", "info_loggers.py:aggregate"),
]


def breakdown(run: Any) -> dict[str, float]:
    """Cumulative seconds (under cProfile, so inflated) of each stage of one `run()`, and the total."""
    profile = cProfile.Profile()
    t0 = time.perf_counter()
    profile.runcall(run)
    out = {"total_profiled_s": time.perf_counter() - t0}
    stats = pstats.Stats(profile).stats  # type: ignore[attr-defined]
    for label, suffix in STAGES:
        file_part, _, name = suffix.rpartition(":")
        out[label] = sum(st[3] for (file, _line, fn), st in stats.items() if fn == name and file.endswith(file_part))
    return out


def _bpb(metrics: dict[str, float]) -> dict[str, float]:
    """Per-domain bpb from the worker's flat MLflow keys (`eval.bpb_<domain>/bpb`)."""
    return {k.removeprefix("eval.bpb_").removesuffix("/bpb"): v for k, v in metrics.items() if k.endswith("/bpb")}


def evaluation(work: Path, rounds: int, smoke: bool) -> dict[str, Any]:
    tok = support.train_tokenizer(work / "tok", vocab_size=2048)
    hf = work / "hf"
    support.convert_plain(hf, tok, seed=0, vocab_size=2048, seq_len=256, hidden_size=128, ffn_hidden_size=512)
    held = support.heldout_folder(work / "heldout", per_domain=8 if smoke else 48)
    docs = 8 if smoke else 48
    opts = EvalOptions(batch_size=16, local=LocalTaskOptions(max_docs=docs))

    def job(out: Path) -> dict[str, Any]:
        return {"hf_dir": str(hf), "tasks": ["bpb"], "heldout": str(held), "max_docs": docs, "batch_size": 16,
                "out_dir": str(out), "force": True}  # fmt: skip

    t0 = time.perf_counter()
    with EvalWorker(warm=False) as cold:  # a fresh process for one evaluation: what each trial used to pay
        cold_answer = cold.call("model", job(work / "cold"), where=str(hf), timeout_s=1800)
    cold_s = time.perf_counter() - t0

    grad = torch.is_grad_enabled()
    lighteval_import_s, _ = timed(__import__, "lighteval.pipeline")  # the in-process rounds below need it
    torch.set_grad_enabled(grad)  # LightEval's import turns autograd off for the process; zero3() trains
    worker = EvalWorker()
    try:
        import_s = worker.start()
        warm_t, peer_t, inproc_t = [], [], []
        for i in range(rounds):
            t, answer = timed(worker.call, "model", job(work / f"w{i}"), where=str(hf), timeout_s=1800)
            warm_t.append(t)
            t, peer = timed(direct_bpb, hf, work / "w0" / "tasks")
            peer_t.append(t)
            t, result = timed(evaluate, hf, "bpb", heldout=held, out_dir=work / f"e{i}", options=opts, force=True)
            inproc_t.append(t)
    finally:
        worker.close()
    stages = breakdown(lambda: evaluate(hf, "bpb", heldout=held, out_dir=work / "p", options=opts, force=True))
    warm, ours_cold = _bpb(answer["metrics"]), _bpb(cold_answer["metrics"])
    inproc = {k.split(":")[1].split("/")[0]: v for k, v in result.metrics.items() if k.endswith("/bpb")}
    plain_s = statistics.median(peer_t)
    return {
        "docs_per_domain": result.docs,
        "warm_ratio_vs_plain": statistics.median(warm_t) / plain_s,
        "import_s_once_per_node": import_s,
        "cold_one_shot_s": cold_s,
        "cold_ratio_vs_plain": cold_s / plain_s,
        "lighteval_import_in_process_s": lighteval_import_s,
        "warm_worker_s": statistics.median(warm_t),
        "warm_worker_rounds_s": warm_t,
        "in_process_evaluate_s": statistics.median(inproc_t),
        "peer_transformers_loop_s": plain_s,
        "peer_rounds_s": peer_t,
        "in_process_breakdown_cprofile_s": stages,
        "bpb_warm_worker": warm,
        "bpb_cold_one_shot": ours_cold,
        "bpb_in_process": inproc,
        "bpb_peer": peer,
        "warm_equals_cold_bit_for_bit": warm == ours_cold == inproc,
        "max_abs_bpb_difference_vs_peer": max(abs(warm[d] - peer[d]) for d in peer),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="tiny sizes, one round; checks the script runs")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    rounds = 1 if args.smoke else args.rounds
    work = Path(tempfile.mkdtemp(prefix="mixsweep-bench-eval-"))
    try:
        report = {
            "machine": {
                "platform": platform.platform(),
                "cpus": os.cpu_count(),
                "torch_threads": torch.get_num_threads(),
            },
            "smoke": args.smoke,
            "rounds": rounds,
            # first, before DeepSpeed and Megatron-Core are loaded here: after them, the worker child
            # this process starts measured several times slower (not understood yet; see the report)
            "evaluation": evaluation(work, rounds, args.smoke),
            "zero3_read": zero3(work, rounds, args.smoke),
            "conversion": conversion(work, rounds, args.smoke),
        }
        ev = report["evaluation"]
        report = {k: ev[k] for k in ("warm_ratio_vs_plain", "import_s_once_per_node", "cold_one_shot_s")} | report
    finally:
        shutil.rmtree(work, ignore_errors=True)
    if not args.smoke:
        atomic_write_json(args.out, report)
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
