"""A recorded process is recognised by pid and start: its start in ticks after boot, which a clock
adjustment does not move, or (records without it) its start time with a second's slack."""

from __future__ import annotations

import os

import psutil
import pytest

from flows.stack.local import CREATE_TIME_SLACK, Proc, start_ticks


def test_the_start_in_ticks_decides_whatever_the_wall_clock_did() -> None:
    me = psutil.Process(os.getpid())
    ticks = start_ticks(os.getpid())
    assert ticks is not None and ticks > 0
    assert ticks == start_ticks(os.getpid())  # read twice, the same
    assert me.create_time() - psutil.boot_time() == pytest.approx(ticks / os.sysconf("SC_CLK_TCK"), abs=1.0)
    # the record's create_time 12 s off (what a clock step did to a running server): still the same process
    assert Proc("me", os.getpid(), me.create_time() + 12.0, [], "/dev/null", start_ticks=ticks).alive()
    # another start with the same pid: not ours
    assert not Proc("me", os.getpid(), me.create_time(), [], "/dev/null", start_ticks=ticks - 5).alive()


def test_records_without_ticks_use_the_start_time_with_slack() -> None:
    started = psutil.Process(os.getpid()).create_time()
    assert CREATE_TIME_SLACK > 1.0 and Proc("me", os.getpid(), started + 1.0, [], "/dev/null").alive()
    assert not Proc("me", os.getpid(), started - 60.0, [], "/dev/null").alive()  # an earlier process's record
    assert not Proc("gone", 2**22 + 7, started, [], "/dev/null").alive()
    assert start_ticks(2**22 + 7) is None
