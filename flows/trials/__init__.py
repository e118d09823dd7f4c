"""Trials: the typed boundary of one proxy run (`flows.trials.result`), running rounds of them on Ray
Tune (`flows.trials.tune`), and the fault-injection hook the fault tests pass in (`flows.trials.faults`)."""
