"""K-fold cross-validation of surrogates: Spearman, Pearson, MAE, RMSE and pairwise ordering accuracy.

Scores are computed on the pooled out-of-fold predictions (every run predicted by a model that never
saw it), which is steadier than averaging per-fold scores when there are only a few runs per fold.
Runs of the same mixture (repeated seeds) always fall in the same fold, so a model is never scored
on a mixture it was trained on.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from mixture_search.errors import SearchError
from mixture_search.surrogates.base import Features, Surrogate, as_matrix, as_target, predict_mean


@dataclass(frozen=True)
class CVResult:
    surrogate: str
    n: int
    folds: int
    spearman: float
    pearson: float
    mae: float
    rmse: float
    pairwise: float
    seconds: float

    def row(self) -> dict[str, Any]:
        return {k: (None if isinstance(v, float) and not np.isfinite(v) else v) for k, v in asdict(self).items()}

    @property
    def rank_score(self) -> float:
        """Spearman, with NaN (constant predictions) as the worst possible."""
        return self.spearman if np.isfinite(self.spearman) else -2.0


def scores(y: np.ndarray, pred: np.ndarray, *, seed: int = 0) -> dict[str, float]:
    """Agreement between targets and predictions. Rank scores are NaN when either side is constant."""
    # lazy: scipy.stats costs ~1 s to import and the CLI imports this module for every command
    from scipy.stats import pearsonr, spearmanr

    y, pred = np.asarray(y, dtype=np.float64), np.asarray(pred, dtype=np.float64)
    constant = np.ptp(y) == 0 or np.ptp(pred) == 0
    return {
        "spearman": float("nan") if constant else float(spearmanr(y, pred).statistic),
        "pearson": float("nan") if constant else float(pearsonr(y, pred).statistic),
        "mae": float(np.mean(np.abs(y - pred))),
        "rmse": float(np.sqrt(np.mean((y - pred) ** 2))),
        "pairwise": pairwise_accuracy(y, pred, seed=seed),
    }


def pairwise_accuracy(y: np.ndarray, pred: np.ndarray, *, max_pairs: int = 200_000, seed: int = 0) -> float:
    """Share of pairs of runs with different targets that the predictions put in the right order
    (a tie in the predictions counts half). Above `max_pairs` pairs, a seeded random subset."""
    n = len(y)
    if n * (n - 1) // 2 <= max_pairs:
        i, j = np.triu_indices(n, k=1)
    else:
        rng = np.random.default_rng(seed)
        i, j = rng.integers(0, n, max_pairs), rng.integers(0, n, max_pairs)
    dy, dp = np.sign(y[i] - y[j]), np.sign(pred[i] - pred[j])
    keep = dy != 0
    if not keep.any():
        return float("nan")
    return float(np.mean(np.where(dp[keep] == 0, 0.5, dp[keep] == dy[keep])))


def fold_ids(X: np.ndarray, folds: int, seed: int) -> np.ndarray:
    """Fold number per run; identical mixtures share a fold. Raises when there are too few mixtures."""
    keys = [np.round(row, 9).tobytes() for row in X]  # equal rows, equal bytes: no hash needed
    unique = list(dict.fromkeys(keys))
    if len(unique) < 3:
        raise SearchError(f"need at least 3 distinct mixtures to cross-validate, got {len(unique)}")
    k = max(2, min(folds, len(unique)))
    order = np.random.default_rng(seed).permutation(len(unique))
    fold_of = {unique[u]: int(f) for f, part in enumerate(np.array_split(order, k)) for u in part}
    return np.array([fold_of[key] for key in keys])


def out_of_fold(model: Surrogate, X: np.ndarray, y: np.ndarray, ids: np.ndarray) -> tuple[np.ndarray, float]:
    """Out-of-fold mean prediction for every run, and the seconds it took."""
    start = time.perf_counter()
    mean = np.empty(len(y))
    for f in np.unique(ids):
        test = ids == f
        mean[test] = predict_mean(model.clone().fit(X[~test], y[~test]), X[test])
    return mean, time.perf_counter() - start


def cross_validate(
    model: Surrogate, X: Features, y: Sequence[float] | np.ndarray, *, folds: int = 5, seed: int = 0
) -> CVResult:
    """K-fold CV of one surrogate (it is cloned per fold; `model` itself is left unfitted)."""
    return cross_validate_predictions(model, X, y, folds=folds, seed=seed)[0]


def cross_validate_predictions(
    model: Surrogate, X: Features, y: Sequence[float] | np.ndarray, *, folds: int = 5, seed: int = 0
) -> tuple[CVResult, np.ndarray]:
    """`cross_validate` and the out-of-fold predictions it scored."""
    matrix, _ = as_matrix(X, None)
    target = as_target(y, len(matrix))
    ids = fold_ids(matrix, folds, seed)
    mean, seconds = out_of_fold(model, matrix, target, ids)
    return result(model.name, target, mean, int(ids.max()) + 1, seconds, seed), mean


def result(name: str, y: np.ndarray, oof: np.ndarray, folds: int, seconds: float, seed: int = 0) -> CVResult:
    s = scores(y, oof, seed=seed)
    return CVResult(surrogate=name, n=len(y), folds=folds, seconds=round(seconds, 3), **s)
