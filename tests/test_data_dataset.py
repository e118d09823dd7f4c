"""BlendedSequenceDataset and friends: the contract the trainers use, stop strategies, caps, resume, ranks."""

from __future__ import annotations

import types
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from flows.cli.data import within_unit_counts
from mixture_search.errors import MixtureError
from mixture_search.mixture import Mixture
from tests.data_support import build_tiny_corpus
from trainers.data import BlendedSequenceDataset, Corpus, DataError, GlobalBatchSampler, WeightSchedule
from trainers.data.blend import make_targets
from trainers.data.engine import max_drift

MIX = Mixture({"prose": 4, "code": 3, "zh": 2, "digits": 1})


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Corpus:
    return Corpus.load(build_tiny_corpus(tmp_path_factory.mktemp("data") / "tiny"))


@pytest.fixture
def cache(tmp_path: Path) -> Path:
    return tmp_path / "cache"


def test_contract(corpus: Corpus, cache: Path) -> None:
    ds = BlendedSequenceDataset(corpus, MIX, seq_len=16, num_samples=500, seed=0, cache_dir=cache)
    assert len(ds) == 500
    assert ds.domains == corpus.domains
    item = ds[7]
    assert item["tokens"].dtype == torch.long and item["tokens"].shape == (17,)
    assert 0 <= item["domain"] < len(ds.domains)
    assert torch.equal(ds[-1]["tokens"], ds[499]["tokens"])
    with pytest.raises(IndexError):
        ds[500]
    # windows are seq_len + 1 tokens of the domain's concatenated documents, stride seq_len
    u, w = int(ds.unit_ids[7]), int(ds.windows[7])
    seg = corpus.domain(ds.spec.units[u]).train[0]
    flat = corpus.tokens(seg.prefix).array
    assert item["tokens"].tolist() == flat[w * 16 : w * 16 + 17].tolist()
    # achieved shares track the mixture within one sample at every prefix
    assert max_drift(np.asarray(ds.unit_ids), make_targets(ds.spec, 500)) <= 1.0 + 1e-9


def test_cached_arrays_are_memory_mapped_and_keyed_by_inputs(corpus: Corpus, cache: Path) -> None:
    a = BlendedSequenceDataset(corpus, MIX, seq_len=16, num_samples=300, seed=0, cache_dir=cache)
    b = BlendedSequenceDataset(corpus, MIX, seq_len=16, num_samples=300, seed=0, cache_dir=cache)
    assert a.cache_path == b.cache_path and isinstance(b.unit_ids, np.memmap)
    c = BlendedSequenceDataset(corpus, MIX, seq_len=16, num_samples=300, seed=1, cache_dir=cache)
    assert c.cache_path != a.cache_path
    assert np.array_equal(np.asarray(c.unit_ids), np.asarray(a.unit_ids))  # domains chosen the same way
    assert not np.array_equal(np.asarray(c.windows), np.asarray(a.windows))  # shuffled differently inside


