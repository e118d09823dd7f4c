"""`mixsweep fit|predict|suggest|propose`: mixture search over a CSV of past runs, no sweep needed."""

from __future__ import annotations

import json
from collections.abc import Sequence
from contextlib import AbstractContextManager
from enum import Enum
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import typer
from rich.table import Table

from flows.cli.common import console, error_console, user_errors
from mixture_search.errors import SearchError
from mixture_search.formats import MixtureDoc, read_mixture, write_mixture
from mixture_search.offline import (
    FittedRuns,
    best_run,
    build_space,
    check_target_scale,
    fit_runs,
    pareto_runs,
    predict_rows,
    propose_runs,
    read_scales,
    repeat_decay_weights,
    suggest_runs,
)
from mixture_search.proposal import DEFAULT_EXTRAPOLATE, DEFAULT_TRUST_REGION, DEFAULT_UNCERTAINTY
from mixture_search.runs import read_like, read_runs, read_tokens, write_csv
from mixture_search.samplers import SAMPLERS
from mixture_search.space import SearchSpace
from mixture_search.surrogates import SURROGATES, save_model
from mixture_search.surrogates.cv import CVResult
from mixture_search.surrogates.scale import AXES, Scale
from mixture_search.units import parse_count


def _choices(registry: Any) -> str:
    return "; ".join(f"[bold]{name}[/]: {text}" for name, text in registry.describe().items())


RunsArg = Annotated[
    Path,
    typer.Argument(
        help="CSV of past runs: one row per run, one weight column per domain (shares, percentages or "
        "token counts; each row is normalised) and metric columns. Empty metric cells mark failed runs.",
        show_default=False,
    ),
]
TargetOpt = Annotated[
    str,
    typer.Option(
        "--target",
        "-t",
        help="Metric column to optimise. Several, comma-separated: one model per metric and the objective "
        "is their mean (or --objective-weights).",
        show_default=False,
    ),
]
PrefixOpt = Annotated[
    str | None,
    typer.Option(
        "--weight-prefix",
        "-p",
        help="Weight columns are those starting with this prefix; the domain is the rest of the name "
        "(default: recognised in the header, e.g. weight_, w., mix:, share/, ratio-).",
    ),
]
WeightsOpt = Annotated[
    str | None,
    typer.Option("--weights", "-w", help="Weight columns by name, comma-separated, or a range FIRST..LAST."),
]
SurrogateOpt = Annotated[str, typer.Option("--surrogate", "-s", help=f"Surrogate model. {_choices(SURROGATES)}.")]
MaximizeOpt = Annotated[bool, typer.Option("--maximize", help="Higher is better (task scores); default: lower.")]
ObjWeightsOpt = Annotated[
    str | None,
    typer.Option("--objective-weights", help="With several targets: the weight of each in the objective, e.g. 1,1,2."),
]
SeedOpt = Annotated[int, typer.Option("--seed", help="Seed of every random choice (same seed, same answer).")]
FoldsOpt = Annotated[int, typer.Option("--folds", help="K of the K-fold cross-validation.")]
PriorOpt = Annotated[
    Path | None,
    typer.Option(
        "--prior",
        help="Token counts: a catalog token table (dataset_prefix,tokens[,domain_label]) whose files, "
        "domains or groups the weight columns name, or a domain,tokens table. Centres the samples on "
        "the token shares and, with --target-tokens/--max-epochs, caps each domain.",
    ),
]
TargetTokensOpt = Annotated[
    str | None, typer.Option("--target-tokens", help="Token budget of the target run (e.g. 100B), for the caps.")
]
MaxEpochsOpt = Annotated[
    float | None,
    typer.Option("--max-epochs", help="Most passes over any domain in the target run (RegMix uses 15)."),
]
MinOpt = Annotated[list[str] | None, typer.Option("--min", help="NAME=SHARE lower bound (0.05 or 5%); repeat.")]
MaxOpt = Annotated[list[str] | None, typer.Option("--max", help="NAME=SHARE upper bound; repeat.")]
PinOpt = Annotated[list[str] | None, typer.Option("--pin", help="NAME=SHARE fixed share; repeat.")]
ScaleOpt = Annotated[
    str | None,
    typer.Option(
        "--scale",
        help="PARAMS,TOKENS: the columns holding each run's model parameters and training tokens. Runs at "
        "2 or more scales get one scale-aware model of the objective, chosen by holding out the largest "
        "scale; candidates carry the scale to predict at in the same columns.",
    ),
]

