"""Which program a pid names now."""

from __future__ import annotations

import os
import subprocess
import time

from agent_smith.processes import command_line, runs_with


def test_a_process_s_command_line_is_its_arguments() -> None:
    with subprocess.Popen(["sleep", "60", "extra argument"]) as sleeper:
        try:
            deadline = time.monotonic() + 10
            # Until it has exec'd: forked, it runs with this interpreter's arguments.
            while command_line(sleeper.pid) != ["sleep", "60", "extra argument"] and time.monotonic() < deadline:
                time.sleep(0.01)
            assert command_line(sleeper.pid) == ["sleep", "60", "extra argument"]
            assert runs_with(sleeper.pid, ["60", "extra argument"])
            assert runs_with(sleeper.pid, [])
            assert not runs_with(sleeper.pid, ["60", "extra"])
        finally:
            sleeper.kill()


def test_a_process_that_is_gone_or_a_zombie_runs_nothing() -> None:
    sleeper = subprocess.Popen(["sleep", "60"])
    sleeper.kill()
    os.waitid(os.P_PID, sleeper.pid, os.WEXITED | os.WNOWAIT)  # ended, not reaped: a zombie
    try:
        assert command_line(sleeper.pid) is None
        assert not runs_with(sleeper.pid, [])
    finally:
        sleeper.wait()
    assert command_line(sleeper.pid) is None
    assert command_line(2**22 + 7) is None
