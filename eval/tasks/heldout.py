"""Where held-out passages come from, and fitting them to a model's context.

- `from_corpus(corpus)`: a prepared corpus (`trainers.data.Corpus`): its held-out windows per domain
  (`trainers.data.ValidationSet`, the windows the trainer's validation loss uses), decoded with the
  corpus tokenizer; groups as the corpus labels its domains.
- `from_folder(path)`: one file per domain, `<domain>.txt` (passages separated by blank lines) or
  `<domain>.jsonl` (`{"text": ...}` per line), and optionally `groups.json` (`{domain: group}`).

`fit_to_context` then cuts every passage to the tokens a model can see at once (LightEval
left-truncates a too-long prompt, which would silently drop the context), at a character boundary
given by the tokenizer's offsets.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from eval.errors import EvalError
from eval.tasks.local import HeldOut

REPLACEMENT = "\ufffd"  # what a byte-level tokenizer decodes half a UTF-8 character to


def from_folder(path: Path | str) -> HeldOut:
    root = Path(path)
    if not root.is_dir():
        raise EvalError("no such folder of held-out text", where=str(root))
    passages: dict[str, list[str]] = {}
    for file in sorted(root.iterdir()):
        if file.suffix == ".txt":
            text = file.read_text(encoding="utf-8")
            passages[file.stem] = [p.strip() for p in text.split("\n\n") if p.strip()]
        elif file.suffix == ".jsonl":
            rows = []
            for n, line in enumerate(file.read_text(encoding="utf-8").splitlines(), 1):
                if not line.strip():
                    continue
                try:
                    rows.append(str(json.loads(line)["text"]))
                except (ValueError, KeyError, TypeError):
                    raise EvalError(
                        'each line must be a JSON object with a "text" field', where=f"{file}:{n}"
                    ) from None
            passages[file.stem] = rows
    if not passages:
        raise EvalError("no <domain>.txt or <domain>.jsonl files", where=str(root))
    groups: dict[str, str] = {}
    groups_file = root / "groups.json"
    if groups_file.exists():
        try:
            loaded = json.loads(groups_file.read_text(encoding="utf-8"))
        except ValueError as exc:
            raise EvalError(f"invalid JSON ({exc})", where=str(groups_file)) from None
        if not isinstance(loaded, dict):
            raise EvalError("must map domain names to group names", where=str(groups_file))
        groups = {str(k): str(v) for k, v in loaded.items()}
    return HeldOut(passages=passages, groups=groups, source=str(root))


def _strip_partial(text: str) -> str:
    """Drop the replacement characters a window cut inside a UTF-8 character decodes to, at its ends."""
    return text.strip(REPLACEMENT).strip()


def from_corpus(corpus: Any, *, seq_len: int, max_passages: int = 64) -> HeldOut:
    """Held-out windows of a prepared corpus, decoded to text with the corpus tokenizer."""
    from transformers import AutoTokenizer  # transformers: ~2 s to import, only when a corpus is decoded

    from trainers.data import ValidationSet

    tokenizer = AutoTokenizer.from_pretrained(str(corpus.tokenizer_dir))
    validation = ValidationSet(corpus, seq_len=seq_len, max_windows_per_domain=max_passages)
    passages: dict[str, list[str]] = {}
    for domain, windows in validation.windows.items():
        texts = [_strip_partial(str(tokenizer.decode(list(map(int, w)), skip_special_tokens=True))) for w in windows]
        passages[str(domain)] = [t for t in texts if t]
    groups = {name: str(corpus.domain(name).group) for name in passages}
    return HeldOut(passages=passages, groups=groups, source=str(corpus.root))


def fit_to_context(heldout: HeldOut, tokenizer: Any, max_tokens: int) -> HeldOut:
    """Every passage cut to at most `max_tokens` tokens of `tokenizer`, at a character boundary."""
    if max_tokens < 4:
        raise EvalError(
            f"the model's context of {max_tokens} tokens is too short for held-out passages", where="max_length"
        )
    fitted: dict[str, list[str]] = {}
    for domain, texts in heldout.passages.items():
        out = []
        for text in texts:
            enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
            offsets = enc["offset_mapping"]
            if len(offsets) > max_tokens:
                text = text[: offsets[max_tokens - 1][1]]
            text = _strip_partial(text)
            if text:
                out.append(text)
        fitted[domain] = out
    return HeldOut(passages=fitted, groups=dict(heldout.groups), source=heldout.source)
