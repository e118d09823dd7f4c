"""Where a sweep's wall time goes, stage by stage (written to its summary; the orchestration benchmark
reads it to break its overhead down)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager


class Timings:
    """Seconds per named stage, summed over the times a stage runs (e.g. once per round)."""

    def __init__(self) -> None:
        self.started = time.perf_counter()
        self.seconds: dict[str, float] = {}

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[name] = self.seconds.get(name, 0.0) + time.perf_counter() - start

    def rounded(self) -> dict[str, float]:
        """Each stage, the rest of the flow (`other`) and the flow's total, to 10 ms."""
        total = time.perf_counter() - self.started
        out = {k: round(v, 2) for k, v in self.seconds.items()}
        out["other"] = round(total - sum(self.seconds.values()), 2)
        out["total"] = round(total, 2)
        return out
