"""`mixsweep mixture show|convert`: inspect a mixture and move it between formats."""

from __future__ import annotations

import json
from enum import Enum
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from flows.cli.common import console, user_errors
from mixture_search.catalog import DomainCatalog, Level, load_catalog
from mixture_search.errors import FormatError, MixtureError
from mixture_search.formats import MixtureDoc, read_mixture, render, write_mixture
from mixture_search.mixture import Mixture
from mixture_search.schedule import Phase, Schedule
from mixture_search.schedule_formats import is_schedule_file, read_schedule, render_schedule_text, write_schedule
from mixture_search.units import format_count, parse_count

mixture_app = typer.Typer(
    help="Inspect a data mixture and convert it between Megatron, OpenSeek and YAML.", no_args_is_help=True
)


class By(str, Enum):
    file = "file"
    domain = "domain"
    group = "group"


class Fmt(str, Enum):
    megatron = "megatron"
    openseek = "openseek"
    yaml = "yaml"
    json = "json"
    easydel = "easydel"


FileArg = Annotated[
    Path,
    typer.Argument(
        help="Mixture file: an OpenSeek experiment config or task YAML, a Megatron data_path "
        "(YAML list or the single-string form in a .txt), or a MixSweep mixture .yaml/.json.",
        show_default=False,
    ),
]
CatalogOpt = Annotated[
    Path | None,
    typer.Option(
        "--catalog",
        "-c",
        help="Token counts and groups: a CSV (dataset_prefix,tokens[,domain_label]) such as OpenSeek's "
        "pretrain_100B_files_tokens.csv, or a catalog .json/.yaml written by `mixsweep data prepare`.",
    ),
]
BaseDirOpt = Annotated[
    Path | None,
    typer.Option(
        "--base-dir", help="Folder the data_path prefixes are relative to (default: the config's dataset_base_dir)."
    ),
]
CheckPathsOpt = Annotated[
    bool, typer.Option("--check-paths", help="Fail unless every prefix has its .bin and .idx on disk.")
]


def _load(
    file: Path, catalog: Path | None, base_dir: Path | None, check_paths: bool
) -> tuple[MixtureDoc, DomainCatalog]:
    doc = read_mixture(file, base_dir=base_dir)
    if check_paths:
        missing = doc.missing_files()
        if missing:
            raise FormatError(
                f"missing ({len(missing)} of {2 * len(doc.mixture)} .bin/.idx files are missing)", where=str(missing[0])
            )
    cat = (
        load_catalog(catalog, base_dir=doc.base_dir)
        if catalog
        else DomainCatalog.from_mixture(doc.mixture, base_dir=doc.base_dir)
    )
    cat.level_of(doc.mixture)  # unknown names fail here, naming the first one
    return doc, cat


@mixture_app.command("show")
@user_errors
def show(
    file: FileArg,
    catalog: CatalogOpt = None,
    by: Annotated[
        By, typer.Option("--by", help="Rows per file (grouped by domain), per domain, or per group.")
    ] = By.file,
    budget: Annotated[
        str | None,
        typer.Option(help="Token budget of the run, e.g. 100B, for the epochs column (default: from the config)."),
    ] = None,
    base_dir: BaseDirOpt = None,
    check_paths: CheckPathsOpt = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the rows as JSON instead of a table.")] = False,
) -> None:
    """Print a mixture as a table: weight, normalised share, tokens and epochs at a token budget.
    A schedule (phases) gets one share and token column per phase and each domain's epochs over the run."""
    if is_schedule_file(file):
        _show_schedule(file, catalog, budget, as_json)
        return
    doc, cat = _load(file, catalog, base_dir, check_paths)
    level: Level = by.value
    budget_tokens = parse_count(budget, field="--budget") if budget else doc.metadata.get("train_tokens")
    have = cat.level_of(doc.mixture)
    if ("file", "domain", "group").index(level) < ("file", "domain", "group").index(have):
        level = have
    mix = cat.collapse(doc.mixture, level) if level != have else doc.mixture
    tokens = cat.tokens(level)
    epochs = cat.epochs(mix, budget_tokens) if budget_tokens else {}
    rows = []
    for name in _ordered(mix, cat, level):
        d = cat.file_domain(name) if level == "file" else (cat.domain(name) if level == "domain" else None)
        rows.append(
            {
                "domain": d.name if d else None,
                "group": d.group if d else name,
                "name": name,
                "weight": mix[name],
                "share": mix.share(name),
                "tokens": tokens.get(name),
                "epochs": epochs.get(name),
            }
        )
    if as_json:
        typer.echo(
            json.dumps(
                {"name": doc.name, "format": doc.format, "level": level, "budget_tokens": budget_tokens, "rows": rows},
                indent=2,
            )
        )
        return
    _print_table(doc, cat, mix, rows, level, budget_tokens)


