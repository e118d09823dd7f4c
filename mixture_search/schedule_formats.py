"""Schedule files a user can run, read back losslessly (weights exact; phase ends to the unit written).

- `yaml`: ours, `{name, phases: [{until, weights: {domain: weight}}], metadata}`.
- `megatron`: a bash script with one Megatron stage per phase. Each stage gets its `--data-path` and
  its `--train-samples` (where the stage ends, counted from the start of the run) and saves to and
  loads from one checkpoint folder, so a stage resumes from the latest checkpoint of the one before
  (model, optimizer, LR scheduler and consumed samples) and a stage that crashed resumes from its
  own. `--lr-decay-samples` is the whole run's in every stage: without it Megatron would decay the
  LR over each stage's `--train-samples`. The training command itself is the script's arguments.
- `openseek`: one FlagScale experiment + task config per stage, from an OpenSeek template: the task
  gets the stage's `data.data_path`, `model.train_samples` (the stage's end) and the run's
  `lr_decay_samples`; every stage keeps the template's `exp_dir`, and stages after the first load
  `${experiment.exp_dir}/checkpoints`, where FlagScale saves.
- `easydel`: the EasyDeL-style weight schedule (`trainers.data.WeightSchedule.from_dict`, `mixsweep
  data blend --schedule`): step interpolation, one point per phase start in optimizer steps, and a
  last point repeating the last phase's weights at the run's end, so the file says where the run ends.

Entries with weight 0 are left out of a Megatron or OpenSeek stage (they would only add an empty
dataset) and read back as 0.
"""

from __future__ import annotations

import io
import re
import shlex
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ruamel.yaml.comments import CommentedMap, CommentedSeq

from mixture_search.errors import FormatError, MixtureError
from mixture_search.files import atomic_write
from mixture_search.formats import (
    _line_of,
    _load_yaml,
    _plain,
    _read_text,
    _yaml,
    is_count,
    read_openseek,
    render_openseek_text,
)
from mixture_search.mixture import Mixture, check_weight
from mixture_search.schedule import Schedule

SCHEDULE_FORMATS = ("yaml", "megatron", "openseek", "easydel")
_STAGE = re.compile(r"_stage(\d+)$")


# ------------------------------------------------------------------------------------------------
# ours


def render_schedule(schedule: Schedule) -> str:
    doc: dict[str, Any] = {}
    if schedule.name:
        doc["name"] = schedule.name
    doc["phases"] = [{"until": p.until, "weights": p.mixture.to_dict()} for p in schedule.phases]
    if schedule.metadata:
        doc["metadata"] = dict(schedule.metadata)
    buf = io.StringIO()
    _yaml().dump(doc, buf)
    return (
        "# MixSweep schedule: each phase draws from the domains with its weights (normalised by their sum)\n"
        "# until `until` of the run's tokens\n" + buf.getvalue()
    )


def _parse_native(data: Mapping[str, Any], where: str) -> Schedule:
    unknown = [k for k in data if k not in ("name", "phases", "metadata")]
    if unknown:
        raise FormatError(
            f"unknown key {unknown[0]!r} (expected name, phases, metadata)", where=_line_of(data, unknown[0], where)
        )
    phases = data.get("phases")
    if not isinstance(phases, list) or not phases:
        raise FormatError("'phases' must be a non-empty list of {until, weights}", where=where)
    pairs = []
    for k, raw in enumerate(phases):
        at = f"{_line_of(phases, k, where)} phases[{k}]"
        if not isinstance(raw, Mapping) or set(raw) != {"until", "weights"}:
            raise FormatError("each phase needs exactly 'until' and 'weights'", where=at)
        if not isinstance(raw["weights"], Mapping) or not raw["weights"]:
            raise FormatError("'weights' must map domain names to weights", where=f"{at}.weights")
        until = raw["until"]
        if isinstance(until, bool) or not isinstance(until, (int, float)):
            raise FormatError(f"{until!r} is not a number", where=f"{at}.until")
        items = [(str(n), check_weight(w, f"{at}.weights.{n}")) for n, w in raw["weights"].items()]
        pairs.append((float(until), Mixture(items, where=f"{at}.weights")))
    meta = data.get("metadata") or {}
    if not isinstance(meta, Mapping):
        raise FormatError("'metadata' must be a mapping", where=_line_of(data, "metadata", where))
    name = data.get("name")
    return _schedule(pairs, where, name=str(name) if name else Path(where).stem, metadata=_plain(meta))


