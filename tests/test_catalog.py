from __future__ import annotations

from pathlib import Path

import pytest

from mixture_search.catalog import DataFile, DomainCatalog, domain_of, load_catalog, parse_labels
from mixture_search.errors import MixtureError
from mixture_search.formats import read_mixture
from mixture_search.mixture import Mixture
from tests.conftest import OPENSEEK_EXPERIMENT, OPENSEEK_TOKENS


@pytest.mark.parametrize(
    ("name", "labels"),
    [
        (
            "Nemotron-CC-high-actual-actual-high",
            {"source": "Nemotron-CC", "quality": "high", "kind": "actual-actual", "bucket": "high"},
        ),
        (
            "Nemotron-CC-low-synthetic-wrap_medium-mid",
            {"source": "Nemotron-CC", "quality": "low", "kind": "synthetic-wrap_medium", "bucket": "mid"},
        ),
        (
            "Nemotron-CC-high-synthetic-diverse_qa_pairs-low",
            {"source": "Nemotron-CC", "quality": "high", "kind": "synthetic-diverse_qa_pairs", "bucket": "low"},
        ),
        ("zh_cc-medidum-loss2", {"source": "zh_cc", "quality": "medidum", "bucket": "loss2"}),
        ("code-high", {"source": "code", "quality": "high"}),
        ("cot_synthesis2_arxiv-mid", {"source": "cot_synthesis2_arxiv", "quality": "mid"}),
        ("pes2o-full-train", {"source": "pes2o", "split": "full-train"}),
        ("books", {"source": "books"}),
    ],
)
def test_parse_labels(name: str, labels: dict[str, str]) -> None:
    assert parse_labels(name) == labels


def test_domain_of() -> None:
    assert domain_of("cot_synthesis2_CC-mid/118_text_document") == "cot_synthesis2_CC-mid"
    assert domain_of("/data/x/code/part_1_text_document") == "code"
    assert domain_of("web_text_document") == "web"


def catalog() -> DomainCatalog:
    return DomainCatalog.from_tokens_csv(OPENSEEK_TOKENS)


def test_openseek_catalog_shape() -> None:
    cat = catalog()
    assert len(cat.files) == 84 and len(cat.domains) == 79 and len(cat.group_names) == 15
    assert [f.prefix.rsplit("/", 1)[1] for f in cat.domain("cot_synthesis2_CC-mid").files] == [
        "118_text_document", "176_text_document", "256_text_document", "320_text_document", "32_text_document",
    ]  # fmt: skip
    assert cat.domain("code-high").group == "Code" and cat.domain("code-high").labels["quality"] == "high"
    assert sum(t or 0 for t in cat.tokens("group").values()) == 103_046_725_444
    assert cat.level_of(read_mixture(OPENSEEK_EXPERIMENT).mixture) == "file"


def test_expand_group_weights_by_tokens_and_collapse_back() -> None:
    cat = catalog()
    groups = Mixture({g: 1.0 for g in cat.group_names})
    files = cat.expand(groups)
    assert len(files) == 84 and cat.level_of(files) == "file"
    code = cat.units("group")["Code"]
    total = sum(f.tokens or 0 for f in code)
    for f in code:  # within a group, weight follows tokens
        assert files[f.prefix] == pytest.approx((f.tokens or 0) / total)
    back = cat.collapse(files, "group")
    assert back == groups
    assert cat.collapse(cat.expand(Mixture({"code-high": 3, "math-high": 1})), "domain").share(
        "code-high"
    ) == pytest.approx(0.75)
    with pytest.raises(MixtureError, match="finer level"):
        cat.collapse(groups, "file")


def test_epochs_at_budget() -> None:
    cat = catalog()
    m = read_mixture(OPENSEEK_EXPERIMENT).mixture
    ep = cat.epochs(m, 103_046_725_444)
    # token-proportional mixture: one pass over everything (weights are rounded to 4 digits of a percent)
    assert all(abs((e or 0) - 1) < 5e-3 for e in ep.values())


def test_unknown_names_and_catalog_errors(tmp_path: Path) -> None:
    cat = catalog()
    with pytest.raises(MixtureError, match="klingon: unknown domain"):
        cat.level_of(Mixture({"klingon": 1, "code-high": 1}))
    with pytest.raises(MixtureError, match="mixes files, domains and groups"):
        cat.level_of(Mixture({"Code": 1, "code-high": 1}))
    with pytest.raises(MixtureError, match="file listed twice"):
        DomainCatalog.from_files([DataFile("a/x"), DataFile("a/x")])
    with pytest.raises(MixtureError, match="token count unknown"):
        DomainCatalog.from_files([DataFile("a/x"), DataFile("a/y", 5)]).expand(Mixture({"a": 1}))


def test_catalog_file_round_trip(tmp_path: Path) -> None:
    import json

    cat = catalog()
    (tmp_path / "catalog.json").write_text(json.dumps(cat.to_dict()))
    back = load_catalog(tmp_path / "catalog.json")
    assert back.data_hash == cat.data_hash and back.domains == cat.domains
    assert (
        DomainCatalog.from_files([DataFile("a/x", 1)]).data_hash
        != DomainCatalog.from_files([DataFile("a/x", 2)]).data_hash
    )