DomainTokensOpt = Annotated[
    str | None,
    typer.Option(
        "--domain-tokens",
        help="With --scale: NAME=TOKENS,... the unique tokens of every domain (e.g. web=40B,math=2B). Lets the "
        "scale-aware model discount epochs a larger run repeats (surrogate scale_law_repeat, a candidate of auto). "
        "propose reads them from --prior when that table counts every domain.",
    ),
]


def _split(text: str | None) -> list[str]:
    return [s.strip() for s in text.split(",") if s.strip()] if text else []


def _status(message: str) -> AbstractContextManager[Any]:
    return error_console().status(message, spinner="dots")


def _share(text: str, option: str) -> tuple[str, float]:
    if "=" not in text:
        raise SearchError(f"expected NAME=SHARE, got {text!r}", where=option)
    name, raw = text.rsplit("=", 1)
    raw = raw.strip()
    try:
        value = float(raw[:-1]) / 100 if raw.endswith("%") else float(raw)
    except ValueError:
        raise SearchError(f"share {raw!r} is not a number", where=f"{option} {name.strip()}") from None
    return name.strip(), value


def _fit(
    runs: Path,
    target: str,
    weight_prefix: str | None,
    weights: str | None,
    surrogate: str,
    maximize: bool,
    objective_weights: str | None,
    seed: int,
    folds: int = 5,
    scale: str | None = None,
    domain_tokens: str | None = None,
    prior: Path | None = None,
) -> FittedRuns:
    if domain_tokens is not None and scale is None:
        raise SearchError(
            "--domain-tokens needs --scale (the columns of each run's params and tokens)", where="--domain-tokens"
        )
    table = read_runs(runs, weight_prefix=weight_prefix, weights=_split(weights))
    targets = _split(target)
    scales = read_scales(table, _split(scale)) if scale is not None else None
    unique = None if domain_tokens is None else _domain_tokens(domain_tokens)
    if unique is None and scale is not None and prior is not None:
        unique = _prior_tokens(prior, table.domains)
    ow = None
    if objective_weights:
        try:
            ow = [float(v) for v in _split(objective_weights)]
        except ValueError:
            raise SearchError(f"{objective_weights!r} is not a list of numbers", where="--objective-weights") from None
    with _status(f"fitting {surrogate} on {table.n} runs over {len(table.domains)} domains ..."):
        fitted = fit_runs(
            table,
            targets,
            surrogate=surrogate,
            objective_weights=ow,
            maximize=maximize,
            folds=folds,
            seed=seed,
            scales=scales,
            domain_tokens=unique,
        )
    if fitted.dropped:
        error_console().print(f"note: {fitted.dropped} runs have no value for {', '.join(targets)} and were left out")
    return fitted


def _prior_tokens(prior: Path, domains: Sequence[str]) -> dict[str, float] | None:
    """The unique tokens of every domain from --prior's token table (what --domain-tokens would say),
    or None when the table does not count every domain."""
    tokens, _ = read_tokens(prior, domains)
    if len(tokens) < len(domains):
        return None
    error_console().print(
        f"note: each domain's unique tokens from {prior} (--prior), as --domain-tokens would give them"
    )
    return tokens


def _domain_tokens(text: str) -> dict[str, float]:
    """`web=40B,math=2e9` -> {domain: tokens}; errors name --domain-tokens."""
    out: dict[str, float] = {}
    for item in _split(text):
        if "=" not in item:
            raise SearchError(f"expected NAME=TOKENS, got {item!r}", where="--domain-tokens")
        name, raw = (p.strip() for p in item.split("=", 1))
        out[name] = float(parse_count(raw, field=f"--domain-tokens {name}"))
    return out


