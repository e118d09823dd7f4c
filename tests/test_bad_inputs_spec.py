"""Malformed sweep specs and broken corpora: each is rejected before any training, with one line naming
the field or file, through the CLI (`mixsweep sweep SPEC [--dry-run]`, exit status 2) and the Python API
(`load_spec` + the flow's check step). `tests/bad_inputs/spec/` holds the specs; `CORPUS` in them is
replaced by the tiny test corpus (or a damaged copy of it, see SETUPS), `CLOSED_PORT` by a port nobody
listens on and `SILENT_PORT` by one that accepts connections and never answers."""

from __future__ import annotations

import json
import shutil
import socket
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from flows.cli import app
from flows.stack.local import free_port
from flows.steps.checks import REACH_TIMEOUT_S
from flows.steps.spec import ALLOW_OUTSIDE_ENV, DATA_ROOT_ENV, load_spec
from mixture_search.errors import MixSweepError
from tests.conftest import BAD_INPUTS

SPEC = BAD_INPUTS / "spec"
TRAIN = "code/code_train_text_document"


# -- corpus damage and environments (each takes the corpus copy, the test folder, monkeypatch) ------------
def _missing(suffix: str) -> Callable[[Path, Path, pytest.MonkeyPatch], Path]:
    def damage(corpus: Path, tmp: Path, mp: pytest.MonkeyPatch) -> Path:
        (corpus / f"{TRAIN}.{suffix}").unlink()
        return corpus

    return damage


def _truncated(suffix: str, keep: float) -> Callable[[Path, Path, pytest.MonkeyPatch], Path]:
    def damage(corpus: Path, tmp: Path, mp: pytest.MonkeyPatch) -> Path:
        path = corpus / f"{TRAIN}.{suffix}"
        data = path.read_bytes()
        path.write_bytes(data[: int(len(data) * keep)])
        return corpus

    return damage


def _bad_magic(corpus: Path, tmp: Path, mp: pytest.MonkeyPatch) -> Path:
    path = corpus / f"{TRAIN}.idx"
    data = bytearray(path.read_bytes())
    data[:9] = b"NOTMEGATR"
    path.write_bytes(bytes(data))
    return corpus


def _small_tokenizer(folder: Path) -> None:
    from trainers.data.tokenizer import train_bpe

    shutil.rmtree(folder, ignore_errors=True)
    train_bpe(["a tokenizer trained on other text, far too small for this corpus"] * 20, 300, folder)


def _other_tokenizer(corpus: Path, tmp: Path, mp: pytest.MonkeyPatch) -> Path:
    _small_tokenizer(corpus / "tokenizer")
    return corpus


def _in_place_other_tokenizer(corpus: Path, tmp: Path, mp: pytest.MonkeyPatch) -> Path:
    """Megatron files used in place (no corpus.json) next to a tokenizer that cannot have written them."""
    (corpus / "corpus.json").unlink()
    _small_tokenizer(corpus / "tokenizer")
    return corpus


def _corpus_json(edit: Callable[[dict], None] | None) -> Callable[[Path, Path, pytest.MonkeyPatch], Path]:
    def damage(corpus: Path, tmp: Path, mp: pytest.MonkeyPatch) -> Path:
        path = corpus / "corpus.json"
        if edit is None:
            path.write_text('{"format": "mixsweep-corpus/1", "domains": [')
        else:
            data = json.loads(path.read_text())
            edit(data)
            path.write_text(json.dumps(data))
        return corpus

    return damage


def _fewer_tokens(data: dict) -> None:
    data["domains"][1]["train"][0]["tokens"] -= 1


def _root_elsewhere(corpus: Path, tmp: Path, mp: pytest.MonkeyPatch) -> Path:
    (tmp / "root").mkdir()
    mp.setenv(DATA_ROOT_ENV, str(tmp / "root"))
    return corpus


def _root_symlink(corpus: Path, tmp: Path, mp: pytest.MonkeyPatch) -> Path:
    """The corpus reached through a symlink inside the root still lies outside it."""
    (tmp / "root").mkdir()
    (tmp / "root" / "corpus").symlink_to(corpus, target_is_directory=True)
    mp.setenv(DATA_ROOT_ENV, str(tmp / "root"))
    return tmp / "root" / "corpus"


def _root_dotdot(corpus: Path, tmp: Path, mp: pytest.MonkeyPatch) -> Path:
    (tmp / "root").mkdir()
    mp.setenv(DATA_ROOT_ENV, str(tmp / "root"))
    return tmp / "root" / ".." / corpus.name


