"""Small real inputs for the evaluation tests: a byte-level BPE tokenizer trained on text that is on
every Debian machine (Python's standard library, the GPL), held-out passages from the same sources,
and tiny converted models."""

from __future__ import annotations

import json
import sysconfig
from pathlib import Path
from typing import Any

import torch

STDLIB = Path(sysconfig.get_paths()["stdlib"])
GPL = Path("/usr/share/common-licenses/GPL-3")
CODE_FILES = ["json/decoder.py", "json/encoder.py", "json/scanner.py", "textwrap.py", "colorsys.py"]


def code_text() -> str:
    return "\n".join((STDLIB / f).read_text(encoding="utf-8") for f in CODE_FILES)


def legal_text() -> str:
    return GPL.read_text(encoding="utf-8")


def train_tokenizer(out: Path, vocab_size: int = 512) -> Path:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=["<|endoftext|>"], initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
    )
    tok.train_from_iterator([code_text(), legal_text()], trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, eos_token="<|endoftext|>", bos_token="<|endoftext|>", pad_token="<|endoftext|>"
    )
    fast.save_pretrained(str(out))
    return out


def paragraphs(text: str, size: int, count: int, *, skip: int = 0) -> list[str]:
    """`count` consecutive chunks of about `size` characters (cut at line ends), after `skip` chunks."""
    lines, chunks, cur = text.splitlines(), [], ""
    for line in lines:
        cur += line.strip() + " "
        if len(cur) >= size:
            chunks.append(" ".join(cur.split()))
            cur = ""
    return chunks[skip : skip + count]


def heldout_folder(out: Path, per_domain: int = 8) -> Path:
    """`code.txt` (Python source) and `legal.txt` (the GPL), passages separated by blank lines."""
    out.mkdir(parents=True, exist_ok=True)
    (out / "code.txt").write_text("\n\n".join(paragraphs(code_text(), 260, per_domain, skip=3)), encoding="utf-8")
    (out / "legal.txt").write_text("\n\n".join(paragraphs(legal_text(), 260, per_domain, skip=10)), encoding="utf-8")
    (out / "groups.json").write_text(json.dumps({"code": "Code", "legal": "English"}), encoding="utf-8")
    return out


def tiny_proxy(vocab: int, **kw: Any) -> Any:
    from trainers.config import ProxyConfig

    base: dict[str, Any] = dict(
        name="tiny_eval",
        num_layers=2,
        hidden_size=64,
        num_attention_heads=4,
        num_query_groups=2,
        ffn_hidden_size=128,
        seq_len=64,
        vocab_size=vocab,
        init_std=0.1,
    )
    return ProxyConfig(**(base | kw))


def convert_plain(out: Path, tokenizer: Path | None, seed: int, **kw: Any) -> Any:
    """A randomly initialised plain proxy (seeded), converted with its tokenizer."""
    from eval.convert import convert, from_module
    from trainers.models.gpt import GPT

    proxy = tiny_proxy(512, **kw)
    torch.manual_seed(seed)
    return convert(from_module(GPT(proxy), proxy), out, tokenizer=tokenizer)


def write_jsonl(path: Path, rows: list[dict[str, Any]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")


def benchmark_samples(root: Path) -> Path:
    """A few rows in the exact schema of two OpenSeek benchmarks (HellaSwag, GSM8K): format samples
    written for these tests, not the benchmarks themselves."""
    hs = [
        {
            "activity_label": "Cooking",
            "ctx": "A man puts a pan on the stove. He",
            "endings": [
                "adds oil to the pan.",
                "swims across a lake.",
                "reads the newspaper aloud.",
                "paints the ceiling.",
            ],
            "label": "0",
        },
        {
            "activity_label": "Gardening",
            "ctx": "A woman kneels next to a flower bed. She",
            "endings": ["flies a kite.", "pulls out the weeds.", "types a letter.", "sings on a stage."],
            "label": "1",
        },
        {
            "activity_label": "Cycling",
            "ctx": "A boy pumps air into a flat tyre. He",
            "endings": ["bakes a cake.", "mops the floor.", "rides the bicycle away.", "opens an umbrella."],
            "label": "2",
        },
    ]
    write_jsonl(root / "hellaswag" / "validation.jsonl", hs)
    write_jsonl(root / "hellaswag" / "train.jsonl", hs)
    gsm = [
        {"question": "Tom has 3 apples and buys 2 more. How many apples does he have?", "answer": "3 + 2 = 5\n#### 5"},
        {"question": "A box holds 4 pens. How many pens are in 3 boxes?", "answer": "4 * 3 = 12\n#### 12"},
    ]
    write_jsonl(root / "gsm8k" / "test.jsonl", gsm)
    write_jsonl(root / "gsm8k" / "train.jsonl", gsm)
    return root


def make_corpus(out: Path) -> Path:
    """A prepared corpus (the data layer's BPE tokenizer + Megatron datasets) of two real domains:
    `code` (Python standard library modules, one document per module) and `legal` (the licence texts
    under /usr/share/common-licenses, one document per paragraph)."""
    from trainers.data.prepare import PrepareConfig, prepare
    from trainers.data.sources import Source

    modules = sorted(STDLIB.glob("*.py"))[:60]
    code = [p.read_text(encoding="utf-8", errors="replace") for p in modules]
    licences = sorted(p for p in GPL.parent.iterdir() if p.is_file())
    legal = [
        para
        for p in licences
        for para in p.read_text(encoding="utf-8", errors="replace").split("\n\n")
        if len(para) > 80
    ]
    sources = [
        Source(
            name="code",
            group="Code",
            documents=lambda: iter(code),
            fingerprint=lambda: ["code", [p.name for p in modules]],
        ),
        Source(name="legal", group="English", documents=lambda: iter(legal), fingerprint=lambda: ["legal", len(legal)]),
    ]
    prepare(
        sources,
        PrepareConfig(out=out, vocab_size=512, valid_fraction=0.05, workers=1, tokenizer_train_bytes=1 << 18),
        log=lambda _msg: None,
        progress=False,
    )
    return out


def tiny_checkpoint(corpus: Path, out: Path) -> Path:
    """A real training checkpoint, as a trial leaves it: `tiny_cpu` (seq 32) trained 2 steps with
    Megatron-Core on an even mixture of `corpus`'s domains."""
    from mixture_search.mixture import Mixture
    from trainers.budget import TrainBudget
    from trainers.data import Corpus
    from trainers.presets import tiny_cpu
    from trainers.train import train

    domains = list(Corpus.load(corpus).domains)
    budget = TrainBudget(steps=2, micro_batch=2, global_batch=2, eval_interval=2, eval_windows_per_domain=2)
    result = train(Mixture(dict.fromkeys(domains, 1.0)), corpus, tiny_cpu(seq_len=32), budget, "megatron", out)
    assert result.checkpoint is not None, result
    return Path(result.checkpoint)
