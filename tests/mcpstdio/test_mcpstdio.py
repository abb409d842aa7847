"""The stdio MCP core, driven over a real pipe to a child process as Claude Code drives it."""

from __future__ import annotations

import json
import os
import select
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from typing import Any, BinaryIO

import pytest

SERVER = textwrap.dedent(
    """
    import asyncio
    import sys
    from agent_smith.mcpstdio import McpServer, Tool, ToolError

    async def echo(args):
        return {"echo": args.get("text", "")}

    async def refuse(args):
        raise ToolError("refused: " + args.get("why", "no reason"))

    async def crash(args):
        raise KeyError("boom")

    async def half_pair(args):
        return "read from a file: \\ud83d"

    async def slow(args):
        sys.stderr.write("slow started\\n")
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            sys.stderr.write("slow was cancelled\\n")
            raise
        return "done at last"

    async def main():
        server = McpServer(
            "test", "1.2.3",
            [Tool("echo", "Echo text.", {"type": "object", "properties": {"text": {"type": "string"}}}, echo),
             Tool("refuse", "Always refuses.", {"type": "object"}, refuse),
             Tool("crash", "Always crashes.", {"type": "object"}, crash),
             Tool("half_pair", "Answers half a surrogate pair.", {"type": "object"}, half_pair),
             Tool("slow", "Takes a minute.", {"type": "object"}, slow)],
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
    def __init__(self, proc: subprocess.Popen[bytes], stdout: BinaryIO) -> None:
        self.proc = proc
        # Unbuffered, so that `select` says truly whether an answer came: a missing one fails, not hangs.
        self.stdout = stdout
        self.next_id = 0

    def send(self, message: dict[str, Any]) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps(message).encode() + b"\n")
        self.proc.stdin.flush()

    def send_batch(self, messages: list[object]) -> None:
        self.raw(json.dumps(messages).encode() + b"\n")

    def read_batch(self) -> list[dict[str, Any]]:
        assert select.select([self.stdout], [], [], 30)[0], "no answer in 30 s"
        answers: list[dict[str, Any]] = json.loads(self.stdout.readline())
        return answers

    def raw(self, line: bytes) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(line)
        self.proc.stdin.flush()

    def read(self) -> dict[str, Any]:
        assert select.select([self.stdout], [], [], 30)[0], "no answer in 30 s"
        line = self.stdout.readline()
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
    read_end, write_end = os.pipe()
    proc = subprocess.Popen(
        [sys.executable, "-c", SERVER], stdin=subprocess.PIPE, stdout=write_end, stderr=subprocess.PIPE
    )
    os.close(write_end)
    stdout = os.fdopen(read_end, "rb", buffering=0)
    try:
        yield Client(proc, stdout)
    finally:
        proc.kill()
        proc.wait(timeout=10)
        stdout.close()


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
    assert names == ["echo", "refuse", "crash", "half_pair", "slow"]
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
    client.raw(b'"jsonrpc"\n')
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


def test_json_nested_too_deeply_is_a_parse_error_and_the_server_keeps_serving(client: Client) -> None:
    client.raw(b"[" * 100_000 + b"\n")
    assert client.read()["error"] == {"code": -32700, "message": "JSON nested too deeply for this server"}
    assert client.request("ping") == {"jsonrpc": "2.0", "id": 1, "result": {}}


@pytest.mark.parametrize(
    ("message", "why"),
    [
        ({"jsonrpc": "2.0", "id": None, "method": "ping"}, "id must be a string or a number"),
        ({"jsonrpc": "2.0", "id": True, "method": "ping"}, "id must be a string or a number"),
        ({"jsonrpc": "2.0", "id": {"a": 1}, "method": "ping"}, "id must be a string or a number"),
        ({"jsonrpc": "2.0", "id": [1], "method": "ping"}, "id must be a string or a number"),
        ({"jsonrpc": "2.0", "id": 3, "method": 5}, "method must be a string"),
        ({"jsonrpc": "2.0", "method": 5}, "method must be a string"),
        ({"jsonrpc": "2.0", "id": 4}, "method must be a string"),
    ],
)
def test_a_request_json_rpc_or_mcp_does_not_allow_is_an_invalid_request(
    client: Client, message: dict[str, Any], why: str
) -> None:
    client.send(message)
    assert client.read() == {"jsonrpc": "2.0", "id": None, "error": {"code": -32600, "message": why}}
    # A response to the server is no request: it is not answered.
    client.send({"jsonrpc": "2.0", "id": 5, "result": {}})
    assert client.request("ping") == {"jsonrpc": "2.0", "id": 1, "result": {}}


def test_ids_may_be_strings_or_numbers(client: Client) -> None:
    for request_id in ("abc", 0, -7, 2**53, 1.5):
        client.send({"jsonrpc": "2.0", "id": request_id, "method": "ping"})
        assert client.read() == {"jsonrpc": "2.0", "id": request_id, "result": {}}


@pytest.mark.parametrize("arguments", [0, False, "", []])
def test_arguments_that_are_no_object_are_invalid_params_even_when_empty(client: Client, arguments: object) -> None:
    answer = client.request("tools/call", {"name": "echo", "arguments": arguments})
    assert answer["error"] == {"code": -32602, "message": "arguments must be an object"}


def test_a_client_that_stopped_reading_gets_no_traceback_and_a_clean_exit(client: Client) -> None:
    assert client.request("ping") == {"jsonrpc": "2.0", "id": 1, "result": {}}
    assert client.proc.stderr is not None
    client.stdout.close()
    for request_id in range(2, 6):
        client.send({"jsonrpc": "2.0", "id": request_id, "method": "tools/list"})
    client.send({"jsonrpc": "2.0", "id": 6, "method": "tools/call", "params": {"name": "echo", "arguments": {}}})
    assert client.proc.stdin is not None
    client.proc.stdin.close()
    assert client.proc.wait(timeout=30) == 0
    assert client.proc.stderr.read() == b""


def test_a_cancelled_call_stops_and_is_not_answered(client: Client) -> None:
    assert client.proc.stderr is not None
    client.send({"jsonrpc": "2.0", "id": "call-1", "method": "tools/call", "params": {"name": "slow"}})
    assert client.proc.stderr.readline() == b"slow started\n"
    client.send({"jsonrpc": "2.0", "method": "notifications/cancelled", "params": {"requestId": "call-1"}})
    # Unknown, finished or malformed cancellations are ignored.
    client.send({"jsonrpc": "2.0", "method": "notifications/cancelled", "params": {"requestId": "never-sent"}})
    client.send({"jsonrpc": "2.0", "method": "notifications/cancelled", "params": {"requestId": [1]}})
    assert client.request("ping") == {"jsonrpc": "2.0", "id": 1, "result": {}}
    assert client.proc.stdin is not None
    client.proc.stdin.close()
    # Without the cancellation the server would wait out the call in flight (a minute) before it exits.
    assert client.proc.wait(timeout=20) == 0
    assert client.stdout.read() == b""
    assert client.proc.stderr.read() == b"slow was cancelled\n"


def test_all_tools_come_in_one_page_and_a_cursor_is_invalid_params(client: Client) -> None:
    assert "nextCursor" not in client.request("tools/list", {"cursor": None})["result"]
    answer = client.request("tools/list", {"cursor": "page-2"})
    assert answer["error"] == {"code": -32602, "message": "invalid cursor: the first page holds every tool"}


def test_a_batch_is_answered_as_one_list_without_its_notifications(client: Client) -> None:
    batch = [
        {"jsonrpc": "2.0", "id": 1, "method": "ping"},
        {"jsonrpc": "2.0", "method": "notifications/initialized"},
        {"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {"name": "echo", "arguments": {"text": "b"}}},
        "jsonrpc",
    ]
    client.send_batch(batch)
    answers = client.read_batch()
    assert [answer.get("id") for answer in answers] == [1, 2, None]
    assert answers[1]["result"]["structuredContent"] == {"echo": "b"}
    assert answers[2]["error"]["code"] == -32600
    client.send_batch([])
    assert client.read() == {"jsonrpc": "2.0", "id": None, "error": {"code": -32600, "message": "an empty batch"}}
    client.send_batch([{"jsonrpc": "2.0", "method": "notifications/initialized"}])
    assert client.request("ping") == {"jsonrpc": "2.0", "id": 1, "result": {}}


@pytest.mark.parametrize("params", [0, False, "", [], [1]])
def test_params_that_are_no_object_are_invalid_params_even_when_empty(client: Client, params: object) -> None:
    client.send({"jsonrpc": "2.0", "id": 8, "method": "ping", "params": params})
    assert client.read() == {
        "jsonrpc": "2.0",
        "id": 8,
        "error": {"code": -32602, "message": "params must be an object"},
    }
