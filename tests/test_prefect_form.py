"""The sweep and validate flows as Prefect run forms: typed parameters whose schema describes every field
and offers the registries' names as choices, deployments whose form opens with their spec file's values,
and the schema check Prefect's API runs on a flow run's parameters (the same validator, without a server)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from prefect.utilities.callables import parameter_schema
from prefect.utilities.schema_tools import ValidationError, validate
from ruamel.yaml import YAML

from flows.stack.local import REPO, StackError, inline_spec_files
from flows.steps.spec import load_spec
from flows.sweep import sweep
from flows.validate import validate as validate_flow
from mixture_search.samplers import SAMPLERS
from mixture_search.surrogates import SURROGATES
from trainers.presets import PRESETS

SWEEP_SCHEMA = parameter_schema(sweep.fn).model_dump_for_openapi()
VALIDATE_SCHEMA = parameter_schema(validate_flow.fn).model_dump_for_openapi()


def _undescribed(schema: dict[str, Any]) -> list[str]:
    """Fields of the `spec` parameter's model (nested models included) without a description."""
    defs = schema["definitions"]
    missing: list[str] = []

    def walk(name: str, path: str, seen: frozenset[str]) -> None:
        for key, prop in defs[name].get("properties", {}).items():
            if not prop.get("description"):
                missing.append(f"{path}.{key}")
            refs = [alt["$ref"] for alt in [prop, *prop.get("anyOf", []), prop.get("items", {})] if "$ref" in alt]
            for ref in refs:
                child = ref.rsplit("/", 1)[-1]
                if child not in seen:
                    walk(child, f"{path}.{key}", seen | {child})

    top = schema["properties"]["spec"]["anyOf"][0]["$ref"].rsplit("/", 1)[-1]
    walk(top, "spec", frozenset({top}))
    return missing


@pytest.mark.parametrize("schema", [SWEEP_SCHEMA, VALIDATE_SCHEMA], ids=["sweep", "validate"])
def test_every_field_of_the_form_has_help(schema: dict[str, Any]) -> None:
    assert schema["properties"]["spec"]["anyOf"][1] == {"type": "string"}  # a path or YAML text still works
    assert _undescribed(schema) == []


def test_choices_are_drop_downs() -> None:
    defs = SWEEP_SCHEMA["definitions"]
    assert defs["SearchSpec"]["properties"]["sampler"]["enum"] == list(SAMPLERS.names())
    adaptive = defs["SearchSpec"]["properties"]["adaptive"]["anyOf"]
    assert {"type": "null"} in adaptive and any(a.get("enum") == list(SAMPLERS.names()) for a in adaptive)
    surrogates = defs["SearchSpec"]["properties"]["surrogate"]["enum"]
    assert surrogates == [n for n in SURROGATES.names() if n != "scale_law_repeat"]  # offline only: --domain-tokens
    assert defs["ProxySpec"]["properties"]["preset"]["enum"] == list(PRESETS)
    assert set(defs["SweepSpec"]["properties"]["backend"]["enum"]) == {"auto", "megatron", "deepspeed"}
    assert defs["ObjectiveSpec"]["properties"]["maximize"]["type"] == "boolean"
    assert VALIDATE_SCHEMA["definitions"]["TargetSpec"]["properties"]["preset"]["enum"] == list(PRESETS)


def test_deployments_open_with_their_spec_files_values(tmp_path: Path) -> None:
    original = YAML(typ="safe").load((REPO / "deploy" / "prefect.yaml").read_text())
    inlined = YAML(typ="safe").load(
        inline_spec_files(REPO / "deploy" / "prefect.yaml", tmp_path / "d.yaml").read_text()
    )
    assert [d["name"] for d in inlined["deployments"]] == [d["name"] for d in original["deployments"]]
    for before, after in zip(original["deployments"], inlined["deployments"], strict=True):
        spec_file = REPO / before["parameters"]["spec"]
        assert after["parameters"]["spec"] == YAML(typ="safe").load(spec_file.read_text())
        schema = SWEEP_SCHEMA if after["entrypoint"].endswith(":sweep") else VALIDATE_SCHEMA
        assert validate(after["parameters"], schema, raise_on_error=True, ignore_required=True) == []
        if schema is SWEEP_SCHEMA:  # and the flow reads the mapping as it reads the file
            assert load_spec(after["parameters"]["spec"]) == load_spec(spec_file)
    assert after.get("work_pool") == before.get("work_pool")  # anchors and aliases survive the round trip


def test_a_missing_spec_file_is_one_line(tmp_path: Path) -> None:
    bad = tmp_path / "prefect.yaml"
    bad.write_text(
        "deployments:\n  - name: x\n    entrypoint: flows/sweep.py:sweep\n    parameters: {spec: no/such.yaml}\n"
    )
    with pytest.raises(StackError, match=r"x\.parameters\.spec"):
        inline_spec_files(bad, tmp_path / "out.yaml")


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"search": {"rounds": 0}}, "rounds"),
        ({"search": {"sampler": "no-such-sampler"}}, "sampler"),
        ({"search": {"round": 2}}, "round"),
        ({"proxy": {"preset": "gpt5"}}, "preset"),
        ({"max_concurrent": "two"}, "max_concurrent"),
    ],
)
def test_the_api_refuses_a_bad_form_naming_the_field(change: dict[str, Any], field: str) -> None:
    spec = YAML(typ="safe").load((REPO / "deploy" / "specs" / "smoke.yaml").read_text())
    for key, value in change.items():
        spec[key] = {**spec.get(key, {}), **value} if isinstance(value, dict) else value
    with pytest.raises(ValidationError, match=field):
        validate({"spec": spec}, SWEEP_SCHEMA, raise_on_error=True)
