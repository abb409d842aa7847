"""Chat → work, end to end: a real Synapse, the real `claude` CLI in tmux with the channel loaded,
and the scripted model server deciding what the agent does."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
import secrets
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from agent_smith.chat.config import ChatConfig, chat_config
from agent_smith.chat.server import ChannelHost
from agent_smith.crew import CrewPaths, load_crew
from agent_smith.fsutil import write_atomic
from agent_smith.home import api_key_suffix, seed_claude_json
from agent_smith.runtime import PINNED_VERSION, PermissionMode, Tmux, claude_launch
from agent_smith.runtime.claude import PROMPT_READY
from agent_smith.runtime.endpoint import CHAT_PATH, http_socket
from agent_smith.runtime.rundir import RunDir
from agent_smith.runtime.supervisor import Supervisor
from agent_smith.standins import ModelServerThread
from agent_smith.standins.synapse import SynapseServer
from tests.chat.kit import answering, make_cast, reply_call, room_events, send, wait_until, write_crew
from tests.fixtures.claude import PLACEHOLDER_API_KEY
from tests.fixtures.model import StartModelServer
from tests.fixtures.processes import LeakCheck, children_of, pid_alive


def script(room: str) -> dict[str, Any]:
    return {
        "agents": {
            "devbot": [
                *answering("what's up", room, "All **good** here.", "Answered."),
                *answering("CI is green", room, "reviewbot: thanks", "Thanked."),
                {"when": {"contains": "one more thing"}, "tool_calls": [reply_call(room, "reviewbot: sure")]},
                {"when": {"tool_result_contains": "refused by the loop guard"}, "text": "Waiting for a human."},
                *answering("are you back", room, "Back.", "Resumed."),
            ]
        }
    }


def channel_requests(model: ModelServerThread, needle: str) -> list[str]:
    bodies = [json.dumps(r.body) for r in model.requests(agent="devbot")]
    return [b for b in bodies if needle in b]


@dataclass
class Agent:
    name: str
    tmux: Tmux
    pane_pid: int


def start_devbot(
    tmux: Tmux, root: Path, claude_binary: Path, leak_check: LeakCheck, model: ModelServerThread, mcp: dict[str, Any]
) -> Agent:
    """The CLI with the channel loaded, as `up` starts it: one config dir per start (`root`)."""
    home, cwd = root / "home", root / "work"
    config_dir = home / ".claude"
    cwd.mkdir(parents=True)
    config_dir.mkdir(parents=True)
    seeded = seed_claude_json(
        {},
        version=PINNED_VERSION,
        trusted_dirs=[str(cwd)],
        approved_key_suffix=api_key_suffix(PLACEHOLDER_API_KEY),
        growthbook_features={"tengu_harbor": True},  # channels are behind this flag; offline it is never fetched
    )
    write_atomic(config_dir / ".claude.json", json.dumps(seeded), mode=0o600)
    write_atomic(config_dir / "settings.json", json.dumps({"skipDangerousModePermissionPrompt": True}))
    mcp_path = root / "mcp.json"
    write_atomic(mcp_path, json.dumps(mcp))
    launch = claude_launch(
        claude_binary,
        cwd=cwd,
        home=home,
        config_dir=config_dir,
        base_url=model.agent_url("devbot"),
        running_as_root=os.geteuid() == 0,
        api_key=PLACEHOLDER_API_KEY,
        permission_mode=PermissionMode.BYPASS_PERMISSIONS,
        mcp_config=mcp_path,
        tool_search=False,
        extra_args=["--dangerously-load-development-channels", "server:matrix"],
    )
    name = root.name
    pane = tmux.new_session(name, launch.argv, env=launch.env, cwd=launch.cwd, remain_on_exit=True)
    leak_check.track(pane.pane_pid, f"claude {name}")
    # The development-channels warning: option 1 (load them) is preselected; one Enter.
    tmux.wait_for(name, "I am using this for local development", timeout=30)
    tmux.send_keys(name, "Enter")
    tmux.wait_for(name, PROMPT_READY, timeout=30)
    return Agent(name, tmux, pane.pane_pid)


def wait_for_chat_server(session: Agent) -> int:
    def found() -> int | None:
        for pid in children_of(session.pane_pid):
            try:
                cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if b"mcp" in cmdline and b"chat" in cmdline:
                return pid
        return None

    pid: int = wait_until(found, timeout=30, what="the chat MCP server under claude")
    return pid


def test_chat_to_work_with_the_real_cli(
    synapse: SynapseServer,
    tmp_path: Path,
    model_server: StartModelServer,
    tmux_server: Tmux,
    claude_binary: Path,
    leak_check: LeakCheck,
) -> None:
    cast = make_cast(synapse)
    crew_dir = write_crew(tmp_path / "crew", cast, synapse.url)
    token_file = CrewPaths.of(load_crew(crew_dir, {}).crew).agent_state("devbot") / "matrix_access_token"
    write_atomic(token_file, cast.devbot.access_token, mode=0o600)
    chat_log = tmp_path / "chat.log"
    mcp = {
        "mcpServers": {
            "matrix": {
                "type": "stdio",
                "command": "/bin/sh",
                # The server's own log, to count what it told claude (the CLI's log cannot say).
                "args": [
                    "-c",
                    f"exec {Path(sys.executable).parent / 'agent-smith'} --log-format json --log-level info mcp chat 2>>{chat_log}",
                ],
                "env": {
                    "AGENT_NAME": "devbot",
                    "AGENT_SMITH_CREW": str(crew_dir),
                    "MATRIX_ACCESS_TOKEN_FILE": str(token_file),
                },
            }
        }
    }
    model = model_server(script(cast.room))
    session = start_devbot(tmux_server, tmp_path / "devbot", claude_binary, leak_check, model, mcp)
    chat_pid = wait_for_chat_server(session)
    wait_until(lambda: (token_file.parent / "chat" / "state.json").exists(), timeout=30, what="the first sync")

    def devbot_says(text: str) -> dict[str, Any] | None:
        for event in room_events(synapse, cast.alice, cast.room):
            content = event.get("content", {})
            if event["sender"] == cast.devbot.user_id and content.get("body") == text:
                return event
        return None

    # A human asks; the model gets the <channel> block, calls reply, the answer lands as devbot.
    asked = send(synapse, cast.alice, cast.room, {"msgtype": "m.text", "body": "@devbot what's up?"})
    answer = wait_until(lambda: devbot_says("All **good** here."), timeout=60, what="devbot's answer")
    assert answer["content"]["msgtype"] == "m.notice"
    assert "<strong>good</strong>" in answer["content"]["formatted_body"]
    (block,) = channel_requests(model, "what's up")[:1]
    assert '<channel source=\\"matrix\\"' in block
    assert f'room_id=\\"{cast.room}\\"' in block
    assert f'event_id=\\"{asked}\\"' in block

    def reactions() -> list[tuple[str, str]]:
        return [
            (e["sender"], e["content"]["m.relates_to"]["key"])
            for e in room_events(synapse, cast.alice, cast.room)
            if e["type"] == "m.reaction" and e["content"]["m.relates_to"]["event_id"] == asked
        ]

    assert wait_until(reactions, what="the 👀 on the question") == [(cast.devbot.user_id, "👀")]

    # Each step waits for the agent's turn to end, so one request never carries two steps' input.
    wait_until(lambda: model.consumed("devbot") == 2, timeout=30, what="the first turn to end")

    # Not addressed to devbot: no wake. A teammate's notice naming devbot: wakes it.
    send(synapse, cast.alice, cast.room, {"msgtype": "m.text", "body": "lunch anyone?"})
    send(synapse, cast.reviewbot, cast.room, {"msgtype": "m.notice", "body": "@devbot CI is green"})
    wait_until(lambda: devbot_says("reviewbot: thanks"), timeout=60, what="devbot thanking reviewbot")
    assert channel_requests(model, "lunch anyone") == []

    wait_until(lambda: model.consumed("devbot") == 4, timeout=30, what="the second turn to end")

    # The fourth agent message in a row is refused, and the model reads why.
    send(synapse, cast.reviewbot, cast.room, {"msgtype": "m.notice", "body": "devbot, one more thing"})
    wait_until(
        lambda: channel_requests(model, "reply refused by the loop guard"),
        timeout=60,
        what="the refusal reaching the model",
    )
    assert devbot_says("reviewbot: sure") is None
    refusal = channel_requests(model, "reply refused by the loop guard")[0]
    assert "3 agent messages in a row" in refusal

    wait_until(lambda: model.consumed("devbot") == 6, timeout=30, what="the third turn to end")

    # Stopped: a message sent meanwhile arrives after the restart, and nothing is replayed.
    session.tmux.kill_session(session.name)
    wait_until(lambda: not pid_alive(chat_pid), timeout=15, what="the chat server to exit with claude")
    back = send(synapse, cast.alice, cast.room, {"msgtype": "m.text", "body": "@devbot are you back?"})
    start_devbot(tmux_server, tmp_path / "devbot-again", claude_binary, leak_check, model, mcp)
    wait_until(lambda: devbot_says("Back."), timeout=60, what="devbot answering after the restart")
    notified = [e["event_id"] for e in map(json.loads, chat_log.read_text().splitlines()) if e.get("notified")]
    assert notified.count(back) == 1, "the message sent while devbot was down is delivered once"
    assert len(notified) == len(set(notified)), "no message is delivered twice, across the restart either"
    # The new session's conversation starts empty: channel blocks in it come from the restarted server only.
    # (The pinned CLI may enqueue one notification twice when it lands while the CLI is still starting.)
    woken = channel_requests(model, "are you back")
    assert woken
    blocks = [block for body in woken for block in re.findall(r"<channel source.*?</channel>", body)]
    assert blocks
    assert all("are you back" in block for block in blocks), f"nothing from before the restart is replayed: {blocks}"
    for request in model.requests(agent="devbot"):
        assert cast.devbot.access_token not in json.dumps(request.body)


class HostedEndpoint:
    """The supervisor's endpoint with devbot's channel hosted in it, as `up` runs it, on its own loop.

    `restart` replaces both on the same port, as a restarted supervisor does.
    """

    def __init__(self, config: ChatConfig, run_dir: RunDir, token: str) -> None:
        self.config, self.run_dir, self.token = config, run_dir, token
        self.port = 0
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._thread.start()
        self._up: tuple[Supervisor, ChannelHost] | None = None

    def _run(self, work: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(work, self._loop).result(30)

    def start(self) -> None:
        async def start() -> None:
            sock = http_socket(f"127.0.0.1:{self.port}", self.run_dir)
            self.port = sock.getsockname()[1]
            supervisor = Supervisor([], Tmux("agent-smith-test-unused"), self.run_dir)
            host = ChannelHost({"devbot": self.config})
            host.start()
            supervisor.serve_mcp({self.token: host.servers["devbot"]}, CHAT_PATH)
            await supervisor.serve_http(sock)
            self._up = (supervisor, host)

        self._run(start())

    @property
    def connected(self) -> bool:
        return self._up is not None and self._up[1].servers["devbot"].connected

    def stop(self) -> None:
        """As when the supervisor is killed: its connections, the claude's stream with them, end."""

        async def stop() -> None:
            assert self._up is not None
            supervisor, host = self._up
            self._up = None
            await host.close()
            await supervisor.close_http()

        self._run(stop())

    def close(self) -> None:
        if self._up is not None:
            self.stop()
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)


