"""The sweep's and the validation's steps as plain functions (no Prefect): the spec, the checks before
training, the search state, export, ranking and reports. The flows in `flows/sweep.py` and
`flows/validate.py` wire them into Prefect tasks; the CLI and the benchmarks call them directly."""
