"""The steps of `mixsweep validate` as plain functions (no Prefect): the spec (`ValidateSpec`), its
checks against the sweep and the target scale (`prepare_validation`), the mixtures to train
(`choose_mixtures`), each training's inputs and key (`scale_inputs`, `key_of`) and, for a sweep with a
proxy ladder, its scale-aware surrogate's predictions at the target's size (`scale_aware_predictions`).
The flow is `flows/validate.py`; the report is `flows.steps.validate_report`."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, cast

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from ruamel.yaml import YAML
from ruamel.yaml.error import MarkedYAMLError

from flows.steps.checks import check_eval_tasks, check_mlflow
from flows.steps.ladder import LadderResults, fit_scale_model
from flows.steps.prepare import Prepared, prepare, tracking_uri_of
from flows.steps.spec import (
    Budget,
    EvalSpec,
    MlflowSpec,
    PresetName,
    ResourcesSpec,
    SpecError,
    SweepSpec,
    load_spec,
)
from flows.steps.validate_report import Scale
from flows.trials.result import TrialResult, trial_key
from mixture_search.keys import content_key
from mixture_search.mixture import Mixture
from mixture_search.phases import PhasedSpace
from mixture_search.schedule import Phase, Schedule
from mixture_search.surrogates.scale import Scale as ModelScale
from mixture_search.units import format_count
from trainers.budget import TrainBudget
from trainers.config import ProxyConfig
from trainers.errors import ConfigError
from trainers.presets import PRESETS, preset

Baseline = Literal["uniform", "natural", "best"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class TargetSpec(_Strict):
    preset: PresetName = Field("moe_cpu_16m", description="A preset of trainers.presets for the larger model.")
    overrides: dict[str, Any] = Field(default_factory=dict, description="Field overrides, e.g. {seq_len: 128}.")


def _default_budget() -> TrainBudget:
    return TrainBudget(steps=160, micro_batch=4, global_batch=8, eval_interval=80, eval_windows_per_domain=16)


class ValidateSpec(_Strict):
    """What `mixsweep validate` runs; unknown keys and bad values are one-line errors naming the field."""

    name: str = Field(
        ..., min_length=1, pattern=r"^[A-Za-z0-9_.-]+$", description="The validation's name: its MLflow run and folder."
    )
    sweep: str | dict[str, Any] = Field(..., description="The sweep: a SweepSpec YAML path, or the spec inline.")
    compare: str | dict[str, Any] | None = Field(
        None,
        description="Another sweep without phases on the same corpus (a SweepSpec YAML path or inline), run or "
        "resumed too: its exported mixture is trained as one more baseline, named after that sweep. With a "
        "phased `sweep`: does the best schedule beat the best static mixture?",
    )
    target: TargetSpec = Field(default_factory=TargetSpec, description="The larger model the mixtures train at.")
    budget: Budget = Field(
        default_factory=_default_budget, description="TrainBudget of the target (no seed: see seeds)."
    )
    backend: Literal["auto", "megatron", "deepspeed"] | None = Field(None, description="Default: the sweep's.")
    seeds: list[int] = Field([0, 1], description="Training seeds (initialisation and data order) of every mixture.")
    baselines: list[Baseline] = Field(["uniform", "natural", "best"], description="Compared with the recommendation.")
    target_domains: list[str] | None = Field(None, description="Domains of the objective (default: the sweep's).")
    rank_mixtures: int = Field(5, ge=3, le=12, description="Mixtures trained at both scales for Spearman.")
    eval: EvalSpec = Field(
        default_factory=lambda: EvalSpec(tasks=["local"], max_docs=8), description="LightEval tasks on every model."
    )
    min_scale: float = Field(
        4.0,
        ge=1.0,
        description="Target/proxy ratio required of parameters and tokens (with a ladder: of its largest proxy).",
    )
    resources: ResourcesSpec = Field(default_factory=ResourcesSpec, description="What each training gets on Ray.")
    max_concurrent: int = Field(2, ge=1, description="Trainings at the same time.")
    max_failures: int = Field(2, ge=0, description="Ray retries of a training whose worker died.")
    mlflow: MlflowSpec = Field(
        default_factory=lambda: MlflowSpec(experiment="mixsweep-validate"), description="Where runs are tracked."
    )
    output_dir: Path | None = Field(None, description="Default: runs/validate/<name>.")

    @field_validator("seeds")
    @classmethod
    def _seeds(cls, v: list[int]) -> list[int]:
        if len(v) < 2:
            raise ValueError("give at least 2 seeds (error bars need repeats)")
        if len(set(v)) != len(v) or any(s < 0 for s in v):
            raise ValueError(f"seeds must be distinct integers >= 0, got {v}")
        return v

    @field_validator("baselines")
    @classmethod
    def _baselines(cls, v: list[str]) -> list[str]:
        if not v:
            raise ValueError("name at least one baseline (uniform, natural, best)")
        if len(set(v)) != len(v):
            raise ValueError(f"a baseline is listed twice: {v}")
        return v

    @field_validator("budget", mode="before")
    @classmethod
    def _budget(cls, v: Any) -> Any:
        if isinstance(v, dict) and "seed" in v:
            raise ValueError("set the training seeds with `seeds`, not budget.seed")
        return v

    @field_validator("target_domains")
    @classmethod
    def _domains(cls, v: list[str] | None) -> list[str] | None:
        if v is not None and (not v or len(set(v)) != len(v)):
            raise ValueError("name distinct domains (or leave it out for all of the sweep's)")
        return v

    @property
    def out_dir(self) -> Path:
        return (self.output_dir or Path("runs/validate") / self.name).resolve()


def load_validate_spec(source: ValidateSpec | dict[str, Any] | str | Path) -> ValidateSpec:
    """A validated spec from itself, a mapping (Prefect parameters) or a YAML file path."""
    if isinstance(source, ValidateSpec):
        return source
    where = "spec"
    data: Any = source
    if isinstance(source, (str, Path)):
        path = Path(source)
        if not path.is_file():
            raise SpecError("spec file not found", where=str(path))
        where = str(path)
        try:
            data = YAML(typ="safe").load(path.read_text(encoding="utf-8"))
        except MarkedYAMLError as exc:
            line = f":{exc.problem_mark.line + 1}" if exc.problem_mark else ""
            raise SpecError(f"invalid YAML: {exc.problem}", where=f"{path}{line}") from None
    if not isinstance(data, dict):
        raise SpecError("a validate spec must be a mapping", where=where)
    try:
        return ValidateSpec.model_validate(data)
    except ValidationError as exc:
        err = exc.errors()[0]
        loc = ".".join(str(p) for p in err["loc"]) or "spec"
        msg = "unknown key" if err["type"] == "extra_forbidden" else err["msg"].removeprefix("Value error, ")
        raise SpecError(f"{loc}: {msg}", where=where) from None


@dataclass
class ValidatePlan:
    """A checked validate spec with the sweep's prepared inputs and both scales resolved."""

    spec: ValidateSpec
    sweep_spec: SweepSpec
    sweep: Prepared
    #: the sweep of `compare` (static, on the same corpus and domains), else None
    compare_spec: SweepSpec | None
    target_proxy: ProxyConfig
    target_budget: TrainBudget
    backend: str
    target_domains: tuple[str, ...]
    scale: dict[str, dict[str, float]]  # {"proxy"|"largest_proxy"|"target": {params, active, tokens}}
    tracking_uri: str
    key: str

    @property
    def scales(self) -> tuple[Scale, ...]:
        """Where every mixture trains: the sweep's proxy (with a ladder: its smallest and its largest
        scale) and the target."""
        return ("proxy", "largest_proxy", "target") if self.sweep.ladder is not None else ("proxy", "target")


