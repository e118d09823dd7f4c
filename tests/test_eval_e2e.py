"""`mixsweep train` -> `mixsweep convert` -> `mixsweep evaluate` on CPU, with both backends.

The strongest check of checkpoint *reading* (verification only compares the converted model with the
model we rebuilt from the checkpoint): the converted Hugging Face model, run on the trainer's own
held-out windows, must reproduce the validation loss the trainer recorded for that checkpoint.
DeepSpeed runs ZeRO stage 3, whose weights exist only as flat fp32 shards in the optimizer files.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
import torch
from typer.testing import CliRunner

from eval.convert import to_hf
from eval.convert.sources import deepspeed_state_dict
from eval.errors import ConversionError
from flows.cli import app
from tests import eval_support as support

pytestmark = pytest.mark.slow

# Megatron: the dense preset. DeepSpeed: ZeRO-3 and the DeepSeek-style MoE preset (shared expert,
# sigmoid router whose expert bias moves every step and lives in ZeRO-3's buffers, group routing).
RUNS = {
    "megatron": (["--preset", "tiny_cpu", "--backend", "megatron"], "LlamaForCausalLM"),
    "deepspeed": (
        ["--preset", "moe_cpu", "--set", "hidden_size=64", "--set", "num_layers=2", "--set", "ffn_hidden_size=128",
         "--set", "moe.expert_ffn_hidden_size=32", "--set", "moe.shared_expert_ffn_hidden_size=32",
         "--backend", "deepspeed", "--zero-stage", "3"],
        "Glm4MoeForCausalLM",
    ),
}  # fmt: skip


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return support.make_corpus(tmp_path_factory.mktemp("e2e") / "corpus")


def _cli(*args: str) -> str:
    res = CliRunner().invoke(app, list(args))
    assert res.exit_code == 0, res.output
    return res.output


@pytest.fixture(scope="module")
def trained(corpus: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, Any]]:
    out = tmp_path_factory.mktemp("runs")
    runs = {}
    for name, (flags, _) in RUNS.items():
        text = _cli(
            "train", "--corpus", str(corpus), "--set", "seq_len=64", "--steps", "12",
            "--micro-batch", "4", "--global-batch", "4", "--out", str(out), "--json", *flags,
        )  # fmt: skip
        runs[name] = json.loads(text[text.index("{") :])
    return runs


@pytest.mark.parametrize("backend", list(RUNS))
def test_trained_proxy_converts_and_reproduces_the_trainer_validation_loss(
    backend: str, trained: dict[str, dict[str, Any]], corpus: Path, tmp_path: Path
) -> None:
    from transformers import AutoModelForCausalLM

    from trainers.data import Corpus, ValidationSet

    run = trained[backend]
    assert run["status"] == "completed" and run["backend"] == backend
    hf = tmp_path / "hf"
    text = _cli("convert", run["run_dir"], "-o", str(hf), "--corpus", str(corpus), "--json")
    report = json.loads(text[text.index("{") :])
    assert report["architecture"] == RUNS[backend][1] and report["backend"] == backend
    assert report["verified"] and report["max_abs_diff"] <= 1e-4 and report["step"] == 12
    assert (hf / "tokenizer.json").exists() and (hf / "generation_config.json").exists()

    model = AutoModelForCausalLM.from_pretrained(str(hf), dtype=torch.float32).eval()
    final = run["evals"][-1]
    validation = ValidationSet(
        Corpus.load(corpus), seq_len=64, max_windows_per_domain=run["budget"]["eval_windows_per_domain"]
    )
    for domain, windows in validation.windows.items():
        with torch.no_grad():
            logits = model(windows[:, :-1]).logits.float()
        loss = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), windows[:, 1:].reshape(-1))
        assert float(loss) == pytest.approx(final["loss"][domain], rel=1e-4), domain

    text = _cli("evaluate", str(hf), "--tasks", "local", "--corpus", str(corpus), "--max-docs", "4", "--json")
    result = json.loads(text[text.index("{") :])
    for domain in ("code", "legal"):
        assert result["metrics"][f"bpb:{domain}/bpb"] > 0 and f"cloze:{domain}/acc" in result["metrics"]
        assert result["docs"][f"cloze:{domain}"] == 4
    assert result["objective"] == pytest.approx(-result["aggregates"]["bpb/mean"])
    assert Path(result["results_path"]).exists()


def test_python_api_without_tokenizer_evaluates_with_the_corpus_one(
    trained: dict[str, dict[str, Any]], corpus: Path, tmp_path: Path
) -> None:
    """What a sweep trial does: `to_hf(checkpoint)` then `evaluate(..., corpus=...)`."""
    from eval.evaluate import EvalOptions, evaluate
    from eval.tasks.local import LocalTaskOptions

    report = to_hf(trained["megatron"]["checkpoint"], tmp_path / "hf")
    assert report.tokenizer is None and report.verified
    result = evaluate(
        tmp_path / "hf", "bpb:legal", corpus=str(corpus), options=EvalOptions(local=LocalTaskOptions(max_docs=4))
    )
    assert result.metrics["bpb:legal/bpb"] > 0 and result.docs["bpb:legal"] == 4


def test_zero3_reader_matches_deepspeeds_own_consolidation(trained: dict[str, dict[str, Any]]) -> None:
    from deepspeed.utils.zero_to_fp32 import get_fp32_state_dict_from_zero_checkpoint

    model_dir = Path(trained["deepspeed"]["checkpoint"]) / "model"
    ours = deepspeed_state_dict(model_dir)
    reference = get_fp32_state_dict_from_zero_checkpoint(str(model_dir), tag="state")  # unpickles: test only
    assert sorted(ours) == sorted(reference)
    for name, tensor in reference.items():
        assert torch.equal(ours[name], tensor.float()), name


def _copy_run(run: dict[str, Any], dest: Path) -> Path:
    shutil.copytree(run["run_dir"], dest)
    return dest


def test_a_checkpoint_of_another_shape_is_refused(trained: dict[str, dict[str, Any]], tmp_path: Path) -> None:
    for backend, message in (
        ("megatron", "does not load into the run's model"),
        ("deepspeed", "does not fit the run's model"),
    ):
        run_dir = _copy_run(trained[backend], tmp_path / backend)
        result = json.loads((run_dir / "result.json").read_text())
        result["proxy"]["hidden_size"] = 96
        (run_dir / "result.json").write_text(json.dumps(result))
        with pytest.raises(ConversionError, match=message):
            to_hf(run_dir, tmp_path / f"hf-{backend}")
        assert not (tmp_path / f"hf-{backend}").exists()


def test_a_checkpoint_of_the_other_backend_is_refused(trained: dict[str, dict[str, Any]], tmp_path: Path) -> None:
    run_dir = _copy_run(trained["deepspeed"], tmp_path / "run")
    result = json.loads((run_dir / "result.json").read_text())
    result["backend"] = "megatron"
    (run_dir / "result.json").write_text(json.dumps(result))
    res = CliRunner().invoke(app, ["convert", str(run_dir), "-o", str(tmp_path / "hf")])
    assert res.exit_code == 2
    assert "not a Megatron dist_checkpointing folder (no metadata.json); the run says backend megatron" in res.output