def _tokenizer_escapes_root(corpus: Path, tmp: Path, mp: pytest.MonkeyPatch) -> Path:
    """A corpus inside the root whose corpus.json points its tokenizer outside it."""
    inside = tmp / "root" / "corpus"
    inside.parent.mkdir()
    corpus.rename(inside)
    shutil.move(str(inside / "tokenizer"), str(tmp / "tokenizer"))
    data = json.loads((inside / "corpus.json").read_text())
    data["tokenizer"] = "../../tokenizer"
    (inside / "corpus.json").write_text(json.dumps(data))
    mp.setenv(DATA_ROOT_ENV, str(tmp / "root"))
    return inside


def _env_root_is_corpus(corpus: Path, tmp: Path, mp: pytest.MonkeyPatch) -> Path:
    mp.setenv(DATA_ROOT_ENV, str(corpus))
    return corpus


SETUPS: dict[str, Callable[[Path, Path, pytest.MonkeyPatch], Path]] = {
    "missing_idx": _missing("idx"),
    "missing_bin": _missing("bin"),
    "truncated_bin": _truncated("bin", 0.9),
    "truncated_idx": _truncated("idx", 0.5),
    "bad_magic": _bad_magic,
    "other_tokenizer": _other_tokenizer,
    "in_place_other_tokenizer": _in_place_other_tokenizer,
    "corpus_json_broken": _corpus_json(None),
    "corpus_json_stale": _corpus_json(_fewer_tokens),
    "root_elsewhere": _root_elsewhere,
    "root_symlink": _root_symlink,
    "root_dotdot": _root_dotdot,
    "tokenizer_escapes_root": _tokenizer_escapes_root,
    "env_root_is_corpus": _env_root_is_corpus,
}

