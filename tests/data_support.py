"""Shared helpers for the data-layer tests: a tiny real corpus built by `prepare` from generated text."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from trainers.data.prepare import PrepareConfig, prepare
from trainers.data.sources import Source

WORDS = [
    "the",
    "model",
    "reads",
    "data",
    "from",
    "many",
    "domains",
    "and",
    "the",
    "mixture",
    "decides",
    "how",
    "much",
    "of",
    "each",
    "it",
    "sees",
    "during",
    "training",
    "while",
    "small",
    "proxies",
    "predict",
    "what",
    "a",
    "large",
    "run",
    "would",
    "learn",
    "from",
    "the",
    "same",
    "blend",
    "of",
    "sources",
]
CODE = [
    "def",
    "return",
    "for",
    "in",
    "range",
    "if",
    "else",
    "import",
    "numpy",
    "as",
    "np",
    "x",
    "y",
    "=",
    "+",
    "(",
    ")",
    ":",
]
HANZI = "的一是在不了有和人这中大为上个国我以要他时来用们生到作地于出就分对成会可主发年动同工也能下过子说产种面而方后多定行学法所民得经十三之进着等部度家电力里如水化高自二理起小物现实加量都两体制机当使点从业本去把性好应开它合还因由其些然前外天政四日那社义事平形相全表间样与关各重新线内数正心反你明看原又么利比或但质气第向道命此变条只没结解问意建月公无系军很情者最立代想已通并提直题党程展五果料象员革位入常文总次品式活设及管特件长求老头基资边流路级少图山统接知较将组见计别她手角期根论运农指几九区强放决西被干做必战先回则任取据处府研"
DIGITS = "0123456789"


def _docs(kind: str, n: int, seed: int) -> list[str]:
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        size = int(rng.integers(20, 200))
        if kind == "prose":
            text = " ".join(WORDS[j] for j in rng.integers(0, len(WORDS), size)) + "."
        elif kind == "code":
            text = "\n".join(" ".join(CODE[j] for j in rng.integers(0, len(CODE), 8)) for _ in range(size // 8 + 1))
        elif kind == "zh":
            text = "".join(HANZI[j] for j in rng.integers(0, len(HANZI), size)) + "。"
        else:
            text = " ".join("".join(DIGITS[j] for j in rng.integers(0, 10, 4)) for _ in range(size // 4 + 1))
        out.append(f"{i} {text}")
    return out


def memory_source(name: str, kind: str, n: int, seed: int, group: str | None = None) -> Source:
    docs = _docs(kind, n, seed)
    return Source(
        name, group or kind, lambda: iter(docs), lambda: [name, kind, n, seed], f"{n} generated {kind} documents"
    )


def tiny_sources() -> list[Source]:
    return [
        memory_source("prose", "prose", 160, 1, "EN"),
        memory_source("code", "code", 120, 2, "Code"),
        memory_source("zh", "zh", 140, 3, "ZH"),
        memory_source("digits", "digits", 100, 4, "Math"),
    ]


def build_tiny_corpus(out: Path, **options: object) -> Path:
    fields: dict[str, object] = {"vocab_size": 400, "valid_fraction": 0.1, "workers": 1, **options}
    cfg = PrepareConfig(out=out, **fields)  # type: ignore[arg-type]
    prepare(tiny_sources(), cfg, log=lambda _msg: None, progress=False)
    return out
