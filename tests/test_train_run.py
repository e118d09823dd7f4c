"""`train()` end to end on a small real corpus: determinism, exact resume, rerun skipping, learning,
divergence, bad input. Tiny shapes (seq 64, a handful of steps), both backends, dense and MoE."""

from __future__ import annotations

import contextlib
import json
import math
import os
from pathlib import Path

import pytest
import torch

from mixture_search.errors import MixSweepError
from mixture_search.mixture import Mixture
from trainers.budget import TrainBudget
from trainers.config import ProxyConfig
from trainers.errors import BackendUnavailable, ConfigError, TrainingDiverged
from trainers.presets import moe_cpu, openseek_small_proxy, tiny_cpu
from trainers.result import TrainResult
from trainers.train import RESULT_FILE, train

MIX = Mixture({"prose": 1.0, "sums": 3.0})
BUDGET = TrainBudget(steps=4, micro_batch=4, global_batch=8, lr=3e-3, warmup_steps=1, eval_interval=2, seed=3)
CASES = {
    "megatron-dense": ("megatron", tiny_cpu(seq_len=64)),
    "deepspeed-dense": ("deepspeed", tiny_cpu(seq_len=64)),
    "megatron-moe": ("megatron", moe_cpu(seq_len=64, num_layers=2)),
    "deepspeed-moe": ("deepspeed", moe_cpu(seq_len=64, num_layers=2)),
}


def _train(corpus: Path, case: str, out: Path, **kwargs) -> TrainResult:
    backend, proxy = CASES[case]
    return train(MIX, corpus, proxy, BUDGET, backend, out, **kwargs)


@pytest.fixture(scope="module")
def references(train_corpus: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, TrainResult]:
    out = tmp_path_factory.mktemp("reference")
    return {case: _train(train_corpus, case, out) for case in CASES}


@pytest.mark.parametrize("case", list(CASES))
def test_same_inputs_give_the_same_loss_curve(case: str, references, train_corpus: Path, tmp_path: Path) -> None:
    ref = references[case]
    again = _train(train_corpus, case, tmp_path)
    assert again.loss_curve == ref.loss_curve  # bit for bit
    assert again.evals == ref.evals
    assert again.tokens_per_domain == ref.tokens_per_domain


@pytest.mark.parametrize("case", list(CASES))
def test_resume_gives_the_uninterrupted_curve(case: str, references, train_corpus: Path, tmp_path: Path) -> None:
    ref = references[case]
    first = _train(train_corpus, case, tmp_path, stop_at_step=2)
    assert first.status == "interrupted" and first.steps == 2 and first.loss_curve == ref.loss_curve[:2]
    assert first.checkpoint is not None and first.checkpoint.endswith("step_0000002")
    resumed = _train(train_corpus, case, tmp_path)
    assert resumed.status == "completed" and resumed.run_dir == first.run_dir
    assert resumed.loss_curve == ref.loss_curve
    assert resumed.evals == ref.evals
    assert resumed.tokens_per_domain == ref.tokens_per_domain


def test_result_contents(references) -> None:
    for case, r in references.items():
        backend, proxy = CASES[case]
        assert r.status == "completed" and r.backend == backend and r.backend_reason == "requested"
        assert r.steps == r.total_steps == 4 and len(r.loss_curve) == len(r.lr_curve) == 4
        assert r.tokens == 4 * 8 * 64 == sum(r.tokens_per_domain.values())
        assert r.tokens_per_domain["sums"] == 3 * r.tokens_per_domain["prose"]  # exact blending at 1:3
        assert [e.step for e in r.evals] == [2, 4]
        assert set(r.val_loss) == set(r.val_bpb) == {"prose", "sums"}
        assert all(math.isfinite(v) and v > 0 for v in [*r.val_loss.values(), *r.val_bpb.values()])
        resolved = proxy.resolve_vocab(384)
        assert r.proxy == resolved.to_dict() and r.params == resolved.param_counts().total
        assert r.flops == r.flops_per_token * r.tokens and r.tokens_per_s > 0
        checkpoint = Path(r.checkpoint or "")
        assert (checkpoint / "trainer_state.json").exists() and (checkpoint / "model").is_dir()
        assert TrainResult.load(Path(r.run_dir) / RESULT_FILE) == r
        json.dumps(r.to_dict(), allow_nan=False)


