"""One evaluation worker per Ray node, shared by every trial that runs there.

A trial calls `evaluate_on_node(checkpoint, corpus, tasks, max_docs=..., timeout_s=...)`. On Ray it
goes to the node's `EvalService` actor, which owns one `eval.isolated.EvalWorker`: LightEval's import
is paid once per node, the evaluation stays in a process of its own, and a crash or time limit
restarts only that process. Without Ray (the CLI, tests) a module-level worker plays the same role.

Lifetime: the actor is created by whichever trial needs it first, so it cannot be owned by that
trial (it would die when the trial's worker process ends, under the other trials). It is detached,
named `mixsweep-eval-<job id>-<node id>` so a later sweep never reuses a stale one, and the sweep
driver ends them all with `stop_node_services()` when its trials are done (a local Ray cluster that
the driver started also ends them with `ray.shutdown()`). It asks for no CPU (`num_cpus=0`): the
evaluation runs while the calling trial waits on it, inside that trial's CPU reservation.
"""

from __future__ import annotations

import atexit
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import ray
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from eval.isolated import DEFAULT_TIMEOUT_S, EvaluationFailed, EvalWorker

NAMESPACE = "mixsweep"
PREFIX = "mixsweep-eval-"


@dataclass(frozen=True)
class _Answer:
    """What crosses the actor boundary: the result, or the one-line error (never a traceback)."""

    metrics: dict[str, float]
    paths: dict[str, str]
    error: str | None = None


class EvalService:
    """The node's evaluation worker, behind a Ray actor (calls take turns: max_concurrency 1)."""

    def __init__(self) -> None:
        self._worker = EvalWorker()
        self.evaluations = 0

    def evaluate(self, checkpoint: str, corpus: str, tasks: list[str], max_docs: int, timeout_s: float) -> _Answer:
        self.evaluations += 1
        try:
            metrics, paths = self._worker.evaluate_checkpoint(
                Path(checkpoint), corpus, tasks, max_docs=max_docs, timeout_s=timeout_s
            )
        except EvaluationFailed as exc:
            return _Answer({}, {}, error=str(exc))
        return _Answer(metrics, paths)

    def info(self) -> dict[str, Any]:
        """The worker process (pid, how many starts) and the node, for tests and logs."""
        return {
            "pid": self._worker.pid,
            "starts": self._worker.starts,
            "evaluations": self.evaluations,
            "node_id": ray.get_runtime_context().get_node_id(),
        }

    def close(self) -> None:
        self._worker.close()


def actor_name(node_id: str) -> str:
    return f"{PREFIX}{ray.get_runtime_context().get_job_id()}-{node_id}"


def node_service() -> Any:
    """This node's `EvalService` actor, created on first use (pinned here, no CPU, detached)."""
    node_id = ray.get_runtime_context().get_node_id()
    return (
        ray.remote(EvalService)
        .options(
            name=actor_name(node_id),
            namespace=NAMESPACE,
            get_if_exists=True,
            lifetime="detached",
            num_cpus=0,
            max_concurrency=1,
            scheduling_strategy=NodeAffinitySchedulingStrategy(node_id=node_id, soft=False),
        )
        .remote()
    )


_local: EvalWorker | None = None
_local_lock = threading.Lock()


def _local_worker() -> EvalWorker:
    global _local
    with _local_lock:
        if _local is None:
            _local = EvalWorker()
            atexit.register(_local.close)
        return _local


def evaluate_on_node(
    checkpoint: Path | str,
    corpus: str,
    tasks: Sequence[str],
    *,
    max_docs: int,
    timeout_s: float = DEFAULT_TIMEOUT_S,
) -> tuple[dict[str, float], dict[str, str]]:
    """Convert + evaluate `checkpoint` in this node's shared worker; (metrics, paths) as
    `eval.isolated.evaluate_checkpoint` returns them, `EvaluationFailed` (one line) on failure."""
    if not ray.is_initialized():
        return _local_worker().evaluate_checkpoint(
            Path(checkpoint), corpus, tasks, max_docs=max_docs, timeout_s=timeout_s
        )
    answer: _Answer = ray.get(
        node_service().evaluate.remote(str(checkpoint), str(corpus), list(tasks), max_docs, timeout_s)
    )
    if answer.error is not None:
        raise EvaluationFailed(answer.error)
    return answer.metrics, answer.paths


def stop_node_services() -> list[str]:
    """End this job's evaluation actors (each closes its worker process); the names it ended. The
    sweep driver calls it once its trials are done."""
    prefix = f"{PREFIX}{ray.get_runtime_context().get_job_id()}-"
    stopped: list[str] = []
    for entry in ray.util.list_named_actors(all_namespaces=True):
        if entry["namespace"] != NAMESPACE or not entry["name"].startswith(prefix):
            continue
        actor = ray.get_actor(entry["name"], namespace=NAMESPACE)
        try:
            ray.get(actor.close.remote(), timeout=60)
        finally:
            ray.kill(actor)
        stopped.append(entry["name"])
    return stopped
