"""The shared helpers: atomic writes (`mixture_search.files`) and content keys (`mixture_search.keys`).

The pinned keys were computed by the hand-written hashes these helpers replaced: a change to one of
them would orphan every cached run, output folder and saved sampler state."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from mixture_search.catalog import DomainCatalog
from mixture_search.files import atomic_save, atomic_write, atomic_write_json, temp_path
from mixture_search.keys import content_key, metric_key
from mixture_search.mixture import Mixture
from mixture_search.space import SearchSpace
from trainers import backends
from trainers.budget import TrainBudget
from trainers.distributed import Parallelism
from trainers.presets import PRESETS, openseek_small_proxy
from trainers.train import run_name

REPO = Path(__file__).resolve().parent.parent


# -- atomic writes ----------------------------------------------------------------------------------
def test_atomic_write_text_bytes_and_json(tmp_path: Path) -> None:
    target = tmp_path / "new" / "folder" / "a.txt"
    assert atomic_write(target, "héllo\n") == target
    assert target.read_text(encoding="utf-8") == "héllo\n"
    atomic_write(target, b"\x00\x01")
    assert target.read_bytes() == b"\x00\x01"
    doc = tmp_path / "doc.json"
    atomic_write_json(doc, {"b": 1, "a": [1.5, None]})
    assert doc.read_text() == json.dumps({"b": 1, "a": [1.5, None]}, indent=1) + "\n"
    atomic_write_json(doc, {"x": 3, "p": Path("q")}, default=str, sort_keys=True)
    assert json.loads(doc.read_text()) == {"p": "q", "x": 3}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["doc.json", "new"]  # no temporaries left


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path: Path) -> None:
    target = tmp_path / "result.json"
    atomic_write_json(target, {"version": 1})

    def half_then_fail(tmp: Path) -> None:
        tmp.write_text('{"version": ', encoding="utf-8")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        atomic_save(target, half_then_fail)
    assert json.loads(target.read_text()) == {"version": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["result.json"]


_KILLED_WRITER = """
import sys, time
from mixture_search.files import atomic_save

def slow(tmp):
    with open(tmp, "w") as fh:
        fh.write('{"version": ')
        fh.flush()
        print("started", flush=True)
        time.sleep(60)
        fh.write('2}')

atomic_save(sys.argv[1], slow)
"""


@pytest.mark.timeout(60)
def test_a_killed_writer_leaves_the_old_file_intact(tmp_path: Path) -> None:
    """A process killed mid-write (no exception handler runs) leaves the previous version readable."""
    target = tmp_path / "result.json"
    atomic_write_json(target, {"version": 1})
    proc = subprocess.Popen(
        [sys.executable, "-c", _KILLED_WRITER, str(target)], cwd=REPO, stdout=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "started"
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    assert json.loads(target.read_text()) == {"version": 1}
    leftovers = [p for p in tmp_path.iterdir() if p.name != "result.json"]
    assert len(leftovers) == 1 and leftovers[0].name.startswith(".result.json.tmp-")  # hidden, beside it


def test_atomic_save_replaces_a_folder_only_once_the_new_one_is_complete(tmp_path: Path) -> None:
    target = tmp_path / "checkpoint"
    target.mkdir()
    (target / "old.txt").write_text("old")

    def fill(tmp: Path) -> None:
        tmp.mkdir()
        (tmp / "new.txt").write_text("new")

    atomic_save(target, fill)
    assert [p.name for p in target.iterdir()] == ["new.txt"]

    def fail(tmp: Path) -> None:
        tmp.mkdir()
        raise RuntimeError("interrupted")

    with pytest.raises(RuntimeError):
        atomic_save(target, fail)
    assert [p.name for p in target.iterdir()] == ["new.txt"]
    assert [p.name for p in tmp_path.iterdir()] == ["checkpoint"]


def test_temporaries_differ_between_threads(tmp_path: Path) -> None:
    names: list[Path] = []
    thread = threading.Thread(target=lambda: names.append(temp_path(tmp_path / "a")))
    thread.start()
    thread.join()
    assert names[0] != temp_path(tmp_path / "a")
    assert names[0].parent == tmp_path and names[0].name.startswith(".a.tmp-")


# -- content keys -----------------------------------------------------------------------------------
def test_content_key_matches_the_hand_written_hash() -> None:
    payload = {"b": [1, 2.5], "a": "x"}
    sha = hashlib.sha256
    assert content_key(payload) == sha(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:16]
    assert content_key(payload, sort_keys=False) == sha(json.dumps(payload).encode()).hexdigest()[:16]
    assert content_key(payload, sort_keys=False) != content_key(payload)
    assert content_key(payload, length=12) == content_key(payload)[:12]
    assert content_key("already built") == sha(b"already built").hexdigest()[:16]
    assert content_key(b"\x00") == sha(b"\x00").hexdigest()[:16]
    assert content_key({"p": Path("a")}) == content_key({"p": "a"})  # values JSON cannot write: their str


def test_metric_key_replaces_what_trackers_refuse() -> None:
    assert metric_key("Reasoning&Instruct/loss") == "Reasoning_Instruct/loss"
    assert metric_key("en-lit.val_loss 2") == "en-lit.val_loss 2"


def test_keys_are_unchanged_by_the_shared_helper() -> None:
    """Values computed before the sites moved to `content_key`."""
    mixture = Mixture({"a": 1, "b": 2.5, "c": 0.3})
    catalog = DomainCatalog.from_mixture(mixture)
    assert mixture.key == "67ef4bc8e6af8509"
    assert catalog.data_hash == "0e00afd57b14829d"
    assert SearchSpace.from_catalog(catalog).fingerprint == "4289122973bbb4ee"
    assert TrainBudget(steps=10, micro_batch=2, global_batch=4).key == "bd6afa0ae7b2b101"
    keys = {name: (f(mla=False) if name == "openseek_small_proxy" else f()).key for name, f in PRESETS.items()}
    keys["openseek_small_proxy_mla"] = openseek_small_proxy(mla=True).key
    assert keys == PINNED_PRESET_KEYS

    run = run_name(
        mixture,
        PRESETS["moe_cpu"](),
        TrainBudget(steps=10, micro_batch=2, global_batch=4),
        catalog.data_hash,
        backends.get("deepspeed"),
        Parallelism(),
        1,
    )
    assert run == "moe_cpu-deepspeed-b360078d6b86"


PINNED_PRESET_KEYS = {
    "tiny_cpu": "f534921eadb05675",
    "moe_cpu": "4cdca45502652735",
    "moe_cpu_16m": "e992f88014b7bfa0",
    "moe_60m": "421bed9818f135a6",
    "openseek_small_proxy": "2a70cac8623ecbf9",
    "openseek_small_proxy_mla": "c6b422373ba9f498",
}