def prepare_validation(spec: ValidateSpec) -> ValidatePlan:
    """The sweep's checks, then the target's: preset, budget, domains, the scale-up ratio."""
    sweep_spec = load_spec(spec.sweep, where="sweep" if isinstance(spec.sweep, dict) else None)
    sweep = prepare(sweep_spec)
    compare_spec = _prepare_compare(spec, sweep_spec, sweep) if spec.compare is not None else None
    if spec.target.preset not in PRESETS:
        raise SpecError(f"unknown preset {spec.target.preset!r} (known: {', '.join(PRESETS)})", where="target.preset")
    vocab = sweep.proxy.vocab_size
    assert vocab is not None  # prepare() resolved it from the corpus tokenizer
    try:
        target = preset(spec.target.preset, **spec.target.overrides).resolve_vocab(vocab)
    except ConfigError as exc:  # it names the field as proxy.<field>: here it is the target's
        raise SpecError(str(exc).replace("proxy.", "target.overrides.", 1), where=None) from None
    budget = spec.budget
    proxy, proxy_budget = sweep.proxy, sweep.budget
    scale = {
        "proxy": _scale(proxy, proxy_budget.total_steps(proxy.seq_len) * proxy_budget.global_batch * proxy.seq_len),
        "target": _scale(target, budget.total_steps(target.seq_len) * budget.global_batch * target.seq_len),
    }
    reference, name = "proxy", "proxy's"
    if sweep.ladder is not None:  # the target must outgrow the ladder's largest scale, not only its smallest
        largest = sweep.ladder.largest
        scale["largest_proxy"] = _scale(largest.proxy, largest.tokens)
        reference, name = "largest_proxy", f"largest proxy's (scale {largest.index})"
    for what, where in (("params", "target"), ("tokens", "budget")):
        ratio = scale["target"][what] / scale[reference][what]
        if ratio < spec.min_scale - 1e-9:
            raise SpecError(
                f"the target has {ratio:.2f}x the {name} {what} ({scale['target'][what]:,.0f} vs "
                f"{scale[reference][what]:,.0f}); min_scale asks for {spec.min_scale:g}x",
                where=where,
            )
    domains = tuple(spec.target_domains or sweep.domains)
    unknown = [d for d in domains if d not in sweep.domains]
    if unknown:
        raise SpecError(
            f"{unknown[0]!r} is not a domain of the sweep ({', '.join(sweep.domains)})", where="target_domains"
        )
    check_eval_tasks(spec.eval.tasks, sweep.domains)
    uri = tracking_uri_of(spec.mlflow, spec.out_dir)
    if uri.startswith("sqlite:///"):
        spec.out_dir.mkdir(parents=True, exist_ok=True)
    check_mlflow(uri)
    payload = spec.model_dump(
        mode="json", exclude={"sweep", "compare", "mlflow", "output_dir", "max_concurrent", "max_failures"}
    )
    key = content_key([payload, sweep.sweep_key, *([compare_spec.sweep_key(sweep.data_hash)] if compare_spec else [])])
    return ValidatePlan(
        spec=spec,
        sweep_spec=sweep_spec,
        sweep=sweep,
        compare_spec=compare_spec,
        target_proxy=target,
        target_budget=budget,
        backend=spec.backend or sweep_spec.backend,
        target_domains=domains,
        scale=scale,
        tracking_uri=uri,
        key=key,
    )