def _schedule(pairs: Sequence[tuple[float, Mixture]], where: str, **kw: Any) -> Schedule:
    try:
        return Schedule.from_pairs(pairs, **kw)
    except MixtureError as exc:
        raise FormatError(str(exc), where=where) from None


# ------------------------------------------------------------------------------------------------
# Megatron: a bash script with one stage per phase


def render_megatron_stages(schedule: Schedule, *, train_samples: int, data_dir: str | None = None) -> str:
    """The stage script (see the module docstring) for a run of `train_samples` samples."""
    ends = _ends(schedule, train_samples, "train_samples")
    K = len(schedule.phases)
    title = f" {schedule.name}" if schedule.name else ""
    lines = [
        "#!/usr/bin/env bash",
        f"# MixSweep schedule{title}: {K} Megatron stage{'s' if K > 1 else ''}, {train_samples} samples in all.",
        "# Usage: bash THIS.sh <your Megatron training command and its model/optimizer arguments>",
        "#   e.g. bash THIS.sh torchrun --nproc-per-node 8 pretrain_gpt.py --seq-length 4096 --global-batch-size 1024 ...",
        "# Leave out --data-path, --train-samples, --lr-decay-samples, --save and --load: each stage sets them.",
        "# Each stage trains until its --train-samples (counted from the start of the run) and saves to",
        "# $CHECKPOINTS; the next stage loads the latest checkpoint there (model, optimizer, LR scheduler,",
        "# consumed samples) and goes on with its own blend. Every stage decays the LR over the whole run.",
        "set -euo pipefail",
        'if [ "$#" -eq 0 ]; then echo "usage: bash $0 <megatron training command>" >&2; exit 2; fi',
        f'DATA_DIR="${{DATA_DIR:-{data_dir or "."}}}"',
        'CHECKPOINTS="${CHECKPOINTS:-checkpoints}"',
        f"TOTAL_SAMPLES={train_samples}",
    ]
    start = 0
    for k, (phase, end) in enumerate(zip(schedule.phases, ends)):
        lines += [
            "",
            f"# stage {k} of {K}: until {phase.until!r} of the run, samples {start}..{end}",
            f"STAGE{k}_DATA_PATH=(",
        ]
        for name, weight in phase.mixture.items():
            if weight > 0:
                path = shlex.quote(name) if name.startswith("/") else f'"$DATA_DIR"/{shlex.quote(name)}'
                lines.append(f"  {float(weight)!r} {path}")
        lines += [
            ")",
            f'"$@" --train-samples {end} --lr-decay-samples "$TOTAL_SAMPLES" \\',
            f'  --save "$CHECKPOINTS" --load "$CHECKPOINTS" --data-path "${{STAGE{k}_DATA_PATH[@]}}"',
        ]
        start = end
    return "\n".join(lines) + "\n"


