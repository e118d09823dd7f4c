"""LightEval in-process and offline, with only our task modules.

LightEval's `Registry` imports every built-in task module to build its table, and some of them reach
the network at import time (or break with this stack's huggingface_hub). `LocalRegistry` holds only
the task configs we hand it; `LocalPipeline` is LightEval's `Pipeline` with that registry, so model
loading, batching, metrics and result aggregation are LightEval's own.

Three of LightEval's steps cost more than the model's forward passes on a proxy, and are replaced by
in-memory equivalents that give the same numbers bit for bit (tests/test_eval_worker.py compares):

- The sample cache: every response is written to a parquet file under `cache_dir` and read back
  through pandas' JSON writer, which rounds each log-probability to 10 decimals. We never reuse that
  cache (it is keyed by the model's path, not its weights: a new checkpoint converted to the same
  folder would be answered from the old one's cache), so responses stay in memory and pass through
  the same pandas JSON rounding (`_as_cache_returns`); the figures on record were computed that way.
- Local tasks' data: one `test.jsonl` we wrote, read with `json` instead of a `datasets` builder
  (which resolves patterns, infers a schema and writes an Arrow cache for it on every run).
- Bootstrap stderr: LightEval forks a `multiprocessing.Pool` for each metric's 1000 resamples; the
  same resamples (same seeded draws, same order) are computed in this process. Forked helpers were
  one of the reasons evaluation runs in a process of its own.

Reuse of finished results is done one level up, keyed by the weights' fingerprint (`eval.evaluate`).
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import json
import os
import random
import shutil
import tempfile
import types
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

OFFLINE_ENV = {
    "HF_HUB_OFFLINE": "1",
    "HF_DATASETS_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "HF_HUB_DISABLE_TELEMETRY": "1",
}


def go_offline() -> None:
    """Offline for the Hugging Face libraries, also when they were imported before (their switches
    are read at import)."""
    for key, value in OFFLINE_ENV.items():
        os.environ.setdefault(key, value)
    # lazy: datasets and huggingface_hub take seconds to import; only an evaluation needs them
    import datasets.config
    import huggingface_hub.constants

    huggingface_hub.constants.HF_HUB_OFFLINE = True
    if hasattr(datasets.config, "HF_HUB_OFFLINE"):
        datasets.config.HF_HUB_OFFLINE = True
    if hasattr(datasets.config, "HF_DATASETS_OFFLINE"):
        datasets.config.HF_DATASETS_OFFLINE = True


# A launcher's variables (torchrun, Ray Train, DeepSpeed) make LightEval's `Accelerator` try to join a
# process group; evaluation is one process, so they are hidden while it runs.
_LAUNCHER_ENV = ("RANK", "LOCAL_RANK", "WORLD_SIZE", "LOCAL_WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT", "GROUP_RANK")


@contextlib.contextmanager
def _one_process() -> Iterator[None]:
    saved = {k: os.environ.pop(k) for k in _LAUNCHER_ENV if k in os.environ}
    try:
        yield
    finally:
        os.environ.update(saved)


@contextlib.contextmanager
def _grad_mode_kept() -> Iterator[None]:
    """LightEval turns autograd off for the whole process (`torch.set_grad_enabled(False)` when its
    transformers model module is imported); an evaluation inside a training process must not."""
    import torch  # lazy: seconds to import, and `import eval.runner` must stay cheap

    enabled = torch.is_grad_enabled()
    try:
        yield
    finally:
        torch.set_grad_enabled(enabled)


@contextlib.contextmanager
def _bootstrap_in_process() -> Iterator[None]:
    """LightEval's bootstrap stderr with its resamples computed here instead of in a forked pool."""
    from lighteval.metrics.utils import stderr  # lazy: LightEval takes ~10 s to import

    pooled = stderr._bootstrap_internal

    class InProcess(pooled):  # type: ignore[misc, valid-type]
        def __call__(self, cur_experiment: tuple[list[Any], int]) -> list[Any]:
            population, seed = cur_experiment
            rnd = random.Random()
            rnd.seed(seed)  # the draws LightEval makes, in its order
            draws = [rnd.choices(population, k=len(population)) for _ in range(self.number_draws)]
            return [self.metric(draw) for draw in draws]

    setattr(stderr, "_bootstrap_internal", InProcess)  # noqa: B010 (a class attribute mypy will not let us assign)
    try:
        yield
    finally:
        setattr(stderr, "_bootstrap_internal", pooled)  # noqa: B010


def _plain(value: Any) -> Any:
    if hasattr(value, "tolist"):  # tensors and arrays, as Arrow stores them
        return value.tolist()
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def _as_cache_returns(responses: list[Any]) -> list[Any]:
    """`responses` as LightEval's sample cache returns them: plain lists, log-probabilities through
    pandas' JSON writer (10 decimals), which is what `get_samples_from_cache` reads them back with."""
    if not responses:
        return responses
    import pandas as pd  # lazy: imported by LightEval anyway, heavy for `import eval.runner`

    rows = [{f.name: _plain(getattr(r, f.name)) for f in dataclasses.fields(r)} for r in responses]
    back = json.loads(pd.Series(rows, dtype=object).to_json(orient="values"))
    return [type(r)(**row) for r, row in zip(responses, back)]


def _read_jsonl_splits(folder: str, splits: list[str]) -> dict[str, list[dict[str, Any]]]:
    out = {}
    for split in splits:
        text = (Path(folder) / f"{split}.jsonl").read_text(encoding="utf-8")
        out[split] = [json.loads(line) for line in text.splitlines() if line.strip()]
    return out


