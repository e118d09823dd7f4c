"""The orchestrator's linear algebra on one thread.

A sweep's own process fits small models (the surrogates and their cross-validation: matrices of a few
hundred rows at most) while the machine's cores train the trials, and at the end of a sweep it runs
the CV (in a child process, `flows.steps.cv_process`, which sets the same limit) beside the proposal.
OpenBLAS gives each of those calls a pool of one thread per core, which on matrices this small only
spins: measured on 2 cores, when the two ran side by side in two threads, the CV took 6.7 CPU seconds
with the default pool and 4.0 with one thread, in the same wall time and with the same results to the
last digit, and the proposal 3.2 against 2.4 (the 6 trials of a 20-step sweep of the demo corpus).
"""

from __future__ import annotations

from threadpoolctl import threadpool_limits


def one_blas_thread() -> None:
    """Limit every BLAS library loaded in this process (numpy's and scipy's OpenBLAS) to one thread.
    threadpoolctl limits the libraries loaded when it is called, so scipy's linear algebra is loaded
    first; the limit holds for the whole process."""
    import scipy.linalg  # noqa: F401  # loads scipy's own OpenBLAS; lazy: 0.4 s, which only the flow needs

    threadpool_limits(1, user_api="blas")


__all__ = ["one_blas_thread"]
