"""The surrogate's cross-validation in a process of its own (`python -m flows.steps.cv_process`).

At the end of a round the flow runs the CV beside the proposal, the ranking and the plots. In a thread
of the sweep's process the two took turns on the interpreter lock: after the 8 trials of
`benchmarks/sweep.py`'s spec (40 steps each, two sweeps) the process used 9.0-9.2 CPU seconds in 8.5-8.6 s
of wall time, one core, while the machine's other core stood idle. A child process runs the CV on that
core instead: those stages took 6.3-7.0 s, with the sweep's process using 4.4-4.9 CPU seconds.

The child is a fresh interpreter (`sys.executable -m`), not a `multiprocessing` one: those import the
parent's `__main__` again (the command, or a user's script, which may not guard its call of the flow),
and a forked copy of a process with Ray's, Prefect's and OpenMP's threads can hang. It imports only
the surrogates (about 2 s with scikit-learn and LightGBM), rebuilds the surrogate from its spec, runs
the same call with one BLAS thread as the sweep's process does, and so returns the same figures. The
job and the answer travel as JSON (floats written by `repr` read back to the same bits; the project
unpickles nothing): the job on the child's stdin, the answer in a file, since LightGBM and others print
to stdout.
"""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

from flows.steps.threads import one_blas_thread
from mixture_search.surrogates import CVResult, Surrogate, cross_validate_predictions
from mixture_search.surrogates.persist import build

ROOT = Path(__file__).resolve().parent.parent.parent


def cross_validate_in_process(
    model: Surrogate, X: np.ndarray, y: np.ndarray, *, folds: int, seed: int
) -> tuple[CVResult, np.ndarray]:
    """`cross_validate_predictions(model, X, y, folds=folds, seed=seed)`, computed in a child process
    (`model` is a registered surrogate, sent as its spec). A child that fails raises a one-line
    `RuntimeError` with its exception, or for a crash the last line it wrote to stderr."""
    job = {
        "model": model.spec(),
        "X": np.asarray(X).tolist(),
        "y": np.asarray(y).tolist(),
        "folds": folds,
        "seed": seed,
    }
    with tempfile.TemporaryDirectory(prefix="mixsweep-cv-") as tmp:
        answer = Path(tmp) / "answer.json"
        proc = subprocess.run(
            [sys.executable, "-m", "flows.steps.cv_process", str(answer)],
            input=json.dumps(job).encode(),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            cwd=ROOT,
            check=False,
        )
        if proc.returncode != 0 or not answer.is_file():
            said = _error_file(answer)  # the child's exception, else (a crash) its last line on stderr
            tail = proc.stderr.decode(errors="replace").strip().splitlines()[-1:] or ["no message"]
            message = " ".join((said.read_text() if said.is_file() else tail[0]).split())
            raise RuntimeError(f"the surrogate's cross-validation process failed (exit {proc.returncode}): {message}")
        done = json.loads(answer.read_text())
        return CVResult(**done["cv"]), np.asarray(done["oof"], dtype=np.float64)


def _error_file(answer: Path) -> Path:
    """Where the child tells its exception: beside the answer it could not give."""
    return answer.with_name(f"{answer.name}.error")


def main() -> None:
    answer = Path(sys.argv[1])
    try:
        one_blas_thread()
        job = json.load(sys.stdin)
        X, y = np.asarray(job["X"], dtype=np.float64), np.asarray(job["y"], dtype=np.float64)
        cv, oof = cross_validate_predictions(build(job["model"]), X, y, folds=job["folds"], seed=job["seed"])
    except Exception as exc:  # told to the parent in its own words; the traceback stays on stderr
        _error_file(answer).write_text(f"{type(exc).__name__}: {exc}")
        raise
    answer.write_text(json.dumps({"cv": dataclasses.asdict(cv), "oof": np.asarray(oof).tolist()}))


if __name__ == "__main__":
    main()


__all__ = ["cross_validate_in_process"]