# (spec file, setup or None, substrings the one-line message must contain)
CASES: list[tuple[str, str | None, list[str]]] = [
    # the file itself
    ("invalid_yaml.yaml", None, ["invalid_yaml.yaml:4", "invalid YAML"]),
    ("tab_indent.yaml", None, ["tab_indent.yaml:4", "invalid YAML"]),
    ("duplicate_key.yaml", None, ["duplicate_key.yaml:4", "duplicate key", "seed"]),
    ("not_a_mapping.yaml", None, ["not_a_mapping.yaml", "must be a mapping"]),
    ("empty.yaml", None, ["empty.yaml", "must be a mapping"]),
    ("does_not_exist.yaml", None, ["does_not_exist.yaml", "spec file not found"]),
    # keys and types
    ("unknown_key.yaml", None, ["unknown_key.yaml", "rounds: unknown key"]),
    ("unknown_nested_key.yaml", None, ["search.round: unknown key"]),
    ("missing_name.yaml", None, ["name: Field required"]),
    ("missing_corpus.yaml", None, ["corpus: Field required"]),
    ("name_with_slash.yaml", None, ["name: String should match pattern"]),
    ("name_dot_dot.yaml", None, ["name: '..' is not a name"]),
    ("rounds_zero.yaml", None, ["search.rounds", "greater than or equal to 1"]),
    ("rounds_float.yaml", None, ["search.rounds", "valid integer"]),
    ("per_round_string.yaml", None, ["search.per_round", "valid integer"]),
    ("backend_unknown.yaml", None, ["backend: Input should be 'auto', 'megatron' or 'deepspeed'"]),
    ("cpus_zero.yaml", None, ["resources.cpus", "greater than 0"]),
    ("max_concurrent_zero.yaml", None, ["max_concurrent", "greater than or equal to 1"]),
    ("seed_negative.yaml", None, ["seed", "greater than or equal to 0"]),
    ("early_stop_no_eval.yaml", None, ["early_stopping needs budget.eval_interval > 0"]),
    ("confirm_seeds_zero.yaml", None, ["confirm.seeds", "greater than or equal to 1"]),
    ("replicates_over_trials.yaml", None, ["search.replicates: 5 is more than the sweep's 4 trials"]),
    # budgets
    ("budget_zero_steps.yaml", None, ["budget.steps", "positive integer, got 0"]),
    ("budget_zero_tokens.yaml", None, ["budget.tokens", "positive integer, got 0"]),
    ("budget_tokens_text.yaml", None, ["budget: tokens: 'lots' is not a count"]),
    ("budget_unknown_key.yaml", None, ["budget.stepz", "unknown field"]),
    ("budget_not_mapping.yaml", None, ["budget", "valid dictionary"]),
    ("budget_batch_mismatch.yaml", None, ["budget.global_batch", "not a multiple of micro_batch 3"]),
    ("budget_nan_lr.yaml", None, ["budget.lr", "finite", "nan"]),
    # weights, bounds and the space
    ("pinned_negative.yaml", None, ["space.pinned", "code: share -0.1 must be a number in [0, 1]"]),
    ("pinned_nan.yaml", None, ["space.pinned", "code: share nan"]),
    ("pinned_string.yaml", None, ["space.pinned.code", "valid number"]),
    ("bounds_negative.yaml", None, ["space.bounds", "code min: share -0.2"]),
    ("bounds_nan.yaml", None, ["space.bounds", "code min: share nan"]),
    ("bounds_inverted.yaml", None, ["space.bounds", "code: min 0.6 is above max 0.2"]),
    ("bounds_one_number.yaml", None, ["space.bounds.code", "valid tuple"]),
    ("bounds_all_zero.yaml", None, ["space: search space is empty", "add up to 0 < 1"]),
    ("bounds_mins_over_one.yaml", None, ["space: search space is empty", "add up to 1.1 > 1"]),
    ("pinned_over_one.yaml", None, ["space: search space is empty", "add up to 1.3 > 1"]),
    ("empty_space_caps.yaml", None, ["space: search space is empty", "raise max_epochs"]),
    ("max_epochs_zero.yaml", None, ["space.max_epochs", "greater than 0"]),
    ("target_tokens_text.yaml", None, ["space.target_tokens: 'plenty' is not a count"]),
    ("objective_weight_nan.yaml", None, ["objective.weights", "val.bpb.mean: weight nan must be finite"]),
    # repetition-matched proxies and proxy ladders
    ("ladder_shrinks.yaml", None, ["proxy.scales[1]", "does not grow from scale 0"]),
    ("ladder_target_params_small.yaml", None, ["target.params", "fewer than the largest proxy's"]),
    ("ladder_target_tokens_small.yaml", None, ["space.target_tokens", "fewer than the largest proxy's"]),
    ("ladder_no_target_params.yaml", None, ["target.params", "give the target's parameters"]),
    ("ladder_one_scale.yaml", None, ["proxy.scales", "2 to 4 scales, got 1"]),
    ("ladder_budget_without_scales.yaml", None, ["proxy.compute_budget", "give proxy.scales"]),
    ("ladder_budget_too_small.yaml", None, ["proxy.compute_budget", "do not cover the smallest scale"]),
    ("ladder_unknown_preset.yaml", None, ["proxy.scales[1].preset", "'gpt-5'"]),
    ("ladder_budget_unknown_field.yaml", None, ["proxy.scales[1].budget.stepz", "unknown field"]),
    ("repetition_no_target.yaml", None, ["proxy.match_repetition", "needs space.target_tokens"]),
    ("repetition_target_below_proxy.yaml", None, ["space.target_tokens", "fewer than the proxy's 256"]),
    # names that must exist in the corpus or a registry
    ("unknown_domain.yaml", None, ["space.domains", "'klingon-poetry' is not a domain of the corpus"]),
    ("unknown_bounds_domain.yaml", None, ["space.bounds", "'klingon-poetry' is not a domain of the sweep"]),
    ("unknown_pinned_domain.yaml", None, ["space.pinned", "'klingon-poetry'"]),
    ("domains_empty.yaml", None, ["space.domains", "at least one domain"]),
    ("domains_duplicate.yaml", None, ["space.domains", "'code' is listed twice"]),
    ("objective_unknown_metric.yaml", None, ["objective", "unknown metric 'val.loss.klingon-poetry'"]),
    ("preset_unknown.yaml", None, ["proxy.preset", "'gpt-5'"]),
    ("preset_bad_override.yaml", None, ["num_layers", "positive integer, got -1"]),
    ("sampler_unknown.yaml", None, ["search.sampler", "'magic'"]),
    ("surrogate_unknown.yaml", None, ["search.surrogate", "'oracle'"]),
    ("surrogate_needs_domain_tokens.yaml", None, ["search.surrogate", "needs each domain's unique tokens"]),
    ("eval_task_unknown.yaml", None, ["eval.tasks", "unknown task 'no-such-task'"]),
    ("eval_task_unknown_domain.yaml", None, ["eval.tasks", "'klingon-poetry' is not a domain of the sweep"]),
    # files the spec points at
    ("corpus_missing.yaml", None, ["/nonexistent/corpus", "corpus folder not found"]),
    ("corpus_is_a_file.yaml", None, ["code_train_text_document.idx", "expected a corpus folder"]),
    ("template_missing.yaml", None, ["/nonexistent/train_x.yaml", "file not found"]),
    ("catalog_missing.yaml", None, ["/nonexistent/tokens.csv", "not found"]),
    # broken corpora
    ("valid.yaml", "missing_idx", [f"{TRAIN}.idx", "index file not found"]),
    ("valid.yaml", "missing_bin", [f"{TRAIN}.bin", "data file not found"]),
    ("valid.yaml", "truncated_bin", [f"{TRAIN}.bin", "size mismatch"]),
    ("valid.yaml", "truncated_idx", [f"{TRAIN}.idx", "truncated or corrupt index"]),
    ("valid.yaml", "bad_magic", [f"{TRAIN}.idx", "bad magic header"]),
    ("valid.yaml", "corpus_json_broken", ["corpus.json", "cannot read corpus file"]),
    ("valid.yaml", "corpus_json_stale", [f"{TRAIN}.idx", "files changed after prepare"]),
    (
        "valid.yaml",
        "other_tokenizer",
        ["tokenizer", "but the data was tokenized with 400", "not the corpus' tokenizer"],
    ),
    ("valid.yaml", "in_place_other_tokenizer", ["_text_document.bin", "is outside the tokenizer's"]),
    # services
    ("ray_refused.yaml", None, ["ray_address", "cannot reach Ray at 127.0.0.1:"]),
    ("ray_silent.yaml", None, ["ray_address", "cannot reach Ray at ray://192.0.2.1:10001"]),
    ("ray_no_port.yaml", None, ["ray_address", "is not a Ray address"]),
    ("mlflow_refused.yaml", None, ["mlflow.tracking_uri", "cannot reach MLflow at http://127.0.0.1:"]),
    ("mlflow_silent.yaml", None, ["mlflow.tracking_uri", f"no answer within {REACH_TIMEOUT_S:g} s"]),
    ("mlflow_unknown_scheme.yaml", None, ["mlflow.tracking_uri", "unknown scheme 'gopher'"]),
    # the data root
    ("valid.yaml", "root_elsewhere", ["corpus:", "resolves outside the data root", ALLOW_OUTSIDE_ENV]),
    ("valid.yaml", "root_symlink", ["corpus:", "resolves outside the data root"]),
    ("valid.yaml", "root_dotdot", ["corpus:", "resolves outside the data root"]),
    ("valid.yaml", "tokenizer_escapes_root", ["the corpus reads", "tokenizer", "outside the data root"]),
    ("data_root_widened.yaml", "env_root_is_corpus", ["data_root: / is outside $MIXSWEEP_DATA_ROOT"]),
    ("data_root_own.yaml", None, ["corpus:", "resolves outside the data root", "/code"]),
    ("template_outside_root.yaml", None, ["export.openseek_template:", "resolves outside the data root"]),
]
IDS = [f"{c[0].removesuffix('.yaml')}{'-' + c[1] if c[1] else ''}" for c in CASES]


