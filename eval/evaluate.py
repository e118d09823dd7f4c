"""`evaluate(hf_dir, tasks)`: LightEval on a converted proxy, results as flat metrics + a JSON file.

Task names (comma-separated; `name|k` sets k few-shot examples):

| name | what |
|---|---|
| `local` | every local task: `bpb` and `cloze` |
| `bpb`, `cloze` | that local task for every held-out domain |
| `bpb:<domain>`, `cloze:<domain>` | one domain |
| `openseek` | OpenSeek's suite (`eval.tasks.openseek.BENCHMARKS`) |
| `openseek:english`, `openseek:chinese` | one language group of it |
| `hellaswag`, `mmlu`, ... | one benchmark |

Local tasks need held-out text: a prepared corpus (`corpus=`) or a folder (`heldout=`). OpenSeek
benchmarks need their data under the data root; missing data fails before anything loads.

The results file `<out_dir>/results-<key>.json` is named by everything that decides the numbers
(the weights' fingerprint, the task list and its data, the options), so a rerun returns it without
evaluating again and a different checkpoint in the same folder is evaluated afresh.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from eval import aggregate, runner
from eval.errors import EvalError
from eval.tasks import heldout as heldout_sources
from eval.tasks import local as local_tasks
from eval.tasks import openseek
from mixture_search.files import atomic_write_json
from mixture_search.keys import content_key

CONTEXT_MARGIN = 4  # tokens kept free of the model's context: BOS and re-tokenisation at the split


@dataclass(frozen=True)
class EvalOptions:
    batch_size: int = 16
    max_samples: int | None = None  # cap on documents per task (LightEval's max_samples)
    local: local_tasks.LocalTaskOptions = field(default_factory=local_tasks.LocalTaskOptions)
    seed: int = 1234

    def __post_init__(self) -> None:
        if self.batch_size < 1:
            raise EvalError(f"must be >= 1, got {self.batch_size}", where="batch_size")
        if self.max_samples is not None and self.max_samples < 1:
            raise EvalError(f"must be >= 1, got {self.max_samples}", where="max_samples")


@dataclass(frozen=True)
class EvalResult:
    hf_dir: str
    model_fingerprint: str
    tasks: list[str]  # LightEval task specs that ran ("bpb:code|0", ...)
    metrics: dict[str, float]  # "<task>/<metric>" and "<task>/<metric>_stderr"
    aggregates: dict[str, float]
    objective: float | None
    objective_terms: dict[str, float]
    docs: dict[str, int]  # documents evaluated per task
    lighteval: dict[str, Any]  # LightEval's own results section and versions, as it returned them
    results_path: str
    seconds: float
    reused: bool = False

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data.pop("reused")
        return data

    @classmethod
    def load(cls, path: Path) -> EvalResult | None:
        try:
            data = json.loads(Path(path).read_text(encoding="utf-8"))
            names = {f.name for f in dataclasses.fields(cls)}
            return cls(**{k: v for k, v in data.items() if k in names})
        except (OSError, ValueError, TypeError):
            return None


# -- the model folder -------------------------------------------------------------------------------
def _check_model(hf_dir: Path) -> dict[str, Any]:
    if not (hf_dir / "config.json").exists():
        raise EvalError(
            "no Hugging Face model here (no config.json); convert a checkpoint with `mixsweep convert`",
            where=str(hf_dir),
        )
    if not any(hf_dir.glob("*.safetensors")) and not any(hf_dir.glob("*.bin")):
        raise EvalError("the model folder has no weights (*.safetensors)", where=str(hf_dir))
    try:
        config: dict[str, Any] = json.loads((hf_dir / "config.json").read_text(encoding="utf-8"))
    except ValueError as exc:
        raise EvalError(f"config.json is not valid JSON ({exc})", where=str(hf_dir)) from None
    return config


def model_fingerprint(hf_dir: Path) -> str:
    """The conversion's weight fingerprint, or else a hash of the weight files' bytes."""
    report = hf_dir / "conversion.json"
    if report.exists():
        try:
            fp = json.loads(report.read_text(encoding="utf-8")).get("fingerprint")
            if isinstance(fp, str) and fp:
                return fp
        except ValueError:
            pass
    h = hashlib.sha256()
    for path in sorted(hf_dir.glob("*.safetensors")):
        with path.open("rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                h.update(block)
    return h.hexdigest()[:20]


# -- task selection ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class Selection:
    local: list[tuple[str, int]]  # (local task name or kind or "local", shots)
    benchmarks: list[tuple[str, int]]  # (benchmark name, shots)

    @property
    def needs_local(self) -> bool:
        return bool(self.local)


def parse_tasks(tasks: str | list[str]) -> Selection:
    items = [t.strip() for t in (tasks.split(",") if isinstance(tasks, str) else tasks) if t.strip()]
    if not items:
        raise EvalError("no task given", where="--tasks")
    local: list[tuple[str, int]] = []
    benches: list[tuple[str, int]] = []
    for item in items:
        name, _, shots_text = item.partition("|")
        shots = -1
        if shots_text:
            if not shots_text.isdigit():
                raise EvalError(f"few-shot count {shots_text!r} is not a whole number", where=f"--tasks {item}")
            shots = int(shots_text)
        if name in ("local", "bpb", "cloze") or name.startswith(("bpb:", "cloze:")):
            local.append((name, max(shots, 0)))
        elif name == "openseek":
            benches.extend((b, shots) for b in openseek.BENCHMARKS)
        elif name.startswith("openseek:"):
            group = name.split(":", 1)[1].lower()
            members = [b.name for b in openseek.BENCHMARKS.values() if b.group.lower() == group]
            if not members:
                groups = sorted({b.group.lower() for b in openseek.BENCHMARKS.values()})
                raise EvalError(
                    f"unknown OpenSeek group {group!r} (known: {', '.join(groups)})", where=f"--tasks {item}"
                )
            benches.extend((b, shots) for b in members)
        elif name in openseek.BENCHMARKS:
            benches.append((name, shots))
        else:
            known = (
                "local, bpb, cloze, bpb:<domain>, cloze:<domain>, openseek, openseek:english, openseek:chinese, "
                + ", ".join(openseek.BENCHMARKS)
            )
            raise EvalError(f"unknown task {name!r} (known: {known})", where="--tasks")
    deduped = list(dict.fromkeys(benches))
    return Selection(local=list(dict.fromkeys(local)), benchmarks=deduped)


def _pick_local(selection: Selection, tasks: list[local_tasks.LocalTask]) -> list[tuple[local_tasks.LocalTask, int]]:
    by_name = {t.name: t for t in tasks}
    picked: dict[str, tuple[local_tasks.LocalTask, int]] = {}
    for name, shots in selection.local:
        if name == "local":
            chosen = tasks
        elif name in ("bpb", "cloze"):
            chosen = [t for t in tasks if t.kind == name]
        elif name in by_name:
            chosen = [by_name[name]]
        else:
            kind = name.split(":", 1)[0]
            known = ", ".join(t.name for t in tasks if t.kind == kind)
            raise EvalError(f"no held-out domain for {name} (known: {known})", where="--tasks")
        for t in chosen:
            picked[t.name] = (t, shots)
    return list(picked.values())


def _has_tokenizer(folder: Path) -> bool:
    return (folder / "tokenizer.json").exists() or (folder / "tokenizer_config.json").exists()


def _tokenizer_dir(hf: Path, tokenizer: Path | str | None, corpus: Any) -> Path:
    """The tokenizer to evaluate with: the one given, else the model folder's, else the corpus's."""
    if tokenizer is not None:
        if not _has_tokenizer(Path(tokenizer)):
            raise EvalError("not a Hugging Face tokenizer folder (no tokenizer.json)", where=str(tokenizer))
        return Path(tokenizer)
    if _has_tokenizer(hf):
        return hf
    if corpus is not None and getattr(corpus, "tokenizer_dir", None) is not None:
        return Path(str(corpus.tokenizer_dir))
    raise EvalError(
        "the model folder has no tokenizer: convert with --tokenizer/--corpus, or evaluate with --corpus", where=str(hf)
    )


def _tokenizer_stamp(folder: Path) -> str:
    names = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json")
    return content_key(b"".join((folder / name).read_bytes() for name in names if (folder / name).exists()))


def _heldout(
    corpus: Any, heldout: Path | str | None, max_tokens: int, tokenizer: Any, passages: int
) -> local_tasks.HeldOut:
    if heldout is not None:
        source = heldout_sources.from_folder(heldout)
    elif corpus is not None:
        source = heldout_sources.from_corpus(corpus, seq_len=max_tokens, max_passages=passages)
    else:
        raise EvalError(
            "local tasks need held-out text: give a prepared corpus (--corpus) or a folder (--heldout)", where="--tasks"
        )
    return heldout_sources.fit_to_context(source, tokenizer, max_tokens)


def _data_stamp(root: Path, names: list[str]) -> list[Any]:
    """What identifies the benchmark files in use (name, size, mtime), for the results key."""
    stamp = []
    for name in names:
        for path in sorted((root / name).glob("*")):
            st = path.stat()
            stamp.append([name, path.name, st.st_size, int(st.st_mtime)])
    return stamp


# -- the evaluation ----------------------------------------------------------------------------------
def evaluate(
    hf_dir: Path | str,
    tasks: str | list[str] = "local",
    *,
    corpus: Any = None,
    heldout: Path | str | None = None,
    tokenizer: Path | str | None = None,
    data_dir: Path | str | None = None,
    out_dir: Path | str | None = None,
    options: EvalOptions | None = None,
    aggregates: list[aggregate.Aggregate] | None = None,
    objective: dict[str, float] | None = None,
    force: bool = False,
) -> EvalResult:
    """Run LightEval on the model in `hf_dir`; return (and write) flat metrics, aggregates and the
    objective. `corpus` is a prepared corpus or its folder (held-out text; also the tokenizer when the
    model folder has none); `aggregates` add to the defaults; `objective` replaces the default one."""
    t0 = time.perf_counter()
    options = options or EvalOptions()
    hf = Path(hf_dir)
    config = _check_model(hf)
    selection = parse_tasks(tasks)
    out = Path(out_dir) if out_dir is not None else hf / "eval"
    bench_names = [name for name, _ in selection.benchmarks]
    root = openseek.check_available(bench_names, data_dir) if bench_names else None

    if isinstance(corpus, (str, Path)):
        from trainers.data import Corpus  # lazy: trainers.data imports torch (seconds)

        corpus = Corpus.load(Path(corpus))
    tok_dir = _tokenizer_dir(hf, tokenizer, corpus)
    picked: list[tuple[local_tasks.LocalTask, int]] = []
    if selection.needs_local:
        from transformers import AutoTokenizer  # lazy: transformers takes seconds to import

        tok = AutoTokenizer.from_pretrained(str(tok_dir))
        max_tokens = int(config.get("max_position_embeddings") or 2048) - CONTEXT_MARGIN
        held = _heldout(corpus, heldout, max_tokens, tok, options.local.max_docs)
        written = local_tasks.write_local_tasks(held, out / "tasks", options.local)
        picked = _pick_local(selection, written)

    specs = [f"{t.name}|{shots}" for t, shots in picked]
    specs += [
        f"{name}|{openseek.BENCHMARKS[name].shots if shots < 0 else shots}" for name, shots in selection.benchmarks
    ]
    fingerprint = model_fingerprint(hf)
    key_payload = {
        "model": fingerprint,
        "tokenizer": _tokenizer_stamp(tok_dir),
        "tasks": specs,
        "local": [dataclasses.asdict(t) | {"path": Path(t.path).parent.name} for t, _ in picked],
        "data": _data_stamp(root, bench_names) if root else [],
        "options": {"max_samples": options.max_samples, "seed": options.seed},
        "aggregates": [dataclasses.asdict(a) for a in aggregates or []],
        "objective": objective,
    }
    key = content_key(key_payload)
    results_path = out / f"results-{key}.json"
    if not force:
        previous = EvalResult.load(results_path)
        if previous is not None:
            return dataclasses.replace(previous, reused=True)

    configs = local_tasks.lighteval_configs([t for t, _ in picked])
    if bench_names:
        assert root is not None
        configs += openseek.lighteval_configs(bench_names, root)
    raw = runner.run(
        hf,
        configs,
        ",".join(specs),
        tokenizer=tok_dir,
        batch_size=options.batch_size,
        max_samples=options.max_samples,
        seed=options.seed,
        jsonl_tasks=frozenset(t.name for t, _ in picked),
    )
    metrics = aggregate.flatten(raw.get("results", {}))
    aggs = (
        aggregate.local_aggregates([t for t, _ in picked])
        + aggregate.openseek_aggregates(bench_names)
        + list(aggregates or [])
    )
    agg_values = aggregate.compute(metrics, aggs)
    available = metrics | agg_values
    terms = dict(objective) if objective else aggregate.default_objective(available)
    value = aggregate.objective_value(terms, available)
    docs = {str(k): int(v) for k, v in (raw.get("docs") or {}).items()}
    result = EvalResult(
        hf_dir=str(hf),
        model_fingerprint=fingerprint,
        tasks=specs,
        metrics=metrics,
        aggregates=agg_values,
        objective=value,
        objective_terms=terms,
        docs=docs,
        lighteval=json.loads(
            json.dumps({"results": raw.get("results", {}), "versions": raw.get("versions", {})}, default=str)
        ),
        results_path=str(results_path),
        seconds=round(time.perf_counter() - t0, 2),
    )
    atomic_write_json(results_path, result.to_dict(), ensure_ascii=False)
    return result
