"""`mixsweep data prepare|inspect|blend` as a user runs them, including bad input (exit 2, one line)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from flows.cli import app
from tests.conftest import BAD_INPUTS
from tests.data_support import build_tiny_corpus

BAD = BAD_INPUTS / "data"
runner = CliRunner()


@pytest.fixture(scope="module")
def corpus_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_corpus(tmp_path_factory.mktemp("data") / "tiny")


def run(*args: str) -> tuple[int, str]:
    result = runner.invoke(app, ["data", *args])
    return result.exit_code, result.output


def test_prepare_from_folders_and_files_then_rerun(tmp_path: Path) -> None:
    (tmp_path / "notes").mkdir()
    for i in range(12):
        (tmp_path / "notes" / f"n{i}.md").write_text(f"# Note {i}\n\n" + "words of a note " * (5 + i))
    (tmp_path / "web.jsonl").write_text(
        "\n".join(json.dumps({"body": f"page {i}: " + "hello web " * (3 + i % 7)}) for i in range(40))
    )
    out = tmp_path / "corpus"
    args = ["prepare", f"notes={tmp_path / 'notes'}", f"web={tmp_path / 'web.jsonl'}", "--out", str(out)]
    code, output = run(*args, "--vocab-size", "300", "--text-field", "body", "--workers", "1")
    assert code == 0, output
    assert (out / "corpus.json").is_file() and (out / "web" / "web_train_text_document.idx").is_file()
    assert "prepared in" in output
    code, output = run(*args, "--vocab-size", "300", "--text-field", "body", "--workers", "1")
    assert code == 0 and "up to date" in output


def test_inspect_corpus_and_one_dataset(corpus_dir: Path) -> None:
    code, output = run("inspect", str(corpus_dir), "--json")
    assert code == 0, output
    data = json.loads(output)
    assert [d["name"] for d in data["domains"]] == ["prose", "code", "zh", "digits"]
    code, output = run("inspect", str(corpus_dir / "zh" / "zh_train_text_document.idx"), "--json")
    info = json.loads(output)
    assert code == 0 and info["dtype"] == "uint16" and info["tokens"] > 0
    code, output = run("inspect", str(corpus_dir))
    assert code == 0 and "digits" in output


def test_blend_writes_arrays_and_reports_drift(corpus_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "blend"
    code, output = run(
        "blend",
        "--corpus",
        str(corpus_dir),
        "--weights",
        "prose=3,zh=1",
        "-n",
        "2000",
        "--seq-len",
        "16",
        "--out",
        str(out),
    )
    assert code == 0, output
    unit = np.load(out / "dataset_index.npy")
    count = np.load(out / "dataset_sample_index.npy")
    assert len(unit) == 2000 and np.bincount(unit).tolist() == [1500, 500]
    assert np.array_equal(count[unit == 1], np.arange(500))
    summary = json.loads((out / "summary.json").read_text())
    assert summary["max_drift"] <= 1.0
    assert (out / "window_index.npy").is_file()


def test_blend_without_corpus_megatron_mode(tmp_path: Path) -> None:
    code, output = run("blend", "--weights", "a=7,b=5,c=4", "-n", "10k", "--mode", "megatron", "--out", str(tmp_path))
    assert code == 0, output
    assert np.load(tmp_path / "dataset_index.npy").dtype == np.int16


def test_blend_with_a_schedule(tmp_path: Path) -> None:
    sched = tmp_path / "s.yaml"
    sched.write_text(
        "interpolation: linear\nsamples_per_step: 4\npoints:\n"
        "  - {step: 0, weights: {a: 0.2, b: 0.8}}\n  - {step: 100, weights: {a: 0.5, b: 0.5}}\n"
    )
    code, output = run("blend", "--schedule", str(sched), "-n", "2000")
    assert code == 0, output
    assert "largest drift" in output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["inspect", str(BAD / "truncated_idx_text_document")],
            "truncated_idx_text_document.idx: truncated or corrupt index",
        ),
        (["inspect", str(BAD / "truncated_bin_text_document.bin")], "truncated_bin_text_document.bin: size mismatch"),
        (["inspect", str(BAD / "missing_bin_text_document.idx")], "missing_bin_text_document.bin: data file not found"),
        (["inspect", str(BAD)], "bad_doc_index_text_document.idx: corrupt index"),
        (["blend", "--weights", "a=1,b=-2", "-n", "10"], "--weights[b]: weight -2.0 is negative"),
        (["blend", "--weights", "a=nan,b=1", "-n", "10"], "--weights[a]: weight is NaN"),
        (["blend", "--weights", "a=0,b=0", "-n", "10"], "--weights: all 2 weights are zero"),
        (
            ["blend", "--schedule", str(BAD / "schedule_out_of_order.yaml"), "-n", "10"],
            "points[2].step: step 100 is not after",
        ),
        (
            ["blend", "--schedule", str(BAD / "schedule_other_domains.yaml"), "-n", "10"],
            "points[1].weights: names other domains",
        ),
        (
            ["blend", "--schedule", str(BAD / "schedule_negative.yaml"), "-n", "10"],
            "points[0].weights[code]: weight -0.5 is negative",
        ),
        (
            ["blend", "--schedule", str(BAD / "schedule_nan.yaml"), "-n", "10"],
            "points[0].weights[prose]: weight is NaN",
        ),
        (
            ["blend", "--schedule", str(BAD / "schedule_all_zero.yaml"), "-n", "10"],
            "points[0].weights: all 2 weights are zero",
        ),
        (
            ["blend", "--schedule", str(BAD / "schedule_bad_interpolation.yaml"), "-n", "10"],
            "unknown interpolation 'quadratic'",
        ),
        (["prepare", f"w={BAD / 'invalid.jsonl'}", "--out", "/tmp/never"], "invalid.jsonl:2: invalid JSON"),
        (
            ["prepare", f"w={BAD / 'wrong_field_type.jsonl'}", "--out", "/tmp/never"],
            "wrong_field_type.jsonl:2: field 'text' is not a string",
        ),
        (["prepare", f"e={BAD / 'empty_domain'}", "--out", "/tmp/never"], "e: empty domain"),
        (
            ["prepare", f"b={BAD / 'binary_domain.txt'}", "--out", "/tmp/never"],
            "b: empty domain: 1 documents read, 1 dropped as binary",
        ),
        (["prepare", "nothing=/no/such/folder", "--out", "/tmp/never"], "/no/such/folder: input not found"),
    ],
)
def test_bad_input_exits_2_with_one_line(args: list[str], message: str) -> None:
    code, output = run(*args)
    assert code == 2, output
    lines = [line for line in output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), output
    assert message in lines[0]
    assert not Path("/tmp/never").exists()


def test_blend_unknown_domain_and_bad_corpus(corpus_dir: Path, tmp_path: Path) -> None:
    code, output = run("blend", "--corpus", str(corpus_dir), "--weights", "prose=1,elvish=1", "-n", "10")
    assert code == 2 and "error: elvish: unknown domain" in output
    code, output = run("blend", "--corpus", str(tmp_path), "--weights", "a=1", "-n", "10")
    assert code == 2 and "no Megatron datasets" in output
