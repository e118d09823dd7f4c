"""From a corpus and a mixture (or schedule) to the index arrays of a blended stream, cached on disk.

`build_blend` resolves the mixture's names to *units* (files or domains of the corpus), turns weights, schedule,
epoch caps and the stop strategy into cumulative targets and a stream length, runs the engine (`exact`: ours;
`megatron`: megatron-core's compiled helper), and maps each unit's k-th sample to a window of its tokens through a
seeded permutation per epoch. The result, two arrays (unit id int16, window int64) and a summary, is written under
a key derived from every input and memory-mapped on later loads, so 100M samples never become Python objects.
"""

from __future__ import annotations

import json
import math
import os
import zlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from mixture_search.errors import MixtureError
from mixture_search.files import atomic_save
from mixture_search.keys import content_key
from mixture_search.mixture import Mixture
from trainers.data.corpus import Corpus, Segment
from trainers.data.engine import exact_stream, megatron_stream
from trainers.data.errors import DataError
from trainers.data.schedule import Targets, WeightSchedule
from trainers.data.subsets import subset_windows

Mode = Literal["exact", "megatron"]
Stop = Literal["restart", "first_exhausted", "all_exhausted"]
MODES: tuple[Mode, ...] = ("exact", "megatron")
STOPS: tuple[Stop, ...] = ("restart", "first_exhausted", "all_exhausted")
#: an exhaustion strategy that would need more samples than this is refused instead of hanging
MAX_STREAM = 1 << 34
ENGINE_VERSION = "2"  # 2: static float weights use the split tree (engine.py)


@dataclass(frozen=True)
class Unit:
    """What the stream draws from: a file or a whole domain; its windows are seq_len + 1 tokens, stride seq_len."""

    name: str
    domain: int  # index into corpus.domains
    segments: tuple[Segment, ...]
    windows: int