@pytest.fixture(scope="module")
def silent_port() -> Iterator[int]:
    """A port that accepts connections (the kernel's backlog) and never answers."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(64)
        yield s.getsockname()[1]


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> pytest.MonkeyPatch:
    for key in ("MLFLOW_TRACKING_URI", "RAY_ADDRESS", DATA_ROOT_ENV, ALLOW_OUTSIDE_ENV):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.chdir(tmp_path)  # default output folders, if anything were written, land here
    return monkeypatch


def materialise(
    name: str, setup: str | None, corpus: Path, tmp: Path, mp: pytest.MonkeyPatch, silent_port: int
) -> Path:
    """The spec file of a case, over the corpus (or a damaged copy), in `tmp`."""
    if setup is not None:
        copy = tmp / "corpus"
        shutil.copytree(corpus, copy)
        corpus = SETUPS[setup](copy, tmp, mp)
    source = SPEC / name
    path = tmp / name
    if source.exists():
        text = source.read_text(encoding="utf-8")
        text = text.replace("CORPUS", str(corpus)).replace("CLOSED_PORT", str(free_port()))
        path.write_text(text.replace("SILENT_PORT", str(silent_port)), encoding="utf-8")
    return path


def assert_one_line(message: str, expected: list[str]) -> None:
    assert "\n" not in message.strip(), message
    assert "Traceback" not in message
    for fragment in expected:
        assert fragment in message, f"{fragment!r} not in {message!r}"


@pytest.mark.parametrize("mode", ["dry-run", "run"])
@pytest.mark.parametrize(("name", "setup", "expected"), CASES, ids=IDS)
def test_cli_rejects_with_one_line_exit_2(
    name: str,
    setup: str | None,
    expected: list[str],
    mode: str,
    sweep_corpus: Path,
    tmp_path: Path,
    clean_env: pytest.MonkeyPatch,
    silent_port: int,
) -> None:
    spec = materialise(name, setup, sweep_corpus, tmp_path, clean_env, silent_port)
    # were the spec accepted, `run` would fail here on a Prefect API nobody serves, not train
    clean_env.setenv("PREFECT_API_URL", f"http://127.0.0.1:{free_port()}/api")
    args = ["sweep", str(spec)] + (["--dry-run"] if mode == "dry-run" else [])
    start = time.monotonic()
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 2, result.output
    assert result.stderr.startswith("error: ")
    assert_one_line(result.stderr, expected)
    assert time.monotonic() - start < 3 * REACH_TIMEOUT_S + 5  # reachability checks time out quickly
    assert not (tmp_path / "runs").exists()  # nothing written, nothing trained


@pytest.mark.parametrize(("name", "setup", "expected"), CASES, ids=IDS)
def test_python_api_rejects_in_the_check_step(
    name: str,
    setup: str | None,
    expected: list[str],
    sweep_corpus: Path,
    tmp_path: Path,
    clean_env: pytest.MonkeyPatch,
    silent_port: int,
) -> None:
    """`load_spec` and the flow's first task ('check-spec-and-data'), called as plain functions."""
    from flows import sweep as sweep_module

    spec = materialise(name, setup, sweep_corpus, tmp_path, clean_env, silent_port)

    def no_training(*args: object, **kwargs: object) -> None:
        raise AssertionError("a trial started")

    clean_env.setattr(sweep_module, "run_round", no_training)
    with pytest.raises(MixSweepError) as info:
        sweep_module.check_inputs.fn(load_spec(spec))
    assert_one_line(str(info.value), expected)


