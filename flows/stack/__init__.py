"""The local stack: a Prefect server and worker, an MLflow server and a Ray head on loopback, started
and stopped by `mixsweep up|down` (`flows.stack.local`)."""
