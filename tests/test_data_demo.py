"""The bundled demo corpus comes from real text installed by `make setup` (Debian packages, Python, sympy)."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest

from trainers.data import Corpus, ValidationSet
from trainers.data.demo import demo_sources, roff_to_text
from trainers.data.prepare import PrepareConfig, prepare
from trainers.data.sources import ANSI, clean

EXPECTED = ("code", "math-code", "en-tech", "en-lit", "en-quotes", "latex", "zh-man", "zh-poetry")


def test_every_demo_domain_yields_clean_real_text() -> None:
    sources = demo_sources()
    assert tuple(s.name for s in sources) == EXPECTED
    for src in sources:
        docs = [d for d in (clean(x) for x in itertools.islice(src.documents(), 40)) if d]
        assert docs, src.name
        assert not any(ANSI.search(d) for d in docs)
        assert src.fingerprint() == src.fingerprint()
    text = {s.name: "".join(itertools.islice((clean(x) or "" for x in s.documents()), 40)) for s in sources}
    assert "def " in text["code"] and "sympy" in text["math-code"].lower()
    assert "God" in text["en-lit"]
    assert "\\" in text["latex"]
    for zh in ("zh-man", "zh-poetry"):
        assert sum("\u4e00" <= ch <= "\u9fff" for ch in text[zh]) > 500, zh


def test_roff_markup_is_removed() -> None:
    page = ".TH LS 1\n.SH NAME\nls \\- 列出目录内容\n.B \\-a\n\\fB\\-\\-all\\fP\n不隐藏任何以 . 开始的项目\n"
    text = roff_to_text(page)
    assert "列出目录内容" in text and "--all" in text and "\\f" not in text and ".TH" not in text


@pytest.mark.slow
def test_demo_corpus_in_miniature(tmp_path: Path) -> None:
    """The real demo pipeline with a small byte cap: 8 domains, a trained tokenizer, validation everywhere."""
    cfg = PrepareConfig(out=tmp_path / "demo", vocab_size=1024, max_bytes_per_domain=120_000, workers=2)
    result = prepare(demo_sources(), cfg, log=lambda _m: None, progress=False)
    corpus = Corpus.load(result.corpus.root)
    assert corpus.domains == EXPECTED
    assert all(d.train_tokens > 10_000 for d in corpus.domain_info)
    val = ValidationSet(corpus, seq_len=64, max_windows_per_domain=4)
    assert set(val.windows) | set(val.skipped) == set(EXPECTED)
    again = prepare(demo_sources(), cfg, log=lambda _m: None, progress=False)
    assert again.skipped
