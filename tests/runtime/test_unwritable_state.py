"""A state directory that cannot be written (a full disk, a read-only mount) leaves the agents
running: the supervisor says so, restarts what crashes once it can, and writes the status again.

Real tmux; a shell that shows claude's prompt stands in for claude. Files replaced by directories
stand in for the full disk: their writes fail the same way, for any user.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
from pathlib import Path

import pytest

from agent_smith.runtime import Tmux
from agent_smith.runtime import session as panes
from agent_smith.runtime.policy import SERVING, AgentState, Record
from agent_smith.runtime.rundir import RunDir
from agent_smith.runtime.supervisor import Supervisor
from tests.runtime.conftest import spec, until

pytestmark = pytest.mark.real


def blocked(path: Path) -> None:
    """Make every write of `path` fail: a directory with something in it cannot be replaced."""
    path.unlink(missing_ok=True)
    (path / "blocked").mkdir(parents=True)


def written(run_dir: RunDir) -> object:
    """alice's state in the status file."""
    return (run_dir.read_status() or {}).get("agents", {}).get("alice", {}).get("state")


def test_a_status_and_pane_files_that_cannot_be_written_stop_no_agent(tmux_server: Tmux, tmp_path: Path) -> None:
    alice = spec(tmp_path, "alice")
    run_dir = RunDir(tmp_path / "runtime")
    run_dir.ensure()
    env_files = [panes.env_file(alice, pane) for pane in (panes.CLAUDE_PANE, panes.SHELL_PANE)]

    async def scenario() -> None:
        supervisor = Supervisor([alice], tmux_server, run_dir, interval=0.05)
        await supervisor.begin(["alice"])
        stop = asyncio.Event()
        watching = asyncio.create_task(supervisor.watch(stop))

        def record() -> Record:
            return supervisor.agents["alice"].record

        try:
            await until("alice ready", lambda: record().state in SERVING)
            for path in (run_dir.status_file, *env_files):
                blocked(path)
            # Neither her shell (killed) nor her claude (asked to restart) can be started again:
            # their environment files cannot be written. Her shell is tried again at each look, her
            # claude after its backoff, and the supervisor runs on.
            os.kill(panes.panes(tmux_server)[("alice", panes.SHELL_PANE)].pid, signal.SIGKILL)
            await until("her shell gone", lambda: panes.panes(tmux_server)[("alice", panes.SHELL_PANE)].dead)
            await asyncio.sleep(0.3)
            assert not watching.done(), watching.exception()
            run_dir.request("restart", "alice")
            await until("a failed start", lambda: record().restarts >= 2)
            await asyncio.sleep(0.3)
            assert not watching.done(), watching.exception()
            assert record().state in (AgentState.BACKING_OFF, AgentState.STARTING)
            # Writable again: alice is back, her shell too, and the status says so.
            for path in (run_dir.status_file, *env_files):
                shutil.rmtree(path)
            await until("alice back", lambda: record().state in SERVING)
            await until("her shell back", lambda: not panes.panes(tmux_server)[("alice", panes.SHELL_PANE)].dead)
            await until("the status written", lambda: written(run_dir) in SERVING)
        finally:
            stop.set()
            await watching

    asyncio.run(scenario())
