"""OpenSeek's evaluation suite as named LightEval tasks over local copies of the benchmarks.

The benchmarks and shot counts are those of OpenSeek's published data-mixture comparison
(`tests/fixtures/openseek/data_mixture_exp_results.csv`), plus SIQA. Evaluation is offline, so each
benchmark is read from `<data root>/<name>/<split>.jsonl` (or .json/.parquet/.csv), an export of the
Hugging Face dataset named in its spec; a missing one stops the run before anything is loaded, with
a message naming the dataset, the folder and the fields expected.

The data root is, in order: the `data_dir` argument (`--data-dir`), `$MIXSWEEP_EVAL_DATA`,
`~/.cache/mixsweep/eval_data`.

Prompts follow the usual log-likelihood formulations (lm-evaluation-harness / LightEval): the
answer choices are continuations scored by the model; GSM8K and MATH are generative, scored by exact
match of the final answer.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from eval.errors import EvalError, MissingDatasetError
from eval.tasks.local import accuracy_metrics

EXTENSIONS = (".jsonl", ".json", ".parquet", ".csv")
LETTERS = "ABCDEFGHIJ"


def data_root(data_dir: Path | str | None = None) -> Path:
    if data_dir is not None:
        return Path(data_dir)
    env = os.environ.get("MIXSWEEP_EVAL_DATA")
    return Path(env) if env else Path.home() / ".cache" / "mixsweep" / "eval_data"


# -- prompts (module level: LightEval hashes task configs by their prompt function's name) -------------
def _doc(task_name: str, query: str, choices: list[str], gold: int, **kw: Any) -> Any:
    from lighteval.tasks.requests import Doc  # lighteval: only in the evaluation worker

    return Doc(task_name=task_name, query=query, choices=choices, gold_index=gold, **kw)


def _hellaswag_clean(text: str) -> str:
    text = text.strip().replace(" [title]", ". ")
    text = re.sub(r"\[.*?\]", "", text)
    return text.replace("  ", " ")


def hellaswag_prompt(line: dict[str, Any], task_name: str) -> Any:
    query = _hellaswag_clean(f"{line['activity_label']}: {line['ctx']}")
    return _doc(task_name, query, [" " + _hellaswag_clean(e) for e in line["endings"]], int(line["label"]))


def truthfulqa_prompt(line: dict[str, Any], task_name: str) -> Any:
    targets = line["mc1_targets"]
    return _doc(
        task_name, f"Q: {line['question']}\nA:", [" " + c for c in targets["choices"]], list(targets["labels"]).index(1)
    )


def winogrande_prompt(line: dict[str, Any], task_name: str) -> Any:
    query, rest = line["sentence"].split("_", 1)
    rest = rest.strip()
    choices = [f"{line['option1']} {rest}", f"{line['option2']} {rest}"]
    return _doc(task_name, query, choices, int(line["answer"]) - 1)


def _lettered_mc(task_name: str, question: str, texts: list[str], labels: list[str], key: str) -> Any:
    return _doc(task_name, f"Question: {question}\nAnswer:", [" " + t for t in texts], labels.index(key))


def commonsense_qa_prompt(line: dict[str, Any], task_name: str) -> Any:
    c = line["choices"]
    return _lettered_mc(task_name, line["question"], list(c["text"]), list(c["label"]), line["answerKey"])


def openbookqa_prompt(line: dict[str, Any], task_name: str) -> Any:
    c = line["choices"]
    return _lettered_mc(task_name, line["question_stem"], list(c["text"]), list(c["label"]), line["answerKey"])


def arc_prompt(line: dict[str, Any], task_name: str) -> Any:
    c = line["choices"]
    return _lettered_mc(task_name, line["question"], list(c["text"]), list(c["label"]), line["answerKey"])


def piqa_prompt(line: dict[str, Any], task_name: str) -> Any:
    return _doc(
        task_name, f"Question: {line['goal']}\nAnswer:", [" " + line["sol1"], " " + line["sol2"]], int(line["label"])
    )


def siqa_prompt(line: dict[str, Any], task_name: str) -> Any:
    choices = [" " + line[k] for k in ("answerA", "answerB", "answerC")]
    return _doc(task_name, f"{line['context']}\nQuestion: {line['question']}\nAnswer:", choices, int(line["label"]) - 1)


def boolq_prompt(line: dict[str, Any], task_name: str) -> Any:
    answer = line["answer"]
    gold = int(answer if isinstance(answer, bool) else str(answer).lower() in ("true", "1", "yes"))
    return _doc(task_name, f"{line['passage']}\nQuestion: {line['question']}?\nAnswer:", [" no", " yes"], gold)


def _letter_query(question: str, options: list[str], answer_word: str) -> str:
    body = "\n".join(f"{LETTERS[i]}. {o}" for i, o in enumerate(options))
    return f"{question.strip()}\n{body}\n{answer_word}"


def mmlu_prompt(line: dict[str, Any], task_name: str) -> Any:
    options = list(line["choices"])
    return _doc(
        task_name,
        _letter_query(line["question"], options, "Answer:"),
        [f" {LETTERS[i]}" for i in range(len(options))],
        int(line["answer"]),
    )


def cmmlu_prompt(line: dict[str, Any], task_name: str) -> Any:
    options = [line[k] for k in "ABCD"]
    return _doc(
        task_name,
        _letter_query(line["Question"], options, "答案："),
        list("ABCD"),
        "ABCD".index(str(line["Answer"]).strip()),
    )


def ceval_prompt(line: dict[str, Any], task_name: str) -> Any:
    options = [line[k] for k in "ABCD"]
    return _doc(
        task_name,
        _letter_query(line["question"], options, "答案："),
        list("ABCD"),
        "ABCD".index(str(line["answer"]).strip()),
    )


def gsm8k_prompt(line: dict[str, Any], task_name: str) -> Any:
    return _doc(task_name, f"Question: {line['question']}\nAnswer:", [" " + line["answer"]], 0)


def math_prompt(line: dict[str, Any], task_name: str) -> Any:
    return _doc(task_name, f"Problem:\n{line['problem']}\n\nSolution:", [" " + line["solution"]], 0)


# -- answer extraction for the generative benchmarks -------------------------------------------------
_NUMBER = re.compile(r"-?[\d,]*\.?\d+")


def final_number(text: str) -> str:
    """GSM8K's answer: after '####' if present, else the last number in the text; commas dropped."""
    if "####" in text:
        text = text.split("####")[-1]
    numbers = _NUMBER.findall(text)
    return numbers[-1].replace(",", "").rstrip(".") if numbers else ""


