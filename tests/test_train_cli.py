"""`mixsweep train` on a small prepared corpus: dry run, a real run with both backends, bad input."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from flows.cli import app
from trainers.presets import moe_cpu

runner = CliRunner()


def test_dry_run_prints_params_flops_and_backend(train_corpus: Path, tmp_path: Path) -> None:
    result = runner.invoke(
        app,
        [
            "train",
            "--corpus",
            str(train_corpus),
            "--preset",
            "moe_cpu",
            "--steps",
            "10",
            "--out",
            str(tmp_path),
            "--dry-run",
        ],
    )
    assert result.exit_code == 0, result.output
    counts = moe_cpu().resolve_vocab(384).param_counts()
    out = result.output
    assert f"{counts.total:,} total" in out and f"{counts.active:,} active" in out
    assert f"{moe_cpu().resolve_vocab(384).flops_per_token():,}" in out
    assert "megatron (auto: megatron supports moe_cpu on cpu)" in out
    assert "prose=0.500, sums=0.500" in out and str(tmp_path) in out
    assert not list(tmp_path.iterdir())  # a dry run writes nothing


def test_train_both_backends_and_rerun(train_corpus: Path, tmp_path: Path) -> None:
    base = ["train", "--corpus", str(train_corpus), "--set", "seq_len=32", "--set", "num_layers=1"]
    base += ["--weights", "prose=1,sums=2", "--steps", "3", "--micro-batch", "4", "--out", str(tmp_path)]
    for backend in ("megatron", "deepspeed"):
        result = runner.invoke(app, [*base, "--backend", backend, "--json"])
        assert result.exit_code == 0, result.output
        data = json.loads(result.output[result.output.index("{") :])
        assert data["status"] == "completed" and data["backend"] == backend and data["steps"] == 3
        assert data["tokens_per_domain"] == {"prose": 3 * 8 * 32 // 3, "sums": 2 * 3 * 8 * 32 // 3}
        assert Path(data["checkpoint"]).exists()
    table = runner.invoke(app, [*base, "--backend", "deepspeed"])  # the finished run, read back
    assert table.exit_code == 0, table.output
    assert "completed: 3/3 steps, deepspeed on cpu" in table.output and "val bits/byte" in table.output


def test_bad_input_exits_2_with_one_line(train_corpus: Path, tmp_path: Path) -> None:
    cases = [
        (["--corpus", str(tmp_path / "missing"), "--steps", "1"], "not found"),
        (["--corpus", str(train_corpus), "--steps", "1", "--weights", "prose=1,code=1"], "code"),
        (["--corpus", str(train_corpus), "--steps", "1", "--set", "hidden_size=63"], "hidden_size"),
        (["--corpus", str(train_corpus), "--steps", "1", "--set", "bogus=1"], "bogus"),
        (["--corpus", str(train_corpus), "--steps", "1", "--preset", "huge"], "unknown preset"),
        (["--corpus", str(train_corpus)], "give --tokens or --steps"),
        (
            ["--corpus", str(train_corpus), "--steps", "1", "--backend", "deepspeed", "--tp", "2", "--nprocs", "2"],
            "Megatron-only",
        ),
        (["--corpus", str(train_corpus), "--steps", "1", "--tp", "2"], "world size 1 is not a multiple of tp 2"),
        (["--corpus", str(train_corpus), "--steps", "1", "--zero-stage", "5", "--backend", "deepspeed"], "zero_stage"),
    ]
    for args, message in cases:
        result = runner.invoke(app, ["train", *args, "--out", str(tmp_path / "runs")])
        assert result.exit_code == 2, (args, result.output)
        assert result.output.startswith("error:") and message in result.output, (args, result.output)
        assert len(result.output.strip().splitlines()) == 1, result.output
