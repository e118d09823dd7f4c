"""The local stack: a Prefect server and worker and an MLflow server on loopback (Ray starts with each
sweep), started and stopped by `mixsweep up|down` (`flows.stack.local`); `flows.stack.quiet_env` holds
the one quiet, offline environment they, the CLI and the install's smoke check share."""
