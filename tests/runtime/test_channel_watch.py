"""An agent whose claude stays off its Matrix channel is restarted; one on it is left alone.

Real tmux; a shell that shows claude's prompt stands in for claude, and the
channels are the MCP servers the supervisor hosts, one never connected.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

import pytest

from agent_smith.mcpstdio import McpServer
from agent_smith.runtime import AgentSpec, Tmux
from agent_smith.runtime.policy import AgentState, Restart
from agent_smith.runtime.rundir import RunDir
from agent_smith.runtime.supervisor import Supervisor

pytestmark = pytest.mark.real

FAKE_CLAUDE = ("/bin/sh", "-c", "printf '❯ \\n'; exec sleep 600")


def spec(tmp_path: Path, name: str) -> AgentSpec:
    work = tmp_path / name / "work"
    work.mkdir(parents=True)
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path / name), "LANG": "C.UTF-8", "TERM": "xterm-256color"}
    return AgentSpec(
        name=name,
        session=name,
        claude=FAKE_CLAUDE,
        env=env,
        cwd=work,
        shell=("/bin/sh",),
        shell_cwd=work,
        config_dir=tmp_path / name / ".claude",
        state_dir=tmp_path / name / "state",
        log_dir=tmp_path / "logs",
        restart=Restart(min_uptime=60, backoff_initial=0.1, backoff_max=1.0),
    )


async def until(what: str, check: Callable[[], bool]) -> None:
    for _ in range(300):
        if check():
            return
        await asyncio.sleep(0.05)
    pytest.fail(f"timed out waiting 15s for {what}")


class Stream:
    """A client's stream that takes whatever it is sent."""

    def write(self, data: bytes) -> None:
        pass

    async def drain(self) -> None:
        pass


def test_an_agent_off_its_channel_is_restarted_and_one_on_it_is_not(tmux_server: Tmux, tmp_path: Path) -> None:
    published: list[tuple[str, str, dict[str, object]]] = []

    async def publish(kind: str, agent: str, fields: object) -> None:
        assert isinstance(fields, dict)
        published.append((kind, agent, fields))

    async def run() -> Supervisor:
        run_dir = RunDir(tmp_path / "runtime")
        run_dir.ensure()
        supervisor = Supervisor(
            [spec(tmp_path, "alice"), spec(tmp_path, "bob")],
            tmux_server,
            run_dir,
            publish=publish,
            interval=0.05,
            channel_grace=0.5,
        )
        off, on = (McpServer("matrix", "1.0", [], pushes=True) for _ in range(2))
        on.attach(Stream())
        await on.handle({"jsonrpc": "2.0", "id": 1, "method": "tools/list"})
        assert on.connected
        assert not off.connected
        supervisor.watch_channels({"alice": off, "bob": on})
        await supervisor.begin(["alice", "bob"])
        stop = asyncio.Event()
        watching = asyncio.create_task(supervisor.watch(stop))
        alice = supervisor.agents["alice"]
        try:
            await until("alice restarted twice", lambda: alice.record.restarts >= 2)
            await until("alice ready again", lambda: alice.record.state is AgentState.READY)
        finally:
            stop.set()
            await watching
        return supervisor

    supervisor = asyncio.run(run())
    lost = [f for kind, agent, f in published if kind == "agent_crashed" and agent == "alice"]
    assert len(lost) >= 2
    assert all(str(f["reason"]).startswith("lost its Matrix channel after ") for f in lost)
    # Every restart came from a channel loss, each after its new claude served for the grace.
    assert supervisor.agents["alice"].record.restarts == len(lost)
    assert not [f for kind, agent, f in published if kind == "agent_crashed" and agent == "bob"]
    assert supervisor.agents["bob"].record.restarts == 0
