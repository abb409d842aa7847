"""The supervisor's HTTP endpoint on a real socket: the agents' event tools over MCP, against a real NATS."""

from __future__ import annotations

import asyncio
import http.client
import json
import re
import socket
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from agent_smith.crew import CrewPaths, EventLog
from agent_smith.errors import OperationError, UsageError
from agent_smith.events import EventFilter, Publisher, connect, event_servers, query
from agent_smith.mcpstdio import McpServer, Tool
from agent_smith.runtime.endpoint import CHAT_PATH, MCP_PATH, McpEndpoint, http_socket
from agent_smith.runtime.rundir import RunDir
from agent_smith.runtime.supervisor import Supervisor
from agent_smith.runtime.tmux import Tmux
from tests.fixtures.nats import NatsServer
from tests.runtime.conftest import spec

pytestmark = pytest.mark.real


def publish(name: str, summary: str, request_id: int = 1) -> dict[str, Any]:
    arguments = {"type": "task_done", "fields": {"summary": summary}}
    return {
        "jsonrpc": "2.0",
        "id": request_id,
        "method": "tools/call",
        "params": {"name": name, "arguments": arguments},
    }


def test_a_token_is_made_once_and_kept_private(tmp_path: Path) -> None:
    endpoint = McpEndpoint("http://127.0.0.1:1/mcp", CrewPaths(tmp_path))
    token = endpoint.token_for("alice")
    path = tmp_path / "agents" / "alice" / "state" / "mcp.token"
    assert path.stat().st_mode & 0o777 == 0o600
    assert len(token) == 64
    assert endpoint.token_for("alice") == token
    assert endpoint.token_for("bob") != token


def test_an_unreadable_token_is_one_line(tmp_path: Path) -> None:
    endpoint = McpEndpoint("http://127.0.0.1:1/mcp", CrewPaths(tmp_path))
    (tmp_path / "agents" / "alice" / "state" / "mcp.token").mkdir(parents=True)  # a directory, not a file
    with pytest.raises(OperationError, match=r"agent alice's MCP token .*mcp.token: Is a directory"):
        endpoint.token_for("alice")


def test_agents_reach_a_wildcard_bind_by_loopback(tmp_path: Path) -> None:
    with socket.socket() as sock:
        sock.bind(("0.0.0.0", 0))
        port = sock.getsockname()[1]
        assert McpEndpoint.at(sock, CrewPaths(tmp_path)).url == f"http://127.0.0.1:{port}/mcp"


def test_a_new_supervisor_listens_where_the_last_one_did(tmp_path: Path) -> None:
    run_dir = RunDir(tmp_path / "runtime")
    run_dir.ensure()
    first = http_socket("127.0.0.1:0", run_dir)
    port = first.getsockname()[1]
    run_dir.write_status({"supervisor": {"metrics": f"http://127.0.0.1:{port}"}})
    first.close()
    again = http_socket("127.0.0.1:0", run_dir)
    try:
        assert again.getsockname()[1] == port
        # Taken meanwhile: any free port, as configured.
        other = http_socket("127.0.0.1:0", run_dir)
        assert other.getsockname()[1] != port
        other.close()
        with pytest.raises(UsageError, match=rf"runtime.metrics_listen: cannot listen on 127.0.0.1:{port}"):
            http_socket(f"127.0.0.1:{port}", run_dir)
    finally:
        again.close()


