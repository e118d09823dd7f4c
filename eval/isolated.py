"""A trial's evaluation in a process of its own: checkpoint -> Hugging Face (verified) -> LightEval.

LightEval changes process-wide state (autograd off, forked helpers) that must not leak into a
long-lived Ray worker, and a hung evaluation must end at `timeout_s` with a one-line error instead of
holding the trial forever. So the work runs in a child process (`python -m eval.isolated`) that
speaks JSON lines: one request per line on its stdin, one answer per line on a private copy of its
stdout (anything the libraries print goes to its stderr, a log file the parent reads after a crash).

- `EvalWorker` keeps that child alive across evaluations, so LightEval's import (~10-15 s) is paid
  once. A crash, an unexpected exception or a time limit ends the child (killed with its process
  group); the call raises the one-line `EvaluationFailed` and the next call starts a fresh child.
  An error in the input (a `MixSweepError`: no checkpoint, unknown task) leaves it running.
- `evaluate_checkpoint` is the one-shot form: a worker started for one evaluation and closed.

Both run the same job code, so their results are identical. Metric names are flat, MLflow-friendly
keys: `eval.<task>/<metric>` (with `_stderr` beside each), `eval.agg.<aggregate>`, `eval.objective`.
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import signal
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from eval.evaluate import EvalOptions, evaluate
from eval.tasks.local import LocalTaskOptions
from mixture_search.errors import MixSweepError
from mixture_search.keys import metric_key
from trainers.data import Corpus

DEFAULT_TIMEOUT_S = 1800.0
ROOT = Path(__file__).resolve().parent.parent
QUIET_ENV = {"TOKENIZERS_PARALLELISM": "false", "HF_HUB_DISABLE_PROGRESS_BARS": "1", "LIGHTEVAL_DISABLE_TQDM": "1"}


class EvaluationFailed(MixSweepError):
    """The evaluation process failed or ran past its time limit."""


# -- the jobs (run in the child) ---------------------------------------------------------------------
def flat_metrics(result: Any) -> dict[str, float]:
    """An `EvalResult`'s numbers as MLflow keys."""
    metrics = {f"eval.{metric_key(k)}": float(v) for k, v in result.metrics.items()}
    metrics.update({f"eval.agg.{metric_key(k)}": float(v) for k, v in result.aggregates.items()})
    if result.objective is not None:
        metrics["eval.objective"] = float(result.objective)
    return metrics


def checkpoint_job(checkpoint: str, corpus: str, tasks: list[str], max_docs: int) -> dict[str, Any]:
    """The trial's step: convert `checkpoint` (beside it, `hf/`) and evaluate it on `tasks`."""
    # lazy: the conversion imports torch (seconds), which the child loads once and the sweep's driver,
    # which imports this module to start the child, never needs
    from eval.convert import to_hf

    hf_dir = Path(checkpoint).parent / "hf"
    report = to_hf(Path(checkpoint), hf_dir, tokenizer=Corpus.load(corpus).tokenizer_dir)
    result = evaluate(
        hf_dir, list(tasks), corpus=corpus, options=EvalOptions(local=LocalTaskOptions(max_docs=max_docs))
    )
    metrics = flat_metrics(result)
    if isinstance(report.max_abs_diff, (int, float)):
        metrics["eval.convert_max_abs_diff"] = float(report.max_abs_diff)
    return {"metrics": metrics, "paths": {"hf_dir": str(hf_dir), "eval_json": str(result.results_path)}}


def model_job(
    hf_dir: str, tasks: list[str], heldout: str, max_docs: int, batch_size: int, out_dir: str, force: bool
) -> dict[str, Any]:
    """An already converted model on local tasks over a held-out folder (benchmarks/eval.py)."""
    options = EvalOptions(batch_size=batch_size, local=LocalTaskOptions(max_docs=max_docs))
    result = evaluate(hf_dir, list(tasks), heldout=heldout, out_dir=out_dir, options=options, force=force)
    return {"metrics": flat_metrics(result), "paths": {"hf_dir": hf_dir, "eval_json": str(result.results_path)}}


