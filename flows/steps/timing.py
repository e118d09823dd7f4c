"""Where a sweep's wall time goes, stage by stage (written to its summary; the orchestration benchmark
reads it to break its overhead down)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager


class Timings:
    """Seconds per named stage, summed over the times a stage runs (e.g. once per round), as wall time
    and as this process's CPU time (all its threads: e.g. Ray Tune's driver loop while trials run)."""

    def __init__(self) -> None:
        self.started = time.perf_counter()
        self.cpu_started = time.process_time()
        self.seconds: dict[str, float] = {}
        self.cpu_seconds: dict[str, float] = {}

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        start, cpu = time.perf_counter(), time.process_time()
        try:
            yield
        finally:
            self.seconds[name] = self.seconds.get(name, 0.0) + time.perf_counter() - start
            self.cpu_seconds[name] = self.cpu_seconds.get(name, 0.0) + time.process_time() - cpu

    def rounded(self) -> dict[str, float]:
        """Each stage, the rest of the flow (`other`) and the flow's total, to 10 ms."""
        total = time.perf_counter() - self.started
        out = {k: round(v, 2) for k, v in self.seconds.items()}
        out["other"] = round(total - sum(self.seconds.values()), 2)
        out["total"] = round(total, 2)
        return out

    def cpu_rounded(self) -> dict[str, float]:
        """The same for this process's CPU seconds (`process` counts from the interpreter's start)."""
        out = {k: round(v, 2) for k, v in self.cpu_seconds.items()}
        out["total"] = round(time.process_time() - self.cpu_started, 2)
        out["process"] = round(time.process_time(), 2)
        return out
