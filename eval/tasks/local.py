"""Local tasks built from a corpus's held-out split: per-domain bits per byte and per-domain cloze.

Both run through LightEval as ordinary custom tasks over JSONL files we write, so they use the same
model wrapper, batching and result format as any benchmark:

- `bpb:<domain>`: each held-out passage is split into a short context (its first quarter, cut at a
  space where there is one) and the rest; bits per byte = -sum(log2 p(continuation)) / UTF-8 bytes
  of the continuations, over the domain (LightEval's `bits_per_byte` corpus computation on loglikelihood
  requests). Lower is better. Bytes, not tokens, so tokenizers compare.
- `cloze:<domain>`: the first half of a held-out passage, and `choices` continuations of the same
  length in characters: the true one and distractors cut at the same place from other passages of
  the *same* domain, in a seeded random order. Accuracy = how often the true one has the highest
  log-likelihood (also reported length-normalised, `acc_norm`). Chance is 1 / choices.

The passages come from `HeldOut`: a domain -> texts mapping with group labels, made from a prepared
corpus (`heldout.from_corpus`) or from a folder of text files (`heldout.from_folder`). What gets
written is a pure function of the passages and `LocalTaskOptions`, stored under a folder named by
that content hash, so a rerun reuses it and a different held-out split never reads stale files.
"""

from __future__ import annotations

import json
import random
import re
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from eval.errors import EvalError
from mixture_search.files import atomic_write, atomic_write_json
from mixture_search.keys import content_key

MANIFEST = "manifest.json"
_NAME_SAFE = re.compile(r"[^A-Za-z0-9_.\-]")


@dataclass(frozen=True)
class HeldOut:
    """Held-out passages per domain (each short enough for the model's context) and group labels."""

    passages: dict[str, list[str]]
    groups: dict[str, str]
    source: str

    def __post_init__(self) -> None:
        if not self.passages:
            raise EvalError("the held-out split has no domains", where=self.source)
        for domain, texts in self.passages.items():
            if not any(t.strip() for t in texts):
                raise EvalError(f"domain {domain} has no held-out text", where=self.source)

    @property
    def key(self) -> str:
        return content_key(
            json.dumps({"passages": self.passages, "groups": self.groups}, sort_keys=True, ensure_ascii=False)
        )


@dataclass(frozen=True)
class LocalTaskOptions:
    """How many documents per domain, how many cloze choices, the seed of the choice order."""

    max_docs: int = 64
    choices: int = 4
    context_fraction: float = 0.25  # share of a bpb passage given as context
    max_continuation_chars: int = 200  # cloze continuations are cut to at most this many characters
    seed: int = 0

    def __post_init__(self) -> None:
        if self.max_docs < 1:
            raise EvalError(f"must be >= 1, got {self.max_docs}", where="local_tasks.max_docs")
        if self.choices < 2:
            raise EvalError(f"must be >= 2, got {self.choices}", where="local_tasks.choices")
        if not 0 < self.context_fraction < 1:
            raise EvalError(f"must be in (0, 1), got {self.context_fraction}", where="local_tasks.context_fraction")
        if self.max_continuation_chars < 1:
            raise EvalError("must be >= 1", where="local_tasks.max_continuation_chars")


@dataclass(frozen=True)
class LocalTask:
    name: str  # LightEval task name, e.g. "bpb:code"
    kind: str  # "bpb" | "cloze"
    domain: str
    group: str
    path: str  # folder with test.jsonl
    docs: int


def task_name(kind: str, domain: str) -> str:
    """`bpb:<domain>`; characters LightEval's task syntax reserves (`|`, `@`, `,`, `:`) become `_`."""
    return f"{kind}:{_NAME_SAFE.sub('_', domain)}"


def _cut(text: str, at: int) -> int:
    """`at`, moved back onto the nearest space within 20 characters if there is one, so the space
    starts the continuation (LightEval would move a context's trailing space there anyway, and the
    bytes counted must be the bytes predicted)."""
    space = text.rfind(" ", max(1, at - 20), at + 1)
    return space if space > 0 else at


def _bpb_docs(texts: list[str], opts: LocalTaskOptions) -> list[dict[str, Any]]:
    docs = []
    for text in texts[: opts.max_docs]:
        if len(text) < 2:
            continue
        cut = min(max(1, _cut(text, round(len(text) * opts.context_fraction))), len(text) - 1)
        docs.append({"context": text[:cut], "continuation": text[cut:]})
    return docs


