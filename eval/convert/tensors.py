"""A checkpoint's tensors under Megatron-Core's local-spec names, taken one by one.

Both trainer backends write Megatron's names (the DeepSpeed backend's plain model uses them too, with
DeepSpeed's `module.` prefix), and checkpoints written with TransformerEngine's layer spec differ only
in where a few tensors live (norms fused into the following linear layer, experts as one grouped
module). `canonical_names` folds those spellings into the local spec's, so the mapping to Hugging
Face is written once.

`TensorTaker` hands tensors out by name and shape and, at the end, insists that every tensor was
used: a missing or left-over tensor means the checkpoint is not what its config says (another run's
checkpoint, another preset), which must be an error, never a silently half-converted model.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping

import torch
from torch import Tensor

from eval.errors import ConversionError

# TransformerEngine spec -> local spec. Norms fused into TE's LayerNormLinear sit on the next linear.
_TE_RENAMES: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"^(.*)\.self_attention\.linear_qkv\.layer_norm_weight$"), r"\1.input_layernorm.weight"),
    (re.compile(r"^(.*)\.self_attention\.linear_q_down_proj\.layer_norm_weight$"), r"\1.input_layernorm.weight"),
    (re.compile(r"^(.*)\.self_attention\.linear_q_proj\.layer_norm_weight$"), r"\1.input_layernorm.weight"),
    (
        re.compile(r"^(.*)\.self_attention\.linear_q_up_proj\.layer_norm_weight$"),
        r"\1.self_attention.q_layernorm.weight",
    ),
    (
        re.compile(r"^(.*)\.self_attention\.linear_kv_up_proj\.layer_norm_weight$"),
        r"\1.self_attention.kv_layernorm.weight",
    ),
    (re.compile(r"^(.*)\.mlp\.linear_fc1\.layer_norm_weight$"), r"\1.pre_mlp_layernorm.weight"),
    # TEGroupedMLP keeps expert e's weights as `linear_fc1.weight{e}`
    (re.compile(r"^(.*)\.mlp\.experts\.(linear_fc[12])\.weight(\d+)$"), r"\1.mlp.experts.local_experts.\3.\2.weight"),
)
_WRAPPER_PREFIXES = ("module.", "_orig_mod.")


def canonical_names(tensors: Mapping[str, object]) -> dict[str, Tensor]:
    """Tensors only (Megatron's `_extra_state` entries are dropped), under local-spec names, without
    the wrappers' prefixes (`module.` from DeepSpeed and DDP, `_orig_mod.` from torch.compile)."""
    out: dict[str, Tensor] = {}
    for raw, value in tensors.items():
        if not isinstance(value, Tensor) or raw.endswith("._extra_state"):
            continue
        name = raw
        stripped = True
        while stripped:
            stripped = False
            for prefix in _WRAPPER_PREFIXES:
                if name.startswith(prefix):
                    name, stripped = name[len(prefix) :], True
        for pattern, replacement in _TE_RENAMES:
            name = pattern.sub(replacement, name)
        if name in out:
            raise ConversionError("two tensors map to the same name", where=name)
        out[name] = value
    return out


class TensorTaker:
    """Tensors by name with shape checks; `finish()` fails on anything not taken."""

    def __init__(self, tensors: Mapping[str, Tensor], *, where: str) -> None:
        self._tensors = dict(tensors)
        self._taken: set[str] = set()
        self.where = where

    def __contains__(self, name: object) -> bool:
        return name in self._tensors

    def take(self, name: str, shape: Iterable[int]) -> Tensor:
        want = tuple(shape)
        try:
            tensor = self._tensors[name]
        except KeyError:
            raise ConversionError(
                f"tensor {name} is missing from the checkpoint (a checkpoint of another model shape?)", where=self.where
            ) from None
        if tuple(tensor.shape) != want:
            raise ConversionError(
                f"tensor {name} has shape {list(tensor.shape)}, the config implies {list(want)} "
                "(a checkpoint of another model shape?)",
                where=self.where,
            )
        self._taken.add(name)
        return tensor.detach().to(torch.float32).contiguous()

    def finish(self) -> None:
        left = sorted(set(self._tensors) - self._taken)
        if left:
            more = f" and {len(left) - 1} more" if len(left) > 1 else ""
            raise ConversionError(
                f"tensor {left[0]}{more} in the checkpoint has no place in the model its config describes "
                "(a checkpoint of another model shape?)",
                where=self.where,
            )
