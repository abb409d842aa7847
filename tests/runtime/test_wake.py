"""Nobody waits for the supervisor's next look: it takes a request (start, stop, restart) and a
starting claude's drawing at once, and `up` learns of each change of its status at once.

Real tmux; a shell that shows claude's prompt stands in for claude.
"""

from __future__ import annotations

import asyncio
import os
import time
from dataclasses import replace
from pathlib import Path

import pytest

from agent_smith.runtime import Tmux
from agent_smith.runtime import supervisor as supervisor_module
from agent_smith.runtime.local import _changed, _Teller, wake_on_requests
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
    assert [r[:2] for r in rd.take_requests()] == [("stop", "alice")]


def test_a_starting_claude_is_looked_at_as_soon_as_it_draws(
    tmux_server: Tmux, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """While an agent starts, its pane output prompts the next look: with the timed look 30 s
    away, a prompt drawn a second after the start is still seen within a few seconds."""
    monkeypatch.setattr(supervisor_module, "_STARTING_INTERVAL", 30.0)
    slow = replace(spec(tmp_path, "alice"), claude=("/bin/sh", "-c", "sleep 1; printf '❯ \\n'; exec sleep 600"))

    async def run() -> None:
        run_dir = RunDir(tmp_path / "runtime")
        run_dir.ensure()
        supervisor = Supervisor([slow], tmux_server, run_dir, interval=60.0)
        await supervisor.begin(["alice"])
        stop = asyncio.Event()
        watching = asyncio.create_task(supervisor.watch(stop))
        try:
            await until("alice ready", lambda: supervisor.agents["alice"].record.state is AgentState.READY)
        finally:
            stop.set()
            await watching

    asyncio.run(run())


def test_the_forked_supervisor_s_word_reaches_up_and_outlives_it(tmp_path: Path) -> None:
    """Each status change is a byte on a pipe `up` waits on; once `up` has left, telling is a no-op."""
    updates, tell = os.pipe()
    os.set_blocking(tell, False)
    teller = _Teller(tell)
    assert not _changed(updates, 0.0)
    teller()
    teller()
    assert _changed(updates, 5.0)
    assert not _changed(updates, 0.0)
    os.close(updates)
    teller()
    assert teller.fd is None
    teller()
