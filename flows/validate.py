"""The Prefect flow `validate`: does a sweep's recommended mixture still win when the model grows?

1. The sweep of `ValidateSpec.sweep` runs as a subflow (it resumes, so a finished sweep only redoes
   its report).
2. The mixtures: the recommendation, the baselines (uniform, natural = token-proportional, the best
   proxy trial) and, for the rank agreement, a few more of the sweep's trials (worst first, so the
   ranking spans the range).
3. Each mixture is trained with every seed at the proxy scale (the sweep's own proxy and budget, so
   the sweep's trials are reused) and at the target scale (a larger preset and budget, at least
   `min_scale` times the proxy's parameters and tokens), on Ray Tune through `flows.trials.run_round`,
   one round per scale and seed; target models are then evaluated with LightEval's local tasks.
4. `flows.validate_report` turns the runs into means with error bars, paired differences, Spearman's
   rho of proxy vs target ranking and a verdict, written as `validation.json`, plots and a
   self-contained `report.html`, and logged to MLflow (a parent run, one child per training).

Every training is keyed (trial key in MLflow, training folder by `trainers.train`), so a rerun trains
nothing that finished.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from ruamel.yaml import YAML
from ruamel.yaml.error import MarkedYAMLError

from flows.results import TrialResult, trial_key
from flows.spec import EvalSpec, MlflowSpec, ResourcesSpec, SpecError, SweepSpec, load_spec
from flows.validate_report import RunRecord, Scale
from mixture_search.mixture import Mixture

Baseline = Literal["uniform", "natural", "best"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class TargetSpec(_Strict):
    preset: str = Field("moe_cpu_16m", description="A preset of trainers.presets for the larger model.")
    overrides: dict[str, Any] = Field(default_factory=dict, description="Field overrides, e.g. {seq_len: 128}.")


def _default_budget() -> dict[str, Any]:
    return {"steps": 160, "micro_batch": 4, "global_batch": 8, "eval_interval": 80, "eval_windows_per_domain": 16}


class ValidateSpec(_Strict):
    """What `mixsweep validate` runs; unknown keys and bad values are one-line errors naming the field."""

    name: str = Field(..., min_length=1, pattern=r"^[A-Za-z0-9_.-]+$")
    sweep: str | dict[str, Any] = Field(..., description="The sweep: a SweepSpec YAML path, or the spec inline.")
    target: TargetSpec = Field(default_factory=TargetSpec)
    budget: dict[str, Any] = Field(
        default_factory=_default_budget, description="TrainBudget of the target (no seed: see seeds)."
    )
    backend: Literal["auto", "megatron", "deepspeed"] | None = Field(None, description="Default: the sweep's.")
    seeds: list[int] = Field([0, 1], description="Training seeds (initialisation and data order) of every mixture.")
    baselines: list[Baseline] = Field(["uniform", "natural", "best"], description="Compared with the recommendation.")
    target_domains: list[str] | None = Field(None, description="Domains of the objective (default: the sweep's).")
    rank_mixtures: int = Field(5, ge=3, le=12, description="Mixtures trained at both scales for Spearman.")
    eval: EvalSpec = Field(default_factory=lambda: EvalSpec(tasks=["local"], max_docs=8))
    min_scale: float = Field(4.0, ge=1.0, description="Target/proxy ratio required of parameters and tokens.")
    resources: ResourcesSpec = Field(default_factory=ResourcesSpec)
    max_concurrent: int = Field(2, ge=1)
    max_failures: int = Field(2, ge=0)
    mlflow: MlflowSpec = Field(default_factory=lambda: MlflowSpec(experiment="mixsweep-validate"))
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

    @field_validator("budget")
    @classmethod
    def _budget(cls, v: dict[str, Any]) -> dict[str, Any]:
        if "seed" in v:
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


# ------------------------------------------------------------------------------------------------
# plain steps (no Prefect): the checks, the mixtures, the trial plans


@dataclass
class ValidatePlan:
    """A checked validate spec with the sweep's prepared inputs and both scales resolved."""

    spec: ValidateSpec
    sweep_spec: SweepSpec
    sweep: Any  # flows.sweep.Prepared
    target_proxy: dict[str, Any]
    target_budget: dict[str, Any]
    backend: str
    target_domains: tuple[str, ...]
    scale: dict[str, dict[str, float]]  # {"proxy"|"target": {params, active, tokens}}
    tracking_uri: str
    key: str


