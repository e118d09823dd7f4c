"""The search space: constraints, why it is empty, and the maps every sampler relies on."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mixture_search import Mixture, SearchSpace
from mixture_search.catalog import load_catalog
from mixture_search.errors import MixSweepError, SearchError
from tests.conftest import OPENSEEK_TOKENS


def capped() -> SearchSpace:
    """Four domains: a min on one, epoch caps on the small ones, one pinned."""
    return SearchSpace(
        domains=("web", "code", "math", "books"),
        tokens={"web": 60e9, "code": 8e9, "math": 2e9, "books": 1e9},
        target_tokens="100B",
        max_epochs=4,
        bounds={"web": (0.2, 0.9)},
        pinned={"books": 0.02},
    )


def grouped() -> SearchSpace:
    return SearchSpace(
        domains=("en_hi", "en_lo", "zh", "code_py", "code_c"),
        groups={"en": ["en_hi", "en_lo"], "zh": ["zh"], "code": ["code_py", "code_c"]},
        group_bounds={"code": (0.1, 0.3), "en": (0.4, 1.0)},
        bounds={"en_lo": (0.0, 0.2)},
    )


def test_caps_come_from_epochs_and_target_tokens() -> None:
    space = capped()
    assert space.caps == {"web": None, "code": pytest.approx(0.32), "math": pytest.approx(0.08), "books": 0.04}
    assert space.lower.tolist() == pytest.approx([0.2, 0, 0, 0.02])
    assert space.upper.tolist() == pytest.approx([0.9, 0.32, 0.08, 0.02])
    assert space.dim == 2  # three free domains on a simplex, one pinned
    rows = {r["domain"]: r for r in space.describe()}
    assert rows["books"]["pinned"] and rows["math"]["cap"] == pytest.approx(0.08)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"domains": ()}, "no domains"),
        ({"domains": ("a", "a")}, "domains.a: domain listed twice"),
        ({"bounds": {"a": (0.7, 1)}, "pinned": {"b": 0.5}}, "minimum and pinned shares add up to 1.2 > 1"),
        ({"bounds": {"a": (0, 0.2), "b": (0, 0.2), "c": (0, 0.2)}}, "maximum shares and caps add up to 0.6 < 1"),
        ({"bounds": {"a": (0.5, 0.2)}}, "bounds.a: min 0.5 is above max 0.2"),
        ({"bounds": {"z": (0, 1)}}, "bounds.z: unknown domain"),
        ({"pinned": {"a": 1.5}}, "pinned.a: share 1.5 must be in [0, 1]"),
        ({"max_epochs": 4, "tokens": [1, 2, 3]}, "max_epochs needs target_tokens"),
        ({"max_epochs": 4, "target_tokens": 100, "tokens": {"a": 1, "b": 2}}, "tokens.c: max_epochs needs the token"),
        ({"tokens": [1, 2, 3], "target_tokens": 1000, "max_epochs": 2}, "caps add up to 0.012 < 1"),
        (
            {"tokens": [1, 2, 300], "target_tokens": 1000, "max_epochs": 2, "bounds": {"a": (0.1, 1)}},
            "a: min share 0.1 is above the cap 0.002 (2 epochs of 1 tokens in a 1k-token run)",
        ),
        ({"groups": {"g": ["a", "b"]}}, "c: domain is in no group"),
        ({"groups": {"g": ["a", "b"], "h": ["b", "c"]}}, "b: domain is in two groups"),
        ({"groups": {"g": ["a"], "h": ["b", "c"]}, "group_bounds": {"g": (0.6, 1), "h": (0.6, 1)}}, "group minimums"),
        ({"target_tokens": "lots"}, "target_tokens: 'lots' is not a count"),
    ],
)
def test_an_impossible_space_says_why_in_one_line(kwargs: dict, message: str) -> None:
    args = {"domains": ("a", "b", "c"), **kwargs}
    with pytest.raises(MixSweepError) as info:
        SearchSpace(**args)
    assert message in str(info.value)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("make", [capped, grouped, lambda: SearchSpace(domains=tuple("abcdefgh"))])
def test_unit_cube_maps_onto_the_space_and_back(make) -> None:
    space = make()
    rng = np.random.default_rng(0)
    U = rng.random((2000, space.dim))
    X = space.from_unit(U)
    assert np.all(space.contains(X))
    assert np.allclose(space.from_unit(space.to_unit(X)), X, atol=1e-10)
    # corners of the cube are feasible too
    corners = np.array([[0.0] * space.dim, [1.0] * space.dim])
    assert np.all(space.contains(space.from_unit(corners)))


def test_unit_map_is_uniform_on_the_plain_simplex() -> None:
    space = SearchSpace(domains=tuple("abcd"))
    X = space.sample_uniform(np.random.default_rng(1), 40_000)
    assert np.allclose(X.mean(axis=0), 0.25, atol=0.01)
    # each share of a uniform point on the 4-simplex is Beta(1, 3): P(x < 0.1) = 1 - 0.9^3
    assert np.allclose((X < 0.1).mean(axis=0), 1 - 0.9**3, atol=0.015)


@settings(max_examples=60)
@given(st.lists(st.floats(-3, 3, allow_nan=False), min_size=5, max_size=5))
def test_projection_is_feasible_and_idempotent(values: list[float]) -> None:
    for space in (grouped(), SearchSpace(domains=tuple("abcde"), bounds={"a": (0.1, 0.3), "e": (0, 0.05)})):
        x = space.project(np.array(values))
        assert space.contains(x)
        assert np.allclose(space.project(x), x, atol=1e-9)


def test_projection_is_the_nearest_point_without_groups() -> None:
    space = SearchSpace(domains=tuple("abc"), bounds={"a": (0, 0.5)})
    y = np.array([0.9, 0.3, -0.2])
    x = space.project(y)
    others = space.sample_uniform(np.random.default_rng(0), 20_000)
    assert np.linalg.norm(x - y) <= np.linalg.norm(others - y, axis=1).min() + 1e-9


def test_dirichlet_is_hierarchical_and_keeps_pins() -> None:
    space = SearchSpace(
        domains=("a1", "a2", "b1", "b2", "p"),
        groups={"a": ["a1", "a2"], "b": ["b1", "b2", "p"]},
        pinned={"p": 0.1},
        prior={"a1": 8, "a2": 2, "b1": 5, "b2": 5, "p": 1},
    )
    X = space.dirichlet(np.random.default_rng(0), np.full(20_000, 50.0))
    assert np.allclose(X.sum(axis=1), 1) and np.allclose(X[:, 4], 0.1)
    # high strength: close to the prior over the free domains (a1: 0.9 * 8/20)
    assert X[:, 0].mean() == pytest.approx(0.9 * 8 / 20, abs=0.01)
    low = space.dirichlet(np.random.default_rng(0), np.full(2000, 0.05))
    assert (low[:, :4] < 1e-3).mean() > 0.4  # low strength: sparse, corner-like mixtures


def test_mixtures_in_and_out() -> None:
    space = capped()
    m = Mixture({"web": 70, "code": 20, "math": 8, "books": 2})
    assert space.to_array(m).tolist() == pytest.approx([0.7, 0.2, 0.08, 0.02])
    assert space.contains(m)
    assert space.violation(Mixture({"web": 60, "code": 35, "math": 3, "books": 2})) == (
        "code: share 0.35 is above the cap 0.32 (4 epochs of 8B tokens in a 100B-token run)"
    )
    with pytest.raises(SearchError, match="poetry: mixture names a domain"):
        space.to_array(Mixture({"web": 1, "code": 1, "math": 1, "books": 1, "poetry": 1}))
    with pytest.raises(SearchError, match="books: mixture has no weight"):
        space.to_array(Mixture({"web": 1, "code": 1, "math": 1}))
    back = space.to_mixture(space.to_array(m))
    assert back == m and back.names == space.domains


def test_from_catalog_on_openseek_groups() -> None:
    catalog = load_catalog(OPENSEEK_TOKENS)
    space = SearchSpace.from_catalog(catalog, level="domain", target_tokens="100B", max_epochs=4, groups="catalog")
    assert space.size == 79 and len(space.group_names) == 15 and space.hierarchical
    assert sum(c is not None for c in space.caps.values()) > 50  # most OpenSeek domains are small
    X = space.sample_uniform(np.random.default_rng(0), 200)
    assert np.all(space.contains(X))
    groups = SearchSpace.from_catalog(catalog, level="group")
    assert groups.size == 15 and groups.prior_shares.sum() == pytest.approx(1)


def test_anchors_are_natural_and_uniform_inside_the_space() -> None:
    space = capped()
    natural, uniform = space.anchor("natural"), space.anchor("uniform")
    assert all(space.contains(x) for x in (natural, uniform))
    assert natural.tolist() == pytest.approx(space.project(space.token_counts / space.token_counts.sum()).tolist())
    assert uniform.tolist() == pytest.approx(space.project(np.full(space.size, 0.25)).tolist())
    assert uniform[3] == pytest.approx(0.02) and uniform[2] == pytest.approx(0.08)  # pinned, then capped
    free = SearchSpace(domains=("a", "b", "c"))  # no token counts: natural is the prior (here uniform)
    assert free.anchor("natural").tolist() == pytest.approx([1 / 3] * 3)
    with pytest.raises(SearchError, match=r"^anchors: unknown anchor 'best'"):
        space.anchor("best")