def test_every_epoch_is_a_permutation_of_the_domain(corpus: Corpus, cache: Path) -> None:
    ds = BlendedSequenceDataset(corpus, Mixture({"digits": 1}), seq_len=16, num_samples=1000, cache_dir=cache)
    windows = ds.summary["windows"][0]
    w = np.asarray(ds.windows)
    for e in range(len(w) // windows):
        assert sorted(w[e * windows : (e + 1) * windows].tolist()) == list(range(windows))
    assert not np.array_equal(w[:windows], w[windows : 2 * windows])  # reshuffled per epoch


def test_files_and_groups_as_names(corpus: Corpus, cache: Path) -> None:
    files = Mixture({"prose/prose_train_text_document": 1, "zh/zh_train_text_document": 1})
    ds = BlendedSequenceDataset(corpus, files, seq_len=16, num_samples=100, cache_dir=cache)
    assert {ds.domains[ds[i]["domain"]] for i in range(100)} == {"prose", "zh"}
    groups = BlendedSequenceDataset(corpus, Mixture({"EN": 1, "ZH": 3}), seq_len=16, num_samples=100, cache_dir=cache)
    assert groups.spec.units == ("prose", "zh")
    with pytest.raises(MixtureError, match=r"^klingon: unknown domain"):
        BlendedSequenceDataset(corpus, Mixture({"prose": 1, "klingon": 1}), seq_len=16, num_samples=10, cache_dir=cache)


def test_zero_weight_domains_are_never_drawn(corpus: Corpus, cache: Path) -> None:
    ds = BlendedSequenceDataset(corpus, Mixture({"prose": 1, "zh": 0}), seq_len=16, num_samples=200, cache_dir=cache)
    assert ds.spec.units == ("prose",)
    assert {ds[i]["domain"] for i in range(200)} == {corpus.domains.index("prose")}


@pytest.mark.parametrize("mode", ["exact", "megatron"])
def test_first_exhausted_stops_at_the_first_full_epoch(corpus: Corpus, cache: Path, mode: str) -> None:
    ds = BlendedSequenceDataset(corpus, MIX, seq_len=16, stop="first_exhausted", mode=mode, cache_dir=cache)  # type: ignore[arg-type]
    s = ds.summary
    assert max(s["epochs"]) == 1.0 and all(e <= 1.0 for e in s["epochs"])
    # the stream is a prefix of the restart stream: no skew
    full = BlendedSequenceDataset(corpus, MIX, seq_len=16, num_samples=len(ds) + 50, mode=mode, cache_dir=cache)  # type: ignore[arg-type]
    assert np.array_equal(np.asarray(ds.unit_ids), np.asarray(full.unit_ids)[: len(ds)])


def test_all_exhausted_reads_every_domain_once_and_terminates(corpus: Corpus, cache: Path) -> None:
    ds = BlendedSequenceDataset(corpus, MIX, seq_len=16, stop="all_exhausted", cache_dir=cache)
    s = ds.summary
    assert min(s["epochs"]) == 1.0
    assert max_drift(np.asarray(ds.unit_ids), make_targets(ds.spec, len(ds))) <= 1.0 + 1e-9
    capped = BlendedSequenceDataset(corpus, MIX, seq_len=16, stop="all_exhausted", num_samples=100, cache_dir=cache)
    assert len(capped) == 100


def test_all_exhausted_refuses_what_would_not_terminate(corpus: Corpus, cache: Path) -> None:
    sched = WeightSchedule(((0, Mixture({"prose": 1, "zh": 1})), (5, Mixture({"prose": 1, "zh": 0}))), "step", 4)
    with pytest.raises(DataError, match=r"^zh: weight is zero from some point on"):
        BlendedSequenceDataset(corpus, None, seq_len=16, schedule=sched, stop="all_exhausted", cache_dir=cache)
    tiny = Mixture({"prose": 1.0, "zh": 1e-12})
    with pytest.raises(DataError, match=r"^zh: stop='all_exhausted' needs about"):
        BlendedSequenceDataset(corpus, tiny, seq_len=16, stop="all_exhausted", cache_dir=cache)


def test_epoch_caps(corpus: Corpus, cache: Path) -> None:
    ds = BlendedSequenceDataset(
        corpus, MIX, seq_len=16, num_samples=100_000, max_epochs={"digits": 0.5}, cache_dir=cache
    )
    s = ds.summary
    units = list(s["units"])
    assert s["samples"][units.index("digits")] <= s["windows"][units.index("digits")] // 2
    assert len(ds) == 100_000  # the others carry on
    everyone = BlendedSequenceDataset(corpus, MIX, seq_len=16, num_samples=100_000, max_epochs=2, cache_dir=cache)
    assert len(everyone) < 100_000 and all(e <= 2.0 for e in everyone.summary["epochs"])
    with pytest.raises(MixtureError, match=r"max_epochs\[zh\]: epoch cap -1 must be a positive number"):
        BlendedSequenceDataset(corpus, MIX, seq_len=16, num_samples=10, max_epochs={"zh": -1}, cache_dir=cache)


def test_schedule_follows_the_integral(corpus: Corpus, cache: Path) -> None:
    sched = WeightSchedule(
        ((0, Mixture({"prose": 0.2, "code": 0.8})), (50, Mixture({"prose": 0.5, "code": 0.5}))), "linear", 8
    )
    ds = BlendedSequenceDataset(corpus, None, seq_len=16, num_samples=1000, schedule=sched, cache_dir=cache)
    assert max_drift(np.asarray(ds.unit_ids), sched.targets(1000)) <= 1.0 + 1e-9
    with pytest.raises(DataError, match="megatron mode has no weight schedules"):
        BlendedSequenceDataset(
            corpus, None, seq_len=16, num_samples=10, schedule=sched, mode="megatron", cache_dir=cache
        )


def test_megatron_mode_is_megatron_bit_for_bit(corpus: Corpus, cache: Path) -> None:
    """Same dataset_index / dataset_sample_index as megatron-core's BlendedDataset builds for these weights."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from megatron.core.datasets.blended_dataset import BlendedDataset
        from megatron.core.datasets.utils import normalize

    n = 5000
    ds = BlendedSequenceDataset(corpus, MIX, seq_len=16, num_samples=n, mode="megatron", cache_dir=cache)
    meg = object.__new__(BlendedDataset)
    meg.config = types.SimpleNamespace(path_to_cache=None, defer_npy_index_mmap=False)
    meg.size = n
    meg.weights = normalize(list(MIX.weights))
    meg.datasets = [range(n)] * len(MIX)
    meg.split = types.SimpleNamespace(name="train")
    dataset_index, dataset_sample_index = meg._build_indices()
    assert np.array_equal(np.asarray(ds.unit_ids), dataset_index)
    assert np.array_equal(within_unit_counts(np.asarray(ds.unit_ids), len(MIX)), dataset_sample_index)


def test_resume_and_rank_invariance(corpus: Corpus, cache: Path) -> None:
    ds = BlendedSequenceDataset(corpus, MIX, seq_len=16, num_samples=480, cache_dir=cache)
    stream = [ds[i]["tokens"] for i in range(480)]
    g = 24
    for world in (1, 2, 4):
        per_rank = [list(GlobalBatchSampler(480, g, rank=r, world_size=world)) for r in range(world)]
        merged = []
        for b in range(480 // g):
            for r in range(world):
                merged += per_rank[r][b * (g // world) : (b + 1) * (g // world)]
        assert merged == list(range(480))
    resumed = list(GlobalBatchSampler(480, g, rank=1, world_size=2, consumed_samples=240))
    assert resumed == list(GlobalBatchSampler(480, g, rank=1, world_size=2))[len(resumed) :]
    # a fresh object over the same cache continues the same stream
    again = BlendedSequenceDataset(corpus, MIX, seq_len=16, num_samples=480, cache_dir=cache)
    assert all(torch.equal(again[i]["tokens"], stream[i]) for i in resumed)
    with pytest.raises(DataError, match="consumed_samples: consumed_samples 10 is not a multiple"):
        GlobalBatchSampler(480, g, consumed_samples=10)


@pytest.mark.integration
def test_loader_workers_do_not_change_the_stream(corpus: Corpus, cache: Path) -> None:
    ds = BlendedSequenceDataset(corpus, MIX, seq_len=16, num_samples=256, cache_dir=cache)
    sampler = GlobalBatchSampler(256, 32, rank=0, world_size=2)

    def batches(workers: int) -> list[torch.Tensor]:
        loader = torch.utils.data.DataLoader(ds, batch_size=16, sampler=sampler, num_workers=workers)
        return [b["tokens"] for b in loader]

    single, multi = batches(0), batches(2)
    assert len(single) == len(multi) == 8
    assert all(torch.equal(a, b) for a, b in zip(single, multi))
