"""Property-based tests of mixture parsing (Megatron data_path lists and strings, however written) and of
the blended stream as the trainers see it (`BlendedSequenceDataset` over a real prepared corpus)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mixture_search.formats import _NUMBER, parse_data_path, to_data_path, to_data_path_string
from mixture_search.mixture import Mixture
from trainers.data import BlendedSequenceDataset, Corpus
from trainers.data.blend import make_targets
from trainers.data.engine import max_drift

# a name the parser reads as a number (nan and inf included) cannot be a path: such names are not drawn
names_st = st.lists(
    st.text(
        alphabet=st.characters(whitelist_categories=("L", "N"), whitelist_characters="_-/."), min_size=1, max_size=16
    ).filter(lambda s: not _NUMBER.match(s) and s.strip("./") != "" and not s.startswith("/")),
    min_size=1,
    max_size=10,
    unique=True,
)
weight_st = st.one_of(
    st.floats(0, 1e6, allow_nan=False, allow_infinity=False), st.integers(0, 10**6).map(float), st.just(0.0)
)


@st.composite
def mixtures(draw: st.DrawFn) -> Mixture:
    names = draw(names_st)
    weights = draw(st.lists(weight_st, min_size=len(names), max_size=len(names)))
    if not any(w > 0 for w in weights):
        weights[draw(st.integers(0, len(names) - 1))] = draw(st.floats(1e-6, 1e3))
    return Mixture(zip(names, weights))


@given(mixtures(), st.lists(st.sampled_from([" ", "  ", "\t", "\n", " \n\t "]), min_size=1, max_size=40), st.data())
def test_data_path_string_parses_the_same_however_spaced(m: Mixture, gaps: list[str], data: st.DataObject) -> None:
    """Megatron splits `--data-path` on whitespace: any spacing and any float spelling give one mixture."""
    tokens = to_data_path_string(m).split()
    spelled = [
        (
            data.draw(
                st.sampled_from([repr, lambda x: f"{x!r}".upper(), lambda x: str(int(x)) if x == int(x) else repr(x)])
            )(float(t))
        )
        if i % 2 == 0
        else t
        for i, t in enumerate(tokens)
    ]
    text = "".join(tok + gaps[i % len(gaps)] for i, tok in enumerate(spelled))
    parsed = parse_data_path(text.split())
    assert parsed.pairs == m.pairs
    assert parsed.key == m.key


@given(mixtures())
def test_data_path_list_numbers_and_strings_agree(m: Mixture) -> None:
    as_numbers = to_data_path(m)
    as_strings = [repr(x) if isinstance(x, float) else x for x in as_numbers]
    assert parse_data_path(as_numbers).pairs == parse_data_path(as_strings).pairs == m.pairs


@given(mixtures())
def test_base_expression_strips_back_to_the_names(m: Mixture) -> None:
    base = "${experiment.dataset_base_dir}"
    entries = to_data_path(m, base_expr=base)
    assert all(str(p).startswith(base + "/") for p in entries[1::2])
    assert parse_data_path(entries, strip=base).pairs == m.pairs


@given(mixtures(), st.floats(1e-3, 1e3))
def test_normalisation_invariants(m: Mixture, scale: float) -> None:
    shares = m.normalized
    assert math.isclose(math.fsum(shares), 1.0, rel_tol=0, abs_tol=1e-12)
    assert all((s == 0) == (w == 0) for s, w in zip(shares, m.weights))
    assert [m.share(n) for n in m.names] == list(shares)
    scaled = Mixture([(n, w * scale) for n, w in m.pairs])
    assert all(math.isclose(a, b, rel_tol=1e-12, abs_tol=1e-300) for a, b in zip(scaled.normalized, shares))
    assert scaled.names == m.names  # order is part of the value and survives scaling
    # shares equal to 1e-9 give the same cache key; the key is stable for the value, not its spelling
    assert Mixture(m.pairs).key == m.key


# -- the blended stream ---------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def corpus(sweep_corpus: Path) -> Corpus:
    return Corpus.load(sweep_corpus)


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("blend-cache")


blend_weights_st = st.lists(
    st.one_of(st.just(0.0), st.floats(1e-3, 1.0), st.integers(1, 9).map(float)), min_size=4, max_size=4
).filter(lambda w: sum(w) > 0)


@settings(max_examples=15)
@given(
    weights=blend_weights_st,
    n=st.integers(1, 3000),
    seed=st.integers(0, 2**31 - 1),
    seq_len=st.sampled_from([8, 16, 33]),
)
def test_blended_stream_invariants(
    corpus: Corpus, cache: Path, weights: list[float], n: int, seed: int, seq_len: int
) -> None:
    mix = Mixture(zip(corpus.domains, weights))
    ds = BlendedSequenceDataset(corpus, mix, seq_len=seq_len, num_samples=n, seed=seed, cache_dir=cache)
    units = np.asarray(ds.unit_ids)
    windows = np.asarray(ds.windows)
    assert len(ds) == len(units) == len(windows) == n
    # every index in range: a known unit, a window that exists in it, a domain of the corpus
    assert units.min() >= 0 and units.max() < len(ds.units)
    limits = np.array([u.windows for u in ds.units])
    assert np.all(windows >= 0) and np.all(windows < limits[units])
    assert set(np.unique(ds.domain_ids)) <= set(range(len(corpus.domains)))
    # per-domain counts: every prefix within one sample of weight x prefix length; zero weights never drawn
    assert max_drift(units, make_targets(ds.spec, n)) <= 1.0 + 1e-9
    drawn = {corpus.domains[d] for d in np.unique(ds.domain_ids)}
    assert not {name for name, w in zip(corpus.domains, weights) if w == 0} & drawn
    # each sample is seq_len + 1 tokens of its own domain
    for i in {0, n // 2, n - 1}:
        item = ds[i]
        assert item["tokens"].shape == (seq_len + 1,)
        assert item["domain"] == int(ds.domain_ids[i])
    # deterministic for a seed: a fresh build (another cache folder) gives the same stream
    again = BlendedSequenceDataset(corpus, mix, seq_len=seq_len, num_samples=n, seed=seed, cache_dir=cache / "again")
    assert np.array_equal(np.asarray(again.unit_ids), units) and np.array_equal(np.asarray(again.windows), windows)
    # the seed only permutes windows inside a domain: the domain sequence does not depend on it
    other = BlendedSequenceDataset(corpus, mix, seq_len=seq_len, num_samples=n, seed=seed + 1, cache_dir=cache)
    assert np.array_equal(np.asarray(other.unit_ids), units)
    for u in np.unique(units):  # within one epoch of a domain, windows are distinct (a permutation)
        mine = windows[units == u][: limits[u]]
        assert len(np.unique(mine)) == len(mine)
