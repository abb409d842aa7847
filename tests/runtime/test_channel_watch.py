"""An agent whose claude lost its Matrix channel for good is restarted; one that holds it, or never
held it (another start would not help), is not.

Real tmux; a shell that shows claude's prompt stands in for claude, and the
channels are the MCP servers the supervisor hosts, driven as a client would.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import pytest

from agent_smith.mcpstdio import McpServer
from agent_smith.runtime import Tmux
from agent_smith.runtime.policy import AgentState
from agent_smith.runtime.rundir import RunDir
from agent_smith.runtime.supervisor import Supervisor
from tests.runtime.conftest import spec, until

pytestmark = pytest.mark.real


class Stream:
    """A client's stream that takes whatever it is sent."""

    def write(self, data: bytes) -> None:
        pass

    async def drain(self) -> None:
        pass


def test_a_claude_that_lost_its_channel_is_restarted_one_that_never_had_it_is_not(
    tmux_server: Tmux, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    published: list[tuple[str, str, dict[str, object]]] = []

    async def publish(kind: str, agent: str, fields: object) -> None:
        assert isinstance(fields, dict)
        published.append((kind, agent, fields))

    async def handshake(server: McpServer, stream: Stream) -> None:
        server.attach(stream)
        await server.handle({"jsonrpc": "2.0", "id": 1, "method": "tools/list"})
        assert server.connected

    async def run() -> Supervisor:
        run_dir = RunDir(tmp_path / "runtime")
        run_dir.ensure()
        supervisor = Supervisor(
            [spec(tmp_path, name) for name in ("alice", "bob", "carol")],
            tmux_server,
            run_dir,
            publish=publish,
            interval=0.05,
            channel_grace=0.5,
        )
        alice, bob, carol = (McpServer("matrix", "1.0", [], pushes=True) for _ in range(3))
        await handshake(bob, Stream())
        supervisor.watch_channels({"alice": alice, "bob": bob, "carol": carol})
        await supervisor.begin(["alice", "bob", "carol"])
        stop = asyncio.Event()
        watching = asyncio.create_task(supervisor.watch(stop))
        her = supervisor.agents["alice"]
        try:
            await until("alice ready", lambda: her.record.state is AgentState.READY)
            # Her claude holds the channel, then its stream breaks for good.
            stream = Stream()
            await handshake(alice, stream)
            await asyncio.sleep(0.2)
            alice.detach(stream)
            await until("alice restarted", lambda: her.record.restarts == 1)
            await until("alice ready again", lambda: her.record.state is AgentState.READY)
            # The new claude never connects: it is not restarted again, and that is said once.
            await asyncio.sleep(1.5)
        finally:
            stop.set()
            await watching
        return supervisor

    with caplog.at_level(logging.WARNING, logger="agent_smith.runtime.supervisor"):
        supervisor = asyncio.run(run())
    crashed = {agent: f for kind, agent, f in published if kind == "agent_crashed"}
    assert list(crashed) == ["alice"]
    assert str(crashed["alice"]["reason"]).startswith("lost its Matrix channel after ")
    assert [a.record.restarts for a in supervisor.agents.values()] == [1, 0, 0]
    never = [r.getMessage() for r in caplog.records if "has not connected its Matrix channel" in r.getMessage()]
    assert sorted(m.split(":")[0] for m in never) == ["agent alice", "agent carol"]
