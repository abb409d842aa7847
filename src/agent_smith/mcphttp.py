"""MCP's Streamable HTTP transport, server side, for servers that only offer tools.

One endpoint serves several agents: the bearer token of a request picks the
agent's `McpServer`, so each agent acts as itself. A POST carries one
JSON-RPC message (or a batch, as 2025-03-26 allowed); a request is answered
with `application/json`, a notification or a response with 202. GET opens
the server-to-client stream (server-sent events) on a server that pushes
notifications (the Matrix channel), and gets 405 on one that does not;
DELETE (ending a session) gets 405. An `MCP-Protocol-Version` header naming a
version this server does not speak gets 400. No session is kept, so a restarted
supervisor answers an agent's next call as if nothing had happened; Claude
Code opens a broken stream again in the session it has, with no new handshake
(and after a longer outage reconnects from scratch: 5 tries, 1 s to 30 s apart).

    answer = await answer_http(servers_by_token, "POST", headers, body)

Verified with the pinned Claude Code CLI: it probes `server/discover` (answered
-32601 like every unknown method), then does the classic `initialize`, opens
GET once (405 is fine) and lists the tools over a kept-alive connection; a
server declaring `claude/channel` over HTTP is registered as a channel, and
its notifications on the GET stream reach the model.
"""

from __future__ import annotations

import asyncio
import hmac
import json
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from functools import partial
from urllib.parse import urlsplit

from agent_smith.mcpstdio import (
    INVALID_REQUEST,
    PARSE_ERROR,
    SUPPORTED_VERSIONS,
    McpServer,
    ParseError,
    error_message,
    parse_message,
)

MAX_BODY = 1024 * 1024
_LOOPBACK = frozenset({"localhost", "127.0.0.1", "::1"})


Send = Callable[[bytes], Awaitable[None]]
"""Puts one chunk of a streamed body on the wire; raises ConnectionError once the client is gone."""


@dataclass(frozen=True)
class HttpAnswer:
    status: int
    reason: str
    headers: tuple[tuple[str, str], ...] = ()
    body: bytes = b""
    # A body of unknown length, written as it comes until the coroutine returns (or the client leaves).
    stream: Callable[[Send], Awaitable[None]] | None = None


class EventStream:
    """One client's GET stream as the server's writer: each JSON-RPC message becomes an SSE event."""

    def __init__(self, send: Send) -> None:
        self._send = send
        self._pending = bytearray()
        self.broken = asyncio.Event()

    def write(self, data: bytes) -> None:
        # A JSON text from json.dumps has no raw line break: one `data:` line holds it.
        self._pending += b"event: message\ndata: " + data.rstrip(b"\n") + b"\n\n"

    async def drain(self) -> None:
        chunk, self._pending = bytes(self._pending), bytearray()
        try:
            await self._send(chunk)
        except (ConnectionError, OSError):
            self.broken.set()
            raise


async def carry_notifications(server: McpServer, send: Send) -> None:
    """Hold one GET stream open as `server`'s way to its client, until the stream breaks."""
    stream = EventStream(send)
    server.attach(stream, after_handshake=True)
    try:
        await stream.broken.wait()
    finally:
        server.detach(stream)


def _json(status: int, reason: str, payload: object) -> HttpAnswer:
    return HttpAnswer(status, reason, (("Content-Type", "application/json"),), json.dumps(payload).encode())


def _plain(status: int, reason: str, text: str, *extra: tuple[str, str]) -> HttpAnswer:
    return HttpAnswer(status, reason, (("Content-Type", "text/plain; charset=utf-8"), *extra), text.encode() + b"\n")


def _unsupported_version() -> HttpAnswer:
    said = f"unsupported MCP-Protocol-Version (this server speaks {', '.join(SUPPORTED_VERSIONS)})"
    return _json(400, "Bad Request", error_message(None, INVALID_REQUEST, said))


def origin_allowed(origin: str | None) -> bool:
    """No Origin (a non-browser client such as Claude Code) or a loopback one (pure).

    The transport's rule against DNS rebinding: a web page that made a name resolve to
    127.0.0.1 still sends its own Origin, which is refused here.
    """
    if origin is None:
        return True
    try:
        host = urlsplit(origin).hostname
    except ValueError:
        return False
    return host in _LOOPBACK


def version_refused(version: str | None, message: object) -> bool:
    """Whether an `MCP-Protocol-Version` header names a version this server does not speak (pure).

    None (no header: a client older than 2025-06-18) is accepted. On the messages that
    negotiate a version, `initialize` and the newer era's `server/discover` probe, the header
    is the client's proposal, and the answer in the body negotiates it; the pinned Claude Code
    sends its probe with 2026-07-28 and must get the -32601 that makes it do `initialize`.
    """
    if version is None or version in SUPPORTED_VERSIONS:
        return False
    negotiating = ("initialize", "server/discover")
    messages = message if isinstance(message, list) else [message]
    return not all(isinstance(m, dict) and m.get("method") in negotiating for m in messages)


def server_for(servers: Mapping[str, McpServer], authorization: str | None) -> McpServer | None:
    """The server whose token the `Authorization: Bearer …` header carries; None when none does."""
    scheme, _, token = (authorization or "").partition(" ")
    if scheme.lower() != "bearer" or not token:
        return None
    found = None
    for candidate, server in servers.items():
        # Compare against every token, in constant time each: timing says nothing about which is near.
        if hmac.compare_digest(candidate.encode(), token.strip().encode()):
            found = server
    return found


async def answer_http(
    servers: Mapping[str, McpServer], method: str, headers: Mapping[str, str], body: bytes
) -> HttpAnswer:
    """The HTTP answer to one request to the MCP endpoint; `headers` keys are lower case."""
    if not origin_allowed(headers.get("origin")):
        return _plain(403, "Forbidden", "cross-origin requests are refused")
    server = server_for(servers, headers.get("authorization"))
    if server is None:
        return _plain(401, "Unauthorized", "an agent's bearer token is required", ("WWW-Authenticate", "Bearer"))
    if method == "GET" and server.pushes:
        if "text/event-stream" not in headers.get("accept", ""):
            return _plain(406, "Not Acceptable", "the stream is text/event-stream")
        if version_refused(headers.get("mcp-protocol-version"), None):
            return _unsupported_version()
        return HttpAnswer(
            200,
            "OK",
            (("Content-Type", "text/event-stream"), ("Cache-Control", "no-cache")),
            stream=partial(carry_notifications, server),
        )
    if method != "POST":
        allowed = "GET, POST" if server.pushes else "POST"
        return _plain(405, "Method Not Allowed", f"this MCP endpoint takes {allowed} only", ("Allow", allowed))
    if headers.get("content-type", "").split(";", 1)[0].strip().lower() != "application/json":
        return _plain(415, "Unsupported Media Type", "send application/json")
    try:
        message = parse_message(body)
    except ParseError as exc:
        return _json(400, "Bad Request", error_message(None, PARSE_ERROR, str(exc)))
    if version_refused(headers.get("mcp-protocol-version"), message):
        return _unsupported_version()
    answer = await server.answer(message)
    if answer is None:
        return HttpAnswer(202, "Accepted")
    # An empty batch holds no message at all: its error is the request's too.
    return _json(400, "Bad Request", answer) if message == [] else _json(200, "OK", answer)
