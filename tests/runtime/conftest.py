"""A crew on disk for the runtime's real-parts tests, and `agent-smith` run as a subprocess."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from ruamel.yaml import YAML

from agent_smith.listeners import free_port
from agent_smith.runtime import AgentSpec, Tmux
from agent_smith.runtime.policy import Restart

pytest.register_assert_rewrite("tests.fixtures.processes")
from tests.fixtures.processes import LeakCheck, children_of, pid_alive  # noqa: E402

STUB_CREDENTIALS = {
    "claudeAiOauth": {
        "accessToken": "agent-smith-placeholder-claude-access-token",
        "refreshToken": "agent-smith-placeholder-claude-refresh-token",
        "expiresAt": 4102444800000,
        "scopes": ["user:inference", "user:profile"],
        "subscriptionType": "max",
    }
}


@dataclass
class CrewDir:
    root: Path
    state: Path
    socket: str
    env: dict[str, str]

    @property
    def runtime(self) -> Path:
        return self.state / self.name / "runtime"

    @property
    def name(self) -> str:
        return "rt"

    def cli(
        self, *args: str, timeout: float = 120, env: Mapping[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        argv = [str(Path(sys.executable).parent / "agent-smith"), *args]
        return subprocess.run(
            argv, env=dict(env or self.env), capture_output=True, text=True, timeout=timeout, check=False
        )

    def invoke(self, *args: str, env: Mapping[str, str | None] | None = None) -> subprocess.CompletedProcess[str]:
        """The CLI in this process (no interpreter start-up): for commands that must fail before starting anything."""
        from typer.testing import CliRunner

        from agent_smith.cli.app import app

        result = CliRunner().invoke(app, list(args), env=dict(env or {}))
        return subprocess.CompletedProcess(list(args), result.exit_code, result.stdout, result.stderr)

    def entry(self, name: str) -> dict[str, Any]:
        """An agent's entry in the supervisor's status file (what `status` reads), without a CLI call."""
        try:
            data = json.loads((self.runtime / "status.json").read_text())
        except (FileNotFoundError, json.JSONDecodeError):
            return {}
        entry: dict[str, Any] = data.get("agents", {}).get(name, {})
        return entry

    def status(self) -> dict[str, dict[str, Any]]:
        result = self.cli("status", "--crew", str(self.root), "--json")
        assert result.returncode == 0, result.stderr
        return {row["agent"]: row for row in json.loads(result.stdout)["agents"]}

    def tmux(self) -> Tmux:
        return Tmux(self.socket)

    def pane_pid(self, session: str, index: int = 0) -> int:
        return int(self.tmux().command("display-message", "-p", "-t", f"={session}:0.{index}", "#{pane_pid}").strip())


def write_crew(root: Path, agents: Sequence[Mapping[str, Any]], state: Path, socket_name: str) -> None:
    (root / "agents" / "_shared").mkdir(parents=True)
    (root / "agents" / "_shared" / "CLAUDE.md").write_text("# Shared rules\n")
    (root / "agents" / "_shared" / "settings.json").write_text("{}\n")
    (root / "agents" / "_shared" / ".credentials.json").write_text(json.dumps(STUB_CREDENTIALS))
    for agent in agents:
        (root / "agents" / agent["name"]).mkdir()
        (root / "agents" / agent["name"] / "CLAUDE.md").write_text(f"# {agent['name']}\n")
    crew = {
        "version": 1,
        "crew": {"name": "rt"},
        "agents": list(agents),
        "egress": {"listen": f"127.0.0.1:{free_port()}"},
        "runtime": {"state_dir": str(state), "tmux_socket": socket_name},
    }
    with (root / "crew.yaml").open("w") as fh:
        YAML().dump(crew, fh)


def cli_env(tmp_path: Path) -> dict[str, str]:
    home = tmp_path / "home"
    home.mkdir(exist_ok=True)
    return {
        "PATH": f"{Path(sys.executable).parent}:/usr/local/bin:/usr/bin:/bin",
        "HOME": str(home),
        "LANG": "C.UTF-8",
        "TMPDIR": str(tmp_path),
    }


@pytest.fixture
def make_crew(tmp_path: Path, leak_check: LeakCheck) -> Iterator[Any]:
    """Factory: ``crew = make_crew([{"name": "alice", ...}])``; everything it ran is gone at the end."""
    made: list[CrewDir] = []

    def make(agents: Sequence[Mapping[str, Any]]) -> CrewDir:
        root = tmp_path / f"crew{len(made)}"
        state = tmp_path / f"state{len(made)}"
        socket_name = f"agent-smith-rt-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        write_crew(root, agents, state, socket_name)
        crew = CrewDir(root, state, socket_name, cli_env(tmp_path))
        made.append(crew)
        return crew

    try:
        yield make
    finally:
        for crew in made:
            tmux = crew.tmux()
            for pid in tmux.pane_pids():
                leak_check.track(pid, "tmux pane")
                for child in children_of(pid):
                    leak_check.track(child, "process in a tmux pane")
            if tmux.server_pid() is not None or (crew.runtime / "supervisor.lock").exists():
                crew.cli("down", "--crew", str(crew.root), timeout=60)
            tmux.kill_server()


def alive(pids: Sequence[int]) -> list[int]:
    return [pid for pid in pids if pid_alive(pid)]


# A shell that shows claude's prompt and stays: claude, as the supervisor sees it.
FAKE_CLAUDE = ("/bin/sh", "-c", "printf '❯ \\n'; exec sleep 600")


def spec(tmp_path: Path, name: str) -> AgentSpec:
    """An agent whose claude is FAKE_CLAUDE, restarted quickly."""
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
    """Wait (in the event loop) up to 15 s for `check`."""
    for _ in range(300):
        if check():
            return
        await asyncio.sleep(0.05)
    pytest.fail(f"timed out waiting 15s for {what}")
