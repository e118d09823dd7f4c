"""`mixsweep mixture show|convert` on the real OpenSeek baseline."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from flows.cli import app
from mixture_search.catalog import DomainCatalog
from mixture_search.formats import read_mixture
from tests.conftest import OPENSEEK_EXPERIMENT, OPENSEEK_TASK, OPENSEEK_TOKENS

runner = CliRunner()


def test_show_prints_84_files_grouped_into_domains() -> None:
    result = runner.invoke(app, ["mixture", "show", str(OPENSEEK_EXPERIMENT), "--catalog", str(OPENSEEK_TOKENS)])
    assert result.exit_code == 0, result.output
    out = result.output
    assert "OpenSeek-Small-v1-Baseline" in out and "84 entries in 79 domains" in out and "budget 100.7B tokens" in out
    assert out.count("_text_document") == 84
    # the five files of one domain are listed together under a single domain label
    lines = out.splitlines()
    start = next(i for i, line in enumerate(lines) if "cot_synthesis2_CC-mid " in line)
    block = [line.split("│") for line in lines[start : start + 5]]
    assert [cells[1].strip() for cells in block] == ["cot_synthesis2_CC-mid", "", "", "", ""]
    assert [cells[3].strip() for cells in block] == [
        "118_text_document", "176_text_document", "256_text_document", "320_text_document", "32_text_document",
    ]  # fmt: skip
    assert "103B tokens, 79 domains, 15 groups" in out


def test_show_json_by_group() -> None:
    result = runner.invoke(
        app,
        [
            "mixture",
            "show",
            str(OPENSEEK_TASK),
            "-c",
            str(OPENSEEK_TOKENS),
            "--by",
            "group",
            "--budget",
            "1T",
            "--json",
        ],
    )
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    rows = {r["name"]: r for r in data["rows"]}
    assert data["level"] == "group" and len(rows) == 15 and data["budget_tokens"] == 10**12
    assert abs(sum(r["share"] for r in rows.values()) - 1) < 1e-12
    assert rows["Code"]["tokens"] == 3_213_145_589 or rows["Code"]["tokens"] > 3e9
    assert abs(rows["Arxiv-Synth"]["share"] - 0.47174) < 1e-5


def test_convert_chain_is_lossless(tmp_path: Path) -> None:
    original = read_mixture(OPENSEEK_EXPERIMENT).mixture
    assert (
        runner.invoke(
            app, ["mixture", "convert", str(OPENSEEK_EXPERIMENT), "--to", "yaml", "-o", str(tmp_path / "m.yaml")]
        ).exit_code
        == 0
    )
    assert (
        runner.invoke(
            app, ["mixture", "convert", str(tmp_path / "m.yaml"), "--to", "megatron", "-o", str(tmp_path / "m.txt")]
        ).exit_code
        == 0
    )
    result = runner.invoke(
        app,
        [
            "mixture",
            "convert",
            str(tmp_path / "m.txt"),
            "--to",
            "openseek",
            "--template",
            str(OPENSEEK_TASK),
            "-o",
            str(tmp_path / "exp"),
        ],
    )
    assert result.exit_code == 0, result.output
    assert (tmp_path / "exp/train/train_deepseek_v3_1_4b.yaml").read_text() == OPENSEEK_TASK.read_text()
    assert read_mixture(tmp_path / "exp/config_deepseek_v3_1_4b.yaml").mixture.pairs == original.pairs
    stdout = runner.invoke(app, ["mixture", "convert", str(OPENSEEK_EXPERIMENT), "--to", "megatron"])
    assert stdout.output.startswith("1.1068 Nemotron-CC-high-actual-actual-high/part_142_text_document 0.3577")


def test_convert_group_mixture_to_openseek(tmp_path: Path) -> None:
    """Weights set per group are split over files by tokens and written into the OpenSeek template."""
    groups = tmp_path / "groups.yaml"
    groups.write_text("name: code-heavy\nweights:\n  Code: 0.5\n  CC-EN: 0.3\n  CC-ZH: 0.2\n")
    out = tmp_path / "train_code_heavy.yaml"
    result = runner.invoke(
        app,
        [
            "mixture",
            "convert",
            str(groups),
            "--to",
            "openseek",
            "--template",
            str(OPENSEEK_TASK),
            "-c",
            str(OPENSEEK_TOKENS),
            "-o",
            str(out),
        ],
    )
    assert result.exit_code == 0, result.output
    files = read_mixture(out).mixture
    assert len(files) == 3 + 24 + 6  # the files of the three groups named, nothing else
    cat = DomainCatalog.from_tokens_csv(OPENSEEK_TOKENS)
    back = cat.collapse(files, "group")
    assert list(back) == ["CC-EN", "Code", "CC-ZH"] and abs(back.share("Code") - 0.5) < 1e-12
    # everything but data_path is the template's
    head = OPENSEEK_TASK.read_text().split("data:\n")[0]
    assert out.read_text().startswith(head)


def test_help_explains() -> None:
    result = runner.invoke(app, ["mixture", "show", "--help"])
    assert result.exit_code == 0
    assert "--catalog" in result.output and "--budget" in result.output and "OpenSeek" in result.output
