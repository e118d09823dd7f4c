"""`trainers.data.report`: the computation behind `mixsweep data blend`, without the command line."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from mixture_search.mixture import Mixture
from trainers.data.errors import DataError
from trainers.data.report import stream_report, within_unit_counts
from trainers.data.schedule import WeightSchedule


def test_stream_report_rows_drift_and_saved_arrays(tmp_path: Path) -> None:
    rep = stream_report(Mixture({"a": 7, "b": 5, "c": 4}), None, 1600, mode="exact")
    assert [r.name for r in rep.rows] == ["a", "b", "c"]
    assert sum(r.samples for r in rep.rows) == 1600
    assert rep.rows[0].target_samples == pytest.approx(700.0)
    assert rep.max_drift <= 1.0
    assert np.array_equal(rep.count, within_unit_counts(rep.unit, 3))
    rep.save(tmp_path)
    assert np.array_equal(np.load(tmp_path / "dataset_index.npy"), rep.unit)
    assert json.loads((tmp_path / "summary.json").read_text())["rows"][1]["name"] == "b"
    assert not (tmp_path / "window_index.npy").exists()


def test_megatron_mode_has_no_schedules() -> None:
    sched = WeightSchedule(((0, Mixture({"a": 1, "b": 1})), (4, Mixture({"a": 1, "b": 3}))), "linear", 8)
    with pytest.raises(DataError, match="megatron mode"):
        stream_report(None, sched, 100, mode="megatron")