JOBS: dict[str, Callable[..., dict[str, Any]]] = {"checkpoint": checkpoint_job, "model": model_job}


def preload() -> None:
    """What every evaluation imports, loaded before the child says it is ready."""
    # lazy: these are the ~10-15 s the long-lived worker exists to pay once
    import lighteval.models.transformers.transformers_model
    import lighteval.pipeline  # noqa: F401

    from eval import runner  # imports lighteval: in the worker only, as above

    runner.go_offline()
    runner._classes()


def serve(requests: IO[str], answers: IO[str], *, warm: bool) -> None:
    """Answer JSON-line requests until stdin closes; an unexpected exception ends the process after
    its answer (the state it leaves is unknown)."""
    started = time.perf_counter()
    if warm:
        preload()
    answers.write(json.dumps({"ready": True, "pid": os.getpid(), "start_s": time.perf_counter() - started}) + "\n")
    answers.flush()
    for line in requests:
        if not line.strip():
            continue
        request = json.loads(line)
        fatal = False
        try:
            answer = {"ok": True, "result": JOBS[request["job"]](**request["args"])}
        except MixSweepError as exc:  # names its field or file already
            answer = {"ok": False, "error": str(exc)}
        except Exception as exc:
            answer = {"ok": False, "error": traceback.format_exception_only(exc)[-1].strip(), "fatal": True}
            fatal = True
        answers.write(json.dumps(answer) + "\n")
        answers.flush()
        if fatal:
            sys.exit(3)


def main() -> None:
    answers = os.fdopen(os.dup(1), "w", buffering=1, encoding="utf-8")
    os.dup2(2, 1)  # what libraries print goes to the log, never into the answers
    serve(sys.stdin, answers, warm="--warm" in sys.argv[1:])


# -- the parent side ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class _Child:
    proc: subprocess.Popen[bytes]
    log: Path


