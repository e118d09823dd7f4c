"""`train()`: one proxy model trained on one mixture, the call every sweep trial makes.

The run folder is derived from everything that changes what is trained (mixture, proxy shape,
budget, corpus data hash, backend and its options, parallel layout), so calling `train()` again with
the same inputs returns the finished result without training, and after an interruption resumes
from the latest checkpoint and produces the same loss curve as an uninterrupted run.

The same function runs in one process, inside a torch.distributed launcher (torchrun, Ray Train's
TorchTrainer: each worker calls `train()` and joins the launcher's group), or spawns `nprocs` local
workers itself.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from mixture_search.catalog import DomainCatalog
from mixture_search.keys import content_key
from mixture_search.mixture import Mixture
from trainers import backends
from trainers.backends.base import Backend
from trainers.budget import TrainBudget
from trainers.config import ProxyConfig
from trainers.data import BlendedSequenceDataset, Corpus, ValidationSet, WeightSchedule
from trainers.data.subsets import keep_fraction
from trainers.distributed import Parallelism, World, device_kind, process_group, spawn
from trainers.errors import BackendUnavailable, ConfigError, TrainingDiverged
from trainers.loop import Diverged, Loop, LoopState, Progress
from trainers.result import TrainResult

RESULT_FILE = "result.json"


def load_corpus(corpus: Corpus | DomainCatalog | str | Path) -> Corpus:
    """A `trainers.data.Corpus` from itself, its folder, or its train-split catalog (`corpus.catalog`,
    whose base_dir is the corpus folder)."""
    if isinstance(corpus, Corpus):
        return corpus
    if isinstance(corpus, DomainCatalog):
        if corpus.base_dir is None:
            raise ConfigError("the catalog has no base_dir, so its prepared corpus cannot be found", where="catalog")
        return Corpus.load(corpus.base_dir)
    return Corpus.load(Path(corpus))


def run_name(
    mixture: Mixture,
    proxy: ProxyConfig,
    budget: TrainBudget,
    data_hash: str,
    backend: Backend,
    parallel: Parallelism,
    world_size: int,
    *,
    target_tokens: int | None = None,
    schedule: WeightSchedule | None = None,
) -> str:
    """`<preset>-<backend>-<key>`: the key hashes every input that changes what is trained."""
    payload: dict[str, object] = {
        "mixture": mixture.key,
        "proxy": proxy.key,
        "budget": budget.key,
        "data": data_hash,
        "backend": backend.name,
        "options": backend.options,
        "tp": parallel.tp,
        "ep": parallel.ep,
        "world": world_size,
    }
    if target_tokens is not None:  # a repetition-matched proxy reads other data; without it, keys as before
        payload["repetition_target_tokens"] = int(target_tokens)
    if schedule is not None:  # weights that change over the run; a static mixture's key is as before
        payload["schedule"] = schedule.key
    key = content_key(payload, length=12)
    return f"{proxy.name}-{backend.name}-{key}"


def launcher_world_size() -> int:
    """The size of the group a launcher started us in (Ray Train initialises it before calling us;
    torchrun announces it in WORLD_SIZE), else 1."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_world_size()
    return int(os.environ.get("WORLD_SIZE", "1"))


