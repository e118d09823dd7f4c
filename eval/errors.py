"""Errors of the evaluation layer, all `MixSweepError`s so the CLI prints one line and exits 2."""

from __future__ import annotations

from mixture_search.errors import MixSweepError


class ConversionError(MixSweepError):
    """A checkpoint that cannot become a Hugging Face model: not a checkpoint, written for another
    shape, a tensor missing or left over, or an architecture no Hugging Face class computes."""


class VerificationError(ConversionError):
    """The converted model does not compute what the checkpoint computes (logits differ beyond the
    tolerance). The model is not published; the figure is in the message."""


class EvalError(MixSweepError):
    """An evaluation that cannot run: no model at the path, an unknown task, a corpus without a
    held-out split."""


class MissingDatasetError(EvalError):
    """A benchmark whose data is not on this machine (evaluation is offline); the message says which
    dataset is missing and where to put it."""