def prepare_validation(spec: ValidateSpec) -> ValidatePlan:
    """The sweep's checks, then the target's: preset, budget, domains, the scale-up ratio."""
    from flows.checks import check_before_training, check_mlflow
    from flows.sweep import prepare
    from trainers.budget import TrainBudget
    from trainers.config import ProxyConfig
    from trainers.errors import ConfigError
    from trainers.presets import PRESETS, preset

    sweep_spec = load_spec(spec.sweep, where="sweep" if isinstance(spec.sweep, dict) else None)
    sweep = check_before_training(sweep_spec, prepare)
    if spec.target.preset not in PRESETS:
        raise SpecError(f"unknown preset {spec.target.preset!r} (known: {', '.join(PRESETS)})", where="target.preset")
    vocab = int(sweep.proxy["vocab_size"])
    try:
        target = preset(spec.target.preset, **spec.target.overrides).resolve_vocab(vocab)
    except ConfigError as exc:  # it names the field as proxy.<field>: here it is the target's
        raise SpecError(str(exc).replace("proxy.", "target.overrides.", 1), where=None) from None
    budget = TrainBudget.from_dict(spec.budget)
    proxy = ProxyConfig.from_dict(sweep.proxy)
    proxy_budget = TrainBudget.from_dict(sweep.budget)
    scale = {
        "proxy": _scale(proxy, proxy_budget.total_steps(proxy.seq_len) * proxy_budget.global_batch * proxy.seq_len),
        "target": _scale(target, budget.total_steps(target.seq_len) * budget.global_batch * target.seq_len),
    }
    for what, where in (("params", "target"), ("tokens", "budget")):
        ratio = scale["target"][what] / scale["proxy"][what]
        if ratio < spec.min_scale - 1e-9:
            raise SpecError(
                f"the target has {ratio:.2f}x the proxy's {what} ({scale['target'][what]:,.0f} vs "
                f"{scale['proxy'][what]:,.0f}); min_scale asks for {spec.min_scale:g}x",
                where=where,
            )
    domains = tuple(spec.target_domains or sweep.domains)
    unknown = [d for d in domains if d not in sweep.domains]
    if unknown:
        raise SpecError(
            f"{unknown[0]!r} is not a domain of the sweep ({', '.join(sweep.domains)})", where="target_domains"
        )
    uri = spec.mlflow.tracking_uri or os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{spec.out_dir / 'mlflow.db'}"
    if uri.startswith("sqlite:///"):
        spec.out_dir.mkdir(parents=True, exist_ok=True)
    check_mlflow(uri)
    payload = spec.model_dump(mode="json", exclude={"sweep", "mlflow", "output_dir", "max_concurrent", "max_failures"})
    key = hashlib.sha256(json.dumps([payload, sweep.sweep_key], sort_keys=True).encode()).hexdigest()[:16]
    return ValidatePlan(
        spec=spec,
        sweep_spec=sweep_spec,
        sweep=sweep,
        target_proxy=target.to_dict(),
        target_budget=budget.to_dict(),
        backend=spec.backend or sweep_spec.backend,
        target_domains=domains,
        scale=scale,
        tracking_uri=uri,
        key=key,
    )


def _scale(cfg: Any, tokens: int) -> dict[str, float]:
    counts = cfg.param_counts()
    return {"params": float(counts.total), "active": float(counts.active), "tokens": float(tokens)}


@dataclass(frozen=True)
class Candidate:
    name: str
    role: str  # "recommended" | "baseline" | "rank"
    mixture: Mixture