def _prepare_compare(spec: ValidateSpec, sweep_spec: SweepSpec, sweep: Prepared) -> SweepSpec:
    """The `compare` sweep, checked like the sweep itself: static, on the same corpus and domains."""
    assert spec.compare is not None
    compare_spec = load_spec(spec.compare, where="compare" if isinstance(spec.compare, dict) else None)
    other = prepare(compare_spec)
    if other.phased:
        raise SpecError(
            "the compared sweep must be static (its mixture is trained as a baseline); put the phased one "
            "under `sweep`",
            where="compare.space.phases",
        )
    if other.data_hash != sweep.data_hash or other.domains != sweep.domains:
        raise SpecError(
            f"the compared sweep must read the same corpus and domains as the sweep ({sweep_spec.corpus})",
            where="compare.corpus",
        )
    if compare_spec.out_dir == sweep_spec.out_dir:
        raise SpecError("the compared sweep writes to the sweep's own folder: give it another name", where="compare")
    return compare_spec


def _scale(cfg: Any, tokens: int) -> dict[str, float]:
    counts = cfg.param_counts()
    return {"params": float(counts.total), "active": float(counts.active), "tokens": float(tokens)}


@dataclass(frozen=True)
class Candidate:
    name: str
    role: str  # "recommended" | "baseline" | "rank"
    mixture: Mixture


