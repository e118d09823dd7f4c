"""The cluster files in deploy/cluster/ are written for Kubernetes and Slurm, which this machine has
not: these checks catch what can break without them (YAML that does not parse, a wrong kind or API
version, names that do not match across files, a spec or deployment that no longer fits the code)."""

from __future__ import annotations

import importlib
import json
from pathlib import Path

import pytest
import yaml

from flows.steps.spec import load_spec

REPO = Path(__file__).resolve().parent.parent
CLUSTER = REPO / "deploy" / "cluster"
NAMESPACE = "mixsweep"

# file -> the (apiVersion, kind) of each document, in order
MANIFESTS: dict[str, list[tuple[str, str]]] = {
    "namespace.yaml": [("v1", "Namespace"), ("v1", "PersistentVolumeClaim"), ("v1", "Secret")],
    "postgres.yaml": [("v1", "ConfigMap"), ("v1", "Service"), ("apps/v1", "StatefulSet")],
    "mlflow.yaml": [("v1", "Service"), ("apps/v1", "Deployment")],
    "prefect-server.yaml": [
        ("v1", "Service"),
        ("apps/v1", "Deployment"),
        ("v1", "ServiceAccount"),
        ("rbac.authorization.k8s.io/v1", "Role"),
        ("rbac.authorization.k8s.io/v1", "RoleBinding"),
        ("apps/v1", "Deployment"),
    ],
    "raycluster.yaml": [("ray.io/v1", "RayCluster")],
}


def _docs(name: str) -> list[dict]:
    """The YAML documents of deploy/cluster/<name>."""
    return [d for d in yaml.safe_load_all((CLUSTER / name).read_text()) if d is not None]


def _all_docs() -> list[dict]:
    return [d for name in MANIFESTS for d in _docs(name)]


def _pod_specs() -> list[dict]:
    """Every pod template of every workload, the Ray head and worker groups included."""
    specs = []
    for d in _all_docs():
        if d["kind"] in ("Deployment", "StatefulSet"):
            specs.append(d["spec"]["template"]["spec"])
        elif d["kind"] == "RayCluster":
            specs.append(d["spec"]["headGroupSpec"]["template"]["spec"])
            specs += [g["template"]["spec"] for g in d["spec"]["workerGroupSpecs"]]
    return specs


@pytest.mark.parametrize("name", sorted(MANIFESTS))
def test_manifest_kinds_and_namespace(name: str) -> None:
    docs = _docs(name)
    assert [(d["apiVersion"], d["kind"]) for d in docs] == MANIFESTS[name]
    for d in docs:
        if d["kind"] != "Namespace":
            assert d["metadata"]["namespace"] == NAMESPACE, f"{name}: {d['kind']} {d['metadata']['name']}"


def test_every_yaml_file_under_deploy_cluster_is_listed() -> None:
    assert {p.name for p in CLUSTER.glob("*.yaml")} - {"prefect-cluster.yaml"} == set(MANIFESTS)


def test_raycluster_head_and_gpu_workers() -> None:
    (rc,) = _docs("raycluster.yaml")
    head = rc["spec"]["headGroupSpec"]
    ports = {p["name"]: p["containerPort"] for p in head["template"]["spec"]["containers"][0]["ports"]}
    assert ports["gcs-server"] == 6379 and ports["client"] == 10001 and ports["dashboard"] == 8265
    assert head["rayStartParams"]["dashboard-host"] == "0.0.0.0"
    assert "nvidia.com/gpu" not in head["template"]["spec"]["containers"][0]["resources"]["limits"]
    assert rc["spec"]["enableInTreeAutoscaling"] is True
    (gpu,) = rc["spec"]["workerGroupSpecs"]
    assert 0 <= gpu["minReplicas"] <= gpu["maxReplicas"]
    container = gpu["template"]["spec"]["containers"][0]
    assert int(container["resources"]["limits"]["nvidia.com/gpu"]) >= 1
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["MLFLOW_TRACKING_URI"].startswith("http://mlflow.")


def test_ray_version_matches_the_pinned_ray() -> None:
    import ray

    (rc,) = _docs("raycluster.yaml")
    assert rc["spec"]["rayVersion"] == ray.__version__


def test_every_pod_mounts_the_shared_volume_at_the_same_path() -> None:
    (claim,) = [d for d in _docs("namespace.yaml") if d["kind"] == "PersistentVolumeClaim"]
    assert "ReadWriteMany" in claim["spec"]["accessModes"]
    for spec in _pod_specs():
        volumes = {v["name"]: v for v in spec.get("volumes", [])}
        mounts = {m["mountPath"]: m["name"] for c in spec["containers"] for m in c.get("volumeMounts", [])}
        if "/mnt/mixsweep" in mounts:
            assert volumes[mounts["/mnt/mixsweep"]]["persistentVolumeClaim"]["claimName"] == claim["metadata"]["name"]
    (rc,) = _docs("raycluster.yaml")
    for spec in [rc["spec"]["headGroupSpec"]["template"]["spec"]] + [
        g["template"]["spec"] for g in rc["spec"]["workerGroupSpecs"]
    ]:
        mounts = {m["mountPath"] for m in spec["containers"][0]["volumeMounts"]}
        assert {"/mnt/mixsweep", "/dev/shm"} <= mounts


