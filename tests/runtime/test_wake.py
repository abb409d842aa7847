"""A request to the supervisor (start, stop, restart) is taken when it is made, not at the next look.

Real tmux; a shell that shows claude's prompt stands in for claude.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from agent_smith.runtime import Tmux
from agent_smith.runtime.local import wake_on_requests
from agent_smith.runtime.policy import AgentState
from agent_smith.runtime.rundir import RunDir
from agent_smith.runtime.supervisor import Supervisor
from tests.runtime.conftest import spec, until

pytestmark = pytest.mark.real


def test_a_request_wakes_a_supervisor_in_a_long_pause(tmux_server: Tmux, tmp_path: Path) -> None:
    async def run() -> float:
        run_dir = RunDir(tmp_path / "runtime")
        run_dir.ensure()
        # Looks every 30 s once nobody is starting: without the nudge, the stop below waits that long.
        supervisor = Supervisor([spec(tmp_path, "alice")], tmux_server, run_dir, interval=30.0)
        waker = wake_on_requests(run_dir, supervisor)
        assert waker is not None
        await supervisor.begin(["alice"])
        stop = asyncio.Event()
        watching = asyncio.create_task(supervisor.watch(stop))
        her = supervisor.agents["alice"]
        try:
            await until("alice ready", lambda: her.record.state is AgentState.READY)
            await asyncio.sleep(0.3)
            asked = time.monotonic()
            run_dir.request("stop", "alice")
            await until("alice stopped", lambda: her.record.state is AgentState.STOPPED)
            return time.monotonic() - asked
        finally:
            stop.set()
            await watching
            asyncio.get_running_loop().remove_reader(waker.fileno())
            waker.close()

    assert asyncio.run(run()) < 5.0


def test_the_wake_socket_is_one_per_crew_and_a_nudge_with_nobody_listening_is_harmless(tmp_path: Path) -> None:
    rd = RunDir(tmp_path / "runtime")
    rd.wake()
    listener = rd.wake_listener()
    try:
        with pytest.raises(OSError, match="Address already in use"):
            rd.wake_listener()
        rd.wake()
        assert listener.recv(16) == b"\n"
        # Another crew's supervisor listens elsewhere.
        other = RunDir(tmp_path / "other" / "runtime").wake_listener()
        other.close()
    finally:
        listener.close()
    rd.request("stop", "alice")
    assert rd.take_requests() == [("stop", "alice")]
