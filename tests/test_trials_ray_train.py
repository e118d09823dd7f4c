"""A multi-process trial: Ray Tune runs the trial, a Ray Train TorchTrainer runs 2 gloo workers, each
calling the trainers' distributed entry point; the result equals what one process computes."""

from __future__ import annotations

from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from flows.steps.spec import ResourcesSpec
from flows.trials.result import TrialContext, TrialPlan
from flows.trials.tune import RoundOptions, run_round
from mixture_search.mixture import Mixture
from trainers.budget import TrainBudget
from trainers.data import Corpus
from trainers.presets import tiny_cpu
from trainers.result import TrainResult
from trainers.train import RESULT_FILE, train

pytestmark = [pytest.mark.integration, pytest.mark.slow]

PROXY = tiny_cpu(seq_len=32)
BUDGET = TrainBudget(steps=4, micro_batch=1, global_batch=2, eval_interval=2, eval_windows_per_domain=2)


@pytest.mark.timeout(480)
def test_two_ray_train_workers_match_one_process(sweep_corpus: Path, mlflow_server: str, tmp_path: Path) -> None:
    import ray

    domains = Corpus.load(sweep_corpus).domains
    mixture = Mixture([(d, float(i + 1)) for i, d in enumerate(domains)])
    client = MlflowClient(mlflow_server)
    exp = client.create_experiment("ray-train-2-workers")
    run_id = client.create_run(exp).info.run_id
    ctx = TrialContext(
        corpus=str(sweep_corpus),
        domains=domains,
        proxy=PROXY,
        budget=BUDGET,
        backend="megatron",
        trials_dir=str(tmp_path / "trials"),
        tracking_uri=mlflow_server,
        resources=ResourcesSpec(workers=2, cpus=0.9),  # the trial itself holds 0.01 CPU: 2 x 0.9 + 0.01 fits in 2
    )
    plan = TrialPlan("k" * 16, mixture, run_id, round=0, sampler="test")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    try:
        [result] = run_round([plan], ctx, RoundOptions(storage=tmp_path / "ray", name="two-workers"))
    finally:
        ray.shutdown()

    assert result.status == "finished", result.error
    stored = TrainResult.load(Path(result.paths["run_dir"]) / RESULT_FILE)
    assert stored.world["world_size"] == 2 and stored.world["dp"] == 2
    single = train(mixture, sweep_corpus, PROXY, BUDGET, "megatron", tmp_path / "single")
    assert single.world["world_size"] == 1
    assert stored.loss_curve == pytest.approx(single.loss_curve, rel=1e-4)  # data parallel = one process
    assert result.metrics["val.loss.mean"] == pytest.approx(single.final.mean_loss, rel=1e-4)
    history = client.get_metric_history(run_id, "val.loss.mean")
    assert [m.step for m in history] == [2, 4]  # rank 0 logged each evaluation
