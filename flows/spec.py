"""`SweepSpec`: everything a sweep needs, validated before anything runs.

Given as a YAML file or inline (Prefect parameters). Relative paths are relative to the working
directory (the repository root for the deployments). Unknown keys and wrong types are rejected with one
line naming the field (`search.rounds: must be >= 1`), as are impossible combinations that only show
once the corpus is known (unknown domains, an empty search space), by `SweepSpec.check`.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from ruamel.yaml import YAML
from ruamel.yaml.error import MarkedYAMLError

from mixture_search.errors import MixSweepError
from mixture_search.units import parse_count


class SpecError(MixSweepError):
    """A sweep spec that cannot run."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SpaceSpec(_Strict):
    domains: list[str] | None = Field(None, description="Domains to mix (default: all of the corpus), in this order.")
    bounds: dict[str, tuple[float, float]] = Field(default_factory=dict, description="Domain -> (min, max) share.")
    pinned: dict[str, float] = Field(default_factory=dict, description="Domain -> fixed share.")
    target_tokens: int | str | None = Field(
        None, description="Token budget of the target run (caps by max_epochs), e.g. 100B."
    )
    max_epochs: float | None = Field(
        None, gt=0, description="No domain repeated more often than this in the target run."
    )
    prior: Literal["tokens", "uniform"] = "tokens"


class SearchSpec(_Strict):
    sampler: str = Field("dirichlet", description="Sampler of the first round (see `mixsweep suggest --help`).")
    options: dict[str, Any] = Field(default_factory=dict)
    adaptive: str | None = Field("adaptive", description="Sampler of rounds 2.. (None: keep `sampler`).")
    adaptive_options: dict[str, Any] = Field(default_factory=dict)
    rounds: int = Field(2, ge=1)
    per_round: int = Field(4, ge=1)
    surrogate: str = "auto"
    proposal_samples: int = Field(100_000, ge=1000)


class ProxySpec(_Strict):
    preset: str = "tiny_cpu"
    overrides: dict[str, Any] = Field(default_factory=dict)


class EvalSpec(_Strict):
    tasks: list[str] = Field(
        default_factory=list, description="LightEval tasks after training (empty: validation loss only)."
    )
    max_docs: int = Field(16, ge=1, description="Documents per domain and task.")


class ObjectiveSpec(_Strict):
    metric: str = Field(
        "val.bpb.mean", description="Metric to rank by, e.g. val.bpb.mean, val.loss.code, lighteval score."
    )
    weights: dict[str, float] | None = Field(None, description="A weighted sum of metrics instead of one metric.")
    maximize: bool = False


class ResourcesSpec(_Strict):
    cpus: float = Field(1.0, gt=0, description="CPUs per trial process (per Ray Train worker when workers > 1).")
    gpus: float = Field(0.0, ge=0, description="GPUs per trial process (per Ray Train worker when workers > 1).")
    workers: int = Field(
        1, ge=1, description="Processes per trial (>1: a Ray Train TorchTrainer; gloo on CPU, NCCL on GPUs)."
    )


class EarlyStopSpec(_Strict):
    enabled: bool = False
    metric: str = "val.loss.mean"
    grace_period: int = Field(1, ge=1, description="Evaluations before a trial may be stopped.")
    reduction_factor: float = Field(2.0, gt=1)


class MlflowSpec(_Strict):
    experiment: str = "mixsweep"
    tracking_uri: str | None = Field(
        None, description="Default: $MLFLOW_TRACKING_URI, else a SQLite file in the output folder."
    )


class ExportSpec(_Strict):
    openseek_template: Path | None = Field(
        None, description="OpenSeek task (or experiment) YAML the recommendation is written into."
    )
    catalog: Path | None = Field(
        None, description="Token table/catalog that maps the corpus domains to the template's files."
    )


