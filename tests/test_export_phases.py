"""Schedules a user can run: our YAML, a Megatron stage script, OpenSeek stage configs and an
EasyDeL-style schedule, each read back as written; `mixsweep mixture show|convert` on schedules."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from typer.testing import CliRunner

from flows.cli import app
from mixture_search.catalog import load_catalog
from mixture_search.errors import FormatError
from mixture_search.formats import read_mixture
from mixture_search.mixture import Mixture
from mixture_search.schedule import Phase, Schedule
from mixture_search.schedule_formats import (
    is_schedule_file,
    read_schedule,
    render_easydel,
    render_megatron_stages,
    render_schedule,
    write_openseek_stages,
    write_schedule,
)
from tests.conftest import OPENSEEK_EXPERIMENT, OPENSEEK_TASK, OPENSEEK_TOKENS

runner = CliRunner()
SMALL = Schedule.from_pairs(
    [(0.8, {"web": 0.6, "code": 0.3, "math": 0.1}), (1.0, {"web": 0.2, "code": 0.3, "math": 0.5})],
    name="small",
    metadata={"train_tokens": 1_000_000_000},
)


def baseline_schedule() -> Schedule:
    """The real 84-file OpenSeek baseline, then an annealing phase on its code and math files."""
    base = read_mixture(OPENSEEK_EXPERIMENT).mixture
    late = Mixture([(n, w * (8.0 if "code" in n.lower() or "math" in n.lower() else 1.0)) for n, w in base.items()])
    return Schedule.from_pairs([(0.8, base), (1.0, late)], name="annealed")


def same(a: Schedule, b: Schedule) -> None:
    assert [p.mixture.pairs for p in a.phases] == [p.mixture.pairs for p in b.phases]  # weights exact, order kept
    assert b.untils == pytest.approx(a.untils, abs=1e-12)


def test_yaml_round_trip(tmp_path: Path) -> None:
    out = tmp_path / "s.yaml"
    write_schedule(SMALL, "yaml", out)
    back = read_schedule(out)
    same(SMALL, back)
    assert back.name == "small" and back.metadata == {"train_tokens": 1_000_000_000}
    assert render_schedule(back) == out.read_text()
    assert is_schedule_file(out) and not is_schedule_file(OPENSEEK_TASK)


def test_a_phase_end_comes_back_from_the_flat_cells_as_given() -> None:
    """Phase ends are sums of cells: without rounding, 0.75 could come back as 0.7500000000000001."""
    import numpy as np

    rng = np.random.default_rng(0)
    for _ in range(200):
        a, b = rng.dirichlet([1.0] * 5), rng.dirichlet([1.0] * 5)
        domains = [f"d{i}" for i in range(5)]
        schedule = Schedule((Phase(0.75, Mixture(dict(zip(domains, a)))), Phase(1.0, Mixture(dict(zip(domains, b))))))
        assert Schedule.from_flat(schedule.flat()).untils == (0.75, 1.0)


def test_megatron_stage_script_runs_each_stage_with_its_data_path_and_samples(tmp_path: Path) -> None:
    sched = baseline_schedule()
    script = tmp_path / "stages.sh"
    write_schedule(sched, "megatron", script, train_samples=24_576_000)
    same(sched, read_schedule(script))
    # the training command is the script's arguments; printf shows what each stage gets
    run = subprocess.run(
        ["bash", str(script), "printf", "%s\\n"],
        capture_output=True,
        text=True,
        check=True,
        env={"PATH": "/usr/bin:/bin"},
    )
    args = run.stdout.splitlines()
    starts = [i for i, a in enumerate(args) if a == "--train-samples"]
    assert [args[i + 1] for i in starts] == ["19660800", "24576000"]
    for i in starts:
        assert args[i + 2 : i + 4] == ["--lr-decay-samples", "24576000"]  # the whole run's LR schedule
        assert args[i + 4 : i + 9] == ["--save", "checkpoints", "--load", "checkpoints", "--data-path"]
    stage1 = args[starts[1] + 9 :]
    assert len(stage1) == 2 * 84 and stage1[1] == "./Nemotron-CC-high-actual-actual-high/part_142_text_document"
    assert [float(w) for w in stage1[0::2]] == list(sched.phases[1].mixture.weights)
    usage = subprocess.run(["bash", str(script)], capture_output=True, text=True)
    assert usage.returncode == 2 and "usage" in usage.stderr


def test_megatron_stage_leaves_out_zero_weights_and_reads_them_back_as_zero() -> None:
    sched = Schedule.from_pairs([(0.5, {"a": 1.0, "b": 0.0}), (1.0, {"a": 0.0, "b": 1.0})])
    text = render_megatron_stages(sched, train_samples=1000)
    assert text.count('"$DATA_DIR"/a') == 1 and text.count('"$DATA_DIR"/b') == 1
    back = read_schedule_text(text)
    assert back.shares().tolist() == [[1.0, 0.0], [0.0, 1.0]] and back.untils == (0.5, 1.0)


def read_schedule_text(text: str) -> Schedule:
    from mixture_search.schedule_formats import parse_megatron_stages

    return parse_megatron_stages(text, "stages.sh")


def test_easydel_schedule_is_what_the_blend_engine_reads(tmp_path: Path) -> None:
    out = tmp_path / "easydel.yaml"
    write_schedule(SMALL, "easydel", out, train_samples=1_024_000, samples_per_step=1024)
    back = read_schedule(out)
    same(SMALL, back)
    assert back.metadata == {"steps": 1000, "samples_per_step": 1024}
    assert render_easydel(back, total_steps=1000, samples_per_step=1024) == out.read_text()
    from ruamel.yaml import YAML

    # lazy: trainers.data imports torch; the schedule it builds is the one the trainers follow
    from trainers.data.schedule import WeightSchedule

    ws = WeightSchedule.from_dict(YAML(typ="safe").load(out.read_text()))
    assert ws.interpolation == "step" and ws.samples_per_step == 1024
    assert ws.get_weights(799) == pytest.approx({"web": 0.6, "code": 0.3, "math": 0.1})
    assert ws.get_weights(800) == pytest.approx({"web": 0.2, "code": 0.3, "math": 0.5})
    assert ws.get_weights(5000) == pytest.approx({"web": 0.2, "code": 0.3, "math": 0.5})


def test_openseek_stage_configs_from_the_real_template(tmp_path: Path) -> None:
    sched = baseline_schedule()
    written = write_openseek_stages(sched, tmp_path / "stages", template=OPENSEEK_TASK)
    names = sorted(p.relative_to(tmp_path / "stages").as_posix() for p in written)
    assert names == [
        "config_deepseek_v3_1_4b_stage0.yaml",
        "config_deepseek_v3_1_4b_stage1.yaml",
        "train/train_deepseek_v3_1_4b_stage0.yaml",
        "train/train_deepseek_v3_1_4b_stage1.yaml",
    ]
    back = read_schedule(tmp_path / "stages")
    same(sched, back)
    assert back.metadata == {"train_samples": 24_576_000}
    for k in (0, 1):  # each stage is an ordinary OpenSeek config pair the existing reader takes
        doc = read_mixture(tmp_path / "stages" / f"config_deepseek_v3_1_4b_stage{k}.yaml")
        assert doc.mixture.pairs == sched.phases[k].mixture.pairs
        # the template's dataset_base_dir is kept as written (relative: resolved from the stage's folder)
        assert doc.base_dir == (tmp_path / "OpenSeek-Pretrain-100B").resolve()
    # only these lines differ from the template: the stage's data_path, train_samples, the run's decay
    task1 = (tmp_path / "stages" / "train" / "train_deepseek_v3_1_4b_stage1.yaml").read_text().splitlines()
    template = OPENSEEK_TASK.read_text().splitlines()
    changed = [line for line in task1 if line not in template and not line.lstrip().startswith("- ")]
    assert changed == [
        changed[0],  # the header
        "  train_samples: 24576000 # MixSweep: stage 1 of 2 ends here; the run has 24576000",
        "      lr_decay_samples: 24576000 # MixSweep: the whole run's, in every stage",
    ]
    assert (
        "train_samples: 19660800" in (tmp_path / "stages" / "train" / "train_deepseek_v3_1_4b_stage0.yaml").read_text()
    )
    exp0 = (tmp_path / "stages" / "config_deepseek_v3_1_4b_stage0.yaml").read_text()
    exp1 = (tmp_path / "stages" / "config_deepseek_v3_1_4b_stage1.yaml").read_text()
    assert "- train: train_deepseek_v3_1_4b_stage0.yaml" in exp0 and "load: null" in exp0
    assert "load: ${experiment.exp_dir}/checkpoints" in exp1  # where FlagScale saved stage 0


def test_cli_show_prints_phases_tokens_and_epochs_over_the_run(tmp_path: Path) -> None:
    sched = baseline_schedule()
    path = tmp_path / "annealed.yaml"
    write_schedule(sched, "yaml", path)
    args = ["mixture", "show", str(path), "--catalog", str(OPENSEEK_TOKENS), "--budget", "100B"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "schedule, 2 phases: p0 0-0.8, p1 0.8-1; budget 100B tokens" in result.output
    assert "p1 share %" in result.output and "epochs (run)" in result.output
    data = json.loads(runner.invoke(app, [*args, "--json"]).output)
    assert [p["tokens"] for p in data["phases"]] == pytest.approx([80e9, 20e9])
    sizes = load_catalog(OPENSEEK_TOKENS).tokens("file")
    row = next(r for r in data["rows"] if "code" in r["name"].lower())
    shares = [p.mixture.share(row["name"]) for p in sched.phases]
    assert row["tokens"] == pytest.approx([80e9 * shares[0], 20e9 * shares[1]])
    size = sizes[row["name"]]
    assert size is not None
    assert row["epochs"] == pytest.approx((80e9 * shares[0] + 20e9 * shares[1]) / size)


def test_cli_convert_a_schedule_to_every_format_and_show_it_back(tmp_path: Path) -> None:
    path = tmp_path / "annealed.yaml"
    write_schedule(baseline_schedule(), "yaml", path)
    script, easydel, stages = tmp_path / "s.sh", tmp_path / "e.yaml", tmp_path / "stages"
    for extra in (
        ["--to", "megatron", "--samples", "24576000", "-o", str(script)],
        ["--to", "easydel", "--samples", "24576000", "--global-batch", "1024", "-o", str(easydel)],
        ["--to", "openseek", "--template", str(OPENSEEK_TASK), "-o", str(stages)],
    ):
        result = runner.invoke(app, ["mixture", "convert", str(path), *extra])
        assert result.exit_code == 0, result.output
    for out in (script, easydel, stages):
        same(baseline_schedule(), read_schedule(out))
        shown = runner.invoke(app, ["mixture", "show", str(out), "--catalog", str(OPENSEEK_TOKENS), "--budget", "100B"])
        assert shown.exit_code == 0 and "2 phases" in shown.output, shown.output
    # a domain-level schedule becomes Megatron file prefixes through the catalog (split by tokens)
    domains = Schedule.from_pairs([(0.5, {"cot_synthesis2_CC-mid": 1.0}), (1.0, {"cot_synthesis2_CC-mid": 1.0})])
    dpath = tmp_path / "domains.yaml"
    write_schedule(domains, "yaml", dpath)
    expanded = runner.invoke(
        app,
        ["mixture", "convert", str(dpath), "--to", "megatron", "--samples", "100", "--catalog", str(OPENSEEK_TOKENS)],
    )
    assert expanded.exit_code == 0 and expanded.output.count("cot_synthesis2_CC-mid/") == 2 * 5


def test_bad_schedule_files_are_one_line_errors(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("phases:\n  - until: 0.8\n    weights: {a: 1}\n  - until: 0.6\n    weights: {a: 1}\n")
    result = runner.invoke(app, ["mixture", "show", str(bad)])
    assert result.exit_code == 2
    assert "phases[1].until: 0.6 is not after the previous phase's end 0.8" in result.output
    assert len(result.output.strip().splitlines()) == 1
    short = tmp_path / "short.yaml"
    short.write_text("phases:\n  - until: 0.9\n    weights: {a: 1}\n")
    with pytest.raises(FormatError, match=r"phases\[0\].until: the last phase must end at 1.0, not 0.9"):
        read_schedule(short)
    with pytest.raises(FormatError, match="shorter than one unit"):
        render_megatron_stages(Schedule.from_pairs([(0.001, {"a": 1}), (1.0, {"a": 1})]), train_samples=100)
    noend = tmp_path / "noend.yaml"
    noend.write_text(
        "interpolation: step\npoints:\n  - {step: 0, weights: {a: 1}}\n  - {step: 10, weights: {a: 2, b: 1}}\n"
    )
    with pytest.raises(FormatError, match="the run's end is unknown"):
        read_schedule(noend)