class EvalWorker:
    """A long-lived evaluation process (module doc). Thread-safe: calls take turns."""

    def __init__(self, *, warm: bool = True, env: dict[str, str] | None = None) -> None:
        self._warm = warm
        self._env = {**os.environ, **QUIET_ENV, **(env or {})}
        self._child: _Child | None = None
        self._buffer = b""
        self._lock = threading.Lock()
        self.starts = 0  # children started so far (a restart after a failure adds one)
        self.start_s: float | None = None  # wall seconds the last start took, up to ready

    @property
    def pid(self) -> int | None:
        return self._child.proc.pid if self._child is not None else None

    def start(self, timeout_s: float = DEFAULT_TIMEOUT_S) -> float:
        """Start the child now (else the first evaluation does); wall seconds until it was ready."""
        with self._lock:
            self._ensure(time.monotonic() + timeout_s, where="evaluation worker", timeout_s=timeout_s)
        assert self.start_s is not None
        return self.start_s

    def evaluate_checkpoint(
        self,
        checkpoint: Path,
        corpus: str,
        tasks: Sequence[str],
        *,
        max_docs: int,
        timeout_s: float = DEFAULT_TIMEOUT_S,
    ) -> tuple[dict[str, float], dict[str, str]]:
        """Convert + evaluate `checkpoint`; (metrics, paths)."""
        args = {"checkpoint": str(checkpoint), "corpus": str(corpus), "tasks": list(tasks), "max_docs": max_docs}
        out = self.call("checkpoint", args, where=str(checkpoint), timeout_s=timeout_s)
        return out["metrics"], out["paths"]

    def call(self, job: str, args: dict[str, Any], *, where: str, timeout_s: float) -> dict[str, Any]:
        """Run `JOBS[job](**args)` in the child within `timeout_s` (a start included)."""
        deadline = time.monotonic() + timeout_s
        with self._lock:
            child = self._ensure(deadline, where=where, timeout_s=timeout_s)
            child.log.write_bytes(b"")  # the log holds this evaluation only
            assert child.proc.stdin is not None
            try:
                child.proc.stdin.write((json.dumps({"job": job, "args": args}) + "\n").encode())
                child.proc.stdin.flush()
            except BrokenPipeError:
                pass  # it died; reading says how
            answer = self._read(child, deadline, where=where, timeout_s=timeout_s)
            if answer.get("fatal"):
                self._stop()
            if not answer["ok"]:
                raise EvaluationFailed(answer["error"])
            result: dict[str, Any] = answer["result"]
            return result

    def close(self) -> None:
        with self._lock:
            self._stop()

    def __enter__(self) -> EvalWorker:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- internals
    def _ensure(self, deadline: float, *, where: str, timeout_s: float) -> _Child:
        if self._child is not None and self._child.proc.poll() is None:
            return self._child
        self._stop()
        started = time.perf_counter()
        fd, log_name = tempfile.mkstemp(prefix="mixsweep-eval-worker-", suffix=".log")
        os.close(fd)
        log = Path(log_name)
        with log.open("ab") as log_fh:  # append mode: emptying the file between calls leaves no hole
            proc = subprocess.Popen(
                [sys.executable, "-m", "eval.isolated", *(["--warm"] if self._warm else [])],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=log_fh,
                cwd=ROOT,
                env=self._env,
                start_new_session=True,  # its own process group: a kill takes LightEval's helpers too
            )
        self._child, self._buffer = _Child(proc, log), b""
        self.starts += 1
        self._read(self._child, deadline, where=where, timeout_s=timeout_s)
        self.start_s = time.perf_counter() - started
        return self._child

    def _read(self, child: _Child, deadline: float, *, where: str, timeout_s: float) -> dict[str, Any]:
        assert child.proc.stdout is not None
        fd = child.proc.stdout.fileno()
        while b"\n" not in self._buffer:
            left = deadline - time.monotonic()
            if left <= 0:
                self._stop()
                raise EvaluationFailed(f"evaluation ran past {timeout_s:g} s", where=where)
            ready, _, _ = select.select([fd], [], [], left)
            if not ready:
                continue
            chunk = os.read(fd, 1 << 16)
            if not chunk:  # the child is gone
                code = child.proc.wait()
                last = _last_line(child.log) or f"exit code {code}"
                self._stop()
                raise EvaluationFailed(last, where=where)
            self._buffer += chunk
        line, _, self._buffer = self._buffer.partition(b"\n")
        answer: dict[str, Any] = json.loads(line)
        return answer

    def _stop(self) -> None:
        child, self._child, self._buffer = self._child, None, b""
        if child is None:
            return
        if child.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):  # it ended meanwhile
                os.killpg(child.proc.pid, signal.SIGKILL)
        child.proc.wait()
        for pipe in (child.proc.stdin, child.proc.stdout):
            if pipe is not None:
                with contextlib.suppress(OSError):  # a pipe to a killed child
                    pipe.close()
        child.log.unlink(missing_ok=True)


def _last_line(log: Path) -> str | None:
    try:
        lines = [line for line in log.read_text(encoding="utf-8", errors="replace").splitlines() if line.strip()]
    except OSError:
        return None
    return lines[-1].strip() if lines else None


def evaluate_checkpoint(
    checkpoint: Path, corpus: str, tasks: Sequence[str], *, max_docs: int, timeout_s: float = DEFAULT_TIMEOUT_S
) -> tuple[dict[str, float], dict[str, str]]:
    """Convert + evaluate `checkpoint` in a fresh process, closed afterwards; (metrics, paths)."""
    with EvalWorker(warm=False) as worker:
        return worker.evaluate_checkpoint(checkpoint, corpus, tasks, max_docs=max_docs, timeout_s=timeout_s)


if __name__ == "__main__":
    main()
