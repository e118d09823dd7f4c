"""The DeepSpeed backend: the plain PyTorch proxy model (`trainers.models.gpt.GPT`, Megatron's
parameter names and layouts) trained through `deepspeed.initialize`, ZeRO stage configurable,
DeepSpeed's own checkpoints. Data parallel only (no tensor or expert parallelism here).

Compiled ops and their cache: on CPU DeepSpeed JIT-compiles its shared-memory communication op
(`deepspeed_shm_comm`, about a minute) the first time a process initialises it, and would compile its
fused CPU Adam (about two more minutes) if asked for it. We pass a `torch.optim.AdamW` instead, which
DeepSpeed wraps for every ZeRO stage, so Adam is never compiled; the one unavoidable build goes to
`TORCH_EXTENSIONS_DIR`, which we point at a per-machine cache (`~/.cache/mixsweep/torch_extensions`,
or `$MIXSWEEP_CACHE/torch_extensions`) unless it is already set, so it is paid once per machine and
every later trial loads the built library in well under a second.

DeepSpeed is imported inside the functions that use it (each says `lazy`): importing this module
registers the backend without it, so a missing or broken install takes out this backend alone; and
on CPU it must see `DS_ACCELERATOR=cpu` (set by `unsupported`) before its first import.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

import torch

from trainers.backends.base import StepStats, register
from trainers.budget import TrainBudget
from trainers.config import ProxyConfig
from trainers.distributed import Parallelism, World
from trainers.errors import CheckpointError, ConfigError
from trainers.models.gpt import GPT

ZERO_STAGES = (0, 1, 2, 3)
_TAG = "state"


def cache_dir() -> Path:
    """Per-machine cache of MixSweep (compiled ops); `$MIXSWEEP_CACHE` overrides `~/.cache/mixsweep`."""
    return Path(os.environ.get("MIXSWEEP_CACHE") or Path.home() / ".cache" / "mixsweep")


def use_extension_cache() -> Path:
    """Point torch's JIT extension builds at the per-machine cache (unless the user chose a folder)."""
    path = Path(os.environ.setdefault("TORCH_EXTENSIONS_DIR", str(cache_dir() / "torch_extensions")))
    path.mkdir(parents=True, exist_ok=True)
    return path


class DeepSpeedBackend:
    name: ClassVar[str] = "deepspeed"

    def __init__(self, zero_stage: int = 0) -> None:
        if zero_stage not in ZERO_STAGES:
            raise ConfigError(f"{zero_stage!r} is not one of 0, 1, 2, 3", where="deepspeed.zero_stage")
        self.zero_stage = zero_stage

    @property
    def options(self) -> dict[str, int | str]:
        return {"zero_stage": self.zero_stage}

    def unsupported(self, proxy: ProxyConfig, parallel: Parallelism, device: str) -> str | None:
        try:
            if device == "cpu":
                os.environ.setdefault("DS_ACCELERATOR", "cpu")
            # lazy: DeepSpeed (see the module docstring)
            import deepspeed  # noqa: F401
        except Exception as exc:
            return f"deepspeed does not import ({type(exc).__name__}: {exc})"
        if proxy.mla is not None:
            return "multi-latent attention is built by the Megatron backend only"
        if parallel.tp > 1 or parallel.ep > 1:
            return "tensor and expert parallelism are Megatron-only; DeepSpeed runs data parallel"
        return None

    def build(self, proxy: ProxyConfig, budget: TrainBudget, parallel: Parallelism, world: World) -> DeepSpeedEngine:
        return DeepSpeedEngine(proxy, budget, world, self.zero_stage)


