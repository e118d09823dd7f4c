"""From LightEval's nested results to flat metrics, group aggregates and one objective.

Flat metrics are `<task>/<metric>` (`bpb:code/bpb`, `hellaswag/acc_norm`) with `<...>_stderr` beside
each. Aggregates are unweighted means over member metrics, as OpenSeek reports them (each benchmark
counts once): for OpenSeek's suite `openseek/English`, `openseek/English w/o Math`,
`openseek/Chinese`, `openseek/Average`, `openseek/Average w/o Math` and one per table category; for
the local tasks `bpb/mean`, `cloze/mean` and one per domain group (`bpb/group:Code`). The stderr of
a mean assumes independent members: sqrt(sum se^2) / n.

The objective is a weighted sum of metrics or aggregates, higher is better: by default
`-bpb/mean` when bits per byte ran, else `openseek/Average`, else `cloze/mean`. A spec file (YAML or
JSON) can define more aggregates and the objective:

```yaml
aggregates:
  reasoning: {members: [hellaswag/acc_norm, piqa/acc_norm, arc_challenge/acc_norm]}
objective: {bpb/mean: -1.0, reasoning: 0.5}
```
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML

from eval.errors import EvalError
from eval.tasks.openseek import BENCHMARKS


@dataclass(frozen=True)
class Aggregate:
    name: str
    members: tuple[str, ...]  # flat metric names


def flatten(results: Mapping[str, Any]) -> dict[str, float]:
    """LightEval's `results` section ({"bpb:code:0": {"bpb": x, "bpb_stderr": s}, "all": ...}) as
    `{"bpb:code/bpb": x, "bpb:code/bpb_stderr": s}`; the few-shot suffix is dropped, "all" and
    LightEval's `<family>:_average` entries skipped."""
    flat: dict[str, float] = {}
    for key, metrics in results.items():
        if key == "all" or not isinstance(metrics, Mapping):
            continue
        task = key.rsplit(":", 1)[0] if key.rsplit(":", 1)[-1].isdigit() else key
        if task.endswith(":_average"):  # LightEval's own mean over a task family; ours are explicit
            continue
        for metric, value in metrics.items():
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                flat[f"{task}/{metric}"] = float(value)
    return flat


def local_aggregates(tasks: Iterable[Any]) -> list[Aggregate]:
    """`bpb/mean`, `cloze/mean` and per-group means over the local tasks that ran."""
    by_kind: dict[str, list[Any]] = {}
    for t in tasks:
        by_kind.setdefault(t.kind, []).append(t)
    out: list[Aggregate] = []
    for kind, metric in (("bpb", "bpb"), ("cloze", "acc")):
        members = by_kind.get(kind, [])
        if not members:
            continue
        out.append(Aggregate(f"{kind}/mean", tuple(f"{t.name}/{metric}" for t in members)))
        groups: dict[str, list[str]] = {}
        for t in members:
            groups.setdefault(t.group, []).append(f"{t.name}/{metric}")
        if len(groups) > 1:
            out.extend(Aggregate(f"{kind}/group:{g}", tuple(m)) for g, m in groups.items())
    return out


def openseek_aggregates(names: Iterable[str]) -> list[Aggregate]:
    """OpenSeek's averages over the benchmarks that ran (each with its primary metric)."""
    ran = [BENCHMARKS[n] for n in names]
    if not ran:
        return []

    def metric(b: Any) -> str:
        return f"{b.name}/{b.metric}"

    sets: dict[str, list[Any]] = {
        "openseek/English": [b for b in ran if b.group == "English"],
        "openseek/English w/o Math": [b for b in ran if b.group == "English" and not b.math],
        "openseek/Chinese": [b for b in ran if b.group == "Chinese"],
        "openseek/Math": [b for b in ran if b.math],
        "openseek/Average": ran,
        "openseek/Average w/o Math": [b for b in ran if not b.math],
    }
    for b in ran:
        sets.setdefault(f"openseek/{b.category}", []).append(b)
    return [Aggregate(name, tuple(metric(b) for b in members)) for name, members in sets.items() if members]


