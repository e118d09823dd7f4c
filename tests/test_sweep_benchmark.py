"""The orchestration benchmark's CPU accounting (`benchmarks/sweep.py`): every process a command
starts is counted under its kind, children included, so the JSON can say what shares the cores with
the trainings."""

from __future__ import annotations

import subprocess
import sys
from types import SimpleNamespace

import pytest

from benchmarks import sweep

# a parent that starts a busy multiprocessing child (spawn) and a busy plain subprocess, then waits
PARENT = """
import multiprocessing as mp, subprocess, sys, time

def busy():
    t = time.process_time()
    while time.process_time() - t < 0.6:
        pass

if __name__ == "__main__":
    p = mp.get_context("spawn").Process(target=busy)
    p.start()
    subprocess.run([sys.executable, "-c", "import time\\nt = time.process_time()\\nwhile time.process_time() - t < 0.6: pass"])
    p.join()
    time.sleep(0.5)
"""


def test_watch_tree_counts_children_by_kind(tmp_path) -> None:  # type: ignore[no-untyped-def]
    script = tmp_path / "parent.py"
    script.write_text(PARENT)
    proc = subprocess.Popen([sys.executable, str(script)])
    cpu = sweep._watch_tree(proc, every=0.05)
    assert proc.returncode == 0
    assert cpu.get("parent.py > multiprocessing child", 0.0) >= 0.4, cpu
    assert cpu.get("python -c", 0.0) >= 0.4, cpu  # the plain subprocess
    assert list(cpu.values()) == sorted(cpu.values(), reverse=True)


def test_kind_names_ray_workers_scripts_and_pool_children() -> None:
    assert sweep._kind("ray::ImplicitFu", ["ray::ImplicitFunc.train"], "mixsweep") == "ray::ImplicitFunc (trials)"
    assert sweep._kind("raylet", ["/x/ray/core/src/ray/raylet/raylet", "--flag"], "mixsweep") == "raylet"
    assert sweep._kind("python", ["/v/bin/python", "/x/log_monitor.py", "--a"], "mixsweep") == "log_monitor.py"
    assert sweep._kind("python", ["/v/bin/python", "-c", "print(1)"], "mixsweep") == "python -c"
    child = [
        "/v/bin/python",
        "-B",
        "-c",
        "from multiprocessing.spawn import spawn_main; spawn_main()",
        "--multiprocessing-fork",
    ]
    assert sweep._kind("python", child, "ray::IDLE") == "ray::IDLE > multiprocessing child"


def test_the_sweeps_driver_does_not_import_torch() -> None:
    """The driver (`mixsweep sweep`) checks corpora and starts the evaluation worker, but trains
    nothing: torch's import (~2 s before the first trial can start) belongs to the trial processes."""
    code = "import sys, flows.sweep, flows.cli.sweep; print(sorted(m for m in sys.modules if m.split('.')[0] == 'torch')[:3])"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_a_ratio_flattered_by_a_slower_peer_does_not_meet_the_goal() -> None:
    assert sweep.judge(1.05, trial_tps=9000.0, peer_tps=9500.0)["goal_met"]
    drifted = sweep.judge(1.02, trial_tps=8410.0, peer_tps=7998.0)
    assert not drifted["goal_met"] and drifted["peer_slower_than_trials"]
    assert "flattered" in drifted["verdict"]
    assert not sweep.judge(1.38, trial_tps=8120.0, peer_tps=8717.0)["goal_met"]


def test_the_overhead_is_the_median_of_the_counted_brackets() -> None:
    # sweep, peer, sweep, peer, sweep: brackets (100+110)/2/100 = 1.05 and (110+120)/2/92 = 1.25
    out = sweep.brackets([100.0, 110.0, 120.0], [100.0, 92.0], [9000.0, 9000.0, 9000.0], [9200.0, 9900.0])
    assert out["overhead_ratio_brackets"] == [1.05, 1.25]
    assert out["overhead_ratio"] == 1.15 and out["brackets_counted"] == 2 and not out["goal_met"]
    # the second peer trained slower per token than its sweeps' trials: flattered, not counted
    flattered = sweep.brackets([100.0, 110.0, 90.0], [100.0, 98.0], [9000.0, 9000.0, 9000.0], [9200.0, 8500.0])
    assert flattered["peer_slower_than_trials"] == [False, True]
    assert flattered["overhead_ratio"] == 1.05 and flattered["goal_met"] and flattered["brackets_counted"] == 1
    only = sweep.brackets([100.0, 100.0], [95.0], [9000.0, 9000.0], [8000.0])  # nothing counted: never met
    assert not only["goal_met"] and only["brackets_counted"] == 0
    with pytest.raises(ValueError, match="one sweep more than peers"):
        sweep.brackets([100.0], [90.0], [9000.0], [9000.0])


def test_a_trainings_phases_split_its_call_train_and_steps() -> None:
    """Each training is timed the same way on both sides: the whole call, `train()` alone, and its steps
    (tokens over the trainer's own tokens per second), so the JSON says where a trial loses time."""
    result = SimpleNamespace(tokens=614_400, tokens_per_s=10_240.0, wall_time_s=62.5)
    assert sweep._phases(result, 63.0) == {"call_s": 63.0, "train_s": 62.5, "steps_s": 60.0}
    assert sweep._phases(SimpleNamespace(tokens=0, tokens_per_s=0.0, wall_time_s=1.0), 2.0)["steps_s"] == 0.0
    assert sweep._mean_phases([{"call_s": 1.0, "steps_s": 0.5}, {"call_s": 2.0, "steps_s": 1.0}]) == {
        "call_s": 1.5,
        "steps_s": 0.75,
    }


def test_each_run_in_brief_splits_its_cpu_between_its_tree_and_the_rest() -> None:
    """Every sweep and peer gets a row (the committed JSON compares them run by run): wall time, the
    trainings' mean tokens/s and steps, and the machine's CPU outside the run's own process tree."""
    phases = {"call_s": 80.0, "train_s": 79.0, "steps_s": 76.0}
    peer = {"wall_s": 330.0, "tree_cpu": {"a": 600.0, "b": 20.0}, "machine_cpu": 641.5, "tps": [7800.0, 8000.0],
            "phases": [phases, {**phases, "steps_s": 78.0}]}  # fmt: skip
    assert sweep._each(peer, sweep=False) == {
        "wall_s": 330.0, "tokens_per_s_mean": 7900.0, "steps_s_mean": 77.0, "tree_cpu_s": 620.0,
        "outside_tree_cpu_s": 21.5,
    }  # fmt: skip
    rows = [{"metrics": {"train.tokens_per_s": 7400.0}, "phases": phases}]
    run = {"wall_s": 375.0, "tree_cpu": {"a": 690.0}, "machine_cpu": 720.0, "rows": rows,
           "summary": {"timings_s": {"trials": 355.0, "finish": 7.5, "cv": 1.5, "total": 367.0}}}  # fmt: skip
    assert sweep._each(run, sweep=True) == {
        "wall_s": 375.0, "outside_flow_s": 8.0, "flow.trials_s": 355.0, "flow.finish_s": 7.5, "flow.cv_s": 1.5,
        "tokens_per_s_mean": 7400.0, "steps_s_mean": 76.0, "tree_cpu_s": 690.0, "outside_tree_cpu_s": 30.0,
    }  # fmt: skip
    assert sweep._machine_busy_s() > 0
