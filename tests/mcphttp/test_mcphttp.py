"""MCP's Streamable HTTP transport: the answer to each kind of request, per agent token (no network)."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from agent_smith.mcphttp import HttpAnswer, answer_http, origin_allowed, server_for, version_refused
from agent_smith.mcpstdio import McpServer, Tool

JSON = {"content-type": "application/json"}


def whoami(agent: str) -> McpServer:
    async def handler(_: dict[str, Any]) -> dict[str, Any]:
        return {"agent": agent}

    return McpServer("test", "1.0", [Tool("whoami", "Who calls.", {"type": "object"}, handler)])


SERVERS = {"token-alice": whoami("alice"), "token-bob": whoami("bob")}


def call(method: str, headers: dict[str, str], body: object = None, *, raw: bytes | None = None) -> HttpAnswer:
    data = raw if raw is not None else json.dumps(body).encode()
    return asyncio.run(answer_http(SERVERS, method, headers, data))


def rpc(method: str, request_id: int | None = 1, **params: Any) -> dict[str, Any]:
    message: dict[str, Any] = {"jsonrpc": "2.0", "method": method, "params": params}
    if request_id is not None:
        message["id"] = request_id
    return message


def as_agent(token: str) -> dict[str, str]:
    return {**JSON, "authorization": f"Bearer {token}"}


@pytest.mark.parametrize(
    ("origin", "allowed"),
    [
        (None, True),
        ("http://localhost:3000", True),
        ("http://127.0.0.1", True),
        ("http://[::1]:8080", True),
        ("https://evil.example", False),
        ("http://127.0.0.1.evil.example", False),
        ("null", False),
        ("http://[::1", False),
    ],
)
def test_origin(origin: str | None, allowed: bool) -> None:
    assert origin_allowed(origin) is allowed


@pytest.mark.parametrize(
    ("authorization", "agent"),
    [
        ("Bearer token-alice", "alice"),
        ("bearer token-bob", "bob"),
        ("Bearer  token-bob ", "bob"),
        ("Bearer token-carol", None),
        ("Basic token-alice", None),
        ("token-alice", None),
        ("Bearer ", None),
        (None, None),
    ],
)
def test_the_token_picks_the_agent(authorization: str | None, agent: str | None) -> None:
    server = server_for(SERVERS, authorization)
    assert (server is SERVERS.get(f"token-{agent}")) if agent else server is None


@given(st.text(max_size=80))
def test_no_other_header_reaches_a_server(authorization: str) -> None:
    expected = {"Bearer token-alice", "Bearer token-bob"}
    found = server_for(SERVERS, authorization)
    if found is not None:
        scheme, _, token = authorization.partition(" ")
        assert scheme.lower() == "bearer"
        assert f"Bearer {token.strip()}" in expected


def test_a_tool_call_answers_as_the_agent_whose_token_called() -> None:
    call_whoami = rpc("tools/call", name="whoami", arguments={})
    for token, agent in (("token-alice", "alice"), ("token-bob", "bob")):
        answer = call("POST", as_agent(token), call_whoami)
        assert (answer.status, dict(answer.headers)["Content-Type"]) == (200, "application/json")
        assert json.loads(answer.body)["result"]["structuredContent"] == {"agent": agent}


def test_the_handshake_over_http() -> None:
    discover = json.loads(call("POST", as_agent("token-alice"), rpc("server/discover")).body)
    assert discover["error"]["code"] == -32601
    init = json.loads(call("POST", as_agent("token-alice"), rpc("initialize", protocolVersion="2025-06-18")).body)
    assert init["result"]["protocolVersion"] == "2025-06-18"
    assert init["result"]["capabilities"]["tools"] == {"listChanged": False}
    initialized = call("POST", as_agent("token-alice"), rpc("notifications/initialized", request_id=None))
    assert (initialized.status, initialized.body) == (202, b"")
    tools = json.loads(call("POST", as_agent("token-alice"), rpc("tools/list", request_id=2)).body)
    assert [t["name"] for t in tools["result"]["tools"]] == ["whoami"]


def test_a_batch_answers_each_request_and_skips_notifications() -> None:
    batch = [rpc("ping", 1), rpc("notifications/initialized", None), rpc("tools/call", 2, name="whoami")]
    answer = call("POST", as_agent("token-bob"), batch)
    assert answer.status == 200
    assert [a["id"] for a in json.loads(answer.body)] == [1, 2]
    only_notifications = call("POST", as_agent("token-bob"), [rpc("notifications/initialized", None)])
    assert only_notifications.status == 202


@pytest.mark.parametrize(
    ("method", "headers", "body", "status", "header"),
    [
        ("POST", {**JSON}, rpc("ping"), 401, ("WWW-Authenticate", "Bearer")),
        ("POST", as_agent("token-nobody"), rpc("ping"), 401, ("WWW-Authenticate", "Bearer")),
        ("POST", {**as_agent("token-alice"), "origin": "https://evil.example"}, rpc("ping"), 403, None),
        ("GET", as_agent("token-alice"), None, 405, ("Allow", "POST")),
        ("DELETE", as_agent("token-alice"), None, 405, ("Allow", "POST")),
        ("POST", {**as_agent("token-alice"), "content-type": "text/plain"}, rpc("ping"), 415, None),
        ("POST", as_agent("token-alice"), [], 400, None),
    ],
)
def test_refusals(
    method: str, headers: dict[str, str], body: object, status: int, header: tuple[str, str] | None
) -> None:
    answer = call(method, headers, body)
    assert answer.status == status
    if header is not None:
        assert header in answer.headers


def test_bad_json_is_a_parse_error() -> None:
    answer = call("POST", as_agent("token-alice"), raw=b"{not json")
    assert answer.status == 400
    assert json.loads(answer.body)["error"]["code"] == -32700
    answer = call("POST", as_agent("token-alice"), raw=b"\xff\xfe")
    assert answer.status == 400


def test_json_nested_too_deeply_is_a_parse_error_not_a_crash() -> None:
    answer = call("POST", as_agent("token-alice"), raw=b"[" * 100_000)
    assert answer.status == 400
    assert json.loads(answer.body)["error"] == {"code": -32700, "message": "JSON nested too deeply for this server"}


@pytest.mark.parametrize(
    ("version", "message", "refused"),
    [
        (None, rpc("tools/list"), False),
        ("2025-06-18", rpc("tools/list"), False),
        ("2024-11-05", rpc("tools/list"), False),
        ("1900-01-01", rpc("tools/list"), True),
        ("not-a-version", rpc("notifications/initialized", None), True),
        ("2026-07-28", [rpc("ping"), rpc("initialize")], True),
        ("2099-01-01", None, True),
        # Negotiating messages carry the client's proposal: the body's answer negotiates it.
        ("2025-11-25", rpc("initialize", protocolVersion="2025-11-25"), False),
        ("2026-07-28", rpc("server/discover"), False),
    ],
)
def test_a_protocol_version_header_this_server_does_not_speak(
    version: str | None, message: object, refused: bool
) -> None:
    assert version_refused(version, message) is refused


def test_an_unsupported_protocol_version_header_is_a_400_and_the_pinned_clis_probe_still_gets_32601() -> None:
    headers = {**as_agent("token-alice"), "mcp-protocol-version": "1900-01-01"}
    answer = call("POST", headers, rpc("tools/list"))
    assert answer.status == 400
    assert json.loads(answer.body)["error"]["code"] == -32600
    probe = call("POST", {**headers, "mcp-protocol-version": "2026-07-28"}, rpc("server/discover"))
    assert (probe.status, json.loads(probe.body)["error"]["code"]) == (200, -32601)
    channel = {"token": McpServer("matrix", "1.0", [], pushes=True)}
    stream = {"authorization": "Bearer token", "accept": "text/event-stream", "mcp-protocol-version": "1900-01-01"}
    assert asyncio.run(answer_http(channel, "GET", stream, b"")).status == 400


def test_a_message_that_is_not_json_rpc_is_an_invalid_request() -> None:
    answer = call("POST", as_agent("token-alice"), {"id": 1, "method": "ping"})
    assert answer.status == 200
    assert json.loads(answer.body)["error"]["code"] == -32600


def test_notifications_wait_out_the_settle_of_a_new_connection_all_of_them() -> None:
    class Stream:
        def __init__(self) -> None:
            self.sent: list[tuple[float, bytes]] = []

        def write(self, data: bytes) -> None:
            self.sent.append((time.monotonic(), data))

        async def drain(self) -> None:
            pass

    async def run() -> tuple[float, Stream]:
        server = McpServer("matrix", "1.0", [], pushes=True, settle=0.2)
        stream = Stream()
        opened = time.monotonic()
        server.attach(stream)
        await server.handle(rpc("tools/list"))
        await asyncio.gather(server.notify("first", {}), server.notify("second", {}))
        return opened, stream

    opened, stream = asyncio.run(run())
    assert sorted(json.loads(data)["method"] for _, data in stream.sent) == ["first", "second"]
    assert all(at - opened >= 0.2 for at, _ in stream.sent)
