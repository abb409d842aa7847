"""The stdio MCP core, driven over a real pipe to a child process as Claude Code drives it."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from typing import Any

import pytest

SERVER = textwrap.dedent(
    """
    import asyncio
    from agent_smith.mcpstdio import McpServer, Tool, ToolError

    async def echo(args):
        return {"echo": args.get("text", "")}

    async def refuse(args):
        raise ToolError("refused: " + args.get("why", "no reason"))

    async def crash(args):
        raise KeyError("boom")

    async def half_pair(args):
        return "read from a file: \\ud83d"

    async def main():
        server = McpServer(
            "test", "1.2.3",
            [Tool("echo", "Echo text.", {"type": "object", "properties": {"text": {"type": "string"}}}, echo),
             Tool("refuse", "Always refuses.", {"type": "object"}, refuse),
             Tool("crash", "Always crashes.", {"type": "object"}, crash),
             Tool("half_pair", "Answers half a surrogate pair.", {"type": "object"}, half_pair)],
            instructions="Use echo.",
            experimental={"claude/channel": {}},
        )
        async def push():
            await server.notify("notifications/claude/channel", {"content": "hi", "meta": {"room_id": "!r:x"}})
        task = asyncio.create_task(push())
        await server.serve_stdio()
        task.cancel()

    asyncio.run(main())
    """
)


class Client:
    def __init__(self, proc: subprocess.Popen[bytes]) -> None:
        self.proc = proc
        self.next_id = 0

    def send(self, message: dict[str, Any]) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps(message).encode() + b"\n")
        self.proc.stdin.flush()

    def raw(self, line: bytes) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(line)
        self.proc.stdin.flush()

    def read(self) -> dict[str, Any]:
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        assert line, "server closed stdout"
        data: dict[str, Any] = json.loads(line)
        return data

    def request(self, method: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
        self.next_id += 1
        self.send({"jsonrpc": "2.0", "id": self.next_id, "method": method, "params": params or {}})
        while True:
            message = self.read()
            if message.get("id") == self.next_id:
                return message


@pytest.fixture
def client() -> Iterator[Client]:
    proc = subprocess.Popen(
        [sys.executable, "-c", SERVER], stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    try:
        yield Client(proc)
    finally:
        proc.kill()
        proc.wait(timeout=10)


def test_server_discover_is_method_not_found_so_the_cli_uses_the_classic_era(client: Client) -> None:
    answer = client.request("server/discover")
    assert answer["error"]["code"] == -32601


def test_initialize_declares_tools_and_the_channel_capability(client: Client) -> None:
    answer = client.request("initialize", {"protocolVersion": "2025-06-18", "capabilities": {}})
    result = answer["result"]
    assert result["protocolVersion"] == "2025-06-18"
    assert result["capabilities"]["experimental"] == {"claude/channel": {}}
    assert result["serverInfo"] == {"name": "test", "version": "1.2.3"}
    assert result["instructions"] == "Use echo."


def test_unknown_protocol_version_gets_the_newest_supported(client: Client) -> None:
    answer = client.request("initialize", {"protocolVersion": "1999-01-01"})
    assert answer["result"]["protocolVersion"] == "2025-06-18"


def test_tools_list_and_calls(client: Client) -> None:
    names = [t["name"] for t in client.request("tools/list")["result"]["tools"]]
    assert names == ["echo", "refuse", "crash", "half_pair"]
    ok = client.request("tools/call", {"name": "echo", "arguments": {"text": "hello"}})["result"]
    assert ok["structuredContent"] == {"echo": "hello"}
    assert json.loads(ok["content"][0]["text"]) == {"echo": "hello"}
    refused = client.request("tools/call", {"name": "refuse", "arguments": {"why": "loop guard"}})["result"]
    assert refused == {"content": [{"type": "text", "text": "refused: loop guard"}], "isError": True}
    crashed = client.request("tools/call", {"name": "crash", "arguments": {}})["result"]
    assert crashed["isError"] is True
    assert "KeyError" in crashed["content"][0]["text"]
    assert client.request("tools/call", {"name": "nope"})["error"]["code"] == -32602
    assert client.request("tools/call", {"name": "echo", "arguments": [1]})["error"]["code"] == -32602


def test_garbage_gets_a_parse_error_and_the_server_keeps_serving(client: Client) -> None:
    client.raw(b"{not json\n")
    assert client.read()["error"]["code"] == -32700
    client.raw(b'["jsonrpc"]\n')
    assert client.read()["error"]["code"] == -32600
    assert client.request("ping") == {"jsonrpc": "2.0", "id": 1, "result": {}}


def test_a_message_over_the_limit_is_refused_and_the_server_keeps_serving(client: Client) -> None:
    client.raw(b'{"jsonrpc": "2.0", "id": 9, "method": "ping", "params": {"x": "' + b"a" * (17 * 2**20) + b'"}}\n')
    assert client.read()["error"] == {"code": -32600, "message": "message too long for this server"}
    assert client.request("ping") == {"jsonrpc": "2.0", "id": 1, "result": {}}


def test_notifications_wait_until_the_client_listed_the_tools(client: Client) -> None:
    client.request("initialize", {"protocolVersion": "2024-11-05"})
    client.send({"jsonrpc": "2.0", "method": "notifications/initialized"})
    # Claude Code registers its channel handler after the handshake: nothing may come before it.
    client.send({"jsonrpc": "2.0", "id": 99, "method": "ping"})
    assert client.read() == {"jsonrpc": "2.0", "id": 99, "result": {}}
    client.send({"jsonrpc": "2.0", "id": 100, "method": "tools/list"})
    messages = [client.read(), client.read()]
    assert {"jsonrpc", "id", "result"} <= messages[0].keys() | messages[1].keys()
    message = next(m for m in messages if "method" in m)
    assert message == {
        "jsonrpc": "2.0",
        "method": "notifications/claude/channel",
        "params": {"content": "hi", "meta": {"room_id": "!r:x"}},
    }


def test_an_argument_that_is_not_unicode_is_a_clear_tool_error(client: Client) -> None:
    # JSON may escape half a surrogate pair; such a string has no UTF-8 form to send or store.
    client.raw(b'{"jsonrpc": "2.0", "id": 7, "method": "tools/call", "params": '
               b'{"name": "echo", "arguments": {"text": "ok \\ud83d then"}}}\n')  # fmt: skip
    answer = client.read()
    assert answer["id"] == 7
    assert answer["result"] == {
        "content": [{"type": "text", "text": "echo refused: `text` is not valid Unicode (half a surrogate pair)"}],
        "isError": True,
    }
    assert client.request("ping") == {"jsonrpc": "2.0", "id": 1, "result": {}}
    assert client.proc.stderr is not None
    client.proc.kill()
    assert b"Traceback" not in client.proc.stderr.read()


def test_an_answer_holding_half_a_surrogate_pair_is_still_sent(client: Client) -> None:
    answer = client.request("tools/call", {"name": "half_pair", "arguments": {}})
    assert answer["result"] == {"content": [{"type": "text", "text": "read from a file: \ud83d"}]}
