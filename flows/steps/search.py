"""The search side of a sweep's rounds: which candidates a round trains (`suggest_candidates`), the
samplers' saved state (`SearchState`, so a rerun continues identically), and the surrogate's
cross-validation of the observations so far (`cross_validate_cached`, keyed by its inputs)."""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from flows.steps.cv_process import cross_validate_in_process
from flows.steps.prepare import Prepared
from flows.trials.result import TrialResult
from mixture_search import SAMPLERS, SURROGATES, Observation, Sampler
from mixture_search.files import atomic_write_json
from mixture_search.keys import content_key
from mixture_search.mixture import Mixture


@dataclass
class SearchState:
    """Candidates of each round and each sampler's state: what a rerun needs to continue identically."""

    path: Path
    rounds: list[dict[str, Any]] = field(default_factory=list)
    samplers: dict[str, dict[str, Any]] = field(default_factory=dict)

    @classmethod
    def load(cls, path: Path) -> SearchState:
        if path.exists():
            data = json.loads(path.read_text())
            return cls(path, data.get("rounds", []), data.get("samplers", {}))
        return cls(path)

    def save(self) -> None:
        atomic_write_json(self.path, {"rounds": self.rounds, "samplers": self.samplers}, indent=None)


def suggest_candidates(
    prepared: Prepared, state: SearchState, round_: int, results: dict[str, TrialResult]
) -> tuple[str, list[Mixture]]:
    """(sampler name, candidates) of a round: planned again from the saved state when the round was
    planned before an interruption, else asked of the round's sampler (and the state saved). The first
    round starts with the sweep's anchors (`Prepared.anchors`), in place of as many sampled candidates."""
    if round_ < len(state.rounds):
        entry = state.rounds[round_]
        return entry["sampler"], [Mixture([(n, w) for n, w in c]) for c in entry["candidates"]]
    name, sampler = sampler_for(prepared, state, round_, results)
    anchors = [m for _, m in prepared.anchors] if round_ == 0 else []
    candidates = [*anchors, *sampler.suggest(prepared.spec.search.per_round - len(anchors))]
    state.samplers[name] = {"state": sampler.state(), "observed": state.samplers.get(name, {}).get("observed", [])}
    state.rounds.append({"sampler": name, "candidates": [list(map(list, c.pairs)) for c in candidates]})
    state.save()
    return name, candidates


def candidate_label(prepared: Prepared, mixture: Mixture, sampler: str) -> str:
    """What a candidate's trial is tagged with (`sampler` in MLflow and the leaderboard): `anchor:<name>`
    for an anchor of the sweep, else the round's sampler."""
    return next((f"anchor:{name}" for name, m in prepared.anchors if m.key == mixture.key), sampler)


def sampler_for(
    prepared: Prepared, state: SearchState, round_: int, results: dict[str, TrialResult]
) -> tuple[str, Sampler]:
    """The sampler of this round, restored from its saved state and told about every new result. It
    knows the objective's direction (an adaptive sampler moves toward higher values when maximizing)."""
    spec = prepared.spec.search
    adaptive = round_ > 0 and spec.adaptive is not None
    name = spec.adaptive if adaptive else spec.sampler
    assert name is not None
    options = {**(spec.adaptive_options if adaptive else spec.options), "maximize": prepared.spec.objective.maximize}
    sampler = SAMPLERS.build(name, space=prepared.space, seed=prepared.spec.seed, **options)
    saved = state.samplers.get(name)
    if saved:
        sampler.restore(saved["state"])
    observed = set(saved["observed"]) if saved else set()
    new = [r for r in results.values() if r.trial_key not in observed and set(r.mixture.names) == set(prepared.cells)]
    if new:
        sampler.observe([Observation(r.mixture, r.objective if r.ok else None, r.metrics) for r in new])
        state.samplers[name] = {"state": sampler.state(), "observed": sorted(observed | {r.trial_key for r in new})}
    return name, sampler


def observations(prepared: Prepared, results: list[TrialResult]) -> tuple[np.ndarray, np.ndarray]:
    """(X, y): the shares of the finished trials over the sweep's domains (with phases: its cells), and
    their objectives."""
    ok = [r for r in results if r.ok]
    cells = prepared.cells
    X = np.array([[r.mixture.share(d) for d in cells] for r in ok]).reshape(len(ok), len(cells))
    y = np.array([float(r.objective or 0.0) for r in ok])
    return X, y


@dataclass(frozen=True)
class CrossValidation:
    table: dict[str, Any]  # the surrogate's CV figures (rounded), as logged
    y: np.ndarray
    oof: np.ndarray  # out-of-fold predictions, aligned with y


def cross_validate_cached(prepared: Prepared, results: list[TrialResult]) -> CrossValidation | None:
    """The surrogate's k-fold CV on the finished trials (None below 4). The CV of the same observations is
    not recomputed on a rerun: it is cached under a key of its inputs in `<output_dir>/cv/`."""
    X, y = observations(prepared, results)
    if len(y) < 4:
        return None
    spec = prepared.spec
    folds = min(5, len(y))
    key = content_key(X.tobytes() + y.tobytes() + f"{spec.search.surrogate}|{folds}|{spec.seed}".encode())
    cached = spec.out_dir / "cv" / f"{key}.json"
    if cached.is_file():
        stored = json.loads(cached.read_text(encoding="utf-8"))
        return CrossValidation(stored["table"], y, np.asarray(stored["oof"], dtype=float))
    model = SURROGATES.build(spec.search.surrogate)
    cv, oof = cross_validate_in_process(model, X, y, folds=folds, seed=spec.seed)  # beside the flow's work
    table = {k: (round(v, 4) if isinstance(v, float) else v) for k, v in _finite_fields(cv).items()}
    atomic_write_json(cached, {"table": table, "oof": [float(v) for v in np.asarray(oof)]}, indent=None, default=str)
    return CrossValidation(table, y, np.asarray(oof, dtype=float))


def _finite_fields(obj: Any) -> dict[str, Any]:
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {k: v for k, v in dataclasses.asdict(obj).items() if not (isinstance(v, float) and math.isnan(v))}
    return dict(obj)


__all__ = [
    "CrossValidation",
    "SearchState",
    "candidate_label",
    "cross_validate_cached",
    "observations",
    "sampler_for",
    "suggest_candidates",
]
