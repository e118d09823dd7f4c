"""`mixsweep data prepare|inspect|blend`: build a corpus, look inside Megatron datasets, blend a mixture."""

from __future__ import annotations

import json
import os
from enum import Enum
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import typer
from rich.table import Table
from ruamel.yaml import YAML

from flows.cli.common import console, user_errors
from mixture_search.errors import MixSweepError, MixtureError
from mixture_search.formats import read_mixture
from mixture_search.mixture import Mixture
from mixture_search.units import format_count, parse_count

DEMO_OUT = Path("runs/data/demo")
DEMO_MAX_BYTES = "3M"

data_app = typer.Typer(
    help=(
        "Corpora for proxy training: prepare raw text (folders of .txt/.md, .jsonl, .parquet) into per-domain "
        "Megatron indexed datasets with a tokenizer and a held-out split, inspect .bin/.idx datasets (counts read "
        "from .idx only), and blend a mixture into the exact sample stream a proxy model trains on."
    ),
    no_args_is_help=True,
)


class ModeOpt(str, Enum):
    exact = "exact"
    megatron = "megatron"


class StopOpt(str, Enum):
    restart = "restart"
    first_exhausted = "first_exhausted"
    all_exhausted = "all_exhausted"


class DtypeOpt(str, Enum):
    uint16 = "uint16"
    int32 = "int32"


def parse_weights(text: str, *, where: str = "--weights") -> Mixture:
    """`code=2,en-lit=1` -> Mixture (order kept)."""
    pairs = []
    for i, item in enumerate(p for p in text.split(",") if p.strip()):
        if "=" not in item:
            raise MixtureError(f"{item.strip()!r} is not name=weight", where=f"{where}[{i}]")
        name, raw = item.split("=", 1)
        try:
            value = float(raw)
        except ValueError:
            raise MixtureError(f"weight {raw.strip()!r} is not a number", where=f"{where}[{name.strip()}]") from None
        pairs.append((name.strip(), value))
    return Mixture(pairs, where=where)


def _load_mixture(mixture: Path | None, weights: str | None) -> Mixture | None:
    if mixture is not None and weights is not None:
        raise MixSweepError("give --mixture or --weights, not both", where="--weights")
    if weights is not None:
        return parse_weights(weights)
    if mixture is not None:
        return read_mixture(mixture).mixture
    return None


def _load_schedule(path: Path) -> Any:
    from trainers.data.schedule import WeightSchedule  # torch (via trainers.data): only `data blend` needs it

    if not path.is_file():
        raise MixSweepError("schedule file not found", where=str(path))
    try:
        data = YAML(typ="safe").load(path.read_text(encoding="utf-8"))
    except Exception as exc:
        raise MixSweepError(f"cannot parse schedule: {' '.join(str(exc).split())}", where=str(path)) from None
    return WeightSchedule.from_dict(data, where=str(path))


def register(app: typer.Typer) -> None:
    app.add_typer(data_app, name="data")


