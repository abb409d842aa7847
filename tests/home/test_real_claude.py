"""The real `claude` CLI started on an assembled home, against the scripted model server.

What Claude Code sends the model proves it read the assembled files: the
CLAUDE.md text in the system prompt, the subagent in the tool list, the MCP
servers' tools offered, the prompt context the UserPromptSubmit hook fetched
from the (stood-in) supervisor's MCP endpoint; the recording agent-smith
proves the command hooks fired and got the agent's environment from
settings.json.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
from ruamel.yaml import YAML

from agent_smith.crew import load_crew
from agent_smith.home import MCP_TOKEN_VAR, MCP_URL_VAR, AssembleOptions, AssemblyReport, agent_environment, assemble
from agent_smith.hooks import prompt_tool
from agent_smith.runtime import ClaudeLaunch, PermissionMode, Tmux, claude_launch, start_in_tmux
from agent_smith.standins import RequestKind
from tests.fixtures.model import StartModelServer
from tests.fixtures.processes import LeakCheck
from tests.home.crewkit import PERSONA_MARK, SHARED_MARK, McpHttpStub, calls, recording_command, write_crew

pytestmark = pytest.mark.real

EVENTS_TOKEN = "test-token-for-devbot-0c4e"


def _wait(predicate: Any, what: str, timeout: float = 30.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if found := predicate():
            return found
        time.sleep(0.1)
    pytest.fail(f"timed out waiting for {what}")


def _launch_in(
    report: AssemblyReport, claude_binary: Path, base_url: str, mode: PermissionMode, **options: Any
) -> ClaudeLaunch:
    """The CLI as the supervisor starts it in an assembled home."""
    launch = claude_launch(
        claude_binary,
        cwd=report.workspace,
        home=report.home,
        config_dir=report.home / ".claude",
        base_url=base_url,
        running_as_root=os.geteuid() == 0,
        permission_mode=mode,
        **options,
    )
    # HOME alone decides where the CLI reads ~/.claude.json; CLAUDE_CONFIG_DIR would move it.
    env = {k: v for k, v in launch.env.items() if k != "CLAUDE_CONFIG_DIR"}
    return ClaudeLaunch(launch.argv, env, launch.cwd)


def _system_text(body: dict[str, Any]) -> str:
    system = body.get("system", "")
    return system if isinstance(system, str) else "\n".join(b.get("text", "") for b in system)


def test_claude_reads_the_assembled_home(
    tmp_path: Path,
    model_server: StartModelServer,
    tmux_server: Tmux,
    claude_binary: Path,
    leak_check: LeakCheck,
    request: pytest.FixtureRequest,
) -> None:
    command, log = recording_command(tmp_path / "bin")
    crew = write_crew(
        tmp_path / "crew",
        state_dir=tmp_path / "state",
        persona_servers={"docs": {"type": "stdio", "command": str(command), "args": ["mcp", "docs"]}},
    )
    loaded = load_crew(crew, env={})
    report = assemble(
        loaded,
        "devbot",
        AssembleOptions(agent_smith_command=str(command), env={"MATRIX_ACCESS_TOKEN": "syt_not_a_real_one"}),
    )
    server = model_server({"agents": {"devbot": [{"when": {"contains": "hello"}, "text": "Hi from the model."}]}})
    # The prompt context as the supervisor serves it: the real tool, for devbot's environment.
    events = McpHttpStub(log, token=EVENTS_TOKEN, tools=[prompt_tool(agent_environment(loaded, "devbot"))])

    launch = _launch_in(report, claude_binary, server.agent_url("devbot"), PermissionMode.DEFAULT, tool_search=False)
    # What the supervisor puts in the pane's environment for the event tools' entry to expand.
    launch.env.update({MCP_URL_VAR: events.url, MCP_TOKEN_VAR: EVENTS_TOKEN})
    events.start()
    request.addfinalizer(events.close)
    pane = start_in_tmux(tmux_server, "devbot", launch, remain_on_exit=True)
    leak_check.track(pane.pane_pid, "claude devbot")
    # MCP servers connect in the background; the prompt goes once all three listed their tools.
    _wait(
        lambda: len([c for c in calls(log) if c.get("method") == "tools/list"]) >= 3,
        "the MCP servers to list their tools",
    )
    tmux_server.send_text("devbot", "hello there")
    tmux_server.wait_for("devbot", "Hi from the model.", timeout=30)

    turns = server.requests(agent="devbot", kind=RequestKind.AGENT_TURN)
    assert turns, "the CLI sent no agent turn"
    body = turns[-1].body
    system = _system_text(body) + json.dumps(body.get("messages", []))
    assert SHARED_MARK in system
    assert PERSONA_MARK in system
    assert "## Your team" in system
    assert "| reviewbot | reviewer | @reviewbot:localhost |" in system
    tools = {t["name"]: t for t in body["tools"]}
    assert {"mcp__agent-smith-events__events_probe", "mcp__matrix__chat_probe", "mcp__docs__docs_probe"} <= set(tools)
    # 2.1.331 lists the subagents the Agent tool can launch in a reminder among the messages.
    assert "- test-writer: Writes focused tests for a change." in json.dumps(body), "the subagent is not offered"

    def hook(kind: str) -> list[dict[str, Any]]:
        return [c for c in calls(log) if c["argv"] == ["hook", kind]]

    # UserPromptSubmit is a call of the supervisor's prompt_context tool, no process; what it
    # answered reached the model with the prompt.
    assert [c["tool"] for c in calls(log) if c.get("method") == "tools/call"] == ["prompt_context"]
    assert not hook("prompt")
    messages = json.dumps(body["messages"])
    assert "[agent-smith] You are devbot, GitHub login devbot-gh." in messages
    assert "Open PRs awaiting you: not checked yet." in messages
    stop = _wait(lambda: hook("stop"), "the Stop hook")[0]
    assert json.loads(stop["stdin"])["hook_event_name"] == "Stop"
    # The agent's environment reached the hook through settings.json, not the launching process.
    assert "SSL_CERT_FILE" not in launch.env
    assert "HTTPS_PROXY" not in launch.env
    assert stop["env"]["SSL_CERT_FILE"] == str(report.home / ".config" / "agent-smith" / "ca-bundle.pem")
    assert stop["env"]["HTTPS_PROXY"].startswith("http://devbot:")
    assert stop["env"]["AGENT_NAME"] == "devbot"
    # The event tools and the Matrix channel were reached over HTTP with the agent's token, never
    # without it: the CLI expanded both entries' variables, the channel's inside its URL too.
    for kind in ("events", "chat"):
        over_http = [c for c in calls(log) if c["argv"] == ["mcp", kind]]
        assert over_http, kind
        assert all(c["authorized"] for c in over_http), kind
    assert not [c for c in calls(log) if c["argv"] == ["mcp", "unknown"]]
    assert "syt_not_a_real_one" not in tmux_server.capture("devbot", history=True)

    # What the running CLI wrote into its files is kept: assembling again changes nothing.
    again = assemble(
        load_crew(crew, env={}),
        "devbot",
        AssembleOptions(agent_smith_command=str(command), env={"MATRIX_ACCESS_TOKEN": "syt_not_a_real_one"}),
    )
    assert [str(c.path) for c in again.files] == [], "".join(c.diff for c in again.files)
    # ... and the CLI starts straight at its prompt on that home again (no onboarding, no trust dialog).
    tmux_server.kill_session("devbot")
    restarted = start_in_tmux(tmux_server, "devbot-again", launch)
    leak_check.track(restarted.pane_pid, "claude devbot, restarted")


def test_the_pinned_cli_reads_user_mcp_servers_from_claude_json_not_dot_mcp_json(
    tmp_path: Path, claude_binary: Path
) -> None:
    """Why assembly puts MCP servers in ~/.claude.json: ~/.claude/.mcp.json is never read."""
    command, _ = recording_command(tmp_path / "bin")
    home, cwd = tmp_path / "home", tmp_path / "work"
    (home / ".claude").mkdir(parents=True)
    cwd.mkdir()
    server = {"type": "stdio", "command": str(command), "args": ["mcp", "x"]}
    (home / ".claude" / ".mcp.json").write_text(json.dumps({"mcpServers": {"in-dot-claude": server}}))
    (home / ".claude.json").write_text(json.dumps({"mcpServers": {"in-claude-json": server}}))
    env = {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": str(home), "DISABLE_AUTOUPDATER": "1"}
    listed = subprocess.run(
        [str(claude_binary), "mcp", "list"], cwd=cwd, env=env, capture_output=True, text=True, timeout=60, check=False
    )
    assert "in-claude-json" in listed.stdout, listed.stdout + listed.stderr
    assert "in-dot-claude" not in listed.stdout


def test_an_agent_assembled_for_bypass_mode_starts_at_its_prompt(
    tmp_path: Path, model_server: StartModelServer, tmux_server: Tmux, claude_binary: Path, leak_check: LeakCheck
) -> None:
    """Without the assembled skip, the CLI stops at a warning whose preselected answer is "No, exit"."""
    command, _ = recording_command(tmp_path / "bin")
    crew = write_crew(tmp_path / "crew", state_dir=tmp_path / "state", matrix=False)
    yaml = YAML()
    data = yaml.load(crew / "crew.yaml")
    data["agents"][0]["permission_mode"] = "bypassPermissions"
    yaml.dump(data, crew / "crew.yaml")
    report = assemble(load_crew(crew, env={}), "devbot", AssembleOptions(agent_smith_command=str(command), env={}))
    server = model_server({"agents": {"devbot": []}})
    launch = _launch_in(report, claude_binary, server.agent_url("devbot"), PermissionMode.BYPASS_PERMISSIONS)
    pane = start_in_tmux(tmux_server, "devbot", launch, ready_timeout=20)
    leak_check.track(pane.pane_pid, "claude devbot in bypass mode")
    assert "bypass permissions on" in tmux_server.capture("devbot")
