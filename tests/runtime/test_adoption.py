"""A supervisor that starts again adopts the agents still running in tmux with what the one
before counted: restarts, and fast crashes toward a crash loop. An agent it starts anew counts
from 0.

Real tmux; a shell that shows claude's prompt stands in for claude.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path

import pytest

from agent_smith.runtime import Tmux
from agent_smith.runtime import session as panes
from agent_smith.runtime.launch import AgentSpec
from agent_smith.runtime.policy import SERVING, AgentState, Record, Restart
from agent_smith.runtime.rundir import RunDir
from agent_smith.runtime.supervisor import Supervisor
from tests.runtime.conftest import spec, until

pytestmark = pytest.mark.real


@contextlib.asynccontextmanager
async def restarted_then_detached(
    alice: AgentSpec, tmux_server: Tmux, run_dir: RunDir, sig: int
) -> AsyncIterator[Record]:
    """A supervisor that starts alice, sees her claude killed with `sig` and back, and detaches at
    the block's end (a SIGHUP: alice runs on for the next supervisor). Yields her record then."""
    supervisor = Supervisor([alice], tmux_server, run_dir, interval=0.05)
    await supervisor.begin(["alice"])
    stop, keep = asyncio.Event(), asyncio.Event()
    watching = asyncio.create_task(supervisor.watch(stop, keep_agents=keep))
    try:

        def record() -> Record:
            return supervisor.agents["alice"].record

        await until("alice ready", lambda: record().state in SERVING)
        os.kill(panes.panes(tmux_server)[("alice", panes.CLAUDE_PANE)].pid, sig)
        await until("alice back", lambda: record().restarts == 1 and record().state in SERVING)
        await supervisor.turn_began("alice")
        yield record()
    finally:
        keep.set()
        stop.set()
        await watching


def test_an_adopted_agent_keeps_its_counts_toward_a_crash_loop(tmux_server: Tmux, tmp_path: Path) -> None:
    alice = replace(spec(tmp_path, "alice"), restart=Restart(min_uptime=60, backoff_initial=0.1, crash_loop_after=2))
    run_dir = RunDir(tmp_path / "runtime")
    run_dir.ensure()

    def claude_pid() -> int:
        return panes.panes(tmux_server)[("alice", panes.CLAUDE_PANE)].pid

    async def first() -> None:
        # One fast crash: restarted, one short of a crash loop.
        async with restarted_then_detached(alice, tmux_server, run_dir, signal.SIGKILL) as record:
            assert record.fast_crashes == 1

    async def second() -> None:
        supervisor = Supervisor([alice], tmux_server, run_dir, interval=0.05)
        await supervisor.begin([])

        def record() -> Record:
            return supervisor.agents["alice"].record

        assert (record().restarts, record().fast_crashes) == (1, 1)
        stop = asyncio.Event()
        watching = asyncio.create_task(supervisor.watch(stop))
        try:
            os.kill(claude_pid(), signal.SIGKILL)
            await until("alice crash-looping", lambda: record().state is AgentState.CRASH_LOOPING)
        finally:
            stop.set()
            await watching

    async def after_a_down() -> None:
        # Not running when a supervisor starts (a `down` stopped it): started anew, it counts from 0.
        tmux_server.kill_session("alice")
        supervisor = Supervisor([alice], tmux_server, run_dir, interval=0.05)
        await supervisor.begin([])
        assert (supervisor.agents["alice"].record.restarts, supervisor.agents["alice"].record.fast_crashes) == (0, 0)

    asyncio.run(first())
    asyncio.run(second())
    asyncio.run(after_a_down())


def test_an_adopted_agent_keeps_its_last_exit_and_last_activity(tmux_server: Tmux, tmp_path: Path) -> None:
    # `status` shows them while the agent runs unsupervised; the supervisor that adopted it showed none.
    alice = spec(tmp_path, "alice")
    run_dir = RunDir(tmp_path / "runtime")
    run_dir.ensure()

    async def first() -> Record:
        async with restarted_then_detached(alice, tmux_server, run_dir, signal.SIGTERM) as record:
            return record

    async def second() -> Record:
        supervisor = Supervisor([alice], tmux_server, run_dir, interval=0.05)
        await supervisor.begin([])
        return supervisor.agents["alice"].record

    before = asyncio.run(first())
    assert (before.last_exit, before.last_activity is not None) == (128 + signal.SIGTERM, True)
    adopted = asyncio.run(second())
    assert (adopted.last_exit, adopted.last_activity, adopted.restarts) == (
        before.last_exit,
        before.last_activity,
        before.restarts,
    )


def test_a_clock_set_back_neither_holds_a_restart_back_nor_changes_an_uptime(tmux_server: Tmux, tmp_path: Path) -> None:
    # The restart was due at a time of the clock before it jumped: an hour away after it.
    alice = replace(spec(tmp_path, "alice"), restart=Restart(min_uptime=60, backoff_initial=0.5))
    run_dir = RunDir(tmp_path / "runtime")
    run_dir.ensure()
    offset = [0.0]

    def clock() -> float:
        return time.time() + offset[0]

    async def scenario() -> None:
        supervisor = Supervisor([alice], tmux_server, run_dir, interval=0.05, clock=clock)
        await supervisor.begin(["alice"])
        stop = asyncio.Event()
        watching = asyncio.create_task(supervisor.watch(stop))

        def record() -> Record:
            return supervisor.agents["alice"].record

        def uptime() -> float:
            started = record().started_at
            assert started is not None
            return clock() - started

        try:
            await until("alice ready", lambda: record().state in SERVING)
            os.kill(panes.panes(tmux_server)[("alice", panes.CLAUDE_PANE)].pid, signal.SIGKILL)
            await until("alice backing off", lambda: record().state is AgentState.BACKING_OFF)
            offset[0] = -3600.0
            await until("alice back", lambda: record().restarts == 1 and record().state in SERVING)
            assert 0 <= uptime() < 5
            offset[0] = 0.0
            await asyncio.sleep(0.2)
            assert 0 <= uptime() < 5
        finally:
            stop.set()
            await watching

    asyncio.run(scenario())
