"""`QUIET_ENV`: the environment that keeps every engine offline and free of telemetry. One copy for
the CLI (`mixsweep`, as defaults under what the user set), the local stack's servers and worker
(`flows.stack.local`) and the install's smoke check (`deploy/smoke_check.py`).

This module imports nothing: `deploy/smoke_check.py` loads it by file path before it knows whether
the package imports at all, and `mixsweep --help` reads it.
"""

QUIET_ENV = {
    # the cross-tool opt-out: Prefect's client analytics and Hugging Face Hub's telemetry read it
    "DO_NOT_TRACK": "1",
    # MLflow's own switch (it honours DO_NOT_TRACK only when spelt "true")
    "MLFLOW_DISABLE_TELEMETRY": "true",
    # Ray's usage statistics, otherwise sent from every `ray.init`
    "RAY_USAGE_STATS_ENABLED": "0",
    # the Prefect server's analytics (DO_NOT_TRACK covers the client only)
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    # no Hugging Face Hub downloads: tokenizers and models come from local folders (clusters are offline)
    "HF_HUB_OFFLINE": "1",
    # the older spelling of the same switch, still read by huggingface_hub and older transformers
    "TRANSFORMERS_OFFLINE": "1",
}

__all__ = ["QUIET_ENV"]