def _space(
    fitted: FittedRuns,
    prior: Path | None,
    target_tokens: str | None,
    max_epochs: float | None,
    mins: list[str] | None,
    maxs: list[str] | None,
    pins: list[str] | None,
) -> tuple[SearchSpace, Any]:
    tokens, catalog = read_tokens(prior, fitted.domains) if prior else (None, None)
    if (target_tokens or max_epochs) and not tokens:
        raise SearchError("--target-tokens/--max-epochs need token counts: pass --prior TOKENS.csv")
    space = build_space(
        fitted.domains,
        tokens=tokens,
        target_tokens=target_tokens,
        max_epochs=max_epochs,
        minimum=dict(_share(s, "--min") for s in mins or []),
        maximum=dict(_share(s, "--max") for s in maxs or []),
        pinned=dict(_share(s, "--pin") for s in pins or []),
    )
    return space, catalog


def _cv_table(title: str, rows: list[CVResult], chosen: str | None) -> Table:
    table = Table(title=title, title_justify="left")
    for col in ("surrogate", "spearman", "pearson", "MAE", "RMSE", "pairwise", "seconds"):
        table.add_column(col, justify="left" if col == "surrogate" else "right")

    def f(v: float) -> str:
        return "nan" if not np.isfinite(v) else f"{v:.4f}"

    for r in rows:
        mark = " *" if r.surrogate == chosen else ""
        table.add_row(
            r.surrogate + mark,
            f(r.spearman),
            f(r.pearson),
            f"{r.mae:.4g}",
            f"{r.rmse:.4g}",
            f(r.pairwise),
            f"{r.seconds:.1f}",
        )
    first = rows[0]
    how = (
        f"{first.n} runs of the largest scale, predicted by models fitted on the smaller scales"
        if first.folds == 1  # holdout_largest_scale
        else f"{first.n} runs, {first.folds}-fold CV on out-of-fold predictions"
    )
    table.caption = how + ("; * chosen" if len(rows) > 1 else "")
    return table


def _print_cv(fitted: FittedRuns) -> None:
    out = console()
    for target, rows in fitted.cv.items():
        out.print(_cv_table(f"cross-validation: {target}", rows, fitted.chosen.get(target)))