def boxed_answer(text: str) -> str:
    """The content of the last \\boxed{...} (balanced braces), whitespace removed; '' if none."""
    start = text.rfind("\\boxed{")
    if start < 0:
        return ""
    i, depth, out = start + len("\\boxed{"), 1, []
    while i < len(text):
        ch = text[i]
        depth += ch == "{"
        depth -= ch == "}"
        if depth == 0:
            break
        out.append(ch)
        i += 1
    return "".join(out).replace(" ", "")


# -- the suite ----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Benchmark:
    name: str
    title: str
    category: str  # OpenSeek's table category
    group: str  # aggregate group: English | Chinese
    repo: str  # the Hugging Face dataset to export ...
    config: str | None  # ... its configuration (None: the default one)
    splits: tuple[tuple[str, str], ...]  # (source split, file name) pairs; the first is evaluated
    fields: tuple[str, ...]
    prompt: Callable[[dict[str, Any], str], Any]
    shots: int
    metric: str = "acc"  # the score aggregates use: acc | acc_norm | em
    math: bool = False  # OpenSeek also reports averages without math
    generative: bool = False
    generation_size: int = 256
    note: str = ""  # how to assemble the export, when it is more than one split

    @property
    def eval_split(self) -> str:
        return self.splits[0][1]

    @property
    def fewshot_split(self) -> str | None:
        return self.splits[1][1] if len(self.splits) > 1 else None

    @property
    def source(self) -> str:
        return self.repo + (f" ({self.config})" if self.config else "")

    @property
    def source_splits(self) -> str:
        return ", ".join(f"{src}->{dst}" for src, dst in self.splits)


ECR, EPS, EM, ZH = "English-Commonsense Reasoning", "English-Problem-Solving", "English-Mathematics", "Chinese"
_VT = (("validation", "validation"), ("train", "train"))
_TT = (("test", "test"), ("train", "train"))
_ALL = "concatenate all subject configurations into each file"

