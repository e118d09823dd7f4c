"""The CUDA shim that lets megatron-core 0.16.1 train on a CPU. Everything CPU-specific about the
Megatron backend that touches Megatron's own modules is here, and `apply()` is only called when no
CUDA device is present (on a GPU Megatron runs unpatched).

What it patches, and why (see STACK-FACTS.md, measured on this stack):

1. `torch.cuda.current_device()` returns "cpu". Megatron allocates buffers with
   `device=torch.cuda.current_device()` (RoPE frequencies, router buffers, TP all-gather outputs);
   with no CUDA build that call raises. Answering "cpu" puts those tensors where the model is.
2. The tensor-parallel RNG tracker keeps CPU generator states instead of CUDA ones. Megatron forks
   named RNG streams (data-parallel, tensor-parallel, expert-parallel) around dropout and expert
   initialisation; the stock tracker calls `torch.cuda.get_rng_state`.
3. `torch.cuda.synchronize()` does nothing: `dist_checkpointing`'s writer waits for device-to-host
   copies with it, and without a CUDA device there is nothing to wait for.
4. `moe_utils.te_general_gemm = None`: 0.16.1 references the name only imported with
   TransformerEngine (a NameError in the router without TE); None selects its plain-torch path.

Not patched, because they cannot work on CPU and the backend avoids them instead: the alltoall token
dispatcher (CUDA streams), Megatron's DDP and optimizer (hard-coded CUDA buffers), the fused kernels
(all fusions are off), and `get_default_causal_mask` (the backend passes its own causal mask).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch

_applied = False


def apply() -> None:
    """Install the shim (idempotent). Call it before building a Megatron model on a CPU-only machine."""
    global _applied
    if _applied:
        return
    if torch.cuda.is_available():
        raise RuntimeError("the Megatron CPU shim must not be applied on a machine with a CUDA device")
    # lazy: megatron-core loads only when the Megatron backend runs (see megatron.py)
    from megatron.core.tensor_parallel import random as mrandom
    from megatron.core.transformer.moe import moe_utils

    torch.cuda.current_device = _cpu_device  # type: ignore[assignment]
    torch.cuda.synchronize = _no_sync
    if not hasattr(moe_utils, "te_general_gemm"):
        moe_utils.te_general_gemm = None

    class CPURNGStatesTracker(mrandom.CudaRNGStatesTracker):
        """Megatron's named RNG streams kept as CPU generator states."""

        def add(self, name: str, seed: int) -> None:
            self._is_initialized = True
            if seed in self.seeds_:
                raise RuntimeError(f"seed {seed} already exists")
            self.seeds_.add(seed)
            if name in self.states_:
                raise RuntimeError(f"rng state {name} already exists")
            self.states_[name] = torch.Generator().manual_seed(seed).get_state()

        @contextlib.contextmanager
        def fork(self, name: str = mrandom._MODEL_PARALLEL_RNG_TRACKER_NAME) -> Iterator[None]:
            if name not in self.states_:
                raise RuntimeError(f"rng state {name} is not added")
            outer = torch.get_rng_state()
            torch.set_rng_state(self.states_[name])
            try:
                yield
            finally:
                self.states_[name] = torch.get_rng_state()
                torch.set_rng_state(outer)

    mrandom._CUDA_RNG_STATE_TRACKER = CPURNGStatesTracker()
    mrandom._CUDA_RNG_STATE_TRACKER_INITIALIZED = True
    _applied = True


def _cpu_device() -> str:
    return "cpu"


def _no_sync(device: object = None) -> None:
    return None


def seed_streams(seed: int, tp_rank: int, ep_rank: int, etp_rank: int) -> None:
    """`model_parallel_cuda_manual_seed` without its `torch.cuda.manual_seed` calls: the same three
    named streams, seeded exactly as Megatron seeds them."""
    # lazy: megatron-core loads only when the Megatron backend runs (see megatron.py)
    from megatron.core.tensor_parallel import random as mrandom

    tracker = mrandom._CUDA_RNG_STATE_TRACKER
    assert tracker is not None, "apply() first"
    tracker.reset()
    tracker.add(mrandom._DATA_PARALLEL_RNG_TRACKER_NAME, seed)
    tracker.add(mrandom._MODEL_PARALLEL_RNG_TRACKER_NAME, seed + 2718 + tp_rank)
    tracker.add(mrandom._EXPERT_PARALLEL_RNG_TRACKER_NAME, seed + 1024 + 100 * ep_rank + etp_rank)
