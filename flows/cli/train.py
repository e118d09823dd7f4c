"""`mixsweep train`: train one proxy model on one mixture of a prepared corpus, with a progress bar."""

from __future__ import annotations

import json
import warnings
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.table import Table
from ruamel.yaml import YAML

from flows.cli.common import console, user_errors
from mixture_search.errors import MixSweepError
from mixture_search.formats import read_mixture
from mixture_search.mixture import Mixture
from mixture_search.units import format_count, parse_count
from trainers.budget import TrainBudget
from trainers.config import ProxyConfig
from trainers.errors import ConfigError
from trainers.presets import preset as make_preset

if TYPE_CHECKING:
    from trainers.loop import Progress as Step
    from trainers.result import TrainResult


class BackendName(str, Enum):
    auto = "auto"
    megatron = "megatron"
    deepspeed = "deepspeed"


class ScheduleName(str, Enum):
    cosine = "cosine"
    wsd = "wsd"
    constant = "constant"


HELP = (
    "Train one proxy model on one data mixture and report per-domain validation loss and bits per byte.\n\n"
    "The proxy is a preset (tiny_cpu, moe_cpu, moe_60m, openseek_small_proxy) with optional --set overrides; "
    "its vocabulary comes from the corpus tokenizer. The run folder under --out is named after everything that "
    "changes the training (mixture, shape, budget, data, backend), so the same command again returns the "
    "finished result, and an interrupted run resumes from its latest checkpoint.\n\n"
    "Examples:\n\n"
    "mixsweep train --corpus runs/data/demo --preset tiny_cpu --steps 200 --dry-run\n\n"
    "mixsweep train --corpus runs/data/demo --preset moe_cpu --weights code=2,prose=1 --tokens 2M --backend deepspeed"
)


def _parse_value(raw: str) -> Any:
    try:
        return YAML(typ="safe").load(raw)
    except Exception:
        return raw


def apply_overrides(proxy: ProxyConfig, sets: list[str]) -> ProxyConfig:
    """`key=value` overrides, `moe.key=value` for MoE fields; values parsed as YAML scalars."""
    data = proxy.to_dict()
    for item in sets:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"{item!r} is not key=value", where="--set")
        target = data
        parts = key.strip().split(".")
        for part in parts[:-1]:
            if not isinstance(target.get(part), dict):
                raise ConfigError(f"{part!r} is not a nested section here", where=f"--set {key}")
            target = target[part]
        target[parts[-1]] = _parse_value(raw.strip())
    return ProxyConfig.from_dict(data, where="--set")


def _mixture(mixture: Path | None, weights: str | None, domains: list[str]) -> Mixture | None:
    """The mixture to train on; None when neither a file, weights nor a corpus says which."""
    if mixture is not None and weights is not None:
        raise MixSweepError("give --mixture or --weights, not both", where="--weights")
    if mixture is not None:
        return read_mixture(mixture).mixture
    if weights is not None:
        pairs = []
        for item in weights.split(","):
            name, sep, value = item.partition("=")
            if not sep:
                raise MixSweepError(f"{item!r} is not domain=weight", where="--weights")
            pairs.append((name.strip(), _parse_value(value.strip())))
        return Mixture(pairs, where="--weights")
    return Mixture.uniform(domains) if domains else None


def _print_plan(
    proxy: ProxyConfig,
    budget: TrainBudget,
    mixture: Mixture | None,
    backend: str,
    reason: str,
    world: int,
    run_dir: Path | None,
) -> None:
    out = console()
    counts = proxy.param_counts()
    steps = budget.total_steps(proxy.seq_len)
    tokens = steps * budget.global_batch * proxy.seq_len
    out.print(f"[bold]{proxy.describe()}[/]")
    table = Table(show_header=False, box=None)
    table.add_row(
        "parameters", f"{counts.total:,} total, {counts.active:,} active per token, {counts.embedding:,} embedding"
    )
    table.add_row("FLOPs/token", f"{proxy.flops_per_token():,} (training, forward + backward)")
    table.add_row(
        "budget",
        f"{steps:,} steps x {budget.global_batch} seqs x {proxy.seq_len} = {format_count(tokens)} tokens, "
        f"{proxy.flops_per_token() * tokens:.3g} FLOPs",
    )
    table.add_row("schedule", f"{budget.schedule}, lr {budget.lr:g} -> {budget.min_lr:g}, warmup {budget.warmup_steps}")
    shares = ", ".join(f"{n}={mixture.share(n):.3f}" for n in mixture) if mixture else "uniform over the corpus domains"
    table.add_row("mixture", shares)
    table.add_row("backend", f"{backend} ({reason}), {world} process(es)")
    if run_dir is not None:
        table.add_row("run folder", str(run_dir))
    out.print(table)