def test_rerun_returns_the_finished_result_without_training(references, train_corpus: Path) -> None:
    ref = references["deepspeed-dense"]
    checkpoints = sorted(p.name for p in (Path(ref.run_dir) / "checkpoints").iterdir())
    again = _train(train_corpus, "deepspeed-dense", Path(ref.run_dir).parent)
    assert again == ref and again.wall_time_s == ref.wall_time_s  # read back, not retrained
    assert sorted(p.name for p in (Path(ref.run_dir) / "checkpoints").iterdir()) == checkpoints


def test_megatron_and_deepspeed_train_the_same_model_family(references) -> None:
    # different initial weights (each backend draws its own), same shape and data: close curves
    for kind in ("dense", "moe"):
        meg, ds = references[f"megatron-{kind}"], references[f"deepspeed-{kind}"]
        assert meg.params == ds.params
        assert abs(meg.loss_curve[0] - math.log(384)) < 0.3 and abs(ds.loss_curve[0] - math.log(384)) < 0.3
        assert abs(meg.loss_curve[-1] - ds.loss_curve[-1]) < 0.3


@pytest.mark.parametrize("backend", ["auto", "deepspeed"])
def test_the_proxy_learns_the_domain_it_trains_on(backend: str, train_corpus: Path, tmp_path: Path) -> None:
    budget = TrainBudget(steps=30, micro_batch=8, global_batch=8, lr=3e-3, warmup_steps=3, eval_interval=15)
    r = train(Mixture({"prose": 1.0}), train_corpus, tiny_cpu(seq_len=64), budget, backend, tmp_path)
    assert r.tokens_per_domain == {"prose": 30 * 8 * 64, "sums": 0}
    assert r.loss_curve[-1] < r.loss_curve[0] - 1.5  # the training loss falls
    first, last = r.evals
    assert last.loss["prose"] < first.loss["prose"]  # held-out loss on the trained domain keeps falling
    assert last.loss["prose"] < last.loss["sums"] - 1.0  # and is far below the unseen domain's
    assert last.bpb["prose"] < last.bpb["sums"]
    if backend == "auto":
        assert r.backend == "megatron" and r.backend_reason.startswith("auto: megatron")


@pytest.mark.parametrize("backend", ["megatron", "deepspeed"])
def test_divergence_raises_with_the_step_and_keeps_the_partial_result(
    backend: str,
    train_corpus: Path,
    tmp_path: Path,
) -> None:
    budget = TrainBudget(steps=12, micro_batch=4, global_batch=8, lr=1e5, min_lr=0.0, grad_clip=0.0, save_interval=2)
    with pytest.raises(TrainingDiverged) as info:
        train(MIX, train_corpus, tiny_cpu(seq_len=64), budget, backend, tmp_path)
    err = info.value
    assert f"at step {err.step}" in str(err) and "partial result" in str(err)
    partial = err.result
    assert partial is not None and partial.status == "diverged" and partial.steps == err.step < 12
    assert not math.isfinite(partial.loss_curve[-1]) and all(math.isfinite(x) for x in partial.loss_curve[:-1])
    on_disk = TrainResult.load(Path(partial.run_dir) / RESULT_FILE)
    assert on_disk.status == "diverged" and len(on_disk.loss_curve) == err.step
    if err.step > 2:  # the last checkpoint before the divergence is kept
        assert on_disk.checkpoint is not None and Path(on_disk.checkpoint).exists()


def test_bad_input_raises_one_line_errors(train_corpus: Path, tmp_path: Path) -> None:
    tiny = tiny_cpu(seq_len=64)
    with pytest.raises(MixSweepError, match="code"):
        train(Mixture({"prose": 1, "code": 1}), train_corpus, tiny, BUDGET, "deepspeed", tmp_path)
    with pytest.raises(ConfigError, match="smaller than the tokenizer's 384"):
        train(MIX, train_corpus, tiny.replace(vocab_size=100), BUDGET, "deepspeed", tmp_path)
    with pytest.raises(MixSweepError, match="not found"):
        train(MIX, tmp_path / "nowhere", tiny, BUDGET, "deepspeed", tmp_path)
    with pytest.raises(BackendUnavailable, match="multi-latent attention"):
        train(MIX, train_corpus, openseek_small_proxy(mla=True), BUDGET, "megatron", tmp_path)
    with pytest.raises(ConfigError, match="data-parallel size 3"):
        train(MIX, train_corpus, tiny, BUDGET, "deepspeed", tmp_path, nprocs=3)
    with pytest.raises(ConfigError, match="mixture must be a Mixture"):
        train({"prose": 1}, train_corpus, tiny, BUDGET, "deepspeed", tmp_path)  # type: ignore[arg-type]
    for err in (ConfigError, BackendUnavailable):
        assert issubclass(err, MixSweepError)
    assert not list(tmp_path.iterdir())  # nothing was started


