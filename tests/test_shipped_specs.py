"""Every spec shipped in `deploy/specs/` loads: sweeps as `SweepSpec`, `validate*.yaml` as `ValidateSpec`
whose sweep (a path) loads too. A spec that the code has outgrown fails here, not in a user's hands."""

from __future__ import annotations

from pathlib import Path

import pytest

from flows.steps.spec import SweepSpec, load_spec
from flows.steps.validate import load_validate_spec

REPO = Path(__file__).resolve().parents[1]
SPECS = sorted((REPO / "deploy" / "specs").glob("*.yaml"))


def test_there_are_specs() -> None:
    assert any(p.name.startswith("validate") for p in SPECS) and any(p.name == "demo.yaml" for p in SPECS)


@pytest.mark.parametrize("path", SPECS, ids=[p.name for p in SPECS])
def test_a_shipped_spec_loads(path: Path) -> None:
    if not path.name.startswith("validate"):
        assert isinstance(load_spec(path), SweepSpec)
        return
    spec = load_validate_spec(path)
    if isinstance(spec.sweep, str):
        assert (REPO / spec.sweep).is_file(), spec.sweep
        assert isinstance(load_spec(REPO / spec.sweep), SweepSpec)
