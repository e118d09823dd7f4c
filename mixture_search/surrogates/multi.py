"""Several metrics at once: one surrogate per metric, an objective that combines them, a Pareto front.

A sweep measures many things per run (the loss on each validation domain, task scores); the data
mixing law is fitted per domain loss. `MultiTarget` fits one model per metric (runs where a metric is
missing are left out of that metric's model only) and predicts the objective as a weighted sum of
the metrics' predictions, so it plugs into everything that takes a surrogate.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from mixture_search.errors import SearchError
from mixture_search.surrogates.base import SURROGATES, Features, Surrogate, as_matrix, predict_mean


class MultiTarget:
    name = "multi"

    def __init__(
        self,
        targets: Sequence[str],
        *,
        surrogate: str = "auto",
        weights: Sequence[float] | np.ndarray | None = None,
        seed: int = 0,
        **options: Any,
    ) -> None:
        self.targets = tuple(str(t) for t in targets)
        if not self.targets:
            raise SearchError("no target metrics given")
        if len(set(self.targets)) != len(self.targets):
            raise SearchError("a target metric is listed twice", where=",".join(self.targets))
        w = np.full(len(self.targets), 1.0 / len(self.targets)) if weights is None else np.asarray(weights, float)
        if w.shape != (len(self.targets),) or not np.all(np.isfinite(w)) or not np.any(w):
            raise SearchError(f"objective weights {list(np.ravel(w))} do not match the {len(self.targets)} targets")
        self.weights = w
        self.surrogate, self.seed, self.surrogate_options = surrogate, seed, dict(options)
        SURROGATES.build(surrogate, seed=seed, **options)  # fail now on a bad name or option
        self.models: dict[str, Surrogate] = {}
        self.domains: tuple[str, ...] | None = None

    def fit(self, X: Features, Y: np.ndarray | Mapping[str, Sequence[float]]) -> MultiTarget:
        matrix, domains = as_matrix(X, None)
        table = np.column_stack([np.asarray(Y[t], float) for t in self.targets]) if isinstance(Y, Mapping) else Y
        table = np.asarray(table, dtype=np.float64).reshape(len(matrix), -1)
        if table.shape[1] != len(self.targets):
            raise SearchError(f"{table.shape[1]} metric columns for {len(self.targets)} targets")
        self.models = {}
        for j, target in enumerate(self.targets):
            ok = np.isfinite(table[:, j])
            if ok.sum() < 2:
                raise SearchError(f"only {int(ok.sum())} runs have a value", where=target)
            model = SURROGATES.build(self.surrogate, seed=self.seed, **self.surrogate_options)
            self.models[target] = model.fit(matrix[ok], table[ok, j])
        self.domains = domains
        return self

    def predict_all(self, X: Features) -> tuple[np.ndarray, np.ndarray]:
        """(means, stds), each (n, targets)."""
        if not self.models:
            raise SearchError("multi-target surrogate is not fitted yet")
        matrix, _ = as_matrix(X, self.domains)
        preds = [self.models[t].predict(matrix) for t in self.targets]
        return np.column_stack([p[0] for p in preds]), np.column_stack([p[1] for p in preds])

    def predict(self, X: Features) -> tuple[np.ndarray, np.ndarray]:
        """The combined objective: sum_j w_j metric_j, with std from independent per-metric errors."""
        means, stds = self.predict_all(X)
        return means @ self.weights, np.sqrt((stds**2) @ (self.weights**2))

    def predict_mean(self, X: Features) -> np.ndarray:
        matrix, _ = as_matrix(X, self.domains)
        return np.column_stack([predict_mean(self.models[t], matrix) for t in self.targets]) @ self.weights

    def objective(self, Y: np.ndarray) -> np.ndarray:
        """The combined objective of observed metric rows (NaN where a metric is missing)."""
        return np.asarray(Y, dtype=np.float64) @ self.weights

    def clone(self) -> MultiTarget:
        return MultiTarget(
            self.targets, surrogate=self.surrogate, weights=self.weights, seed=self.seed, **self.surrogate_options
        )

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "targets": list(self.targets),
            "weights": self.weights.tolist(),
            "models": {t: getattr(m, "describe", lambda: {})() for t, m in self.models.items()},
        }


def pareto_mask(F: np.ndarray) -> np.ndarray:
    """Rows of F (n, k) that no other row dominates, every column to be minimised."""
    F = np.asarray(F, dtype=np.float64)
    order = np.lexsort(F.T[::-1])
    front: list[int] = []
    for i in order:
        if front:
            others = F[front]
            if np.any(np.all(others <= F[i], axis=1) & np.any(others < F[i], axis=1)):
                continue
            if np.any(np.all(others == F[i], axis=1)):
                continue
        front.append(int(i))
    mask = np.zeros(len(F), dtype=bool)
    mask[front] = True
    return mask
