"""The OpenSeek scale fixture: real layout and token counts, real .idx, sparse .bin, deterministic."""

from __future__ import annotations

import hashlib
import json
import warnings
from pathlib import Path

import numpy as np
import pytest

from benchmarks.openseek_fixture import (
    EOD_ID,
    LENGTHS,
    VOCAB_SIZE,
    FixtureConfig,
    build_fixture,
    disk_usage,
    document_lengths,
    read_counts,
)
from mixture_search.catalog import domain_of
from trainers.data import Corpus
from trainers.data.errors import DataError
from trainers.data.indexed import idx_path

SCALE = 1e-4


@pytest.fixture(scope="module")
def fixture_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("openseek") / "fx"
    build_fixture(FixtureConfig(out, scale=SCALE))
    return out


def test_corpus_load_reads_the_real_layout_and_counts(fixture_dir: Path) -> None:
    files = read_counts()
    assert len(files) == 84
    corpus = Corpus.load(fixture_dir)
    assert set(corpus.domains) == {domain_of(f.prefix) for f in files}
    assert len(corpus.domains) == 79
    tokens: dict[str, int] = {}
    for d in corpus.domain_info:
        for s in (*d.train, *d.valid):
            tokens[s.prefix] = tokens.get(s.prefix, 0) + s.tokens
    assert tokens == {f.prefix: max(1, round(f.real_tokens * SCALE)) for f in files}
    manifest = json.loads((fixture_dir / "fixture.json").read_text())
    docs = {r["prefix"]: r["documents"] for r in manifest["files"]}
    for d in corpus.domain_info:
        for s in d.train[:-1]:
            assert s.documents == docs[s.prefix]
    assert corpus.dtype == np.dtype(np.int32)
    assert (corpus.vocab_size, corpus.eod_id) == (VOCAB_SIZE, EOD_ID)


def test_bin_files_are_sparse_and_megatron_reads_the_index(fixture_dir: Path) -> None:
    apparent, allocated = disk_usage(fixture_dir)
    idx_bytes = sum(idx_path(fixture_dir / f.prefix).stat().st_size for f in read_counts())
    assert apparent > 4 * 10_000_000  # int32 tokens, about 10M of them
    assert allocated < idx_bytes + (8 << 20)  # the .idx files and the tokenizer; the .bin zeros take no disk
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from megatron.core.datasets.indexed_dataset import IndexedDataset

    prefix = fixture_dir / "books/016_00007_text_document"
    ds = IndexedDataset(str(prefix))
    manifest = json.loads((fixture_dir / "fixture.json").read_text())
    row = next(r for r in manifest["files"] if r["prefix"] == "books/016_00007_text_document")
    assert len(ds) == row["documents"]
    assert int(ds.sequence_lengths.sum()) == row["tokens"]


def test_deterministic_and_rerun_skips(fixture_dir: Path, tmp_path: Path) -> None:
    again = build_fixture(FixtureConfig(fixture_dir, scale=SCALE))
    other = tmp_path / "fx2"
    build_fixture(FixtureConfig(other, scale=SCALE))
    assert json.loads((other / "fixture.json").read_text())["key"] == again["key"]
    for f in read_counts()[::20]:
        a = hashlib.sha256(idx_path(fixture_dir / f.prefix).read_bytes()).hexdigest()
        b = hashlib.sha256(idx_path(other / f.prefix).read_bytes()).hexdigest()
        assert a == b


def test_document_lengths_sum_exactly_and_follow_the_model() -> None:
    lens = document_lengths(10_000_000, LENGTHS["CC-EN"], 0, "x")
    assert int(lens.sum(dtype=np.int64)) == 10_000_000
    assert lens.min() >= 1
    assert abs(np.median(lens[:-1]) / 600 - 1) < 0.05  # the web-page median
    assert document_lengths(5, LENGTHS["Books"], 0, "b").tolist() == [5]


def test_bad_inputs_are_one_line(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"--scale: scale 0.0 must be in"):
        FixtureConfig(tmp_path, scale=0.0)
    bad = tmp_path / "counts.csv"
    bad.write_text("dataset_prefix,domain_label,tokens,token_source,baseline_weight_pct\na/b,Nope,5,x,1\n")
    with pytest.raises(DataError, match=r"counts.csv: row 2: no document-length model for domain_label 'Nope'"):
        read_counts(bad)
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "x").write_text("mine")
    with pytest.raises(DataError, match=r"busy: folder exists and is not an OpenSeek fixture"):
        build_fixture(FixtureConfig(tmp_path / "busy", scale=SCALE))


SPEC = Path(__file__).resolve().parents[1] / "deploy" / "specs" / "openseek_scale.yaml"


def test_dry_sweep_at_scale_plans_the_baseline_domains(tmp_path: Path) -> None:
    """deploy/specs/openseek_scale.yaml on the 1% fixture: the corpus, the target and the proxy's tokens scaled
    by 1% with it (4 epochs of a 1B-token corpus cannot make 100B), everything else as written."""
    from ruamel.yaml import YAML
    from typer.testing import CliRunner

    from flows.cli import app

    root = tmp_path / "fx"
    build_fixture(FixtureConfig(root, scale=0.01))
    yaml = YAML(typ="safe")
    spec = yaml.load(SPEC.read_text())
    baseline_domains = list(spec["space"]["domains"])
    assert len(baseline_domains) == 79
    assert spec["space"]["target_tokens"] == "100B"
    spec["corpus"] = str(root)
    spec["space"]["target_tokens"] = "1B"
    spec["budget"].update(tokens="20M", warmup_steps=1, eval_interval=10)
    spec["output_dir"] = str(tmp_path / "out")
    small = tmp_path / "spec.yaml"
    with small.open("w") as fh:
        yaml.dump(spec, fh)
    result = CliRunner().invoke(app, ["sweep", str(small), "--dry-run"], env={"COLUMNS": "400"})
    assert result.exit_code == 0, result.output
    assert "sweep openseek-scale" in result.output
    assert "zh_cc-medidum-loss2" in result.output and "pes2o-full-val" in result.output
    assert set(Corpus.load(root).domains) == set(baseline_domains)