BENCHMARKS: dict[str, Benchmark] = {
    b.name: b
    for b in (
        Benchmark(
            "hellaswag",
            "HellaSwag",
            ECR,
            "English",
            "Rowan/hellaswag",
            None,
            _VT,
            ("activity_label", "ctx", "endings", "label"),
            hellaswag_prompt,
            5,
            "acc_norm",
        ),
        Benchmark(
            "truthfulqa",
            "TruthfulQA",
            ECR,
            "English",
            "truthfulqa/truthful_qa",
            "multiple_choice",
            (("validation", "validation"),),
            ("question", "mc1_targets"),
            truthfulqa_prompt,
            0,
        ),
        Benchmark(
            "winogrande",
            "Winogrande",
            ECR,
            "English",
            "allenai/winogrande",
            "winogrande_xl",
            _VT,
            ("sentence", "option1", "option2", "answer"),
            winogrande_prompt,
            5,
        ),
        Benchmark(
            "commonsense_qa",
            "CommonsenseQA",
            ECR,
            "English",
            "tau/commonsense_qa",
            None,
            _VT,
            ("question", "choices", "answerKey"),
            commonsense_qa_prompt,
            5,
        ),
        Benchmark(
            "piqa",
            "PIQA",
            ECR,
            "English",
            "ybisk/piqa",
            None,
            _VT,
            ("goal", "sol1", "sol2", "label"),
            piqa_prompt,
            5,
            "acc_norm",
        ),
        Benchmark(
            "siqa",
            "SIQA",
            ECR,
            "English",
            "allenai/social_i_qa",
            None,
            _VT,
            ("context", "question", "answerA", "answerB", "answerC", "label"),
            siqa_prompt,
            5,
        ),
        Benchmark(
            "openbookqa",
            "OpenBookQA",
            ECR,
            "English",
            "allenai/openbookqa",
            "main",
            _TT,
            ("question_stem", "choices", "answerKey"),
            openbookqa_prompt,
            5,
            "acc_norm",
        ),
        Benchmark(
            "boolq",
            "BoolQ",
            ECR,
            "English",
            "google/boolq",
            None,
            _VT,
            ("passage", "question", "answer"),
            boolq_prompt,
            5,
        ),
        Benchmark(
            "arc_easy",
            "ARC Easy",
            EPS,
            "English",
            "allenai/ai2_arc",
            "ARC-Easy",
            _TT,
            ("question", "choices", "answerKey"),
            arc_prompt,
            5,
            "acc_norm",
        ),
        Benchmark(
            "arc_challenge",
            "ARC Challenge",
            EPS,
            "English",
            "allenai/ai2_arc",
            "ARC-Challenge",
            _TT,
            ("question", "choices", "answerKey"),
            arc_prompt,
            5,
            "acc_norm",
        ),
        Benchmark(
            "mmlu",
            "MMLU",
            EPS,
            "English",
            "cais/mmlu",
            "all",
            (("test", "test"), ("dev", "train")),
            ("question", "choices", "answer"),
            mmlu_prompt,
            5,
        ),
        Benchmark(
            "gsm8k",
            "GSM8K",
            EM,
            "English",
            "openai/gsm8k",
            "main",
            _TT,
            ("question", "answer"),
            gsm8k_prompt,
            5,
            "em",
            math=True,
            generative=True,
        ),
        Benchmark(
            "minerva_math",
            "Minerva Math",
            EM,
            "English",
            "EleutherAI/hendrycks_math",
            None,
            _TT,
            ("problem", "solution"),
            math_prompt,
            4,
            "em",
            math=True,
            generative=True,
            generation_size=512,
            note=_ALL,
        ),
        Benchmark(
            "ceval",
            "CEval",
            ZH,
            "Chinese",
            "ceval/ceval-exam",
            None,
            (("val", "validation"), ("dev", "train")),
            ("question", "A", "B", "C", "D", "answer"),
            ceval_prompt,
            5,
            note=_ALL,
        ),
        Benchmark(
            "cmmlu",
            "CMMLU",
            ZH,
            "Chinese",
            "haonan-li/cmmlu",
            None,
            (("test", "test"), ("dev", "train")),
            ("Question", "A", "B", "C", "D", "Answer"),
            cmmlu_prompt,
            5,
            note=_ALL,
        ),
    )
}


def split_file(folder: Path, split: str) -> Path | None:
    for ext in EXTENSIONS:
        path = folder / f"{split}{ext}"
        if path.exists():
            return path
    return None


