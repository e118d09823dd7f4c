"""The trial's evaluation step runs in its own process: its errors come back as one line, and a hung
evaluation ends at its time limit."""

from __future__ import annotations

from pathlib import Path

import pytest

from eval.isolated import EvaluationFailed, evaluate_checkpoint


def test_a_missing_checkpoint_is_one_line_naming_it(sweep_corpus: Path, tmp_path: Path) -> None:
    with pytest.raises(EvaluationFailed) as err:
        evaluate_checkpoint(tmp_path / "nowhere", str(sweep_corpus), ["bpb"], max_docs=2)
    message = str(err.value)
    assert "\n" not in message and str(tmp_path / "nowhere") in message


def test_an_evaluation_past_its_time_limit_fails_instead_of_hanging(tmp_path: Path) -> None:
    with pytest.raises(EvaluationFailed, match=r"ran past 0\.2 s"):
        evaluate_checkpoint(tmp_path / "nowhere", str(tmp_path), ["bpb"], max_docs=2, timeout_s=0.2)
