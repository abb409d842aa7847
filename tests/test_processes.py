"""Which program a pid names now."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

from agent_smith.processes import command_line, runs_agent_smith, runs_with


def test_a_process_s_command_line_is_its_arguments() -> None:
    # An argument with a space, which the program takes (GNU sleep would refuse one and exit at once).
    argv = [sys.executable, "-c", "import time; time.sleep(60)", "extra argument"]
    with subprocess.Popen(argv) as sleeper:
        try:
            deadline = time.monotonic() + 10
            # Until it has exec'd: forked, it runs with this interpreter's arguments.
            while command_line(sleeper.pid) != argv and time.monotonic() < deadline:
                time.sleep(0.01)
            assert command_line(sleeper.pid) == argv
            assert runs_with(sleeper.pid, ["-c", "extra argument"])
            assert runs_with(sleeper.pid, [])
            assert not runs_with(sleeper.pid, ["-c", "extra"])
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


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["agent-smith", "firewall", "--crew", "."], True),
        (["agent-smith", "firewall", "--settings-fd", "0"], True),
        (["-m", "agent_smith", "firewall"], True),
        (["agent-smith", "up"], False),
        (["other-tool", "firewall"], False),
        (["firewall", "agent-smith"], False),
    ],
)
def test_an_agent_smith_verb_is_known_however_it_was_started(argv: list[str], expected: bool) -> None:
    # The process is a sleeping interpreter whose arguments read as `argv` (sys.argv after -c).
    code = "import time; time.sleep(60)"
    with subprocess.Popen([sys.executable, "-c", code, *argv]) as process:
        try:
            deadline = time.monotonic() + 10
            while command_line(process.pid) != [sys.executable, "-c", code, *argv] and time.monotonic() < deadline:
                time.sleep(0.01)
            assert runs_agent_smith(process.pid, "firewall") is expected
        finally:
            process.kill()