def train(
    mixture: Mixture,
    corpus: Corpus | DomainCatalog | str | Path,
    proxy: ProxyConfig,
    budget: TrainBudget,
    backend: str | Backend = "auto",
    out_dir: str | Path = "runs/train",
    *,
    parallel: Parallelism | None = None,
    nprocs: int = 1,
    stop_at_step: int | None = None,
    progress: Callable[[Progress], None] | None = None,
    target_tokens: int | None = None,
    schedule: WeightSchedule | None = None,
) -> TrainResult:
    """Train `proxy` on `mixture` of `corpus` for `budget`, returning (and writing) a `TrainResult`.

    `corpus` is a prepared `trainers.data.Corpus`, its folder, or its train-split `DomainCatalog`.
    `backend` is "megatron", "deepspeed", "auto" or a backend instance (e.g. `DeepSpeedBackend(zero_stage=2)`).
    `nprocs > 1` spawns that many local workers (CPU: gloo). `stop_at_step` ends the run early at
    that step, after a checkpoint (status "interrupted"); calling again resumes it. A NaN/inf loss
    raises `TrainingDiverged` carrying the partial result, which is also written to the run folder.
    `target_tokens` makes the proxy repetition-matched to a target run of that many tokens: each domain
    reads a deterministic subset of proxy tokens / target tokens of its windows, so it repeats as often
    as in the target run (`trainers.data.subsets`). `schedule` (over the mixture's names) makes the
    weights change over the run (`WeightSchedule.from_phases`: a run in phases); `mixture` is then its start.
    """
    t_start = time.perf_counter()
    parallel = parallel or Parallelism()
    if not isinstance(mixture, Mixture):
        raise ConfigError(f"mixture must be a Mixture, got {type(mixture).__name__}", where="mixture")
    if nprocs < 1:
        raise ConfigError(f"must be >= 1, got {nprocs}", where="nprocs")
    corpus = load_corpus(corpus)
    proxy = proxy.resolve_vocab(int(corpus.vocab_size))
    world_size = nprocs if nprocs > 1 else launcher_world_size()
    if nprocs > 1 and launcher_world_size() > 1:
        raise ConfigError(
            "nprocs > 1 inside a torch.distributed launcher; let the launcher start the workers", where="nprocs"
        )
    dp = parallel.data_parallel(world_size)
    budget.micro_batches_per_rank(dp)
    device = device_kind()
    chosen, reason = (
        backends.choose(backend, proxy, parallel, device)
        if isinstance(backend, str)
        else (backend, _check_instance(backend, proxy, parallel, device))
    )
    run_dir = Path(out_dir) / run_name(
        mixture,
        proxy,
        budget,
        str(corpus.data_hash),
        chosen,
        parallel,
        world_size,
        target_tokens=target_tokens,
        schedule=schedule,
    )
    done = run_dir / RESULT_FILE
    if done.exists():
        previous = TrainResult.load(done)
        if previous.status == "completed":
            return previous
    data = _data(
        corpus, mixture, proxy, budget, target_tokens, schedule
    )  # bad mixtures fail here, before anything is written
    run_dir.mkdir(parents=True, exist_ok=True)
    job = _Job(
        mixture, proxy, budget, chosen, reason, parallel, run_dir, stop_at_step, t_start, target_tokens, schedule
    )
    if nprocs > 1:
        spawn(_worker, nprocs, job, corpus.root)
        result = TrainResult.load(done)
        if result.status == "diverged":
            raise TrainingDiverged(
                result.error or "training diverged", step=result.steps, result=result, where=str(run_dir)
            )
        return result
    with torch.enable_grad():  # whatever the caller's mode (LightEval, say, turns autograd off process-wide)
        return job.run(corpus, progress, data)


def _data(
    corpus: Any,
    mixture: Mixture,
    proxy: ProxyConfig,
    budget: TrainBudget,
    target_tokens: int | None = None,
    schedule: WeightSchedule | None = None,
) -> tuple[Any, Any]:
    """The training stream and the validation windows (index arrays cached in the corpus folder)."""
    total = budget.total_steps(proxy.seq_len)
    samples = total * budget.global_batch
    subset = None if target_tokens is None else keep_fraction(samples * proxy.seq_len, target_tokens)
    dataset = BlendedSequenceDataset(
        corpus,
        mixture,
        seq_len=proxy.seq_len,
        num_samples=samples,
        seed=budget.seed,
        subset=subset,
        schedule=schedule,
    )
    validation = ValidationSet(corpus, seq_len=proxy.seq_len, max_windows_per_domain=budget.eval_windows_per_domain)
    return dataset, validation


def _check_instance(backend: Backend, proxy: ProxyConfig, parallel: Parallelism, device: str) -> str:
    why = backend.unsupported(proxy, parallel, device)
    if why:
        raise BackendUnavailable(why, where=f"backend {backend.name}")
    return "requested"


def _worker(job: _Job, corpus_dir: Path) -> None:
    with contextlib.suppress(TrainingDiverged):  # rank 0 wrote the partial result; the parent raises it
        job.run(load_corpus(corpus_dir), None)


