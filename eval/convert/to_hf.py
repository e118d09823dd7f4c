"""Write a `Source` as a Hugging Face model folder, verified against the source's own logits.

The folder holds `model.safetensors`, `config.json`, `generation_config.json`, the tokenizer files
(when a tokenizer is given) and `conversion.json`: the architecture, the source, the content
fingerprint of the weights and the verification figure (max |logit difference| on the probe batch,
float32). It is built under a temporary name and renamed into place only after the check passed, so
a failed or interrupted conversion never leaves a model that looks finished.

Verification reloads the written folder with `AutoModelForCausalLM.from_pretrained` (what LightEval
and any user will do), so it covers the weight mapping, the config and the serialisation together.
A difference above the tolerance raises `VerificationError`; it is never a warning.

A rerun with the same weights, target and tokenizer finds `conversion.json` and returns it (the
fingerprint is a hash of the tensors, so another checkpoint at the same path converts again).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from eval.convert.sources import PROBE_SEED, Source
from eval.convert.targets import target_for
from eval.convert.tensors import TensorTaker
from eval.errors import ConversionError, VerificationError
from mixture_search.files import atomic_save

REPORT_FILE = "conversion.json"
DEFAULT_TOLERANCE = 1e-4


@dataclass(frozen=True)
class ConversionReport:
    hf_dir: str
    architecture: str
    target: str
    source: str
    backend: str
    step: int | None
    fingerprint: str
    tokenizer: str | None
    params: int
    verified: bool
    max_abs_diff: float | None  # None when verification was turned off
    tolerance: float
    probe_shape: list[int]
    probe_seed: int
    seconds: float
    reused: bool = False  # True when an existing, matching conversion was returned

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data.pop("reused")
        return data

    @classmethod
    def load(cls, path: Path) -> ConversionReport | None:
        try:
            data = json.loads(Path(path).read_text(encoding="utf-8"))
            names = {f.name for f in dataclasses.fields(cls)}
            return cls(**{k: v for k, v in data.items() if k in names})
        except (OSError, ValueError, TypeError):
            return None


def _tokenizer(path: Path | None, vocab: int) -> Any:
    if path is None:
        return None
    from transformers import AutoTokenizer  # transformers: ~2 s to import; lazy in this module for the CLI

    if not (Path(path) / "tokenizer_config.json").exists() and not (Path(path) / "tokenizer.json").exists():
        raise ConversionError("not a Hugging Face tokenizer folder (no tokenizer.json)", where=str(path))
    tok = AutoTokenizer.from_pretrained(str(path))
    if len(tok) > vocab:
        raise ConversionError(
            f"the tokenizer has {len(tok)} tokens but the model's vocabulary is {vocab} (a tokenizer of another corpus?)",
            where=str(path),
        )
    return tok


def _build(source: Source, target_name: str | None, tokenizer: Any) -> tuple[Any, Any]:
    from transformers import AutoModelForCausalLM, GenerationConfig  # transformers: lazy, as above

    proxy = source.proxy
    target = target_for(proxy, target_name)
    config = target.config(proxy)
    if tokenizer is not None:
        for attr in ("bos_token_id", "eos_token_id", "pad_token_id"):
            setattr(config, attr, getattr(tokenizer, attr, None))
    weights = target.weights(proxy, TensorTaker(source.tensors, where=source.origin))
    torch.manual_seed(0)  # from_config initialises weights we overwrite; keep it reproducible anyway
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    expected = set(model.state_dict())
    tied = {k for k in expected if k == "lm_head.weight"} if proxy.tie_embeddings else set()
    missing = sorted(expected - set(weights) - tied)
    unexpected = sorted(set(weights) - expected)
    if missing or unexpected:  # a mapping bug, not a user error: say exactly what
        raise ConversionError(
            f"weight mapping for {target.architecture} is incomplete (missing {missing[:3]}, unexpected {unexpected[:3]})",
            where=source.origin,
        )
    model.load_state_dict(weights, strict=False)
    if proxy.tie_embeddings:
        model.tie_weights()
    model.eval()
    model.generation_config = GenerationConfig(
        bos_token_id=config.bos_token_id,
        eos_token_id=config.eos_token_id,
        pad_token_id=config.pad_token_id,
        max_length=proxy.seq_len,
        do_sample=False,
    )
    return target, model


def _verify(folder: Path, source: Source) -> float:
    """Max |logit difference| between the written model (reloaded) and the source on the probe."""
    from transformers import AutoModelForCausalLM  # transformers: lazy, as above

    loaded: Any = AutoModelForCausalLM.from_pretrained(str(folder), dtype=torch.float32, output_loading_info=True)
    model, info = loaded
    bad = {k: v for k, v in info.items() if k in ("missing_keys", "unexpected_keys", "mismatched_keys") and v}
    if bad:
        raise VerificationError(f"the written model does not reload cleanly: {bad}", where=str(folder))
    model.eval()
    with torch.no_grad():
        logits = model(source.probe).logits.float()
    if logits.shape != source.reference.shape:
        raise VerificationError(
            f"logits shape {list(logits.shape)} differs from the source's {list(source.reference.shape)}",
            where=str(folder),
        )
    diff = (logits - source.reference).abs().max().item()
    if diff != diff:  # NaN
        raise VerificationError("logits contain NaN", where=str(folder))
    return float(diff)


@contextlib.contextmanager
def _quiet_transformers() -> Iterator[None]:
    """transformers' per-file progress bars and load reports are noise for a folder this size."""
    from transformers.utils import logging as hf_logging  # transformers: lazy, as above

    enabled = hf_logging.is_progress_bar_enabled()
    verbosity = hf_logging.get_verbosity()
    hf_logging.disable_progress_bar()
    hf_logging.set_verbosity_error()
    try:
        yield
    finally:
        hf_logging.set_verbosity(verbosity)
        if enabled:
            hf_logging.enable_progress_bar()


