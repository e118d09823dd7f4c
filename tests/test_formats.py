"""Formats round-trip losslessly on the real OpenSeek baseline (84 files)."""

from __future__ import annotations

import csv
import difflib
import json
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mixture_search.catalog import DomainCatalog
from mixture_search.errors import FormatError
from mixture_search.formats import (
    _NUMBER,
    BASE_DIR_EXPR,
    MixtureDoc,
    parse_data_path,
    read_mixture,
    render,
    render_openseek_task,
    to_data_path,
    to_data_path_string,
    write_mixture,
)
from mixture_search.mixture import Mixture
from tests.conftest import OPENSEEK_EXPERIMENT, OPENSEEK_TASK, OPENSEEK_TOKENS


def baseline() -> MixtureDoc:
    return read_mixture(OPENSEEK_EXPERIMENT)


def test_reads_the_openseek_pair() -> None:
    doc = baseline()
    assert doc.format == "openseek" and doc.name == "OpenSeek-Small-v1-Baseline"
    assert len(doc.mixture) == 84
    first = next(iter(doc.mixture.items()))
    assert first == ("Nemotron-CC-high-actual-actual-high/part_142_text_document", 1.1068)
    assert doc.mixture["cot_synthesis_CC-high/74_text_document"] == 0.2225
    # ${experiment.dataset_base_dir} = ../OpenSeek-Pretrain-100B, relative to the experiment config
    assert doc.base_dir == (OPENSEEK_EXPERIMENT.parent / "../OpenSeek-Pretrain-100B").resolve()
    assert doc.metadata["train_tokens"] == 24576000 * 4096
    # the task file alone finds its experiment config
    task = read_mixture(OPENSEEK_TASK)
    assert (
        task.mixture.pairs == doc.mixture.pairs
        and task.openseek
        and task.openseek.experiment_path == OPENSEEK_EXPERIMENT
    )


def test_openseek_task_round_trips_byte_for_byte() -> None:
    doc = baseline()
    assert render_openseek_task(doc.mixture, OPENSEEK_TASK) == OPENSEEK_TASK.read_text()


def test_new_task_yaml_changes_only_data_path(tmp_path: Path) -> None:
    doc = baseline()
    items = list(doc.mixture.items())
    new = Mixture([(items[0][0], 2.5), *items[1:80]])  # reweigh one file, drop four
    out = write_mixture(MixtureDoc(new, "yaml"), "openseek", tmp_path / "train_new.yaml", template=doc)[0]
    original, written = OPENSEEK_TASK.read_text().splitlines(), out.read_text().splitlines()
    changed = [
        line
        for line in difflib.unified_diff(original, written, lineterm="", n=0)
        if line[:1] in "+-" and line[:3] not in ("+++", "---")
    ]
    # exactly: one weight line replaced, 8 lines (4 weight/path pairs) removed; nothing outside data_path
    assert changed == ["-    - 1.1068", "+    - 2.5"] + [f"-{line}" for line in original[278:286]]
    block = slice(118, 118 + 2 * 84)
    assert original[: block.start] == written[: block.start]
    assert original[block.stop :] == written[block.start + 2 * 80 :]
    assert read_mixture(out).mixture.pairs == new.pairs


def test_openseek_pair_written_to_a_folder(tmp_path: Path) -> None:
    doc = baseline()
    new = Mixture(list(doc.mixture.items())[::-1])  # reversed order is a different mixture
    paths = write_mixture(MixtureDoc(new, "yaml"), "openseek", tmp_path / "exp", template=doc)
    assert [p.relative_to(tmp_path).as_posix() for p in paths] == [
        "exp/config_deepseek_v3_1_4b.yaml",
        "exp/train/train_deepseek_v3_1_4b.yaml",
    ]
    assert paths[0].read_text() == OPENSEEK_EXPERIMENT.read_text()
    back = read_mixture(paths[0])
    assert back.mixture.pairs == new.pairs
    assert back.openseek and back.openseek.base_dir == (tmp_path / "OpenSeek-Pretrain-100B").resolve()


def test_megatron_forms_round_trip_exactly(tmp_path: Path) -> None:
    m = baseline().mixture
    string = to_data_path_string(m, base_expr=BASE_DIR_EXPR)
    assert string.startswith(
        "1.1068 ${experiment.dataset_base_dir}/Nemotron-CC-high-actual-actual-high/part_142_text_document 0.3577 "
    )
    assert parse_data_path(string.split(), strip=BASE_DIR_EXPR).pairs == m.pairs
    assert parse_data_path(to_data_path(m)).pairs == m.pairs
    for name in ("mix.txt", "mix.yaml"):
        path = write_mixture(MixtureDoc(m, "openseek"), "megatron", tmp_path / name)[0]
        back = read_mixture(path)
        assert back.format == "megatron" and back.mixture.pairs == m.pairs
    (tmp_path / "cli.txt").write_text("--data-path " + to_data_path_string(m))
    assert read_mixture(tmp_path / "cli.txt").mixture.pairs == m.pairs
    (tmp_path / "single.txt").write_text("/data/web_text_document\n")
    assert read_mixture(tmp_path / "single.txt").mixture.pairs == (("/data/web_text_document", 1.0),)


