"""Security defaults: servers on loopback unless told otherwise, no secrets in MLflow or messages,
checkpoints never unpickled, no eval/exec of user input."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from flows.stack.local import COMPONENTS, StackConfig
from flows.tracking.redact import MASK, is_secret_name, redact_data, redact_params, redact_text, redact_uri

REPO = Path(__file__).resolve().parent.parent
PACKAGES = ("mixture_search", "trainers", "eval", "flows", "deploy")


# -- redaction --------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("name", "secret"),
    [
        ("HF_TOKEN", True),
        ("MLFLOW_TRACKING_PASSWORD", True),
        ("PREFECT_SERVER_API_AUTH_STRING", True),
        ("AWS_SECRET_ACCESS_KEY", True),
        ("mlflow.api_key", True),
        ("spec.budget.hf-token", True),
        ("budget.tokens", False),
        ("space.target_tokens", False),
        ("TOKENIZERS_PARALLELISM", False),
        ("mixsweep.trial_key", False),
        ("tokenizer", False),
    ],
)
def test_secret_names(name: str, secret: bool) -> None:
    assert is_secret_name(name) is secret


def test_uri_passwords_and_secret_query_parameters_are_masked() -> None:
    assert redact_uri("http://alice:s3cr3t-pw@mlflow.internal:5000/") == "http://alice:***@mlflow.internal:5000/"
    assert redact_uri("postgresql+psycopg2://u:pw123456@db/mlflow") == "postgresql+psycopg2://u:***@db/mlflow"
    assert "abcdef123" not in redact_uri("https://host/api?token=abcdef123&page=2")
    assert "page=2" in redact_uri("https://host/api?token=abcdef123&page=2")
    assert redact_uri("http://127.0.0.1:5000") == "http://127.0.0.1:5000"  # nothing to hide: unchanged
    assert redact_uri("sqlite:////work/runs/mlflow.db") == "sqlite:////work/runs/mlflow.db"  # absolute path kept
    assert not is_secret_name("PWD")  # the shell's working directory, not a password


def test_secret_environment_values_are_masked_anywhere(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_TOKEN", "hf_AbCdEf123456")
    monkeypatch.setenv("SOME_FLAG_TOKEN", "1")  # too short to be a secret: never masked
    text = "downloading with hf_AbCdEf123456 from https://u:pw9876@hub/x (1 file)"
    assert redact_text(text) == f"downloading with {MASK} from https://u:{MASK}@hub/x (1 file)"
    params = redact_params({"auth.password": "hunter2222", "budget.tokens": 1000, "note": "hf_AbCdEf123456"})
    assert params == {"auth.password": MASK, "budget.tokens": "1000", "note": MASK}
    spec = {"mlflow": {"tracking_uri": "http://a:b123456@h"}, "budget": {"steps": 4}, "api_key": "k"}
    assert redact_data(spec) == {
        "mlflow": {"tracking_uri": f"http://a:{MASK}@h"},
        "budget": {"steps": 4},
        "api_key": MASK,
    }


@pytest.mark.integration
def test_no_secret_reaches_mlflow(mlflow_server: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Params, tags and text artifacts of a sweep's parent run, as `flows.sweep` logs them."""
    from flows.steps.spec import load_spec
    from flows.tracking.tracker import SweepTracker

    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", "pa55word-xyz")
    spec = load_spec(
        {
            "name": "secrets",
            "corpus": "/data/corpus",
            "mlflow": {"tracking_uri": "http://alice:pa55word-xyz@mlflow.internal:5000"},
            "search": {"options": {"note": "uses pa55word-xyz"}},
        }
    )
    tracker = SweepTracker(mlflow_server, "security-test", sweep_name="secrets", sweep_key="sec1")
    parent = tracker.parent_run({"spec": spec.model_dump(mode="json"), "hf_token": "hf_other_value"})
    tracker.log_artifact_text(parent, "spec.yaml", spec.to_yaml())
    tracker.set_tags(parent, {"error": "login as alice:pa55word-xyz failed"})
    run = MlflowClient(mlflow_server).get_run(parent)
    logged = {**run.data.params, **run.data.tags}
    assert logged["spec.mlflow.tracking_uri"] == f"http://alice:{MASK}@mlflow.internal:5000"
    assert logged["hf_token"] == MASK and logged["spec.name"] == "secrets"
    assert not [k for k, v in logged.items() if "pa55word" in v or "hf_other_value" in v]
    path = MlflowClient(mlflow_server).download_artifacts(parent, "spec.yaml")
    text = Path(path).read_text()
    assert "pa55word" not in text and f"alice:{MASK}@mlflow.internal" in text


def test_tracking_errors_do_not_show_the_password(monkeypatch: pytest.MonkeyPatch) -> None:
    from flows.stack.local import free_port
    from flows.tracking.tracker import SweepTracker, TrackingError

    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    with pytest.raises(TrackingError) as info:
        SweepTracker(f"http://bob:pw-0123456@127.0.0.1:{free_port()}", "x", sweep_name="s", sweep_key="k")
    assert "pw-0123456" not in str(info.value) and f"bob:{MASK}@127.0.0.1" in str(info.value)


def test_sweep_checks_and_dry_run_do_not_show_the_password(tmp_path: Path) -> None:
    from flows.stack.local import free_port
    from flows.steps.checks import check_mlflow
    from flows.steps.spec import SpecError

    with pytest.raises(SpecError) as info:
        check_mlflow(f"http://bob:pw-0123456@127.0.0.1:{free_port()}")
    assert "pw-0123456" not in str(info.value) and f"bob:{MASK}@" in str(info.value)