@data_app.command("prepare")
@user_errors
def prepare_cmd(
    inputs: Annotated[
        list[str] | None,
        typer.Argument(
            help="Domains as NAME=PATH (a folder of .txt/.md, a .jsonl or a .parquet file, or a folder of them).",
            show_default=False,
        ),
    ] = None,
    out: Annotated[
        Path | None, typer.Option("--out", "-o", help=f"Corpus folder [default with --demo: {DEMO_OUT}].")
    ] = None,
    demo: Annotated[
        bool,
        typer.Option(
            "--demo",
            help="The bundled demo corpus: 8 domains of real text from Python, sympy and Debian packages "
            "(python3.11-doc, bible-kjv, fortunes, pari-doc, manpages-zh, fortunes-zh).",
        ),
    ] = False,
    vocab_size: Annotated[
        int, typer.Option(help="Vocabulary of the byte-level BPE trained on the train split.")
    ] = 8192,
    tokenizer: Annotated[
        Path | None, typer.Option(help="Use this Hugging Face tokenizer folder (tokenizer.json) instead of training.")
    ] = None,
    valid_fraction: Annotated[float, typer.Option(help="Share of documents held out for validation.")] = 0.02,
    max_bytes_per_domain: Annotated[
        str | None,
        typer.Option(help=f"Cap each domain's cleaned text, e.g. 3M [default with --demo: {DEMO_MAX_BYTES}]."),
    ] = None,
    dtype: Annotated[
        DtypeOpt | None, typer.Option(help="Token dtype of the .bin files [default: from the vocabulary].")
    ] = None,
    text_field: Annotated[
        str, typer.Option(help="Field/column holding the text in .jsonl and .parquet inputs.")
    ] = "text",
    workers: Annotated[int, typer.Option(help="Tokenizer worker processes.")] = max(1, min(4, os.cpu_count() or 1)),
) -> None:
    """Turn raw text into per-domain Megatron indexed datasets (train + valid), a tokenizer and corpus.json.

    Documents are cleaned (ANSI codes, control characters and binary dropped), deduplicated, capped, split by
    content hash and tokenized in worker processes. A rerun with the same inputs and options does nothing.
    """
    from trainers.data.demo import demo_sources  # torch (via trainers.data): only `data` commands need it
    from trainers.data.prepare import PrepareConfig, prepare  # torch, as above
    from trainers.data.sources import source_for  # torch, as above

    if demo and inputs:
        raise MixSweepError("give inputs or --demo, not both", where="inputs")
    if not demo and not inputs:
        raise MixSweepError("give NAME=PATH inputs, or --demo", where="inputs")
    if demo:
        sources = demo_sources()
        out = out or DEMO_OUT
        max_bytes_per_domain = max_bytes_per_domain or DEMO_MAX_BYTES
    else:
        if out is None:
            raise MixSweepError("--out is required with your own inputs", where="--out")
        sources = []
        for item in inputs or []:
            if "=" not in item:
                raise MixSweepError(f"{item!r} is not NAME=PATH", where="inputs")
            name, path = item.split("=", 1)
            sources.append(source_for(name.strip(), Path(path), text_field=text_field))
    cfg = PrepareConfig(
        out=out,
        vocab_size=vocab_size,
        tokenizer=tokenizer,
        valid_fraction=valid_fraction,
        max_bytes_per_domain=parse_count(max_bytes_per_domain, field="--max-bytes-per-domain")
        if max_bytes_per_domain
        else None,
        dtype=dtype.value if dtype else None,
        workers=workers,
    )
    con = console()
    result = prepare(sources, cfg, log=lambda msg: con.print(msg, highlight=False))
    _print_corpus(result.corpus)
    con.print(f"[dim]{'up to date' if result.skipped else 'prepared'} in {result.seconds:.1f} s[/]")


def _print_corpus(corpus: Any) -> None:
    table = Table(
        title=f"{corpus.root}  [dim](data hash {corpus.data_hash}, dtype {corpus.dtype.name})", title_justify="left"
    )
    for col in ("domain", "group", "files", "documents", "tokens", "valid docs", "valid tokens"):
        table.add_column(col, justify="left" if col in ("domain", "group") else "right")
    for d in corpus.domain_info:
        table.add_row(
            d.name,
            d.group,
            str(len(d.train)),
            format_count(sum(s.documents for s in d.train)),
            format_count(d.train_tokens),
            format_count(sum(s.documents for s in d.valid)),
            format_count(d.valid_tokens),
        )
    if corpus.tokenizer_dir is not None:
        table.caption = (
            f"tokenizer {corpus.tokenizer_dir} ({corpus.vocab_size} ids, end of document id {corpus.eod_id})"
        )
    console().print(table)


@data_app.command("inspect")
@user_errors
def inspect_cmd(
    path: Annotated[
        Path,
        typer.Argument(
            help="A corpus folder, a folder of Megatron datasets, or one dataset (prefix, .bin or .idx).",
            show_default=False,
        ),
    ],
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
) -> None:
    """Token and document counts from the .idx files (the .bin files are only checked by size).

    A truncated, corrupt or mismatched .idx/.bin fails with one line naming the file.
    """
    from trainers.data.corpus import Corpus  # torch (via trainers.data): only `data` commands need it
    from trainers.data.indexed import IndexFile  # torch, as above

    prefix = None
    if path.suffix in (".idx", ".bin"):
        prefix = path.with_suffix("")
    elif not path.exists() and (Path(f"{path}.idx").exists() or Path(f"{path}.bin").exists()):
        prefix = path
    if prefix is not None:
        info = IndexFile(prefix).info
        row = {
            "prefix": str(prefix),
            "dtype": info.dtype.name,
            "documents": info.documents,
            "sequences": info.sequences,
            "tokens": info.tokens,
        }
        if as_json:
            typer.echo(json.dumps(row, indent=2))
            return
        table = Table(title=str(prefix), title_justify="left")
        for k in ("dtype", "documents", "sequences", "tokens"):
            table.add_column(k, justify="right")
        table.add_row(info.dtype.name, f"{info.documents:,}", f"{info.sequences:,}", f"{info.tokens:,}")
        console().print(table)
        return
    corpus = Corpus.load(path)
    if as_json:
        typer.echo(
            json.dumps(
                {
                    "root": str(corpus.root),
                    "data_hash": corpus.data_hash,
                    "dtype": corpus.dtype.name,
                    "domains": [
                        {
                            "name": d.name,
                            "group": d.group,
                            "train": [vars(s) for s in d.train],
                            "valid": [vars(s) for s in d.valid],
                        }
                        for d in corpus.domain_info
                    ],
                },
                indent=2,
            )
        )
        return
    _print_corpus(corpus)


