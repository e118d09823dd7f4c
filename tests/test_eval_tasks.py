"""Task selection, local task files, OpenSeek prompts and data checks, aggregates, CLI errors (no model runs)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from eval import aggregate
from eval.errors import EvalError, MissingDatasetError
from eval.evaluate import parse_tasks
from eval.tasks import heldout as heldout_sources
from eval.tasks import local, openseek
from flows.cli import app
from tests import eval_support as support
from tests.conftest import OPENSEEK

# -- task selection -----------------------------------------------------------------------------------


def test_task_selection() -> None:
    sel = parse_tasks("local, hellaswag|3, openseek:chinese")
    assert sel.local == [("local", 0)]
    assert sel.benchmarks == [("hellaswag", 3), ("ceval", -1), ("cmmlu", -1)]
    assert [b for b, _ in parse_tasks("openseek").benchmarks] == list(openseek.BENCHMARKS)
    with pytest.raises(EvalError, match=r"unknown task 'helaswag' \(known: local, bpb, .*hellaswag"):
        parse_tasks("helaswag")
    with pytest.raises(EvalError, match="unknown OpenSeek group 'klingon'"):
        parse_tasks("openseek:klingon")
    with pytest.raises(EvalError, match="few-shot count 'x' is not a whole number"):
        parse_tasks("mmlu|x")


# -- local tasks ------------------------------------------------------------------------------------


def _heldout() -> local.HeldOut:
    code = support.paragraphs(support.code_text(), 200, 6)
    legal = support.paragraphs(support.legal_text(), 200, 6, skip=5)
    return local.HeldOut(passages={"code": code, "le|gal": legal}, groups={"code": "Code"}, source="test")


def test_local_task_files_are_deterministic_and_faithful(tmp_path: Path) -> None:
    held = _heldout()
    tasks = local.write_local_tasks(held, tmp_path, local.LocalTaskOptions(max_docs=5, choices=3))
    assert [t.name for t in tasks] == ["bpb:code", "cloze:code", "bpb:le_gal", "cloze:le_gal"]
    assert {t.group for t in tasks} == {"Code", "le|gal"}
    rows = [json.loads(x) for x in (Path(tasks[0].path) / "test.jsonl").read_text().splitlines()]
    assert [r["context"] + r["continuation"] for r in rows] == held.passages["code"][:5]
    assert all(not r["context"].endswith(" ") for r in rows), "a trailing space would be scored but not counted"
    cloze = [json.loads(x) for x in (Path(tasks[1].path) / "test.jsonl").read_text().splitlines()]
    for i, r in enumerate(cloze):
        passage = held.passages["code"][i]
        assert passage.startswith(r["context"] + r["choices"][r["gold"]])
        assert len(r["choices"]) == 3
    again = local.write_local_tasks(held, tmp_path, local.LocalTaskOptions(max_docs=5, choices=3))
    assert again == tasks and len(list(tmp_path.iterdir())) == 1
    other = local.write_local_tasks(held, tmp_path, local.LocalTaskOptions(max_docs=5, choices=3, seed=1))
    assert Path(other[1].path).parent != Path(tasks[1].path).parent


def test_cloze_needs_two_passages(tmp_path: Path) -> None:
    held = local.HeldOut(passages={"tiny": ["only one passage here"]}, groups={}, source="src")
    with pytest.raises(EvalError, match="src:tiny: needs at least 2 held-out passages"):
        local.write_local_tasks(held, tmp_path)


def test_passages_are_cut_to_the_model_context(tmp_path: Path) -> None:
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(support.train_tokenizer(tmp_path / "tok")))
    fitted = heldout_sources.fit_to_context(_heldout(), tok, 20)
    for texts in fitted.passages.values():
        for text in texts:
            assert len(tok(text, add_special_tokens=False)["input_ids"]) <= 20
    assert fitted.passages["code"][0] == _heldout().passages["code"][0][: len(fitted.passages["code"][0])]


def test_heldout_folder_errors(tmp_path: Path) -> None:
    with pytest.raises(EvalError, match=r"no <domain>\.txt or <domain>\.jsonl files"):
        heldout_sources.from_folder(tmp_path)
    (tmp_path / "d.jsonl").write_text('{"text": "a"}\n{"txt": "b"}\n')
    with pytest.raises(EvalError, match=r"d.jsonl:2: each line must be a JSON object with a \"text\" field"):
        heldout_sources.from_folder(tmp_path)


# -- OpenSeek suite -----------------------------------------------------------------------------------


def test_one_missing_dataset_says_what_and_where(tmp_path: Path) -> None:
    with pytest.raises(MissingDatasetError) as info:
        openseek.check_available(["arc_challenge"], tmp_path)
    msg = str(info.value)
    assert "\n" not in msg
    assert f"dataset arc_challenge (ARC Challenge) is missing: provide it at {tmp_path / 'arc_challenge'}/" in msg
    assert "test.jsonl and train.jsonl" in msg and "fields question, choices, answerKey" in msg
    assert "datasets.load_dataset('allenai/ai2_arc', 'ARC-Challenge')['test']" in msg


def test_several_missing_datasets_are_listed(tmp_path: Path) -> None:
    support.benchmark_samples(tmp_path)
    with pytest.raises(MissingDatasetError, match=r"13 datasets are missing \(truthfulqa, winogrande, .*cmmlu\)"):
        openseek.check_available(list(openseek.BENCHMARKS), tmp_path)
    assert openseek.check_available(["hellaswag", "gsm8k"], tmp_path) == tmp_path


def test_a_dataset_without_a_field_is_named(tmp_path: Path) -> None:
    support.write_jsonl(tmp_path / "piqa" / "validation.jsonl", [{"goal": "g", "sol1": "a", "sol2": "b"}])
    support.write_jsonl(tmp_path / "piqa" / "train.jsonl", [{"goal": "g", "sol1": "a", "sol2": "b"}])
    with pytest.raises(EvalError, match=r"validation\.jsonl: dataset piqa lacks field label"):
        openseek.check_available(["piqa"], tmp_path)


def test_data_root_from_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MIXSWEEP_EVAL_DATA", str(tmp_path))
    assert openseek.data_root() == tmp_path
    assert openseek.data_root("/x") == Path("/x")


def test_prompts_build_the_expected_documents() -> None:
    hs = openseek.hellaswag_prompt(
        {"activity_label": "Cooking", "ctx": "He [header] stirs", "endings": ["a", "b"], "label": "1"}, "hellaswag"
    )
    assert hs.query == "Cooking: He stirs" and hs.choices == [" a", " b"] and hs.gold_index == 1
    wg = openseek.winogrande_prompt(
        {"sentence": "The cup fell because _ was slippery.", "option1": "cup", "option2": "table", "answer": "2"}, "wg"
    )
    assert wg.query == "The cup fell because " and wg.choices == ["cup was slippery.", "table was slippery."]
    assert wg.gold_index == 1
    mmlu = openseek.mmlu_prompt({"question": "2+2?", "choices": ["3", "4", "5", "6"], "answer": 1}, "mmlu")
    assert mmlu.query == "2+2?\nA. 3\nB. 4\nC. 5\nD. 6\nAnswer:" and mmlu.choices[mmlu.gold_index] == " B"
    cm = openseek.cmmlu_prompt({"Question": "一加一？", "A": "1", "B": "2", "C": "3", "D": "4", "Answer": "B"}, "cmmlu")
    assert cm.query.endswith("答案：") and cm.gold_index == 1
    bq = openseek.boolq_prompt({"passage": "p", "question": "q", "answer": True}, "boolq")
    assert bq.choices[bq.gold_index] == " yes"


def test_answer_extraction() -> None:
    assert openseek.final_number("so 1,234 apples\n#### 1,234") == "1234"
    assert openseek.final_number("The answer is 42.") == "42"
    assert openseek.final_number("no digits") == ""
    assert openseek.boxed_answer(r"thus \boxed{\frac{1}{2}} and \boxed{ 3 }") == "3"
    assert openseek.boxed_answer(r"\boxed{\frac{1}{2}}") == r"\frac{1}{2}"


# -- aggregates ---------------------------------------------------------------------------------------

_TABLE = {
    "HellaSwag (5-shot)": "hellaswag",
    "TruthfulQA (0-shot)": "truthfulqa",
    "Winogrande (5-shot)": "winogrande",
    "CommonsenseQA (5-shot)": "commonsense_qa",
    "PIQA (5-shot)": "piqa",
    "OpenBookQA (5-shot)": "openbookqa",
    "BoolQ (5-shot)": "boolq",
    "ARC Easy (5-shot)": "arc_easy",
    "ARC Challenge (5-shot)": "arc_challenge",
    "MMLU (5-shot)": "mmlu",
    "GSM8K (5-shot)": "gsm8k",
    "Minerva Math (4-shot)": "minerva_math",
    "CEval (5-shot)": "ceval",
    "CMMLU (5-shot)": "cmmlu",
}


def test_openseek_averages_reproduce_the_published_table() -> None:
    """OpenSeek's data-mixture comparison: per-benchmark scores in, its reported averages out."""
    with (OPENSEEK / "data_mixture_exp_results.csv").open() as fh:
        rows = list(csv.reader(line for line in fh if not line.startswith("#")))[1:]
    scores = {r[1]: float(r[2]) for r in rows}  # the No-Sampling column
    metrics = {f"{name}/{openseek.BENCHMARKS[name].metric}": scores[title] for title, name in _TABLE.items()}
    names = list(_TABLE.values())
    out = aggregate.compute(metrics, aggregate.openseek_aggregates(names))
    assert out["openseek/English w/o Math"] == pytest.approx(scores["Average-English (w/o Math)"], abs=5e-5)
    assert out["openseek/English"] == pytest.approx(scores["Average-English"], abs=5e-5)
    assert out["openseek/Chinese"] == pytest.approx(scores["Average-Chinese"], abs=5e-5)
    assert out["openseek/Average"] == pytest.approx(scores["Average"], abs=5e-5)
    assert out["openseek/Average w/o Math"] == pytest.approx(scores["Average (w/o Math)"], abs=5e-5)
    assert set(openseek.BENCHMARKS) - set(names) == {"siqa"}


