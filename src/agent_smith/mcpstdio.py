"""A small stdio MCP server: newline-delimited JSON-RPC 2.0, the classic `initialize` handshake.

agent-smith's MCP servers (the event log, the Matrix channel) are built on
this rather than the `mcp` SDK because the pinned Claude Code CLI first sends
`server/discover` and treats a server that answers it as the new protocol
era, which is never registered as a channel. Here `server/discover` gets
-32601 (method not found), like every other unknown method.

    server = McpServer("events", "1.0", [Tool("publish_event", "…", schema, handler)])
    await server.serve_stdio()

A handler returns text or a JSON-able dict; raising `ToolError` makes the
call an `isError` result the model sees, anything else is a bug and is
reported the same way with the exception's type (the server keeps serving).
Over stdio, `notifications/cancelled` stops the call it names, which is then
not answered (over HTTP the call runs on: its answer is the POST's response).

Messages the server starts (notifications) go to whichever writer is
attached: stdout while serving stdio, an HTTP stream (`agent_smith.mcphttp`)
while a client holds one open. A notification waits until a client is
connected and has listed the tools (a client opens an HTTP stream only in a
session it has set up), and is sent again on the next connection if the
stream broke under it.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import sys
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

log = logging.getLogger(__name__)

SUPPORTED_VERSIONS = ("2025-06-18", "2025-03-26", "2024-11-05")
METHOD_NOT_FOUND = -32601
INVALID_PARAMS = -32602
PARSE_ERROR = -32700
INVALID_REQUEST = -32600

# The longest message line read; a longer one is refused (16 MiB: far more than a tool call needs).
MESSAGE_MAX = 16 * 1024 * 1024

Handler = Callable[[dict[str, Any]], Awaitable[str | dict[str, Any]]]


class ParseError(ValueError):
    """A message that is not JSON; its text is what the client reads."""


def parse_message(data: bytes) -> object:
    """One message as JSON; `ParseError` when it is not (pure)."""
    try:
        return json.loads(data)
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise ParseError("not valid JSON") from None
    except RecursionError:
        # Legal JSON, but deeper than Python's parser goes (e.g. 100,000 `[`): a refusal, not a crash.
        raise ParseError("JSON nested too deeply for this server") from None


def request_error(message: Mapping[str, Any]) -> str | None:
    """Why a JSON-RPC 2.0 object is no valid request or notification; None when it is one (pure).

    MCP narrows JSON-RPC's ids to a string or a number, never null.
    """
    if not isinstance(message.get("method"), str):
        return "method must be a string"
    if "id" in message and (isinstance(message["id"], bool) or not isinstance(message["id"], str | int | float)):
        return "id must be a string or a number"
    return None


async def _next_line(reader: asyncio.StreamReader) -> bytes | None:
    """The next line (b"" at the end of the stream), or None for one over the reader's limit,
    which is read to its end and dropped."""
    try:
        return await reader.readuntil(b"\n")
    except asyncio.IncompleteReadError as exc:
        return exc.partial
    except asyncio.LimitOverrunError as exc:
        await reader.readexactly(exc.consumed)
    while True:
        try:
            await reader.readuntil(b"\n")
            return None
        except asyncio.IncompleteReadError:
            return None
        except asyncio.LimitOverrunError as exc:
            await reader.readexactly(exc.consumed)


def cancelled_request(message: object) -> str | int | float | None:
    """The id of the request a `notifications/cancelled` names; None for any other message (pure)."""
    if not isinstance(message, dict) or message.get("method") != "notifications/cancelled" or "id" in message:
        return None
    params = message.get("params")
    request_id = params.get("requestId") if isinstance(params, dict) else None
    if isinstance(request_id, bool) or not isinstance(request_id, str | int | float):
        return None
    return request_id


class ToolError(Exception):
    """A tool refused or failed in a way the model should read (an `isError` result)."""


@dataclass(frozen=True)
class Tool:
    name: str
    description: str
    input_schema: Mapping[str, Any]
    handler: Handler = field(repr=False)

    def listing(self) -> dict[str, Any]:
        return {"name": self.name, "description": self.description, "inputSchema": dict(self.input_schema)}


class Writer(Protocol):
    """Where the server's messages go: one JSON line per `write`, on the wire once `drain` returns."""

    def write(self, data: bytes) -> None: ...

    async def drain(self) -> None: ...