def test_proxy_from_sweep_spec_dict_trains_on_a_catalog(train_corpus: Path, tmp_path: Path) -> None:
    from trainers.data import Corpus

    catalog = Corpus.load(train_corpus).catalog  # train(mixture, catalog, ...) as a sweep may pass it
    proxy = ProxyConfig.from_dict({**tiny_cpu(seq_len=32).to_dict(), "num_layers": 1})
    budget = TrainBudget.from_dict({"tokens": "1k", "micro_batch": 8})
    r = train(MIX, catalog, proxy, budget, "deepspeed", tmp_path)
    assert r.steps == math.ceil(1000 / (8 * 32)) and r.status == "completed"


@pytest.mark.parametrize("stage", [1, 2, 3])
def test_deepspeed_zero_stages_train_and_resume(stage: int, references, train_corpus: Path, tmp_path: Path) -> None:
    from trainers.backends import DeepSpeedBackend

    backend = DeepSpeedBackend(zero_stage=stage)
    first = train(MIX, train_corpus, tiny_cpu(seq_len=64), BUDGET, backend, tmp_path, stop_at_step=2)
    resumed = train(MIX, train_corpus, tiny_cpu(seq_len=64), BUDGET, backend, tmp_path)
    assert resumed.backend_options == {"zero_stage": stage}
    assert resumed.loss_curve[:2] == first.loss_curve
    ref = references["deepspeed-dense"]  # ZeRO-0: the same optimisation, sharded differently
    assert resumed.run_dir != ref.run_dir
    for got, want in zip(resumed.loss_curve, ref.loss_curve):
        assert abs(got - want) < 1e-5


def test_a_crash_after_the_last_checkpoint_loses_nothing(train_corpus: Path, tmp_path: Path) -> None:
    budget = TrainBudget(steps=2, micro_batch=8, global_batch=8)
    done = train(MIX, train_corpus, tiny_cpu(seq_len=32), budget, "deepspeed", tmp_path)
    (Path(done.run_dir) / RESULT_FILE).unlink()  # as if the process died before writing it
    again = train(MIX, train_corpus, tiny_cpu(seq_len=32), budget, "deepspeed", tmp_path)
    assert again.status == "completed" and again.checkpoint == done.checkpoint
    assert again.loss_curve == done.loss_curve and again.evals == done.evals


def _transport_threads() -> int:
    """This process's threads that belong to a torch.distributed group: gloo's loops and TCP stores."""
    names = []
    for tid in os.listdir("/proc/self/task"):
        with contextlib.suppress(OSError):  # a thread that ended while listed
            names.append(Path(f"/proc/self/task/{tid}/comm").read_text().strip())
    return sum(n in ("gloo_tcp_loop", "pt_gloo_runloop", "pt_tcpstore_uv") for n in names)


@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="reads the threads from Linux's /proc")
def test_a_process_that_trains_run_after_run_keeps_no_process_group(train_corpus: Path, tmp_path: Path) -> None:
    """A Ray Tune actor reused across trials trains one run after another in one process. Each megatron
    run used to leave its groups alive (megatron-core's rotary cache and a group its destroy forgets):
    on CPU a gloo thread waking 100 times a second per run, on GPU an NCCL communicator."""
    from megatron.core import parallel_state

    budget = TrainBudget(steps=2, micro_batch=4, global_batch=4, eval_interval=2)
    # a first run, which also ends what earlier tests' runs in this process left (DeepSpeed keeps its last)
    train(MIX, train_corpus, tiny_cpu(seq_len=32), budget, "megatron", tmp_path / "first")
    before = _transport_threads()
    for run in range(2):
        train(MIX, train_corpus, tiny_cpu(seq_len=32), budget, "megatron", tmp_path / str(run))
        assert _transport_threads() == before, f"run {run} left threads of its process groups"
    assert not [k for k, v in vars(parallel_state).items() if isinstance(v, torch.distributed.ProcessGroup)]


def test_data_parallel_ranks_read_the_data_layers_global_batches() -> None:
    from trainers.data import GlobalBatchSampler
    from trainers.loop import batch_indices

    budget = TrainBudget(steps=5, micro_batch=2, global_batch=8)
    for world in (1, 2, 4):
        for rank in range(world):
            sampler = list(GlobalBatchSampler(5 * 8, 8, rank=rank, world_size=world))
            ours = [i for step in range(5) for i in batch_indices(step, budget, rank, world)]
            assert ours == sampler
