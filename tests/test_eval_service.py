"""One evaluation worker per Ray node (`flows.trials.eval_service`): trials on a node share it (one start,
one process, many evaluations), its errors stay one line, the driver's cleanup ends it, and without
Ray a local worker answers instead."""

from __future__ import annotations

import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import ray

from eval.isolated import EvaluationFailed
from flows.trials import eval_service
from tests import eval_support as support

pytestmark = [pytest.mark.integration, pytest.mark.slow]
TASKS = ["bpb"]


@pytest.fixture(scope="module")
def checkpoint(sweep_corpus: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return support.tiny_checkpoint(sweep_corpus, tmp_path_factory.mktemp("trained"))


@pytest.fixture
def local_ray() -> Iterator[None]:
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    try:
        yield
    finally:
        ray.shutdown()


@ray.remote(num_cpus=1)
def trial(checkpoint: str, corpus: str) -> tuple[dict[str, float], dict[str, str]] | str:
    """What a trial does after training: evaluate on its node's worker."""
    try:
        return eval_service.evaluate_on_node(checkpoint, corpus, TASKS, max_docs=4, timeout_s=600)
    except EvaluationFailed as exc:
        return f"failed: {exc}"


def _run_copy(checkpoint: Path, to: Path) -> Path:
    run = checkpoint.parent.parent
    shutil.copytree(run, to / run.name)
    return to / run.name / checkpoint.relative_to(run)


def test_trials_on_a_node_share_one_worker(
    local_ray: None, checkpoint: Path, sweep_corpus: Path, tmp_path: Path
) -> None:
    copies = [str(_run_copy(checkpoint, tmp_path / name)) for name in ("a", "b")]
    results = ray.get([trial.remote(c, str(sweep_corpus)) for c in copies])
    (first, first_paths), (second, _) = results  # type: ignore[misc]
    assert first == second and "eval.bpb_prose/bpb" in first  # same weights, same numbers
    assert Path(first_paths["hf_dir"]).is_relative_to(tmp_path / "a")

    missing = ray.get(trial.remote(str(tmp_path / "nowhere"), str(sweep_corpus)))
    assert isinstance(missing, str) and "\n" not in missing and str(tmp_path / "nowhere") in missing

    node = ray.get_runtime_context().get_node_id()
    service = ray.get_actor(eval_service.actor_name(node), namespace=eval_service.NAMESPACE)
    info = ray.get(service.info.remote())
    assert info["starts"] == 1 and info["evaluations"] == 3 and info["node_id"] == node
    assert info["pid"] is not None

    assert eval_service.stop_node_services() == [eval_service.actor_name(node)]

    def left() -> list[dict[str, str]]:
        return [a for a in ray.util.list_named_actors(all_namespaces=True) if a["name"].startswith("mixsweep-eval-")]

    deadline = time.monotonic() + 30  # ray.kill is asynchronous: the name goes once the actor is dead
    while left() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not left()


def test_without_ray_a_local_worker_answers(sweep_corpus: Path, tmp_path: Path) -> None:
    assert not ray.is_initialized()
    with pytest.raises(EvaluationFailed) as err:
        eval_service.evaluate_on_node(tmp_path / "nowhere", str(sweep_corpus), TASKS, max_docs=4)
    assert "\n" not in str(err.value) and str(tmp_path / "nowhere") in str(err.value)
    worker = eval_service._local_worker()
    assert worker.pid is not None and worker.starts == 1  # kept for the next call