def _ordered(mix: Mixture, cat: DomainCatalog, level: Level) -> list[str]:
    """Files grouped by domain (domains in order of first appearance); other levels as they are."""
    if level != "file":
        return list(mix)
    order: dict[str, list[str]] = {}
    for name in mix:
        order.setdefault(cat.file_domain(name).name, []).append(name)
    return [n for names in order.values() for n in names]


def _print_table(
    doc: MixtureDoc, cat: DomainCatalog, mix: Mixture, rows: list[dict], level: Level, budget: int | None
) -> None:
    n_domains = len({cat.file_domain(n).name for n in doc.mixture}) if cat.level_of(doc.mixture) == "file" else None
    title = f"{doc.name}  [dim]({doc.format}, {len(doc.mixture)} entries"
    title += f" in {n_domains} domains" if n_domains and level == "file" else ""
    title += f", budget {format_count(budget)} tokens)" if budget else ")"
    table = Table(title=title, title_justify="left", show_lines=False)
    if level == "file":
        table.add_column("domain", style="cyan", no_wrap=True)
    if level in ("file", "domain"):
        table.add_column("group", style="magenta", no_wrap=True)
    table.add_column({"file": "file", "domain": "domain", "group": "group"}[level], no_wrap=True)
    table.add_column("weight", justify="right")
    table.add_column("share %", justify="right")
    table.add_column("tokens", justify="right")
    if budget:
        table.add_column("epochs", justify="right")
    sizes = {d.name: len(d.files) for d in cat.domains}
    previous = None
    for row in rows:
        cells: list[str] = []
        name = row["name"]
        if level == "file":
            new_domain = row["domain"] != previous
            # a rule around each domain that holds several files, so they read as one block
            if previous is not None and new_domain and (sizes[row["domain"]] > 1 or sizes[previous] > 1):
                table.add_section()
            cells += [row["domain"] if new_domain else "", row["group"] if new_domain else ""]
            previous = row["domain"]
            name = name.rsplit("/", 1)[-1] if "/" in name else name
        elif level == "domain":
            cells.append(row["group"])
        cells += [name, f"{row['weight']:.6g}", f"{100 * row['share']:.3f}", format_count(row["tokens"])]
        if budget:
            cells.append("-" if row["epochs"] is None else f"{row['epochs']:.3f}")
        table.add_row(*cells)
    total_tokens = [r["tokens"] for r in rows]
    footer = f"total weight {sum(mix.weights):.6g}"
    if all(t is not None for t in total_tokens):
        footer += f", {format_count(sum(total_tokens))} tokens"
    footer += f", {len(cat.units('domain'))} domains, {len(cat.group_names)} groups"
    table.caption = footer
    console().print(table)


@mixture_app.command("convert")
@user_errors
def convert(
    file: FileArg,
    to: Annotated[Fmt, typer.Option("--to", help="Output format.")],
    out: Annotated[
        Path | None,
        typer.Option(
            "--out", "-o", help="Output file (stdout if omitted). For openseek, a folder gets the config pair."
        ),
    ] = None,
    template: Annotated[
        Path | None,
        typer.Option(
            help="OpenSeek task (or experiment) YAML whose other settings the output keeps (for --to openseek)."
        ),
    ] = None,
    catalog: CatalogOpt = None,
    level: Annotated[
        By | None,
        typer.Option(help="Re-express the weights per file, domain or group (needs --catalog to split by tokens)."),
    ] = None,
    base_dir: BaseDirOpt = None,
    check_paths: CheckPathsOpt = False,
    samples: Annotated[
        int | None,
        typer.Option(help="Schedules: the run's train samples (Megatron stages; OpenSeek default: the template's)."),
    ] = None,
    steps: Annotated[int | None, typer.Option(help="Schedules: the run's optimizer steps (EasyDeL).")] = None,
    global_batch: Annotated[
        int | None, typer.Option("--global-batch", help="Schedules: samples per optimizer step (EasyDeL).")
    ] = None,
) -> None:
    """Convert a mixture between formats, losslessly (weights exact, order kept). A schedule (phases)
    becomes a Megatron stage script, one OpenSeek config pair per stage, or an EasyDeL schedule."""
    if is_schedule_file(file) or to == Fmt.easydel:
        _convert_schedule(file, to, out, template, catalog, samples, steps, global_batch)
        return
    doc, cat = _load(file, catalog, base_dir, check_paths)
    mix = doc.mixture
    if level is not None:
        mix = cat.expand(mix) if level == By.file else cat.collapse(mix, level.value)
    if to in (Fmt.megatron, Fmt.openseek) and cat.level_of(mix) != "file":
        if catalog is None:
            raise MixtureError(
                f"--to {to.value} needs file prefixes, but the mixture names {cat.level_of(mix)}s; "
                "pass --catalog to split domain weights over files by tokens"
            )
        mix = cat.expand(mix)
    doc = MixtureDoc(mix, doc.format, doc.path, doc.name, doc.metadata, doc.openseek, doc.base_dir)
    tmpl = read_mixture(template) if template else None
    if out is None:
        typer.echo(render(doc, to.value, template=tmpl), nl=False)
        return
    for path in write_mixture(doc, to.value, out, template=tmpl):
        console().print(f"wrote {path}")


