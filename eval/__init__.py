"""Evaluation of trained proxies: checkpoint conversion to Hugging Face (`eval.convert`) and LightEval
runs on local and OpenSeek tasks (`eval.evaluate`).

Names are imported lazily: `import eval` stays cheap, and LightEval (about ten seconds to import) is
loaded only when an evaluation runs.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "to_hf": "eval.convert",
    "convert": "eval.convert",
    "from_module": "eval.convert",
    "open_checkpoint": "eval.convert",
    "ConversionReport": "eval.convert",
    "evaluate": "eval.evaluate",
    "EvalOptions": "eval.evaluate",
    "EvalResult": "eval.evaluate",
    "ConversionError": "eval.errors",
    "VerificationError": "eval.errors",
    "EvalError": "eval.errors",
    "MissingDatasetError": "eval.errors",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'eval' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