def test_native_yaml_and_json_round_trip(tmp_path: Path) -> None:
    doc = baseline()
    for fmt in ("yaml", "json"):
        path = write_mixture(doc, fmt, tmp_path / f"mix.{fmt}")[0]
        back = read_mixture(path)
        assert back.format == fmt and back.name == doc.name
        assert back.mixture.pairs == doc.mixture.pairs
        assert back.metadata["train_tokens"] == doc.metadata["train_tokens"]
    assert json.loads((tmp_path / "mix.json").read_text())["weights"]["books/016_00007_text_document"] == 0.4696
    # openseek -> yaml -> openseek with the original as template gives back the original file
    assert render(read_mixture(tmp_path / "mix.yaml"), "openseek", template=doc) == OPENSEEK_TASK.read_text()


def test_group_sums_match_token_shares() -> None:
    """The baseline is token-proportional: per group, weight share == token share (4-digit rounding)."""
    m = baseline().mixture
    cat = DomainCatalog.from_tokens_csv(OPENSEEK_TOKENS)
    groups = cat.collapse(m, "group")
    tokens = cat.tokens("group")
    total = sum(t or 0 for t in tokens.values())
    with OPENSEEK_TOKENS.open() as fh:
        rows = list(csv.DictReader(fh))
    files_per_group = {g: sum(r["domain_label"] == g for r in rows) for g in groups}
    assert len(groups) == 15 and sum(files_per_group.values()) == 84
    for g in groups:
        assert abs(groups.share(g) - (tokens[g] or 0) / total) <= 1e-6 * files_per_group[g], g
    assert abs(sum(m.weights) - 100.0) < 1e-3  # percentages rounded to 4 digits


names_st = st.lists(
    st.text(
        alphabet=st.characters(whitelist_categories=("L", "N"), whitelist_characters="_-/."), min_size=1, max_size=20
    ).filter(lambda s: not _NUMBER.match(s) and s.strip("./") != ""),
    min_size=1,
    max_size=12,
    unique=True,
)


@given(names_st, st.data())
def test_any_mixture_round_trips_through_every_format(names: list[str], data: st.DataObject) -> None:
    import tempfile

    weights = data.draw(
        st.lists(st.floats(0, 1e4, allow_nan=False, allow_infinity=False), min_size=len(names), max_size=len(names))
    )
    if sum(weights) <= 0:
        weights[0] = 1.0
    m = Mixture(zip(names, weights))
    assert parse_data_path(to_data_path_string(m).split()).pairs == m.pairs
    with tempfile.TemporaryDirectory() as tmp:
        for fmt, name in (("yaml", "m.yaml"), ("json", "m.json"), ("megatron", "m.txt"), ("megatron", "m_list.yaml")):
            path = write_mixture(MixtureDoc(m, "yaml", name="x"), fmt, Path(tmp) / name)[0]
            assert read_mixture(path).mixture.pairs == m.pairs, fmt


def test_yaml_keywords_as_domain_names(tmp_path: Path) -> None:
    m = Mixture({"null": 1, "true": 2, "~": 3, "1e5x": 4, "a: b": 5, "# c": 6})
    for fmt in ("yaml", "json"):
        path = write_mixture(MixtureDoc(m, "yaml"), fmt, tmp_path / f"m.{fmt}")[0]
        assert read_mixture(path).mixture.pairs == m.pairs


def test_other_interpolations_in_data_path_resolve_with_the_experiment(tmp_path: Path) -> None:
    """The real OpenSeek pair, its entries split between `${experiment.dataset_base_dir}` and two other
    experiment fields (one under the base directory, one elsewhere): read from either file, the other
    fields are resolved, not stripped; read without the experiment, they are an error."""
    exp_dir = tmp_path / "OpenSeek-Small-v1-Baseline"
    (exp_dir / "train").mkdir(parents=True)
    experiment = OPENSEEK_EXPERIMENT.read_text().replace(
        "  dataset_base_dir: ../OpenSeek-Pretrain-100B\n",
        "  dataset_base_dir: ../OpenSeek-Pretrain-100B\n"
        "  nemotron_dir: ${experiment.dataset_base_dir}\n"
        "  extra_dir: /data/extra\n",
    )
    (exp_dir / OPENSEEK_EXPERIMENT.name).write_text(experiment)
    lines = OPENSEEK_TASK.read_text().splitlines(keepends=True)
    first_cot = next(i for i, line in enumerate(lines) if "/cot_synthesis_CC-high/74_text_document" in line)
    lines = [line.replace(f"{BASE_DIR_EXPR}/Nemotron-CC", "${experiment.nemotron_dir}/Nemotron-CC") for line in lines]
    lines[first_cot] = lines[first_cot].replace(BASE_DIR_EXPR, "${experiment.extra_dir}")
    task = exp_dir / "train" / OPENSEEK_TASK.name
    task.write_text("".join(lines))

    original = baseline().mixture
    expected = {
        ("/data/extra/" + k if k == "cot_synthesis_CC-high/74_text_document" else k): w for k, w in original.items()
    }
    for path in (exp_dir / OPENSEEK_EXPERIMENT.name, task):
        doc = read_mixture(path)
        assert dict(doc.mixture.items()) == expected
        assert doc.base_dir == (tmp_path / "OpenSeek-Pretrain-100B").resolve()
        assert doc.prefix_path("/data/extra/cot_synthesis_CC-high/74_text_document").is_absolute()

    alone = tmp_path / "alone.yaml"
    alone.write_text(task.read_text())
    with pytest.raises(FormatError, match=r"alone\.yaml:\d+ data\.data_path\[1\]: \$\{experiment\.nemotron_dir\}"):
        read_mixture(alone)
