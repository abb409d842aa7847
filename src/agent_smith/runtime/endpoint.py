"""The supervisor's HTTP endpoint: /metrics, /healthz, and the agents' MCP tools at /mcp.

The event tools run inside the supervisor rather than as one MCP process per
agent (a Python process each, ~40 MB and ~0.25 s of CPU while claude boots).
Each agent reaches them with its own bearer token, kept in its state
directory (mode 0600), so a tool call acts as the agent that made it. The
endpoint's address and the token reach claude through two environment
variables of its pane, which the assembled ~/.claude.json names.

A restarted supervisor listens where its predecessor did when
`runtime.metrics_listen` leaves the port free to choose, so the agents it
adopts (which keep their environment) still reach their tools.

Connections are HTTP/1.1 on h11, kept alive; the supervisor decides each
answer (`Supervisor._answer`), this module only carries requests and answers.
"""

from __future__ import annotations

import asyncio
import secrets
import socket
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import h11

from agent_smith.crew import CrewPaths
from agent_smith.errors import UsageError
from agent_smith.fsutil import write_atomic
from agent_smith.mcphttp import MAX_BODY, HttpAnswer
from agent_smith.runtime.rundir import RunDir
from agent_smith.runtime.services import parse_listen

MCP_PATH = "/mcp"
TOKEN_FILE = "mcp.token"
# A pod listens on every address (for Prometheus); its agents, in the same pod, use loopback.
_LOCAL = {"0.0.0.0": "127.0.0.1", "::": "::1"}
_MAX_HEAD = 64 * 1024
_FIRST_REQUEST_WAIT = 5.0
_BODY_WAIT = 5.0
# A client that keeps its connection for the next tool call may wait minutes between calls.
_KEEP_ALIVE = 600.0

Answer = Callable[[str, str, Mapping[str, str], bytes], Awaitable[HttpAnswer]]
"""answer(method, path without query, headers with lower-case names, body) -> the response."""


def http_socket(listen: str, run_dir: RunDir) -> socket.socket:
    """A listening socket for `runtime.metrics_listen`; port 0 prefers the previous supervisor's port."""
    host, port = parse_listen(listen, "runtime.metrics_listen")
    previous = _previous_port(run_dir, host) if port == 0 else None
    if previous is not None:
        try:
            return _listen(host, previous)
        except OSError:
            pass  # taken meanwhile: any free port, as configured
    try:
        return _listen(host, port)
    except OSError as exc:
        raise UsageError(f"runtime.metrics_listen: cannot listen on {host}:{port} ({exc.strerror})") from exc


def _listen(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(128)
    except OSError:
        sock.close()
        raise
    sock.setblocking(False)
    return sock


def _previous_port(run_dir: RunDir, host: str) -> int | None:
    url = ((run_dir.read_status() or {}).get("supervisor") or {}).get("metrics")
    if not isinstance(url, str):
        return None
    try:
        parts = urlsplit(url)
        return parts.port if parts.hostname == host else None
    except ValueError:
        return None


@dataclass(frozen=True)
class McpEndpoint:
    """Where the agents' MCP tools are served, and each agent's token for them."""

    url: str
    paths: CrewPaths

    @classmethod
    def at(cls, sock: socket.socket, paths: CrewPaths) -> McpEndpoint:
        """The endpoint on `sock`, as the agents (on this host) reach it: a wildcard bind by loopback."""
        host, port = sock.getsockname()[:2]
        host = _LOCAL.get(host, host)
        shown = f"[{host}]" if ":" in host else host
        return cls(f"http://{shown}:{port}{MCP_PATH}", paths)

    def token_for(self, agent: str) -> str:
        """The agent's token: made once, then the same for every supervisor of this crew."""
        path = self.paths.agent_state(agent) / TOKEN_FILE
        try:
            token = path.read_text().strip()
        except FileNotFoundError:
            token = ""
        if not token:
            token = secrets.token_hex(32)
            path.parent.mkdir(parents=True, exist_ok=True)
            write_atomic(path, token + "\n", 0o600)
        return token


async def serve_connection(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, answer: Answer) -> None:
    """One client connection, kept alive across requests (Claude Code keeps its MCP connection)."""
    conn = h11.Connection(h11.SERVER, max_incomplete_event_size=_MAX_HEAD)
    idle = _FIRST_REQUEST_WAIT
    try:
        while True:
            request = await _next_event(conn, reader, idle)
            if not isinstance(request, h11.Request):
                return
            body = await _read_body(conn, reader, request)
            if body is None:
                writer.write(_serialise(conn, HttpAnswer(413, "Payload Too Large", (("Connection", "close"),))))
                await writer.drain()
                return
            headers = {name.decode("latin-1"): value.decode("latin-1") for name, value in request.headers}
            path = request.target.decode("ascii", "replace").split("?", 1)[0]
            writer.write(_serialise(conn, await answer(request.method.decode("ascii"), path, headers, body)))
            await writer.drain()
            if conn.our_state is not h11.DONE or conn.their_state is not h11.DONE:
                return
            conn.start_next_cycle()
            idle = _KEEP_ALIVE
    except (h11.ProtocolError, asyncio.IncompleteReadError, TimeoutError, ConnectionError):
        pass
    finally:
        writer.close()


async def _next_event(conn: h11.Connection, reader: asyncio.StreamReader, wait: float) -> Any:
    while (event := conn.next_event()) is h11.NEED_DATA:
        conn.receive_data(await asyncio.wait_for(reader.read(65536), wait))
    return event


async def _read_body(conn: h11.Connection, reader: asyncio.StreamReader, request: h11.Request) -> bytes | None:
    """The request's body; None when it is larger than MAX_BODY (refused unread when it says so up front)."""
    declared = dict(request.headers).get(b"content-length")
    if declared is not None and int(declared) > MAX_BODY:
        return None
    body = bytearray()
    while not isinstance(event := await _next_event(conn, reader, _BODY_WAIT), h11.EndOfMessage):
        if not isinstance(event, h11.Data):
            raise ConnectionError("the client ended the request early")
        body += event.data
        if len(body) > MAX_BODY:
            return None
    return bytes(body)


def _serialise(conn: h11.Connection, answer: HttpAnswer) -> bytes:
    headers = [*answer.headers, ("Content-Length", str(len(answer.body)))]
    out = conn.send(h11.Response(status_code=answer.status, reason=answer.reason, headers=headers)) or b""
    if answer.body:
        out += conn.send(h11.Data(data=answer.body)) or b""
    return out + (conn.send(h11.EndOfMessage()) or b"")
