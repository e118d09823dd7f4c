"""Repetition-matched proxies: each domain read from a deterministic subset of its windows, sized so that it
repeats in the proxy as often as it would in the target run.

Why. A proxy trains on far fewer tokens than the target, so it never repeats a scarce domain that the target run
will read many times over: it sees fresh text where the target sees its fourth epoch, and over-values the scarce
domain (arXiv 2606.07597; subsampling each domain to the target's repetition rate recovered the optimum at 757M).

Arithmetic. A domain with share w and N tokens is read w * D_target / N times in a target run of D_target tokens.
A proxy of D_proxy tokens reads w * D_proxy tokens of it; for that to be the same number of epochs, the proxy's
subset must hold N * D_proxy / D_target tokens. The share cancels: every domain keeps the same fraction
r = D_proxy / D_target of its windows, and each domain's epochs then follow the mixture exactly as in the target.
The corpus is the cap (r <= 1: a proxy larger than the target reads the whole corpus) and every domain keeps at
least one window.

Which windows. The first `keep` of a seeded permutation of the domain's windows (sorted): deterministic for a seed,
spread over the whole domain (not one end of it), and nested (a smaller subset is part of a larger one), so
proxies at several scales read subsets of one another.
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from trainers.data.errors import DataError

#: the permutation that picks a subset is seeded apart from the per-epoch order (blend.epoch_permutations)
_SUBSET_SALT = 0x5B5E7


def keep_fraction(proxy_tokens: int, target_tokens: int) -> float:
    """r = D_proxy / D_target, at most 1 (the corpus is the cap)."""
    if proxy_tokens <= 0:
        raise DataError(f"proxy tokens must be positive, got {proxy_tokens}", where="budget.tokens")
    if target_tokens <= 0:
        raise DataError(f"target tokens must be positive, got {target_tokens}", where="space.target_tokens")
    return min(1.0, proxy_tokens / target_tokens)


def subset_sizes(windows: Sequence[int] | np.ndarray, fraction: float) -> np.ndarray:
    """Windows kept per unit: ceil(windows * fraction), at least 1 and at most all of them."""
    if not 0.0 < fraction <= 1.0 or not math.isfinite(fraction):
        raise DataError(f"subset fraction {fraction!r} must be in (0, 1]", where="subset")
    w = np.asarray(windows, dtype=np.int64)
    # the tiny epsilon keeps an exact product (0.25 * 400) from rounding up past it
    keep = np.ceil(w.astype(np.float64) * fraction - 1e-9).astype(np.int64)
    return np.clip(keep, 1, np.maximum(w, 1))


def subset_windows(seed: int, name: str, windows: int, keep: int) -> np.ndarray:
    """The windows (sorted, int64) a unit's subset of `keep` out of `windows` reads; nested in `keep`."""
    if not 1 <= keep <= windows:
        raise DataError(f"subset of {keep} windows out of {windows}", where=name)
    if keep == windows:
        return np.arange(windows, dtype=np.int64)
    rng = np.random.default_rng([int(seed) & 0xFFFFFFFF, zlib.crc32(name.encode()) & 0xFFFFFFFF, _SUBSET_SALT])
    return np.sort(rng.permutation(windows)[:keep]).astype(np.int64)


@dataclass(frozen=True)
class DomainEpochs:
    """One domain in a repetition-matched proxy: its windows, the subset read, and its epochs in both runs."""

    name: str
    windows: int
    subset: int
    proxy_epochs: float  # share * proxy tokens / subset tokens
    target_epochs: float  # share * target tokens / corpus tokens


def repetition_plan(
    domain_tokens: Mapping[str, int],
    shares: Mapping[str, float],
    *,
    seq_len: int,
    proxy_tokens: int,
    target_tokens: int,
) -> list[DomainEpochs]:
    """Each drawn domain's subset and epochs (proxy and target) for a mixture given as normalised `shares`.

    The same arithmetic as the blend's subsets (`subset_sizes` on windows of seq_len + 1 tokens); the proxy's
    epochs are what the blend reads up to one sample (the engine keeps every domain within one sample of its
    target)."""
    r = keep_fraction(proxy_tokens, target_tokens)
    out = []
    for name, share in shares.items():
        if share <= 0:
            continue
        tokens = int(domain_tokens[name])
        windows = max(0, (tokens - 1) // seq_len)
        if windows < 1:
            raise DataError("no window of seq_len + 1 tokens in this domain", where=name)
        keep = int(subset_sizes([windows], r)[0])
        out.append(
            DomainEpochs(
                name=name,
                windows=windows,
                subset=keep,
                proxy_epochs=share * proxy_tokens / (keep * seq_len),
                target_epochs=share * target_tokens / tokens,
            )
        )
    return out


def epoch_params(plan: Sequence[DomainEpochs]) -> dict[str, dict[str, float]]:
    """`{"proxy": {domain: epochs}, "target": {...}}`: what a tracker logs as `epochs.proxy.<domain>` etc."""
    return {
        "proxy": {d.name: round(d.proxy_epochs, 6) for d in plan},
        "target": {d.name: round(d.target_epochs, 6) for d in plan},
    }


__all__ = [
    "DomainEpochs",
    "epoch_params",
    "keep_fraction",
    "repetition_plan",
    "subset_sizes",
    "subset_windows",
]
