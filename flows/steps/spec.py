"""`SweepSpec`: everything a sweep needs, validated before anything runs.

Given as a YAML file or inline (Prefect parameters). Relative paths are relative to the working
directory (the repository root for the deployments). Unknown keys and wrong types are rejected with one
line naming the field (`search.rounds: must be >= 1`), as are impossible combinations that only show
once the corpus is known (unknown domains, an empty search space), by `SweepSpec.check`.
"""

from __future__ import annotations

import io
import math
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PlainSerializer,
    PlainValidator,
    ValidationError,
    WithJsonSchema,
    field_validator,
    model_validator,
)
from ruamel.yaml import YAML
from ruamel.yaml.error import MarkedYAMLError

from mixture_search.errors import MixSweepError
from mixture_search.keys import content_key
from mixture_search.proposal import DEFAULT_EXTRAPOLATE, DEFAULT_TRUST_REGION, DEFAULT_UNCERTAINTY
from mixture_search.samplers import SAMPLERS
from mixture_search.surrogates import SURROGATES
from mixture_search.units import parse_count
from trainers.budget import TrainBudget
from trainers.presets import PRESETS

#: Operator settings (environment of the CLI or the Prefect worker): the folder every data path of a spec
#: must resolve into, and the explicit switch that lifts it. A spec cannot lift the operator's root.
DATA_ROOT_ENV = "MIXSWEEP_DATA_ROOT"
ALLOW_OUTSIDE_ENV = "MIXSWEEP_ALLOW_OUTSIDE_DATA_ROOT"