def _classes() -> tuple[type, type]:
    # lazy: LightEval takes ~10 s to import
    from lighteval.pipeline import Pipeline
    from lighteval.tasks.lighteval_task import LightevalTask
    from lighteval.tasks.registry import Registry

    class LocalRegistry(Registry):
        """A registry of exactly the configs in `module.TASKS_TABLE` (no built-in task imports)."""

        def __init__(self, tasks: str, module: types.ModuleType) -> None:
            self.tasks_list = self._get_full_task_list_from_input_string(tasks)
            self._load_multilingual = False
            self._custom_tasks = module
            self._task_registry = Registry._extract_configs(module)
            self.task_to_configs = self._update_task_configs()

    class LocalPipeline(Pipeline):
        """LightEval's pipeline whose task registry is a `LocalRegistry`; tasks named in `jsonl_tasks`
        read their split files with `json`; responses and stderr are computed in memory (module doc)."""

        def __init__(self, *args: Any, module: types.ModuleType, jsonl_tasks: frozenset[str], **kwargs: Any) -> None:
            self._local_module = module
            self._jsonl_tasks = jsonl_tasks
            super().__init__(*args, **kwargs)

        def _init_tasks_and_requests(self, tasks: str) -> None:  # mirrors Pipeline's, registry swapped
            self.registry = LocalRegistry(tasks, self._local_module)
            self.tasks_dict = self.registry.load_tasks()
            hub = {name: task for name, task in self.tasks_dict.items() if task.name not in self._jsonl_tasks}
            LightevalTask.load_datasets(hub, self.pipeline_parameters.dataset_loading_processes)
            for task in self.tasks_dict.values():
                if task.name in self._jsonl_tasks:
                    task.dataset = _read_jsonl_splits(task.dataset_path, task.evaluation_split)
            self.documents_dict = {
                task.full_name: task.get_docs(self.pipeline_parameters.max_samples) for task in self.tasks_dict.values()
            }
            self.sampling_docs = collections.defaultdict(list)
            for docs in self.documents_dict.values():
                for doc in docs:
                    for sampling in doc.sampling_methods:
                        self.sampling_docs[sampling].append(doc)
            if self._metric_options:
                self._update_num_samples(list(self.tasks_dict.values()))
            self.evaluation_tracker.task_config_logger.log(self.tasks_dict)

        def _run_model(self) -> dict[Any, list[Any]]:
            self.model._cache = None  # LightEval's `cached` runs the model directly when there is none
            outputs: dict[Any, list[Any]] = super()._run_model()
            return {method: _as_cache_returns(responses) for method, responses in outputs.items()}

        def evaluate(self) -> None:
            with _bootstrap_in_process():
                super().evaluate()

    return LocalRegistry, LocalPipeline


def run(
    hf_dir: Path,
    configs: list[Any],
    task_spec: str,
    *,
    tokenizer: Path | None = None,
    batch_size: int = 16,
    max_samples: int | None = None,
    device: str = "cpu",
    seed: int = 1234,
    jsonl_tasks: frozenset[str] = frozenset(),
) -> dict[str, Any]:
    """Evaluate the model in `hf_dir` (with `tokenizer`, default the folder's own) on `task_spec`
    ("name|shots,...") from `configs`; LightEval's results dict (`results`, `versions`, ...) plus
    `docs`: documents evaluated per task. `jsonl_tasks`: names of tasks whose data is one
    `<split>.jsonl` per evaluation split in their `hf_repo` folder (read without `datasets`)."""
    with _grad_mode_kept():
        return _run(hf_dir, configs, task_spec, tokenizer, batch_size, max_samples, device, seed, jsonl_tasks)


def _run(
    hf_dir: Path,
    configs: list[Any],
    task_spec: str,
    tokenizer: Path | None,
    batch_size: int,
    max_samples: int | None,
    device: str,
    seed: int,
    jsonl_tasks: frozenset[str],
) -> dict[str, Any]:
    go_offline()
    # lazy: LightEval (~10 s) and torch (seconds) load only when an evaluation runs
    import torch
    from lighteval.logging.evaluation_tracker import EvaluationTracker
    from lighteval.models.transformers.transformers_model import TransformersModelConfig
    from lighteval.pipeline import ParallelismManager, PipelineParameters

    _, LocalPipeline = _classes()
    module = types.ModuleType("mixsweep_eval_tasks")
    module.TASKS_TABLE = configs  # type: ignore[attr-defined]
    scratch = Path(tempfile.mkdtemp(prefix="mixsweep-lighteval-"))
    try:
        model_config = TransformersModelConfig(
            model_name=str(hf_dir),
            tokenizer=str(tokenizer) if tokenizer is not None else None,
            device=device,
            dtype="float32",
            batch_size=batch_size,
            cache_dir=str(scratch / "cache"),
        )
        tracker = EvaluationTracker(output_dir=str(scratch / "out"), save_details=False)
        params = PipelineParameters(launcher_type=ParallelismManager.NONE, max_samples=max_samples)
        random.seed(seed)
        np.random.seed(seed)
        torch.manual_seed(seed)
        with _one_process():
            pipeline = LocalPipeline(
                task_spec, params, tracker, model_config=model_config, module=module, jsonl_tasks=jsonl_tasks
            )
            pipeline.evaluate()
            results: dict[str, Any] = pipeline.get_results()
        results["docs"] = {name.rsplit("|", 1)[0]: len(docs) for name, docs in pipeline.documents_dict.items()}
        return results
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


__all__ = ["OFFLINE_ENV", "go_offline", "run"]
