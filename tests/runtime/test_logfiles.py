"""The supervisor's own log and the firewall's, kept bounded while their writers keep them open."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

from agent_smith.runtime.logfiles import copies, rotate_if_large
from agent_smith.runtime.rundir import RunDir
from agent_smith.runtime.supervisor import Supervisor
from agent_smith.runtime.tmux import Tmux
from tests.runtime.conftest import spec


def test_a_log_past_its_limit_is_copied_emptied_and_written_on_from_its_start(tmp_path: Path) -> None:
    log = tmp_path / "firewall.log"
    # As the firewall holds it: opened once, in append mode, written unbuffered.
    with log.open("ab", buffering=0) as writer:
        for generation in range(5):
            writer.write(f"line of generation {generation}\n".encode() * 4)
            assert rotate_if_large(log, limit=64, keep=3)
        writer.write(b"after the last rotation\n")
        assert not rotate_if_large(log, limit=64, keep=3), "under its limit: left alone"
    assert log.read_bytes() == b"after the last rotation\n"
    # The newest copies, newest first; the oldest beyond three dropped.
    kept = [path.read_text().splitlines()[0] for path in copies(log, 3)]
    assert kept == [f"line of generation {g}" for g in (4, 3, 2)]
    assert sorted(os.listdir(tmp_path)) == ["firewall.log", "firewall.log.1", "firewall.log.2", "firewall.log.3"]
    assert not rotate_if_large(tmp_path / "absent.log")


def test_the_supervisor_bounds_its_logs_at_each_step(tmp_path: Path) -> None:
    run_dir = RunDir(tmp_path / "runtime")
    run_dir.ensure()
    logs = [tmp_path / "supervisor.log", tmp_path / "firewall.log"]
    for log in logs:
        log.write_bytes(b"x" * 300)

    async def run() -> None:
        supervisor = Supervisor(
            [spec(tmp_path, "alice")], Tmux("agent-smith-test-unused"), run_dir, logs=logs, log_limit=200
        )
        # No tmux server answers here: the step skips its look at the agents, not the logs.
        await supervisor.step()

    asyncio.run(run())
    for log in logs:
        assert log.stat().st_size == 0
        assert log.with_name(log.name + ".1").stat().st_size == 300
