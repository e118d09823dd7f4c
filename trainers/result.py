"""`TrainResult`: what one proxy training run produced, as plain JSON-able data.

It crosses Ray and Prefect boundaries and is written next to the checkpoint as `result.json`, so it
holds only numbers, strings, lists and dicts (`to_dict`/`from_dict` round-trip exactly).
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from mixture_search.files import atomic_write_json
from trainers.errors import CheckpointError

Status = Literal["completed", "interrupted", "diverged"]


@dataclass(frozen=True)
class EvalPoint:
    """Per-domain validation at one step: mean loss in nats per token, and bits per UTF-8 byte
    (the tokenizer-independent number: total nats / ln 2 / bytes of the predicted text)."""

    step: int
    tokens: int
    loss: dict[str, float]
    bpb: dict[str, float]

    @property
    def mean_loss(self) -> float:
        return sum(self.loss.values()) / len(self.loss)

    @property
    def mean_bpb(self) -> float:
        return sum(self.bpb.values()) / len(self.bpb)

    def to_dict(self) -> dict[str, Any]:
        return {"step": self.step, "tokens": self.tokens, "loss": dict(self.loss), "bpb": dict(self.bpb)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> EvalPoint:
        return cls(
            step=int(data["step"]),
            tokens=int(data["tokens"]),
            loss={k: float(v) for k, v in data["loss"].items()},
            bpb={k: float(v) for k, v in data["bpb"].items()},
        )


@dataclass(frozen=True)
class TrainResult:
    status: Status
    backend: str
    backend_reason: str  # why this backend ran (what `auto` decided, or "requested")
    backend_options: dict[str, Any]  # e.g. {"zero_stage": 0}
    device: str
    mixture: dict[str, float]  # raw weights in order, as `Mixture.to_dict()`
    proxy: dict[str, Any]
    budget: dict[str, Any]
    data_hash: str
    run_dir: str
    checkpoint: str | None  # the latest checkpoint folder
    steps: int  # optimizer steps done
    total_steps: int
    tokens: int  # training tokens seen (targets)
    tokens_per_domain: dict[str, int]
    loss_curve: list[float]  # mean training loss of each step (LM loss, without the MoE balancing loss)
    lr_curve: list[float]
    aux_loss_curve: list[float]  # MoE balancing loss added to the objective, per step (0 for dense)
    evals: list[EvalPoint]
    params: int
    active_params: int
    flops_per_token: int
    flops: float  # model FLOPs of the training steps done
    tokens_per_s: float  # training throughput (evaluation and checkpoint time excluded)
    flops_per_s: float
    wall_time_s: float  # the whole call, set-up and evaluation included
    world: dict[str, int] = field(default_factory=dict)  # world_size, dp, tp, ep
    error: str | None = None

    # -- convenience --------------------------------------------------------------------------------
    @property
    def final(self) -> EvalPoint | None:
        return self.evals[-1] if self.evals else None

    @property
    def val_loss(self) -> dict[str, float]:
        return dict(self.final.loss) if self.final else {}

    @property
    def val_bpb(self) -> dict[str, float]:
        return dict(self.final.bpb) if self.final else {}

    # -- serialisation ------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        data = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        data["evals"] = [e.to_dict() for e in self.evals]
        return _json_safe(data)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TrainResult:
        names = {f.name for f in dataclasses.fields(cls)}
        kwargs = {k: v for k, v in data.items() if k in names}
        kwargs["evals"] = [EvalPoint.from_dict(e) for e in data.get("evals", [])]
        kwargs["loss_curve"] = [_from_json_float(x) for x in data.get("loss_curve", [])]
        return cls(**kwargs)

    def save(self, path: Path) -> Path:
        """Write atomically (temp name, then rename): a crash never leaves half a result."""
        return atomic_write_json(path, self.to_dict())

    @classmethod
    def load(cls, path: Path) -> TrainResult:
        try:
            return cls.from_dict(json.loads(Path(path).read_text(encoding="utf-8")))
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise CheckpointError(
                f"unreadable training result: {' '.join(str(exc).split())}", where=str(path)
            ) from None


def _json_safe(value: Any) -> Any:
    """NaN/inf (a diverged loss) as strings, so the file stays strict JSON."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    return value


def _from_json_float(value: Any) -> float:
    return float(value)
