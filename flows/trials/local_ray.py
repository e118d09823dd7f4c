"""Starting and stopping the driver's Ray: connect to a cluster, or start a local one, and (from the
shell) start the local one while the rest of the sweep gets ready.

A local `ray.init()` takes about 4 s on 2 cores (the GCS, the raylet and its agents), and `mixsweep
sweep` spends about as long between its spec check and its first trial (Prefect's import and flow run,
MLflow's runs, the candidates). So the command starts the local Ray in a thread of its own
(`start_in_background`) as soon as the spec is checked, and the first round waits for it (`ray_init`).

That thread lives until Ray is shut down. Ray ties the life of each process it starts to the thread
that started it (Linux's parent-death signal fires when that *thread* ends), so a cluster started from
a short-lived thread dies with it. The shutdown itself happens in the thread that used Ray (`stop`, from
the command once the flow is done). A shutdown from the starting thread raced the flow's thread: in one
CI run its driver touched Ray's core worker right after that shutdown, and the sweep died at exit.

A local Ray runs its workers, and so the trials, at the priority of the command that started it
(`RAY_worker_niceness` in `LOCAL_RAY_ENV`), not at Ray's default of nice 15: the trials are the work, and at nice 15 every
other process on the machine (the driver, the Prefect and MLflow servers, Ray's own daemons) preempts
them. A cluster's own configuration decides for its workers.

A local Ray also starts no idle workers ahead of need (the other two variables of `LOCAL_RAY_ENV`). Ray forks one worker per CPU for
tasks as soon as the driver connects, but a sweep runs its trials and its evaluation worker as actors,
which Ray starts in workers of their own: the prestarted ones never run anything. They import Ray while
the sweep starts, beside Prefect's import and the flow's start, and wake about 290 times a second
between them while they live (0.7-1.3 CPU seconds over a whole sweep in `benchmarks/sweep.py`'s runs on
2 cores). A task, should one come, gets a worker started for it (about 1 s).
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
import time

import ray  # this module starts Ray: every caller needs it

from flows.steps.spec import SpecError

#: seconds each Ray start or connection took, newest last (the sweep's timings report the last)
START_SECONDS: list[float] = []
#: what a local Ray's raylet reads from the environment, each unless the environment sets it already: its
#: workers at the command's own priority, and none started ahead of need
LOCAL_RAY_ENV = {"RAY_worker_niceness": "0", "RAY_enable_worker_prestart": "0", "RAY_prestart_worker_first_driver": "0"}


def starts_local(address: str | None) -> bool:
    """Whether `ray.init(address)` starts a local Ray rather than connecting to one."""
    return address is None and not os.environ.get("RAY_ADDRESS")


def init_now(address: str | None) -> None:
    """Connect to the Ray cluster at `address`, or start a local one, in this thread. A local start is
    tried twice: Ray gives its raylet 30 s to register, which a heavily loaded machine can exceed once.
    So is a Ray Client connection whose per-client server failed to start (`ConnectionError`; seen once
    on a loaded 2-core machine). The seconds it took are kept in `START_SECONDS`."""
    started = time.perf_counter()
    if starts_local(address):
        for name, value in LOCAL_RAY_ENV.items():
            os.environ.setdefault(name, value)
    for attempt in (1, 2):
        try:
            # no dashboard; Ray's logs stay in its session folder
            ray.init(address=address, include_dashboard=False, log_to_driver=False, configure_logging=False)
            START_SECONDS.append(time.perf_counter() - started)
            return
        except Exception as exc:
            ray.shutdown()
            if address is not None and attempt == 1 and isinstance(exc, ConnectionError):
                time.sleep(2)
                continue
            if address is not None:
                raise SpecError(
                    f"cannot connect to Ray at {address!r}: {' '.join(str(exc).split())[:200]}", where="ray_address"
                ) from None
            if attempt == 2:
                raise


class _Keeper(threading.Thread):
    """The thread that starts the local Ray and lives until `stop` has shut it down."""

    def __init__(self) -> None:
        super().__init__(name="mixsweep-local-ray", daemon=True)
        self.ready = threading.Event()  # set once the start ended, well or not
        self.released = threading.Event()
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            init_now(None)
        except BaseException as exc:  # handed to the thread that waits for Ray (`ray_init`)
            self.error = exc
            return
        finally:
            self.ready.set()
        self.released.wait()  # Ray's processes live as long as this thread; `stop` shuts them down


_keeper: _Keeper | None = None


class _NotMainThread(logging.Filter):
    """Drops Ray's warning that it set no SIGTERM handler from a thread: `start_in_background` sets it."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "SIGTERM handler is not set" not in record.getMessage()


def start_in_background() -> None:
    """Start a local Ray cluster in a thread of its own, unless Ray is started already (or starting).
    The caller is the shell command's main thread: it gets the SIGTERM handler a `ray.init()` there
    would have set (exit with the signal's number, so the flow ends early and says so in MLflow)."""
    global _keeper
    if _keeper is not None or ray.is_initialized():
        return
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(signum))
    logging.getLogger("ray._private.worker").addFilter(_NotMainThread())
    _keeper = _Keeper()
    _keeper.start()


def ray_init(address: str | None) -> None:
    """Make sure this process is connected to Ray: to the cluster at `address` (a one-line `SpecError`
    naming `ray_address` when that fails), else to the local one started in the background (waiting
    for it), else to a local one started now. In the thread that runs the trials: Ray started from
    another thread that then ended made Ray Tune's run fail."""
    if address is None and _keeper is not None:
        _keeper.ready.wait()
        if _keeper.error is not None:
            raise _keeper.error
        return
    if not ray.is_initialized():
        init_now(address)


def stop(timeout: float = 60.0) -> None:
    """Shut down the local Ray started in the background, in this thread (the one that used it), and let
    its starting thread end (waiting at most `timeout` s for a start still under way)."""
    global _keeper
    if _keeper is None:
        return
    _keeper.ready.wait(timeout)
    _stop_autoscaler_first()
    ray.shutdown()
    _keeper.released.set()
    _keeper.join(timeout)
    _keeper = None


def _stop_autoscaler_first() -> None:
    """Kill the local Ray's autoscaler monitor while its GCS still runs. `ray.shutdown()` stops the GCS
    first and the monitor after it; the monitor's SIGTERM handler then waits on the gone GCS, and Ray
    kills it (SIGKILL) once its second of grace is over. Killed first, as Ray ends it anyway, the
    shutdown takes 0.31-0.33 s instead of 1.1-1.3 s (2 cores). A SIGTERM while the GCS runs is no
    better: the monitor took 0.6 s and reported itself failed. The node's `kill_monitor` is Ray's private
    API, hence the guard: a Ray without it shuts down as before."""
    kill = getattr(getattr(ray._private.worker, "_global_node", None), "kill_monitor", None)
    if callable(kill):
        try:
            kill(check_alive=False)
        except Exception as exc:  # the shutdown goes on: it kills whatever is left
            logging.getLogger(__name__).debug("killing Ray's autoscaler monitor first failed: %s", exc)


__all__ = [
    "LOCAL_RAY_ENV",
    "START_SECONDS",
    "init_now",
    "ray_init",
    "start_in_background",
    "starts_local",
    "stop",
]