def choose_mixtures(plan: ValidatePlan, summary: dict[str, Any], results: list[TrialResult]) -> list[Candidate]:
    """The recommendation, the baselines, and sweep trials (worst first, spread over the ranking) until
    `rank_mixtures` are chosen. A mixture equal to one already chosen is not trained twice."""
    domains = plan.sweep.domains
    tokens = dict(zip(domains, plan.sweep.space.tokens))

    def of(weights: dict[str, float]) -> Mixture:
        return Mixture([(d, float(weights.get(d, 0.0))) for d in domains])

    pool = {
        "uniform": Mixture([(d, 1.0) for d in domains]),
        "natural": Mixture([(d, float(tokens[d])) for d in domains]),
        "best": of(summary["best"]["weights"]),
    }
    chosen = [Candidate("recommended", "recommended", of(summary["proposal"]["weights"]))]
    for name in plan.spec.baselines:
        chosen.append(Candidate(name, "baseline", pool[name]))
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


def scale_inputs(plan: ValidatePlan, scale: Scale, seed: int) -> tuple[dict[str, Any], dict[str, Any], str, str]:
    """(proxy config, budget, backend, trials folder) of a scale and seed. The proxy scale uses the
    sweep's own folder, so its trainings (seed = the sweep's budget seed) are found, not repeated."""
    if scale == "proxy":
        budget = {**plan.sweep.budget, "seed": seed}
        return plan.sweep.proxy, budget, plan.sweep_spec.backend, str(plan.sweep_spec.out_dir / "trials")
    budget = {**plan.target_budget, "seed": seed}
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
        extra={"backend": backend, "eval": eval_spec, "scale": scale, "domains": list(plan.target_domains)},
    )


# ------------------------------------------------------------------------------------------------
# tasks


@task(name="check-validate-spec-and-data", retries=0)
def check_validation(spec: ValidateSpec) -> ValidatePlan:
    return prepare_validation(spec)


@task(name="choose-mixtures")
def choose(plan: ValidatePlan, summary: dict[str, Any]) -> list[Candidate]:
    results_file = plan.sweep_spec.out_dir / "results.json"
    results = [TrialResult.from_dict(r) for r in json.loads(results_file.read_text(encoding="utf-8"))]
    return choose_mixtures(plan, summary, results)


@task(name="train-mixtures", retries=1, retry_delay_seconds=5)
def train_mixtures(
    plan: ValidatePlan, candidates: list[Candidate], scale: Scale, seed: int, tracker: Any
) -> list[RunRecord]:
    """One Ray Tune round: every candidate at `scale` with `seed` (finished ones are taken from MLflow)."""
    from flows.trials import RoundOptions, TrialContext, TrialPlan, run_round

    logger = get_run_logger()
    spec = plan.spec
    known = tracker.finished_trials()
    keys = {c.name: key_of(plan, c, scale, seed) for c in candidates}
    plans = []
    for c in candidates:
        if keys[c.name] in known:
            continue
        run_id = tracker.start_trial(
            keys[c.name],
            c.mixture,
            round_=spec.seeds.index(seed),
            sampler=c.role,
            params={"scale": scale, "seed": seed, "mixture": c.name, "preset": _preset_of(plan, scale)},
        )
        tracker.set_tags(
            run_id,
            {"mlflow.runName": f"{scale}-{c.name}-s{seed}", "scale": scale, "seed": str(seed), "mixture": c.name},
        )
        plans.append(TrialPlan(keys[c.name], c.mixture, run_id, spec.seeds.index(seed), c.name))
    logger.info("%s scale, seed %d: %d of %d mixtures to train", scale, seed, len(plans), len(candidates))
    proxy, budget, backend, trials_dir = scale_inputs(plan, scale, seed)
    ctx = TrialContext(
        corpus=str(plan.sweep.corpus_dir),
        domains=plan.sweep.domains,
        proxy=proxy,
        budget=budget,
        backend=backend,
        trials_dir=trials_dir,
        tracking_uri=plan.tracking_uri,
        objective_weights={f"val.bpb.{d}": 1.0 / len(plan.target_domains) for d in plan.target_domains},
        eval_tasks=tuple(spec.eval.tasks) if scale == "target" else (),
        eval_max_docs=spec.eval.max_docs,
        workers=spec.resources.workers,
        cpus_per_worker=spec.resources.cpus,
        gpus_per_worker=spec.resources.gpus,
    )
    ended: set[str] = set()

    def done(result: TrialResult) -> None:
        _end(tracker, result)
        ended.add(result.trial_key)
        logger.info("%s %s s%d: %s objective %s", scale, result.sampler, seed, result.status, result.objective)

    opts = RoundOptions(
        cpus=spec.resources.cpus,
        gpus=spec.resources.gpus,
        max_concurrent=spec.max_concurrent,
        max_failures=spec.max_failures,
        ray_address=plan.sweep_spec.ray_address,
        storage=spec.out_dir / "ray",
        name=f"{scale}_seed{seed}",
        on_trial_done=done,
    )
    results = {r.trial_key: r for r in run_round(plans, ctx, opts)} if plans else {}
    for r in results.values():
        if r.trial_key not in ended:
            _end(tracker, r)
    records = []
    for c in candidates:
        r = results.get(keys[c.name]) or known.get(keys[c.name])
        if r is None:
            continue
        records.append(
            RunRecord(
                mixture=c.name,
                scale=scale,
                seed=seed,
                objective=objective(r.metrics, plan.target_domains) if r.status == "finished" else None,
                metrics=dict(r.metrics),
                trial_key=r.trial_key,
                run_id=r.run_id,
                wall_s=r.wall_s,
            )
        )
    return records


