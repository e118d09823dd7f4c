"""Tokenizers: train a byte-level BPE locally (Hugging Face `tokenizers`), save it in Hugging Face format, and
know how many UTF-8 bytes every token stands for (bits per byte need exact byte counts).

A saved tokenizer folder holds `tokenizer.json` plus `tokenizer_config.json`/`special_tokens_map.json` written by
`transformers`, so `AutoTokenizer.from_pretrained(folder)` and LightEval load it as is.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Iterable
from functools import lru_cache
from pathlib import Path

import numpy as np
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

from mixture_search.files import atomic_save
from mixture_search.keys import content_key
from trainers.data.errors import DataError

EOD_TOKEN = "<|endoftext|>"
PAD_TOKEN = "<|pad|>"


def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2's reversible byte -> printable character map, used by byte-level BPE."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, (chr(c) for c in cs)))


BYTE_OF_CHAR = {c: b for b, c in _bytes_to_unicode().items()}


def train_bpe(texts: Iterable[str], vocab_size: int, out_dir: Path, *, min_frequency: int = 2) -> Path:
    """Train a byte-level BPE with `<|endoftext|>` (id 0) and `<|pad|>` (id 1); save in HF format to out_dir.

    Written to a temporary folder first and renamed, so a failed run leaves nothing half-written.
    """

    if vocab_size < 300:
        raise DataError(f"vocab size {vocab_size} is too small for a byte-level BPE (>= 300)", where="vocab_size")
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=min_frequency,
        special_tokens=[EOD_TOKEN, PAD_TOKEN],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer=trainer)
    return save_hf(tok, out_dir)


def save_hf(tok: object, out_dir: Path) -> Path:
    """Save a `tokenizers.Tokenizer` as a Hugging Face tokenizer folder (atomically)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        # lazy: transformers takes seconds to import and only saving a trained tokenizer needs it
        from transformers import PreTrainedTokenizerFast

    hf = PreTrainedTokenizerFast(
        tokenizer_object=tok, eos_token=EOD_TOKEN, bos_token=EOD_TOKEN, pad_token=PAD_TOKEN, unk_token=None
    )
    return atomic_save(Path(out_dir), lambda tmp: hf.save_pretrained(str(tmp)))


def tokenizer_file(folder: Path) -> Path:
    path = Path(folder) / "tokenizer.json"
    if not path.is_file():
        raise DataError("not a Hugging Face fast tokenizer folder (no tokenizer.json)", where=str(folder))
    return path


@lru_cache(maxsize=8)
def _load(path: str, mtime: float) -> object:

    try:
        return Tokenizer.from_file(path)
    except Exception as exc:
        raise DataError(f"cannot load tokenizer: {' '.join(str(exc).split())}", where=path) from None


def load(folder: Path) -> object:
    """The `tokenizers.Tokenizer` of a HF tokenizer folder (cached per file and modification time)."""
    path = tokenizer_file(folder)
    return _load(str(path), path.stat().st_mtime)


def vocab_size(folder: Path) -> int:
    return int(load(folder).get_vocab_size(with_added_tokens=True))  # type: ignore[attr-defined]


def eod_id(folder: Path) -> int:
    """The end-of-document id: the folder's eos token, else `<|endoftext|>`, `</s>` or `<eos>`."""
    tok = load(folder)
    candidates = []
    cfg = Path(folder) / "tokenizer_config.json"
    if cfg.is_file():
        try:
            eos = json.loads(cfg.read_text(encoding="utf-8")).get("eos_token")
        except json.JSONDecodeError:
            eos = None
        if isinstance(eos, dict):
            eos = eos.get("content")
        if isinstance(eos, str):
            candidates.append(eos)
    candidates += [EOD_TOKEN, "</s>", "<eos>", "<|end_of_text|>"]
    for c in candidates:
        i = tok.token_to_id(c)  # type: ignore[attr-defined]
        if i is not None:
            return int(i)
    raise DataError("tokenizer has no end-of-document token (eos_token, <|endoftext|> or </s>)", where=str(folder))


def token_byte_lengths(folder: Path) -> np.ndarray:
    """UTF-8 bytes each token id stands for (special tokens: 0), as int64 of length vocab_size.

    Byte-level vocabularies map exactly through GPT-2's byte alphabet; for others each token is decoded alone,
    which is exact for SentencePiece byte-fallback and close otherwise.
    """
    tok = load(folder)
    n = vocab_size(folder)
    out = np.zeros(n, dtype=np.int64)
    special = {
        int(i)
        for i, t in tok.get_added_tokens_decoder().items()  # type: ignore[attr-defined]
        if getattr(t, "special", False)
    }
    byte_level = all(ch in BYTE_OF_CHAR for ch in "".join(list(tok.get_vocab(with_added_tokens=False))[:64]))  # type: ignore[attr-defined]
    for i in range(n):
        if i in special:
            continue
        piece = tok.id_to_token(i)  # type: ignore[attr-defined]
        if piece is None:
            continue
        if byte_level and all(ch in BYTE_OF_CHAR for ch in piece):
            out[i] = len(piece)
        else:
            out[i] = len(tok.decode([i], skip_special_tokens=False).encode("utf-8"))  # type: ignore[attr-defined]
    return out


def fingerprint(folder: Path) -> str:
    return content_key(tokenizer_file(folder).read_bytes())
