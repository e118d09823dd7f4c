"""The training loop shared by every backend: data order, LR schedule, evaluation, checkpoints,
divergence checks.

Determinism and exact resume come from three choices: the sample read by (step, rank, micro-batch)
is a pure function of those numbers (the blended dataset is index-addressable, so nothing about the
data stream needs saving); the LR is a pure function of the step; and a checkpoint holds the
engine's model + optimizer state plus this loop's history (`trainer_state.json`), written under a
temporary name and renamed, so the latest checkpoint is always complete.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import torch
import torch.distributed as dist

from mixture_search.files import atomic_write, atomic_write_json
from trainers.backends.base import Engine, StepStats
from trainers.budget import TrainBudget
from trainers.errors import CheckpointError
from trainers.evaluation import Validation, evaluate
from trainers.result import EvalPoint

CHECKPOINTS = "checkpoints"
LATEST = "latest"
STATE_FILE = "trainer_state.json"
KEEP_CHECKPOINTS = 2


class SampleSource(Protocol):
    """What `trainers.data.BlendedSequenceDataset` provides: O(1) samples by index."""

    def __len__(self) -> int: ...

    def __getitem__(self, index: int) -> dict[str, Any]: ...  # {"tokens": LongTensor[seq + 1], "domain": int}


@dataclass
class LoopState:
    """Everything besides the engine that a checkpoint restores."""

    step: int = 0
    loss_curve: list[float] = field(default_factory=list)
    lr_curve: list[float] = field(default_factory=list)
    aux_curve: list[float] = field(default_factory=list)
    evals: list[EvalPoint] = field(default_factory=list)
    tokens_per_domain: list[int] = field(default_factory=list)
    train_time_s: float = 0.0  # time inside training steps (data loading included), all sessions

    def to_dict(self) -> dict[str, Any]:
        return {
            "step": self.step,
            "loss_curve": self.loss_curve,
            "lr_curve": self.lr_curve,
            "aux_curve": self.aux_curve,
            "evals": [e.to_dict() for e in self.evals],
            "tokens_per_domain": self.tokens_per_domain,
            "train_time_s": self.train_time_s,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> LoopState:
        return cls(
            step=int(data["step"]),
            loss_curve=[float(x) for x in data["loss_curve"]],
            lr_curve=[float(x) for x in data["lr_curve"]],
            aux_curve=[float(x) for x in data.get("aux_curve", [])],
            evals=[EvalPoint.from_dict(e) for e in data["evals"]],
            tokens_per_domain=[int(x) for x in data["tokens_per_domain"]],
            train_time_s=float(data["train_time_s"]),
        )


@dataclass(frozen=True)
class Progress:
    """Reported to the progress callback after every step (rank 0 only)."""

    step: int
    total_steps: int
    loss: float
    lr: float
    tokens_per_s: float
    eval: EvalPoint | None = None


class Diverged(Exception):
    """Internal: the loss was not finite at `step`; `train()` turns it into `TrainingDiverged`."""

    def __init__(self, step: int, loss: float) -> None:
        super().__init__(f"loss became {loss} at step {step}")
        self.step, self.loss = step, loss


@dataclass
class Loop:
    engine: Engine
    dataset: SampleSource
    validation: Validation
    num_domains: int
    seq_len: int
    budget: TrainBudget
    total_steps: int
    run_dir: Path
    is_main: bool
    progress: Callable[[Progress], None] | None = None

    # -- data -----------------------------------------------------------------------------------------
    def micro_batches(self, step: int) -> tuple[list[torch.Tensor], torch.Tensor]:
        """This rank's micro-batches for `step` and the per-domain token counts of what it read."""
        indices = batch_indices(step, self.budget, self.engine.dp_rank, self.engine.dp_size)
        counts = torch.zeros(self.num_domains, dtype=torch.int64)
        batches = []
        mb = self.budget.micro_batch
        for m in range(0, len(indices), mb):
            samples = [self.dataset[i] for i in indices[m : m + mb]]
            batches.append(torch.stack([s["tokens"] for s in samples]))
            for s in samples:
                counts[int(s["domain"])] += self.seq_len
        return batches, counts

    # -- checkpoints ----------------------------------------------------------------------------------
    @property
    def checkpoint_root(self) -> Path:
        return self.run_dir / CHECKPOINTS

    def latest_checkpoint(self) -> Path | None:
        pointer = self.checkpoint_root / LATEST
        if not pointer.exists():
            return None
        path = self.checkpoint_root / pointer.read_text(encoding="utf-8").strip()
        if not (path / STATE_FILE).exists():
            raise CheckpointError("the latest checkpoint is incomplete (no trainer_state.json)", where=str(path))
        return path

    def save(self, state: LoopState) -> Path:
        name = f"step_{state.step:07d}"
        final = self.checkpoint_root / name
        tmp = self.checkpoint_root / f".{name}.tmp"
        if self.is_main:
            shutil.rmtree(tmp, ignore_errors=True)
            tmp.mkdir(parents=True)
        _barrier()
        self.engine.save(tmp / "model")
        _barrier()
        if self.is_main:
            atomic_write_json(tmp / STATE_FILE, state.to_dict())
            shutil.rmtree(final, ignore_errors=True)
            os.replace(tmp, final)
            atomic_write(self.checkpoint_root / LATEST, name)
            old = sorted(p for p in self.checkpoint_root.glob("step_*") if p.is_dir() and p != final)
            for path in old[: max(0, len(old) - (KEEP_CHECKPOINTS - 1))]:
                shutil.rmtree(path, ignore_errors=True)
        _barrier()
        return final

    def restore(self) -> LoopState | None:
        path = self.latest_checkpoint()
        if path is None:
            return None
        state = LoopState.from_dict(json.loads((path / STATE_FILE).read_text(encoding="utf-8")))
        self.engine.load(path / "model")
        return state

    # -- the loop -------------------------------------------------------------------------------------
    def evaluate(self, state: LoopState) -> EvalPoint:
        return evaluate(
            self.engine.token_losses,
            self.validation,
            step=state.step,
            tokens=state.step * self.budget.global_batch * self.seq_len,
            batch_size=self.budget.micro_batch,
            dp_rank=self.engine.dp_rank,
            dp_size=self.engine.dp_size,
            group=self.engine.dp_group,
        )

    def run(self, state: LoopState, *, stop_at: int | None = None) -> tuple[LoopState, Path | None]:
        """Train from `state.step` to `total_steps` (or `stop_at`), returning the state and the last
        checkpoint written. Raises `Diverged` on a non-finite loss, after the step is recorded."""
        b = self.budget
        if not state.tokens_per_domain:
            state.tokens_per_domain = [0] * self.num_domains
        end = self.total_steps if stop_at is None else min(self.total_steps, stop_at)
        interval = b.checkpoint_interval
        checkpoint: Path | None = None
        tokens_per_step = b.global_batch * self.seq_len
        while state.step < end:
            t0 = time.perf_counter()
            batches, counts = self.micro_batches(state.step)
            lr = b.lr_at(state.step, self.total_steps)
            stats: StepStats = self.engine.train_step(batches, lr)
            if dist.is_initialized() and dist.get_world_size() > 1:
                dist.all_reduce(counts, group=self.engine.dp_group)
            state.train_time_s += time.perf_counter() - t0
            state.step += 1
            state.loss_curve.append(stats.loss)
            state.lr_curve.append(lr)
            state.aux_curve.append(stats.aux_loss)
            state.tokens_per_domain = [a + int(c) for a, c in zip(state.tokens_per_domain, counts)]
            if not math.isfinite(stats.loss):
                raise Diverged(state.step, stats.loss)
            point = None
            last = state.step == self.total_steps
            if last or (b.eval_interval and state.step % b.eval_interval == 0):
                point = self.evaluate(state)
                state.evals.append(point)
            if self.progress is not None and self.is_main:
                rate = tokens_per_step * len(state.loss_curve) / max(state.train_time_s, 1e-9)
                self.progress(Progress(state.step, self.total_steps, stats.loss, lr, rate, point))
            if last or state.step == end or (interval and state.step % interval == 0):
                checkpoint = self.save(state)
        return state, checkpoint


def _barrier() -> None:
    if dist.is_initialized() and dist.get_world_size() > 1:
        dist.barrier()


def batch_indices(step: int, budget: TrainBudget, dp_rank: int, dp_size: int) -> Sequence[int]:
    """The dataset indices data-parallel rank `dp_rank` reads at `step`: its contiguous share of
    global batch `step`, [step*G + r*G/dp, step*G + (r+1)*G/dp)."""
    per_rank = budget.global_batch // dp_size
    start = step * budget.global_batch + dp_rank * per_rank
    return range(start, start + per_rank)
