"""A small real corpus for training tests, prepared by the data layer (BPE tokenizer, Megatron datasets).

Two domains that look nothing alike, so a model trained on one is measurably better on it than on
the other after a few dozen steps: `prose` (sentences from a small English word list) and `sums`
(lines of integer arithmetic). Deterministic, a few hundred KB, prepared once per test session.
"""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from trainers.data.prepare import PrepareConfig, prepare
from trainers.data.sources import Source

WORDS = [
    "the",
    "a",
    "river",
    "town",
    "old",
    "light",
    "morning",
    "people",
    "walked",
    "along",
    "quiet",
    "road",
    "under",
    "tall",
    "trees",
    "while",
    "children",
    "laughed",
    "and",
    "birds",
    "sang",
    "over",
    "green",
    "fields",
    "near",
    "small",
    "houses",
    "with",
    "open",
    "windows",
    "every",
    "summer",
    "evening",
]


def _prose(seed: int) -> str:
    rng = random.Random(seed)
    sentences = []
    for _ in range(rng.randint(8, 14)):
        words = [rng.choice(WORDS) for _ in range(rng.randint(6, 12))]
        sentences.append(" ".join(words).capitalize() + ".")
    return " ".join(sentences)


def _sums(seed: int) -> str:
    rng = random.Random(seed)
    lines = []
    for _ in range(rng.randint(10, 16)):
        a, b = rng.randint(0, 999), rng.randint(0, 999)
        lines.append(f"{a} + {b} = {a + b}")
    return "\n".join(lines)


def _source(name: str, make, n: int) -> Source:
    docs = [make(i) for i in range(n)]
    return Source(name=name, group=name, documents=lambda: iter(docs), fingerprint=lambda: [name, n, "v1"])


def make_corpus(out: Path) -> Path:
    sources = [_source("prose", _prose, 400), _source("sums", lambda i: _sums(10_000 + i), 400)]
    prepare(
        sources,
        PrepareConfig(out=out, vocab_size=384, valid_fraction=0.1, workers=1, tokenizer_train_bytes=1 << 18),
        log=lambda _msg: None,
        progress=False,
    )
    return out


@pytest.fixture(scope="session")
def train_corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_corpus(tmp_path_factory.getbasetemp() / "train_corpus")
