"""Mixture file formats, read and written losslessly (weights exact, order kept).

- `megatron`: Megatron's `data_path` as a YAML list `[w1, p1, w2, p2, ...]` (top level, under
  `data_path:`), or the single-string form Megatron's argparse takes (`"w1 p1 w2 p2"`, a .txt file).
- `openseek`: an OpenSeek/FlagScale experiment config (`config_*.yaml`, whose `defaults` name
  `train: train_*.yaml`) and its task YAML (`data.data_path`). `${experiment.dataset_base_dir}` is
  resolved against the experiment config, and keys are relative to it; any other `${experiment.*}`
  in `data_path` is replaced by its value, so a task read without its experiment config accepts only
  the base directory (`--base-dir`). Writing a new task YAML replaces only the lines of
  `data.data_path`: every other line, comment and key is kept byte for byte.
- `yaml` / `json`: our own plain form: `{name, weights: {domain: weight}, metadata}`.

Errors are `FormatError`/`MixtureError` with `file:line key` in a single line.
"""

from __future__ import annotations

import io
import json
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException
from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.error import MarkedYAMLError

from mixture_search.errors import FormatError, MixtureError
from mixture_search.files import atomic_write
from mixture_search.mixture import Mixture, check_weight

BASE_DIR_EXPR = "${experiment.dataset_base_dir}"
FORMATS = ("megatron", "openseek", "yaml", "json")
_INTERPOLATION = re.compile(r"\$\{[^}]*\}")
_NUMBER = re.compile(r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$|^[+-]?(nan|inf|infinity)$", re.IGNORECASE)


@dataclass(frozen=True)
class OpenSeekSource:
    """Where an OpenSeek mixture came from: needed to write it back and to find its files."""

    task_path: Path
    experiment_path: Path | None = None
    base_dir: Path | None = None  # `experiment.dataset_base_dir`, resolved against the experiment config's folder
    base_expr: str | None = BASE_DIR_EXPR  # how paths were written, or None for plain paths


@dataclass(frozen=True)
class MixtureDoc:
    """A mixture read from a file, with what is needed to write it back in its own format."""

    mixture: Mixture
    format: str
    path: Path | None = None
    name: str | None = None
    metadata: Mapping[str, Any] = field(default_factory=dict)
    openseek: OpenSeekSource | None = None
    base_dir: Path | None = None  # where relative file prefixes live, if known

    def prefix_path(self, key: str) -> Path:
        """The filesystem prefix of a data_path entry (without `.bin`/`.idx`)."""
        p = Path(key)
        if p.is_absolute():
            return p
        if self.base_dir is None:
            raise FormatError(
                f"cannot locate {key!r}: no dataset base directory is known (pass --base-dir)",
                where=str(self.path) if self.path else None,
            )
        return self.base_dir / p

    def missing_files(self) -> list[Path]:
        """Prefixes whose `.bin` or `.idx` does not exist."""
        missing = []
        for key in self.mixture:
            prefix = self.prefix_path(key)
            missing += [q for q in (prefix.with_name(prefix.name + ext) for ext in (".bin", ".idx")) if not q.exists()]
        return missing


# ------------------------------------------------------------------------------------------------
# YAML helpers


def _yaml() -> YAML:
    y = YAML(typ="rt")
    y.preserve_quotes = True
    y.width = 4096
    y.indent(mapping=2, sequence=4, offset=2)
    return y


def _load_yaml(text: str, where: str) -> Any:
    try:
        return _yaml().load(text)
    except MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = f":{mark.line + 1}" if mark is not None else ""
        raise FormatError(f"invalid YAML: {exc.problem or exc.context}", where=f"{where}{line}") from None
    except Exception as exc:  # ruamel raises a few unmarked errors (e.g. duplicate keys), all bad input
        raise FormatError(f"invalid YAML: {exc}", where=where) from None


def _line_of(node: Any, index: int | str, where: str) -> str:
    """`file:line` of item `index` in a ruamel node, if ruamel knows it."""
    try:
        line, _ = node.lc.item(index) if isinstance(node, CommentedSeq) else node.lc.key(index)
        return f"{where}:{line + 1}"
    except Exception:  # plain lists (JSON, strings) carry no marks
        return where


def _read_text(path: Path) -> str:
    if not path.exists():
        raise FormatError("file not found", where=str(path))
    if path.is_dir():
        raise FormatError("is a directory, expected a mixture file", where=str(path))
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise FormatError("not a UTF-8 text file", where=str(path)) from None


# ------------------------------------------------------------------------------------------------
# Megatron data_path


def parse_data_path(
    entries: Sequence[Any],
    *,
    field_name: str = "data_path",
    locate: Callable[[int], str] | None = None,
    strip: str | None = None,
) -> Mixture:
    """`[w1, p1, w2, p2, ...]` -> Mixture{p: w}. Weights may be numbers or numeric strings (as
    Megatron's `float()` takes them). `strip` removes a leading path expression (the base dir)."""

    def where(i: int) -> str:
        return f"{locate(i)} " if locate else ""

    n = len(entries)
    if n == 0:
        raise FormatError(f"{field_name} is empty", where=locate(0) if locate else None)
    if n == 1 and isinstance(entries[0], str) and not _NUMBER.match(entries[0].strip()):
        return Mixture({_key(entries[0], strip): 1.0})
    if n % 2:
        raise FormatError(
            f"{where(n - 1)}{field_name} has {n} entries, an odd number; it must alternate weight, path "
            "(Megatron would silently read every entry as a path)"
        )
    items: list[tuple[str, float]] = []
    first_seen: dict[str, int] = {}
    for i in range(0, n, 2):
        raw_w, raw_p = entries[i], entries[i + 1]
        wl = f"{where(i)}{field_name}[{i}]"
        if isinstance(raw_w, str):
            if not _NUMBER.match(raw_w.strip()):
                if not _NUMBER.match(str(raw_p).strip()):
                    raise FormatError(f"weight {raw_w!r} is not a number", where=wl)
                raise FormatError(f"expected a weight, got {raw_w!r} (entries must alternate weight, path)", where=wl)
            raw_w = float(raw_w)
        weight = check_weight(raw_w, wl)
        pl = f"{where(i + 1)}{field_name}[{i + 1}]"
        if not isinstance(raw_p, str) or not raw_p.strip():
            raise FormatError(f"expected a path, got {raw_p!r} (entries must alternate weight, path)", where=pl)
        if _NUMBER.match(raw_p.strip()):
            raise FormatError(
                f"expected a path, got the number {raw_p!r} (entries must alternate weight, path)", where=pl
            )
        key = _key(raw_p, strip)
        if key in first_seen:
            raise MixtureError(f"duplicate path {raw_p.strip()!r} (first at {field_name}[{first_seen[key]}])", where=pl)
        first_seen[key] = i + 1
        items.append((key, weight))
    if not any(w > 0 for _, w in items):
        raise MixtureError(f"all {len(items)} weights in {field_name} are zero", where=locate(0) if locate else None)
    return Mixture(items)


def _key(raw: str, strip: str | None) -> str:
    raw = raw.strip()
    if strip and raw.startswith(strip + "/"):
        return raw[len(strip) + 1 :]
    return raw


def _fmt_weight(w: float) -> str:
    return repr(float(w))


def to_data_path(mixture: Mixture, *, base_expr: str | None = None) -> list[float | str]:
    """Mixture -> `[w1, p1, ...]` with raw weights; relative paths get `base_expr/` prepended."""
    out: list[float | str] = []
    for name, weight in mixture.items():
        out += [weight, _join(base_expr, name)]
    return out


def to_data_path_string(mixture: Mixture, *, base_expr: str | None = None) -> str:
    """The single-string form for Megatron's `--data-path` argument."""
    return " ".join(f"{_fmt_weight(w)} {_join(base_expr, n)}" for n, w in mixture.items())


def _join(base_expr: str | None, key: str) -> str:
    if base_expr and not (key.startswith("/") or key.startswith("${")):
        return f"{base_expr}/{key}"
    return key


# ------------------------------------------------------------------------------------------------
# OpenSeek experiment + task YAML


def _find_task(experiment: Mapping[str, Any], exp_path: Path) -> Path:
    defaults = experiment.get("defaults") or []
    for entry in defaults:
        if isinstance(entry, Mapping) and "train" in entry:
            name = str(entry["train"])
            name = name if name.endswith((".yaml", ".yml")) else name + ".yaml"
            task = exp_path.parent / "train" / name
            if not task.exists():
                raise FormatError(
                    f"defaults name train: {entry['train']} but {task} does not exist", where=str(exp_path)
                )
            return task
    raise FormatError("experiment config has no 'train: <task>.yaml' entry in defaults", where=str(exp_path))


def _find_experiment(task_path: Path) -> Path | None:
    """The experiment config (`../config_*.yaml`) whose defaults name this task file, if any."""
    folder = task_path.parent.parent
    if task_path.parent.name != "train" or not folder.is_dir():
        return None
    for candidate in sorted(folder.glob("*.yaml")):
        try:
            data = _yaml().load(candidate.read_text(encoding="utf-8"))
        except Exception:
            continue
        if isinstance(data, Mapping) and "experiment" in data:
            for entry in data.get("defaults") or []:
                if isinstance(entry, Mapping) and str(entry.get("train", "")).removesuffix(".yaml") == task_path.stem:
                    return candidate
    return None


def _other_interpolation(raw: Any) -> str | None:
    """The first interpolation in a data_path entry other than a leading `${experiment.dataset_base_dir}/`."""
    if not isinstance(raw, str):
        return None
    text = raw.strip()
    if text.startswith(BASE_DIR_EXPR + "/"):
        text = text[len(BASE_DIR_EXPR) + 1 :]
    match = _INTERPOLATION.search(text)
    return match.group(0) if match else None


def _resolved_prefix(value: str, exp_dir: Path, base: Path | None) -> str:
    """A resolved data_path prefix as a key: relative to the dataset base directory when it lies under
    it (like every other entry), else absolute (a relative value is taken from the experiment config's
    folder, as `dataset_base_dir` is)."""
    path = (exp_dir / value).resolve()
    if base is not None and path.is_relative_to(base.resolve()):
        return path.relative_to(base.resolve()).as_posix()
    return str(path)


def read_openseek(path: Path, *, base_dir: Path | None = None) -> MixtureDoc:
    """Read an OpenSeek experiment config or task YAML (the other half is found next to it)."""
    path = Path(path)
    data = _load_yaml(_read_text(path), str(path))
    experiment: Any
    task: Any
    if isinstance(data, Mapping) and "experiment" in data and "data" not in data:
        exp_path: Path | None = path
        experiment = data
        task_path = _find_task(data, path)
        task = _load_yaml(_read_text(task_path), str(task_path))
    else:
        task_path, task = path, data
        exp_path = _find_experiment(path)
        experiment = _load_yaml(_read_text(exp_path), str(exp_path)) if exp_path else None
    if not isinstance(task, Mapping) or not isinstance(task.get("data"), Mapping) or "data_path" not in task["data"]:
        raise FormatError("no data.data_path in the task config", where=str(task_path))
    entries = task["data"]["data_path"]
    if isinstance(entries, str):
        entries = entries.split()
    if not isinstance(entries, list):
        raise FormatError(
            "data.data_path must be a list of weight, path entries",
            where=_line_of(task["data"], "data_path", str(task_path)),
        )

    def locate(i: int) -> str:
        return _line_of(entries, i, str(task_path))

    # Resolve interpolations against the experiment (as Hydra would: the task sits under `train`).
    # `${experiment.dataset_base_dir}/` stays as the prefix that keys are relative to; any other
    # interpolation is replaced by its value, which needs the experiment config.
    resolved_base = base_dir
    values = list(entries)
    others = [i for i, raw in enumerate(entries) if _other_interpolation(raw)]
    if experiment is None and others:
        i = others[0]
        raise FormatError(
            f"{_other_interpolation(entries[i])} in {entries[i]!r} needs the experiment config, which was not "
            f"found (a ../*.yaml whose defaults name train: {task_path.name})",
            where=f"{locate(i)} data.data_path[{i}]",
        )
    if experiment is not None:
        assert exp_path is not None  # found together with `experiment`
        root = OmegaConf.create({"experiment": _plain(experiment.get("experiment") or {}), "train": _plain(task)})
        for i, raw in enumerate(entries):
            if isinstance(raw, str) and "${" in raw:
                try:
                    value = root.train.data.data_path[i]  # resolving the item raises on an unknown interpolation
                except OmegaConfBaseException:
                    raise FormatError(
                        f"unknown interpolation in {raw!r} (not defined in {exp_path})",
                        where=f"{locate(i)} data.data_path[{i}]",
                    ) from None
                if i in others:
                    values[i] = value
        if resolved_base is None:
            raw_base = OmegaConf.select(root, "experiment.dataset_base_dir", default=None)
            if raw_base is not None:
                resolved_base = (exp_path.parent / str(raw_base)).resolve()
        for i in others:
            if isinstance(values[i], str) and not _NUMBER.match(values[i].strip()):
                values[i] = _resolved_prefix(values[i].strip(), exp_path.parent, resolved_base)
    mixture = parse_data_path(
        values,
        field_name="data.data_path",
        locate=locate,
        strip=BASE_DIR_EXPR,
    )
    uses_expr = any(isinstance(e, str) and e.strip().startswith(BASE_DIR_EXPR + "/") for e in entries)
    source = OpenSeekSource(
        task_path=task_path,
        experiment_path=exp_path,
        base_dir=resolved_base,
        base_expr=BASE_DIR_EXPR if uses_expr else None,
    )
    name = (
        experiment["experiment"].get("exp_name")
        if experiment and isinstance(experiment.get("experiment"), Mapping)
        else None
    )
    meta: dict[str, Any] = {}
    model: Mapping[str, Any] = task["model"] if isinstance(task.get("model"), Mapping) else {}
    if is_count(model.get("train_samples")) and is_count(model.get("seq_length")):
        meta["train_tokens"] = int(model["train_samples"]) * int(model["seq_length"])
    return MixtureDoc(
        mixture,
        "openseek",
        path,
        name=str(name) if name else task_path.stem,
        metadata=meta,
        openseek=source,
        base_dir=resolved_base,
    )


def is_count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value > 0


def _plain(node: Any) -> Any:
    """ruamel containers -> plain dicts/lists that OmegaConf accepts."""
    if isinstance(node, Mapping):
        return {str(k): _plain(v) for k, v in node.items()}
    if isinstance(node, list):
        return [_plain(v) for v in node]
    if isinstance(node, float):
        return float(node)
    if isinstance(node, bool):
        return bool(node)
    if isinstance(node, int):
        return int(node)
    return node if node is None else str(node)


def render_openseek_task(mixture: Mixture, template: Path, *, base_expr: str | None = BASE_DIR_EXPR) -> str:
    """The template task YAML with `data.data_path` set to `mixture`; every other line is untouched.

    Only the lines holding the list items are rewritten; an item whose value is unchanged keeps its
    original text (so `0.0670` stays `0.0670`)."""
    return render_openseek_text(mixture, _read_text(template), str(template), base_expr=base_expr)


def render_openseek_text(mixture: Mixture, text: str, where: str, *, base_expr: str | None = BASE_DIR_EXPR) -> str:
    """`render_openseek_task` on the text of a task YAML (`where` names it in errors)."""
    data = _load_yaml(text, where)
    if (
        not isinstance(data, Mapping)
        or not isinstance(data.get("data"), CommentedMap)
        or "data_path" not in data["data"]
    ):
        raise FormatError("template has no data.data_path to replace", where=where)
    seq = data["data"]["data_path"]
    lines = text.splitlines(keepends=True)
    new_items: list[Any] = to_data_path(mixture, base_expr=base_expr)
    if not isinstance(seq, CommentedSeq) or seq.fa.flow_style() or len(seq) == 0:
        # Rare layouts (flow list, string): rewrite the whole mapping entry with ruamel.
        data["data"]["data_path"] = CommentedSeq(new_items)
        buf = io.StringIO()
        _yaml().dump(data, buf)
        return buf.getvalue()
    first, last = seq.lc.item(0)[0], seq.lc.item(len(seq) - 1)[0]
    dash_col = seq.lc.item(0)[1] - 2
    indent = " " * max(dash_col, 0)
    newline = "\r\n" if lines[first].endswith("\r\n") else "\n"
    out_lines = []
    for i, item in enumerate(new_items):
        old = seq[i] if i < len(seq) else None
        same = old is not None and (
            (
                isinstance(item, float)
                and isinstance(old, (int, float))
                and not isinstance(old, bool)
                and float(old) == item
            )
            or (isinstance(item, str) and isinstance(old, str) and old == item)
        )
        if same:
            out_lines.append(lines[seq.lc.item(i)[0]])
        else:
            out_lines.append(f"{indent}- {_yaml_scalar(item)}{newline}")
    return "".join(lines[:first] + out_lines + lines[last + 1 :])


def _yaml_scalar(value: float | str) -> str:
    if isinstance(value, float):
        return _fmt_weight(value)
    # plain if it reads back as the same string, else a JSON (= YAML double-quoted) string
    try:
        if YAML(typ="safe").load(value) == value and "#" not in value and ": " not in value:
            return value
    except Exception:
        pass
    return json.dumps(value, ensure_ascii=False)


def write_openseek(mixture: Mixture, out: Path, *, template: MixtureDoc | Path) -> list[Path]:
    """Write the task YAML (`out` ends in .yaml) or the experiment + task pair (`out` is a folder).

    The result is read back and checked against `mixture` before it replaces anything."""
    src = template if isinstance(template, MixtureDoc) else read_openseek(Path(template))
    if src.openseek is None:
        raise FormatError("an OpenSeek template (task YAML) is needed to write OpenSeek configs", where=str(src.path))
    os_src = src.openseek
    text = render_openseek_task(mixture, os_src.task_path, base_expr=os_src.base_expr)
    written: list[Path] = []
    out = Path(out)
    if out.suffix in (".yaml", ".yml"):
        atomic_write(out, text)
        written.append(out)
    else:
        task_out = out / "train" / os_src.task_path.name
        atomic_write(task_out, text)
        written.append(task_out)
        if os_src.experiment_path is not None:
            exp_out = out / os_src.experiment_path.name
            atomic_write(exp_out, _read_text(os_src.experiment_path))
            written.insert(0, exp_out)
    check = _load_yaml(text, str(written[-1]))["data"]["data_path"]
    if parse_data_path(check, strip=BASE_DIR_EXPR).pairs != mixture.pairs:  # pragma: no cover - invariant
        raise AssertionError("written data_path does not read back as the mixture")
    return written


# ------------------------------------------------------------------------------------------------
# our own YAML / JSON


def _native(data: Mapping[str, Any], path: Path, fmt: str) -> MixtureDoc:
    allowed = {"name", "weights", "metadata"}
    unknown = [k for k in data if k not in allowed]
    if unknown:
        raise FormatError(
            f"unknown key {unknown[0]!r} (expected {sorted(allowed)})", where=_line_of(data, unknown[0], str(path))
        )
    weights = data.get("weights")
    if not isinstance(weights, Mapping):
        raise FormatError("'weights' must map domain names to weights", where=str(path))
    items = []
    for name, w in weights.items():
        items.append((str(name), check_weight(w, f"{_line_of(weights, name, str(path))} weights.{name}")))
    if not items:
        raise MixtureError("'weights' is empty", where=str(path))
    mixture = Mixture(items, where=f"{path} weights")
    meta = data.get("metadata") or {}
    if not isinstance(meta, Mapping):
        raise FormatError("'metadata' must be a mapping", where=_line_of(data, "metadata", str(path)))
    meta = _plain(meta)
    base = meta.get("base_dir")
    return MixtureDoc(
        mixture,
        fmt,
        path,
        name=str(data.get("name") or path.stem),
        metadata=meta,
        base_dir=Path(base) if base else None,
    )


def render_native(
    mixture: Mixture, *, fmt: str = "yaml", name: str | None = None, metadata: Mapping[str, Any] | None = None
) -> str:
    doc: dict[str, Any] = {}
    if name:
        doc["name"] = name
    doc["weights"] = mixture.to_dict()
    if metadata:
        doc["metadata"] = dict(metadata)
    if fmt == "json":
        return json.dumps(doc, indent=2, ensure_ascii=False) + "\n"
    buf = io.StringIO()
    _yaml().dump(doc, buf)  # the round-trip dumper keeps key order (the safe one sorts)
    return "# MixSweep mixture: weights are normalised by their sum (as Megatron does)\n" + buf.getvalue()


# ------------------------------------------------------------------------------------------------
# entry points


def read_mixture(path: Path | str, *, base_dir: Path | None = None) -> MixtureDoc:
    """Read any supported mixture file; the format is recognised from its content."""
    path = Path(path)
    text = _read_text(path)
    if path.suffix == ".json":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise FormatError(f"invalid JSON: {exc.msg}", where=f"{path}:{exc.lineno}") from None
        if isinstance(data, list):
            return MixtureDoc(parse_data_path(data), "megatron", path, name=path.stem, base_dir=base_dir)
        if not isinstance(data, Mapping):
            raise FormatError("expected an object with 'weights' or a data_path list", where=str(path))
        return _with_base(_native(data, path, "json"), base_dir)
    data = _load_yaml(text, str(path))
    if isinstance(data, str):  # Megatron's single-string form
        tokens = data.split()
        if tokens and tokens[0] in ("--data-path", "--data_path"):
            tokens = tokens[1:]
        return MixtureDoc(
            parse_data_path(tokens, strip=BASE_DIR_EXPR), "megatron", path, name=path.stem, base_dir=base_dir
        )
    if isinstance(data, list):
        return MixtureDoc(
            parse_data_path(data, locate=lambda i: _line_of(data, i, str(path)), strip=BASE_DIR_EXPR),
            "megatron",
            path,
            name=path.stem,
            base_dir=base_dir,
        )
    if isinstance(data, Mapping):
        if "weights" in data or "name" in data or "metadata" in data:
            return _with_base(_native(data, path, "yaml"), base_dir)
        if ("experiment" in data and "defaults" in data) or isinstance(data.get("data"), Mapping):
            return read_openseek(path, base_dir=base_dir)
        if "data_path" in data:
            entries = data["data_path"]
            if isinstance(entries, str):
                entries = entries.split()
            if not isinstance(entries, list):
                raise FormatError("data_path must be a list or a string", where=_line_of(data, "data_path", str(path)))
            return MixtureDoc(
                parse_data_path(entries, locate=lambda i: _line_of(entries, i, str(path)), strip=BASE_DIR_EXPR),
                "megatron",
                path,
                name=path.stem,
                base_dir=base_dir,
            )
    raise FormatError(
        "not a mixture file: expected 'weights:', 'data_path:', an OpenSeek config, or a weight/path list",
        where=str(path),
    )


def _with_base(doc: MixtureDoc, base_dir: Path | None) -> MixtureDoc:
    if base_dir is None:
        return doc
    return MixtureDoc(doc.mixture, doc.format, doc.path, doc.name, doc.metadata, doc.openseek, base_dir)


def render(doc: MixtureDoc, fmt: str, *, template: MixtureDoc | None = None) -> str:
    """Text of `doc.mixture` in `fmt` (for openseek: the task YAML from `template` or `doc` itself)."""
    if fmt not in FORMATS:
        raise FormatError(f"unknown format {fmt!r} (choose from {', '.join(FORMATS)})")
    if fmt == "megatron":
        return to_data_path_string(doc.mixture) + "\n"
    if fmt == "openseek":
        src = template or doc
        if src.openseek is None:
            raise FormatError(
                "--to openseek needs an OpenSeek task YAML as --template", where=str(doc.path) if doc.path else None
            )
        return render_openseek_task(doc.mixture, src.openseek.task_path, base_expr=src.openseek.base_expr)
    meta = dict(doc.metadata)
    if doc.path is not None:
        meta.setdefault("source", str(doc.path))
    return render_native(doc.mixture, fmt=fmt, name=doc.name, metadata=meta)


def write_mixture(doc: MixtureDoc, fmt: str, out: Path, *, template: MixtureDoc | None = None) -> list[Path]:
    """Write `doc` as `fmt` to `out` (atomically). For openseek a folder `out` gets the config pair."""
    out = Path(out)
    if fmt == "openseek":
        return write_openseek(doc.mixture, out, template=template or doc)
    if fmt == "megatron" and out.suffix in (".yaml", ".yml"):
        buf = io.StringIO()
        _yaml().dump({"data_path": to_data_path(doc.mixture)}, buf)
        atomic_write(out, buf.getvalue())
    else:
        atomic_write(out, render(doc, fmt, template=template))
    return [out]
