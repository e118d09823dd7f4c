"""MLflow's books of a sweep (`flows.tracking.tracker`) and the redaction of secrets before anything is
logged (`flows.tracking.redact`)."""