def _end(tracker: Any, result: TrialResult) -> None:
    """Final in MLflow. The converted model stays on disk (its path as the `hf_dir` tag), not copied."""
    hf_dir = result.paths.pop("hf_dir", None)
    tracker.end_trial(result.run_id or "", result)
    if hf_dir:
        tracker.set_tags(result.run_id or "", {"hf_dir": hf_dir})


def _preset_of(plan: ValidatePlan, scale: Scale) -> str:
    return plan.sweep_spec.proxy.preset if scale == "proxy" else plan.spec.target.preset


@task(name="report")
def report(
    plan: ValidatePlan,
    candidates: list[Candidate],
    records: list[RunRecord],
    summary: dict[str, Any],
    tracker: Any,
    runtime_s: float,
) -> dict[str, Any]:
    from flows.validate_report import (
        markdown_summary,
        plot_domain_bpb,
        plot_objective,
        plot_rank_agreement,
        render_html,
        summarize,
        table_rows,
    )

    spec, out = plan.spec, plan.spec.out_dir
    mixtures = [
        {"name": c.name, "role": c.role, "weights": dict(zip(c.mixture.names, c.mixture.normalized))}
        for c in candidates
    ]
    doc = summarize(records, mixtures, plan.target_domains)
    p, t = plan.scale["proxy"], plan.scale["target"]
    doc.update(
        {
            "name": spec.name,
            "sweep": plan.sweep_spec.name,
            "sweep_key": plan.sweep.sweep_key,
            "key": plan.key,
            "target_domains": list(plan.target_domains),
            "seeds": list(spec.seeds),
            "scale": plan.scale,
            "predicted": summary.get("proposal", {}).get("predicted"),
            "runtime_s": round(runtime_s, 1),
        }
    )
    doc["setup"] = {
        "sweep": f"{plan.sweep_spec.name}: {summary.get('finished')} proxy trials, {plan.sweep_spec.search.rounds} rounds",
        "proxy": f"{plan.sweep_spec.proxy.preset} {plan.sweep_spec.proxy.overrides or ''}: "
        f"{p['params'] / 1e6:.2f}M parameters ({p['active'] / 1e6:.2f}M active), {p['tokens']:,.0f} tokens",
        "target": f"{spec.target.preset} {spec.target.overrides or ''}: {t['params'] / 1e6:.2f}M parameters "
        f"({t['active'] / 1e6:.2f}M active), {t['tokens']:,.0f} tokens",
        "scale-up": f"{t['params'] / p['params']:.2f}x parameters, {t['tokens'] / p['tokens']:.2f}x tokens",
        "seeds": ", ".join(map(str, spec.seeds)),
        "objective": "mean held-out bits per byte over " + ", ".join(plan.target_domains),
        "LightEval tasks": ", ".join(spec.eval.tasks) or "none",
        "surrogate's prediction for the recommendation (proxy scale)": (
            f"{doc['predicted']:.4f}" if isinstance(doc["predicted"], (int, float)) else "-"
        ),
        "wall time of this run (finished trainings are reused)": f"{runtime_s / 60:.1f} min",
        "training + evaluation time (sum over trials, proxy / target)": (
            f"{doc['train_wall_s']['proxy'] / 60:.1f} / {doc['train_wall_s']['target'] / 60:.1f} min"
        ),
    }
    plots = out / "plots"
    images = {
        "target objective per mixture": plot_objective(doc, plots / "objective.png"),
        "per-domain bits per byte": plot_domain_bpb(doc, plan.target_domains, plots / "domain_bpb.png"),
        "proxy vs target rank agreement": plot_rank_agreement(doc, plots / "rank_agreement.png"),
    }
    (out / "validation.json").write_text(json.dumps(doc, indent=1, default=str))
    (out / "report.html").write_text(render_html(doc, images), encoding="utf-8")
    parent = tracker.parent_run()
    metrics = {f"target.{r['name']}": r["target"]["mean"] for r in doc["mixtures"] if r["target"]}
    metrics.update({f"delta.{c['baseline']}": c["delta"]["mean"] for c in doc["comparisons"] if c["delta"]})
    rho = doc["rank_agreement"]["spearman"]
    if rho is not None and math.isfinite(rho):
        metrics["spearman"] = rho
    tracker.log_metrics(parent, metrics)
    for name in ("validation.json", "report.html"):
        tracker.log_artifact(parent, out / name)
    for path in images.values():
        tracker.log_artifact(parent, path, "plots")
    create_table_artifact(key=_slug(f"{spec.name}-validation"), table=table_rows(doc), description="validation")
    create_markdown_artifact(key=_slug(f"{spec.name}-verdict"), markdown=markdown_summary(doc), description="verdict")
    return doc


