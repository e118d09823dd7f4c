"""The evaluation step of a trial: convert the checkpoint to Hugging Face (verified) and run LightEval.

Metric names become flat MLflow-friendly keys: `eval.<task>/<metric>` (with `_stderr` beside each),
`eval.agg.<aggregate>` and `eval.objective`.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from flows.tracking import mlflow_key


def evaluate_checkpoint(
    checkpoint: Path, corpus: str, tasks: Sequence[str], *, max_docs: int
) -> tuple[dict[str, float], dict[str, str]]:
    from eval.convert import to_hf
    from eval.evaluate import EvalOptions, evaluate
    from eval.tasks.local import LocalTaskOptions
    from trainers.data import Corpus

    hf_dir = Path(checkpoint).parent / "hf"
    report = to_hf(checkpoint, hf_dir, tokenizer=Corpus.load(corpus).tokenizer_dir)  # the model folder is complete
    result = evaluate(
        hf_dir, list(tasks), corpus=corpus, options=EvalOptions(local=LocalTaskOptions(max_docs=max_docs))
    )
    metrics = {f"eval.{mlflow_key(k)}": float(v) for k, v in result.metrics.items()}
    metrics.update({f"eval.agg.{mlflow_key(k)}": float(v) for k, v in result.aggregates.items()})
    if result.objective is not None:
        metrics["eval.objective"] = float(result.objective)
    max_diff = getattr(report, "max_abs_diff", None)
    if isinstance(max_diff, (int, float)):
        metrics["eval.convert_max_abs_diff"] = float(max_diff)
    return metrics, {"hf_dir": str(hf_dir), "eval_json": str(result.results_path)}