class _RpcError(Exception):
    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class McpServer:
    def __init__(
        self,
        name: str,
        version: str,
        tools: Sequence[Tool],
        *,
        instructions: str | None = None,
        experimental: Mapping[str, Any] | None = None,
        pushes: bool = False,
        settle: float = 0.0,
    ) -> None:
        self.name = name
        self.version = version
        self.tools = {tool.name: tool for tool in tools}
        self.instructions = instructions
        self.experimental = dict(experimental or {})
        # Sends notifications of its own (a channel): an HTTP client may hold a stream open for them.
        self.pushes = pushes
        # Set once the client (this connection of it) listed the tools: Claude Code registers its
        # channel handler only after the handshake, a few ms later, and drops a notification that
        # comes before; `settle` is how long notifications wait after a connection (re)opened.
        self._tools_listed = asyncio.Event()
        self._settle = settle
        self._quiet_until = 0.0
        self._writer: Writer | None = None
        self._open = asyncio.Event()
        self._write_lock = asyncio.Lock()
        self._tasks: set[asyncio.Task[None]] = set()
        # The stdio requests being answered, by id: what a `notifications/cancelled` can stop.
        self._running: dict[str | int | float, asyncio.Task[None]] = {}

    @property
    def connected(self) -> bool:
        """A client is attached and has listed the tools: a notification would go out now."""
        return self._open.is_set()

    def attach(self, writer: Writer, *, after_handshake: bool = False) -> None:
        """Send from now on to `writer` (a new client connection replaces the previous one).

        `after_handshake`: the client opened it in a session it already set up (an HTTP
        stream comes after `initialize`), possibly with this server's predecessor: a client
        whose stream broke when the supervisor restarted opens a new one without a new
        handshake, its handlers still registered.
        """
        self._writer = writer
        if after_handshake:
            self._tools_listed.set()
        self._hold()
        self._update()

    def detach(self, writer: Writer) -> None:
        """`writer` is gone; notifications wait for the next one."""
        if self._writer is writer:
            self._writer = None
            self._update()

    def _hold(self) -> None:
        # Every notification waits out the settle of a connection that just (re)opened.
        self._quiet_until = max(self._quiet_until, time.monotonic() + self._settle)

    def _update(self) -> None:
        if self._writer is not None and self._tools_listed.is_set():
            self._open.set()
        else:
            self._open.clear()

    async def serve_stdio(self) -> None:
        """Serve on this process's stdin/stdout until stdin closes (a client that closed stdout
        has its answers dropped)."""
        loop = asyncio.get_running_loop()
        reader = asyncio.StreamReader(limit=MESSAGE_MAX)
        await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
        await self.serve(reader, _StdoutWriter())

    async def serve(self, reader: asyncio.StreamReader, writer: Writer) -> None:
        """Serve one client until its stream ends; in-flight tool calls are awaited. A line over
        the reader's limit is answered with an error and skipped: the client keeps its tools."""
        self.attach(writer)
        try:
            while (line := await _next_line(reader)) != b"":
                if line is None:
                    await self._send(error_message(None, INVALID_REQUEST, "message too long for this server"))
                elif line.strip():
                    await self._receive(line)
        finally:
            if self._tasks:
                await asyncio.gather(*self._tasks, return_exceptions=True)
            self.detach(writer)

    async def notify(self, method: str, params: Mapping[str, Any]) -> None:
        """Send a notification (e.g. `notifications/claude/channel`) once a client is connected.

        Returns when it was handed to a connection; a connection that broke
        under it is dropped and the notification goes to the next one.
        """
        message = {"jsonrpc": "2.0", "method": method, "params": dict(params)}
        while True:
            await self._open.wait()
            if (wait := self._quiet_until - time.monotonic()) > 0:
                await asyncio.sleep(wait)
                continue  # look again: the connection may have changed meanwhile
            writer = self._writer
            if writer is None:
                continue
            try:
                await self._write(writer, message)
                return
            except (ConnectionError, OSError) as exc:
                log.info("%s: a client connection broke (%s); waiting for the next", self.name, exc)
                self.detach(writer)

    async def answer(self, message: object) -> dict[str, Any] | list[dict[str, Any]] | None:
        """The answer to one parsed message or batch; None when nothing in it is a request.

        Both transports use it: stdio writes the answer as a line, HTTP as the response body.
        A batch (2025-03-26 allowed them; 2025-06-18 dropped them) is answered as one list.
        """
        if not isinstance(message, list):
            return await self.handle(message)
        if not message:
            return error_message(None, INVALID_REQUEST, "an empty batch")
        answers = [answer for answer in [await self.handle(item) for item in message] if answer is not None]
        return answers or None

    async def handle(self, message: object) -> dict[str, Any] | None:
        """The answer to one parsed JSON-RPC message; None for a notification or a response."""
        if not isinstance(message, dict) or message.get("jsonrpc") != "2.0":
            return error_message(None, INVALID_REQUEST, "not a JSON-RPC 2.0 message")
        if "method" not in message and "id" in message and ("result" in message or "error" in message):
            return None  # a response to something we never ask: ignore
        if (why := request_error(message)) is not None:
            return error_message(None, INVALID_REQUEST, why)
        method = message["method"]
        if "id" not in message:
            return None
        request_id, params = message["id"], message.get("params")
        params = {} if params is None else params
        try:
            if not isinstance(params, dict):
                raise _RpcError(INVALID_PARAMS, "params must be an object")
            result = await self._dispatch(method, params)
        except _RpcError as exc:
            return error_message(request_id, exc.code, exc.message)
        return {"jsonrpc": "2.0", "id": request_id, "result": result}

    async def _receive(self, line: bytes) -> None:
        try:
            message = parse_message(line)
        except ParseError as exc:
            await self._send(error_message(None, PARSE_ERROR, str(exc)))
            return
        if (cancelled := cancelled_request(message)) is not None:
            # The client gave up on that call (Esc in Claude Code): it stops, and is not answered.
            if (running := self._running.get(cancelled)) is not None:
                running.cancel()
            return
        # Each message is answered in its own task: a slow tool call must not hold up the next line.
        task = asyncio.create_task(self._reply(message))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        if isinstance(message, dict) and "id" in message and request_error(message) is None:
            request_id = message["id"]
            self._running[request_id] = task
            task.add_done_callback(lambda done: self._forget(request_id, done))

    def _forget(self, request_id: str | int | float, task: asyncio.Task[None]) -> None:
        # A later request may reuse the id while this one still ran: only this task's entry goes.
        if self._running.get(request_id) is task:
            del self._running[request_id]

    async def _reply(self, message: object) -> None:
        answer = await self.answer(message)
        if answer is not None:
            await self._send(answer)

    async def _dispatch(self, method: str, params: dict[str, Any]) -> dict[str, Any]:
        if method == "initialize":
            # A new session of the client (a reconnect too): it registers its handlers anew.
            self._tools_listed.clear()
            self._update()
            return self._initialize(params)
        if method == "ping":
            return {}
        if method == "tools/list":
            if params.get("cursor") is not None:
                # Every tool comes in the first page, which gives no cursor: any cursor is unknown.
                raise _RpcError(INVALID_PARAMS, "invalid cursor: the first page holds every tool")
            self._tools_listed.set()
            self._hold()
            self._update()
            return {"tools": [tool.listing() for tool in self.tools.values()]}
        if method == "tools/call":
            return await self._call(params)
        raise _RpcError(METHOD_NOT_FOUND, f"method not found: {method}")

    def _initialize(self, params: dict[str, Any]) -> dict[str, Any]:
        asked = params.get("protocolVersion")
        version = asked if asked in SUPPORTED_VERSIONS else SUPPORTED_VERSIONS[0]
        capabilities: dict[str, Any] = {"tools": {"listChanged": False}}
        if self.experimental:
            capabilities["experimental"] = self.experimental
        result: dict[str, Any] = {
            "protocolVersion": version,
            "capabilities": capabilities,
            "serverInfo": {"name": self.name, "version": self.version},
        }
        if self.instructions:
            result["instructions"] = self.instructions
        return result

    async def _call(self, params: dict[str, Any]) -> dict[str, Any]:
        name = params.get("name")
        tool = self.tools.get(name) if isinstance(name, str) else None
        if tool is None:
            raise _RpcError(INVALID_PARAMS, f"unknown tool: {name}")
        arguments = params.get("arguments")
        arguments = {} if arguments is None else arguments
        if not isinstance(arguments, dict):
            raise _RpcError(INVALID_PARAMS, "arguments must be an object")
        if (where := _not_unicode(arguments)) is not None:
            # Legal in JSON (an escaped half of a surrogate pair), but with no UTF-8 form to send or store.
            text = f"{tool.name} refused: `{where}` is not valid Unicode (half a surrogate pair)"
            return {"content": [{"type": "text", "text": text}], "isError": True}
        try:
            output = await tool.handler(arguments)
        except ToolError as exc:
            return {"content": [{"type": "text", "text": str(exc)}], "isError": True}
        except Exception as exc:
            log.exception("tool %s failed", tool.name)
            return {"content": [{"type": "text", "text": f"{tool.name} failed: {type(exc).__name__}"}], "isError": True}
        if isinstance(output, str):
            return {"content": [{"type": "text", "text": output}]}
        return {
            "content": [{"type": "text", "text": json.dumps(output, ensure_ascii=False, default=str)}],
            "structuredContent": output,
        }

    async def _send(self, message: dict[str, Any] | list[dict[str, Any]]) -> None:
        writer = self._writer
        if writer is None:
            return  # the client's end broke: no one reads answers any more
        try:
            await self._write(writer, message)
        except (ConnectionError, OSError) as exc:
            log.info("%s: the client stopped reading (%s); its answers are dropped", self.name, exc)
            self.detach(writer)

    async def _write(self, writer: Writer, message: dict[str, Any] | list[dict[str, Any]]) -> None:
        try:
            data = json.dumps(message, ensure_ascii=False, default=str).encode() + b"\n"
        except UnicodeEncodeError:
            # Half a surrogate pair in what a tool read (a message, a file): escaped, it is still JSON.
            data = json.dumps(message, default=str).encode() + b"\n"
        async with self._write_lock:
            writer.write(data)
            await writer.drain()


class _StdoutWriter:
    """The writer half over this process's stdout (blocking writes are fine: lines are small).

    Unbuffered: bytes a closed stdout refused would otherwise stay in Python's buffer and fail
    again, with a message on stderr and exit code 120, when the interpreter flushes it at exit.
    """

    def write(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            view = view[os.write(sys.stdout.fileno(), view) :]

    async def drain(self) -> None:
        pass


def _not_unicode(value: object, where: str = "") -> str | None:
    """Where in `value` (a decoded JSON value) a string holds a lone surrogate; None if nowhere."""
    if isinstance(value, str):
        try:
            value.encode()
        except UnicodeEncodeError:
            return where or "the value"
        return None
    if isinstance(value, dict):
        items: Any = value.items()
    elif isinstance(value, list):
        items = enumerate(value)
    else:
        return None
    for key, item in items:
        found = _not_unicode(item, f"{where}.{key}" if where else str(key))
        if found is not None:
            return found
    return None


def error_message(request_id: Any, code: int, message: str) -> dict[str, Any]:
    """A JSON-RPC error response."""
    return {"jsonrpc": "2.0", "id": request_id, "error": {"code": code, "message": message}}
