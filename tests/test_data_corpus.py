"""Corpus preparation and loading: indexed datasets per domain, tokenizer, held-out split, data hash, reruns."""

from __future__ import annotations

import json
import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest

from tests.data_support import build_tiny_corpus, memory_source, tiny_sources
from trainers.data import Corpus, ValidationSet
from trainers.data import tokenizer as tk
from trainers.data.errors import DataError
from trainers.data.indexed import IndexedWriter, read_index
from trainers.data.prepare import PrepareConfig, prepare
from trainers.data.sources import clean, source_for


@pytest.fixture(scope="module")
def corpus_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_corpus(tmp_path_factory.mktemp("data") / "tiny")


def test_prepared_corpus_layout_and_catalog(corpus_dir: Path) -> None:
    corpus = Corpus.load(corpus_dir)
    assert corpus.domains == ("prose", "code", "zh", "digits")
    for d in corpus.domain_info:
        assert [s.prefix for s in d.train] == [f"{d.name}/{d.name}_train_text_document"]
        assert [s.prefix for s in d.valid] == [f"{d.name}/{d.name}_valid_text_document"]
        info = read_index(corpus_dir / d.train[0].prefix)
        assert d.train_tokens == info.tokens
    cat = corpus.catalog
    assert cat.base_dir == corpus_dir
    assert cat.domain_names == corpus.domains
    assert cat.group_names == ("EN", "Code", "ZH", "Math")
    assert cat.tokens("domain")["zh"] == corpus.domain("zh").train_tokens
    assert corpus.vocab_size == 400
    assert corpus.dtype == np.dtype(np.uint16)


def test_documents_end_with_the_end_of_document_token(corpus_dir: Path) -> None:
    corpus = Corpus.load(corpus_dir)
    seg = corpus.domain("prose").train[0]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from megatron.core.datasets.indexed_dataset import IndexedDataset

    ds = IndexedDataset(str(corpus_dir / seg.prefix))
    assert len(ds) == seg.documents
    assert all(int(ds[i][-1]) == corpus.eod_id for i in range(len(ds)))
    assert corpus.eod_id == 0


def test_tokenizer_is_a_hugging_face_folder(corpus_dir: Path) -> None:
    from transformers import AutoTokenizer

    corpus = Corpus.load(corpus_dir)
    assert corpus.tokenizer_dir is not None
    tok = AutoTokenizer.from_pretrained(str(corpus.tokenizer_dir))
    assert tok.eos_token == "<|endoftext|>"
    ids = tok("the model reads data")["input_ids"]
    assert tok.decode(ids) == "the model reads data"


def test_split_is_disjoint_and_deduplicated(tmp_path: Path) -> None:
    docs = [f"document number {i} with some words in it" for i in range(60)]
    dup = memory_source("a", "prose", 10, 1)
    src = type(dup)("a", "A", lambda: iter(docs + docs[:10]), lambda: ["a", 1], "dups")
    result = prepare(
        [src],
        PrepareConfig(out=tmp_path / "c", vocab_size=300, valid_fraction=0.2, workers=1),
        log=lambda _m: None,
        progress=False,
    )
    d = result.corpus.domain("a")
    assert sum(s.documents for s in d.train) + sum(s.documents for s in d.valid) == 60
    assert d.info["duplicates"] == 10


def test_rerun_with_the_same_inputs_is_a_no_op(tmp_path: Path) -> None:
    out = build_tiny_corpus(tmp_path / "c")
    before = {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file()}
    result = prepare(
        tiny_sources(),
        PrepareConfig(out=out, vocab_size=400, valid_fraction=0.1, workers=1),
        log=lambda _m: None,
        progress=False,
    )
    assert result.skipped
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file()} == before
    # another option is another corpus
    changed = prepare(
        tiny_sources(),
        PrepareConfig(out=out, vocab_size=420, valid_fraction=0.1, workers=1),
        log=lambda _m: None,
        progress=False,
    )
    assert not changed.skipped
    assert changed.corpus.vocab_size == 420


def test_data_hash_changes_with_data_split_and_tokenizer(tmp_path: Path, corpus_dir: Path) -> None:
    a = Corpus.load(corpus_dir).data_hash
    assert Corpus.load(corpus_dir).data_hash == a
    other = build_tiny_corpus(tmp_path / "other", valid_fraction=0.2)
    assert Corpus.load(other).data_hash != a
    bigger = build_tiny_corpus(tmp_path / "vocab", vocab_size=420)
    assert Corpus.load(bigger).data_hash != a


