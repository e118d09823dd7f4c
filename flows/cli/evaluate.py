"""`mixsweep convert` and `mixsweep evaluate`: a trained proxy to Hugging Face, then LightEval."""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from flows.cli.common import console, user_errors

CONVERT_HELP = (
    "Convert a checkpoint written by `mixsweep train` (Megatron-Core dist_checkpointing or DeepSpeed, any ZeRO stage) "
    "to a Hugging Face model folder: safetensors, config.json, generation config, tokenizer.\n\n"
    "CKPT is a run folder (its latest checkpoint), a checkpoint folder (step_N) or its model/ folder. The architecture "
    "is the one that computes the proxy exactly: Llama (dense), Qwen3 (dense + QK-norm), Mixtral (softmax top-k MoE), "
    "Qwen3-MoE, GLM-4-MoE (DeepSeek-style MoE: sigmoid router, expert bias, shared expert, group routing, first layers "
    "dense) or DeepSeek-V3 (with multi-latent attention).\n\n"
    "The written model is reloaded and its logits compared with the trained model's on a fixed batch; a difference "
    "above --tolerance is an error and nothing is written. The figure is stored in HF_DIR/conversion.json. Converting "
    "the same weights again is a no-op.\n\n"
    "Example: mixsweep convert runs/train/tiny_cpu-megatron-0123abcd4567 -o runs/hf/tiny --corpus runs/data/demo"
)

EVALUATE_HELP = (
    "Evaluate a Hugging Face model folder with LightEval, in-process and offline.\n\n"
    "Tasks (comma-separated, `name|k` for k-shot): local (= bpb + cloze), bpb, cloze, bpb:<domain>, cloze:<domain> - "
    "built from the held-out split of --corpus (or a --heldout folder of <domain>.txt files): bits per byte of held-out "
    "text, and picking the true continuation of a held-out passage among same-domain distractors; openseek (OpenSeek's "
    "suite), openseek:english, openseek:chinese, or one benchmark (hellaswag, mmlu, ...; see --list-tasks) read from "
    "--data-dir.\n\n"
    "Prints per-task metrics with standard errors, group aggregates (OpenSeek's averages; per domain group for the "
    "local tasks) and the objective; writes everything to a results JSON named after the weights, tasks and data, "
    "so the same command again returns it without evaluating.\n\n"
    "Example: mixsweep evaluate runs/hf/tiny --tasks local --corpus runs/data/demo"
)


def _quiet() -> None:
    """Library chatter that says nothing about the user's run: missing GPU kernels on a CPU machine,
    deprecation notices inside megatron-core and torch.distributed.checkpoint."""
    warnings.filterwarnings("ignore", message=".*(Transformer Engine|Apex) (and Apex )?(are|is) not installed.*")
    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", category=UserWarning, module=r"megatron\..*")
    import torch  # only convert/evaluate load models; imported after the warning filters above

    if not torch.cuda.is_available():
        os.environ.setdefault("DS_ACCELERATOR", "cpu")  # DeepSpeed otherwise logs its accelerator guess


def _tokenizer_dir(tokenizer: Path | None, corpus: Path | None) -> Path | None:
    if tokenizer is not None:
        return tokenizer
    if corpus is not None:
        from trainers.data import Corpus  # torch (via trainers.data): only convert/evaluate need it

        return Path(str(Corpus.load(corpus).tokenizer_dir))
    return None


def _print_conversion(report: Any) -> None:
    out = console()
    table = Table(show_header=False, box=None)
    table.add_row("model", f"{report.hf_dir} ({report.architecture}, {report.params:,} parameters)")
    table.add_row(
        "source", f"{report.source} ({report.backend}{f', step {report.step}' if report.step is not None else ''})"
    )
    if report.verified:
        table.add_row(
            "verified",
            f"max |logit diff| {report.max_abs_diff:.3g} <= {report.tolerance:g} on a {report.probe_shape[0]}x{report.probe_shape[1]} batch",
        )
    else:
        table.add_row("verified", "[yellow]no (--no-verify)[/]")
    table.add_row("tokenizer", report.tokenizer or "[yellow]none: give --tokenizer or --corpus to evaluate it[/]")
    if report.reused:
        table.add_row("", "[dim]already converted from the same weights; nothing written[/]")
    out.print(table)


