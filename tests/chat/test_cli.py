"""`agent-smith mcp chat` as Claude Code runs it: a child process speaking MCP on stdin/stdout."""

from __future__ import annotations

import json
import queue
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from agent_smith.chat.config import read_token
from agent_smith.errors import UsageError
from agent_smith.fsutil import write_atomic
from agent_smith.standins.synapse import SynapseServer
from tests.chat.kit import Cast, make_cast, room_events, send, wait_until, write_crew
from tests.fixtures.processes import LeakCheck

CLI = Path(sys.executable).parent / "agent-smith"


class StdioClient:
    def __init__(self, process: subprocess.Popen[str]) -> None:
        self.process = process
        self.lines: queue.Queue[dict[str, Any]] = queue.Queue()
        self._next_id = 0
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.put(json.loads(line))

    def send(self, message: dict[str, Any]) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(json.dumps({"jsonrpc": "2.0", **message}) + "\n")
        self.process.stdin.flush()

    def request(self, method: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
        self._next_id += 1
        self.send({"id": self._next_id, "method": method, "params": params or {}})
        return self.wait(lambda m: m.get("id") == self._next_id)

    def wait(self, match: Any, timeout: float = 20.0) -> dict[str, Any]:
        while True:
            message = self.lines.get(timeout=timeout)
            if match(message):
                return message


def chat_env(crew_dir: Path, token_file: Path) -> dict[str, str]:
    return {
        "PATH": f"{CLI.parent}:/usr/bin:/bin",
        "HOME": str(crew_dir),
        "LANG": "C.UTF-8",
        "AGENT_SMITH_CREW": str(crew_dir),
        "AGENT_NAME": "devbot",
        "MATRIX_ACCESS_TOKEN_FILE": str(token_file),
    }


@pytest.fixture
def cast(synapse: SynapseServer) -> Cast:
    return make_cast(synapse)


@pytest.fixture
def chat_process(
    tmp_path: Path, cast: Cast, synapse: SynapseServer, leak_check: LeakCheck
) -> Iterator[tuple[StdioClient, Path]]:
    crew_dir = write_crew(tmp_path / "crew", cast, synapse.url)
    token_file = tmp_path / "token"
    write_atomic(token_file, cast.devbot.access_token, mode=0o600)
    process = subprocess.Popen(
        [str(CLI), "mcp", "chat"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        # All an `mcpServers` entry can set is the environment: the log settings come from there.
        env={**chat_env(crew_dir, token_file), "AGENT_SMITH_LOG_LEVEL": "info", "AGENT_SMITH_LOG_FORMAT": "json"},
    )
    leak_check.track(process.pid, "agent-smith mcp chat")
    try:
        yield StdioClient(process), crew_dir
    finally:
        if process.poll() is None:
            process.kill()
        process.wait(10)
        for stream in (process.stdin, process.stdout, process.stderr):
            if stream is not None:
                stream.close()


def test_the_server_registers_as_a_channel_and_pushes_messages(
    chat_process: tuple[StdioClient, Path], synapse: SynapseServer, cast: Cast
) -> None:
    client, crew_dir = chat_process
    discover = client.request("server/discover")
    assert discover["error"]["code"] == -32601, "answering server/discover would make it no channel"
    init = client.request(
        "initialize", {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "t"}}
    )
    assert init["result"]["capabilities"]["experimental"] == {"claude/channel": {}}
    assert "reply" in init["result"]["instructions"]
    client.send({"method": "notifications/initialized"})
    tools = {t["name"]: t for t in client.request("tools/list")["result"]["tools"]}
    assert set(tools) == {"reply", "react", "edit", "history"}
    assert tools["reply"]["inputSchema"]["required"] == ["room_id", "text"]

    # The first sync sets the starting point (nothing from before the agent's first start is work).
    state = crew_dir / "state" / "chat-test" / "agents" / "devbot" / "state" / "chat" / "state.json"
    wait_until(state.exists, timeout=30, what="the first sync")
    asked = send(synapse, cast.alice, cast.room, {"msgtype": "m.text", "body": "@devbot what's up?"})
    note = client.wait(lambda m: m.get("method") == "notifications/claude/channel")
    assert note["params"]["content"] == "@devbot what's up?"
    meta = note["params"]["meta"]
    assert (meta["room_id"], meta["event_id"], meta["sender"]) == (cast.room, asked, cast.alice.user_id)
    assert set(meta) == {"room_id", "room_name", "sender", "sender_name", "event_id"}

    answer = client.request(
        "tools/call", {"name": "reply", "arguments": {"room_id": cast.room, "text": "All *good*", "reply_to": asked}}
    )
    event_id = answer["result"]["structuredContent"]["event_id"]
    bad = client.request("tools/call", {"name": "reply", "arguments": {"room_id": cast.room}})
    assert bad["result"]["isError"] is True
    assert "missing argument 'text'" in bad["result"]["content"][0]["text"]

    def replied() -> bool:
        return any(e["event_id"] == event_id for e in room_events(synapse, cast.alice, cast.room))

    wait_until(replied, what="the reply in the room")
    assert client.process.stdin is not None
    client.process.stdin.close()
    assert client.process.wait(15) == 0, "closing stdin ends the server cleanly"
    assert client.process.stderr is not None
    logged = client.process.stderr.read()
    assert cast.devbot.access_token not in logged
    records = [json.loads(line) for line in logged.splitlines()]
    assert {"verdict": "wake", "event_id": asked} in [
        {k: r.get(k) for k in ("verdict", "event_id")} for r in records if r.get("verdict")
    ]


def test_a_token_file_others_can_read_is_refused(tmp_path: Path, cast: Cast, synapse: SynapseServer) -> None:
    crew_dir = write_crew(tmp_path / "crew", cast, synapse.url)
    token_file = tmp_path / "token"
    write_atomic(token_file, cast.devbot.access_token, mode=0o644)
    result = subprocess.run(
        [str(CLI), "mcp", "chat"],
        env=chat_env(crew_dir, token_file),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1, result.stderr
    assert "readable by others" in result.stderr
    assert "chmod 600" in result.stderr
    assert cast.devbot.access_token not in result.stderr + result.stdout


def test_token_sources(tmp_path: Path) -> None:
    default = tmp_path / "matrix_access_token"
    assert read_token({"MATRIX_ACCESS_TOKEN": " tok "}, default) == "tok"
    with pytest.raises(UsageError, match="MATRIX_ACCESS_TOKEN is not set"):
        read_token({}, default)
    write_atomic(default, "from-default\n", mode=0o600)
    assert read_token({}, default) == "from-default"
    named = tmp_path / "named"
    write_atomic(named, "", mode=0o600)
    with pytest.raises(UsageError, match="is empty"):
        read_token({"MATRIX_ACCESS_TOKEN_FILE": str(named)}, default)


def test_a_token_file_with_an_editor_s_byte_order_mark_is_read_without_it(tmp_path: Path) -> None:
    named = tmp_path / "named"
    named.write_bytes("\ufeffsyt_token\r\n".encode())
    named.chmod(0o600)
    assert read_token({"MATRIX_ACCESS_TOKEN_FILE": str(named)}, tmp_path / "x") == "syt_token"


@pytest.mark.parametrize("token", ["syt_\u00e9t\u00e9", "syt a", "syt\nb", "syt\x00b"])
def test_a_token_no_header_could_carry_is_one_line_without_it(tmp_path: Path, token: str) -> None:
    named = tmp_path / "named"
    named.write_text(token)
    named.chmod(0o600)
    for env in ({"MATRIX_ACCESS_TOKEN_FILE": str(named)}, {"MATRIX_ACCESS_TOKEN": token}):
        with pytest.raises(UsageError) as caught:
            read_token(env, tmp_path / "x")
        message = str(caught.value)
        assert message.endswith(
            "the Matrix access token holds a character no token has "
            "(a space, a line break, a control or non-ASCII character)"
        )
        assert token.strip() not in message


def test_a_token_file_that_is_a_directory_is_said_to_be_one(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match=f"^{tmp_path}: the Matrix access token file is not a file$"):
        read_token({"MATRIX_ACCESS_TOKEN_FILE": str(tmp_path)}, tmp_path / "x")


def test_no_agent_name_is_a_usage_error(tmp_path: Path) -> None:
    result = subprocess.run(
        [str(CLI), "mcp", "chat"],
        env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "AGENT_SMITH_CREW": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    assert "AGENT_NAME is not set" in result.stderr
    assert "Traceback" not in result.stderr
