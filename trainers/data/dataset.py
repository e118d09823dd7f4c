"""PyTorch views of a corpus: the blended training stream and the held-out validation windows.

Samples are packed like Megatron's GPTDataset: a unit's documents (each ending with its end-of-document token)
sit back to back in its `.bin` files, and sample w of a unit is tokens [w * seq_len, w * seq_len + seq_len + 1)
of that concatenation (consecutive windows share one token, the label of the last position). `ds[i]` costs two
array reads and one slice of a memory-mapped file, whatever i is: data-parallel ranks and loader workers read
their own indices, and resuming from `consumed_samples` is just starting there.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from rich.progress import Progress

from mixture_search.errors import MixtureError
from mixture_search.mixture import Mixture
from trainers.data import tokenizer as tk
from trainers.data.blend import (
    MODES,
    STOPS,
    BlendArrays,
    BlendSpec,
    Mode,
    Stop,
    Unit,
    _load,
    build_blend,
    default_cache_dir,
    mixture_units,
    resolve_units,
)
from trainers.data.corpus import Corpus, Segment
from trainers.data.errors import DataError
from trainers.data.schedule import WeightSchedule
from trainers.data.subsets import subset_sizes


class _Reader:
    """Token windows of a sequence of segments (usually one), read from memory-mapped `.bin` files."""

    def __init__(self, corpus: Corpus, segments: tuple[Segment, ...], seq_len: int) -> None:
        self.corpus = corpus
        self.segments = segments
        self.seq_len = seq_len
        self.offsets = [0]
        for s in segments:
            self.offsets.append(self.offsets[-1] + s.tokens)

    def window(self, w: int) -> np.ndarray:
        lo = w * self.seq_len
        hi = lo + self.seq_len + 1
        j = bisect.bisect_right(self.offsets, lo) - 1
        seg = self.segments[j]
        if hi <= self.offsets[j + 1]:
            start = seg.start + lo - self.offsets[j]
            return np.asarray(self.corpus.tokens(seg.prefix).array[start : start + self.seq_len + 1])
        parts = []
        while lo < hi:
            seg = self.segments[j]
            a = seg.start + lo - self.offsets[j]
            b = seg.start + min(hi, self.offsets[j + 1]) - self.offsets[j]
            parts.append(np.asarray(self.corpus.tokens(seg.prefix).array[a:b]))
            lo = self.offsets[j + 1]
            j += 1
        return np.concatenate(parts)


def _as_caps(max_epochs: float | Mapping[str, float] | None, units: tuple[Unit, ...]) -> tuple[float | None, ...]:
    if max_epochs is None:
        return tuple(None for _ in units)
    if isinstance(max_epochs, Mapping):
        unknown = set(max_epochs) - {u.name for u in units}
        if unknown:
            raise MixtureError("names no unit of the mixture", where=f"max_epochs[{sorted(unknown)[0]}]")
        raw = {u.name: max_epochs.get(u.name) for u in units}
    else:
        raw = {u.name: max_epochs for u in units}
    out: list[float | None] = []
    for name, cap in raw.items():
        if cap is None:
            out.append(None)
            continue
        if isinstance(cap, bool) or not isinstance(cap, (int, float)) or not math.isfinite(cap) or cap <= 0:
            raise MixtureError(f"epoch cap {cap!r} must be a positive number", where=f"max_epochs[{name}]")
        out.append(float(cap))
    return tuple(out)


def _as_subset(
    subset: float | Mapping[str, int] | None, units: tuple[Unit, ...], windows: np.ndarray
) -> tuple[int, ...] | None:
    """Windows kept per unit, or None when every unit keeps all of them (the blend's key is then unchanged)."""
    if subset is None:
        return None
    if isinstance(subset, Mapping):
        unknown = set(subset) - {u.name for u in units}
        if unknown:
            raise MixtureError("names no unit of the mixture", where=f"subset[{sorted(unknown)[0]}]")
        keep = []
        for u, w in zip(units, windows):
            k = subset.get(u.name, int(w))
            if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or not 1 <= k <= w:
                raise DataError(f"{k!r} windows: must be an integer in [1, {int(w)}]", where=f"subset[{u.name}]")
            keep.append(int(k))
    else:
        if isinstance(subset, bool) or not isinstance(subset, (int, float)):
            raise DataError(f"subset {subset!r} must be a fraction in (0, 1] or a mapping", where="subset")
        keep = [int(k) for k in subset_sizes(windows, float(subset))]
    return None if keep == [int(w) for w in windows] else tuple(keep)


class BlendedSequenceDataset(torch.utils.data.Dataset):
    """The training stream of a mixture over a corpus: `ds[i] -> {"tokens": LongTensor[seq_len + 1], "domain": int}`.

    `mixture` names domains (usual), files or groups of the corpus; with `schedule` the weights follow it (same
    names). `mode`: `exact` (every prefix within one sample of the target, schedules, caps) or `megatron`
    (megatron-core's `build_blending_indices`, bit for bit). `stop`: `restart` (each domain loops, reshuffled per
    epoch; needs `num_samples`), `first_exhausted` (ends when a domain has been read once), `all_exhausted` (ends
    when every domain has; the others loop meanwhile), `num_samples` then being an upper bound. `max_epochs` caps
    how often a domain (or each, given a mapping) is read with `restart`. `subset` makes each unit read only a
    deterministic subset of its windows (`trainers.data.subsets`): a fraction r in (0, 1] of every unit's windows
    (a repetition-matched proxy: r = proxy tokens / target tokens), or a count per unit name. Index arrays are
    cached under `cache_dir` (default `<corpus>/cache`) by a key of all of this plus the corpus' data hash.
    """

    def __init__(
        self,
        corpus: Corpus,
        mixture: Mixture | None,
        seq_len: int = 256,
        num_samples: int | None = None,
        seed: int = 0,
        schedule: WeightSchedule | None = None,
        mode: Mode = "exact",
        stop: Stop = "restart",
        cache_dir: Path | str | None = None,
        max_epochs: float | Mapping[str, float] | None = None,
        progress: bool = False,
        subset: float | Mapping[str, int] | None = None,
    ) -> None:
        if mode not in MODES:
            raise DataError(f"unknown mode {mode!r} (use {' or '.join(MODES)})", where="mode")
        if stop not in STOPS:
            raise DataError(f"unknown stop strategy {stop!r} (use {', '.join(STOPS)})", where="stop")
        if isinstance(seq_len, bool) or not isinstance(seq_len, int) or seq_len < 1:
            raise DataError(f"seq_len {seq_len!r} must be a positive integer", where="seq_len")
        if num_samples is not None and (
            isinstance(num_samples, bool) or not isinstance(num_samples, int) or num_samples < 0
        ):
            raise DataError(f"num_samples {num_samples!r} must be a non-negative integer", where="num_samples")
        if mixture is None and schedule is None:
            raise MixtureError("give a mixture or a schedule")
        if mixture is None:
            assert schedule is not None
            mixture = schedule.points[0][1]
        mixture = mixture_units(corpus, mixture)
        if schedule is not None:
            if set(schedule.names) != set(mixture.names):
                raise MixtureError("schedule names other domains than the mixture", where="schedule")
            mixture = schedule.points[0][1]
        elif any(w == 0 for w in mixture.weights):  # never drawn: leave them out of the stream altogether
            mixture = Mixture((n, w) for n, w in mixture.pairs if w > 0)
        self.corpus = corpus
        self.seq_len = seq_len
        self.units = resolve_units(corpus, mixture.names, seq_len)
        windows = np.array([u.windows for u in self.units], dtype=np.int64)
        self.schedule = schedule
        self.mixture = mixture
        spec = BlendSpec(
            units=tuple(u.name for u in self.units),
            weights=tuple(float(x) for x in mixture.normalized),
            schedule=schedule,
            seq_len=seq_len,
            num_samples=num_samples,
            seed=int(seed),
            mode=mode,
            stop=stop,
            max_epochs=_as_caps(max_epochs, self.units),
            data_hash=corpus.data_hash,
            subset=_as_subset(subset, self.units, windows),
        )
        self.spec = spec
        cache = Path(cache_dir) if cache_dir is not None else default_cache_dir(corpus)
        self._arrays = _build_with_progress(spec, windows, cache, progress)
        self._unit_domain = np.array([u.domain for u in self.units], dtype=np.int64)
        self._readers = [_Reader(corpus, u.segments, seq_len) for u in self.units]

    # -- contract ---------------------------------------------------------------------------------
    @property
    def domains(self) -> tuple[str, ...]:
        """Names the `domain` ids of samples index into (the corpus' domains)."""
        return self.corpus.domains

    def __len__(self) -> int:
        return len(self._arrays.unit)

    def __getitem__(self, i: int) -> dict[str, Any]:
        n = len(self)
        if i < 0:
            i += n
        if not 0 <= i < n:
            raise IndexError(f"sample {i} out of range for a stream of {n}")
        u = int(self._arrays.unit[i])
        tokens = self._readers[u].window(int(self._arrays.window[i]))
        return {"tokens": torch.from_numpy(tokens.astype(np.int64)), "domain": int(self._unit_domain[u])}

    # -- introspection ----------------------------------------------------------------------------
    @property
    def unit_ids(self) -> np.ndarray:
        """Which unit (mixture entry) each sample comes from (int16, memory-mapped)."""
        return self._arrays.unit

    @property
    def windows(self) -> np.ndarray:
        return self._arrays.window

    @property
    def domain_ids(self) -> np.ndarray:
        """Index into `domains` of every sample (int64)."""
        return self._unit_domain[np.asarray(self._arrays.unit)]

    @property
    def summary(self) -> dict[str, Any]:
        return self._arrays.summary

    @property
    def cache_path(self) -> Path | None:
        return self._arrays.path

    def __getstate__(self) -> dict[str, Any]:  # DataLoader workers: reopen memory maps instead of copying them
        state = dict(self.__dict__)
        arrays = self._arrays
        if arrays.path is not None:
            state["_arrays"] = ("path", str(arrays.path))
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        arrays = state.get("_arrays")
        if isinstance(arrays, tuple) and arrays[0] == "path":
            state["_arrays"] = _load(Path(arrays[1]))
        self.__dict__.update(state)


def _build_with_progress(spec: BlendSpec, windows: np.ndarray, cache: Path, show: bool) -> BlendArrays:
    if not show:
        return build_blend(spec, windows, cache)
    with Progress(transient=True) as bar:
        task = bar.add_task("blending", total=None)

        def tick(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total)

        return build_blend(spec, windows, cache, progress=tick)


class GlobalBatchSampler(torch.utils.data.Sampler[int]):
    """Indices for one data-parallel rank: its slice of every global batch, from `consumed_samples` on.

    Global batch b is samples [b*G, (b+1)*G) of the stream; rank r of W reads [b*G + r*G/W, b*G + (r+1)*G/W). The
    union over ranks, in rank order, is the stream itself, whatever W, and resuming is starting at any multiple
    of G (the same contract as Megatron's MegatronPretrainingSampler).
    """

    def __init__(
        self, total: int, global_batch_size: int, *, rank: int = 0, world_size: int = 1, consumed_samples: int = 0
    ) -> None:
        if global_batch_size < 1 or global_batch_size % world_size:
            raise DataError(
                f"global batch size {global_batch_size} must be a positive multiple of the world size {world_size}",
                where="global_batch_size",
            )
        if not 0 <= rank < world_size:
            raise DataError(f"rank {rank} outside world size {world_size}", where="rank")
        if consumed_samples % global_batch_size:
            raise DataError(
                f"consumed_samples {consumed_samples} is not a multiple of the global batch size {global_batch_size}",
                where="consumed_samples",
            )
        self.total = total
        self.global_batch_size = global_batch_size
        self.rank = rank
        self.world_size = world_size
        self.consumed = consumed_samples

    def __len__(self) -> int:
        batches = max(0, (self.total - self.consumed) // self.global_batch_size)
        return batches * (self.global_batch_size // self.world_size)

    def __iter__(self) -> Iterator[int]:
        local = self.global_batch_size // self.world_size
        for start in range(self.consumed, self.total - self.global_batch_size + 1, self.global_batch_size):
            lo = start + self.rank * local
            yield from range(lo, lo + local)


class ValidationSet:
    """Held-out windows per domain: `windows[d]` LongTensor[n, seq_len + 1], evenly spread over the valid split.

    `target_bytes[d]` is the exact UTF-8 byte count of the predicted tokens (positions 1..seq_len of every window),
    so summed cross-entropy / ln 2 / target_bytes is bits per byte. It is empty when the corpus has no tokenizer.
    Domains without a single validation window are left out (`skipped` names them).
    """

    def __init__(self, corpus: Corpus, seq_len: int = 256, max_windows_per_domain: int = 16) -> None:
        if seq_len < 1 or max_windows_per_domain < 1:
            raise DataError("seq_len and max_windows_per_domain must be positive", where="validation")
        self.seq_len = seq_len
        windows: dict[str, torch.Tensor] = {}
        target_bytes: dict[str, int] = {}
        self.skipped: list[str] = []
        byte_len = tk.token_byte_lengths(corpus.tokenizer_dir) if corpus.tokenizer_dir is not None else None
        for d in corpus.domain_info:
            reader = _Reader(corpus, d.valid, seq_len)
            total = (d.valid_tokens - 1) // seq_len if d.valid_tokens > 1 else 0
            if total < 1:
                self.skipped.append(d.name)
                continue
            m = min(total, max_windows_per_domain)
            picks = np.unique(np.floor(np.linspace(0, total - 1, m)).astype(np.int64))
            arr = np.stack([reader.window(int(w)) for w in picks]).astype(np.int64)
            windows[d.name] = torch.from_numpy(arr)
            if byte_len is not None:
                ids = arr[:, 1:]
                if ids.max(initial=0) >= len(byte_len):
                    raise DataError(
                        f"token id {int(ids.max())} is outside the tokenizer's {len(byte_len)} ids",
                        where=str(corpus.tokenizer_dir),
                    )
                target_bytes[d.name] = int(byte_len[ids].sum())
        self.windows: Mapping[str, torch.Tensor] = windows
        self.target_bytes: Mapping[str, int] = target_bytes

    @property
    def domains(self) -> tuple[str, ...]:
        return tuple(self.windows)

    def __repr__(self) -> str:
        return f"ValidationSet({len(self.windows)} domains, seq_len={self.seq_len})"