def _print_evaluation(result: Any) -> None:
    out = console()
    table = Table(title=f"{result.hf_dir}: {len(result.tasks)} task(s){' (reused)' if result.reused else ''}")
    for col in ("task", "metric", "value", "stderr", "docs"):
        table.add_column(col, justify="left" if col in ("task", "metric") else "right")
    for key, value in result.metrics.items():
        if key.endswith("_stderr"):
            continue
        task, metric = key.rsplit("/", 1)
        err = result.metrics.get(f"{key}_stderr")
        table.add_row(
            task, metric, f"{value:.4f}", f"{err:.4f}" if err is not None else "", str(result.docs.get(task, ""))
        )
    out.print(table)
    if result.aggregates:
        agg = Table(title="aggregates")
        agg.add_column("name")
        agg.add_column("value", justify="right")
        agg.add_column("stderr", justify="right")
        for key, value in result.aggregates.items():
            if key.endswith("_stderr"):
                continue
            err = result.aggregates.get(f"{key}_stderr")
            agg.add_row(key, f"{value:.4f}", f"{err:.4f}" if err is not None else "")
        out.print(agg)
    if result.objective is not None:
        terms = " + ".join(f"{w:g} x {k}" for k, w in result.objective_terms.items())
        out.print(f"objective (higher is better): [bold]{result.objective:.4f}[/] = {terms}")
    out.print(f"results: {result.results_path} ({result.seconds:.1f}s)")


def _print_task_list() -> None:
    from eval.tasks.openseek import BENCHMARKS, data_root  # the eval package: only convert/evaluate load it

    out = console()
    table = Table(title=f"OpenSeek suite (data root: {data_root()})")
    for col in ("task", "benchmark", "group", "shots", "metric", "files", "fields", "source"):
        table.add_column(col)
    root = data_root()
    for b in BENCHMARKS.values():
        files = f"{b.eval_split}" + (f", {b.fewshot_split}" if b.fewshot_split else "")
        present = "[green]present[/]" if (root / b.name).is_dir() else "[red]missing[/]"
        table.add_row(
            b.name,
            b.title,
            b.category,
            str(b.shots),
            b.metric,
            f"{files} ({present})",
            ", ".join(b.fields),
            f"{b.source}: {b.source_splits}",
        )
    out.print(table)
    out.print("local tasks: local, bpb, cloze, bpb:<domain>, cloze:<domain> (need --corpus or --heldout)")