def test_aggregate_member_missing_is_an_error() -> None:
    with pytest.raises(EvalError, match="aggregate x needs b/acc, which this evaluation did not produce"):
        aggregate.compute({"a/acc": 1.0}, [aggregate.Aggregate("x", ("a/acc", "b/acc"))])


def test_objective_parsing_and_spec_file(tmp_path: Path) -> None:
    assert aggregate.parse_objective("bpb/mean=-1, openseek/Average=0.5") == {"bpb/mean": -1.0, "openseek/Average": 0.5}
    with pytest.raises(EvalError, match="--objective bpb/mean: weight 'x' is not a number"):
        aggregate.parse_objective("bpb/mean=x")
    with pytest.raises(EvalError, match="objective term nope was not computed"):
        aggregate.objective_value({"nope": 1.0}, {"bpb/mean": 1.0})
    spec = tmp_path / "spec.yaml"
    spec.write_text(
        "aggregates:\n  reasoning: {members: [piqa/acc_norm, hellaswag/acc_norm]}\nobjective: {reasoning: 2}\n"
    )
    aggs, terms = aggregate.load_spec(spec)
    assert aggs == [aggregate.Aggregate("reasoning", ("piqa/acc_norm", "hellaswag/acc_norm"))] and terms == {
        "reasoning": 2.0
    }
    spec.write_text("objective: {reasoning: true}\n")
    with pytest.raises(EvalError, match=r"spec.yaml:objective.reasoning: weight True is not a finite number"):
        aggregate.load_spec(spec)
    spec.write_text("aggregate: {}\n")
    with pytest.raises(EvalError, match="unknown key aggregate"):
        aggregate.load_spec(spec)


# -- CLI errors ---------------------------------------------------------------------------------------


def test_cli_bad_inputs_exit_2_with_one_line(tmp_path: Path) -> None:
    runner = CliRunner()
    res = runner.invoke(app, ["evaluate", str(tmp_path), "--tasks", "local"])
    assert res.exit_code == 2 and "no Hugging Face model here (no config.json)" in res.output
    res = runner.invoke(app, ["convert", str(tmp_path), "-o", str(tmp_path / "hf")])
    assert res.exit_code == 2 and "not a MixSweep checkpoint" in res.output
    assert "Traceback" not in res.output
    res = runner.invoke(app, ["evaluate", "--list-tasks"])
    assert res.exit_code == 0 and "hellaswag" in res.output