def parse_megatron_stages(text: str, where: str) -> Schedule:
    """Read back `render_megatron_stages`."""
    stages: dict[int, list[tuple[str, float]]] = {}
    ends: dict[int, int] = {}
    current: int | None = None
    last_stage: int | None = None
    for n, line in enumerate(text.splitlines(), start=1):
        at = f"{where}:{n}"
        opened = re.match(r"^STAGE(\d+)_DATA_PATH=\($", line.strip())
        if opened:
            current = last_stage = int(opened.group(1))
            stages[current] = []
            continue
        if current is not None:
            if line.strip() == ")":
                current = None
                continue
            try:
                words = shlex.split(line)
            except ValueError as exc:
                raise FormatError(f"cannot read the data_path entry ({exc})", where=at) from None
            if len(words) != 2:
                raise FormatError("expected one weight and one path per line", where=at)
            try:
                weight = check_weight(float(words[0]), f"{at} weight")
            except ValueError:
                raise FormatError(f"weight {words[0]!r} is not a number", where=at) from None
            path = words[1].removeprefix("$DATA_DIR/")
            stages[current].append((path, weight))
            continue
        samples = re.search(r"--train-samples\s+(\d+)", line)
        if samples:
            if last_stage is None or last_stage in ends:
                raise FormatError("--train-samples outside a stage", where=at)
            ends[last_stage] = int(samples.group(1))
    if not stages:
        raise FormatError("no STAGE<k>_DATA_PATH=( ... ) block: not a MixSweep stage script", where=where)
    if sorted(stages) != list(range(len(stages))) or sorted(ends) != sorted(stages):
        raise FormatError(
            f"stages {sorted(stages)} with --train-samples for {sorted(ends)}: expected 0..K-1 each", where=where
        )
    total = ends[len(stages) - 1]
    pairs = [(ends[k] / total, _nonempty(stages[k], f"{where} stage {k}")) for k in range(len(stages))]
    return _schedule(pairs, where, name=Path(where).stem, metadata={"train_samples": total})


def _nonempty(items: list[tuple[str, float]], where: str) -> Mixture:
    if not items:
        raise FormatError("stage has no data_path entries", where=where)
    return Mixture(items, where=where)


def _ends(schedule: Schedule, total: int, field: str) -> list[int]:
    try:
        return schedule.boundaries(total)
    except MixtureError as exc:
        raise FormatError(str(exc).replace("total", field, 1), where=field) from None


# ------------------------------------------------------------------------------------------------
# EasyDeL-style weight schedule


def render_easydel(schedule: Schedule, *, total_steps: int, samples_per_step: int) -> str:
    ends = _ends(schedule, total_steps, "steps")
    starts = [0, *ends[:-1]]
    points = [{"step": s, "weights": p.mixture.to_dict()} for s, p in zip(starts, schedule.phases)]
    points.append({"step": total_steps, "weights": schedule.phases[-1].mixture.to_dict()})
    doc: dict[str, Any] = {}
    if schedule.name:
        doc["name"] = schedule.name
    doc.update({"interpolation": "step", "samples_per_step": int(samples_per_step), "points": points})
    buf = io.StringIO()
    _yaml().dump(doc, buf)
    return (
        f"# MixSweep schedule as an EasyDeL-style weight schedule: {len(schedule.phases)} phases over {total_steps} steps\n"
        f"# of {samples_per_step} samples. The last point repeats the last phase's weights at the run's end.\n"
        + buf.getvalue()
    )