def test_megatron_datasets_in_place(tmp_path: Path, corpus_dir: Path) -> None:
    """A folder of existing .bin/.idx (like OpenSeek-Pretrain-100B): domains by folder, counts from .idx."""
    root = tmp_path / "openseek"
    for d in ("prose", "code"):
        for suffix in (".bin", ".idx"):
            (root / f"{d}-high").mkdir(parents=True, exist_ok=True)
            shutil.copy(
                corpus_dir / d / f"{d}_train_text_document{suffix}",
                root / f"{d}-high" / f"part_0_text_document{suffix}",
            )
    corpus = Corpus.load(root)
    assert corpus.domains == ("code-high", "prose-high")
    assert corpus.catalog.domain("code-high").group == "code"  # the source label parsed from the name
    full = read_index(root / "prose-high" / "part_0_text_document")
    d = corpus.domain("prose-high")
    assert d.train_tokens + d.valid_tokens == full.tokens
    assert 0 < d.valid_tokens <= full.tokens // 50 + 400  # whole documents, about 1% held out
    assert corpus.tokenizer_dir is None
    h = corpus.data_hash
    with IndexedWriter(root / "code-high" / "part_1_text_document", np.uint16) as w:
        w.add(np.array([5, 6, 7, 0]))
    assert Corpus.load(root).data_hash != h
    tok = Corpus.load(root, tokenizer=corpus_dir / "tokenizer")
    assert tok.vocab_size == 400


def test_validation_windows_and_exact_target_bytes(corpus_dir: Path) -> None:
    corpus = Corpus.load(corpus_dir)
    val = ValidationSet(corpus, seq_len=32, max_windows_per_domain=5)
    again = ValidationSet(corpus, seq_len=32, max_windows_per_domain=5)
    assert set(val.windows) == set(corpus.domains)
    for name, w in val.windows.items():
        assert w.dtype.is_floating_point is False and w.shape[1] == 33 and 1 <= w.shape[0] <= 5
        assert np.array_equal(w.numpy(), again.windows[name].numpy())
    byte_len = tk.token_byte_lengths(corpus.tokenizer_dir)  # type: ignore[arg-type]
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(corpus.tokenizer_dir / "tokenizer.json"))  # type: ignore[operator]
    for name in ("prose", "digits"):  # ASCII domains: decoding is byte-exact
        ids = val.windows[name][:, 1:]
        text_bytes = sum(len(tok.decode(row.tolist(), skip_special_tokens=True).encode()) for row in ids)
        assert val.target_bytes[name] == text_bytes == int(byte_len[ids.numpy()].sum())
    # multi-byte text: each Chinese character is 3 bytes, whatever the token boundaries
    zh = val.windows["zh"][:, 1:].numpy()
    pieces = b"".join(bytes(tk.BYTE_OF_CHAR[c] for c in (tok.id_to_token(int(i)) or "")) for i in zh.ravel() if i > 1)
    assert val.target_bytes["zh"] == len(pieces)


def test_cleaning() -> None:
    assert clean("\x1b[32m春晓\x1b[m\r\n孟浩然  \n\n\n\n春眠不觉晓") == "春晓\n孟浩然\n\n春眠不觉晓"
    assert clean("ok\x00binary") is None
    assert clean("short", min_chars=8) is None


def test_inputs_from_files(tmp_path: Path) -> None:
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "a.md").write_text("# Title\n\nSome markdown text for the corpus.")
    (tmp_path / "notes" / "b.txt").write_text("Plain text, another document of the notes domain.")
    (tmp_path / "web.jsonl").write_text(
        "\n".join(json.dumps({"text": f"web page {i} says hello world"}) for i in range(5))
    )
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.table({"content": [f"row {i} of a parquet file" for i in range(4)]}), tmp_path / "rows.parquet")
    notes = source_for("notes", tmp_path / "notes")
    web = source_for("web", tmp_path / "web.jsonl")
    rows = source_for("rows", tmp_path / "rows.parquet", text_field="content")
    assert len(list(notes.documents())) == 2
    assert len(list(web.documents())) == 5
    assert next(iter(rows.documents())) == "row 0 of a parquet file"


def test_empty_domain_is_an_error(tmp_path: Path) -> None:
    src = source_for("blank", Path(__file__).parent / "bad_inputs" / "data" / "empty_domain")
    with pytest.raises(DataError, match=r"^blank: empty domain: 2 documents read, 2 dropped"):
        prepare(
            [src], PrepareConfig(out=tmp_path / "x", vocab_size=300, workers=1), log=lambda _m: None, progress=False
        )
    assert not (tmp_path / "x").exists()


def test_vocab_larger_than_dtype(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="vocab_size: tokenizer vocabulary of 70000 ids exceeds the uint16 token dtype"):
        prepare(
            tiny_sources()[:1],
            PrepareConfig(out=tmp_path / "x", vocab_size=70000, dtype="uint16", workers=1),
            log=lambda _m: None,
            progress=False,
        )
    assert not (tmp_path / "x").exists()
