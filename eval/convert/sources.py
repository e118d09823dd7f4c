"""What a conversion starts from: a trained proxy's weights (Megatron names), its shape, and the
logits its own model computes on a fixed probe batch.

Checkpoints are read with the trainers' own model code, so the reference logits are those of the
model that was trained: Megatron-Core `dist_checkpointing` checkpoints are loaded into the
`GPTModel` the Megatron backend builds (`trainers.backends.megatron`), DeepSpeed checkpoints into
`trainers.models.gpt.GPT` (the module the DeepSpeed backend trains). Every file is read with
`torch.load(weights_only=True)` (Megatron's loader included: that is torch's default, and we refuse
to run if `TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD` turns it off); nothing from a checkpoint is unpickled
as code. DeepSpeed's ZeRO-3 optimizer files name two DeepSpeed classes (its loss scaler and stage
enum); they are read into inert stand-ins, so DeepSpeed is not even imported.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import os
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from eval.convert.tensors import canonical_names
from eval.errors import ConversionError
from trainers.config import ProxyConfig
from trainers.models.gpt import GPT

PROBE_SEED = 1234
PROBE_BATCH = 2
PROBE_MAX_LEN = 128


@dataclass(frozen=True)
class Source:
    """A trained model ready to convert: Megatron-named tensors, the shape they belong to, and the
    reference logits of its own model on `probe` (ids [b, s])."""

    proxy: ProxyConfig
    backend: str  # "megatron" | "deepspeed" | "module"
    tensors: dict[str, Tensor]
    probe: Tensor
    reference: Tensor  # float32 logits [b, s, vocab]
    origin: str  # where it came from (a checkpoint path, or a description)
    step: int | None = None

    @property
    def fingerprint(self) -> str:
        """Content hash of the weights (names, shapes, bytes) + shape: a conversion cache key."""
        h = hashlib.sha256(self.proxy.key.encode())
        for name in sorted(self.tensors):
            t = self.tensors[name].detach().to(torch.float32).contiguous()
            h.update(f"{name}:{list(t.shape)}".encode())
            h.update(t.numpy().tobytes())
        return h.hexdigest()[:20]


def probe_batch(proxy: ProxyConfig, *, seed: int = PROBE_SEED) -> Tensor:
    """The fixed batch both models run: uniform token ids from a seeded generator."""
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, proxy.vocab, (PROBE_BATCH, min(proxy.seq_len, PROBE_MAX_LEN)), generator=g)


# -- in-memory models -------------------------------------------------------------------------------
def _plain_logits(module: torch.nn.Module) -> Callable[[Tensor], Tensor]:
    def run(ids: Tensor) -> Tensor:
        logits, _ = module(ids)
        return logits

    return run


def _megatron_logits(module: torch.nn.Module) -> Callable[[Tensor], Tensor]:
    device = next(module.parameters()).device

    def run(ids: Tensor) -> Tensor:
        ids = ids.to(device)
        positions = torch.arange(ids.shape[1], device=device).unsqueeze(0).expand(ids.shape[0], -1)
        mask = torch.triu(torch.ones(1, 1, ids.shape[1], ids.shape[1], dtype=torch.bool, device=device), diagonal=1)
        return module(ids, positions, mask)

    return run


def from_module(module: torch.nn.Module, proxy: ProxyConfig, *, origin: str = "in-memory model") -> Source:
    """A live model: Megatron-Core's `GPTModel` or the trainers' plain `GPT`."""
    if isinstance(module, GPT):
        backend, forward = "module", _plain_logits(module)
    elif type(module).__name__ == "GPTModel":
        backend, forward = "megatron", _megatron_logits(module)
    else:
        raise ConversionError(f"cannot convert a {type(module).__name__}: expected GPTModel or GPT", where=origin)
    was_training = module.training
    module.eval()
    probe = probe_batch(proxy)
    with torch.no_grad():
        reference = forward(probe).float().cpu()
    module.train(was_training)
    tensors = {k: v.detach().cpu().clone() for k, v in module.state_dict().items() if isinstance(v, Tensor)}
    return Source(
        proxy=proxy, backend=backend, tensors=canonical_names(tensors), probe=probe, reference=reference, origin=origin
    )


# -- checkpoints on disk ----------------------------------------------------------------------------
def _require_weights_only() -> None:
    if os.environ.get("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "").lower() in ("1", "true", "yes"):
        raise ConversionError(
            "TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD is set; checkpoints are only read with weights_only=True, unset it",
            where="environment",
        )


@dataclass(frozen=True)
class CheckpointRef:
    """A checkpoint located on disk: the run it belongs to and the engine's folder in it."""

    run_dir: Path
    step_dir: Path
    model_dir: Path
    result: dict[str, Any]

    @property
    def backend(self) -> str:
        return str(self.result.get("backend", ""))

    @property
    def step(self) -> int | None:
        m = re.fullmatch(r"step_(\d+)", self.step_dir.name)
        return int(m.group(1)) if m else None

    def proxy(self) -> ProxyConfig:
        data = self.result.get("proxy")
        if not isinstance(data, dict):
            raise ConversionError("the run's result.json has no proxy config", where=str(self.run_dir / "result.json"))
        return ProxyConfig.from_dict(data, where=f"{self.run_dir / 'result.json'}:proxy")