def compute(metrics: Mapping[str, float], aggregates: Iterable[Aggregate]) -> dict[str, float]:
    """Each aggregate's mean (and `_stderr` when every member has one); an aggregate with a member
    that did not run is an error, not a silently smaller mean."""
    out: dict[str, float] = {}
    for agg in aggregates:
        missing = [m for m in agg.members if m not in metrics and m not in out]
        if missing:
            raise EvalError(
                f"aggregate {agg.name} needs {missing[0]}, which this evaluation did not produce", where="aggregates"
            )
        values = [metrics[m] if m in metrics else out[m] for m in agg.members]
        out[agg.name] = sum(values) / len(values)
        errors = [metrics.get(f"{m}_stderr") for m in agg.members]
        if all(e is not None and math.isfinite(e) for e in errors):
            out[f"{agg.name}_stderr"] = math.sqrt(sum(e * e for e in errors if e is not None)) / len(errors)
    return out


def default_objective(available: Mapping[str, float]) -> dict[str, float]:
    for name, weight in (("bpb/mean", -1.0), ("openseek/Average", 1.0), ("cloze/mean", 1.0)):
        if name in available:
            return {name: weight}
    return {}


def objective_value(terms: Mapping[str, float], available: Mapping[str, float]) -> float | None:
    if not terms:
        return None
    missing = [k for k in terms if k not in available]
    if missing:
        known = ", ".join(sorted(k for k in available if not k.endswith("_stderr")))
        raise EvalError(f"objective term {missing[0]} was not computed (available: {known})", where="objective")
    return float(sum(w * available[k] for k, w in terms.items()))


def parse_objective(text: str) -> dict[str, float]:
    """`"bpb/mean=-1,openseek/Average=0.5"` -> {"bpb/mean": -1.0, "openseek/Average": 0.5}."""
    terms: dict[str, float] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        name, sep, weight = part.rpartition("=")
        if not sep or not name:
            raise EvalError(f"{part!r} is not name=weight", where="--objective")
        try:
            terms[name.strip()] = float(weight)
        except ValueError:
            raise EvalError(f"weight {weight!r} is not a number", where=f"--objective {name.strip()}") from None
    if not terms:
        raise EvalError("empty objective", where="--objective")
    return terms


def load_spec(path: Path | str) -> tuple[list[Aggregate], dict[str, float]]:
    """Extra aggregates and the objective from a YAML or JSON file (see the module docstring)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise EvalError(f"unreadable ({exc.strerror})", where=str(path)) from None
    try:
        data = json.loads(text) if path.suffix == ".json" else YAML(typ="safe").load(text)
    except Exception as exc:
        raise EvalError(
            f"not valid {'JSON' if path.suffix == '.json' else 'YAML'} ({' '.join(str(exc).split())[:200]})",
            where=str(path),
        ) from None
    if not isinstance(data, dict):
        raise EvalError("must be a mapping with 'aggregates' and/or 'objective'", where=str(path))
    unknown = set(data) - {"aggregates", "objective"}
    if unknown:
        raise EvalError(f"unknown key {sorted(unknown)[0]} (known: aggregates, objective)", where=str(path))
    aggregates = []
    for name, body in (data.get("aggregates") or {}).items():
        members = body.get("members") if isinstance(body, dict) else None
        if not isinstance(members, list) or not members or not all(isinstance(m, str) for m in members):
            raise EvalError("needs members: a non-empty list of metric names", where=f"{path}:aggregates.{name}")
        aggregates.append(Aggregate(str(name), tuple(members)))
    objective: dict[str, float] = {}
    raw = data.get("objective") or {}
    if not isinstance(raw, dict):
        raise EvalError("must map metric names to weights", where=f"{path}:objective")
    for name, weight in raw.items():
        if isinstance(weight, bool) or not isinstance(weight, (int, float)) or not math.isfinite(weight):
            raise EvalError(f"weight {weight!r} is not a finite number", where=f"{path}:objective.{name}")
        objective[str(name)] = float(weight)
    return aggregates, objective