def exported_weights(summary: dict[str, Any]) -> dict[str, float]:
    """The weights a sweep exported (`summary.json`): the proposal's, or the best trial's when its
    confirmation found the proposal worse. A phased sweep's are over the cells `p<k>.<domain>`."""
    exported = (summary.get("confirm") or {}).get("exported")
    return dict(summary["best"]["weights"] if exported == "best_trial" else summary["proposal"]["weights"])


def choose_mixtures(
    plan: ValidatePlan,
    summary: dict[str, Any],
    results: list[TrialResult],
    compare: dict[str, Any] | None = None,
) -> list[Candidate]:
    """The recommendation, the baselines (with `compare`, the summary of the `compare` sweep: its
    exported mixture too), and sweep trials (worst first, spread over the ranking) until `rank_mixtures`
    are chosen. A mixture equal to one already chosen is not trained twice. In a phased sweep every
    candidate is a schedule over the cells: a static baseline is the same mixture in every phase, with
    the recommendation's phase ends."""
    sweep = plan.sweep
    cells, domains = sweep.cells, sweep.domains
    space = sweep.space.base if isinstance(sweep.space, PhasedSpace) else sweep.space
    assert space is not None
    tokens = dict(zip(domains, cast(Sequence[float], space.tokens)))  # prepare() gives a list

    def of(weights: dict[str, float]) -> Mixture:
        return Mixture([(d, float(weights.get(d, 0.0))) for d in cells])

    recommended = of(exported_weights(summary))
    untils = sweep.schedule(recommended).untils if sweep.phased else (1.0,)

    def static(weights: dict[str, float]) -> Mixture:
        mixture = Mixture([(d, float(weights.get(d, 0.0))) for d in domains])
        return Schedule(tuple(Phase(u, mixture) for u in untils)).flat() if sweep.phased else mixture

    pool = {
        "uniform": static({d: 1.0 for d in domains}),
        "natural": static({d: float(tokens[d]) for d in domains}),
        "best": of(summary["best"]["weights"]),
    }
    chosen = [Candidate("recommended", "recommended", recommended)]
    for name in plan.spec.baselines:
        chosen.append(Candidate(name, "baseline", pool[name]))
    if compare is not None and plan.compare_spec is not None:
        chosen.append(Candidate(plan.compare_spec.name, "baseline", static(exported_weights(compare))))
    out: list[Candidate] = []
    for c in chosen:
        if all(o.mixture.key != c.mixture.key for o in out):
            out.append(c)
    ranked = sorted((r for r in results if r.ok), key=lambda r: float(r.objective or 0.0), reverse=True)
    ranked = [r for r in ranked if all(o.mixture.key != r.mixture.key for o in out)]
    need = max(0, plan.spec.rank_mixtures - len(out))
    if need and ranked:
        step = len(ranked) / need
        picks = sorted({min(len(ranked) - 1, int(i * step)) for i in range(need)})
        for i in picks:
            out.append(Candidate(f"proxy-{ranked[i].trial_key[:8]}", "rank", of(dict(ranked[i].mixture.pairs))))
    return out


def objective(metrics: dict[str, float], domains: tuple[str, ...]) -> float | None:
    """Mean held-out bits per byte over `domains` (None when one is missing)."""
    values = [metrics.get(f"val.bpb.{d}") for d in domains]
    if any(v is None or not math.isfinite(v) for v in values):
        return None
    return float(sum(values)) / len(values)  # type: ignore[arg-type]