def fit(
    runs: RunsArg,
    target: TargetOpt,
    weight_prefix: PrefixOpt = None,
    weights: WeightsOpt = None,
    surrogate: SurrogateOpt = "auto",
    maximize: MaximizeOpt = False,
    objective_weights: ObjWeightsOpt = None,
    folds: FoldsOpt = 5,
    seed: SeedOpt = 0,
    scale: ScaleOpt = None,
    domain_tokens: DomainTokensOpt = None,
    out: Annotated[
        Path | None, typer.Option("--out", "-o", help="Save the fitted model (JSON: spec + runs; refits exactly).")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the cross-validation as JSON.")] = False,
) -> None:
    """Fit a surrogate to past runs and print its cross-validation.

    K-fold CV on out-of-fold predictions: Spearman, Pearson, MAE, RMSE and pairwise ordering accuracy.
    With --surrogate auto every candidate is scored and the best Spearman is chosen (marked *).
    With --scale and runs at several scales, the score is instead that of the largest scale's runs
    predicted by models fitted on the smaller scales (scale-free models: on the largest of those, as
    many runs as the largest scale has). The transfers (fidelity: the smaller scales' runs corrected by
    the larger ones'; or a scale-free model of the largest scale) keep the ranking of the largest scale,
    and fidelity wins their ties; a scale law is chosen over the best of them only if it ranks those runs
    better by more than 0.01.
    """
    fitted = _fit(
        runs, target, weight_prefix, weights, surrogate, maximize, objective_weights, seed, folds, scale, domain_tokens
    )
    decays = repeat_decay_weights(fitted)
    if as_json:
        doc = {
            "runs": len(fitted.y),
            "dropped": fitted.dropped,
            "domains": list(fitted.domains),
            "targets": list(fitted.targets),
            "chosen": fitted.chosen,
            "cv": {t: [r.row() for r in rows] for t, rows in fitted.cv.items()},
        }
        if fitted.scales is not None:
            doc["scales"] = len(np.unique(fitted.scales, axis=0))
        if decays is not None:
            doc["repeat_decay_weights"] = decays
        typer.echo(json.dumps(doc, indent=2))
    else:
        _print_cv(fitted)
        if decays is not None:
            console().print(
                "repetition decay R* (epochs): weight by how well its law fits the runs: "
                + ", ".join(f"{d}: {w:.2f}" for d, w in decays.items())
                + " (weights spread over several R*: the runs do not tell how fast repeated text wears off)"
            )
    if out is not None:
        single = len(fitted.targets) == 1
        ok = np.isfinite(fitted.y) if single else np.ones(len(fitted.y), dtype=bool)
        meta = {"runs": str(runs), "targets": list(fitted.targets), "maximize": maximize, "chosen": fitted.chosen}
        scales = None if fitted.scales is None else fitted.scales[ok]
        save_model(out, fitted.model, fitted.X[ok], fitted.Y[ok], fitted.domains, meta, scales=scales)
        error_console().print(f"saved the fitted model to {out}")


def predict(
    runs: RunsArg,
    target: TargetOpt,
    candidates: Annotated[
        Path,
        typer.Option(
            "--candidates", "-c", help="CSV of mixtures to score (same weight columns, or bare domain names)."
        ),
    ],
    out: Annotated[Path, typer.Option("--out", "-o", help="CSV to write: the candidate rows plus predictions.")],
    weight_prefix: PrefixOpt = None,
    weights: WeightsOpt = None,
    surrogate: SurrogateOpt = "auto",
    maximize: MaximizeOpt = False,
    objective_weights: ObjWeightsOpt = None,
    seed: SeedOpt = 0,
    scale: ScaleOpt = None,
    domain_tokens: DomainTokensOpt = None,
) -> None:
    """Predict the objective of candidate mixtures (adds predicted and predicted_std columns).

    With --scale, each candidate is predicted at the scale in its own --scale columns."""
    fitted = _fit(
        runs, target, weight_prefix, weights, surrogate, maximize, objective_weights, seed,
        scale=scale, domain_tokens=domain_tokens,
    )  # fmt: skip
    table = read_like(candidates, fitted.runs)
    cand_scales = read_scales(table, _split(scale)) if scale is not None else None
    columns = predict_rows(fitted, table, cand_scales)
    header = [*table.table.header, *columns]
    rows = [[*row, *(columns[c][i] for c in columns)] for i, row in enumerate(table.table.rows)]
    write_csv(out, header, rows)
    order = np.argsort(-columns["predicted"] if maximize else columns["predicted"])
    best = int(order[0])
    console().print(
        f"wrote {len(rows)} predictions to {out}; best predicted: line {table.table.lines[best]} "
        f"({columns['predicted'][best]:.6g} +- {columns['predicted_std'][best]:.3g})"
    )


def suggest(
    runs: RunsArg,
    target: TargetOpt,
    n: Annotated[int, typer.Option("--n", "-n", help="How many runs to suggest.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="CSV to write: one row per suggested run.")],
    pool: Annotated[
        Path | None,
        typer.Option("--pool", help="Choose from these candidate mixtures (by expected improvement, kept diverse)."),
    ] = None,
    sampler: Annotated[str, typer.Option("--sampler", help=f"Without --pool: {_choices(SAMPLERS)}.")] = "adaptive",
    option: Annotated[
        list[str] | None, typer.Option("--option", help='Sampler option KEY=VALUE (JSON value), e.g. acquisition="ei".')
    ] = None,
    weight_prefix: PrefixOpt = None,
    weights: WeightsOpt = None,
    surrogate: SurrogateOpt = "auto",
    maximize: MaximizeOpt = False,
    objective_weights: ObjWeightsOpt = None,
    prior: PriorOpt = None,
    target_tokens: TargetTokensOpt = None,
    max_epochs: MaxEpochsOpt = None,
    mins: MinOpt = None,
    maxs: MaxOpt = None,
    pins: PinOpt = None,
    seed: SeedOpt = 0,
) -> None:
    """Suggest the next runs to train.

    Without --pool, a sampler that has observed every past run generates them (default: adaptive
    batches by expected improvement on the surrogate, kept diverse). With --pool, the best rows of
    the pool by expected improvement.
    """
    fitted = _fit(runs, target, weight_prefix, weights, surrogate, maximize, objective_weights, seed)
    space, _ = _space(fitted, prior, target_tokens, max_epochs, mins, maxs, pins)
    options = dict(_sampler_option(o) for o in option or [])
    if sampler == "adaptive" and pool is None:
        options.setdefault("surrogate", surrogate)
    pool_table = read_like(pool, fitted.runs) if pool else None
    with _status(f"choosing {n} runs ..."):
        picked = suggest_runs(fitted, space, n, sampler=sampler, pool=pool_table, seed=seed, sampler_options=options)
    if pool_table is not None and picked.pool_rows is not None:
        header = [*pool_table.table.header, "predicted", "predicted_std", "expected_improvement"]
        rows = [
            [*pool_table.table.rows[r], picked.predicted[i], picked.predicted_std[i], picked.acquisition[i]]  # type: ignore[index]
            for i, r in enumerate(picked.pool_rows)
        ]
    else:
        header = [*fitted.runs.weight_columns, "predicted", "predicted_std"]
        rows = [[*w, picked.predicted[i], picked.predicted_std[i]] for i, w in enumerate(picked.weights)]
    write_csv(out, header, rows)
    table = Table(title=f"{len(rows)} suggested runs -> {out}", title_justify="left")
    for d in fitted.domains:
        table.add_column(d, justify="right", max_width=12, overflow="ellipsis")
    table.add_column("predicted", justify="right")
    for i, w in enumerate(picked.weights):
        table.add_row(*(f"{100 * v:.2f}%" for v in w), f"{picked.predicted[i]:.5g} +- {picked.predicted_std[i]:.2g}")
    console().print(table)


def _sampler_option(text: str) -> tuple[str, Any]:
    if "=" not in text:
        raise SearchError(f"expected KEY=VALUE, got {text!r}", where="--option")
    key, raw = text.split("=", 1)
    try:
        value = json.loads(raw)
    except json.JSONDecodeError:
        value = raw
    return key.strip(), value


class To(str, Enum):
    yaml = "yaml"
    json = "json"
    megatron = "megatron"
    openseek = "openseek"


def propose_cmd(
    runs: RunsArg,
    target: TargetOpt,
    out: Annotated[Path, typer.Option("--out", "-o", help="Where to write the recommended mixture.")],
    to: Annotated[
        To | None,
        typer.Option(
            "--to",
            help="Format (default from --out: .json -> json, else yaml). megatron/openseek need file prefixes: a catalog --prior expands domains/groups by tokens.",
        ),
    ] = None,
    template: Annotated[
        Path | None,
        typer.Option("--template", help="OpenSeek task YAML to copy every other setting from (--to openseek)."),
    ] = None,
    weight_prefix: PrefixOpt = None,
    weights: WeightsOpt = None,
    surrogate: SurrogateOpt = "auto",
    maximize: MaximizeOpt = False,
    objective_weights: ObjWeightsOpt = None,
    prior: PriorOpt = None,
    target_tokens: TargetTokensOpt = None,
    max_epochs: MaxEpochsOpt = None,
    mins: MinOpt = None,
    maxs: MaxOpt = None,
    pins: PinOpt = None,
    samples: Annotated[
        int, typer.Option("--samples", help="Mixtures scored by the surrogate (RegMix: 100k+).")
    ] = 100_000,
    top_k: Annotated[int, typer.Option("--top-k", help="Best-scored mixtures averaged before refining.")] = 100,
    trust_region: Annotated[
        float,
        typer.Option(
            "--trust-region",
            help="Stay within this L1 distance (0..2) of one of the 3 best runs; a negative value: anywhere.",
        ),
    ] = DEFAULT_TRUST_REGION,
    extrapolate: Annotated[
        float,
        typer.Option(
            "--extrapolate",
            help="No share leaves the range the runs covered by more than this; a negative value: no limit.",
        ),
    ] = DEFAULT_EXTRAPOLATE,
    uncertainty: Annotated[
        float,
        typer.Option(
            "--uncertainty",
            help="Optimise the predicted mean plus this many standard deviations against the direction (0: the mean).",
        ),
    ] = DEFAULT_UNCERTAINTY,
    pareto: Annotated[
        Path | None, typer.Option("--pareto", help="With several targets: also write their Pareto front (CSV).")
    ] = None,
    seed: SeedOpt = 0,
    scale: ScaleOpt = None,
    at: Annotated[
        str | None,
        typer.Option(
            "--at",
            help="With --scale: the scale to propose for, e.g. params=1.4e9,tokens=100B (the --scale column "
            "names or params/tokens); at least the largest run's. Default: the largest scale of the runs.",
        ),
    ] = None,
    domain_tokens: DomainTokensOpt = None,
) -> None:
    """Recommend the mixture for the target run, with its predicted objective and interval.

    Scores --samples feasible mixtures with the surrogate, averages the --top-k best (RegMix), then
    refines locally within the bounds and caps. The answer stays near the evidence: within
    --trust-region of one of the best runs, no share more than --extrapolate outside the runs' range,
    scored pessimistically by --uncertainty standard deviations. The table's last line says which of
    these limits the answer ended on. With --scale, the surrogate sees each run's scale and the
    proposal optimises its prediction at --at.
    """
    if at is not None and scale is None:
        raise SearchError("--at needs --scale (the columns of each run's params and tokens)", where="--at")
    fitted = _fit(
        runs, target, weight_prefix, weights, surrogate, maximize, objective_weights, seed,
        scale=scale, domain_tokens=domain_tokens, prior=prior,
    )  # fmt: skip
    target_scale = _at(at, _split(scale)) if at is not None else fitted.largest_scale
    if target_scale is not None:
        check_target_scale(fitted, target_scale)
    space, catalog = _space(fitted, prior, target_tokens, max_epochs, mins, maxs, pins)
    with _status(f"scoring {samples:,} mixtures ..."):
        proposal = propose_runs(
            fitted,
            space,
            n_samples=samples,
            top_k=top_k,
            seed=seed,
            trust_region=trust_region if trust_region >= 0 else None,
            extrapolate=extrapolate if extrapolate >= 0 else None,
            uncertainty=uncertainty,
            at=target_scale,
        )
    best = best_run(fitted)
    cv = fitted.objective_cv
    fmt = (to.value if to else None) or ("json" if out.suffix == ".json" else "yaml")
    mixture = proposal.mixture
    meta: dict[str, Any] = {
        "objective": "+".join(fitted.targets),
        "direction": "maximize" if maximize else "minimize",
        "predicted": round(proposal.predicted, 6),
        "interval": [round(v, 6) for v in proposal.interval],
        "interval_level": proposal.level,
        "bound_by": list(proposal.bound_by),
        "surrogate": (cv.surrogate if cv else surrogate),
        "cv_spearman": None if cv is None or not np.isfinite(cv.spearman) else round(cv.spearman, 4),
        "runs": int(np.isfinite(fitted.y).sum()),
        "source": str(runs),
    }
    if fitted.scales is not None and target_scale is not None:
        meta["scale"] = {"params": target_scale.params, "tokens": target_scale.tokens}
    if fmt in ("megatron", "openseek"):
        if catalog is not None:
            mixture = catalog.expand(mixture)
        elif fmt == "openseek" and template is None:
            raise SearchError("--to openseek needs --template (an OpenSeek task YAML)")
    tmpl = None
    if template is not None:
        tmpl = read_mixture(template)
    doc = MixtureDoc(mixture, fmt, None, name=f"proposed-{out.stem}", metadata=meta)
    written = write_mixture(doc, fmt, out, template=tmpl)
    _print_proposal(fitted, space, proposal, best, written)
    if pareto is not None:
        with _status("computing the Pareto front ..."):
            front = pareto_runs(fitted, space, n_samples=min(samples, 20_000), seed=seed)
        header = [*fitted.runs.weight_columns, *(f"predicted.{t}" for t in fitted.targets), "objective"]
        rows = [[*p.mixture.normalized, *p.predicted.values(), p.objective] for p in front]
        write_csv(pareto, header, rows)
        console().print(f"wrote {len(rows)} Pareto-optimal mixtures to {pareto}")


def _at(text: str, columns: list[str]) -> Scale:
    """`params=1.4e9,tokens=100B` (or the --scale column names) -> Scale; errors name --at."""
    values: dict[str, float] = {}
    for item in _split(text):
        if "=" not in item:
            raise SearchError(f"expected NAME=VALUE, got {item!r}", where="--at")
        name, raw = (p.strip() for p in item.split("=", 1))
        axis = AXES[columns.index(name)] if name in columns else name
        if axis not in AXES:
            raise SearchError(f"unknown scale {name!r} (give {columns[0]}=..., {columns[1]}=...)", where="--at")
        values[axis] = float(parse_count(raw, field=f"--at {name}"))
    for axis, column in zip(AXES, columns):
        if axis not in values:
            raise SearchError(f"no value for {column!r} (give {columns[0]}=..., {columns[1]}=...)", where="--at")
    return Scale(values["params"], values["tokens"])


def _print_proposal(
    fitted: FittedRuns, space: SearchSpace, proposal: Any, best: tuple[int, float] | None, written: list[Path]
) -> None:
    out = console()
    table = Table(title=f"proposed mixture -> {', '.join(map(str, written))}", title_justify="left")
    for col in ("domain", "proposed %", f"top-{proposal.top_k} mean %", "best run %", "min %", "max %"):
        table.add_column(col, justify="left" if col == "domain" else "right")
    best_w = fitted.runs.weights[best[0]] if best else None
    lo, hi = space.lower, space.upper
    for i, d in enumerate(fitted.domains):
        table.add_row(
            d,
            f"{100 * proposal.mixture.share(d):.3f}",
            f"{100 * proposal.averaged.share(d):.3f}",
            "-" if best_w is None else f"{100 * best_w[i]:.3f}",
            f"{100 * lo[i]:.2f}",
            f"{100 * hi[i]:.2f}",
        )
    out.print(table)
    lo_i, hi_i = proposal.interval
    out.print(
        f"predicted objective {proposal.predicted:.6g} ({100 * proposal.level:.0f}% interval {lo_i:.6g} .. {hi_i:.6g})"
        + (f"; best run so far {best[1]:.6g} (line {fitted.runs.table.lines[best[0]]})" if best else "")
    )
    cv = fitted.objective_cv
    if cv is not None:
        out.print(f"surrogate {cv.surrogate}: cross-validated Spearman {cv.spearman:.3f} over {cv.n} runs")
    if proposal.region is not None:
        limits = ", ".join(proposal.bound_by) or "none (an interior optimum)"
        out.print(f"L1 distance to the nearest run {proposal.nearest_run_l1:.3f}; limits it ended on: {limits}")


def register(app: typer.Typer) -> None:
    """Add the four commands to the top-level `mixsweep` app."""
    for name, fn in (("fit", fit), ("predict", predict), ("suggest", suggest), ("propose", propose_cmd)):
        app.command(name, rich_help_panel="Mixture search over a CSV of runs")(user_errors(fn))