# -- schedules ---------------------------------------------------------------------------------------


def _show_schedule(file: Path, catalog: Path | None, budget: str | None, as_json: bool) -> None:
    sched = read_schedule(file)
    first = sched.phases[0].mixture
    cat = load_catalog(catalog) if catalog else DomainCatalog.from_mixture(first)
    sizes = cat.tokens(cat.level_of(first))  # unknown names fail here, naming the first one
    raw = budget if budget else sched.metadata.get("train_tokens")
    total = parse_count(raw, field="--budget") if raw else None
    shares, run, lengths = sched.shares(), sched.run_shares(), sched.lengths
    tokens = sched.tokens(total) if total else None
    epochs = sched.epochs(sizes, total) if total else {}
    rows = [
        {
            "name": n,
            "shares": shares[:, i].tolist(),
            "run_share": float(run[i]),
            "size_tokens": sizes.get(n),
            "tokens": None if tokens is None else tokens[:, i].tolist(),
            "run_tokens": None if total is None else float(run[i] * total),
            "epochs": epochs.get(n),
        }
        for i, n in enumerate(sched.names)
    ]
    phases = [
        {"phase": k, "start": s, "until": u, "tokens": None if total is None else float(length * total)}
        for k, (s, u, length) in enumerate(zip(sched.starts, sched.untils, lengths))
    ]
    if as_json:
        typer.echo(json.dumps({"name": sched.name, "budget_tokens": total, "phases": phases, "rows": rows}, indent=2))
        return
    spans = ", ".join(f"p{k} {s:g}-{u:g}" for k, (s, u) in enumerate(zip(sched.starts, sched.untils)))
    title = f"{sched.name}  [dim](schedule, {len(phases)} phases: {spans}"
    title += f"; budget {format_count(total)} tokens)" if total else ")"
    table = Table(title=title, title_justify="left")
    table.add_column("domain", no_wrap=True)
    for k in range(len(phases)):
        table.add_column(f"p{k} share %", justify="right")
    table.add_column("run share %", justify="right")
    table.add_column("size", justify="right")
    if total:
        for k in range(len(phases)):
            table.add_column(f"p{k} tokens", justify="right")
        table.add_column("epochs (run)", justify="right")
    for row in rows:
        cells = [row["name"], *(f"{100 * v:.3f}" for v in row["shares"]), f"{100 * row['run_share']:.3f}"]
        cells.append(format_count(row["size_tokens"]))
        if total:
            cells += [format_count(v) for v in row["tokens"]]
            cells.append("-" if row["epochs"] is None else f"{row['epochs']:.3f}")
        table.add_row(*cells)
    console().print(table)


def _convert_schedule(
    file: Path,
    to: Fmt,
    out: Path | None,
    template: Path | None,
    catalog: Path | None,
    samples: int | None,
    steps: int | None,
    global_batch: int | None,
) -> None:
    if to == Fmt.json:
        raise FormatError("a schedule converts to yaml, megatron, openseek or easydel, not json")
    if is_schedule_file(file):
        sched = read_schedule(file)
    else:
        doc = read_mixture(file)
        sched = Schedule.constant(doc.mixture, name=doc.name)
    if to in (Fmt.megatron, Fmt.openseek):
        cat = load_catalog(catalog) if catalog else DomainCatalog.from_mixture(sched.phases[0].mixture)
        if cat.level_of(sched.phases[0].mixture) != "file":
            if catalog is None:
                raise MixtureError(
                    f"--to {to.value} needs file prefixes; pass --catalog to split domain weights over files"
                )
            sched = Schedule(
                tuple(Phase(p.until, cat.expand(p.mixture)) for p in sched.phases), sched.name, sched.metadata
            )
    meta_samples = sched.metadata.get("train_samples")
    train_samples = samples if samples is not None else meta_samples if isinstance(meta_samples, int) else None
    per_step = global_batch if global_batch is not None else sched.metadata.get("samples_per_step")
    total_steps = steps if steps is not None else sched.metadata.get("steps")
    if to == Fmt.openseek:
        if out is None:
            raise FormatError("--to openseek for a schedule writes a folder of stage configs: pass -o FOLDER")
        written = write_schedule(sched, "openseek", out, template=template, train_samples=samples)
    else:
        text = render_schedule_text(
            sched,
            to.value,
            train_samples=train_samples,
            steps=total_steps,
            samples_per_step=per_step,
        )
        if out is None:
            typer.echo(text, nl=False)
            return
        written = write_schedule(
            sched, to.value, out, train_samples=train_samples, steps=total_steps, samples_per_step=per_step
        )
    for path in written:
        console().print(f"wrote {path}")
