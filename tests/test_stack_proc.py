"""A recorded process is recognised by pid and start time, with a second's slack on the start time."""

from __future__ import annotations

import os

import psutil

from flows.stack.local import CREATE_TIME_SLACK, Proc


def test_a_start_time_off_by_a_second_is_the_same_process_a_later_one_is_not() -> None:
    started = psutil.Process(os.getpid()).create_time()
    same = Proc("me", os.getpid(), started + 1.0, [], "/dev/null")  # /proc/stat's btime moved by a second
    assert CREATE_TIME_SLACK > 1.0 and same.alive()
    reused = Proc("me", os.getpid(), started - 60.0, [], "/dev/null")  # the record of an earlier process
    assert not reused.alive()
    gone = Proc("gone", 2**22 + 7, started, [], "/dev/null")
    assert not gone.alive()