def locate(path: Path | str) -> CheckpointRef:
    """Accept a run folder (its latest checkpoint), a checkpoint folder (`step_N`), the engine's
    `model` folder in it, or the run's `result.json`; anything else is a one-line error."""
    path = Path(path)
    if not path.exists():
        raise ConversionError("no such file or folder", where=str(path))
    if path.is_file() and path.name == "result.json":
        path = path.parent
    if (path / "trainer_state.json").exists() and (path / "model").is_dir():
        step_dir = path
    elif (path.parent / "trainer_state.json").exists() and path.name == "model":
        step_dir = path.parent
    elif (path / "result.json").exists() or (path / "checkpoints").is_dir():
        pointer = path / "checkpoints" / "latest"
        if not pointer.exists():
            raise ConversionError("the run has no checkpoint (checkpoints/latest is missing)", where=str(path))
        step_dir = path / "checkpoints" / pointer.read_text(encoding="utf-8").strip()
        if not (step_dir / "trainer_state.json").exists():
            raise ConversionError("the latest checkpoint is incomplete (no trainer_state.json)", where=str(step_dir))
    else:
        raise ConversionError(
            "not a MixSweep checkpoint: expected a run folder (result.json + checkpoints/), "
            "a checkpoint folder (trainer_state.json + model/) or its model/ folder",
            where=str(path),
        )
    run_dir = step_dir.parent.parent
    result_file = run_dir / "result.json"
    if not result_file.exists():
        raise ConversionError(
            "the run has no result.json, so the model shape is unknown (convert after `mixsweep train` returns)",
            where=str(run_dir),
        )
    try:
        result = json.loads(result_file.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ConversionError(
            f"unreadable result.json ({' '.join(str(exc).split())})", where=str(result_file)
        ) from None
    if not isinstance(result, dict):
        raise ConversionError("result.json is not a JSON object", where=str(result_file))
    return CheckpointRef(run_dir=run_dir, step_dir=step_dir, model_dir=step_dir / "model", result=result)


def _mla_core_attention() -> type:
    """Core attention for MLA without TransformerEngine: causal SDPA with Megatron's softmax scale,
    output sized by the *value* head dim (MLA's differs from the query/key one; Megatron's local
    `DotProductAttention` cannot take that, which is why MLA is otherwise TE-only)."""
    from megatron.core.transformer.module import MegatronModule  # megatron: seconds to import (here and below)

    class MLACoreAttention(MegatronModule):
        def __init__(self, config: Any, layer_number: int, attn_mask_type: Any, attention_type: str, softmax_scale: float | None = None, **_: Any) -> None:  # fmt: skip
            super().__init__(config=config)
            self.scale = softmax_scale

        def forward(self, query: Tensor, key: Tensor, value: Tensor, *_: Any, **__: Any) -> Tensor:
            q, k, v = (t.permute(1, 2, 0, 3) for t in (query, key, value))  # [s, b, n, d] -> [b, n, s, d]
            out = torch.nn.functional.scaled_dot_product_attention(q, k, v, is_causal=True, scale=self.scale)
            return out.permute(2, 0, 1, 3).reshape(query.shape[0], query.shape[1], -1)

    return MLACoreAttention


def _megatron_model(proxy: ProxyConfig) -> Any:
    """The `GPTModel` the Megatron backend trains, built with the backend's own config and layer spec
    in float32 (the precision the check runs in). MLA (trained with TransformerEngine) is built with
    the local spec and `_mla_core_attention`, so an MLA checkpoint also converts where TE is absent."""
    from megatron.core.models.gpt import GPTModel  # megatron: lazy, as above

    from trainers.backends import megatron as backend  # imports megatron: lazy, as above

    config = backend.transformer_config(proxy, cuda=False, tp=1, ep=1)
    spec = backend.layer_spec(config, use_te=False)
    if proxy.mla is not None:
        import megatron.core.transformer.multi_latent_attention as mla_module  # megatron: lazy, as above

        if not isinstance(getattr(mla_module, "TELinear", None), type):
            # 0.16.1 sets HAVE_TE when TE's wrapper module imports without TE, then isinstance(x, TELinear) fails
            mla_module.HAVE_TE = False
        for layer in spec.layer_specs:
            layer.submodules.self_attention.submodules.core_attention = _mla_core_attention()
    model = GPTModel(
        config=config,
        transformer_layer_spec=spec,
        vocab_size=proxy.vocab,
        max_sequence_length=proxy.seq_len,
        position_embedding_type="rope",
        rotary_base=int(proxy.rope_base),
        share_embeddings_and_output_weights=proxy.tie_embeddings,
    )
    if torch.cuda.is_available():  # Megatron moves RoPE tables to the current CUDA device: follow them
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False
        model = model.cuda()
    return model


@contextlib.contextmanager
def _megatron_runtime() -> Iterator[None]:
    """A process group and Megatron's parallel state (tp = ep = 1) for as long as the block runs;
    on a CPU-only machine with the trainers' CUDA shim applied."""
    from megatron.core import parallel_state  # megatron: lazy, as above

    from trainers.distributed import process_group

    with process_group():
        created = not parallel_state.model_parallel_is_initialized()
        if created:
            parallel_state.initialize_model_parallel()
        if not torch.cuda.is_available():
            from trainers.backends import megatron_cpu_shim  # imports megatron: lazy, as above

            megatron_cpu_shim.apply()
            megatron_cpu_shim.seed_streams(0, 0, 0, 0)
        try:
            yield
        finally:
            if created:
                parallel_state.destroy_model_parallel()


def _root_cause(exc: BaseException) -> BaseException:
    """The first rank's exception inside torch.distributed.checkpoint's wrapper (its str is a traceback)."""
    failures = getattr(exc, "failures", None)
    if isinstance(failures, dict) and failures:
        first = next(iter(failures.values()))
        if isinstance(first, tuple) and first and isinstance(first[0], BaseException):
            return first[0]
    return exc


def read_megatron(ref: CheckpointRef) -> Source:
    # megatron and torch's distributed checkpointing: seconds to import, only for Megatron checkpoints
    from megatron.core import dist_checkpointing
    from torch.distributed.checkpoint.api import CheckpointException

    proxy = ref.proxy()
    if not (ref.model_dir / "metadata.json").exists():
        raise ConversionError(
            f"not a Megatron dist_checkpointing folder (no metadata.json); the run says backend {ref.backend or '?'}",
            where=str(ref.model_dir),
        )
    _require_weights_only()
    with _megatron_runtime():
        model = _megatron_model(proxy)
        try:
            loaded = dist_checkpointing.load({"model": model.sharded_state_dict()}, str(ref.model_dir))
            model.load_state_dict(loaded["model"])
        except (Exception, CheckpointException) as exc:  # DCP's CheckpointException is a BaseException
            cause = _root_cause(exc)
            raise ConversionError(
                f"the checkpoint does not load into the run's model ({type(cause).__name__}: {' '.join(str(cause).split())[:300]})",
                where=str(ref.model_dir),
            ) from None
        source = from_module(model, proxy, origin=str(ref.step_dir))
    return dataclasses.replace(source, step=ref.step)


# DeepSpeed's ZeRO-3 optimizer files pickle these two classes; inert stand-ins read them.
class _InertObject:
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        pass

    def __setstate__(self, state: Any) -> None:
        self.state = state


def _inert_enum(value: Any) -> Any:
    return value


_DEEPSPEED_STANDINS: list[Any] = [
    (_InertObject, "deepspeed.runtime.fp16.loss_scaler.LossScaler"),
    (_InertObject, "deepspeed.runtime.fp16.loss_scaler.DynamicLossScaler"),
    (_inert_enum, "deepspeed.runtime.zero.config.ZeroStageEnum"),
]


def _load(path: Path) -> Any:
    try:
        with torch.serialization.safe_globals(_DEEPSPEED_STANDINS):
            return torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception as exc:
        raise ConversionError(
            f"unreadable with weights_only=True ({type(exc).__name__}: {' '.join(str(exc).split())[:200]})",
            where=str(path),
        ) from None


def _deepspeed_tag_dir(model_dir: Path) -> Path:
    candidates = [p for p in sorted(model_dir.iterdir()) if p.is_dir() and any(p.glob("*model_states.pt"))]
    latest = model_dir / "latest"
    if latest.exists():
        tagged = model_dir / latest.read_text(encoding="utf-8").strip()
        if tagged.is_dir():
            return tagged
    if len(candidates) != 1:
        found = ", ".join(p.name for p in candidates) or "none"
        raise ConversionError(
            f"expected one DeepSpeed checkpoint tag folder with *model_states.pt files, found {found}",
            where=str(model_dir),
        )
    return candidates[0]


def deepspeed_state_dict(model_dir: Path) -> dict[str, Tensor]:
    """The full module state dict of a DeepSpeed checkpoint, any ZeRO stage, one model-parallel rank.

    Stages 0-2 keep the whole module in `mp_rank_00_model_states.pt`. Stage 3 keeps only shapes
    there; the fp32 weights are split over the data-parallel ranks' optimizer files as flat groups,
    each parameter padded to a multiple of the world size (`zero_to_fp32`'s layout).
    """
    _require_weights_only()
    tag = _deepspeed_tag_dir(model_dir)
    model_files = sorted(tag.glob("*model_states.pt"))
    first = _load(model_files[0])
    if not isinstance(first, dict) or "module" not in first:
        raise ConversionError("not a DeepSpeed model-states file (no 'module')", where=str(model_files[0]))
    if int(first.get("mp_world_size", 1)) != 1:
        raise ConversionError("model-parallel DeepSpeed checkpoints are not supported", where=str(model_files[0]))
    stage = int(((first.get("ds_config") or {}).get("zero_optimization") or {}).get("stage", 0))
    module: dict[str, Tensor] = dict(first["module"])
    if stage < 3:
        return module
    if first.get("frozen_param_shapes"):
        raise ConversionError("ZeRO-3 checkpoints with frozen parameters are not supported", where=str(model_files[0]))
    world = int(first.get("dp_world_size", 1))
    optim_files = [tag / f"zero_pp_rank_{r}_mp_rank_00_optim_states.pt" for r in range(world)]
    missing = [p for p in optim_files if not p.exists()]
    if missing:
        raise ConversionError(
            f"ZeRO-3 checkpoint lacks {len(missing)} of {world} optimizer shards", where=str(missing[0])
        )
    flat: list[list[Tensor]] = []
    for path in optim_files:
        osd = _load(path).get("optimizer_state_dict", {})
        groups = osd.get("fp32_flat_groups")
        if not isinstance(groups, list):
            raise ConversionError("no fp32_flat_groups in a ZeRO-3 optimizer shard", where=str(path))
        flat.append([g.float() for g in groups])
    per_rank = [torch.cat(groups) for groups in flat]
    shapes: dict[str, torch.Size] = {}
    for group in first["param_shapes"]:
        shapes.update(group)
    buffers = set(first.get("buffer_names") or ())
    out = {k: v for k, v in module.items() if k in buffers}
    offset = 0
    for name, shape in shapes.items():
        numel = int(torch.Size(shape).numel())
        part = -(-numel // world)  # ceil
        if offset + part > per_rank[0].numel():
            raise ConversionError("ZeRO-3 flat groups are shorter than the parameter shapes", where=str(tag))
        pieces = [r[offset : offset + part] for r in per_rank]
        full = pieces[0] if world == 1 else torch.cat(pieces)
        out[name] = full[:numel].view(tuple(shape))
        offset += part
    return out


def read_deepspeed(ref: CheckpointRef) -> Source:
    proxy = ref.proxy()
    if (ref.model_dir / "metadata.json").exists():
        raise ConversionError(
            f"this is a Megatron dist_checkpointing folder but the run says backend {ref.backend}",
            where=str(ref.model_dir),
        )
    state = deepspeed_state_dict(ref.model_dir)
    model = GPT(proxy)
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        first = " ".join(str(exc).split())[:300]
        raise ConversionError(
            f"the checkpoint does not fit the run's model ({first})", where=str(ref.model_dir)
        ) from None
    source = from_module(model, proxy, origin=str(ref.step_dir))
    return dataclasses.replace(source, backend="deepspeed", step=ref.step)


READERS: dict[str, Callable[[CheckpointRef], Source]] = {"megatron": read_megatron, "deepspeed": read_deepspeed}


def open_checkpoint(path: Path | str) -> Source:
    """Read a trained proxy from disk with the reader of the backend that wrote it."""
    ref = locate(path)
    try:
        reader = READERS[ref.backend]
    except KeyError:
        raise ConversionError(
            f"unknown backend {ref.backend!r} in result.json (known: {', '.join(READERS)})", where=str(ref.run_dir)
        ) from None
    return reader(ref)
