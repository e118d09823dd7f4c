"""Repetition-matched proxies (`trainers.data.subsets`): the subset arithmetic, the blend reading only each
domain's subset (keyed and cached apart, and exactly today's blend without one), and one real training."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from mixture_search.keys import content_key
from mixture_search.mixture import Mixture
from tests.data_support import build_tiny_corpus
from trainers.budget import TrainBudget
from trainers.data import BlendedSequenceDataset, Corpus, DataError
from trainers.data.blend import ENGINE_VERSION, BlendSpec
from trainers.data.subsets import keep_fraction, repetition_plan, subset_sizes, subset_windows
from trainers.presets import tiny_cpu
from trainers.train import train


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Corpus:
    return Corpus.load(build_tiny_corpus(tmp_path_factory.mktemp("subsets") / "tiny"))


# -- arithmetic ----------------------------------------------------------------------------------------


def test_the_kept_fraction_is_proxy_over_target_tokens_capped_by_the_corpus() -> None:
    assert keep_fraction(1_000, 40_000) == 0.025
    assert keep_fraction(50_000, 40_000) == 1.0  # a proxy larger than the target reads the whole corpus
    assert list(subset_sizes([400, 1000, 7, 1], 0.25)) == [100, 250, 2, 1]  # ceil, exact products stay exact
    assert list(subset_sizes([400, 3], 1e-6)) == [1, 1]  # every domain keeps a window
    assert list(subset_sizes([400], 1.0)) == [400]
    with pytest.raises(DataError, match=r"space\.target_tokens"):
        keep_fraction(1_000, 0)
    with pytest.raises(DataError, match=r"\(0, 1\]"):
        subset_sizes([10], 1.5)


def test_subsets_are_deterministic_sorted_spread_and_nested() -> None:
    a = subset_windows(0, "code", 1000, 100)
    assert np.array_equal(a, subset_windows(0, "code", 1000, 100))
    assert len(np.unique(a)) == 100 and np.all(np.diff(a) > 0) and a.min() >= 0 and a.max() < 1000
    assert a.max() - a.min() > 500  # spread over the domain, not one end of it
    assert set(a) <= set(subset_windows(0, "code", 1000, 300))  # a larger proxy's subset holds a smaller's
    assert not np.array_equal(a, subset_windows(1, "code", 1000, 100))  # another seed, another subset
    assert not np.array_equal(a, subset_windows(0, "zh", 1000, 100))
    assert np.array_equal(subset_windows(0, "code", 50, 50), np.arange(50))


def test_each_domain_repeats_in_the_proxy_as_in_the_target() -> None:
    tokens = {"big": 100_001, "scarce": 2_001, "unused": 5_001}
    shares = {"big": 0.7, "scarce": 0.3, "unused": 0.0}
    plan = {d.name: d for d in repetition_plan(tokens, shares, seq_len=10, proxy_tokens=4_000, target_tokens=40_000)}
    assert set(plan) == {"big", "scarce"}  # a domain without share is not read
    assert (plan["big"].windows, plan["big"].subset) == (10_000, 1_000)
    assert (plan["scarce"].windows, plan["scarce"].subset) == (200, 20)
    for d in plan.values():
        assert d.proxy_epochs == pytest.approx(d.target_epochs, rel=1e-3)
    assert plan["scarce"].target_epochs == pytest.approx(0.3 * 40_000 / 2_001)  # ~6 epochs in the target
    # the same mixture without matching: the proxy would read the scarce domain 0.6 times, never repeating it
    assert 0.3 * 4_000 / 2_001 < 1 < plan["scarce"].proxy_epochs


# -- the blend reads only the subset -------------------------------------------------------------------


def test_the_blend_reads_only_each_domains_subset(corpus: Corpus, tmp_path: Path) -> None:
    mixture = Mixture({"code": 0.5, "prose": 0.3, "zh": 0.2})
    full = BlendedSequenceDataset(corpus, mixture, seq_len=16, num_samples=3000, seed=3, cache_dir=tmp_path)
    part = BlendedSequenceDataset(corpus, mixture, seq_len=16, num_samples=3000, seed=3, cache_dir=tmp_path, subset=0.1)
    assert part.spec.key != full.spec.key and part.cache_path != full.cache_path
    assert np.array_equal(np.asarray(part.unit_ids), np.asarray(full.unit_ids))  # the same domain order
    summary = part.summary
    for u, unit in enumerate(part.units):
        keep = int(subset_sizes([unit.windows], 0.1)[0])
        allowed = subset_windows(3, unit.name, unit.windows, keep)
        drawn = np.asarray(part.windows)[np.asarray(part.unit_ids) == u]
        assert set(np.unique(drawn)) <= set(allowed.tolist())
        assert len(drawn) > keep and len(np.unique(drawn)) == keep  # every subset window read, nothing else
        assert summary["subset"][u] == keep and summary["corpus_windows"][u] == unit.windows
        assert summary["epochs"][u] == pytest.approx(len(drawn) / keep)
        full_drawn = np.asarray(full.windows)[np.asarray(full.unit_ids) == u]
        assert len(np.unique(full_drawn)) > keep  # without the subset the same stream spreads wider
    i = int(np.flatnonzero(np.asarray(part.unit_ids) == 0)[5])  # the tokens are the subset window's
    w = int(part.windows[i])
    reader_tokens = part._readers[0].window(w)
    assert np.array_equal(part[i]["tokens"].numpy(), reader_tokens)
    # cached: a second dataset memory-maps the same arrays
    again = BlendedSequenceDataset(
        corpus, mixture, seq_len=16, num_samples=3000, seed=3, cache_dir=tmp_path, subset=0.1
    )
    assert again.cache_path == part.cache_path and np.array_equal(np.asarray(again.windows), np.asarray(part.windows))


def test_without_a_subset_the_blend_key_is_todays(corpus: Corpus, tmp_path: Path) -> None:
    mixture = Mixture({"code": 0.6, "zh": 0.4})
    plain = BlendedSequenceDataset(corpus, mixture, seq_len=16, num_samples=100, seed=0, cache_dir=tmp_path)
    whole = BlendedSequenceDataset(corpus, mixture, seq_len=16, num_samples=100, seed=0, cache_dir=tmp_path, subset=1.0)
    spec = plain.spec
    today = {
        "v": ENGINE_VERSION,
        "units": spec.units,
        "weights": [round(w, 15) for w in spec.weights],
        "schedule": None,
        "seq_len": 16,
        "n": 100,
        "seed": 0,
        "mode": "exact",
        "stop": "restart",
        "max_epochs": spec.max_epochs,
        "data": corpus.data_hash,
    }
    assert spec.key == content_key(today, length=20, sort_keys=False)
    assert whole.spec.subset is None and whole.spec.key == spec.key  # the whole corpus is no subset
    assert BlendSpec(**{**spec.__dict__, "subset": (5, 5)}).key != spec.key


def test_bad_subsets_are_one_line_errors(corpus: Corpus, tmp_path: Path) -> None:
    mixture = Mixture({"code": 0.6, "zh": 0.4})
    kw = {"seq_len": 16, "num_samples": 100, "cache_dir": tmp_path}
    with pytest.raises(DataError, match=r"subset\[zh\]"):
        BlendedSequenceDataset(corpus, mixture, subset={"zh": 0}, **kw)  # type: ignore[arg-type]
    with pytest.raises(Exception, match=r"subset\[klingon\]"):
        BlendedSequenceDataset(corpus, mixture, subset={"klingon": 3}, **kw)  # type: ignore[arg-type]
    with pytest.raises(DataError, match="subset"):
        BlendedSequenceDataset(corpus, mixture, subset=0.0, **kw)  # type: ignore[arg-type]


# -- one real training ---------------------------------------------------------------------------------


def test_a_repetition_matched_proxy_trains_on_its_subsets(train_corpus: Path, tmp_path: Path) -> None:
    """A real Megatron-Core proxy trained against a target 200x its tokens: each domain keeps 1/200 of its
    windows, so the proxy reads each domain as many times over as the target run will (here more than
    once, where the unmatched proxy reads a tenth of each); the run is keyed apart from the unmatched one."""
    proxy = tiny_cpu(seq_len=32)
    budget = TrainBudget(steps=12, micro_batch=4, global_batch=4, lr=3e-3, eval_interval=6)
    tokens = 12 * 4 * 32
    target = 200 * tokens
    mixture = Mixture({"prose": 0.5, "sums": 0.5})
    matched = train(mixture, train_corpus, proxy, budget, "megatron", tmp_path, target_tokens=target)
    assert matched.status == "completed" and matched.loss_curve[-1] < matched.loss_curve[0]
    assert sum(matched.tokens_per_domain.values()) == tokens
    corpus = Corpus.load(train_corpus)
    ds = BlendedSequenceDataset(
        corpus, mixture, seq_len=32, num_samples=12 * 4, seed=0, subset=keep_fraction(tokens, target)
    )
    corpus_tokens = {d.name: d.train_tokens for d in corpus.domain_info}
    plan = repetition_plan(
        corpus_tokens, {"prose": 0.5, "sums": 0.5}, seq_len=32, proxy_tokens=tokens, target_tokens=target
    )
    assert ds.summary["subset"] == [d.subset for d in plan]
    for d, epochs in zip(plan, ds.summary["epochs"]):
        assert d.target_epochs > 1  # the target run repeats each domain ...
        assert epochs == pytest.approx(d.proxy_epochs, abs=1 / d.subset)  # ... and so does the proxy, as planned
        assert epochs == pytest.approx(d.target_epochs, rel=0.25)  # up to the rounding of a small subset
        assert 0.5 * tokens / corpus_tokens[d.name] < 0.2  # unmatched, the proxy would barely read it once
    plain = train(mixture, train_corpus, proxy, budget, "megatron", tmp_path)
    assert Path(plain.run_dir).name != Path(matched.run_dir).name  # other data, another run
    assert plain.loss_curve[0] == pytest.approx(matched.loss_curve[0], abs=0.2)  # the same model and start
    assert plain.loss_curve != matched.loss_curve
    again = train(mixture, train_corpus, proxy, budget, "megatron", tmp_path, target_tokens=target)
    assert again.run_dir == matched.run_dir and again.loss_curve == matched.loss_curve  # keyed and reused