def test_the_channel_hosted_by_the_supervisor_survives_its_restart(
    synapse: SynapseServer,
    tmp_path: Path,
    model_server: StartModelServer,
    tmux_server: Tmux,
    claude_binary: Path,
    leak_check: LeakCheck,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """`up` serves the channel from the supervisor over MCP's HTTP transport, with a stream for the
    notifications; when the supervisor restarts, claude reconnects and nothing is lost or repeated."""
    caplog.set_level(logging.INFO, logger="agent_smith.chat.channel")
    cast = make_cast(synapse)
    crew_dir = write_crew(tmp_path / "crew", cast, synapse.url)
    config = chat_config(load_crew(crew_dir, {}).crew, "devbot", cast.devbot.access_token)
    run_dir = RunDir(tmp_path / "runtime")
    run_dir.ensure()
    token = secrets.token_hex(16)
    endpoint = HostedEndpoint(config, run_dir, token)
    endpoint.start()
    try:
        url = f"http://127.0.0.1:{endpoint.port}{CHAT_PATH}"
        mcp = {"mcpServers": {"matrix": {"type": "http", "url": url, "headers": {"Authorization": f"Bearer {token}"}}}}
        steps = script(cast.room)["agents"]["devbot"]
        model = model_server({"agents": {"devbot": [*steps[:2], *steps[-2:]]}})
        start_devbot(tmux_server, tmp_path / "devbot", claude_binary, leak_check, model, mcp)
        wait_until(lambda: (config.state_dir / "state.json").exists(), timeout=30, what="the first sync")
        wait_until(lambda: endpoint.connected, timeout=30, what="claude's stream for the channel")

        def devbot_says(text: str) -> dict[str, Any] | None:
            for event in room_events(synapse, cast.alice, cast.room):
                if event["sender"] == cast.devbot.user_id and event.get("content", {}).get("body") == text:
                    return event
            return None

        asked = send(synapse, cast.alice, cast.room, {"msgtype": "m.text", "body": "@devbot what's up?"})
        wait_until(lambda: devbot_says("All **good** here."), timeout=60, what="devbot's answer")
        (block,) = channel_requests(model, "what's up")[:1]
        assert f'event_id=\\"{asked}\\"' in block
        wait_until(lambda: model.consumed("devbot") == 2, timeout=30, what="the first turn to end")

        # The supervisor goes away under the running claude; a message comes while it is down.
        endpoint.stop()
        back = send(synapse, cast.alice, cast.room, {"msgtype": "m.text", "body": "@devbot are you back?"})
        time.sleep(1.0)
        endpoint.start()
        wait_until(lambda: devbot_says("Back."), timeout=60, what="devbot answering after the supervisor's restart")
        # The same conversation goes on: the question is in it once, the first one not again.
        last = channel_requests(model, "are you back")[-1]
        blocks = re.findall(r"<channel source.*?</channel>", last)
        assert len([b for b in blocks if back in b]) == 1, blocks
        assert len([b for b in blocks if asked in b]) == 1, blocks
        notified = [r.event_id for r in caplog.records if getattr(r, "notified", False)]  # type: ignore[attr-defined]
        assert notified.count(back) == 1, "the message sent while the supervisor was down is delivered once"
        for request in model.requests(agent="devbot"):
            assert cast.devbot.access_token not in json.dumps(request.body)
    finally:
        endpoint.close()
