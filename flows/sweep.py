"""The Prefect flow `sweep`: rounds of suggest -> train/evaluate on Ray Tune -> observe + fit, then
propose, rank, report and export.

The flow is wiring. The work is in `mixture_search` (space, samplers, surrogates, proposal),
`trainers` (data, training) and `eval`; `flows.trials` runs the trials on Ray Tune and
`flows.tracking` keeps MLflow's books. A rerun of the same spec resumes: finished trials are found in
MLflow by their trial key and never retrained, candidate lists and sampler states are read back from
`<output_dir>/search_state.json`.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from prefect import flow, get_run_logger, task
from prefect.artifacts import (
    create_markdown_artifact,
    create_progress_artifact,
    create_table_artifact,
    update_progress_artifact,
)

from flows.checks import check_before_training
from flows.redact import redact_uri
from flows.report import (
    leaderboard_rows,
    plot_leaderboard,
    plot_loss_curves,
    plot_objective_vs_weights,
    plot_predicted_vs_actual,
    plot_simplex,
    rank,
    round_report,
)
from flows.results import TrialResult, trial_key
from flows.spec import SpecError, SweepSpec, load_spec
from flows.tracking import SweepTracker
from flows.trials import RoundOptions, TrialContext, TrialPlan, run_round
from mixture_search.mixture import Mixture


@dataclass
class Prepared:
    """A checked spec with everything derived from it and the corpus (plain, picklable values)."""

    spec: SweepSpec
    corpus_dir: Path
    domains: tuple[str, ...]
    data_hash: str
    sweep_key: str
    proxy: dict[str, Any]
    budget: dict[str, Any]
    params: int
    total_steps: int
    tracking_uri: str
    space: Any  # mixture_search.SearchSpace
    catalog: Any  # the corpus DomainCatalog (train split)


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
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps({"rounds": self.rounds, "samplers": self.samplers}))
        os.replace(tmp, self.path)


# ------------------------------------------------------------------------------------------------
# plain library-level steps (no Prefect): used by the tasks below and by `mixsweep sweep --dry-run`


def prepare(spec: SweepSpec) -> Prepared:
    """Check the spec against the corpus and the libraries; raises a one-line `MixSweepError`."""
    from mixture_search import SAMPLERS, SURROGATES, SearchSpace
    from trainers.budget import TrainBudget
    from trainers.data import Corpus
    from trainers.presets import preset

    corpus = Corpus.load(spec.corpus)
    catalog = corpus.catalog
    names = list(catalog.units("domain"))
    domains = tuple(spec.space.domains or names)
    unknown = [d for d in domains if d not in names]
    if unknown:
        raise SpecError(
            f"{unknown[0]!r} is not a domain of the corpus (it has {', '.join(names)})", where="space.domains"
        )
    for key in (*spec.space.bounds, *spec.space.pinned):
        if key not in domains:
            raise SpecError(
                f"{key!r} is not a domain of the sweep",
                where="space.bounds" if key in spec.space.bounds else "space.pinned",
            )
    tokens = catalog.tokens("domain")
    space = SearchSpace(
        domains=domains,
        tokens=[float(tokens[d] or 0) for d in domains],
        target_tokens=spec.space.target_tokens,
        max_epochs=spec.space.max_epochs,
        bounds=dict(spec.space.bounds),
        pinned=dict(spec.space.pinned),
        prior=None if spec.space.prior == "tokens" else [1.0] * len(domains),
    )
    SAMPLERS.build(spec.search.sampler, space=space, seed=spec.seed, **spec.search.options)
    if spec.search.adaptive and spec.search.rounds > 1:
        SAMPLERS.build(spec.search.adaptive, space=space, seed=spec.seed, **spec.search.adaptive_options)
    SURROGATES.build(spec.search.surrogate)
    proxy = preset(spec.proxy.preset, **spec.proxy.overrides).resolve_vocab(int(corpus.vocab_size))
    budget = TrainBudget.from_dict(spec.budget)
    _check_objective(spec, domains)
    if spec.export.openseek_template is not None:
        from mixture_search.formats import read_mixture

        read_mixture(spec.export.openseek_template)
    tracking_uri = (
        spec.mlflow.tracking_uri or os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{spec.out_dir / 'mlflow.db'}"
    )
    return Prepared(
        spec=spec,
        corpus_dir=Path(spec.corpus).resolve(),
        domains=domains,
        data_hash=str(corpus.data_hash),
        sweep_key=spec.sweep_key(str(corpus.data_hash)),
        proxy=proxy.to_dict(),
        budget=budget.to_dict(),
        params=int(proxy.param_counts().total),
        total_steps=budget.total_steps(proxy.seq_len),
        tracking_uri=tracking_uri,
        space=space,
        catalog=catalog,
    )


def _check_objective(spec: SweepSpec, domains: tuple[str, ...]) -> None:
    known = {"val.loss.mean", "val.bpb.mean", *(f"val.{k}.{d}" for k in ("loss", "bpb") for d in domains)}
    wanted = list(spec.objective.weights or {}) or [spec.objective.metric]
    for name in wanted:
        if name not in known and not (spec.eval.tasks and not name.startswith("val.")):
            raise SpecError(
                f"unknown metric {name!r} (e.g. val.bpb.mean, val.loss.<domain>, or a LightEval metric of eval.tasks)",
                where="objective",
            )
    if spec.early_stopping.enabled and spec.early_stopping.metric not in known:
        raise SpecError(f"unknown metric {spec.early_stopping.metric!r}", where="early_stopping.metric")


def check_ray(address: str | None) -> None:
    """Fail early, in one line, when an explicit Ray address does not answer."""
    if not address:
        return
    import ray

    try:
        ray.init(address=address, include_dashboard=False, log_to_driver=False, configure_logging=False)
    except Exception as exc:
        raise SpecError(
            f"cannot connect to Ray at {address!r}: {' '.join(str(exc).split())[:200]}", where="ray_address"
        ) from None


# ------------------------------------------------------------------------------------------------
# tasks


@task(name="check-spec-and-data", retries=0)
def check_inputs(spec: SweepSpec) -> Prepared:
    prepared = check_before_training(spec, prepare)
    check_ray(spec.ray_address)
    return prepared


@task(name="suggest-candidates")
def suggest(
    prepared: Prepared, state: SearchState, round_: int, results: dict[str, TrialResult]
) -> tuple[str, list[Mixture]]:
    spec = prepared.spec
    if round_ < len(state.rounds):  # planned before an interruption: the same candidates again
        entry = state.rounds[round_]
        return entry["sampler"], [Mixture([(n, w) for n, w in c]) for c in entry["candidates"]]
    name, sampler = _sampler_for(prepared, state, round_, results)
    candidates = sampler.suggest(spec.search.per_round)
    state.samplers[name] = {"state": sampler.state(), "observed": state.samplers.get(name, {}).get("observed", [])}
    state.rounds.append({"sampler": name, "candidates": [list(map(list, c.pairs)) for c in candidates]})
    state.save()
    return name, candidates


@task(name="run-trials", retries=1, retry_delay_seconds=5)
def run_trials(prepared: Prepared, plans: list[TrialPlan], round_: int, tracker: SweepTracker) -> list[TrialResult]:
    spec = prepared.spec
    logger = get_run_logger()
    progress_id = create_progress_artifact(
        progress=0.0, key=f"{_slug(spec.name)}-progress", description=f"round {round_ + 1}: trials finished"
    )
    ended: dict[str, TrialResult] = {}

    def on_done(result: TrialResult) -> None:
        # each trial is made final in MLflow as soon as it ends, so a killed sweep loses no finished trial
        tracker.end_trial(result.run_id or "", result)
        ended[result.trial_key] = result
        logger.info(
            "trial %s %s: objective %s %s", result.trial_key[:8], result.status, result.objective, result.error or ""
        )
        update_progress_artifact(artifact_id=progress_id, progress=100.0 * len(ended) / len(plans))  # type: ignore[arg-type]

    ctx = TrialContext(
        corpus=str(prepared.corpus_dir),
        domains=prepared.domains,
        proxy=prepared.proxy,
        budget=prepared.budget,
        backend=spec.backend,
        trials_dir=str(spec.out_dir / "trials"),
        tracking_uri=prepared.tracking_uri,
        objective_metric=spec.objective.metric,
        objective_weights=spec.objective.weights,
        maximize=spec.objective.maximize,
        early_stop_metric=spec.early_stopping.metric if spec.early_stopping.enabled else None,
        eval_tasks=tuple(spec.eval.tasks),
        eval_max_docs=spec.eval.max_docs,
        workers=spec.resources.workers,
        cpus_per_worker=spec.resources.cpus,
        gpus_per_worker=spec.resources.gpus,
    )
    opts = RoundOptions(
        cpus=spec.resources.cpus,
        gpus=spec.resources.gpus,
        max_concurrent=spec.max_concurrent,
        max_failures=spec.max_failures,
        asha={
            "grace_period": spec.early_stopping.grace_period,
            "reduction_factor": spec.early_stopping.reduction_factor,
        }
        if spec.early_stopping.enabled
        else None,
        ray_address=spec.ray_address,
        storage=spec.out_dir / "ray",
        name=f"round_{round_}",
        on_trial_done=on_done,
    )
    results = run_round(plans, ctx, opts)
    for r in results:
        if r.trial_key not in ended:
            tracker.end_trial(r.run_id or "", r)
    update_progress_artifact(artifact_id=progress_id, progress=100.0)  # type: ignore[arg-type]
    return results


@task(name="fit-surrogate")
def fit_surrogate(
    prepared: Prepared, results: list[TrialResult], round_: int, tracker: SweepTracker
) -> dict[str, Any] | None:
    from mixture_search import SURROGATES
    from mixture_search.surrogates import cross_validate_predictions

    ok = [r for r in results if r.ok]
    if len(ok) < 4:
        return None
    X = np.array([[r.mixture.share(d) for d in prepared.domains] for r in ok])
    y = np.array([float(r.objective or 0.0) for r in ok])
    folds = min(5, len(ok))
    # the CV of the same observations is not recomputed on a rerun: cached under a key of its inputs
    key = hashlib.sha256(
        X.tobytes() + y.tobytes() + f"{prepared.spec.search.surrogate}|{folds}|{prepared.spec.seed}".encode()
    ).hexdigest()[:16]
    cached = prepared.spec.out_dir / "cv" / f"{key}.json"
    if cached.is_file():
        stored = json.loads(cached.read_text(encoding="utf-8"))
        table, oof = stored["table"], stored["oof"]
    else:
        model = SURROGATES.build(prepared.spec.search.surrogate)
        cv, oof_array = cross_validate_predictions(model, X, y, folds=folds, seed=prepared.spec.seed)
        table = {k: (round(v, 4) if isinstance(v, float) else v) for k, v in _asdict(cv).items()}
        oof = [float(v) for v in np.asarray(oof_array)]
        cached.parent.mkdir(parents=True, exist_ok=True)
        cached.write_text(json.dumps({"table": table, "oof": oof}, default=str), encoding="utf-8")
    parent = tracker.parent_run()
    tracker.log_metrics(
        parent,
        {f"cv.{k}": float(v) for k, v in table.items() if isinstance(v, (int, float)) and not isinstance(v, bool)},
        step=round_,
    )
    plots = prepared.spec.out_dir / "plots"
    tracker.log_artifact(
        parent,
        plot_predicted_vs_actual(y, np.asarray(oof), str(table.get("surrogate")), plots / "predicted_vs_actual.png"),
        "plots",
    )
    return table


@task(name="propose-rank-export")
def finish(prepared: Prepared, results: list[TrialResult], tracker: SweepTracker) -> dict[str, Any]:
    from mixture_search import SURROGATES, propose

    spec = prepared.spec
    out = spec.out_dir
    ok = [r for r in results if r.ok]
    parent = tracker.parent_run()
    ranked = rank(ok, maximize=spec.objective.maximize)
    for i, r in enumerate(ranked, start=1):
        if r.run_id:
            tracker.set_tags(r.run_id, {"rank": str(i)})
    summary: dict[str, Any] = {
        "sweep": spec.name,
        "trials": len(results),
        "finished": len(ok),
        "failed": sum(r.status == "failed" for r in results),
        "maximize": spec.objective.maximize,
    }
    if not ranked:
        raise SpecError(
            "no trial finished, so there is nothing to rank or propose (see the failed trials in MLflow)",
            where=spec.name,
        )
    best = ranked[0]
    summary["best"] = {
        "trial": best.trial_key,
        "objective": best.objective,
        "weights": dict(zip(best.mixture.names, best.mixture.normalized)),
    }
    if len(ok) >= 4:
        X = np.array([[r.mixture.share(d) for d in prepared.domains] for r in ok])
        y = np.array([float(r.objective or 0.0) for r in ok])
        model = SURROGATES.build(spec.search.surrogate).fit(X, y)
        proposal = propose(
            model,
            prepared.space,
            n_samples=spec.search.proposal_samples,
            seed=spec.seed,
            maximize=spec.objective.maximize,
        )
        recommended = proposal.mixture
        summary["proposal"] = proposal.to_dict()
    else:
        recommended = best.mixture
        summary["proposal"] = {
            "weights": summary["best"]["weights"],
            "note": "fewer than 4 finished trials: the best one is recommended",
        }
    summary["exports"] = [str(p) for p in export(prepared, recommended, out / "recommended")]
    for p in summary["exports"]:
        tracker.log_artifact(parent, Path(p), "recommended")
    plots = out / "plots"
    for path in (
        plot_objective_vs_weights(results, prepared.domains, spec.objective.metric, plots / "objective_vs_weights.png")
        if ok
        else None,
        plot_loss_curves(results, plots / "loss_curves.png"),
        plot_leaderboard(results, plots / "leaderboard.png", maximize=spec.objective.maximize),
        plot_simplex(results, prepared.domains, plots / "simplex.png", proposal=recommended),
    ):
        if path is not None:
            tracker.log_artifact(parent, path, "plots")
    rows = leaderboard_rows(results, prepared.domains, maximize=spec.objective.maximize)
    tracker.log_artifact_text(parent, "leaderboard.json", json.dumps(rows, indent=1))
    create_table_artifact(
        key=f"{_slug(spec.name)}-leaderboard", table=rows, description=f"final leaderboard of {spec.name}"
    )
    yaml_text = Path(summary["exports"][0]).read_text()
    create_markdown_artifact(
        key=f"{_slug(spec.name)}-recommended",
        markdown=f"# Recommended mixture for `{spec.name}`\n\n```yaml\n{yaml_text}```\n",
        description="recommended mixture",
    )
    summary["proxy"], summary["budget"] = prepared.proxy, prepared.budget
    (out / "results.json").write_text(json.dumps([r.to_dict() for r in results], indent=1, default=str))
    (out / "summary.json").write_text(json.dumps(summary, indent=1, default=str))
    tracker.log_artifact(parent, out / "summary.json")
    return summary


def export(prepared: Prepared, mixture: Mixture, folder: Path) -> list[Path]:
    """The recommendation as our YAML, a Megatron data_path over the corpus files, and (with a
    template) an OpenSeek task YAML."""
    from mixture_search.catalog import load_catalog
    from mixture_search.formats import MixtureDoc, read_mixture, write_mixture

    spec = prepared.spec
    # shares to 6 decimals (what a person reads and Megatron needs); Megatron normalises them again
    mixture = Mixture([(n, round(w, 6)) for n, w in zip(mixture.names, mixture.normalized)])
    meta = {
        "sweep": spec.name,
        "sweep_key": prepared.sweep_key,
        "data_hash": prepared.data_hash,
        "corpus": str(prepared.corpus_dir),
    }
    doc = MixtureDoc(mixture, "yaml", name=f"{spec.name}-recommended", metadata=meta)
    written = write_mixture(doc, "yaml", folder / "mixture.yaml")
    catalog = load_catalog(spec.export.catalog) if spec.export.catalog else prepared.catalog
    files = catalog.expand(mixture)
    base = prepared.catalog.base_dir or prepared.corpus_dir
    absolute = Mixture(
        [
            (str(Path(base) / n) if not Path(n).is_absolute() and not spec.export.catalog else n, w)
            for n, w in files.pairs
        ]
    )
    written += write_mixture(MixtureDoc(absolute, "megatron"), "megatron", folder / "data_path.txt")
    if spec.export.openseek_template is not None:
        template = read_mixture(spec.export.openseek_template)
        written += write_mixture(MixtureDoc(files, "openseek"), "openseek", folder / "openseek", template=template)
    return written


# ------------------------------------------------------------------------------------------------
# the flow


@flow(name="sweep", log_prints=True, validate_parameters=False)
def sweep(spec: dict[str, Any] | str) -> dict[str, Any]:
    """Search the data mixture: `spec` is a SweepSpec as a mapping, a YAML file path, or YAML text."""
    parsed = load_spec(spec)
    prepared = check_inputs(parsed)
    logger = get_run_logger()
    tracker = SweepTracker(
        prepared.tracking_uri, parsed.mlflow.experiment, sweep_name=parsed.name, sweep_key=prepared.sweep_key
    )
    parent = tracker.parent_run(
        {
            "spec": parsed.model_dump(mode="json", exclude={"budget"}),
            "budget": prepared.budget,
            "data_hash": prepared.data_hash,
            "params": prepared.params,
        }
    )
    tracker.log_artifact_text(parent, "spec.yaml", parsed.to_yaml())
    known = tracker.finished_trials()
    if known:
        logger.info("resuming: %d trials already final in MLflow", len(known))
    state = SearchState.load(parsed.out_dir / "search_state.json")
    results: dict[str, TrialResult] = dict(known)
    for r in range(parsed.search.rounds):
        sampler_name, candidates = suggest(prepared, state, r, results)
        plans = []
        for m in candidates:
            key = trial_key(
                m,
                proxy=prepared.proxy,
                budget=prepared.budget,
                data_hash=prepared.data_hash,
                seed=parsed.seed,
                extra={"backend": parsed.backend, "eval": parsed.eval.model_dump()},
            )
            if key in results:
                continue
            run_id = tracker.start_trial(
                key,
                m,
                round_=r,
                sampler=sampler_name,
                params={
                    "proxy": parsed.proxy.preset,
                    "backend": parsed.backend,
                    "data_hash": prepared.data_hash,
                    "budget": prepared.budget,
                },
            )
            plans.append(TrialPlan(key, m, run_id, r, sampler_name))
        logger.info(
            "round %d/%d: %d candidates from %s, %d to train",
            r + 1,
            parsed.search.rounds,
            len(candidates),
            sampler_name,
            len(plans),
        )
        for res in run_trials(prepared, plans, r, tracker) if plans else []:
            results[res.trial_key] = res
        round_results = list(results.values())
        cv = fit_surrogate(prepared, round_results, r, tracker)
        rows = leaderboard_rows(round_results, prepared.domains, maximize=parsed.objective.maximize)
        create_table_artifact(
            key=f"{_slug(parsed.name)}-leaderboard-round-{r + 1}",
            table=rows,
            description=f"leaderboard after round {r + 1}",
        )
        report = round_report(
            sweep=parsed.name,
            round_=r,
            rounds=parsed.search.rounds,
            results=round_results,
            domains=prepared.domains,
            objective=parsed.objective.metric,
            maximize=parsed.objective.maximize,
            cv=cv,
            mlflow_url=_mlflow_url(prepared.tracking_uri, tracker),
        )
        create_markdown_artifact(
            key=f"{_slug(parsed.name)}-round-{r + 1}", markdown=report, description=f"round {r + 1} report"
        )
        tracker.log_artifact_text(parent, f"reports/round_{r + 1}.md", report)
    summary = finish(prepared, list(results.values()), tracker)
    tracker.finish_parent()
    summary["mlflow"] = _mlflow_url(prepared.tracking_uri, tracker)
    logger.info("recommended mixture: %s", summary["proposal"]["weights"])
    return summary


# ------------------------------------------------------------------------------------------------
# helpers


def _sampler_for(
    prepared: Prepared, state: SearchState, round_: int, results: dict[str, TrialResult]
) -> tuple[str, Any]:
    """The sampler of this round, restored from its saved state and told about every new result."""
    from mixture_search import SAMPLERS, Observation

    spec = prepared.spec.search
    adaptive = round_ > 0 and spec.adaptive is not None
    name = spec.adaptive if adaptive else spec.sampler
    assert name is not None
    options = spec.adaptive_options if adaptive else spec.options
    sampler = SAMPLERS.build(name, space=prepared.space, seed=prepared.spec.seed, **options)
    saved = state.samplers.get(name)
    if saved:
        sampler.restore(saved["state"])
    observed = set(saved["observed"]) if saved else set()
    new = [r for r in results.values() if r.trial_key not in observed and set(r.mixture.names) == set(prepared.domains)]
    if new:
        sampler.observe([Observation(r.mixture, r.objective if r.ok else None, r.metrics) for r in new])
        state.samplers[name] = {"state": sampler.state(), "observed": sorted(observed | {r.trial_key for r in new})}
    return name, sampler


def _slug(name: str) -> str:
    return re.sub(r"[^a-z0-9-]+", "-", name.lower()).strip("-") or "sweep"


def _mlflow_url(uri: str, tracker: SweepTracker) -> str | None:
    if not uri.startswith("http"):
        return None
    return f"{redact_uri(uri).rstrip('/')}/#/experiments/{tracker.experiment_id}"


def _asdict(obj: Any) -> dict[str, Any]:
    import dataclasses

    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {k: v for k, v in dataclasses.asdict(obj).items() if not (isinstance(v, float) and math.isnan(v))}
    return dict(obj)
