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
    """Print a mixture as a table: weight, normalised share, tokens and epochs at a token budget."""
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
) -> None:
    """Convert a mixture between formats, losslessly (weights exact, order kept)."""
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