def test_the_baseline_spec_passes(sweep_corpus: Path, tmp_path: Path, clean_env: pytest.MonkeyPatch) -> None:
    """Every case above is the valid spec plus one fault: the valid spec itself dry-runs cleanly."""
    spec = materialise("valid.yaml", None, sweep_corpus, tmp_path, clean_env, 0)
    result = CliRunner().invoke(app, ["sweep", str(spec), "--dry-run"])
    assert result.exit_code == 0, result.output
    assert "prose, code, zh, digits" in result.stdout


def test_an_allowed_or_enclosing_data_root_passes(
    sweep_corpus: Path, tmp_path: Path, clean_env: pytest.MonkeyPatch
) -> None:
    spec = materialise("valid.yaml", None, sweep_corpus, tmp_path, clean_env, 0)
    clean_env.setenv(DATA_ROOT_ENV, str(tmp_path / "elsewhere"))
    assert CliRunner().invoke(app, ["sweep", str(spec), "--dry-run"]).exit_code == 2
    clean_env.setenv(ALLOW_OUTSIDE_ENV, "1")
    assert CliRunner().invoke(app, ["sweep", str(spec), "--dry-run"]).exit_code == 0
    clean_env.delenv(ALLOW_OUTSIDE_ENV)
    clean_env.setenv(DATA_ROOT_ENV, str(sweep_corpus.parent))
    result = CliRunner().invoke(app, ["sweep", str(spec), "--dry-run"])
    assert result.exit_code == 0, result.output


def test_corpus_is_large_enough() -> None:
    from tests.test_bad_inputs_mixture import CASES as MIXTURE_CASES

    assert len(CASES) >= 50
    assert len(set(IDS)) == len(CASES)
    assert len(CASES) + len(MIXTURE_CASES) >= 80
    unused = {p.name for p in SPEC.glob("*.yaml")} - {c[0] for c in CASES}
    assert not unused, f"spec files without a case: {sorted(unused)}"