class SweepSpec(_Strict):
    name: str = Field(..., min_length=1, pattern=r"^[A-Za-z0-9_.-]+$")
    corpus: Path
    space: SpaceSpec = Field(default_factory=SpaceSpec)
    search: SearchSpec = Field(default_factory=SearchSpec)
    proxy: ProxySpec = Field(default_factory=ProxySpec)
    budget: dict[str, Any] = Field(
        default_factory=lambda: {"steps": 20, "micro_batch": 4, "global_batch": 4, "eval_interval": 10}
    )
    backend: Literal["auto", "megatron", "deepspeed"] = "auto"
    eval: EvalSpec = Field(default_factory=EvalSpec)
    objective: ObjectiveSpec = Field(default_factory=ObjectiveSpec)
    resources: ResourcesSpec = Field(default_factory=ResourcesSpec)
    max_concurrent: int = Field(1, ge=1)
    max_failures: int = Field(2, ge=0, description="Ray retries of a trial whose worker died.")
    early_stopping: EarlyStopSpec = Field(default_factory=EarlyStopSpec)
    ray_address: str | None = Field(
        None, description="An existing Ray cluster (ray://host:10001 or host:6379); default: local."
    )
    mlflow: MlflowSpec = Field(default_factory=MlflowSpec)
    export: ExportSpec = Field(default_factory=ExportSpec)
    output_dir: Path | None = Field(None, description="Checkpoints, Ray results, reports (default runs/sweeps/<name>).")
    seed: int = Field(0, ge=0)

    @field_validator("budget")
    @classmethod
    def _budget_counts(cls, v: dict[str, Any]) -> dict[str, Any]:
        out = dict(v)
        if isinstance(out.get("tokens"), str):
            out["tokens"] = parse_count(out["tokens"], field="budget.tokens")
        return out

    @model_validator(mode="after")
    def _consistent(self) -> SweepSpec:
        if self.early_stopping.enabled and not self.budget.get("eval_interval"):
            raise ValueError("early_stopping needs budget.eval_interval > 0 (ASHA decides at evaluations)")
        return self

    # -- derived ------------------------------------------------------------------------------------
    @property
    def out_dir(self) -> Path:
        return (self.output_dir or Path("runs/sweeps") / self.name).resolve()

    def sweep_key(self, data_hash: str) -> str:
        """Identifies a sweep across reruns: same spec (minus where it runs) and data -> same key."""
        payload = self.model_dump(
            mode="json", exclude={"ray_address", "mlflow", "output_dir", "max_concurrent", "max_failures"}
        )
        return hashlib.sha256(json.dumps([payload, data_hash], sort_keys=True).encode()).hexdigest()[:16]

    def to_yaml(self) -> str:
        import io

        buf = io.StringIO()
        y = YAML(typ="safe", pure=True)
        y.default_flow_style = False
        y.dump(self.model_dump(mode="json", exclude_defaults=False), buf)
        return buf.getvalue()


def load_spec(source: SweepSpec | dict[str, Any] | str | Path, *, where: str | None = None) -> SweepSpec:
    """A validated spec from itself, a mapping (Prefect parameters), a YAML file path, or YAML text."""
    if isinstance(source, SweepSpec):
        return source
    if isinstance(source, (str, Path)) and not (isinstance(source, str) and "\n" in source):
        path = Path(source)
        if not path.exists():
            raise SpecError("spec file not found", where=str(path))
        where = where or str(path)
        try:
            data = YAML(typ="safe").load(path.read_text(encoding="utf-8"))
        except MarkedYAMLError as exc:
            line = f":{exc.problem_mark.line + 1}" if exc.problem_mark else ""
            raise SpecError(f"invalid YAML: {exc.problem}", where=f"{path}{line}") from None
    elif isinstance(source, str):
        try:
            data = YAML(typ="safe").load(source)
        except MarkedYAMLError as exc:
            raise SpecError(f"invalid YAML: {exc.problem}", where=where or "spec") from None
    else:
        data = source
    if not isinstance(data, dict):
        raise SpecError("a sweep spec must be a mapping", where=where or "spec")
    try:
        spec = SweepSpec.model_validate(data)
    except ValidationError as exc:
        err = exc.errors()[0]
        loc = ".".join(str(p) for p in err["loc"]) or "spec"
        msg = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            msg = "unknown key"
        raise SpecError(
            f"{loc}: {msg}" + (f" ({len(exc.errors()) - 1} more)" if len(exc.errors()) > 1 else ""),
            where=where or "spec",
        ) from None
    return spec
