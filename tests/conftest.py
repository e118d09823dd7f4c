from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

# Reproducible property tests: the same examples on every run (a failure in CI replays locally), and
# no per-example deadline (a loaded 2-core machine must not turn slowness into failures).
settings.register_profile("mixsweep", derandomize=True, deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "mixsweep"))

TESTS = Path(__file__).parent
FIXTURES = TESTS / "fixtures"
OPENSEEK = FIXTURES / "openseek"
OPENSEEK_EXPERIMENT = OPENSEEK / "OpenSeek-Small-v1-Baseline" / "config_deepseek_v3_1_4b.yaml"
OPENSEEK_TASK = OPENSEEK / "OpenSeek-Small-v1-Baseline" / "train" / "train_deepseek_v3_1_4b.yaml"
OPENSEEK_TOKENS = OPENSEEK / "pretrain_100B_files_tokens.csv"
BAD_INPUTS = TESTS / "bad_inputs"

# Quiet, offline defaults for every engine a test may start.
for key, value in {
    "DO_NOT_TRACK": "1",
    "MLFLOW_DISABLE_TELEMETRY": "true",
    "RAY_USAGE_STATS_ENABLED": "0",
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
}.items():
    os.environ.setdefault(key, value)


@pytest.fixture
def openseek_experiment() -> Path:
    return OPENSEEK_EXPERIMENT