class SpecError(MixSweepError):
    """A sweep spec that cannot run."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _choice(names: tuple[str, ...] | list[str]) -> WithJsonSchema:
    """A registry's names as the field's JSON schema (a drop-down in Prefect's run form). The values are
    still checked against the registry itself, with a one-line error, when the spec is checked."""
    return WithJsonSchema({"type": "string", "enum": list(names)})


#: a name from a registry (validated by the registry; an enum in the JSON schema)
SamplerName = Annotated[str, _choice(SAMPLERS.names())]
#: surrogates for offline use only: scale_law_repeat needs each domain's unique tokens from its user
#: (--domain-tokens); a sweep's ladder gives none: with space.target_tokens its proxies read
#: repetition-matched subsets instead
OFFLINE_SURROGATES = ("scale_law_repeat",)
SWEEP_SURROGATES = tuple(n for n in SURROGATES.names() if n not in OFFLINE_SURROGATES)
SurrogateName = Annotated[str, _choice(SWEEP_SURROGATES)]
PresetName = Annotated[str, _choice(list(PRESETS))]


class PhaseModel(_Strict):
    """One phase of a schedule (`space.phases[k]`): where it ends, as a fraction of the run (a number, or
    [min, max] to search the boundary), and its own bounds and pins (domains not named keep `space`'s)."""

    until: float | tuple[float, float] = Field(
        ..., description="Where this phase ends (fraction of the run's tokens); [min, max] searches it."
    )
    bounds: dict[str, tuple[float, float]] = Field(default_factory=dict, description="Domain -> (min, max) share.")
    pinned: dict[str, float] = Field(default_factory=dict, description="Domain -> fixed share in this phase.")

    @field_validator("until")
    @classmethod
    def _until(cls, v: float | tuple[float, float]) -> float | tuple[float, float]:
        for u in v if isinstance(v, tuple) else (v,):
            if not math.isfinite(u) or not 0.0 < u <= 1.0:
                raise ValueError(f"{u} must be a fraction of the run in (0, 1]")
        if isinstance(v, tuple) and not v[0] < v[1]:
            raise ValueError(f"searched range [{v[0]}, {v[1]}] must have min < max")
        return v

    @field_validator("bounds")
    @classmethod
    def _bounds(cls, v: dict[str, tuple[float, float]]) -> dict[str, tuple[float, float]]:
        return _check_bounds(v)

    @field_validator("pinned")
    @classmethod
    def _pinned(cls, v: dict[str, float]) -> dict[str, float]:
        for name, share in v.items():
            _check_share(share, name)
        return v

    def as_phase(self) -> dict[str, Any]:
        """The form `mixture_search.phases.PhaseSpec.parse` reads."""
        return {
            "until": list(self.until) if isinstance(self.until, tuple) else self.until,
            **self.model_dump(exclude={"until"}),
        }


class SpaceSpec(_Strict):
    domains: list[str] | None = Field(None, description="Domains to mix (default: all of the corpus), in this order.")
    bounds: dict[str, tuple[float, float]] = Field(default_factory=dict, description="Domain -> (min, max) share.")
    pinned: dict[str, float] = Field(default_factory=dict, description="Domain -> fixed share.")
    target_tokens: int | str | None = Field(
        None, description="Token budget of the target run (caps by max_epochs), e.g. 100B."
    )
    max_epochs: float | None = Field(
        None, gt=0, description="No domain repeated more often than this in the target run."
    )
    prior: Literal["tokens", "uniform"] = Field(
        "tokens",
        description="Centre of the first round's Dirichlet: each domain's share of the corpus tokens, or uniform.",
    )
    phases: list[PhaseModel] | None = Field(
        None,
        description="Train a schedule: one mixture per phase, e.g. [{until: 0.8}, {until: 1.0, bounds: {...}}] "
        "(null: one mixture for the whole run). Caps by max_epochs hold over the whole run.",
    )
    ramp: float = Field(
        0.0,
        ge=0,
        lt=0.5,
        description="With phases: a linear ramp this long (fraction of the run), centred on each boundary, "
        "instead of a step change (0: step). Centred, so each domain's tokens over the run are unchanged.",
    )

    @model_validator(mode="after")
    def _phases(self) -> SpaceSpec:
        """Phases end in increasing order and the last at 1.0; a ramp needs phases (one line each)."""
        if self.phases is None:
            if self.ramp:
                raise SpecError("a ramp between phases needs space.phases", where="space.ramp")
            return self
        if not self.phases:
            raise SpecError("list at least one phase (or leave phases out)", where="space.phases")
        prev = 0.0
        for k, phase in enumerate(self.phases):
            lo, hi = phase.until if isinstance(phase.until, tuple) else (phase.until, phase.until)
            if lo <= prev:
                raise SpecError(
                    f"{phase.until} does not start after the previous phase's end {prev:g} (phases must end in "
                    "increasing order)",
                    where=f"space.phases[{k}].until",
                )
            prev = hi
        last = self.phases[-1].until
        if isinstance(last, tuple) or last != 1.0:
            raise SpecError(
                f"the last phase must end at 1.0, not {last}", where=f"space.phases[{len(self.phases) - 1}].until"
            )
        return self

    @field_validator("domains")
    @classmethod
    def _domains(cls, v: list[str] | None) -> list[str] | None:
        if v is not None:
            if not v:
                raise ValueError("name at least one domain (or leave it out for all of the corpus)")
            seen: set[str] = set()
            for name in v:
                if name in seen:
                    raise ValueError(f"{name!r} is listed twice")
                seen.add(name)
        return v

    @field_validator("bounds")
    @classmethod
    def _bounds(cls, v: dict[str, tuple[float, float]]) -> dict[str, tuple[float, float]]:
        return _check_bounds(v)

    @field_validator("pinned")
    @classmethod
    def _pinned(cls, v: dict[str, float]) -> dict[str, float]:
        for name, share in v.items():
            _check_share(share, name)
        return v

    @field_validator("target_tokens")
    @classmethod
    def _target_tokens(cls, v: int | str | None) -> int | str | None:
        if v is not None:
            parse_count(v, field="value")
        return v


def _check_bounds(v: dict[str, tuple[float, float]]) -> dict[str, tuple[float, float]]:
    for name, (lo, hi) in v.items():
        for label, share in (("min", lo), ("max", hi)):
            _check_share(share, f"{name} {label}")
        if lo > hi:
            raise ValueError(f"{name}: min {lo} is above max {hi}")
    return v


def _check_share(share: float, name: str) -> None:
    if not math.isfinite(share) or not 0.0 <= share <= 1.0:
        raise ValueError(f"{name}: share {share} must be a number in [0, 1]")


class SearchSpec(_Strict):
    sampler: SamplerName = Field("dirichlet", description="Sampler of the first round (see `mixsweep suggest --help`).")
    options: dict[str, Any] = Field(default_factory=dict, description="Options of the first round's sampler.")
    adaptive: SamplerName | None = Field("adaptive", description="Sampler of rounds 2.. (None: keep `sampler`).")
    adaptive_options: dict[str, Any] = Field(default_factory=dict, description="Options of the sampler of rounds 2..")
    rounds: int = Field(
        2, ge=1, description="Rounds of candidates; each round's trials train before the next is chosen."
    )
    per_round: int = Field(4, ge=1, description="Trials (candidate mixtures) per round.")
    anchors: list[Literal["natural", "uniform"]] | None = Field(
        None,
        description="Reference mixtures the first round trains in place of as many sampled candidates: "
        "natural (token shares) and uniform, inside the space ([]: none; null: both when the mixtures "
        "are static and they take at most a quarter of the first round, i.e. search.per_round >= 8).",
    )
    surrogate: SurrogateName = Field(
        "auto", description="Model of the objective over mixtures (auto: the best by cross-validation)."
    )
    proposal_samples: int = Field(
        100_000, ge=1000, description="Mixtures the surrogate scores when it proposes the recommendation."
    )
    trust_region: float | None = Field(
        DEFAULT_TRUST_REGION,
        ge=0,
        description="The proposal stays within this L1 distance of one of the best observed trials "
        "(0..2; null: anywhere in the space).",
    )
    extrapolate: float | None = Field(
        DEFAULT_EXTRAPOLATE,
        ge=0,
        description="No domain's share leaves the range the trials covered by more than this "
        "(null: the space's own bounds).",
    )
    uncertainty: float = Field(
        DEFAULT_UNCERTAINTY,
        ge=0,
        description="The proposal optimises the surrogate's mean plus this many predicted standard deviations "
        "(against the objective's direction); 0: the mean alone.",
    )
    replicates: int = Field(
        0,
        ge=0,
        description="After the last round, train the top this many trials again with a new seed; the ranking, "
        "the surrogate and the proposal use each mixture's mean over its seeds (0: off).",
    )

    @field_validator("anchors")
    @classmethod
    def _anchors(cls, v: list[str] | None) -> list[str] | None:
        if v is not None and len(set(v)) < len(v):
            raise ValueError("each anchor once")
        return v

    @model_validator(mode="after")
    def _round_counts(self) -> SearchSpec:
        if self.anchors and self.per_round <= len(self.anchors):
            raise SpecError(
                f"{len(self.anchors)} anchors leave no candidate of the sampler in a first round of "
                f"{self.per_round} (search.per_round): raise it or drop anchors",
                where="search.anchors",
            )
        trials = self.rounds * self.per_round
        if self.replicates > trials:
            raise SpecError(
                f"{self.replicates} is more than the sweep's {trials} trials (search.rounds x search.per_round)",
                where="search.replicates",
            )
        return self


class ConfirmSpec(_Strict):
    enabled: bool = Field(
        True, description="After the last round, train the proposal and the best trial again with new seeds."
    )
    seeds: int = Field(2, ge=1, description="New seeds per mixture in the confirmation.")


class ScaleSpec(_Strict):
    """One rung of a proxy ladder (`proxy.scales[k]`): a preset with overrides (over `proxy.overrides`
    when it is `proxy.preset`) and the budget fields that differ from `budget` (e.g. `{tokens: 4M}`)."""

    preset: PresetName | None = Field(None, description="Preset of this scale (default: proxy.preset).")
    overrides: dict[str, Any] = Field(default_factory=dict, description="Over proxy.overrides for this scale.")
    budget: dict[str, Any] = Field(default_factory=dict, description="Budget fields over `budget` for this scale.")


class ProxySpec(_Strict):
    preset: PresetName = Field(
        "tiny_cpu", description="The proxy model (trainers/presets.py; `mixsweep train --help`)."
    )
    overrides: dict[str, Any] = Field(
        default_factory=dict, description="Proxy config fields to change, e.g. {seq_len: 128, num_layers: 4}."
    )
    match_repetition: bool | None = Field(
        None,
        description="Each proxy reads a subset of every domain sized so that it repeats as often as in the "
        "target run (null: on when space.target_tokens is set).",
    )
    scales: list[ScaleSpec] | None = Field(
        None,
        description="A proxy ladder of 2-4 scales, smallest first: every candidate trains at the first, a "
        "chosen few at the larger ones (null: one scale, proxy + budget).",
    )
    compute_budget: float | str | None = Field(
        None,
        description="With scales: the sweep's training FLOPs (6 x params x tokens per run, e.g. 2e15); it "
        "sets how many candidates train at each larger scale (null: half the previous scale's, at least 3).",
    )

    @field_validator("scales")
    @classmethod
    def _scales(cls, v: list[ScaleSpec] | None) -> list[ScaleSpec] | None:
        if v is not None and not 2 <= len(v) <= 4:
            raise ValueError(f"a ladder has 2 to 4 scales, got {len(v)} (leave scales out for one scale)")
        return v

    @field_validator("compute_budget")
    @classmethod
    def _compute_budget(cls, v: float | str | None) -> float | str | None:
        if v is not None:
            parse_count(v, field="value")
        return v

    @model_validator(mode="after")
    def _ladder_fields(self) -> ProxySpec:
        if self.compute_budget is not None and self.scales is None:
            raise SpecError("a compute budget sets the ladder's sizes: give proxy.scales", where="proxy.compute_budget")
        return self


class TargetSpec(_Strict):
    """The run the mixture is for: with `proxy.scales` the sweep predicts and proposes at its scale."""

    params: int | str | None = Field(None, description="Parameters of the target model, e.g. 1.4B.")

    @field_validator("params")
    @classmethod
    def _params(cls, v: int | str | None) -> int | str | None:
        if v is not None:
            parse_count(v, field="value")
        return v


class EvalSpec(_Strict):
    tasks: list[str] = Field(
        default_factory=list, description="LightEval tasks after training (empty: validation loss only)."
    )
    max_docs: int = Field(16, ge=1, description="Documents per domain and task.")


class ObjectiveSpec(_Strict):
    metric: str = Field(
        "val.bpb.mean", description="Metric to rank by, e.g. val.bpb.mean, val.loss.code, lighteval score."
    )
    weights: dict[str, float] | None = Field(None, description="A weighted sum of metrics instead of one metric.")
    maximize: bool = Field(False, description="Higher is better (e.g. an accuracy); default: lower (a loss).")

    @field_validator("weights")
    @classmethod
    def _weights(cls, v: dict[str, float] | None) -> dict[str, float] | None:
        if v is not None:
            if not v:
                raise ValueError("name at least one metric (or leave weights out)")
            for name, w in v.items():
                if not math.isfinite(w):
                    raise ValueError(f"{name}: weight {w} must be finite")
            if all(w == 0 for w in v.values()):
                raise ValueError(f"all {len(v)} weights are zero")
        return v


class ResourcesSpec(_Strict):
    cpus: float = Field(1.0, gt=0, description="CPUs per trial process (per Ray Train worker when workers > 1).")
    gpus: float = Field(0.0, ge=0, description="GPUs per trial process (per Ray Train worker when workers > 1).")
    workers: int = Field(
        1, ge=1, description="Processes per trial (>1: a Ray Train TorchTrainer; gloo on CPU, NCCL on GPUs)."
    )


class EarlyStopSpec(_Strict):
    enabled: bool = Field(False, description="Stop the worst trials early at evaluations (Ray Tune's ASHA).")
    metric: str = Field("val.loss.mean", description="What ASHA compares at each evaluation (lower is better).")
    grace_period: int = Field(1, ge=1, description="Evaluations before a trial may be stopped.")
    reduction_factor: float = Field(2.0, gt=1, description="ASHA keeps 1 / this of the trials at each rung.")


class MlflowSpec(_Strict):
    experiment: str = Field("mixsweep", description="MLflow experiment the sweep's runs go to.")
    tracking_uri: str | None = Field(
        None, description="Default: $MLFLOW_TRACKING_URI, else a SQLite file in the output folder."
    )


class ExportSpec(_Strict):
    openseek_template: Path | None = Field(
        None, description="OpenSeek task (or experiment) YAML the recommendation is written into."
    )
    catalog: Path | None = Field(
        None, description="Token table/catalog that maps the corpus domains to the template's files."
    )
    train_samples: int | None = Field(
        None,
        gt=0,
        description="With space.phases: the big run's samples, where each exported stage ends (default: the "
        "OpenSeek template's model.train_samples, and the proxy run's for the Megatron stage script).",
    )


def _budget(value: Any) -> TrainBudget:
    """A `TrainBudget` from itself or a mapping of its fields (`tokens` may be a count like `20M`)."""
    if isinstance(value, TrainBudget):
        return value
    if not isinstance(value, Mapping):
        raise ValueError("Input should be a valid dictionary of TrainBudget fields")
    data = dict(value)
    if isinstance(data.get("tokens"), str):
        data["tokens"] = parse_count(data["tokens"], field="tokens")
    return TrainBudget.from_dict(data)


#: the trainers' own `TrainBudget`, read from a mapping and written back as one
Budget = Annotated[
    TrainBudget,
    PlainValidator(_budget),
    PlainSerializer(lambda b: b.to_dict(), return_type=dict),
    WithJsonSchema({"type": "object", "description": "TrainBudget fields (trainers/budget.py)"}),
]


def _default_budget() -> TrainBudget:
    return TrainBudget(steps=20, micro_batch=4, global_batch=4, eval_interval=10)


class SweepSpec(_Strict):
    name: str = Field(
        ...,
        min_length=1,
        pattern=r"^[A-Za-z0-9_.-]+$",
        description="The sweep's name: its MLflow parent run and output folder (letters, digits, _ . -).",
    )
    corpus: Path = Field(..., description="A prepared corpus folder (`mixsweep data prepare`), e.g. runs/data/demo.")
    space: SpaceSpec = Field(default_factory=SpaceSpec, description="Which mixtures may be tried.")
    search: SearchSpec = Field(default_factory=SearchSpec, description="How candidates are chosen and proposed.")
    confirm: ConfirmSpec = Field(
        default_factory=ConfirmSpec, description="Train the proposal and the best trial again before exporting."
    )
    proxy: ProxySpec = Field(default_factory=ProxySpec, description="The small model each trial trains.")
    target: TargetSpec = Field(
        default_factory=TargetSpec, description="The run the mixture is for (its size, for a proxy ladder)."
    )
    budget: Budget = Field(
        default_factory=_default_budget,
        description="How each proxy trains: tokens or steps, batches, LR schedule, evals (trainers.budget.TrainBudget).",
    )
    backend: Literal["auto", "megatron", "deepspeed"] = Field(
        "auto", description="Training backend (auto: Megatron-Core, DeepSpeed where it is missing)."
    )
    eval: EvalSpec = Field(default_factory=EvalSpec, description="LightEval tasks on each trained proxy.")
    objective: ObjectiveSpec = Field(default_factory=ObjectiveSpec, description="What the sweep ranks by.")
    resources: ResourcesSpec = Field(default_factory=ResourcesSpec, description="What each trial gets on Ray.")
    max_concurrent: int = Field(1, ge=1, description="Trials that train at the same time.")
    max_failures: int = Field(2, ge=0, description="Ray retries of a trial whose worker died.")
    early_stopping: EarlyStopSpec = Field(default_factory=EarlyStopSpec, description="Stop bad trials early (ASHA).")
    ray_address: str | None = Field(
        None, description="An existing Ray cluster (ray://host:10001 or host:6379); default: local."
    )
    mlflow: MlflowSpec = Field(default_factory=MlflowSpec, description="Where runs are tracked.")
    export: ExportSpec = Field(default_factory=ExportSpec, description="Where the recommendation is written into.")
    output_dir: Path | None = Field(None, description="Checkpoints, Ray results, reports (default runs/sweeps/<name>).")
    seed: int = Field(0, ge=0, description="Seed of the samplers and of every proxy's training.")
    data_root: Path | None = Field(
        None,
        description="corpus, export.openseek_template and export.catalog must lie inside this folder "
        f"(default: ${DATA_ROOT_ENV}; inside it when both are set).",
    )

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        if v.strip(".") == "":
            raise ValueError(f"{v!r} is not a name (it is used as a folder name)")
        return v

    @model_validator(mode="after")
    def _consistent(self) -> SweepSpec:
        if self.early_stopping.enabled and not self.budget.eval_interval:
            raise ValueError("early_stopping needs budget.eval_interval > 0 (ASHA decides at evaluations)")
        return self

    # -- derived ------------------------------------------------------------------------------------
    @property
    def out_dir(self) -> Path:
        return (self.output_dir or Path("runs/sweeps") / self.name).resolve()

    def sweep_key(self, data_hash: str) -> str:
        """Identifies a sweep across reruns: same spec and data -> same key. Where it runs, and what only
        shapes the end (the proposal's limits, the replicates, the confirmation), are left out: changing
        them reuses the sweep's MLflow runs and re-proposes from the same trials. Replicate and
        confirmation runs are not trials: they train after the last round, under keys of their own (seed
        and stage), so raising `search.replicates` on a finished sweep trains only the new replicates."""
        payload = self.model_dump(
            mode="json",
            exclude={
                "ray_address": True,
                "mlflow": True,
                "output_dir": True,
                "max_concurrent": True,
                "max_failures": True,
                "data_root": True,
                "confirm": True,
                "search": {"trust_region", "extrapolate", "uncertainty", "proposal_samples", "replicates"},
                "export": {"train_samples"},
            },
        )
        space = payload["space"]
        if space.get("phases") is None and not space.get("ramp"):  # a static space keeps its sweep key
            space.pop("phases", None)
            space.pop("ramp", None)
        if payload["search"].get("anchors") is None:  # the default anchors keep a sweep's key too
            payload["search"].pop("anchors", None)
        _drop_ladder_defaults(payload)
        return content_key([payload, data_hash])

    def to_yaml(self) -> str:
        buf = io.StringIO()
        y = YAML(typ="safe", pure=True)
        y.default_flow_style = False
        y.dump(self.model_dump(mode="json", exclude_defaults=False), buf)
        return buf.getvalue()


def _drop_ladder_defaults(payload: dict[str, Any]) -> None:
    """The repetition and ladder fields (`proxy.match_repetition`, `proxy.scales`, `proxy.compute_budget`,
    `target`) enter a sweep's key only when set: a sweep that uses none of them keeps its key."""
    proxy = payload.get("proxy", {})
    for name in ("match_repetition", "scales", "compute_budget"):
        if proxy.get(name) is None:
            proxy.pop(name, None)
    if payload.get("target") == {"params": None}:
        payload.pop("target")


def load_spec(source: SweepSpec | dict[str, Any] | str | Path, *, where: str | None = None) -> SweepSpec:
    """A validated spec from itself, a mapping (Prefect parameters), a YAML file path, or YAML text."""
    if isinstance(source, SweepSpec):
        check_data_root(source, where=where)
        return source
    if isinstance(source, (str, Path)) and not (isinstance(source, str) and "\n" in source):
        path = Path(source)
        if not path.exists():
            raise SpecError("spec file not found", where=str(path))
        where = where or str(path)
        try:
            data = YAML(typ="safe").load(path.read_text(encoding="utf-8"))
        except MarkedYAMLError as exc:
            line = f":{exc.problem_mark.line + 1}" if exc.problem_mark else ""
            raise SpecError(f"invalid YAML: {exc.problem}", where=f"{path}{line}") from None
    elif isinstance(source, str):
        try:
            data = YAML(typ="safe").load(source)
        except MarkedYAMLError as exc:
            raise SpecError(f"invalid YAML: {exc.problem}", where=where or "spec") from None
    else:
        data = source
    if not isinstance(data, dict):
        raise SpecError("a sweep spec must be a mapping", where=where or "spec")
    try:
        spec = SweepSpec.model_validate(data)
    except ValidationError as exc:
        err = exc.errors()[0]
        cause = (err.get("ctx") or {}).get("error")
        if isinstance(cause, MixSweepError) and cause.where and "." in cause.where:
            raise SpecError(str(cause), where=where or "spec") from None  # it names its field already
        loc = ".".join(str(p) for p in err["loc"]) or "spec"
        msg = err["msg"].removeprefix("Value error, ").removeprefix("value: ")
        if err["type"] == "extra_forbidden":
            msg = "unknown key"
        raise SpecError(
            f"{loc}: {msg}" + (f" ({len(exc.errors()) - 1} more)" if len(exc.errors()) > 1 else ""),
            where=where or "spec",
        ) from None
    check_data_root(spec, where=where)
    return spec


def data_roots(spec: SweepSpec) -> list[Path]:
    """The folders data paths must lie in: the operator's `$MIXSWEEP_DATA_ROOT` and the spec's `data_root`
    (none: no restriction). `$MIXSWEEP_ALLOW_OUTSIDE_DATA_ROOT=1` lifts both."""
    if os.environ.get(ALLOW_OUTSIDE_ENV, "").strip().lower() in ("1", "true", "yes"):
        return []
    roots = []
    if os.environ.get(DATA_ROOT_ENV):
        roots.append(Path(os.environ[DATA_ROOT_ENV]).expanduser().resolve())
    if spec.data_root is not None:
        roots.append(spec.data_root.expanduser().resolve())
    return roots


def outside_roots(path: Path, roots: list[Path]) -> Path | None:
    """The first root that `path` (symlinks and `..` resolved) escapes, or None."""
    resolved = Path(path).expanduser().resolve()
    for root in roots:
        if not resolved.is_relative_to(root):
            return root
    return None


def check_data_root(spec: SweepSpec, *, where: str | None = None) -> None:
    """Every data path of the spec resolves inside the configured data root(s)."""
    roots = data_roots(spec)
    if not roots:
        return
    if spec.data_root is not None and len(roots) == 2 and outside_roots(roots[1], roots[:1]):
        raise SpecError(f"data_root: {spec.data_root} is outside ${DATA_ROOT_ENV} ({roots[0]})", where=where or "spec")
    paths = {
        "corpus": spec.corpus,
        "export.openseek_template": spec.export.openseek_template,
        "export.catalog": spec.export.catalog,
    }
    for field, path in paths.items():
        if path is None:
            continue
        root = outside_roots(path, roots)
        if root is not None:
            raise SpecError(
                f"{field}: {path} resolves outside the data root {root} "
                f"(set {ALLOW_OUTSIDE_ENV}=1 where the sweep runs to allow it)",
                where=where or "spec",
            )