def convert(
    source: Source,
    out_dir: Path | str,
    *,
    target: str | None = None,
    tokenizer: Path | str | None = None,
    verify: bool = True,
    tolerance: float = DEFAULT_TOLERANCE,
    force: bool = False,
) -> ConversionReport:
    """Write `source` to `out_dir` as a Hugging Face model; verify it unless `verify=False`."""
    with _quiet_transformers():
        return _convert(
            source, out_dir, target=target, tokenizer=tokenizer, verify=verify, tolerance=tolerance, force=force
        )


def _convert(
    source: Source,
    out_dir: Path | str,
    *,
    target: str | None = None,
    tokenizer: Path | str | None = None,
    verify: bool = True,
    tolerance: float = DEFAULT_TOLERANCE,
    force: bool = False,
) -> ConversionReport:
    t0 = time.perf_counter()
    out = Path(out_dir)
    tok_path = Path(tokenizer).resolve() if tokenizer is not None else None
    if not tolerance > 0:
        raise ConversionError(f"must be positive, got {tolerance!r}", where="tolerance")
    fingerprint = source.fingerprint
    previous = ConversionReport.load(out / REPORT_FILE)
    if (
        not force
        and previous is not None
        and previous.fingerprint == fingerprint
        and previous.tokenizer == (str(tok_path) if tok_path else None)
        and (target is None or previous.target == target)
        and (previous.verified or not verify)
        and (previous.max_abs_diff is None or previous.max_abs_diff <= tolerance)
    ):
        return dataclasses.replace(previous, reused=True)
    tok = _tokenizer(tok_path, source.proxy.vocab)
    chosen, model = _build(source, target, tok)
    written: list[ConversionReport] = []

    def write(tmp: Path) -> None:
        model.save_pretrained(str(tmp))
        if tok is not None:
            tok.save_pretrained(str(tmp))
        diff = _verify(tmp, source) if verify else None
        if diff is not None and diff > tolerance:
            raise VerificationError(
                f"converted {chosen.architecture} logits differ from the {source.backend} model's by {diff:.3g} "
                f"(tolerance {tolerance:g}); the model was not written",
                where=source.origin,
            )
        report = ConversionReport(
            hf_dir=str(out),
            architecture=chosen.architecture,
            target=chosen.name,
            source=source.origin,
            backend=source.backend,
            step=source.step,
            fingerprint=fingerprint,
            tokenizer=str(tok_path) if tok_path else None,
            params=sum(p.numel() for p in model.parameters()),
            verified=diff is not None,
            max_abs_diff=diff,
            tolerance=tolerance,
            probe_shape=list(source.probe.shape),
            probe_seed=PROBE_SEED,
            seconds=round(time.perf_counter() - t0, 3),
        )
        (tmp / REPORT_FILE).write_text(json.dumps(report.to_dict(), indent=1) + "\n", encoding="utf-8")
        written.append(report)

    # the folder appears whole, and replaces a previous conversion only once the new one is complete
    atomic_save(out, write)
    return written[0]
