"""The per-token gap probe (`benchmarks/trial_gap.py`): a training's wall time split by its own thread's
scheduler figures into time on a CPU, time waiting for one, and time blocked."""

from __future__ import annotations

import torch

from benchmarks import trial_gap
from tests.data_support import build_tiny_corpus


def test_a_trainings_wall_time_splits_into_run_wait_and_blocked(tmp_path) -> None:  # type: ignore[no-untyped-def]
    corpus = build_tiny_corpus(tmp_path / "tiny")
    threads = torch.get_num_threads()
    try:
        row = trial_gap.train_one(trial_gap._jobs(str(corpus), 3, root=str(tmp_path / "out"))[0])
    finally:
        torch.set_num_threads(threads)  # the probe pins its process to one thread, as a trial of 1 CPU
    assert set(row) == set(trial_gap.FIGURES)
    # schedstat's time on a CPU is the thread's own CPU time, counted apart by getrusage (a wrong unit or
    # another thread's figures would not match), and no more than the wall time
    assert abs(row["run_s"] - row["cpu_s"]) <= 0.05 + 0.1 * row["cpu_s"], row
    assert 0.0 < row["run_s"] <= row["wall_s"] + 0.05, row
    assert row["runq_wait_s"] >= 0.0 and row["blocked_s"] > -0.05, row
    assert row["slices"] >= 1 and row["tokens_per_s"] > 0, row