class DeepSpeedEngine:
    def __init__(self, proxy: ProxyConfig, budget: TrainBudget, world: World, zero_stage: int) -> None:
        use_extension_cache()
        # lazy: DeepSpeed (see the module docstring)
        import deepspeed

        self.proxy, self.budget, self.world = proxy, budget, world
        self.cuda = world.device.type == "cuda"
        self.dp_rank, self.dp_size = world.rank, world.world_size
        self.dp_group: torch.distributed.ProcessGroup | None = None
        self.micro_batches = budget.micro_batches_per_rank(self.dp_size)
        torch.manual_seed(budget.seed)
        model = GPT(proxy).to(world.device)
        decay = [p for p in model.parameters() if p.dim() >= 2]
        no_decay = [p for p in model.parameters() if p.dim() < 2]
        optimizer = torch.optim.AdamW(
            [{"params": decay, "weight_decay": budget.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
            lr=budget.lr,
            betas=(budget.adam_beta1, budget.adam_beta2),
            eps=1e-8,
            foreach=True,
        )
        config: dict[str, Any] = {
            "train_batch_size": budget.global_batch,
            "train_micro_batch_size_per_gpu": budget.micro_batch,
            "gradient_accumulation_steps": self.micro_batches,
            "zero_optimization": {"stage": zero_stage},
            "gradient_clipping": budget.grad_clip,
            "bf16": {"enabled": self.cuda},
            "steps_per_print": 2**31 - 1,
            "wall_clock_breakdown": False,
        }
        if zero_stage > 0 and not self.cuda:
            config["zero_allow_untested_optimizer"] = True
        self.engine, _, _, _ = deepspeed.initialize(
            model=model, optimizer=optimizer, config=config, dist_init_required=False
        )
        self.model: GPT = model

    def train_step(self, micro_batches: Sequence[torch.Tensor], lr: float) -> StepStats:
        self.engine.train()
        for group in self.engine.optimizer.param_groups:
            group["lr"] = lr
        total = torch.zeros((), device=self.world.device)
        aux_total = 0.0
        for tokens in micro_batches:
            tokens = tokens.to(self.world.device, non_blocking=True)
            token_loss, aux = self.engine(tokens[:, :-1], tokens[:, 1:])
            loss = token_loss.float().mean()
            self.engine.backward(loss + aux)  # DeepSpeed divides by the accumulation steps itself
            self.engine.step()  # steps the optimizer at the accumulation boundary only
            total += loss.detach()
            aux_total += float(aux.detach())
        self.model.update_expert_bias()
        torch.distributed.all_reduce(total)
        norm = self.engine.get_global_grad_norm()
        n = len(micro_batches)
        return StepStats(
            loss=float(total) / n / self.dp_size,
            aux_loss=aux_total / n,
            grad_norm=float(norm) if norm is not None else 0.0,
        )

    @torch.no_grad()
    def token_losses(self, tokens: torch.Tensor) -> torch.Tensor:
        self.engine.eval()
        tokens = tokens.to(self.world.device)
        token_loss, _ = self.engine(tokens[:, :-1], tokens[:, 1:])
        return token_loss.float().cpu()

    def save(self, path: Path) -> None:
        path.mkdir(parents=True, exist_ok=True)
        self.engine.save_checkpoint(str(path), tag=_TAG, save_latest=False)

    def load(self, path: Path) -> None:
        # DeepSpeed's own reader unpickles (`torch.load(weights_only=False)`); ours reads tensors only
        self.engine.checkpoint_engine.load = _weights_only_load
        loaded, _ = self.engine.load_checkpoint(
            str(path), tag=_TAG, load_optimizer_states=True, load_lr_scheduler_states=False
        )
        if loaded is None:
            raise CheckpointError("DeepSpeed found no checkpoint", where=str(path))

    def close(self) -> None:
        self.engine.destroy()


def _weights_only_load(path: str, map_location: Any = None) -> Any:
    """A DeepSpeed checkpoint file read with `weights_only=True`: tensors and plain containers, plus the
    DeepSpeed classes its ZeRO optimizer state holds (numbers only), allowed by name."""
    # lazy: DeepSpeed (see the module docstring)
    from deepspeed.runtime.fp16.loss_scaler import DynamicLossScaler, LossScaler
    from deepspeed.runtime.zero.config import ZeroStageEnum
    from deepspeed.utils.tensor_fragment import fragment_address

    with torch.serialization.safe_globals([LossScaler, DynamicLossScaler, ZeroStageEnum, fragment_address]):
        return torch.load(path, map_location=map_location, weights_only=True)


BACKEND = register(DeepSpeedBackend())
