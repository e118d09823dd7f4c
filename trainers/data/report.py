"""What `mixsweep data blend` reports: a blended stream with its targets, per-domain rows and largest drift.

A library step, so the command line only parses options and prints: `stream_report` blends weights or a schedule
without a corpus (the engine alone), `dataset_report` reads the stream a `BlendedSequenceDataset` built, and
`BlendReport.save` writes Megatron's index arrays plus `summary.json`.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mixture_search.files import atomic_save, atomic_write_json
from mixture_search.mixture import Mixture
from trainers.data.blend import make_targets
from trainers.data.engine import exact_stream, max_drift, megatron_stream
from trainers.data.errors import DataError
from trainers.data.schedule import Targets, WeightSchedule


@dataclass(frozen=True)
class BlendRow:
    name: str
    target_samples: float
    samples: int
    target_share: float
    share: float


@dataclass(frozen=True)
class BlendReport:
    """A blended stream: `unit` (entry of each sample), `count` (k-th sample of that entry), optional `window`."""

    unit: np.ndarray
    count: np.ndarray
    window: np.ndarray | None
    rows: tuple[BlendRow, ...]
    max_drift: float
    mode: str
    stop: str

    @property
    def samples(self) -> int:
        return len(self.unit)

    def summary(self) -> dict[str, Any]:
        return {
            "samples": self.samples,
            "mode": self.mode,
            "stop": self.stop,
            "max_drift": self.max_drift,
            "rows": [vars(r) for r in self.rows],
        }

    def save(self, out: Path) -> None:
        """dataset_index.npy, dataset_sample_index.npy, window_index.npy (with a corpus) and summary.json."""
        out.mkdir(parents=True, exist_ok=True)
        arrays = {"dataset_index.npy": self.unit, "dataset_sample_index.npy": self.count}
        if self.window is not None:
            arrays["window_index.npy"] = self.window
        for name, arr in arrays.items():
            atomic_save(out / name, functools.partial(_save_npy, arr=arr))
        atomic_write_json(out / "summary.json", self.summary(), indent=2)


def _save_npy(path: Path, *, arr: np.ndarray) -> None:
    with path.open("wb") as fh:  # a file object: np.save given a path would append ".npy" to the temporary
        np.save(fh, arr)


def within_unit_counts(unit: np.ndarray, k: int) -> np.ndarray:
    """For each sample, how many earlier samples came from the same entry (Megatron's dataset_sample_index)."""
    order = np.argsort(unit, kind="stable")
    bounds = np.searchsorted(unit[order], np.arange(k + 1))
    out = np.empty(len(unit), dtype=np.int64)
    for i in range(k):
        out[order[bounds[i] : bounds[i + 1]]] = np.arange(bounds[i + 1] - bounds[i])
    return out


def report(
    unit: np.ndarray, names: list[str], targets: Targets, *, mode: str, stop: str, window: np.ndarray | None = None
) -> BlendReport:
    """Targets vs achieved counts after the whole stream, and the largest drift over every prefix."""
    k = len(names)
    n = len(unit)
    got = np.bincount(unit.astype(np.int64), minlength=k)
    target = targets.at(np.array([max(n, 1)]))[0]
    rows = tuple(
        BlendRow(names[i], float(target[i]), int(got[i]), float(target[i]) / max(n, 1), float(got[i]) / max(n, 1))
        for i in range(k)
    )
    drift = max_drift(unit, targets) if n else 0.0
    return BlendReport(unit, within_unit_counts(unit, k), window, rows, drift, mode, stop)


def stream_report(mixture: Mixture | None, schedule: WeightSchedule | None, n: int, *, mode: str) -> BlendReport:
    """Blend weights (or a schedule) into n samples with the engine alone: no corpus, so restart semantics."""
    if schedule is not None:
        names = list(schedule.names)
        targets = schedule.targets(n)
    elif mixture is not None:
        names = list(mixture.names)
        targets = Targets.from_segments(np.array([0]), np.array(mixture.normalized)[None, :])
    else:
        raise DataError("give a mixture or a schedule", where="weights")
    if mode == "megatron":
        if schedule is not None:
            raise DataError("megatron mode has no weight schedules", where="mode")
        unit, _ = megatron_stream(targets.weights[0], n)
    else:
        unit, _ = exact_stream(targets, n)
    return report(unit, names, targets, mode=mode, stop="restart")


def dataset_report(ds: Any, *, mode: str, stop: str) -> BlendReport:
    """The stream a `BlendedSequenceDataset` reads (typed loosely: importing it here would import torch)."""
    unit = np.asarray(ds.unit_ids)
    targets = make_targets(ds.spec, len(unit))
    return report(unit, list(ds.spec.units), targets, mode=mode, stop=stop, window=np.asarray(ds.windows))
