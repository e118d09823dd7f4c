"""Faults of a trial: recognising a full disk, and a fault-injection hook for the fault tests.

**Testing hook, inert by default.** `MIXSWEEP_FAULT_INJECT` makes chosen trials misbehave, so the
fault tests can prove that a sweep survives them on the real stack. It holds comma-separated items
`<fault>@<round>.<index>`, where `index` counts the trials a round launches (in plan order):

- `diverge@0.1`: trial 1 of round 0 trains with a learning rate of 1e5, no warmup and no gradient
  clipping, so its loss really becomes NaN and the trainers' own divergence check stops it;
- `pause:3@0.0`: trial 0 of round 0 sleeps for `PAUSE_S` seconds after step 3 when it started from
  step 0 (not when it resumed), so a test can kill its worker after a checkpoint; it announces the
  pause with a file `PAUSED_FILE` in its working directory (Ray Tune's trial folder).

The driver reads the variable when a round starts (`faults_for_round`) and passes each trial its fault
in the trial config (key `fault`), so it reaches trials on any Ray cluster. Never set it for a real
sweep; with it unset every trial runs as specified.
"""

from __future__ import annotations

import errno
import os
import re
import shutil
import time
from pathlib import Path
from typing import Any

from mixture_search.errors import MixSweepError

FAULT_ENV = "MIXSWEEP_FAULT_INJECT"
PAUSE_S = 300.0
PAUSED_FILE = "fault-paused"
LOW_SPACE = 4 * 2**20
_ITEM = re.compile(r"^(diverge|pause:(\d+))@(\d+)\.(\d+)$")


class FaultSpecError(MixSweepError):
    """`MIXSWEEP_FAULT_INJECT` does not parse."""


def faults_for_round(round_: int, value: str | None = None) -> dict[int, str]:
    """Index in the round's plan list -> fault (`diverge` or `pause:<step>`); empty when unset."""
    text = os.environ.get(FAULT_ENV, "") if value is None else value
    out: dict[int, str] = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        m = _ITEM.match(item)
        if m is None:
            raise FaultSpecError(
                f"{item!r} is not <fault>@<round>.<index> with fault diverge or pause:<step>", where=FAULT_ENV
            )
        if int(m.group(3)) == round_:
            out[int(m.group(4))] = m.group(1)
    return out


def diverging_budget(budget: dict[str, Any]) -> dict[str, Any]:
    """The budget of a trial made to diverge: a learning rate no model survives, nothing to tame it."""
    return {**budget, "lr": 1e5, "min_lr": 0.0, "warmup_steps": 0, "grad_clip": 0.0}


def pause_step(fault: str) -> int | None:
    return int(fault.split(":", 1)[1]) if fault.startswith("pause:") else None


def pause(step: int) -> None:
    """Announce the pause (the step, in `PAUSED_FILE` in the working directory), then sleep."""
    Path(PAUSED_FILE).write_text(str(step))
    time.sleep(PAUSE_S)


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
