"""The end of a sweep as plain steps: rank the finished trials, propose the mixture for the big run
(`recommend`), and write it where a user runs it (`export`: our YAML, a Megatron data_path over the
corpus files, an OpenSeek task YAML from a template)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np

from flows.steps.ladder import LadderResults, propose_at_target
from flows.steps.prepare import Prepared
from flows.steps.report import rank
from flows.steps.search import observations
from flows.steps.spec import ObjectiveSpec, SpecError
from flows.trials.result import TrialResult
from mixture_search.catalog import load_catalog
from mixture_search.formats import MixtureDoc, read_mixture, write_mixture
from mixture_search.mixture import Mixture
from mixture_search.recommend import recommend_mixture
from mixture_search.schedule import Schedule
from mixture_search.schedule_formats import write_schedule

#: decimals of the exported shares (what a person reads and Megatron needs; Megatron normalises them again)
EXPORT_DIGITS = 6

#: a surrogate is fitted for the proposal from this many finished trials on; below it the best trial wins
MIN_TRIALS_TO_PROPOSE = 4


def recommend(
    prepared: Prepared,
    results: list[TrialResult],
    *,
    noise_std: float | None = None,
    ladder: LadderResults | None = None,
) -> tuple[list[TrialResult], Mixture, dict[str, Any]]:
    """(finished trials best first, the recommended mixture, the sweep's summary). `results` are one
    observation per mixture (with replicates: the means over seeds, `flows.steps.replicates`), and
    `noise_std` the measured seed noise, the run noise of the proposal's interval (None: the CV RMSE).
    With a ladder (`ladder`: every scale's runs) see `recommend_on_ladder`."""
    if ladder is not None and ladder.unusable is None:
        return recommend_on_ladder(prepared, results, ladder)
    spec = prepared.spec
    ok = [r for r in results if r.ok]
    ranked = rank(ok, maximize=spec.objective.maximize)
    if not ranked:
        raise SpecError(
            "no trial finished, so there is nothing to rank or propose (see the failed trials in MLflow)",
            where=spec.name,
        )
    best = ranked[0]
    summary: dict[str, Any] = {
        "sweep": spec.name,
        "trials": len(results),
        "finished": len(ok),
        "failed": sum(r.status == "failed" for r in results),
        "maximize": spec.objective.maximize,
        "best": {
            "trial": best.trial_key,
            "objective": best.objective,
            "weights": dict(zip(best.mixture.names, best.mixture.normalized)),
        },
    }
    if len(ok) >= MIN_TRIALS_TO_PROPOSE:
        X, y = observations(prepared, results)
        search = spec.search
        parts = objective_parts(spec.objective, ok)
        recommendation = recommend_mixture(
            prepared.space,
            X,
            y,
            parts=parts[0] if parts else None,
            part_weights=parts[1] if parts else None,
            surrogate=search.surrogate,
            maximize=spec.objective.maximize,
            seed=spec.seed,
            n_samples=search.proposal_samples,
            trust_region=search.trust_region,
            extrapolate=search.extrapolate,
            uncertainty=search.uncertainty,
            noise_std=noise_std,
        )
        recommended = recommendation.proposal.mixture
        summary["proposal"] = recommendation.to_dict()
    else:
        recommended = best.mixture
        summary["proposal"] = {
            "weights": summary["best"]["weights"],
            "note": f"fewer than {MIN_TRIALS_TO_PROPOSE} finished trials: the best one is recommended",
        }
    summary["proxy"], summary["budget"] = prepared.proxy.to_dict(), prepared.budget.to_dict()
    if ladder is not None:  # a ladder whose largest scale failed: the scale-free proposal, and why
        confirm = 2 * spec.confirm.seeds if spec.confirm.enabled else 0
        summary["ladder"] = {**ladder.ladder.to_dict(confirm), "note": ladder.unusable}
    if prepared.phased:  # the schedules behind the flat weights, phase by phase
        summary["phases"] = len(prepared.schedule(best.mixture).phases)
        summary["best"]["schedule"] = schedule_dict(prepared.schedule(best.mixture))
        summary["proposal"]["schedule"] = schedule_dict(prepared.schedule(recommended))
    return ranked, recommended, summary


def recommend_on_ladder(
    prepared: Prepared, results: list[TrialResult], ladder: LadderResults
) -> tuple[list[TrialResult], Mixture, dict[str, Any]]:
    """A ladder's recommendation: the proposal optimises the prediction at the target's scale
    (`flows.steps.ladder.propose_at_target`), and the best is the largest proxy scale's best run (the
    confirmation compares the two there)."""
    spec, search = prepared.spec, prepared.spec.search
    target = propose_at_target(
        prepared.space,
        prepared.domains,
        ladder,
        surrogate=search.surrogate,
        maximize=spec.objective.maximize,
        seed=spec.seed,
        n_samples=search.proposal_samples,
        trust_region=search.trust_region,
        extrapolate=search.extrapolate,
        uncertainty=search.uncertainty,
    )
    best = target.ranked[0]
    summary: dict[str, Any] = {
        "sweep": spec.name,
        "trials": len(results),
        "finished": sum(r.ok for r in results),
        "failed": sum(r.status == "failed" for r in results),
        "maximize": spec.objective.maximize,
        "best": {
            "trial": best.trial_key,
            "objective": best.objective,
            "scale": ladder.ladder.largest.index,
            "weights": dict(zip(best.mixture.names, best.mixture.normalized)),
        },
        "proposal": target.summary,
        "ladder": ladder.ladder.to_dict(2 * spec.confirm.seeds if spec.confirm.enabled else 0),
        "proxy": prepared.proxy.to_dict(),
        "budget": prepared.budget.to_dict(),
    }
    return target.ranked, target.mixture, summary


def schedule_dict(schedule: Schedule) -> dict[str, Any]:
    """`{phases: [{until, weights}]}`: each phase's end and normalised shares (as our schedule YAML)."""
    return {
        "phases": [
            {"until": p.until, "weights": dict(zip(p.mixture.names, p.mixture.normalized))} for p in schedule.phases
        ]
    }


def objective_parts(
    objective: ObjectiveSpec, results: list[TrialResult]
) -> tuple[dict[str, np.ndarray], dict[str, float]] | None:
    """(metric columns, weights) when the objective is a weighted sum of metrics every trial reports:
    `objective.weights`, or `val.<loss|bpb>.mean` as the mean of the per-domain values. None otherwise."""
    if objective.weights:
        weights = dict(objective.weights)
    else:
        mean = re.fullmatch(r"val\.(loss|bpb)\.mean", objective.metric)
        if mean is None or not results:
            return None
        prefix = f"val.{mean.group(1)}."
        names = sorted(set.intersection(*(set(r.metrics) for r in results)))
        names = [n for n in names if n.startswith(prefix) and n != objective.metric]
        if len(names) < 2:
            return None
        weights = {n: 1.0 / len(names) for n in names}
    columns = {n: np.array([r.metrics.get(n, np.nan) for r in results], dtype=np.float64) for n in weights}
    return columns, weights


def export(prepared: Prepared, mixture: Mixture, folder: Path) -> list[Path]:
    """The recommendation as our YAML, a Megatron data_path over the corpus files, and (with a
    template) an OpenSeek task YAML; for a phased sweep, its schedule (`export_schedule`)."""
    if prepared.phased:
        return export_schedule(prepared, prepared.schedule(mixture), folder)
    spec = prepared.spec
    mixture = Mixture([(n, round(w, EXPORT_DIGITS)) for n, w in zip(mixture.names, mixture.normalized)])
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


def export_schedule(prepared: Prepared, schedule: Schedule, folder: Path) -> list[Path]:
    """A phased sweep's recommendation in the schedule formats (`mixture_search.schedule_formats`): our
    schedule YAML (domains), a Megatron stage script over the corpus files (one --data-path and
    --train-samples per stage, each resuming from the previous stage's checkpoint), the EasyDeL-style
    step schedule of the proxy run the trials trained, and with a template one OpenSeek experiment +
    task config per stage. Stage lengths: `export.train_samples`, else the template's (OpenSeek) or the
    proxy run's samples (Megatron)."""
    spec = prepared.spec
    rounded = [
        (p.until, Mixture([(n, round(w, EXPORT_DIGITS)) for n, w in zip(p.mixture.names, p.mixture.normalized)]))
        for p in schedule.phases
    ]
    meta = {
        "sweep": spec.name,
        "sweep_key": prepared.sweep_key,
        "data_hash": prepared.data_hash,
        "corpus": str(prepared.corpus_dir),
    }
    ours = Schedule.from_pairs(rounded, name=f"{spec.name}-recommended", metadata=meta)
    written = write_schedule(ours, "yaml", folder / "schedule.yaml")
    catalog = load_catalog(spec.export.catalog) if spec.export.catalog else prepared.catalog
    base = prepared.catalog.base_dir or prepared.corpus_dir
    files = Schedule.from_pairs([(u, catalog.expand(m)) for u, m in rounded], name=ours.name)
    absolute = Schedule.from_pairs(
        [
            (
                p.until,
                Mixture(
                    (str(Path(base) / n) if not Path(n).is_absolute() and not spec.export.catalog else n, w)
                    for n, w in p.mixture.pairs
                ),
            )
            for p in files.phases
        ],
        name=ours.name,
    )
    steps, batch = prepared.total_steps, prepared.budget.global_batch
    samples = spec.export.train_samples or steps * batch
    written += write_schedule(absolute, "megatron", folder / "megatron_stages.sh", train_samples=samples)
    written += write_schedule(ours, "easydel", folder / "easydel_schedule.yaml", steps=steps, samples_per_step=batch)
    if spec.export.openseek_template is not None:
        written += write_schedule(
            files,
            "openseek",
            folder / "openseek",
            template=spec.export.openseek_template,
            train_samples=spec.export.train_samples,
        )
    return written


__all__ = [
    "MIN_TRIALS_TO_PROPOSE",
    "export",
    "export_schedule",
    "objective_parts",
    "recommend",
    "recommend_on_ladder",
    "schedule_dict",
]