def _slug(name: str) -> str:
    import re

    return re.sub(r"[^a-z0-9-]+", "-", name.lower()).strip("-")


# ------------------------------------------------------------------------------------------------
# the flow


@flow(name="validate", log_prints=True, validate_parameters=False)
def validate(spec: dict[str, Any] | str) -> dict[str, Any]:
    """Check a sweep's recommendation at a larger scale: `spec` is a ValidateSpec mapping or YAML path."""
    from flows.sweep import sweep
    from flows.tracking import SweepTracker

    started = time.perf_counter()
    parsed = load_validate_spec(spec)
    plan = check_validation(parsed)
    summary = sweep(plan.sweep_spec.model_dump(mode="json"))
    candidates = choose(plan, summary)
    tracker = SweepTracker(plan.tracking_uri, parsed.mlflow.experiment, sweep_name=parsed.name, sweep_key=plan.key)
    parent = tracker.parent_run({"spec": parsed.model_dump(mode="json"), "sweep_key": plan.sweep.sweep_key})
    tracker.set_tags(parent, {"mixsweep.kind": "validate", "sweep": plan.sweep_spec.name})
    records: list[RunRecord] = []
    for scale in ("proxy", "target"):
        for seed in parsed.seeds:
            records += train_mixtures(plan, candidates, scale, seed, tracker)
    doc = report(plan, candidates, records, summary, tracker, time.perf_counter() - started)
    tracker.finish_parent()
    get_run_logger().info("%s", doc["verdict"])
    return {"verdict": doc["verdict"], "report": str(parsed.out_dir / "report.html"), "runtime_s": doc["runtime_s"]}
