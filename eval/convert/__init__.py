"""Megatron-Core / DeepSpeed checkpoint -> Hugging Face model folder, verified by logits.

`to_hf(checkpoint, out_dir)` reads a checkpoint the trainers wrote (a run folder, a `step_N`
checkpoint folder, or its `model/` folder), picks the Hugging Face architecture that computes the
proxy exactly (`targets.TARGETS`), writes safetensors + config + tokenizer + generation config, and
checks the reloaded model's logits against the trained model's on a fixed batch.
"""

from __future__ import annotations

from pathlib import Path

from eval.convert.sources import Source, from_module, locate, open_checkpoint, probe_batch
from eval.convert.targets import TARGETS, Target, target_for
from eval.convert.to_hf import DEFAULT_TOLERANCE, REPORT_FILE, ConversionReport, convert

__all__ = [
    "DEFAULT_TOLERANCE",
    "REPORT_FILE",
    "TARGETS",
    "ConversionReport",
    "Source",
    "Target",
    "convert",
    "from_module",
    "locate",
    "open_checkpoint",
    "probe_batch",
    "target_for",
    "to_hf",
]


def to_hf(
    checkpoint: Path | str,
    out_dir: Path | str,
    *,
    target: str | None = None,
    tokenizer: Path | str | None = None,
    verify: bool = True,
    tolerance: float = DEFAULT_TOLERANCE,
    force: bool = False,
) -> ConversionReport:
    """Convert a trainer checkpoint on disk; see `convert` for what is written and checked."""
    return convert(
        open_checkpoint(checkpoint),
        out_dir,
        target=target,
        tokenizer=tokenizer,
        verify=verify,
        tolerance=tolerance,
        force=force,
    )