def resolve_units(corpus: Corpus, names: tuple[str, ...], seq_len: int) -> tuple[Unit, ...]:
    """Units for mixture names: domains of the corpus, or its files (train prefixes). Unknown -> MixtureError."""
    by_domain = {d.name: (i, d) for i, d in enumerate(corpus.domain_info)}
    by_file = {s.prefix: (i, s) for i, d in enumerate(corpus.domain_info) for s in d.train}
    units = []
    for name in names:
        if name in by_domain:
            i, d = by_domain[name]
            segs = d.train
        elif name in by_file:
            i, s = by_file[name]
            segs = (s,)
        else:
            raise MixtureError(
                f"unknown domain (the corpus has {', '.join(corpus.domains[:8])}{' ...' if len(corpus.domains) > 8 else ''})",
                where=name,
            )
        tokens = sum(s.tokens for s in segs)
        windows = max(0, (tokens - 1) // seq_len)
        units.append(Unit(name, i, segs, windows))
    return tuple(units)


def mixture_units(corpus: Corpus, mixture: Mixture) -> Mixture:
    """A group-level mixture becomes a domain-level one (split by tokens); files and domains pass through."""
    names = set(mixture)
    if names <= set(corpus.domains) or names <= {s.prefix for d in corpus.domain_info for s in d.train}:
        return mixture
    cat = corpus.catalog
    if cat.level_of(mixture) == "group":
        return cat.collapse(cat.expand(mixture), "domain")
    return mixture


@dataclass(frozen=True)
class BlendSpec:
    """Everything that decides the stream; its `key` names the cache entry."""

    units: tuple[str, ...]
    weights: tuple[float, ...]  # normalised static weights (the schedule's first point when scheduled)
    schedule: WeightSchedule | None
    seq_len: int
    num_samples: int | None
    seed: int
    mode: Mode
    stop: Stop
    max_epochs: tuple[float | None, ...]
    data_hash: str
    #: windows each unit reads (a repetition-matched proxy's subsets, `subsets.py`); None: all of them
    subset: tuple[int, ...] | None = None

    @property
    def key(self) -> str:
        payload = {
            "v": ENGINE_VERSION,
            "units": self.units,
            "weights": [round(w, 15) for w in self.weights],
            "schedule": self.schedule.key if self.schedule else None,
            "seq_len": self.seq_len,
            "n": self.num_samples,
            "seed": self.seed,
            "mode": self.mode,
            "stop": self.stop,
            "max_epochs": self.max_epochs,
            "data": self.data_hash,
        }
        if self.subset is not None:  # only then: every blend without subsets keeps its key
            payload["subset"] = list(self.subset)
        return content_key(payload, length=20, sort_keys=False)


def make_targets(spec: BlendSpec, horizon: int) -> Targets:
    if spec.schedule is None:
        return Targets.from_segments(np.array([0]), np.array(spec.weights)[None, :])
    return spec.schedule.targets(max(1, horizon))


def apply_caps(targets: Targets, caps: np.ndarray) -> tuple[Targets, int | None]:
    """Switch each capped unit off once its target reaches cap - 1 samples (so it never exceeds its cap), weights
    of the others renormalised from then on. Returns the new targets and, if every unit ends up switched off, the
    stream position where nothing is left to draw."""
    t = targets
    off = np.zeros(t.domains, dtype=bool)
    while True:
        when = np.full(t.domains, np.inf)
        for cu in np.flatnonzero(np.isfinite(caps) & ~off):
            when[cu] = t.first_reaching(int(cu), np.array([max(caps[cu] - 1.0, 0.0)]))[0]
        u = int(np.argmin(when))
        n_off = when[u]
        if not np.isfinite(n_off):
            return t, None
        off[u] = True
        n_off_i = int(n_off)
        starts = t.starts
        weights = t.weights.copy()
        if n_off_i not in set(starts.tolist()):
            j = int(np.searchsorted(starts, n_off_i, side="right"))
            starts = np.insert(starts, j, n_off_i)
            weights = np.insert(weights, j, weights[j - 1], axis=0)
        after = starts >= n_off_i
        weights[after, u] = 0.0
        sums = weights.sum(axis=1)
        dead = after & (sums <= 0)
        if np.any(dead):
            first_dead = int(starts[np.flatnonzero(dead)[0]])
            keep = starts < first_dead
            w = weights[keep] / weights[keep].sum(axis=1, keepdims=True)
            return Targets.from_segments(starts[keep], w), first_dead
        weights = weights / sums[:, None]
        t = Targets.from_segments(starts, weights)


def _first_reaching_all(targets: Targets, counts: np.ndarray) -> np.ndarray:
    return np.array([targets.first_reaching(u, np.array([float(c)]))[0] for u, c in enumerate(counts)])


def stream_length(spec: BlendSpec, windows: np.ndarray) -> tuple[Targets, int, int | None]:
    """(targets, samples to build, exact length if known) for the spec's stop strategy."""
    caps = np.array(
        [np.inf if e is None else math.floor(e * w) for e, w in zip(spec.max_epochs, windows)], dtype=np.float64
    )
    n = spec.num_samples
    if spec.stop == "restart":
        if n is None:
            raise DataError("num_samples is required with stop='restart'", where="num_samples")
        targets = make_targets(spec, n)
        if np.isfinite(caps).any():
            targets, end = apply_caps(targets, caps)
            if end is not None and end < n:
                return targets, end, end
        return targets, n, n
    horizon = n if n is not None else int(min(MAX_STREAM, 1 << 24))
    targets = make_targets(spec, horizon)
    if np.isfinite(caps).any():
        raise DataError(
            "epoch caps apply to stop='restart' only (exhaustion already stops every domain)", where="max_epochs"
        )
    # by the time a unit's target passes windows + 1 its count has passed its windows (counts stay within 1)
    due = _first_reaching_all(targets, windows + 1.0)
    if spec.stop == "first_exhausted":
        need = float(np.min(due))
    else:
        need = float(np.max(due))
        if not np.isfinite(need):
            u = int(np.argmax(due))
            raise DataError(
                "weight is zero from some point on, so this domain is never exhausted (stop='all_exhausted' "
                "would not terminate)",
                where=spec.units[u],
            )
    if need > MAX_STREAM:
        u = int(np.argmax(due)) if spec.stop == "all_exhausted" else int(np.argmin(due))
        raise DataError(
            f"stop={spec.stop!r} needs about {need:.3g} samples ({windows[u]} windows at weight "
            f"{spec.weights[u]:.3g}); raise its weight, set num_samples, or use another stop strategy",
            where=spec.units[u],
        )
    build = int(need) + 2
    if n is not None:
        build = min(build, n)
    if spec.schedule is not None and build > horizon:
        targets = make_targets(spec, build)
    return targets, build, None


def _unit_seed(seed: int, name: str) -> list[int]:
    return [int(seed) & 0xFFFFFFFF, zlib.crc32(name.encode()) & 0xFFFFFFFF]


def epoch_permutations(seed: int, name: str, windows: int, count: int) -> np.ndarray:
    """Windows for a unit's samples 0..count-1: epoch e is a seeded permutation of range(windows), e = k // windows."""
    epochs = -(-count // windows) if count else 0
    rng = np.random.default_rng(_unit_seed(seed, name))
    if windows < 1024:
        rows = np.broadcast_to(np.arange(windows, dtype=np.int64), (epochs, windows)).copy()
        return rng.permuted(rows, axis=1).reshape(-1)[:count]
    out = np.empty(epochs * windows, dtype=np.int64)
    for e in range(epochs):
        out[e * windows : (e + 1) * windows] = rng.permutation(windows)
    return out[:count]


def _truncate(spec: BlendSpec, unit: np.ndarray, count: np.ndarray, windows: np.ndarray, length: int | None) -> int:
    if length is not None:
        return min(length, len(unit))
    over = count >= windows[unit]  # a sample past its unit's first epoch
    if spec.stop == "first_exhausted":
        hit = np.flatnonzero(over)
        end = int(hit[0]) if len(hit) else len(unit)
    else:
        last = np.zeros(len(windows), dtype=np.int64)
        for u, w in enumerate(windows):
            pos = np.flatnonzero((unit == u) & (count == w - 1))
            last[u] = pos[0] + 1 if len(pos) else len(unit)
        end = int(last.max())
    if spec.num_samples is not None:
        end = min(end, spec.num_samples)
    return end


@dataclass
class BlendArrays:
    unit: np.ndarray  # int16, memory-mapped when cached
    window: np.ndarray  # int64
    summary: dict[str, Any]
    path: Path | None


def build_blend(
    spec: BlendSpec,
    windows: np.ndarray,
    cache_dir: Path | None,
    *,
    progress: Callable[[int, int], None] | None = None,
) -> BlendArrays:
    """The stream's index arrays, from the cache when present (memory-mapped), else built and cached.

    With `spec.subset` each unit reads only that many of its windows (a deterministic subset,
    `subsets.subset_windows`): the stream is built as if the unit had that many windows (epochs, caps and
    exhaustion count in subset windows), and its k-th sample maps to the subset's windows."""
    final = cache_dir / f"blend-{spec.key}" if cache_dir is not None else None
    if final is not None and (final / "summary.json").is_file():
        return _load(final)
    if any(w <= 0 for w in windows):
        raise DataError("no window of seq_len + 1 tokens in this domain", where=spec.units[int(np.argmin(windows))])
    corpus_windows = np.asarray(windows, dtype=np.int64)
    picks: list[np.ndarray] | None = None
    if spec.subset is not None:
        if len(spec.subset) != len(windows):
            raise DataError(f"{len(spec.subset)} subset sizes for {len(windows)} units", where="subset")
        for name, keep, w in zip(spec.units, spec.subset, corpus_windows):
            if not 1 <= keep <= w:
                raise DataError(f"subset of {keep} windows, the unit has {w}", where=f"subset[{name}]")
        picks = [
            subset_windows(spec.seed, n, int(w), int(k)) for n, w, k in zip(spec.units, corpus_windows, spec.subset)
        ]
        windows = np.array(spec.subset, dtype=np.int64)
    if spec.mode == "megatron" and spec.schedule is not None:
        raise DataError(
            "megatron mode has no weight schedules (Megatron blends static weights); use mode='exact'", where="mode"
        )
    if spec.mode == "megatron" and any(e is not None for e in spec.max_epochs):
        raise DataError("megatron mode has no epoch caps; use mode='exact'", where="max_epochs")
    targets, build, length = stream_length(spec, windows)
    if spec.mode == "megatron":
        unit, count = megatron_stream(np.array(spec.weights), build)
    else:
        unit, count = exact_stream(targets, build, progress=(lambda d: progress(d, build)) if progress else None)
    end = _truncate(spec, unit, count, windows, length)
    unit, count = unit[:end], count[:end]
    window = np.empty(end, dtype=np.int64)
    order = np.argsort(unit, kind="stable")
    bounds = np.searchsorted(unit[order], np.arange(len(windows) + 1))
    drawn = np.zeros(len(windows), dtype=np.int64)
    for u in range(len(windows)):
        pos = order[bounds[u] : bounds[u + 1]]
        drawn[u] = len(pos)
        drawn_windows = epoch_permutations(spec.seed, spec.units[u], int(windows[u]), len(pos))
        window[pos] = drawn_windows if picks is None else picks[u][drawn_windows]
    share_target = targets.at(np.array([max(end, 1)]))[0] / max(end, 1)
    summary = {
        "key": spec.key,
        "length": int(end),
        "mode": spec.mode,
        "stop": spec.stop,
        "seed": spec.seed,
        "seq_len": spec.seq_len,
        "units": list(spec.units),
        "windows": [int(w) for w in windows],
        "samples": [int(x) for x in drawn],
        "target_share": [float(x) for x in share_target],
        "achieved_share": [float(x) / max(end, 1) for x in drawn],
        "epochs": [float(x) / float(w) for x, w in zip(drawn, windows)],
    }
    if picks is not None:  # `windows` and `epochs` above count in subset windows
        summary["subset"] = [int(w) for w in windows]
        summary["corpus_windows"] = [int(w) for w in corpus_windows]
    if final is None:
        return BlendArrays(unit, window, summary, None)
    _save(final, unit, window, summary)
    return _load(final)


def _save(final: Path, unit: np.ndarray, window: np.ndarray, summary: Mapping[str, Any]) -> None:
    if (final / "summary.json").is_file():  # another process wrote the same key first: theirs is identical
        return

    def write(tmp: Path) -> None:
        tmp.mkdir()
        np.save(tmp / "unit.npy", unit)
        np.save(tmp / "window.npy", window)
        (tmp / "summary.json").write_text(json.dumps(summary, indent=1), encoding="utf-8")

    atomic_save(final, write)


def _load(path: Path) -> BlendArrays:
    try:
        summary = json.loads((path / "summary.json").read_text(encoding="utf-8"))
        unit = np.load(path / "unit.npy", mmap_mode="r")
        window = np.load(path / "window.npy", mmap_mode="r")
    except (OSError, ValueError) as exc:
        raise DataError(f"corrupt blend cache ({' '.join(str(exc).split())}); delete it", where=str(path)) from None
    if len(unit) != summary.get("length") or len(window) != len(unit):
        raise DataError("corrupt blend cache (lengths differ); delete it", where=str(path))
    return BlendArrays(unit, window, summary, path)


def default_cache_dir(corpus: Corpus) -> Path:
    env = os.environ.get("MIXSWEEP_CACHE")
    if env:
        return Path(env) / "blend"
    here = corpus.root / "cache"
    try:
        here.mkdir(exist_ok=True)
        if os.access(here, os.W_OK):
            return here
    except OSError:
        pass
    return Path.home() / ".cache" / "mixsweep" / "blend"
