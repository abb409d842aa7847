"""HTTP/1.1 connections to the supervisor's endpoint, on h11, kept alive across requests.

The supervisor decides each answer (`Supervisor._answer`); this module only
carries requests and answers. It is imported on the first connection, after
the agents' sessions are open: `up` starts claude without waiting for it.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import h11

from agent_smith.mcphttp import MAX_BODY, HttpAnswer

_MAX_HEAD = 64 * 1024
_FIRST_REQUEST_WAIT = 5.0
_BODY_WAIT = 5.0
# A client that keeps its connection for the next tool call may wait minutes between calls.
_KEEP_ALIVE = 600.0

Answer = Callable[[str, str, Mapping[str, str], bytes], Awaitable[HttpAnswer]]
"""answer(method, path without query, headers with lower-case names, body) -> the response."""


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
                refused = HttpAnswer(413, "Payload Too Large", (("Connection", "close"),))
                writer.write(_serialise(conn, refused, head=request.method == b"HEAD"))
                await writer.drain()
                return
            headers = {name.decode("latin-1"): value.decode("latin-1") for name, value in request.headers}
            path = request.target.decode("ascii", "replace").split("?", 1)[0]
            response = await answer(request.method.decode("ascii"), path, headers, body)
            if response.stream is not None:
                await _stream(conn, reader, writer, response)
                return
            writer.write(_serialise(conn, response, head=request.method == b"HEAD"))
            await writer.drain()
            if conn.our_state is not h11.DONE or conn.their_state is not h11.DONE:
                return
            conn.start_next_cycle()
            idle = _KEEP_ALIVE
    except h11.RemoteProtocolError as exc:
        # A request h11 cannot read (`Content-Length: abc`, a head over 64 KiB): said so, as h11
        # leaves us free to, rather than a connection closed on a client left to guess why.
        if conn.our_state in (h11.IDLE, h11.SEND_RESPONSE):
            with contextlib.suppress(h11.ProtocolError, ConnectionError):
                status = exc.error_status_hint
                refused = HttpAnswer(
                    status,
                    _REASONS.get(status, "Bad Request"),
                    (("Connection", "close"), ("Content-Type", "text/plain; charset=utf-8")),
                    f"a malformed request: {exc}\n".encode(),
                )
                writer.write(_serialise(conn, refused, head=False))
                await writer.drain()
    except (h11.ProtocolError, asyncio.IncompleteReadError, TimeoutError, ConnectionError):
        pass
    finally:
        writer.close()


_REASONS = {400: "Bad Request", 431: "Request Header Fields Too Large"}


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


async def _stream(
    conn: h11.Connection, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, answer: HttpAnswer
) -> None:
    """A body written as it comes (chunked), until it ends or the client closes its side.

    The connection carries nothing else afterwards: a client holds a stream on a
    connection of its own.
    """
    assert answer.stream is not None
    head = h11.Response(status_code=answer.status, reason=answer.reason, headers=list(answer.headers))
    writer.write(conn.send(head) or b"")
    await writer.drain()

    async def send(chunk: bytes) -> None:
        if writer.is_closing():
            raise ConnectionResetError("the client closed the stream")
        writer.write(conn.send(h11.Data(data=chunk)) or b"")
        await writer.drain()

    body = asyncio.ensure_future(answer.stream(send))
    # Anything the client sends now, or its end of file, means it is done with the stream.
    gone = asyncio.ensure_future(reader.read(1))
    try:
        await asyncio.wait({body, gone}, return_when=asyncio.FIRST_COMPLETED)
        if body.done() and body.exception() is None:
            writer.write(conn.send(h11.EndOfMessage()) or b"")
            await writer.drain()
    finally:
        for task in (body, gone):
            task.cancel()
        await asyncio.gather(body, gone, return_exceptions=True)


def _serialise(conn: h11.Connection, answer: HttpAnswer, *, head: bool) -> bytes:
    """The answer's bytes; to a HEAD request its head alone, with the length a GET's body would
    have (h11 refuses a body there, and the connection would end with nothing sent)."""
    headers = [*answer.headers, ("Content-Length", str(len(answer.body)))]
    out = conn.send(h11.Response(status_code=answer.status, reason=answer.reason, headers=headers)) or b""
    if answer.body and not head:
        out += conn.send(h11.Data(data=answer.body)) or b""
    return out + (conn.send(h11.EndOfMessage()) or b"")
