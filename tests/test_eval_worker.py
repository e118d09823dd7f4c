"""The long-lived evaluation worker (`eval.isolated.EvalWorker`): the same numbers as the one-shot
process on a real trained checkpoint, one import for many evaluations, the caller's process state
untouched, and a fresh process after a crash or a time limit."""

from __future__ import annotations

import os
import shutil
import signal
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from eval.isolated import EvaluationFailed, EvalWorker, evaluate_checkpoint
from tests import eval_support as support

pytestmark = [pytest.mark.integration, pytest.mark.slow]
TASKS = ["bpb", "cloze"]


@pytest.fixture(scope="module")
def checkpoint(sweep_corpus: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return support.tiny_checkpoint(sweep_corpus, tmp_path_factory.mktemp("trained"))


def _copy(checkpoint: Path, to: Path) -> Path:
    """The checkpoint's run folder copied under `to` (conversion and results land beside it)."""
    run = checkpoint.parent.parent
    shutil.copytree(run, to / run.name)
    return to / run.name / checkpoint.relative_to(run)


def _hanging_run(tmp_path: Path) -> Path:
    """A run folder whose `checkpoints/latest` is a FIFO nobody writes: reading it blocks, a real
    hang inside the worker (no test hook in the evaluation code)."""
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    os.mkfifo(run / "checkpoints" / "latest")
    return run


@pytest.fixture(scope="module")
def worker() -> Iterator[EvalWorker]:
    with EvalWorker() as w:
        yield w


def test_worker_gives_the_one_shot_numbers_and_imports_once(
    checkpoint: Path, sweep_corpus: Path, worker: EvalWorker, tmp_path: Path
) -> None:
    lighteval_before = {m for m in sys.modules if m.startswith("lighteval")}
    one_shot, one_paths = evaluate_checkpoint(_copy(checkpoint, tmp_path / "a"), str(sweep_corpus), TASKS, max_docs=4)
    first, paths = worker.evaluate_checkpoint(_copy(checkpoint, tmp_path / "b"), str(sweep_corpus), TASKS, max_docs=4)
    pid = worker.pid
    again, _ = worker.evaluate_checkpoint(_copy(checkpoint, tmp_path / "c"), str(sweep_corpus), TASKS, max_docs=4)

    assert first == one_shot and again == one_shot  # every name, every value, bit for bit
    assert {"eval.bpb_prose/bpb", "eval.cloze_prose/acc", "eval.agg.bpb/mean", "eval.objective"} <= set(first)
    assert Path(paths["eval_json"]).exists() and Path(paths["hf_dir"]).is_relative_to(tmp_path / "b")
    assert Path(one_paths["hf_dir"]).is_relative_to(tmp_path / "a")
    assert worker.pid == pid and worker.starts == 1  # the second evaluation reused the process
    # the caller's state: autograd still on, LightEval not imported here
    assert torch.is_grad_enabled()
    assert {m for m in sys.modules if m.startswith("lighteval")} == lighteval_before


def test_an_input_error_is_one_line_and_keeps_the_worker(
    sweep_corpus: Path, worker: EvalWorker, tmp_path: Path
) -> None:
    worker.start()
    pid, starts = worker.pid, worker.starts
    with pytest.raises(EvaluationFailed) as err:
        worker.evaluate_checkpoint(tmp_path / "nowhere", str(sweep_corpus), TASKS, max_docs=4)
    assert "\n" not in str(err.value) and str(tmp_path / "nowhere") in str(err.value)
    assert worker.pid == pid and worker.starts == starts


def test_a_hung_evaluation_is_killed_and_the_next_call_starts_afresh(
    sweep_corpus: Path, worker: EvalWorker, tmp_path: Path
) -> None:
    worker.start()
    hung_pid, starts = worker.pid, worker.starts
    with pytest.raises(EvaluationFailed, match=r"ran past 3 s") as err:
        worker.evaluate_checkpoint(_hanging_run(tmp_path), str(sweep_corpus), TASKS, max_docs=4, timeout_s=3)
    assert "\n" not in str(err.value) and worker.pid is None
    assert hung_pid is not None
    with pytest.raises(ProcessLookupError):
        os.kill(hung_pid, 0)  # killed, not left running
    with pytest.raises(EvaluationFailed):  # a fresh process answers the next call
        worker.evaluate_checkpoint(tmp_path / "nowhere", str(sweep_corpus), TASKS, max_docs=4)
    assert worker.starts == starts + 1 and worker.pid not in (None, hung_pid)


def test_a_crashed_worker_fails_the_call_in_one_line_and_is_restarted(
    sweep_corpus: Path, worker: EvalWorker, tmp_path: Path
) -> None:
    worker.start()
    crashed, starts = worker.pid, worker.starts
    assert crashed is not None
    threading.Timer(1.0, os.kill, (crashed, signal.SIGKILL)).start()
    run = _hanging_run(tmp_path)  # keeps the evaluation busy until the kill
    with pytest.raises(EvaluationFailed) as err:
        worker.evaluate_checkpoint(run, str(sweep_corpus), TASKS, max_docs=4, timeout_s=120)
    assert str(err.value) == f"{run}: exit code -9"
    with pytest.raises(EvaluationFailed, match="nowhere"):
        worker.evaluate_checkpoint(tmp_path / "nowhere", str(sweep_corpus), TASKS, max_docs=4)
    assert worker.starts == starts + 1 and worker.pid != crashed
