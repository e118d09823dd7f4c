"""Malformed mixture inputs: each gives exit status 2 and a one-line message naming the file and field."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from flows.cli import app
from mixture_search.errors import MixSweepError
from mixture_search.formats import read_mixture
from tests.conftest import BAD_INPUTS, OPENSEEK_EXPERIMENT, OPENSEEK_TOKENS

BAD = BAD_INPUTS / "mixture"

# (input file, extra CLI args, substrings the one-line message must contain)
CASES: list[tuple[str, list[str], list[str]]] = [
    ("odd_length.yaml", [], ["odd_length.yaml:4", "data_path has 3 entries, an odd number"]),
    ("odd_length_string.txt", [], ["data_path has 3 entries, an odd number"]),
    ("non_numeric_weight.yaml", [], ["non_numeric_weight.yaml:2", "data_path[0]", "weight 'abc' is not a number"]),
    ("negative_weight.yaml", [], ["negative_weight.yaml:4", "data_path[2]", "weight -0.25 is negative"]),
    ("nan_weight.yaml", [], ["nan_weight.yaml:2", "data_path[0]", "weight is NaN"]),
    ("nan_weight_string.txt", [], ["data_path[0]", "weight is NaN"]),
    ("inf_weight.yaml", [], ["inf_weight.yaml:2", "must be finite"]),
    ("all_zero.yaml", [], ["all_zero.yaml", "all 2 weights in data_path are zero"]),
    ("duplicate_path.yaml", [], ["duplicate_path.yaml:5", "data_path[3]", "duplicate path", "first at data_path[1]"]),
    ("swapped_pairs.yaml", [], ["data_path[0]", "expected a weight, got 'code/part_0_text_document'"]),
    ("path_is_number.yaml", [], ["data_path[1]", "expected a path, got 0.7"]),
    ("empty_data_path.yaml", [], ["empty_data_path.yaml", "data_path is empty"]),
    ("bool_weight.yaml", [], ["data_path[0]", "weight True is not a number"]),
    ("invalid_yaml.yaml", [], ["invalid_yaml.yaml:3", "invalid YAML"]),
    ("native_unknown_key.yaml", [], ["native_unknown_key.yaml:2", "unknown key 'weight'"]),
    ("native_negative.yaml", [], ["native_negative.yaml:4", "weights.web", "weight -1.0 is negative"]),
    ("native_weights_list.yaml", [], ["'weights' must map domain names to weights"]),
    ("native_empty.yaml", [], ["native_empty.yaml", "'weights' is empty"]),
    ("native_duplicate_key.yaml", [], ["native_duplicate_key.yaml", "invalid YAML", "duplicate key"]),
    ("native_string_weight.yaml", [], ["weights.code", "weight '0.3' is not a number"]),
    ("native_all_zero.yaml", [], ["all 2 weights are zero"]),
    ("invalid_json.json", [], ["invalid_json.json:1", "invalid JSON"]),
    ("not_a_mixture.yaml", [], ["not_a_mixture.yaml", "not a mixture file"]),
    ("binary.yaml", [], ["binary.yaml", "not a UTF-8 text file"]),
    ("does_not_exist.yaml", [], ["does_not_exist.yaml", "file not found"]),
    ("openseek_no_data_path.yaml", [], ["openseek_no_data_path.yaml", "no data.data_path"]),
    (
        "openseek_unknown_interp/config_x.yaml",
        [],
        ["train_x.yaml:9", "data.data_path[3]", "unknown interpolation", "${experiment.dataset_dir}"],
    ),
    ("openseek_unknown_interp/train/train_x.yaml", [], ["train_x.yaml:9", "unknown interpolation"]),
    (
        "openseek_task_without_experiment.yaml",
        [],
        [
            "openseek_task_without_experiment.yaml:8",
            "data.data_path[3]",
            "${experiment.dataset_dir}",
            "needs the experiment config",
        ],
    ),
    ("openseek_missing_task/config_y.yaml", [], ["config_y.yaml", "train_missing.yaml", "does not exist"]),
    (
        "missing_files.yaml",
        ["--check-paths", "--base-dir", "/nonexistent"],
        ["/nonexistent/code/part_0_text_document.bin", "missing"],
    ),
    ("unknown_domain.yaml", ["--catalog", str(OPENSEEK_TOKENS)], ["klingon-poetry", "unknown domain"]),
    (
        "../../fixtures/openseek/OpenSeek-Small-v1-Baseline/config_deepseek_v3_1_4b.yaml",
        ["--catalog", str(BAD / "bad_tokens.csv")],
        ["bad_tokens.csv:2", "tokens '12x' is not a number"],
    ),
    (
        "../../fixtures/openseek/OpenSeek-Small-v1-Baseline/config_deepseek_v3_1_4b.yaml",
        ["--budget", "lots"],
        ["--budget", "'lots' is not a count"],
    ),
]


@pytest.mark.parametrize(("name", "args", "expected"), CASES, ids=[f"{c[0]}{' '.join(c[1][:1])}" for c in CASES])
def test_bad_input_is_one_line_exit_2(name: str, args: list[str], expected: list[str]) -> None:
    result = CliRunner().invoke(app, ["mixture", "show", str(BAD / name), *args])
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ")
    for fragment in expected:
        assert fragment in lines[0], f"{fragment!r} not in {lines[0]!r}"
    assert "Traceback" not in result.output


def test_corpus_is_large_enough() -> None:
    assert len(CASES) >= 20
    assert len({c[0] for c in CASES}) >= 20


@pytest.mark.parametrize(
    "name",
    [
        "odd_length.yaml",
        "native_negative.yaml",
        "openseek_unknown_interp/config_x.yaml",
        "openseek_task_without_experiment.yaml",
    ],
)
def test_python_api_raises_the_same_error(name: str) -> None:
    with pytest.raises(MixSweepError) as info:
        read_mixture(BAD / name)
    assert "\n" not in str(info.value)


def test_real_console_script_exit_code() -> None:
    """The installed `mixsweep` entry point, as a user runs it."""
    exe = Path(sys.executable).with_name("mixsweep")
    proc = subprocess.run(
        [exe, "mixture", "show", BAD / "negative_weight.yaml"], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and "weight -0.25 is negative" in proc.stderr
    ok = subprocess.run([exe, "mixture", "show", OPENSEEK_EXPERIMENT], capture_output=True, text=True, timeout=60)
    assert ok.returncode == 0, ok.stderr
