"""The fault helpers without a stack: the injection hook's grammar, and a full disk recognised
through the wrappers checkpoint writers put around ENOSPC."""

from __future__ import annotations

import errno
from pathlib import Path

import pytest

from flows.trials.faults import NO_FAULT, Diverge, FaultSpecError, PauseAfter, disk_full, faults_for_round
from trainers.budget import TrainBudget


def test_the_hook_is_inert_unless_set(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MIXSWEEP_FAULT_INJECT", raising=False)
    assert faults_for_round(0) == {}
    monkeypatch.setenv("MIXSWEEP_FAULT_INJECT", "pause:3@0.0, diverge@0.1,diverge@1.0")
    assert faults_for_round(0) == {0: PauseAfter(3), 1: Diverge()}
    assert faults_for_round(1) == {0: Diverge()}
    assert faults_for_round(2) == {}


def test_hooks_change_only_what_they_name(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    budget = TrainBudget(steps=4, lr=1e-3, grad_clip=1.0)
    assert NO_FAULT.budget(budget) is budget
    diverging = Diverge().budget(budget)
    assert (diverging.lr, diverging.grad_clip, diverging.warmup_steps, diverging.steps) == (1e5, 0.0, 0, 4)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr("flows.trials.faults.PAUSE_S", 0.0)
    PauseAfter(3).after_step(3, resumed=True)  # a resumed attempt does not pause again
    assert not (tmp_path / "fault-paused").exists()
    PauseAfter(3).after_step(2, resumed=False)
    assert not (tmp_path / "fault-paused").exists()
    PauseAfter(3).after_step(3, resumed=False)
    assert (tmp_path / "fault-paused").read_text() == "3"


@pytest.mark.parametrize("bad", ["explode@0.1", "diverge@0", "pause@0.0", "diverge"])
def test_a_bad_hook_value_is_one_line_naming_the_variable(bad: str) -> None:
    with pytest.raises(FaultSpecError, match="MIXSWEEP_FAULT_INJECT") as info:
        faults_for_round(0, bad)
    assert "\n" not in str(info.value)


def test_a_full_disk_is_recognised_through_wrappers(tmp_path: Path) -> None:
    enospc = OSError(errno.ENOSPC, "No space left on device", str(tmp_path / "ckpt" / "model.pt"))
    assert disk_full(enospc, tmp_path) == f"no space left on device while writing {tmp_path}/ckpt/model.pt"
    try:  # wrapped, as dist_checkpointing and DeepSpeed do
        try:
            raise enospc
        except OSError as inner:
            raise RuntimeError("checkpoint write failed") from inner
    except RuntimeError as outer:
        assert disk_full(outer, tmp_path) == f"no space left on device while writing {tmp_path}/ckpt/model.pt"
    text = RuntimeError(f"Worker failure: [Errno 28] No space left on device: '{tmp_path}/x.distcp'")
    assert disk_full(text, tmp_path) == f"no space left on device while writing {tmp_path}/x.distcp"
    # another error on a disk with room is not a full disk
    assert disk_full(RuntimeError("unexpected pos 704 vs 598"), tmp_path) is None


def test_a_full_disk_is_recognised_by_its_free_space_when_the_errno_is_lost(tmp_path: Path) -> None:
    """torch's checkpoint writer reports a short write as `CheckpointException` (a BaseException) with
    "unexpected pos ...": no errno. Under 4 MiB left, a failed write is a full disk."""
    small = tmp_path / "small"
    small.mkdir()
    import subprocess

    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(small)], capture_output=True).returncode:
        pytest.skip("cannot mount a tmpfs here")
    try:

        class CheckpointException(BaseException):
            pass

        message = disk_full(CheckpointException("unexpected pos 704 vs 598"), small)
        assert message == f"no space left on device while writing {small} (1048576 bytes left)"
    finally:
        subprocess.run(["umount", "-l", str(small)], check=False)
