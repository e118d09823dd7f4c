"""The trial boundary: `trial_key` (what makes a trial the same trial), `TrialContext` and `TrialPlan`
(what a round and each trial get), `TrialReport` (what a trial returns to the driver) and `TrialResult` (the report with its plan: mixture, round, run id). They cross
Ray, Prefect and MLflow, so they are plain values with an exact JSON form (weights as given, floats
unrounded)."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any, Literal

from flows.steps.spec import EvalSpec, ObjectiveSpec, ResourcesSpec
from mixture_search.keys import content_key
from mixture_search.mixture import Mixture
from mixture_search.schedule import Schedule
from trainers.budget import TrainBudget
from trainers.config import ProxyConfig

Status = Literal["finished", "failed", "stopped"]


def trial_key(
    mixture: Mixture,
    *,
    proxy: ProxyConfig,
    budget: TrainBudget,
    data_hash: str,
    seed: int,
    extra: dict[str, Any] | None = None,
) -> str:
    """Key of a trial: same mixture, proxy, budget, data and seed -> same key -> the result is reused.
    Derived from the components' own content keys (`Mixture.key`, `ProxyConfig.key`, `TrainBudget.key`)."""
    return content_key(
        {
            "mixture": mixture.key,
            "proxy": proxy.key,
            "budget": budget.key,
            "data": data_hash,
            "seed": seed,
            "extra": extra or {},
        }
    )


@dataclass(frozen=True)
class TrialContext:
    """What every trial of a round shares (shipped once through Ray's object store), typed end to end:
    the proxy and budget as the trainers' own configs, the objective, evaluation and resources as the
    spec's sections."""

    corpus: str
    domains: tuple[str, ...]  # the names of a trial's mixture (with phases: the cells p<k>.<domain>)
    proxy: ProxyConfig
    budget: TrainBudget
    backend: str
    trials_dir: str
    tracking_uri: str
    objective: ObjectiveSpec = field(default_factory=ObjectiveSpec)
    eval: EvalSpec = field(default_factory=EvalSpec)
    resources: ResourcesSpec = field(default_factory=ResourcesSpec)
    early_stop_metric: str | None = None
    #: repetition-matched proxies: the target run's tokens (each domain read from its matching subset)
    target_tokens: int | None = None
    #: None: each trial trains one mixture; a number: it trains the schedule its mixture's cells give, with a
    #: linear ramp of this fraction of the run centred on each phase boundary (0: a step change)
    ramp: float | None = None

    def train_inputs(self, mixture: Mixture, budget: TrainBudget) -> tuple[Mixture, Any]:
        """(mixture, schedule) for `trainers.train.train`: the trial's mixture and None, or in a phased sweep
        its first phase and the `WeightSchedule` its cells give (steps of `budget`, `ramp` at each boundary)."""
        if self.ramp is None:
            return mixture, None
        # trainers.data imports torch: only the trial process, which trains anyway, gets here
        from trainers.data.schedule import WeightSchedule

        phases = Schedule.from_flat(mixture).phases
        schedule = WeightSchedule.from_phases(
            [(p.until, p.mixture) for p in phases],
            budget.total_steps(self.proxy.seq_len),
            budget.global_batch,
            ramp=self.ramp,
        )
        return phases[0].mixture, schedule


@dataclass(frozen=True)
class TrialPlan:
    key: str
    mixture: Mixture
    run_id: str
    round: int
    sampler: str
    seed: int | None = None  # trains with this seed instead of the context budget's (a confirmation run)


@dataclass(frozen=True)
class TrialReport:
    """What a trial hands back to the driver when it ends (the last thing it reports to Ray Tune).

    Metrics are metrics only (`val.*`, `train.*`, `eval.*`); status, error, paths and where it ran are
    fields of their own, so nothing has to be sorted out of one mixed dict by the driver."""

    status: Literal["finished", "failed"]
    step: int
    metrics: dict[str, float] = field(default_factory=dict)
    objective: float | None = None
    error: str | None = None
    paths: dict[str, str] = field(default_factory=dict)
    backend: str | None = None
    wall_s: float = 0.0
    node: str = ""

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrialReport:
        return cls(**{f.name: data[f.name] for f in dataclasses.fields(cls) if f.name in data})


@dataclass
class TrialResult:
    trial_key: str
    mixture: Mixture
    status: Status
    objective: float | None = None
    metrics: dict[str, float] = field(default_factory=dict)
    history: dict[str, list[tuple[int, float]]] = field(default_factory=dict)
    error: str | None = None
    paths: dict[str, str] = field(default_factory=dict)
    run_id: str | None = None
    round: int = 0
    sampler: str = ""
    backend: str | None = None
    wall_s: float = 0.0
    step: int = 0  # the optimizer step the metrics belong to
    node: str = ""  # the Ray node the trial ran on (its node id)

    @property
    def ok(self) -> bool:
        return self.status == "finished" and self.objective is not None and math.isfinite(self.objective)

    def to_dict(self) -> dict[str, Any]:
        return {
            "trial_key": self.trial_key,
            "mixture": [[n, w] for n, w in self.mixture.pairs],
            "status": self.status,
            "objective": self.objective,
            "metrics": dict(self.metrics),
            "history": {k: [[s, v] for s, v in pts] for k, pts in self.history.items()},
            "error": self.error,
            "paths": dict(self.paths),
            "run_id": self.run_id,
            "round": self.round,
            "sampler": self.sampler,
            "backend": self.backend,
            "wall_s": self.wall_s,
            "step": self.step,
            "node": self.node,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrialResult:
        return cls(
            trial_key=data["trial_key"],
            mixture=Mixture([(str(n), float(w)) for n, w in data["mixture"]]),
            status=data["status"],
            objective=data.get("objective"),
            metrics={k: float(v) for k, v in data.get("metrics", {}).items()},
            history={k: [(int(s), float(v)) for s, v in pts] for k, pts in data.get("history", {}).items()},
            error=data.get("error"),
            paths=dict(data.get("paths", {})),
            run_id=data.get("run_id"),
            round=int(data.get("round", 0)),
            sampler=str(data.get("sampler", "")),
            backend=data.get("backend"),
            wall_s=float(data.get("wall_s", 0.0)),
            step=int(data.get("step", 0)),
            node=str(data.get("node", "")),
        )