def _print_result(result: TrainResult) -> None:
    out = console()
    table = Table(
        title=f"{result.status}: {result.steps}/{result.total_steps} steps, {result.backend} on {result.device}"
    )
    for col in ("domain", "tokens seen", "val loss", "val bits/byte"):
        table.add_column(col, justify="left" if col == "domain" else "right")
    final = result.final
    for name, tokens in result.tokens_per_domain.items():
        loss = f"{final.loss[name]:.4f}" if final and name in final.loss else "-"
        bpb = f"{final.bpb[name]:.4f}" if final and name in final.bpb else "-"
        table.add_row(name, format_count(tokens), loss, bpb)
    out.print(table)
    out.print(
        f"train loss {result.loss_curve[0]:.3f} -> {result.loss_curve[-1]:.3f}; {result.tokens_per_s:,.0f} tokens/s, "
        f"{result.flops_per_s / 1e9:.2f} GFLOP/s; wall {result.wall_time_s:.1f}s"
    )
    out.print(f"checkpoint: {result.checkpoint}\nresult: {Path(result.run_dir) / 'result.json'}")


def register(app: typer.Typer) -> None:
    @app.command("train", help=HELP)
    @user_errors
    def train_cmd(
        corpus: Annotated[
            Path | None,
            typer.Option(help="Prepared corpus folder (from `mixsweep data prepare`), e.g. runs/data/demo."),
        ] = None,
        preset: Annotated[
            str, typer.Option(help="Proxy shape: tiny_cpu, moe_cpu, moe_60m, openseek_small_proxy.")
        ] = "tiny_cpu",
        set_: Annotated[
            list[str] | None,
            typer.Option("--set", help="Override a proxy field, e.g. --set seq_len=64 --set moe.top_k=4 (repeatable)."),
        ] = None,
        mixture: Annotated[
            Path | None, typer.Option(help="Mixture file (MixSweep YAML/JSON, Megatron data_path, OpenSeek config).")
        ] = None,
        weights: Annotated[
            str | None, typer.Option(help="Inline mixture, e.g. code=2,prose=1 (default: uniform).")
        ] = None,
        tokens: Annotated[str | None, typer.Option(help="Training tokens, e.g. 2M (or give --steps).")] = None,
        steps: Annotated[int | None, typer.Option(help="Optimizer steps (or give --tokens).")] = None,
        micro_batch: Annotated[int, typer.Option(help="Sequences per micro-batch.")] = 8,
        global_batch: Annotated[int, typer.Option(help="Sequences per optimizer step.")] = 8,
        lr: Annotated[float, typer.Option(help="Peak learning rate.")] = 3e-3,
        min_lr: Annotated[float, typer.Option(help="Final learning rate (cosine, wsd).")] = 3e-4,
        warmup_steps: Annotated[int, typer.Option(help="Linear warmup steps.")] = 0,
        schedule: Annotated[ScheduleName, typer.Option(help="LR schedule.")] = ScheduleName.cosine,
        eval_interval: Annotated[int, typer.Option(help="Evaluate (and checkpoint) every N steps; 0: at the end.")] = 0,
        seed: Annotated[int, typer.Option(help="Seed of initialisation and data order.")] = 0,
        backend: Annotated[
            BackendName, typer.Option(help="Training backend; auto picks Megatron when it can.")
        ] = BackendName.auto,
        zero_stage: Annotated[int, typer.Option(help="DeepSpeed ZeRO stage (0-3).")] = 0,
        nprocs: Annotated[int, typer.Option(help="Local worker processes (data parallel; TP/EP with Megatron).")] = 1,
        tp: Annotated[int, typer.Option(help="Tensor-parallel size (Megatron).")] = 1,
        ep: Annotated[int, typer.Option(help="Expert-parallel size (Megatron, MoE).")] = 1,
        out: Annotated[Path, typer.Option(help="Folder holding the run folders.")] = Path("runs/train"),
        dry_run: Annotated[
            bool, typer.Option("--dry-run", help="Print parameters, FLOPs/token, budget and backend; do not train.")
        ] = False,
        as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
    ) -> None:
        # megatron-core warns on import that the GPU-only kernel libraries are absent; on CPU that is expected
        warnings.filterwarnings("ignore", message=".*(Transformer Engine|Apex) (and Apex )?(are|is) not installed.*")
        from trainers import backends  # torch: only `train` needs it, after the warning filter above
        from trainers.backends.deepspeed import DeepSpeedBackend  # torch, as above
        from trainers.distributed import Parallelism, device_kind  # torch, as above

        proxy = apply_overrides(make_preset(preset), set_ or [])
        if tokens is None and steps is None:
            raise MixSweepError("give --tokens or --steps", where="--tokens")
        budget = TrainBudget(
            tokens=parse_count(tokens, field="--tokens") if tokens is not None else None,
            steps=steps,
            micro_batch=micro_batch,
            global_batch=global_batch,
            lr=lr,
            min_lr=min_lr,
            warmup_steps=warmup_steps,
            schedule=schedule.value,
            eval_interval=eval_interval,
            seed=seed,
        )
        parallel = Parallelism(tp=tp, ep=ep)
        chosen: Any = DeepSpeedBackend(zero_stage) if backend is BackendName.deepspeed else backend.value
        loaded = None
        if corpus is not None:
            from trainers.train import load_corpus  # torch, as above

            loaded = load_corpus(corpus)
            proxy = proxy.resolve_vocab(int(loaded.vocab_size))
        domains = [str(d) for d in loaded.domains] if loaded is not None else []
        mix = _mixture(mixture, weights, domains)
        if dry_run:
            impl, reason = (
                backends.choose(chosen, proxy, parallel, device_kind())
                if isinstance(chosen, str)
                else (chosen, "requested")
            )
            run_dir = None
            if loaded is not None and mix is not None:
                from trainers.train import run_name  # torch, as above

                run_dir = out / run_name(mix, proxy, budget, str(loaded.data_hash), impl, parallel, nprocs)
            _print_plan(proxy, budget, mix, impl.name, reason, nprocs, run_dir)
            return
        if loaded is None or mix is None:
            raise MixSweepError(
                "a corpus is needed to train (prepare one with `mixsweep data prepare`)", where="--corpus"
            )
        result = _run(mix, loaded, proxy, budget, chosen, out, parallel, nprocs, quiet=as_json)
        if as_json:
            typer.echo(json.dumps(result.to_dict(), indent=1))
        else:
            _print_result(result)


