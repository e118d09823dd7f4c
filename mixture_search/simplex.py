"""Numerical maps on a box-constrained simplex {x : lo <= x <= hi, sum x = total}, vectorised over rows.

`fill`/`unfill` are the stick-breaking map from the unit cube and its inverse; `project_box` is the
Euclidean projection; `dirichlet_rows` draws Dirichlet vectors with a different alpha per row.
`SearchSpace` composes them per group.
"""

from __future__ import annotations

import numpy as np


def fill(U: np.ndarray, lo: np.ndarray, hi: np.ndarray, total: np.ndarray) -> np.ndarray:
    """k values in [lo, hi] adding up to `total` (per row) from k-1 unit coordinates."""
    n, k = len(total), len(lo)
    X = np.empty((n, k))
    rest = total.astype(np.float64).copy()
    lo_after = np.concatenate([np.cumsum(lo[::-1])[::-1][1:], [0.0]])  # sum of lo[i+1:]
    hi_after = np.concatenate([np.cumsum(hi[::-1])[::-1][1:], [0.0]])
    for i in range(k - 1):
        a = np.maximum(lo[i], rest - hi_after[i])
        b = np.maximum(np.minimum(hi[i], rest - lo_after[i]), a)
        frac = 1.0 - (1.0 - U[:, i]) ** (1.0 / (k - 1 - i))
        X[:, i] = a + frac * (b - a)
        rest = rest - X[:, i]
    X[:, k - 1] = np.clip(rest, lo[k - 1], hi[k - 1])
    return X


def unfill(X: np.ndarray, lo: np.ndarray, hi: np.ndarray, total: np.ndarray) -> np.ndarray:
    """Inverse of `fill`: the k-1 unit coordinates of feasible rows X."""
    n, k = X.shape
    U = np.empty((n, max(0, k - 1)))
    rest = total.astype(np.float64).copy()
    lo_after = np.concatenate([np.cumsum(lo[::-1])[::-1][1:], [0.0]])
    hi_after = np.concatenate([np.cumsum(hi[::-1])[::-1][1:], [0.0]])
    for i in range(k - 1):
        a = np.maximum(lo[i], rest - hi_after[i])
        b = np.maximum(np.minimum(hi[i], rest - lo_after[i]), a)
        width = b - a
        frac = np.where(width > 1e-15, (X[:, i] - a) / np.where(width > 1e-15, width, 1.0), 0.5)
        frac = np.clip(frac, 0.0, 1.0)
        U[:, i] = 1.0 - (1.0 - frac) ** (k - 1 - i)
        rest = rest - X[:, i]
    return U


def project_box(Y: np.ndarray, lo: np.ndarray, hi: np.ndarray, total: np.ndarray) -> np.ndarray:
    """Euclidean projection of each row onto {x : lo <= x <= hi, sum x = total} by bisection on the shift."""
    t_lo = (Y - hi).min(axis=1) - 1.0  # shift at which every x_i = hi_i (sum >= total)
    t_hi = (Y - lo).max(axis=1) + 1.0  # shift at which every x_i = lo_i (sum <= total)
    for _ in range(100):
        mid = 0.5 * (t_lo + t_hi)
        s = np.clip(Y - mid[:, None], lo, hi).sum(axis=1)
        above = s > total
        t_lo = np.where(above, mid, t_lo)
        t_hi = np.where(above, t_hi, mid)
    X = np.clip(Y - (0.5 * (t_lo + t_hi))[:, None], lo, hi)
    # Spread the last float rounding over the coordinates that have room, so rows add up exactly.
    resid = total - X.sum(axis=1)
    room = np.where(resid[:, None] > 0, hi - X, X - lo)
    share = room / np.maximum(room.sum(axis=1, keepdims=True), 1e-300)
    return np.clip(X + resid[:, None] * share, lo, hi)


def dirichlet_rows(rng: np.random.Generator, alpha: np.ndarray) -> np.ndarray:
    """Dirichlet draws with a different alpha per row, computed in log space so tiny alphas never give 0/0."""
    alpha = np.maximum(alpha, 1e-12)
    log_g = np.log(rng.gamma(alpha + 1.0)) + np.log(rng.random(alpha.shape)) / alpha
    log_g -= log_g.max(axis=1, keepdims=True)
    g = np.exp(log_g)
    return g / g.sum(axis=1, keepdims=True)
