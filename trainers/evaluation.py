"""Per-domain validation: mean loss (nats per token) and bits per byte on held-out windows.

Bits per byte divides the summed loss of a domain's windows by the UTF-8 bytes of the text those
windows predict, so it compares runs with different tokenizers (a tokenizer that merges more bytes
per token gets a higher per-token loss but the same bits per byte for the same model quality).
Windows are sharded over data-parallel ranks and the sums all-reduced, so every rank returns the
same numbers whatever the world size.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Protocol

import torch
import torch.distributed as dist

from trainers.result import EvalPoint


class Validation(Protocol):
    """What `trainers.data.ValidationSet` provides."""

    windows: Mapping[str, torch.Tensor]  # domain -> [n, seq + 1] token ids
    target_bytes: Mapping[str, int]  # domain -> UTF-8 bytes of the predicted tokens of all its windows


class LossFn(Protocol):
    def __call__(self, tokens: torch.Tensor) -> torch.Tensor: ...


def evaluate(
    token_losses: LossFn,
    validation: Validation,
    *,
    step: int,
    tokens: int,
    batch_size: int,
    dp_rank: int = 0,
    dp_size: int = 1,
    group: dist.ProcessGroup | None = None,
) -> EvalPoint:
    names = list(validation.windows)
    sums = torch.zeros(len(names), 2, dtype=torch.float64)  # (nats, tokens) per domain
    for i, name in enumerate(names):
        windows = validation.windows[name][dp_rank::dp_size]
        for start in range(0, windows.shape[0], batch_size):
            loss = token_losses(windows[start : start + batch_size])
            sums[i, 0] += loss.double().sum()
            sums[i, 1] += loss.numel()
    if dist.is_initialized() and dp_size > 1:
        dist.all_reduce(sums, group=group)
    loss_by_domain: dict[str, float] = {}
    bpb: dict[str, float] = {}
    for i, name in enumerate(names):
        nats, count = float(sums[i, 0]), float(sums[i, 1])
        loss_by_domain[name] = nats / count if count else math.nan
        nbytes = validation.target_bytes.get(name, 0)
        bpb[name] = nats / math.log(2) / nbytes if nbytes else math.nan
    return EvalPoint(step=step, tokens=tokens, loss=loss_by_domain, bpb=bpb)
