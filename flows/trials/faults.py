"""Faults of a trial: recognising a full disk, and the hooks the fault tests pass in.

**Trial hooks.** `run_round` takes a `TrialHook` per trial key (`RoundOptions.hooks`); a trial asks
its hook for its budget and calls it after every step. A real sweep passes none, so every trial gets
`NO_FAULT`, whose methods change nothing. The fault tests pass `Diverge()` or `PauseAfter(step)`.

**Across processes.** The sweep fault tests run the flow in another process (a Prefect worker), so
they name the faults in `MIXSWEEP_FAULT_INJECT`, which the flow turns into hooks once per round
(`faults_for_round`). It holds comma-separated items `<fault>@<round>.<index>`, where `index` counts
the trials a round launches (in plan order):

- `diverge@0.1`: trial 1 of round 0 trains with a learning rate of 1e5, no warmup and no gradient
  clipping, so its loss really becomes NaN and the trainers' own divergence check stops it;
- `pause:3@0.0`: trial 0 of round 0 sleeps for `PAUSE_S` seconds after step 3 when it started from
  step 0 (not when it resumed), so a test can kill its worker after a checkpoint; it announces the
  pause with a file `PAUSED_FILE` in its working directory (Ray Tune's trial folder).

The hooks travel to the trials with the trainable (`tune.with_parameters`), so they reach trials on any
Ray cluster. Never set the variable for a real sweep; with it unset every trial runs as specified.
"""

from __future__ import annotations

import dataclasses
import errno
import os
import re
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from mixture_search.errors import MixSweepError
from trainers.budget import TrainBudget

FAULT_ENV = "MIXSWEEP_FAULT_INJECT"
PAUSE_S = 300.0
PAUSED_FILE = "fault-paused"
LOW_SPACE = 4 * 2**20
_ITEM = re.compile(r"^(diverge|pause:(\d+))@(\d+)\.(\d+)$")


class FaultSpecError(MixSweepError):
    """`MIXSWEEP_FAULT_INJECT` does not parse."""


class TrialHook:
    """What a trial lets a test change: its budget, and what happens after each step. No-ops here."""

    def budget(self, budget: TrainBudget) -> TrainBudget:
        return budget

    def after_step(self, step: int, *, resumed: bool) -> None:
        return None


NO_FAULT = TrialHook()


@dataclass(frozen=True)
class Diverge(TrialHook):
    """Train with a learning rate no model survives and nothing to tame it: the loss really becomes NaN."""

    def budget(self, budget: TrainBudget) -> TrainBudget:
        return dataclasses.replace(budget, lr=1e5, min_lr=0.0, warmup_steps=0, grad_clip=0.0)


@dataclass(frozen=True)
class PauseAfter(TrialHook):
    """After `step`, in an attempt that started from step 0, announce the pause (the step, in
    `PAUSED_FILE` in the working directory: Ray Tune's trial folder), then sleep `PAUSE_S` seconds."""

    step: int

    def after_step(self, step: int, *, resumed: bool) -> None:
        if step == self.step and not resumed:
            Path(PAUSED_FILE).write_text(str(step))
            time.sleep(PAUSE_S)


def faults_for_round(round_: int, value: str | None = None) -> dict[int, TrialHook]:
    """Index in the round's plan list -> hook, from `MIXSWEEP_FAULT_INJECT` (or `value`); empty when unset."""
    text = os.environ.get(FAULT_ENV, "") if value is None else value
    out: dict[int, TrialHook] = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        m = _ITEM.match(item)
        if m is None:
            raise FaultSpecError(
                f"{item!r} is not <fault>@<round>.<index> with fault diverge or pause:<step>", where=FAULT_ENV
            )
        if int(m.group(3)) == round_:
            out[int(m.group(4))] = Diverge() if m.group(1) == "diverge" else PauseAfter(int(m.group(2)))
    return out


def disk_full(exc: BaseException, folder: str | Path) -> str | None:
    """One line naming what could not be written when `exc` comes from a full disk under `folder`,
    else None.

    Checkpoint writers wrap or lose the OSError: Megatron's dist_checkpointing reports torch's
    stream writer ("unexpected pos ...") inside a CheckpointException, with no errno. So ENOSPC is
    looked for along the whole cause/context chain, and failing that the folder's free space decides
    (below `LOW_SPACE` bytes left to us, a failed write is a full disk)."""
    seen: set[int] = set()
    cur: BaseException | None = exc
    while cur is not None and id(cur) not in seen:
        seen.add(id(cur))
        if isinstance(cur, OSError) and cur.errno == errno.ENOSPC:
            return f"no space left on device while writing {cur.filename or folder}"
        match = re.search(r"No space left on device:?\s*'?(/[^'\s]*)?", str(cur))
        if match:
            return f"no space left on device while writing {match.group(1) or folder}"
        cur = cur.__cause__ or cur.__context__
    try:
        free = shutil.disk_usage(folder).free
    except OSError:
        return None
    return f"no space left on device while writing {folder} ({free} bytes left)" if free < LOW_SPACE else None