def test_secret_keys_that_pods_read_exist() -> None:
    (secret,) = [d for d in _docs("namespace.yaml") if d["kind"] == "Secret"]
    keys = set(secret["stringData"])
    assert secret["stringData"]["mlflow-backend-store-uri"].startswith("postgresql+psycopg2://")
    assert secret["stringData"]["prefect-database-url"].startswith("postgresql+asyncpg://")
    for spec in _pod_specs():
        for c in spec["containers"]:
            for e in c.get("env", []):
                ref = e.get("valueFrom", {}).get("secretKeyRef")
                if ref:
                    assert ref["name"] == secret["metadata"]["name"] and ref["key"] in keys, e


def test_mlflow_server_runs_lean_on_postgres_with_served_artifacts() -> None:
    (dep,) = [d for d in _docs("mlflow.yaml") if d["kind"] == "Deployment"]
    c = dep["spec"]["template"]["spec"]["containers"][0]
    args = c["args"]
    assert c["command"] == ["mlflow", "server"]
    assert "--workers=1" in args and "--serve-artifacts" in args
    assert "--backend-store-uri=$(MLFLOW_BACKEND_STORE_URI)" in args
    assert any(a.startswith("--artifacts-destination=") for a in args)
    env = {e["name"]: e for e in c["env"]}
    assert env["MLFLOW_SERVER_ENABLE_JOB_EXECUTION"]["value"] == "false"
    assert "MLFLOW_BACKEND_STORE_URI" in env


def test_prefect_server_on_postgres_and_a_kubernetes_worker_for_the_pool() -> None:
    deployments = {d["metadata"]["name"]: d for d in _docs("prefect-server.yaml") if d["kind"] == "Deployment"}
    server = deployments["prefect-server"]["spec"]["template"]["spec"]["containers"][0]
    assert "PREFECT_API_DATABASE_CONNECTION_URL" in {e["name"] for e in server["env"]}
    worker = deployments["prefect-worker"]["spec"]["template"]["spec"]["containers"][0]
    args = worker["args"]
    assert args[args.index("--type") + 1] == "kubernetes"
    assert args[args.index("--pool") + 1] == _cluster_deployment()["work_pool"]["name"]


def test_work_pool_template_is_accepted_by_prefect() -> None:
    from prefect.server.schemas.actions import WorkPoolCreate

    template = json.loads((CLUSTER / "prefect-k8s-pool.json").read_text())
    WorkPoolCreate(name="mixsweep-k8s", type="kubernetes", base_job_template=template)
    manifest = template["job_configuration"]["job_manifest"]
    assert (manifest["apiVersion"], manifest["kind"]) == ("batch/v1", "Job")
    pod = manifest["spec"]["template"]["spec"]
    assert pod["containers"][0]["volumeMounts"] == [{"name": "shared", "mountPath": "/mnt/mixsweep"}]
    defaults = {k: v.get("default") for k, v in template["variables"]["properties"].items()}
    assert defaults["namespace"] == NAMESPACE
    assert defaults["env"]["MLFLOW_TRACKING_URI"].startswith("http://mlflow.")


def _cluster_deployment() -> dict:
    (doc,) = _docs("prefect-cluster.yaml")
    (dep,) = doc["deployments"]
    return dep


def test_cluster_deployment_names_an_existing_flow_and_spec() -> None:
    from prefect.cli.deploy._models import PrefectYamlModel

    (doc,) = _docs("prefect-cluster.yaml")
    PrefectYamlModel.model_validate(doc)
    dep = _cluster_deployment()
    assert dep["name"] == "cluster"
    module_path, func = dep["entrypoint"].split(":")
    assert (REPO / module_path).is_file()
    flow = getattr(importlib.import_module(module_path.removesuffix(".py").replace("/", ".")), func)
    assert flow.name == "sweep"
    assert (REPO / dep["parameters"]["spec"]).is_file()


def test_cluster_spec_validates_and_targets_the_ray_head() -> None:
    spec = load_spec(REPO / "deploy" / "specs" / "cluster.yaml")
    (rc,) = _docs("raycluster.yaml")
    assert spec.ray_address == f"ray://{rc['metadata']['name']}-head-svc.{NAMESPACE}.svc:10001"
    assert spec.resources.gpus >= 1
    (gpu,) = rc["spec"]["workerGroupSpecs"]
    assert spec.max_concurrent <= gpu["maxReplicas"] * int(
        gpu["template"]["spec"]["containers"][0]["resources"]["limits"]["nvidia.com/gpu"]
    )
    assert str(spec.corpus).startswith("/mnt/mixsweep/") and str(spec.output_dir).startswith("/mnt/mixsweep/")
    from trainers.presets import PRESETS

    assert spec.proxy.preset in PRESETS
    assert spec.budget.total_steps(128) > 0  # the spec's budget is a checked TrainBudget


def test_slurm_script_starts_ray_per_node_and_runs_the_sweep() -> None:
    text = (CLUSTER / "slurm" / "ray-cluster.sbatch").read_text()
    assert text.startswith("#!/usr/bin/env bash")
    assert "ray start --head" in text and 'ray start --address="$address"' in text
    assert "#SBATCH --gpus-per-node=" in text
    assert 'mixsweep sweep "$RUN_DIR/spec.yaml"' in text
