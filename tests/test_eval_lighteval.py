"""LightEval in-process and offline: local tasks, OpenSeek benchmarks, results JSON, aggregates.

One evaluation (module scope) runs the local tasks of two real held-out domains plus two OpenSeek
benchmarks from format samples; the assertions recompute its numbers independently with the
Hugging Face model (bits per byte and cloze choices), so a wrong metric, gold index or split fails.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch

from eval.errors import EvalError
from eval.evaluate import EvalOptions, EvalResult, evaluate
from eval.tasks.local import LocalTaskOptions
from tests import eval_support as support

OPTIONS = EvalOptions(batch_size=8, local=LocalTaskOptions(max_docs=6, choices=4))


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("eval")
    tok = support.train_tokenizer(root / "tokenizer")
    hf = root / "hf"
    support.convert_plain(hf, tok, seed=0)
    return {
        "root": root,
        "tokenizer": tok,
        "hf": hf,
        "heldout": support.heldout_folder(root / "heldout"),
        "data": support.benchmark_samples(root / "benchmarks"),
    }


@pytest.fixture(scope="module")
def result(world: dict[str, Path]) -> EvalResult:
    return evaluate(
        world["hf"], "local,hellaswag|1,gsm8k|1", heldout=world["heldout"], data_dir=world["data"], options=OPTIONS
    )


@pytest.fixture(scope="module")
def hf_model(world: dict[str, Path]) -> Iterator[tuple[Any, Any]]:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(str(world["hf"]), dtype=torch.float32).eval()
    yield model, AutoTokenizer.from_pretrained(str(world["hf"]))


def _rows(result: EvalResult, task: str) -> list[dict[str, Any]]:
    folder = Path(result.results_path).parent / "tasks"
    (path,) = folder.glob(f"*/{task.replace(':', '_')}/test.jsonl")
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def _logprob(model: Any, tok: Any, context: str, continuation: str) -> float:
    """log p(continuation | context) as LightEval's transformers backend forms it: context and
    continuation tokenised separately, concatenated, continuation tokens scored."""
    ctx = tok(context, add_special_tokens=True)["input_ids"]
    cont = tok(continuation, add_special_tokens=False)["input_ids"]
    ids = torch.tensor([ctx + cont])
    with torch.no_grad():
        logp = torch.log_softmax(model(ids).logits.float(), dim=-1)[0]
    positions = torch.arange(len(ctx) - 1, len(ctx) + len(cont) - 1)
    return float(logp[positions, torch.tensor(cont)].sum())


def test_local_tasks_report_every_domain_with_stderr(result: EvalResult) -> None:
    for domain in ("code", "legal"):
        assert result.metrics[f"bpb:{domain}/bpb"] > 0
        assert result.metrics[f"bpb:{domain}/bpb_stderr"] >= 0
        assert 0 <= result.metrics[f"cloze:{domain}/acc"] <= 1
        assert f"cloze:{domain}/acc_norm_stderr" in result.metrics
        assert result.docs[f"bpb:{domain}"] == 6 and result.docs[f"cloze:{domain}"] == 6
    assert sorted(result.tasks) == sorted(
        ["bpb:code|0", "cloze:code|0", "bpb:legal|0", "cloze:legal|0", "hellaswag|1", "gsm8k|1"]
    )


def test_evaluation_leaves_autograd_on_in_the_calling_process(result: EvalResult) -> None:
    # LightEval switches autograd off process-wide when imported; a trial trains after it evaluates
    assert torch.is_grad_enabled()


def test_results_land_in_a_json_file(result: EvalResult) -> None:
    stored = json.loads(Path(result.results_path).read_text(encoding="utf-8"))
    assert stored["metrics"] == result.metrics
    assert stored["aggregates"] == result.aggregates
    assert stored["objective"] == result.objective
    assert "bpb:code:0" in stored["lighteval"]["results"]


def test_bits_per_byte_matches_an_independent_computation(result: EvalResult, hf_model: tuple[Any, Any]) -> None:
    model, tok = hf_model
    for domain in ("code", "legal"):
        rows = _rows(result, f"bpb:{domain}")
        nats = sum(_logprob(model, tok, r["context"], r["continuation"]) for r in rows)
        nbytes = sum(len(r["continuation"].encode("utf-8")) for r in rows)
        expected = -nats / nbytes / math.log(2)
        assert result.metrics[f"bpb:{domain}/bpb"] == pytest.approx(expected, rel=1e-4)


def test_cloze_accuracy_matches_an_independent_argmax(result: EvalResult, hf_model: tuple[Any, Any]) -> None:
    model, tok = hf_model
    for domain in ("code", "legal"):
        rows = _rows(result, f"cloze:{domain}")
        hits = 0
        for r in rows:
            scores = [_logprob(model, tok, r["context"], c) for c in r["choices"]]
            hits += int(max(range(len(scores)), key=scores.__getitem__) == r["gold"])
        assert result.metrics[f"cloze:{domain}/acc"] == pytest.approx(hits / len(rows))


def test_cloze_questions_are_well_formed(result: EvalResult) -> None:
    golds = []
    for domain in ("code", "legal"):
        for r in _rows(result, f"cloze:{domain}"):
            assert len(r["choices"]) == 4 and len(set(r["choices"])) == 4
            assert len({len(c) for c in r["choices"]}) == 1, "choices of different lengths favour the short one"
            golds.append(r["gold"])
    assert len(set(golds)) > 1, "the true continuation always sits at the same index"


def test_openseek_benchmarks_run_from_local_data(result: EvalResult) -> None:
    assert 0 <= result.metrics["hellaswag/acc_norm"] <= 1
    assert 0 <= result.metrics["gsm8k/em"] <= 1
    assert result.docs["hellaswag"] == 3 and result.docs["gsm8k"] == 2


def test_aggregates_and_objective(result: EvalResult) -> None:
    m, a = result.metrics, result.aggregates
    assert a["bpb/mean"] == pytest.approx((m["bpb:code/bpb"] + m["bpb:legal/bpb"]) / 2)
    assert a["bpb/group:Code"] == pytest.approx(m["bpb:code/bpb"])
    assert a["cloze/group:English"] == pytest.approx(m["cloze:legal/acc"])
    assert a["openseek/Average"] == pytest.approx((m["hellaswag/acc_norm"] + m["gsm8k/em"]) / 2)
    assert a["openseek/English w/o Math"] == pytest.approx(m["hellaswag/acc_norm"])
    assert a["openseek/Math"] == pytest.approx(m["gsm8k/em"])
    assert result.objective_terms == {"bpb/mean": -1.0}
    assert result.objective == pytest.approx(-a["bpb/mean"])


def test_rerun_returns_the_stored_result(world: dict[str, Path], result: EvalResult) -> None:
    again = evaluate(
        world["hf"], "local,hellaswag|1,gsm8k|1", heldout=world["heldout"], data_dir=world["data"], options=OPTIONS
    )
    assert again.reused and again.metrics == result.metrics and again.results_path == result.results_path


def test_new_weights_at_the_same_path_are_evaluated_afresh(world: dict[str, Path], result: EvalResult) -> None:
    """LightEval caches responses by model path; a new checkpoint converted into the same folder
    must not be answered from the old one's cache."""
    hf = world["root"] / "hf_reused_path"
    support.convert_plain(hf, world["tokenizer"], seed=0)
    first = evaluate(hf, "bpb:code", heldout=world["heldout"], options=OPTIONS)
    assert first.metrics["bpb:code/bpb"] == pytest.approx(result.metrics["bpb:code/bpb"], rel=1e-6)
    support.convert_plain(hf, world["tokenizer"], seed=1)
    second = evaluate(hf, "bpb:code", heldout=world["heldout"], options=OPTIONS)
    assert not second.reused and second.model_fingerprint != first.model_fingerprint
    assert abs(second.metrics["bpb:code/bpb"] - first.metrics["bpb:code/bpb"]) > 1e-3


def test_a_model_folder_without_tokenizer_takes_one_given(world: dict[str, Path], result: EvalResult) -> None:
    hf = world["root"] / "hf_no_tokenizer"
    support.convert_plain(hf, None, seed=0)
    with pytest.raises(EvalError, match="the model folder has no tokenizer"):
        evaluate(hf, "bpb:code", heldout=world["heldout"], options=OPTIONS)
    given = evaluate(hf, "bpb:code", heldout=world["heldout"], tokenizer=world["tokenizer"], options=OPTIONS)
    assert given.metrics["bpb:code/bpb"] == pytest.approx(result.metrics["bpb:code/bpb"], rel=1e-6)