class _Job:
    """Everything one rank needs; picklable so spawned workers receive it."""

    def __init__(
        self,
        mixture: Mixture,
        proxy: ProxyConfig,
        budget: TrainBudget,
        backend: Backend,
        reason: str,
        parallel: Parallelism,
        run_dir: Path,
        stop_at_step: int | None,
        t_start: float,
        target_tokens: int | None = None,
        schedule: WeightSchedule | None = None,
    ) -> None:
        self.mixture, self.proxy, self.budget, self.backend = mixture, proxy, budget, backend
        self.reason, self.parallel, self.run_dir = reason, parallel, run_dir
        self.stop_at_step, self.t_start, self.target_tokens = stop_at_step, t_start, target_tokens
        self.schedule = schedule

    def run(
        self, corpus: Any, progress: Callable[[Progress], None] | None, data: tuple[Any, Any] | None = None
    ) -> TrainResult:
        proxy, budget = self.proxy, self.budget
        total = budget.total_steps(proxy.seq_len)
        dataset, validation = data or _data(corpus, self.mixture, proxy, budget, self.target_tokens, self.schedule)
        domains = [str(d) for d in corpus.domains]
        with process_group() as world:
            engine = self.backend.build(proxy, budget, self.parallel, world)
            try:
                loop = Loop(
                    engine,
                    dataset,
                    validation,
                    len(domains),
                    proxy.seq_len,
                    budget,
                    total,
                    self.run_dir,
                    world.is_main,
                    progress,
                )
                state = loop.restore() or LoopState()
                error = None
                try:
                    state, checkpoint = loop.run(state, stop_at=self.stop_at_step)
                    checkpoint = checkpoint or loop.latest_checkpoint()  # nothing left to train: the one restored
                    status = "completed" if state.step >= total else "interrupted"
                except Diverged as exc:
                    status, error = "diverged", f"training diverged: {exc}"  # "loss became nan at step 7"
                    checkpoint = loop.latest_checkpoint()
                result = self._result(state, status, error, checkpoint, domains, world, corpus, total)
                if world.is_main:
                    result.save(self.run_dir / RESULT_FILE)
            finally:
                engine.close()
        if status == "diverged":
            raise TrainingDiverged(
                f"{error}; the partial result is in {RESULT_FILE}",
                step=result.steps,
                result=result,
                where=str(self.run_dir),
            )
        return result

    def _result(
        self,
        state: LoopState,
        status: Any,
        error: str | None,
        checkpoint: Path | None,
        domains: list[str],
        world: World,
        corpus: Any,
        total: int,
    ) -> TrainResult:
        proxy, budget = self.proxy, self.budget
        counts = proxy.param_counts()
        tokens = state.step * budget.global_batch * proxy.seq_len
        rate = tokens / state.train_time_s if state.train_time_s > 0 else 0.0
        fpt = proxy.flops_per_token()
        device = torch.cuda.get_device_name(world.device) if world.device.type == "cuda" else "cpu"
        return TrainResult(
            status=status,
            backend=self.backend.name,
            backend_reason=self.reason,
            backend_options=dict(self.backend.options),
            device=device,
            mixture=self.mixture.to_dict(),
            proxy=proxy.to_dict(),
            budget=budget.to_dict(),
            data_hash=str(corpus.data_hash),
            run_dir=str(self.run_dir),
            checkpoint=str(checkpoint) if checkpoint else None,
            steps=state.step,
            total_steps=total,
            tokens=tokens,
            tokens_per_domain=dict(zip(domains, state.tokens_per_domain)),
            loss_curve=list(state.loss_curve),
            lr_curve=list(state.lr_curve),
            aux_loss_curve=list(state.aux_curve),
            evals=list(state.evals),
            params=counts.total,
            active_params=counts.active,
            flops_per_token=fpt,
            flops=float(fpt) * tokens,
            tokens_per_s=rate,
            flops_per_s=rate * fpt,
            wall_time_s=time.perf_counter() - self.t_start,
            world={
                "world_size": world.world_size,
                "dp": world.world_size // self.parallel.tp,
                "tp": self.parallel.tp,
                "ep": self.parallel.ep,
            },
            error=error,
        )