def test_the_event_tools_act_as_the_calling_agent_over_one_kept_alive_connection(
    tmp_path: Path, nats_server: NatsServer
) -> None:
    settings = EventLog()
    paths = CrewPaths(tmp_path / "state")
    run_dir = RunDir(tmp_path / "runtime")
    run_dir.ensure()

    async def run() -> None:
        sock = http_socket("127.0.0.1:0", run_dir)
        endpoint = McpEndpoint.at(sock, paths)
        tokens = {name: endpoint.token_for(name) for name in ("alice", "bob")}
        supervisor = Supervisor([], Tmux("agent-smith-test-unused"), run_dir)
        await supervisor.serve_http(sock)
        try:
            async with httpx.AsyncClient(trust_env=False, timeout=10) as http:

                async def post(token: str, message: object) -> httpx.Response:
                    headers = {"Authorization": f"Bearer {token}", "Accept": "application/json, text/event-stream"}
                    return await http.post(endpoint.url, json=message, headers=headers)

                # An agent that connects before the event log is up waits, then is answered.
                early = asyncio.create_task(post(tokens["alice"], {"jsonrpc": "2.0", "id": 0, "method": "ping"}))
                await asyncio.sleep(0.2)
                assert not early.done()
                async with Publisher(settings, tmp_path / "outbox", nats_server.url) as publisher:
                    supervisor.serve_mcp(event_servers(tokens, publisher, settings, nats_server.url))
                    assert (await early).json() == {"jsonrpc": "2.0", "id": 0, "result": {}}

                    for name in ("alice", "bob"):
                        answer = await post(tokens[name], publish("publish_event", f"done by {name}"))
                        assert answer.status_code == 200, answer.text
                        assert answer.json()["result"]["structuredContent"]["agent"] == name
                    # Naming another author is refused, whoever is named.
                    forged = publish("publish_event", "forged")
                    forged["params"]["arguments"]["fields"]["agent"] = "bob"
                    refused = (await post(tokens["alice"], forged)).json()["result"]
                    assert refused["isError"] is True
                    assert "you publish as alice" in refused["content"][0]["text"]

                    listed = await post(tokens["bob"], {"jsonrpc": "2.0", "id": 5, "method": "tools/list"})
                    assert {t["name"] for t in listed.json()["result"]["tools"]} == {"publish_event", "query_events"}
                    assert (
                        await http.get(endpoint.url, headers={"Authorization": f"Bearer {tokens['bob']}"})
                    ).status_code == 405
                    assert (await post("not-a-token", {"jsonrpc": "2.0", "id": 1, "method": "ping"})).status_code == 401
                    assert (await http.get(f"{supervisor.metrics_url}/healthz")).text == "ok\n"
                    assert (await http.get(f"{supervisor.metrics_url}/nowhere")).status_code == 404
                    assert "agent_smith_agent_state" in (await http.get(f"{supervisor.metrics_url}/metrics")).text
        finally:
            await supervisor.close_http()

        nc = await connect(nats_server.url)
        try:
            stored = await query(nc, settings, EventFilter(types=("task_done",)))
        finally:
            await nc.close()
        assert sorted((e.payload["agent"], e.payload["summary"]) for e in stored) == [
            ("alice", "done by alice"),
            ("bob", "done by bob"),
        ]

    asyncio.run(run())


def test_requests_share_a_connection_and_an_oversized_or_unreadable_one_is_refused(tmp_path: Path) -> None:
    run_dir = RunDir(tmp_path / "runtime")
    run_dir.ensure()

    async def run() -> None:
        sock = http_socket("127.0.0.1:0", run_dir)
        supervisor = Supervisor([], Tmux("agent-smith-test-unused"), run_dir)
        supervisor.serve_mcp({})
        await supervisor.serve_http(sock)
        host, port = sock.getsockname()[:2]
        try:
            reader, writer = await asyncio.open_connection(host, port)
            for _ in range(3):
                writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
                head = await reader.readuntil(b"\r\n\r\n")
                assert head.startswith(b"HTTP/1.1 200 ")
                assert await reader.readexactly(3) == b"ok\n"
            # Refused from its declared length, before a byte of it is read.
            big = b"x" * (2 * 1024 * 1024)
            writer.write(
                b"POST %s HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n"
                % (MCP_PATH.encode(), len(big))
            )
            head = await reader.readuntil(b"\r\n\r\n")
            assert head.startswith(b"HTTP/1.1 413 ")
            assert await reader.read() == b"", "the connection closes after a refused body"
            writer.close()
            # What h11 cannot read (garbage instead of HTTP, a length that is no number, a broken
            # header line): that connection gets a 400 saying so, not a silent close, and ends; the
            # endpoint keeps serving.
            for request in (
                b"\x16\x03\x01 not http at all\r\n\r\n",
                b"POST /mcp HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n",
                b"POST /mcp HTTP/1.1\r\nHost: x\r\nBad Header Line\r\n\r\n",
            ):
                reader, writer = await asyncio.open_connection(host, port)
                writer.write(request)
                answer = await asyncio.wait_for(reader.read(), 5)
                assert answer.startswith(b"HTTP/1.1 400 Bad Request\r\n"), answer
                assert b"a malformed request: " in answer
                writer.close()
            async with httpx.AsyncClient(trust_env=False) as http:
                assert (await http.get(f"{supervisor.metrics_url}/healthz")).status_code == 200
        finally:
            await supervisor.close_http()

    asyncio.run(run())