def _parse_easydel(data: Mapping[str, Any], where: str) -> Schedule:
    unknown = [k for k in data if k not in ("name", "interpolation", "samples_per_step", "points")]
    if unknown:
        raise FormatError(f"unknown key {unknown[0]!r}", where=_line_of(data, unknown[0], where))
    if data.get("interpolation", "linear") != "step":
        raise FormatError(
            f"interpolation {data.get('interpolation', 'linear')!r}: only step schedules are phases", where=where
        )
    points = data.get("points")
    if not isinstance(points, list) or len(points) < 2:
        raise FormatError("'points' must list each phase's start and the run's end", where=where)
    steps, mixes = [], []
    for i, p in enumerate(points):
        at = f"{_line_of(points, i, where)} points[{i}]"
        step = p.get("step") if isinstance(p, Mapping) else None
        if isinstance(step, bool) or not isinstance(step, int) or step < 0:
            raise FormatError("each point needs an integer 'step' and 'weights'", where=at)
        if not isinstance(p.get("weights"), Mapping):
            raise FormatError("'weights' must map domain names to weights", where=f"{at}.weights")
        steps.append(int(p["step"]))
        mixes.append(Mixture([(str(n), check_weight(w, f"{at}.weights.{n}")) for n, w in p["weights"].items()]))
    if steps[0] != 0:
        raise FormatError(f"the first point is at step {steps[0]}, not 0", where=where)
    if mixes[-1].pairs != mixes[-2].pairs:
        raise FormatError(
            "the last point does not repeat the last phase's weights, so the run's end is unknown", where=where
        )
    total = steps[-1]
    pairs = [(steps[k + 1] / total, mixes[k]) for k in range(len(points) - 1)]
    meta = {"steps": total}
    if is_count(data.get("samples_per_step")):
        meta["samples_per_step"] = int(data["samples_per_step"])
    return _schedule(pairs, where, name=str(data.get("name") or Path(where).stem), metadata=meta)


# ------------------------------------------------------------------------------------------------
# OpenSeek: one experiment + task config per stage


def write_openseek_stages(
    schedule: Schedule, out: Path, *, template: Path, train_samples: int | None = None
) -> list[Path]:
    """Write `config_<name>_stage<k>.yaml` + `train/train_<name>_stage<k>.yaml` per phase into `out`,
    from an OpenSeek experiment or task template (whose `model.train_samples` is the run's, unless
    `train_samples` is given). Each file is read back and checked before the next is written."""
    src = read_openseek(Path(template))
    assert src.openseek is not None  # read_openseek always sets it
    if src.openseek.experiment_path is None:
        raise FormatError(
            "the stages need the template's experiment config (a ../config_*.yaml naming this task)",
            where=str(template),
        )
    task_path, exp_path = src.openseek.task_path, src.openseek.experiment_path
    task_text = _read_text(task_path)
    task = _load_yaml(task_text, str(task_path))
    model = task.get("model") if isinstance(task, Mapping) else None
    if not isinstance(model, CommentedMap) or "train_samples" not in model:
        raise FormatError("the template has no model.train_samples to set per stage", where=str(task_path))
    total = train_samples if train_samples is not None else model["train_samples"]
    if not is_count(total):
        raise FormatError(f"model.train_samples {total!r} is not a positive integer", where=str(task_path))
    ends = _ends(schedule, int(total), "train_samples")
    out = Path(out)
    written: list[Path] = []
    exp_text = _read_text(exp_path)
    for k, (phase, end) in enumerate(zip(schedule.phases, ends)):
        stem = f"{task_path.stem}_stage{k}"
        mix = Mixture([(n, w) for n, w in phase.mixture.items() if w > 0])
        text = render_openseek_text(mix, task_text, str(task_path), base_expr=src.openseek.base_expr)
        text = _set_task_samples(text, str(task_path), end, int(total), k, len(ends))
        header = f"# MixSweep schedule stage {k} of {len(ends)}: until {phase.until!r} of the run ({end} of {total} samples)\n"
        task_out = out / "train" / f"{stem}.yaml"
        exp_out = out / f"{exp_path.stem}_stage{k}.yaml"
        atomic_write(task_out, header + text)
        atomic_write(exp_out, header + _set_experiment(exp_text, str(exp_path), stem, resume=k > 0))
        written += [exp_out, task_out]
    back = read_openseek_stages(out)
    if [p.mixture.to_array(schedule.names).tolist() for p in back.phases] != [
        p.mixture.to_array(schedule.names).tolist() for p in schedule.phases
    ]:  # pragma: no cover - invariant
        raise AssertionError("written stages do not read back as the schedule")
    return written


