"""LightEval in-process and offline, with only our task modules.

LightEval's `Registry` imports every built-in task module to build its table, and some of them reach
the network at import time (or break with this stack's huggingface_hub). `LocalRegistry` holds only
the task configs we hand it; `LocalPipeline` is LightEval's `Pipeline` with that registry and nothing
else changed, so model loading, batching, metrics and result aggregation are LightEval's own.

LightEval caches model responses under `cache_dir/<model path>/<config hash>`: keyed by the path,
not the weights, so a new checkpoint converted to the same folder would be answered from the old
one's cache. Every run gets a fresh temporary cache, deleted afterwards; reuse of finished results is
done one level up, keyed by the weights' fingerprint (`eval.evaluate`).
"""

from __future__ import annotations

import collections
import contextlib
import os
import shutil
import tempfile
import types
from collections.abc import Iterator
from pathlib import Path
from typing import Any

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
    import torch

    enabled = torch.is_grad_enabled()
    try:
        yield
    finally:
        torch.set_grad_enabled(enabled)


def _classes() -> tuple[type, type]:
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
        """LightEval's pipeline whose task registry is a `LocalRegistry`."""

        def __init__(self, *args: Any, module: types.ModuleType, **kwargs: Any) -> None:
            self._local_module = module
            super().__init__(*args, **kwargs)

        def _init_tasks_and_requests(self, tasks: str) -> None:  # mirrors Pipeline's, registry swapped
            self.registry = LocalRegistry(tasks, self._local_module)
            self.tasks_dict = self.registry.load_tasks()
            LightevalTask.load_datasets(self.tasks_dict, self.pipeline_parameters.dataset_loading_processes)
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
) -> dict[str, Any]:
    """Evaluate the model in `hf_dir` (with `tokenizer`, default the folder's own) on `task_spec`
    ("name|shots,...") from `configs`; LightEval's
    results dict (`results`, `versions`, ...) plus `docs`: documents evaluated per task."""
    with _grad_mode_kept():
        return _run(hf_dir, configs, task_spec, tokenizer, batch_size, max_samples, device, seed)


def _run(
    hf_dir: Path,
    configs: list[Any],
    task_spec: str,
    tokenizer: Path | None,
    batch_size: int,
    max_samples: int | None,
    device: str,
    seed: int,
) -> dict[str, Any]:
    go_offline()
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
        import random

        import numpy as np
        import torch

        random.seed(seed)
        np.random.seed(seed)
        torch.manual_seed(seed)
        with _one_process():
            pipeline = LocalPipeline(task_spec, params, tracker, model_config=model_config, module=module)
            pipeline.evaluate()
            results: dict[str, Any] = pipeline.get_results()
        results["docs"] = {name.rsplit("|", 1)[0]: len(docs) for name, docs in pipeline.documents_dict.items()}
        return results
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
