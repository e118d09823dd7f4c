"""Saving a fitted surrogate as JSON: the model's spec plus the runs it was fitted on.

Every surrogate here is deterministic for a given seed and data, so loading refits the saved spec on
the saved runs and checks that it reproduces the saved predictions. The file is plain JSON (no
pickle: safe to open from anywhere, readable, diffable); for `auto` the spec is the chosen model's,
so loading costs one fit, not a cross-validation.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from mixture_search.errors import SearchError
from mixture_search.files import atomic_write_json
from mixture_search.surrogates.base import SURROGATES, Surrogate
from mixture_search.surrogates.ensemble import AutoSurrogate
from mixture_search.surrogates.multi import MultiTarget

FORMAT = "mixsweep-surrogate/1"


def fitted_spec(model: Any) -> dict[str, Any]:
    """The spec that refits to `model` (for `auto`: the chosen model's)."""
    if isinstance(model, MultiTarget):
        return {
            "name": "multi",
            "targets": list(model.targets),
            "weights": model.weights.tolist(),
            "models": {t: fitted_spec(m) for t, m in model.models.items()},
        }
    if isinstance(model, AutoSurrogate):
        return fitted_spec(model.model)
    return dict(model.spec())


def build(spec: Mapping[str, Any]) -> Any:
    if spec.get("name") == "multi":
        multi = MultiTarget(spec["targets"], weights=spec["weights"], surrogate="linear")
        multi.models = {t: build(s) for t, s in spec["models"].items()}
        return multi
    return SURROGATES.build(spec["name"], seed=int(spec.get("seed", 0)), **dict(spec.get("options") or {}))


def save_model(
    path: Path | str,
    model: Any,
    X: np.ndarray,
    Y: np.ndarray,
    domains: tuple[str, ...],
    meta: Mapping[str, Any],
    *,
    scales: np.ndarray | None = None,
) -> Path:
    """Write the model file atomically (temp name, then rename). A scale-aware model (fitted with
    `scales`, (n, 2) params and tokens) keeps them beside the runs."""
    path = Path(path)
    Y = np.asarray(Y, dtype=np.float64)
    extra = {} if scales is None else {"scales": np.asarray(scales, dtype=np.float64).tolist()}
    doc = {
        "format": FORMAT,
        "spec": fitted_spec(model),
        "domains": list(domains),
        "X": np.asarray(X).tolist(),
        "Y": [[None if not np.isfinite(v) else float(v) for v in np.atleast_1d(row)] for row in Y],
        "predictions": model.predict(np.asarray(X), **extra)[0].tolist(),
        "meta": dict(meta),
        **extra,
    }
    return atomic_write_json(path, doc, default=_plain)


def load_model(path: Path | str) -> tuple[Surrogate | MultiTarget, dict[str, Any]]:
    """The fitted model and the saved document (domains, meta). Errors name the file."""
    path = Path(path)
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise SearchError("model file not found", where=str(path)) from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise SearchError(f"not a model file ({exc})", where=str(path)) from None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise SearchError(f"not a {FORMAT} file", where=str(path))
    try:
        X = np.asarray(doc["X"], dtype=np.float64)
        Y = np.asarray([[np.nan if v is None else v for v in row] for row in doc["Y"]], dtype=np.float64)
        model = build(doc["spec"])
        extra = {"scales": np.asarray(doc["scales"], dtype=np.float64)} if "scales" in doc else {}
        model.fit(X, Y if isinstance(model, MultiTarget) else Y[:, 0], **extra)
    except (KeyError, TypeError, ValueError) as exc:
        raise SearchError(f"malformed model file: {' '.join(str(exc).split())}", where=str(path)) from None
    if not np.allclose(model.predict(X, **extra)[0], doc["predictions"], rtol=1e-6, atol=1e-9):
        raise SearchError("the saved model does not reproduce its saved predictions", where=str(path))
    return model, doc


def _plain(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, tuple):
        return list(value)
    raise TypeError(f"not JSON-serialisable: {type(value).__name__}")