def _first_row(path: Path) -> dict[str, Any] | None:
    if path.suffix == ".jsonl":
        with path.open(encoding="utf-8") as fh:
            for line in fh:
                if line.strip():
                    row = json.loads(line)
                    return row if isinstance(row, dict) else None
        return None
    return None  # other formats are checked by `datasets` when the task loads


def how_to_provide(b: Benchmark, root: Path) -> str:
    files = " and ".join(f"{dst}.jsonl" for _, dst in b.splits)
    config = f", {b.config!r}" if b.config else ""
    src, dst = b.splits[0]
    example = f"datasets.load_dataset({b.repo!r}{config})[{src!r}].to_json('{root / b.name / dst}.jsonl')"
    note = f"; {b.note}" if b.note else ""
    return (
        f"provide it at {root / b.name}/ as {files} (source splits {b.source_splits}) with fields {', '.join(b.fields)}, "
        f"exported on a connected machine from the Hugging Face dataset {b.source}, e.g. `{example}`{note}"
    )


def check_available(names: list[str], data_dir: Path | str | None = None) -> Path:
    """Fail before any loading if a benchmark's files are missing or lack a field; returns the root."""
    root = data_root(data_dir)
    missing = []
    for name in names:
        b = BENCHMARKS[name]
        folder = root / b.name
        need = [b.eval_split] + ([b.fewshot_split] if b.fewshot_split and b.shots else [])
        if not folder.is_dir() or any(split_file(folder, s) is None for s in need):
            missing.append(b)
            continue
        eval_file = split_file(folder, b.eval_split)
        assert eval_file is not None
        try:
            row = _first_row(eval_file)
        except ValueError as exc:
            raise EvalError(f"invalid JSON line ({exc})", where=str(eval_file)) from None
        if row is not None:
            absent = [f for f in b.fields if f not in row]
            if absent:
                raise EvalError(
                    f"dataset {b.name} lacks field {absent[0]} (expected {', '.join(b.fields)}, the columns of {b.source})",
                    where=str(eval_file),
                )
    if len(missing) == 1:
        b = missing[0]
        raise MissingDatasetError(
            f"dataset {b.name} ({b.title}) is missing: {how_to_provide(b, root)}", where=str(root / b.name)
        )
    if missing:
        names_missing = ", ".join(b.name for b in missing)
        raise MissingDatasetError(
            f"{len(missing)} datasets are missing ({names_missing}): provide each at {root}/<name>/ as <split>.jsonl; "
            "`mixsweep evaluate --list-tasks` shows every dataset's source, splits and fields "
            "(set the folder with --data-dir or MIXSWEEP_EVAL_DATA)",
            where=str(root),
        )
    return root


def _gen_metric(extract: Callable[[str], str]) -> Any:
    # lighteval: seconds to import, and only the evaluation worker needs it (here and below)
    from lighteval.metrics.metrics_sample import ExactMatches
    from lighteval.metrics.utils.metric_utils import SampleLevelMetric
    from lighteval.tasks.requests import SamplingMethod

    return SampleLevelMetric(
        metric_name="em",
        sample_level_fn=ExactMatches(normalize_gold=extract, normalize_pred=extract, strip_strings=True),
        category=SamplingMethod.GENERATIVE,
        corpus_level_fn=np.mean,
        higher_is_better=True,
    )


def lighteval_configs(names: list[str], root: Path) -> list[Any]:
    from lighteval.tasks.lighteval_task import LightevalTaskConfig  # lighteval: only in the evaluation worker

    configs = []
    for name in names:
        b = BENCHMARKS[name]
        if b.generative:
            metrics = [_gen_metric(final_number if b.name == "gsm8k" else boxed_answer)]
            stop = ["\n\nQuestion:", "Question:"] if b.name == "gsm8k" else ["\n\nProblem:", "Problem:"]
        else:
            metrics, stop = accuracy_metrics(), None
        splits = [b.eval_split] + ([b.fewshot_split] if b.fewshot_split else [])
        configs.append(
            LightevalTaskConfig(
                name=b.name,
                prompt_function=b.prompt,
                hf_repo=str(root / b.name),
                hf_subset="default",
                metrics=metrics,
                hf_avail_splits=splits,
                evaluation_splits=[b.eval_split],
                few_shots_split=b.fewshot_split,
                few_shots_select="random_sampling_from_train" if b.fewshot_split else None,
                generation_size=b.generation_size if b.generative else None,
                stop_sequence=stop,
                version=1,
            )
        )
    return configs