def register(app: typer.Typer) -> None:
    @app.command("convert", help=CONVERT_HELP)
    @user_errors
    def convert_cmd(
        checkpoint: Annotated[
            Path,
            typer.Argument(help="Run folder, checkpoint folder (step_N) or its model/ folder.", show_default=False),
        ],
        out: Annotated[Path, typer.Option("--out", "-o", help="Hugging Face model folder to write.")],
        tokenizer: Annotated[
            Path | None, typer.Option(help="Tokenizer folder to include (the corpus tokenizer).")
        ] = None,
        corpus: Annotated[
            Path | None, typer.Option(help="Prepared corpus whose tokenizer to include (instead of --tokenizer).")
        ] = None,
        target: Annotated[
            str | None,
            typer.Option(help="Force an architecture: llama, qwen3, mixtral, qwen3_moe, glm4_moe, deepseek_v3."),
        ] = None,
        verify: Annotated[bool, typer.Option(help="Compare logits with the trained model (default on).")] = True,
        tolerance: Annotated[float, typer.Option(help="Largest allowed |logit difference| (float32).")] = 1e-4,
        force: Annotated[
            bool, typer.Option("--force", help="Convert again even if HF_DIR holds these weights.")
        ] = False,
        as_json: Annotated[bool, typer.Option("--json", help="Print the conversion report as JSON.")] = False,
    ) -> None:
        _quiet()
        from eval.convert import to_hf  # torch: only convert loads checkpoints; after `_quiet()`

        with console().status(f"converting {checkpoint} ..."):
            report = to_hf(
                checkpoint,
                out,
                target=target,
                tokenizer=_tokenizer_dir(tokenizer, corpus),
                verify=verify,
                tolerance=tolerance,
                force=force,
            )
        if as_json:
            print(json.dumps(report.to_dict() | {"reused": report.reused}, indent=1))
        else:
            _print_conversion(report)

    @app.command("evaluate", help=EVALUATE_HELP)
    @user_errors
    def evaluate_cmd(
        hf_dir: Annotated[
            Path | None, typer.Argument(help="Hugging Face model folder (from `mixsweep convert`).", show_default=False)
        ] = None,
        tasks: Annotated[str, typer.Option(help="Comma-separated tasks (see above).")] = "local",
        corpus: Annotated[
            Path | None, typer.Option(help="Prepared corpus: held-out text for the local tasks (and its tokenizer).")
        ] = None,
        heldout: Annotated[
            Path | None,
            typer.Option(help="Folder of <domain>.txt / <domain>.jsonl held-out text (instead of --corpus)."),
        ] = None,
        tokenizer: Annotated[
            Path | None, typer.Option(help="Tokenizer folder [default: the model folder's, else the corpus's].")
        ] = None,
        data_dir: Annotated[
            Path | None,
            typer.Option(
                envvar="MIXSWEEP_EVAL_DATA", help="Benchmark data root [default: ~/.cache/mixsweep/eval_data]."
            ),
        ] = None,
        max_docs: Annotated[int, typer.Option(help="Held-out passages per domain for each local task.")] = 64,
        choices: Annotated[int, typer.Option(help="Choices per cloze question (1 true + distractors).")] = 4,
        max_samples: Annotated[int | None, typer.Option(help="Cap on documents per task (partial numbers!).")] = None,
        batch_size: Annotated[int, typer.Option(help="LightEval batch size.")] = 16,
        objective: Annotated[
            str | None, typer.Option(help="Objective as name=weight,... e.g. bpb/mean=-1 (higher is better).")
        ] = None,
        spec: Annotated[
            Path | None, typer.Option(help="YAML/JSON with extra `aggregates` and the `objective`.")
        ] = None,
        out: Annotated[Path | None, typer.Option(help="Results folder [default: HF_DIR/eval].")] = None,
        force: Annotated[bool, typer.Option("--force", help="Evaluate again even if the results file exists.")] = False,
        as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
        list_tasks: Annotated[
            bool, typer.Option("--list-tasks", help="List the OpenSeek benchmarks, their data and exit.")
        ] = False,
    ) -> None:
        _quiet()
        if list_tasks:
            _print_task_list()
            return
        from eval.aggregate import load_spec, parse_objective  # the eval package (~20 ms): only evaluate loads it
        from eval.errors import EvalError  # eval, as above
        from eval.evaluate import EvalOptions, evaluate  # eval, as above
        from eval.tasks.local import LocalTaskOptions  # eval, as above

        if hf_dir is None:
            raise EvalError("missing HF_DIR (a model folder from `mixsweep convert`)", where="evaluate")
        extra, spec_objective = load_spec(spec) if spec is not None else ([], {})
        terms = parse_objective(objective) if objective else (spec_objective or None)
        options = EvalOptions(
            batch_size=batch_size, max_samples=max_samples, local=LocalTaskOptions(max_docs=max_docs, choices=choices)
        )
        if not as_json:
            console().print(f"[dim]evaluating {hf_dir} on {tasks} (LightEval takes ~10 s to import)[/]")
        result = evaluate(
            hf_dir,
            tasks,
            corpus=corpus,
            heldout=heldout,
            tokenizer=tokenizer,
            data_dir=data_dir,
            out_dir=out,
            options=options,
            aggregates=extra,
            objective=terms,
            force=force,
        )
        if as_json:
            print(json.dumps(result.to_dict() | {"reused": result.reused}, indent=1))
        else:
            _print_evaluation(result)