def test_closing_with_connections_open_ends_them_without_a_traceback(tmp_path: Path) -> None:
    run_dir = RunDir(tmp_path / "runtime")
    run_dir.ensure()
    reported: list[dict[str, Any]] = []

    async def run() -> bytes:
        asyncio.get_running_loop().set_exception_handler(lambda _loop, context: reported.append(context))
        sock = http_socket("127.0.0.1:0", run_dir)
        supervisor = Supervisor([], Tmux("agent-smith-test-unused"), run_dir)
        await supervisor.serve_http(sock)
        host, port = sock.getsockname()[:2]
        # An agent's stream held open, as claude holds its MCP connections.
        reader, writer = await asyncio.open_connection(host, port)
        writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        await reader.readuntil(b"ok\n")
        await supervisor.close_http()
        rest = await asyncio.wait_for(reader.read(), 5)
        writer.close()
        await asyncio.sleep(0.05)  # the server's callbacks for the ended connection run
        return rest

    assert asyncio.run(run()) == b"", "the connection is closed"
    assert reported == []


def test_metrics_listen_in_use_is_a_usage_error(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(UsageError):
            http_socket(f"127.0.0.1:{port}", RunDir(tmp_path))


def channel_server(agent: str) -> McpServer:
    async def whoami(_: dict[str, Any]) -> str:
        return agent

    return McpServer(
        "matrix",
        "1.0",
        [Tool("whoami", "Who calls.", {"type": "object"}, whoami)],
        experimental={"claude/channel": {}},
        pushes=True,
    )


async def next_event(lines: AsyncIterator[str]) -> dict[str, Any]:
    """The next server-sent event's JSON-RPC message."""
    data = ""
    async for line in lines:
        if line.startswith("data: "):
            data = line[len("data: ") :]
        elif line == "" and data:
            message: dict[str, Any] = json.loads(data)
            return message
    raise AssertionError("the stream ended")


def test_a_channel_pushes_over_the_agents_stream_and_a_new_stream_without_a_handshake(tmp_path: Path) -> None:
    run_dir = RunDir(tmp_path / "runtime")
    run_dir.ensure()

    async def run() -> None:
        sock = http_socket("127.0.0.1:0", run_dir)
        endpoint = McpEndpoint.at(sock, CrewPaths(tmp_path / "state"))
        token = endpoint.token_for("alice")
        channel = channel_server("alice")
        supervisor = Supervisor([], Tmux("agent-smith-test-unused"), run_dir)
        supervisor.serve_mcp({token: channel}, CHAT_PATH)
        await supervisor.serve_http(sock)
        url = endpoint.url.replace(MCP_PATH, CHAT_PATH)
        auth = {"Authorization": f"Bearer {token}"}

        async def handshake(http: httpx.AsyncClient) -> None:
            for n, method in enumerate(("initialize", "tools/list")):
                message = {"jsonrpc": "2.0", "id": n, "method": method, "params": {}}
                assert (await http.post(url, json=message, headers=auth)).status_code == 200

        try:
            async with httpx.AsyncClient(trust_env=False, timeout=10) as http:
                # Sent before any client is there: it waits for one, and is not lost.
                early = asyncio.create_task(channel.notify("notifications/claude/channel", {"content": "early"}))
                await asyncio.sleep(0.1)
                assert not early.done()
                stream_headers = {**auth, "Accept": "text/event-stream"}
                await handshake(http)
                async with http.stream("GET", url, headers=stream_headers) as response:
                    assert response.status_code == 200
                    assert response.headers["content-type"] == "text/event-stream"
                    await early
                    lines = response.aiter_lines()
                    assert (await next_event(lines))["params"] == {"content": "early"}
                    await channel.notify("notifications/claude/channel", {"content": "second"})
                    assert (await next_event(lines))["params"] == {"content": "second"}
                # The client went away (as when the supervisor restarts under it): the next
                # notification waits for its next stream.
                for _ in range(100):
                    if not channel.connected:
                        break
                    await asyncio.sleep(0.01)
                assert not channel.connected
                later = asyncio.create_task(channel.notify("notifications/claude/channel", {"content": "later"}))
                # Claude Code opens a new stream in the session it has (no new handshake), also
                # on a new supervisor's server, which never saw that session's handshake.
                successor = channel_server("alice")
                supervisor.serve_mcp({token: successor}, CHAT_PATH)
                handed_over = asyncio.create_task(successor.notify("notifications/claude/channel", {"content": "new"}))
                async with http.stream("GET", url, headers=stream_headers) as response:
                    await handed_over
                    assert (await next_event(response.aiter_lines()))["params"] == {"content": "new"}
                assert not later.done(), "the old server's notification waits for a stream of its own"
                later.cancel()
                assert (await http.get(url, headers=auth)).status_code == 406
                assert (await http.get(url, headers={"Accept": "text/event-stream"})).status_code == 401
        finally:
            await supervisor.close_http()

    asyncio.run(run())


def test_the_assembled_channel_entry_names_the_path_the_supervisor_serves() -> None:
    from agent_smith.home.plan import CHAT_URL_SUFFIX, MCP_URL_VAR, mcp_servers

    servers, _ = mcp_servers({}, chat=True)
    assert servers["matrix"]["url"] == f"${{{MCP_URL_VAR}}}{CHAT_URL_SUFFIX}"
    assert CHAT_PATH == MCP_PATH + CHAT_URL_SUFFIX


def _request(url: str, method: str, path: str) -> tuple[int, dict[str, str], bytes]:
    """`method` on `path`, then GET /healthz on the same kept-alive connection (it must still serve)."""
    host, port = url.removeprefix("http://").rsplit(":", 1)
    conn = http.client.HTTPConnection(host, int(port), timeout=5)
    try:
        conn.request(method, path)
        answer = conn.getresponse()
        said = (answer.status, {k.lower(): v for k, v in answer.getheaders()}, answer.read())
        conn.request("GET", "/healthz")
        assert conn.getresponse().read() == b"ok\n"
        return said
    finally:
        conn.close()


def test_the_read_only_paths_answer_head_with_headers_alone_and_refuse_other_methods(tmp_path: Path) -> None:
    run_dir = RunDir(tmp_path / "runtime")
    run_dir.ensure()

    async def run() -> None:
        sock = http_socket("127.0.0.1:0", run_dir)
        supervisor = Supervisor([spec(tmp_path, "alice")], Tmux("agent-smith-test-unused"), run_dir)
        supervisor.serve_mcp({})
        await supervisor.serve_http(sock)
        url = supervisor.metrics_url
        assert url is not None
        try:
            for path in ("/healthz", "/readyz", "/metrics"):
                status, headers, body = await asyncio.to_thread(_request, url, "GET", path)
                # HEAD: GET's status and headers (its body's length included), and no body.
                curl = await asyncio.create_subprocess_exec(
                    "curl", "-sS", "--head", "--max-time", "5", url + path,
                    stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
                )  # fmt: skip
                out, err = await curl.communicate()
                assert curl.returncode == 0, err
                head = out.decode().lower()
                assert head.startswith(f"http/1.1 {status} ")
                # /metrics holds the process's own (CPU seconds, memory): its length moves between two scrapes.
                length = f"{len(body)}" if path != "/metrics" else r"\d+"
                assert re.search(f"content-length: {length}\r\n", head), head
                answer = await asyncio.to_thread(_request, url, "HEAD", path)
                assert (answer[0], {**answer[1], "content-length": "-"}, answer[2]) == (
                    status, {**headers, "content-length": "-"}, b""
                )  # fmt: skip
                for method in ("POST", "PUT", "DELETE", "PATCH"):
                    refused, said, _ = await asyncio.to_thread(_request, url, method, path)
                    assert (refused, said["allow"]) == (405, "GET, HEAD"), (method, path)
            # The MCP endpoint answers as it did (no token: 401), headers alone to a HEAD.
            refused, said, body = await asyncio.to_thread(_request, url, "HEAD", MCP_PATH)
            assert (refused, said["www-authenticate"], body) == (401, "Bearer", b"")
        finally:
            await supervisor.close_http()

    asyncio.run(run())


def test_restarts_are_a_counter_the_exposition_format_accepts(tmp_path: Path) -> None:
    run_dir = RunDir(tmp_path / "runtime")
    run_dir.ensure()

    async def run() -> list[str]:
        sock = http_socket("127.0.0.1:0", run_dir)
        supervisor = Supervisor([spec(tmp_path, "alice")], Tmux("agent-smith-test-unused"), run_dir)
        await supervisor.serve_http(sock)
        scrapes = []
        try:
            async with httpx.AsyncClient(trust_env=False, timeout=10) as http_client:
                # Adopted with 3 restarts, then restarted twice more.
                for restarts in (3, 5, 5):
                    agent = supervisor.agents["alice"]
                    agent.record = replace(agent.record, restarts=restarts)
                    scrapes.append((await http_client.get(f"{supervisor.metrics_url}/metrics")).text)
        finally:
            await supervisor.close_http()
        return scrapes

    for text, restarts in zip(asyncio.run(run()), (3, 5, 5), strict=True):
        families = {family.name: family for family in text_string_to_metric_families(text)}
        counter = families["agent_smith_agent_restarts"]
        assert counter.type == "counter"
        totals = [s for s in counter.samples if s.name == "agent_smith_agent_restarts_total"]
        assert [(s.labels, s.value) for s in totals] == [({"agent": "alice"}, restarts)]
        # One HELP and one TYPE per metric, as Prometheus requires.
        names = [line.split()[2] for line in text.splitlines() if line.startswith(("# HELP ", "# TYPE "))]
        assert len(names) == 2 * len(set(names))