# -- servers bind to loopback -------------------------------------------------------------------------
def test_stack_servers_bind_to_loopback_by_default(tmp_path: Path) -> None:
    cfg = StackConfig(home=tmp_path)
    assert cfg.host == "127.0.0.1"
    by_name = {c.name: c for c in COMPONENTS}
    for name in ("prefect-server", "mlflow-server"):
        cmd = by_name[name].command(cfg)
        assert cmd[cmd.index("--host") + 1] == "127.0.0.1", cmd
    assert by_name["prefect-server"].env(cfg)["PREFECT_SERVER_API_HOST"] == "127.0.0.1"
    assert cfg.client_env()["PREFECT_API_URL"].startswith("http://127.0.0.1:")
    exposed = StackConfig(home=tmp_path, host="0.0.0.0")  # only when asked
    assert "0.0.0.0" in by_name["mlflow-server"].command(exposed)


def test_cli_up_binds_to_loopback_unless_told(tmp_path: Path) -> None:
    from flows.cli.stack import _config

    assert _config(tmp_path / "home").host == "127.0.0.1"
    assert _config(tmp_path / "home", host="0.0.0.0").host == "0.0.0.0"


def test_ray_is_started_without_a_dashboard() -> None:
    """A local Ray head with a dashboard would listen on another port; ours never starts one."""
    calls = [
        (path, call)
        for path in (REPO / "flows").rglob("*.py")
        for call in _calls(ast.parse(path.read_text()))
        if _name(call.func) == "ray.init"
    ]
    assert calls  # the sweep starts (or joins) Ray in flows/trials/local_ray.py
    for path, call in calls:
        dashboard = [k.value for k in call.keywords if k.arg == "include_dashboard"]
        assert dashboard and isinstance(dashboard[0], ast.Constant) and dashboard[0].value is False, path


# -- no unpickling, eval or exec of what users give us --------------------------------------------------
def _calls(tree: ast.AST) -> list[ast.Call]:
    return [n for n in ast.walk(tree) if isinstance(n, ast.Call)]


def _name(func: ast.expr) -> str:
    if isinstance(func, ast.Name):
        return func.id
    if isinstance(func, ast.Attribute):
        return f"{_name(func.value)}.{func.attr}"
    return ""


def _sources() -> list[Path]:
    return [p for pkg in PACKAGES for p in sorted((REPO / pkg).rglob("*.py"))]


def test_no_eval_exec_or_pickle_loads_in_the_code() -> None:
    banned = {"eval", "exec", "pickle.load", "pickle.loads", "marshal.loads", "yaml.load", "yaml.unsafe_load"}
    found = []
    for path in _sources():
        for call in _calls(ast.parse(path.read_text(), str(path))):
            if _name(call.func) in banned:
                found.append(f"{path.relative_to(REPO)}:{call.lineno} {_name(call.func)}")
    assert not found, found


def test_every_torch_load_is_weights_only() -> None:
    seen = 0
    for path in _sources():
        for call in _calls(ast.parse(path.read_text(), str(path))):
            if _name(call.func) == "torch.load":
                seen += 1
                kw = {k.arg: k.value for k in call.keywords}
                assert isinstance(kw.get("weights_only"), ast.Constant) and kw["weights_only"].value is True, (
                    f"{path.relative_to(REPO)}:{call.lineno} torch.load without weights_only=True"
                )
    assert seen >= 1  # the checkpoint readers exist and were inspected


def test_yaml_is_read_with_safe_loaders() -> None:
    """ruamel's `typ='unsafe'` (and a bare `YAML()`, round-trip) are the only ways to build objects."""
    for path in _sources():
        text = path.read_text()
        assert 'typ="unsafe"' not in text and "typ='unsafe'" not in text, path


# -- checkpoints are read without unpickling ---------------------------------------------------------------
class _Payload:
    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (print, ("code ran while loading a checkpoint",))


def test_deepspeed_checkpoint_reader_refuses_pickled_code(tmp_path: Path) -> None:
    import pickle

    import torch

    from trainers.backends.deepspeed import _weights_only_load

    path = tmp_path / "mp_rank_00_model_states.pt"
    torch.save({"module": {"w": torch.zeros(2)}, "extra": _Payload()}, path)
    with pytest.raises(pickle.UnpicklingError, match=r"[Ww]eights only load failed"):
        _weights_only_load(str(path))
    torch.save({"module": {"w": torch.ones(2)}, "ds_version": "0.19.8"}, path)
    assert torch.equal(_weights_only_load(str(path))["module"]["w"], torch.ones(2))


@pytest.mark.slow
@pytest.mark.parametrize("zero_stage", [0, 2])
def test_deepspeed_resume_reads_weights_only(zero_stage: int, train_corpus: Path, tmp_path: Path) -> None:
    """A ZeRO run interrupted and resumed through the weights-only reader finishes on the same curve."""
    from mixture_search.mixture import Mixture
    from trainers.backends.deepspeed import DeepSpeedBackend
    from trainers.budget import TrainBudget
    from trainers.presets import tiny_cpu
    from trainers.train import train

    budget = TrainBudget(steps=3, micro_batch=4, global_batch=4, eval_interval=1, seed=1)
    args = (Mixture({"prose": 1, "sums": 1}), train_corpus, tiny_cpu(seq_len=32), budget)
    reference = train(*args, DeepSpeedBackend(zero_stage=zero_stage), tmp_path / "ref")
    first = train(*args, DeepSpeedBackend(zero_stage=zero_stage), tmp_path / "run", stop_at_step=2)
    assert first.status == "interrupted"
    resumed = train(*args, DeepSpeedBackend(zero_stage=zero_stage), tmp_path / "run")
    assert resumed.status == "completed" and resumed.loss_curve == reference.loss_curve