@data_app.command("blend")
@user_errors
def blend_cmd(
    corpus_path: Annotated[
        Path | None, typer.Option("--corpus", "-c", help="Corpus folder (windows, exhaustion); optional for restart.")
    ] = None,
    mixture: Annotated[
        Path | None, typer.Option("--mixture", "-m", help="Mixture file (any format mixsweep reads).")
    ] = None,
    weights: Annotated[str | None, typer.Option(help="Weights inline, e.g. code=7,en-lit=5,latex=1.")] = None,
    schedule: Annotated[
        Path | None,
        typer.Option(help="YAML weight schedule: {interpolation, samples_per_step, points: [{step, weights}]}."),
    ] = None,
    samples: Annotated[str | None, typer.Option("--samples", "-n", help="Samples in the stream, e.g. 10M.")] = None,
    mode: Annotated[
        ModeOpt, typer.Option(help="exact (ours, within one sample) or megatron (its helper).")
    ] = ModeOpt.exact,
    stop: Annotated[StopOpt, typer.Option(help="When the stream ends.")] = StopOpt.restart,
    seq_len: Annotated[int, typer.Option(help="Tokens per sample (windows are seq_len + 1).")] = 256,
    seed: Annotated[int, typer.Option(help="Seed of the per-epoch shuffles inside each domain.")] = 0,
    max_epochs: Annotated[float | None, typer.Option(help="Cap on epochs of every domain (restart only).")] = None,
    out: Annotated[
        Path | None, typer.Option("--out", "-o", help="Write the index arrays and summary.json here.")
    ] = None,
) -> None:
    """Blend a mixture: which domain (and which window of it) each sample of the stream reads.

    Writes dataset_index.npy (int16, position in the mixture), dataset_sample_index.npy (int64, k-th sample of
    that entry; Megatron's meaning) and, with a corpus, window_index.npy, plus summary.json; prints achieved vs
    target shares and the largest drift from the target over every prefix.
    """
    from trainers.data import BlendedSequenceDataset, Corpus  # torch (its datasets): only `data` commands need it
    from trainers.data.report import dataset_report, stream_report  # torch, as above

    mix = _load_mixture(mixture, weights)
    sched = _load_schedule(schedule) if schedule else None
    if mix is None and sched is None:
        raise MixSweepError("give --mixture, --weights or --schedule", where="--weights")
    n = parse_count(samples, field="--samples") if samples else None
    if corpus_path is not None:
        ds = BlendedSequenceDataset(
            Corpus.load(corpus_path),
            mix,
            seq_len=seq_len,
            num_samples=n,
            seed=seed,
            schedule=sched,
            mode=mode.value,
            stop=stop.value,
            max_epochs=max_epochs,
            progress=True,
        )
        rep = dataset_report(ds, mode=mode.value, stop=stop.value)
    else:
        if stop != StopOpt.restart or max_epochs is not None:
            raise MixSweepError("exhaustion and epoch caps need --corpus (they depend on domain sizes)", where="--stop")
        if n is None:
            raise MixSweepError("--samples is required", where="--samples")
        if mode == ModeOpt.megatron and sched is not None:
            raise MixSweepError("megatron mode has no weight schedules", where="--mode")
        rep = stream_report(mix, sched, n, mode=mode.value)
    if out is not None:
        rep.save(out)
    table = Table(
        title=(
            f"{rep.samples:,} samples, mode {mode.value}, stop {stop.value}: largest drift {rep.max_drift:.3f} samples"
        ),
        title_justify="left",
    )
    for col in ("domain", "target", "samples", "target %", "achieved %"):
        table.add_column(col, justify="left" if col == "domain" else "right")
    for r in rep.rows:
        table.add_row(
            r.name, f"{r.target_samples:,.1f}", f"{r.samples:,}", f"{100 * r.target_share:.4f}", f"{100 * r.share:.4f}"
        )
    if out is not None:
        table.caption = f"arrays and summary.json in {out}"
    console().print(table)


def within_unit_counts(unit: np.ndarray, k: int) -> np.ndarray:
    """Moved to `trainers.data.report`; kept here for callers of the old place."""
    from trainers.data.report import within_unit_counts as counts  # torch (via trainers.data)

    return counts(unit, k)