def _cloze_docs(texts: list[str], opts: LocalTaskOptions, rng: random.Random, where: str) -> list[dict[str, Any]]:
    halves = []
    for text in texts:
        cut = _cut(text, len(text) // 2)
        if 1 <= cut < len(text):
            halves.append((text[:cut], text[cut:]))
    n_choices = min(opts.choices, len(halves))
    if n_choices < 2:
        raise EvalError(f"needs at least 2 held-out passages for a cloze task, has {len(halves)}", where=where)
    length = min(opts.max_continuation_chars, *(len(rest) for _, rest in halves))
    docs = []
    for i, (context, rest) in enumerate(halves[: opts.max_docs]):
        others = [j for j in range(len(halves)) if j != i]
        picks = rng.sample(others, n_choices - 1)
        choices = [rest[:length]] + [halves[j][1][:length] for j in picks]
        order = list(range(n_choices))
        rng.shuffle(order)
        docs.append({"context": context, "choices": [choices[k] for k in order], "gold": order.index(0)})
    return docs


def _write_jsonl(folder: Path, rows: list[dict[str, Any]]) -> None:
    atomic_write(folder / "test.jsonl", "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows))


def write_local_tasks(heldout: HeldOut, root: Path | str, opts: LocalTaskOptions | None = None) -> list[LocalTask]:
    """Write the bpb and cloze JSONL files of every domain under `root/<content key>/` (reused when
    present) and return the task list."""
    opts = opts or LocalTaskOptions()
    key = content_key(f"{heldout.key}:{json.dumps(asdict(opts), sort_keys=True)}")
    folder = Path(root) / key
    manifest = folder / MANIFEST
    if manifest.exists():
        return [LocalTask(**t) for t in json.loads(manifest.read_text(encoding="utf-8"))["tasks"]]
    rng = random.Random(opts.seed)
    tasks: list[LocalTask] = []
    seen: dict[str, str] = {}
    for domain, texts in heldout.passages.items():
        texts = [t for t in texts if t.strip()]
        group = heldout.groups.get(domain, domain)
        for kind in ("bpb", "cloze"):
            name = task_name(kind, domain)
            if name in seen and seen[name] != domain:
                raise EvalError(
                    f"domains {seen[name]} and {domain} map to the same task name {name}", where=heldout.source
                )
            seen[name] = domain
            rows = (
                _bpb_docs(texts, opts) if kind == "bpb" else _cloze_docs(texts, opts, rng, f"{heldout.source}:{domain}")
            )
            if not rows:
                raise EvalError(f"no usable held-out passage for the {kind} task", where=f"{heldout.source}:{domain}")
            path = folder / name.replace(":", "_")
            _write_jsonl(path, rows)
            tasks.append(LocalTask(name=name, kind=kind, domain=domain, group=group, path=str(path), docs=len(rows)))
    payload = {"source": heldout.source, "options": asdict(opts), "tasks": [asdict(t) for t in tasks]}
    atomic_write_json(manifest, payload, ensure_ascii=False)
    return tasks


# -- LightEval side (imported only when an evaluation runs) -------------------------------------------
def bpb_prompt(line: dict[str, Any], task_name: str) -> Any:
    # lazy: LightEval takes ~10 s to import; only an evaluation run needs it
    from lighteval.tasks.requests import Doc

    return Doc(task_name=task_name, query=line["context"], choices=[line["continuation"]], gold_index=0)


def cloze_prompt(line: dict[str, Any], task_name: str) -> Any:
    # lazy: LightEval takes ~10 s to import; only an evaluation run needs it
    from lighteval.tasks.requests import Doc

    return Doc(task_name=task_name, query=line["context"], choices=list(line["choices"]), gold_index=int(line["gold"]))


def bpb_metric() -> Any:
    """Bits per byte of the continuations from loglikelihood requests (LightEval's own PERPLEXITY
    request path does not run with its transformers backend; this one does)."""
    # lazy: LightEval takes ~10 s to import; only an evaluation run needs it
    from lighteval.metrics.metrics_corpus import CorpusLevelPerplexityMetric
    from lighteval.metrics.sample_preparator import TargetPerplexityPreparator
    from lighteval.metrics.utils.metric_utils import CorpusLevelMetric
    from lighteval.tasks.requests import SamplingMethod

    return CorpusLevelMetric(
        metric_name="bpb",
        sample_level_fn=TargetPerplexityPreparator(units_type="bytes"),
        category=SamplingMethod.LOGPROBS,
        corpus_level_fn=CorpusLevelPerplexityMetric("bits_per_byte"),
        higher_is_better=False,
    )


def accuracy_metrics() -> list[Any]:
    # lazy: LightEval takes ~10 s to import; only an evaluation run needs it
    from lighteval.metrics.metrics import Metrics
    from lighteval.metrics.metrics_sample import LoglikelihoodAcc
    from lighteval.metrics.normalizations import LogProbCharNorm
    from lighteval.metrics.utils.metric_utils import SampleLevelMetric
    from lighteval.tasks.requests import SamplingMethod

    acc_norm = SampleLevelMetric(
        metric_name="acc_norm",
        sample_level_fn=LoglikelihoodAcc(logprob_normalization=LogProbCharNorm()),
        category=SamplingMethod.LOGPROBS,
        corpus_level_fn=np.mean,
        higher_is_better=True,
    )
    return [Metrics.loglikelihood_acc, acc_norm]


def lighteval_configs(tasks: list[LocalTask]) -> list[Any]:
    # lazy: LightEval takes ~10 s to import; only an evaluation run needs it
    from lighteval.tasks.lighteval_task import LightevalTaskConfig

    configs = []
    for t in tasks:
        bpb = t.kind == "bpb"
        configs.append(
            LightevalTaskConfig(
                name=t.name,
                prompt_function=bpb_prompt if bpb else cloze_prompt,
                hf_repo=t.path,
                hf_subset="default",
                metrics=[bpb_metric()] if bpb else accuracy_metrics(),
                hf_avail_splits=["test"],
                evaluation_splits=["test"],
                few_shots_split="test",
                version=1,
            )
        )
    return configs