def _set_task_samples(text: str, where: str, end: int, total: int, k: int, n: int) -> str:
    """model.train_samples -> the stage's end; model.optimizer.lr_scheduler.lr_decay_samples -> the run's."""
    data = _load_yaml(text, where)
    model = data["model"]
    lines = text.splitlines(keepends=True)
    row, col = model.lc.key("train_samples")
    newline = "\r\n" if lines[row].endswith("\r\n") else "\n"
    lines[row] = f"{' ' * col}train_samples: {end} # MixSweep: stage {k} of {n} ends here; the run has {total}{newline}"
    sched = model.get("optimizer", {}).get("lr_scheduler") if isinstance(model.get("optimizer"), Mapping) else None
    if not isinstance(sched, CommentedMap) or not sched:
        raise FormatError(
            "the template has no model.optimizer.lr_scheduler to hold the run's lr_decay_samples", where=where
        )
    if "lr_decay_samples" not in sched:
        last = list(sched)[-1]
        r, c = sched.lc.key(last)
        if isinstance(sched[last], (CommentedMap, CommentedSeq)):
            raise FormatError("cannot place lr_decay_samples after a nested lr_scheduler entry", where=where)
        lines.insert(r + 1, f"{' ' * c}lr_decay_samples: {total} # MixSweep: the whole run's, in every stage{newline}")
    return "".join(lines)


def _set_experiment(text: str, where: str, task_stem: str, *, resume: bool) -> str:
    data = _load_yaml(text, where)
    lines = text.splitlines(keepends=True)
    defaults = data.get("defaults")
    for i, entry in enumerate(defaults if isinstance(defaults, CommentedSeq) else []):
        if isinstance(entry, Mapping) and "train" in entry:
            row = defaults.lc.item(i)[0]
            suffix = ".yaml" if str(entry["train"]).endswith(".yaml") else ""
            lines[row] = re.sub(r"train:\s*[^\s#]+", f"train: {task_stem}{suffix}", lines[row], count=1)
    exp = data.get("experiment")
    if resume and isinstance(exp, CommentedMap):
        value = "${experiment.exp_dir}/checkpoints"
        if "load" in exp:
            r, c = exp.lc.key("load")
            newline = "\r\n" if lines[r].endswith("\r\n") else "\n"
            lines[r] = f"{' ' * c}load: {value} # MixSweep: resume from the previous stage{newline}"
        else:
            first = next(iter(exp))
            r, c = exp.lc.key(first)
            lines.insert(r + 1, f"{' ' * c}load: {value} # MixSweep: resume from the previous stage\n")
    return "".join(lines)


def read_openseek_stages(path: Path) -> Schedule:
    """Read a folder of `config_*_stage<k>.yaml` (or one of them): phase ends from each stage's
    `model.train_samples` over the last stage's."""
    path = Path(path)
    folder = path if path.is_dir() else path.parent
    found: dict[int, Path] = {}
    for p in sorted(folder.glob("*_stage*.yaml")):
        m = _STAGE.search(p.stem)
        if m:
            found[int(m.group(1))] = p
    if not found:
        raise FormatError("no *_stage<k>.yaml experiment configs", where=str(folder))
    if sorted(found) != list(range(len(found))):
        raise FormatError(f"stages {sorted(found)} are not 0..{len(found) - 1}", where=str(folder))
    pairs, ends = [], []
    for k in range(len(found)):
        doc = read_openseek(found[k])
        assert doc.openseek is not None
        task = _load_yaml(_read_text(doc.openseek.task_path), str(doc.openseek.task_path))
        samples = task.get("model", {}).get("train_samples")
        if not is_count(samples):
            raise FormatError("model.train_samples is not a positive integer", where=str(doc.openseek.task_path))
        ends.append(int(samples))
        pairs.append(doc.mixture)
    meta: dict[str, Any] = {"train_samples": ends[-1]}
    return _schedule([(e / ends[-1], m) for e, m in zip(ends, pairs)], str(folder), name=folder.name, metadata=meta)


