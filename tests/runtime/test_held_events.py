"""Events the supervisor observes before its event log is up are held, then published first, in order,
each with the time it happened; `none_starting` tells when the agents have all shown their prompts.

Real tmux; a shell that shows claude's prompt stands in for claude.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path

import pytest

from agent_smith.runtime import Tmux
from agent_smith.runtime.policy import AgentState
from agent_smith.runtime.rundir import RunDir
from agent_smith.runtime.supervisor import Supervisor
from tests.runtime.conftest import spec, until

pytestmark = pytest.mark.real


def test_held_events_are_published_first_in_order_with_their_own_time(tmux_server: Tmux, tmp_path: Path) -> None:
    published: list[tuple[str, str, dict[str, object], datetime]] = []

    async def publish(kind: str, agent: str, fields: object) -> None:
        assert isinstance(fields, dict)
        published.append((kind, agent, fields, datetime.now(UTC)))

    async def run() -> tuple[datetime, datetime, datetime]:
        run_dir = RunDir(tmp_path / "runtime")
        run_dir.ensure()
        supervisor = Supervisor(
            [spec(tmp_path, name) for name in ("alice", "bob")], tmux_server, run_dir, interval=0.05
        )
        supervisor.hold_events()
        began = datetime.now(UTC)
        await supervisor.begin(["alice", "bob"])
        assert not supervisor.none_starting.is_set()
        stop = asyncio.Event()
        watching = asyncio.create_task(supervisor.watch(stop))
        try:
            await asyncio.wait_for(supervisor.none_starting.wait(), 15)
            assert {a.record.state for a in supervisor.agents.values()} == {AgentState.READY}
            seen = datetime.now(UTC)
            await asyncio.sleep(0.3)
            assert published == []
            await supervisor.publish_with(publish)
            up = datetime.now(UTC)
            await supervisor.handle("stop", "bob")
            await until("bob stopped", lambda: supervisor.agents["bob"].record.state is AgentState.STOPPED)
        finally:
            stop.set()
            await watching
        return began, seen, up

    began, seen, up = asyncio.run(run())
    held, later = published[:2], published[2:]
    assert sorted(agent for kind, agent, _, _ in held) == ["alice", "bob"]
    for kind, _, fields, sent in held:
        assert kind == "agent_started"
        happened = fields["time"]
        assert isinstance(happened, datetime)
        assert began <= happened <= seen < sent <= up
    # Published as it happens once the event log is up: stamped by the publisher, as always.
    assert [(kind, agent) for kind, agent, _, _ in later][:1] == [("agent_stopped", "bob")]
    assert all("time" not in fields for _, _, fields, _ in later)


def test_none_starting_is_set_at_once_when_nothing_starts(tmux_server: Tmux, tmp_path: Path) -> None:
    async def run() -> bool:
        run_dir = RunDir(tmp_path / "runtime")
        run_dir.ensure()
        supervisor = Supervisor([spec(tmp_path, "alice")], tmux_server, run_dir)
        await supervisor.begin([])
        return supervisor.none_starting.is_set()

    assert asyncio.run(run())


def test_an_event_observed_while_the_held_ones_go_out_queues_behind_them(tmux_server: Tmux, tmp_path: Path) -> None:
    published: list[tuple[str, str]] = []

    async def run() -> None:
        run_dir = RunDir(tmp_path / "runtime")
        run_dir.ensure()
        supervisor = Supervisor(
            [spec(tmp_path, name) for name in ("alice", "bob")], tmux_server, run_dir, interval=0.05
        )

        async def publish(kind: str, agent: str, fields: object) -> None:
            if not published:
                # The first held event is on its way when bob is stopped.
                await supervisor.handle("stop", "bob")
            published.append((kind, agent))

        supervisor.hold_events()
        await supervisor.begin(["alice", "bob"])
        stop = asyncio.Event()
        watching = asyncio.create_task(supervisor.watch(stop))
        try:
            await asyncio.wait_for(supervisor.none_starting.wait(), 15)
            await supervisor.publish_with(publish)
        finally:
            stop.set()
            await watching

    asyncio.run(run())
    assert sorted(published[:2]) == [("agent_started", "alice"), ("agent_started", "bob")]
    assert published[2] == ("agent_stopped", "bob")


def test_events_held_by_a_supervisor_killed_before_its_event_log_came_up_are_published_by_the_next(
    tmux_server: Tmux, tmp_path: Path
) -> None:
    kept = tmp_path / "runtime" / "held-events.jsonl"
    published: list[tuple[str, str, dict[str, object]]] = []

    async def publish(kind: str, agent: str, fields: object) -> None:
        assert isinstance(fields, dict)
        published.append((kind, agent, fields))

    async def killed() -> None:
        run_dir = RunDir(tmp_path / "runtime")
        run_dir.ensure()
        supervisor = Supervisor([spec(tmp_path, "alice")], tmux_server, run_dir, interval=0.05)
        supervisor.hold_events(kept)
        await supervisor.begin(["alice"])
        stop, keep = asyncio.Event(), asyncio.Event()
        watching = asyncio.create_task(supervisor.watch(stop, keep_agents=keep))
        await asyncio.wait_for(supervisor.none_starting.wait(), 15)
        # Gone before its event log came up (as SIGKILL would leave it): nothing was published.
        keep.set()
        stop.set()
        await watching

    async def next_one() -> None:
        run_dir = RunDir(tmp_path / "runtime")
        supervisor = Supervisor([spec(tmp_path, "bob")], tmux_server, run_dir, interval=0.05)
        supervisor.hold_events(kept)
        await supervisor.begin([])
        await supervisor.publish_with(publish)

    asyncio.run(killed())
    assert kept.is_file()
    assert published == []
    asyncio.run(next_one())
    [(kind, agent, fields)] = published
    assert (kind, agent) == ("agent_started", "alice")
    # With the id and the time it was kept with: one published already is stored once.
    assert not kept.exists(), "published, it is no longer kept"
    assert isinstance(fields["id"], str)
    assert isinstance(fields["time"], str)
    assert datetime.fromisoformat(fields["time"]) <= datetime.now(UTC)
