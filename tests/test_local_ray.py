"""The local Ray that `mixsweep sweep` starts in a thread of its own while the sweep gets ready
(`flows.trials.local_ray`): the trials' thread uses it, `stop` shuts it down from that thread, and a
start that failed is raised where Ray is first needed."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator

import psutil
import pytest
import ray

from flows.trials import local_ray


@pytest.fixture
def clean() -> Iterator[None]:
    """No Ray before, none left after, and the SIGTERM handler as it was."""
    assert not ray.is_initialized()
    handler = signal.getsignal(signal.SIGTERM)
    try:
        yield
    finally:
        local_ray.stop()
        ray.shutdown()
        signal.signal(signal.SIGTERM, handler)


def _workers() -> list[str]:
    """The command lines of the local Ray's worker processes (the raylet's children but its agents)."""
    node = ray._private.worker._global_node
    assert node is not None
    raylet = psutil.Process(node.all_processes["raylet"][0].process.pid)
    found = []
    for child in raylet.children():
        try:
            cmd = " ".join(child.cmdline())
        except psutil.Error:
            continue
        if "default_worker.py" in cmd or (cmd.startswith("ray::") and "Agent" not in cmd.split()[0]):
            found.append(cmd[:60])
    return found


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with open(f"/proc/{pid}/stat", encoding="utf-8") as fh:  # a zombie is not alive
        return fh.read().split(") ", 1)[1][0] != "Z"


@pytest.mark.integration
def test_background_ray_serves_this_thread_and_stops(clean: None, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in local_ray.LOCAL_RAY_ENV:  # Ray's defaults unless we set them
        monkeypatch.delenv(name, raising=False)
    before = len(local_ray.START_SECONDS)
    local_ray.start_in_background()
    assert signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL  # what ray.init() sets in the main thread
    local_ray.ray_init(None)  # waits for the background start
    assert ray.is_initialized()
    assert len(local_ray.START_SECONDS) == before + 1
    # no idle workers started ahead of need: Ray's default forks one per CPU as soon as the driver connects
    time.sleep(2)
    assert _workers() == [], "a local Ray prestarted workers that no sweep uses"

    @ray.remote
    def square(x: int) -> int:
        return x * x

    assert ray.get([square.remote(i) for i in range(4)]) == [0, 1, 4, 9]  # from this thread, not Ray's
    # the trials run at this process's priority: Ray's daemons and the servers do not preempt them
    assert ray.get(ray.remote(lambda: os.nice(0)).remote()) == os.nice(0)
    node = ray._private.worker._global_node
    assert node is not None
    pids = [info.process.pid for infos in node.all_processes.values() for info in infos]
    assert pids and all(_alive(pid) for pid in pids)
    # the stop ends the autoscaler's monitor first, while the GCS still runs (after it, the monitor's
    # SIGTERM handler waits on the GCS for Ray's whole second of grace)
    monitor, gcs = (node.all_processes[kind][0].process for kind in ("monitor", "gcs_server"))
    local_ray._stop_autoscaler_first()
    assert monitor.poll() is not None and gcs.poll() is None

    local_ray.stop()  # what `mixsweep sweep` does once the flow is done
    assert not ray.is_initialized()
    assert not any(_alive(pid) for pid in pids), "Ray's processes outlived the stop"
    local_ray.ray_init(None)  # after the stop, Ray starts again in this thread when needed
    assert ray.is_initialized()


def test_a_failed_background_start_is_raised_where_ray_is_needed(clean: None, monkeypatch: pytest.MonkeyPatch) -> None:
    def no_raylet(address: str | None) -> None:
        raise RuntimeError("the raylet did not register within 30 s")

    monkeypatch.setattr(local_ray, "init_now", no_raylet)
    local_ray.start_in_background()
    with pytest.raises(RuntimeError, match="raylet did not register"):
        local_ray.ray_init(None)
    local_ray.stop()
    assert not ray.is_initialized()
