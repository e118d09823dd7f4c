"""The evaluation step of a trial: convert the checkpoint to Hugging Face (verified) and run LightEval.

It runs in a fresh Python process (`python -m flows.evaluation`): LightEval changes process-wide
state (autograd off, forked helpers) that must not leak into a long-lived Ray worker, and a hung
evaluation ends at `timeout_s` with a one-line error instead of holding the trial forever.

Metric names become flat MLflow-friendly keys: `eval.<task>/<metric>` (with `_stderr` beside each),
`eval.agg.<aggregate>` and `eval.objective`.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from mixture_search.errors import MixSweepError
from mixture_search.keys import metric_key as mlflow_key

DEFAULT_TIMEOUT_S = 1800.0
_ERROR = "evaluation error: "


class EvaluationFailed(MixSweepError):
    """The evaluation process failed or ran past its time limit."""


def evaluate_checkpoint(
    checkpoint: Path, corpus: str, tasks: Sequence[str], *, max_docs: int, timeout_s: float = DEFAULT_TIMEOUT_S
) -> tuple[dict[str, float], dict[str, str]]:
    """Convert + evaluate `checkpoint` in a fresh process; (metrics, paths)."""
    job = {"checkpoint": str(checkpoint), "corpus": str(corpus), "tasks": list(tasks), "max_docs": max_docs}
    env = {**os.environ, "TOKENIZERS_PARALLELISM": "false"}
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "flows.evaluation", json.dumps(job)],
            capture_output=True,
            text=True,
            timeout=timeout_s,
            env=env,
            cwd=Path(__file__).resolve().parent.parent,
        )
    except subprocess.TimeoutExpired:
        raise EvaluationFailed(f"evaluation ran past {timeout_s:g} s", where=str(checkpoint)) from None
    if proc.returncode != 0:
        lines = [line for line in proc.stderr.strip().splitlines() if line.strip()]
        last = lines[-1] if lines else f"exit code {proc.returncode}"
        if last.startswith(_ERROR):  # one of ours: it names its field or file already
            raise EvaluationFailed(last.removeprefix(_ERROR))
        raise EvaluationFailed(last, where=str(checkpoint))
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    return out["metrics"], out["paths"]


def _evaluate_here(job: dict[str, Any]) -> dict[str, Any]:
    from eval.convert import to_hf
    from eval.evaluate import EvalOptions, evaluate
    from eval.tasks.local import LocalTaskOptions
    from trainers.data import Corpus

    checkpoint, corpus = Path(job["checkpoint"]), str(job["corpus"])
    hf_dir = checkpoint.parent / "hf"
    report = to_hf(checkpoint, hf_dir, tokenizer=Corpus.load(corpus).tokenizer_dir)  # the model folder is complete
    result = evaluate(
        hf_dir, list(job["tasks"]), corpus=corpus, options=EvalOptions(local=LocalTaskOptions(max_docs=job["max_docs"]))
    )
    metrics = {f"eval.{mlflow_key(k)}": float(v) for k, v in result.metrics.items()}
    metrics.update({f"eval.agg.{mlflow_key(k)}": float(v) for k, v in result.aggregates.items()})
    if result.objective is not None:
        metrics["eval.objective"] = float(result.objective)
    max_diff = getattr(report, "max_abs_diff", None)
    if isinstance(max_diff, (int, float)):
        metrics["eval.convert_max_abs_diff"] = float(max_diff)
    return {"metrics": metrics, "paths": {"hf_dir": str(hf_dir), "eval_json": str(result.results_path)}}


if __name__ == "__main__":
    try:
        print(json.dumps(_evaluate_here(json.loads(sys.argv[1]))))
    except MixSweepError as exc:
        print(f"{_ERROR}{exc}", file=sys.stderr)
        sys.exit(2)