def _run(
    mix: Mixture,
    corpus: Any,
    proxy: ProxyConfig,
    budget: TrainBudget,
    backend: Any,
    out: Path,
    parallel: Any,
    nprocs: int,
    *,
    quiet: bool,
) -> TrainResult:
    from rich.progress import (  # only a training draws a bar; `mixsweep --help` does not load rich.progress
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    from trainers.train import train  # torch: only `train` needs it

    total = budget.total_steps(proxy.seq_len)
    columns = (
        TextColumn("[bold]train[/]"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[info]}"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
    )
    # started at the first step, so errors found while the data and model are set up print alone
    bar = Progress(*columns, console=console(), disable=quiet)
    task = bar.add_task("train", total=total, info="")

    def report(step: Step) -> None:
        if not bar.live.is_started:
            bar.start()
        info = f"loss {step.loss:.3f}  lr {step.lr:.2e}  {step.tokens_per_s:,.0f} tok/s"
        if step.eval is not None:
            info += f"  val bpb {step.eval.mean_bpb:.3f}"
        bar.update(task, completed=step.step, info=info)

    try:
        result = train(mix, corpus, proxy, budget, backend, out, parallel=parallel, nprocs=nprocs, progress=report)
    finally:
        if bar.live.is_started:
            bar.stop()
    return result