# ------------------------------------------------------------------------------------------------
# entry points


def is_schedule_file(path: Path | str) -> bool:
    """Whether `path` holds a schedule (any format above) rather than a static mixture."""
    path = Path(path)
    if path.is_dir():
        return any(_STAGE.search(p.stem) for p in path.glob("*_stage*.yaml"))
    if not path.is_file():
        return False
    if path.suffix == ".sh":
        return True
    if _STAGE.search(path.stem) and path.suffix in (".yaml", ".yml"):
        return True
    try:
        data = _load_yaml(_read_text(path), str(path))
    except FormatError:
        return False
    return isinstance(data, Mapping) and ("phases" in data or "points" in data)


def read_schedule(path: Path | str) -> Schedule:
    """Read a schedule in any of the formats above (recognised from the file)."""
    path = Path(path)
    if path.is_dir() or (_STAGE.search(path.stem) and path.suffix in (".yaml", ".yml")):
        return read_openseek_stages(path)
    text = _read_text(path)
    if path.suffix == ".sh" or text.startswith("#!"):
        return parse_megatron_stages(text, str(path))
    data = _load_yaml(text, str(path))
    if isinstance(data, Mapping) and "phases" in data:
        return _parse_native(data, str(path))
    if isinstance(data, Mapping) and "points" in data:
        return _parse_easydel(data, str(path))
    raise FormatError(
        "not a schedule: expected 'phases:', an EasyDeL 'points:' list, or a stage script", where=str(path)
    )


def write_schedule(
    schedule: Schedule,
    fmt: str,
    out: Path,
    *,
    train_samples: int | None = None,
    steps: int | None = None,
    samples_per_step: int | None = None,
    template: Path | None = None,
    data_dir: str | None = None,
) -> list[Path]:
    """Write `schedule` as `fmt` (see `render_schedule_text`; openseek: a folder of stage configs)."""
    if fmt == "openseek":
        if template is None:
            raise FormatError("--to openseek needs an OpenSeek task or experiment YAML as --template")
        return write_openseek_stages(schedule, Path(out), template=template, train_samples=train_samples)
    text = render_schedule_text(
        schedule, fmt, train_samples=train_samples, steps=steps, samples_per_step=samples_per_step, data_dir=data_dir
    )
    atomic_write(Path(out), text)
    return [Path(out)]


def render_schedule_text(
    schedule: Schedule,
    fmt: str,
    *,
    train_samples: int | None = None,
    steps: int | None = None,
    samples_per_step: int | None = None,
    data_dir: str | None = None,
) -> str:
    """Text of a one-file format: yaml, megatron (needs train_samples) or easydel (needs steps and
    samples_per_step; steps default to train_samples / samples_per_step)."""
    if fmt == "yaml":
        return render_schedule(schedule)
    if fmt == "megatron":
        if train_samples is None:
            raise FormatError("a Megatron stage script needs the run's train samples (--samples)")
        return render_megatron_stages(schedule, train_samples=train_samples, data_dir=data_dir)
    if fmt == "easydel":
        if samples_per_step is None:
            raise FormatError("an EasyDeL schedule needs the global batch in samples (--global-batch)")
        if steps is None and train_samples is not None:
            steps = train_samples // samples_per_step
        if steps is None:
            raise FormatError("an EasyDeL schedule needs the run's optimizer steps (--steps or --samples)")
        return render_easydel(schedule, total_steps=steps, samples_per_step=samples_per_step)
    raise FormatError(f"unknown schedule format {fmt!r} (choose from {', '.join(SCHEDULE_FORMATS)})")


__all__ = [
    "SCHEDULE_FORMATS",
    "is_schedule_file",
    "parse_megatron_stages",
    "read_openseek_stages",
    "read_schedule",
    "render_easydel",
    "render_megatron_stages",
    "render_schedule",
    "render_schedule_text",
    "write_openseek_stages",
    "write_schedule",
]