def scale_inputs(plan: ValidatePlan, scale: Scale, seed: int) -> tuple[ProxyConfig, TrainBudget, str, str]:
    """(proxy config, budget, backend, trials folder) of a scale and seed. The proxy scales use the
    sweep's own folder, so its trainings (seed = the sweep's budget seed) are found, not repeated."""
    if scale == "proxy":
        budget = dataclasses.replace(plan.sweep.budget, seed=seed)
        return plan.sweep.proxy, budget, plan.sweep_spec.backend, str(plan.sweep_spec.out_dir / "trials")
    if scale == "largest_proxy":
        assert plan.sweep.ladder is not None
        rung = plan.sweep.ladder.largest
        budget = dataclasses.replace(rung.budget, seed=seed)
        return rung.proxy, budget, plan.sweep_spec.backend, str(plan.sweep_spec.out_dir / "trials")
    budget = dataclasses.replace(plan.target_budget, seed=seed)
    return plan.target_proxy, budget, plan.backend, str(plan.spec.out_dir / "trials")


def key_of(plan: ValidatePlan, c: Candidate, scale: Scale, seed: int) -> str:
    proxy, budget, backend, _ = scale_inputs(plan, scale, seed)
    eval_spec = plan.spec.eval.model_dump() if scale == "target" else {}
    return trial_key(
        c.mixture,
        proxy=proxy,
        budget=budget,
        data_hash=plan.sweep.data_hash,
        seed=seed,
        extra={
            "backend": backend,
            "eval": eval_spec,
            "scale": scale,
            "domains": list(plan.target_domains),
            # a phased sweep's trainings change mixture at each boundary, with a step or a ramp
            **({"ramp": plan.sweep_spec.space.ramp} if plan.sweep.phased else {}),
        },
    )


def scale_aware_predictions(
    plan: ValidatePlan,
    candidates: Sequence[Candidate],
    trials: Sequence[TrialResult],
    scale_runs: Sequence[TrialResult],
) -> dict[str, Any] | None:
    """A ladder sweep's own model of (mixture, scale), fitted again as the sweep fitted it (its surrogate
    and seed, on its trials at the smallest scale and its runs at the larger ones: `scale_runs`, told apart by
    their keys), and its prediction for every candidate at the validation target's size. That is the
    ranking the sweep's proposal trusted: `validate_report` holds it against the target's. None without a
    ladder; `{"note"}` when the ladder's runs cannot support a fit."""
    ladder = plan.sweep.ladder
    if ladder is None:
        return None
    sweep = plan.sweep
    by_scale: list[list[TrialResult]] = [list(trials)] + [[] for _ in ladder.rungs[1:]]
    for r in scale_runs:
        for rung in ladder.rungs[1:]:
            if r.trial_key == sweep.trial_key(r.mixture, scale=rung.index):
                by_scale[rung.index].append(r)
    results = LadderResults(ladder, by_scale)
    if results.unusable is not None:
        return {"note": results.unusable}
    model, chosen, cv = fit_scale_model(
        results, sweep.domains, surrogate=plan.sweep_spec.search.surrogate, seed=plan.sweep_spec.seed
    )
    at = ModelScale(plan.scale["target"]["params"], plan.scale["target"]["tokens"])
    X = np.array([[c.mixture.share(d) for d in sweep.domains] for c in candidates], dtype=float)
    predicted = model.at(at).predict_mean(X)
    return {
        "predicted": {c.name: float(p) for c, p in zip(candidates, predicted)},
        "surrogate": chosen,
        "objective": _objective_text(plan.sweep_spec),
        "maximize": plan.sweep_spec.objective.maximize,
        "runs_per_scale": [sum(r.ok for r in runs) for runs in by_scale],
        "at": {"params": at.params, "tokens": at.tokens},
        "sweep_target": {"params": ladder.target.params, "tokens": ladder.target.tokens},
        "cv_largest_scale": {
            k: v for k, v in dataclasses.asdict(cv).items() if not isinstance(v, float) or math.isfinite(v)
        },
        "text": f"{chosen} fitted on {' + '.join(str(sum(r.ok for r in runs)) for runs in by_scale)} runs "
        f"(scales {', '.join(format_count(r.params) for r in ladder.rungs)} params), predicted at "
        f"{format_count(at.params)} params x {format_count(at.tokens)} tokens",
    }


def _objective_text(spec: SweepSpec) -> str:
    o = spec.objective
    text = " + ".join(f"{w:g} {m}" for m, w in o.weights.items()) if o.weights else o.metric
    return f"{text} ({'higher' if o.maximize else 'lower'} is better)"
