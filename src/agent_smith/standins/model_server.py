"""The scripted model server: the Anthropic Messages API over HTTP, answers from a script.

A thin aiohttp shell around `model_core`. Point an agent's Claude Code at
``server.agent_url(name)`` (``http://127.0.0.1:PORT/agents/<name>``) and its
agent turns are answered from that agent's script; side requests (title,
safety check, quota probe) get fitting answers and never consume the script.
Every request is appended to a JSONL log with header names only, never
header values: an API key or token can never end up in the log.
"""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Self

from aiohttp import web

from agent_smith.errors import OperationError
from agent_smith.standins import model_core as core
from agent_smith.standins.model_script import Script


@dataclass(frozen=True)
class LoggedRequest:
    """One line of the request log."""

    time: str
    method: str
    path: str
    agent: str
    endpoint: str
    kind: str | None
    headers: tuple[str, ...]
    body: Any
    turn: int | None
    reply: Any

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> LoggedRequest:
        return cls(
            time=data["time"],
            method=data["method"],
            path=data["path"],
            agent=data["agent"],
            endpoint=data["endpoint"],
            kind=data["kind"],
            headers=tuple(data["headers"]),
            body=data["body"],
            turn=data["turn"],
            reply=data["reply"],
        )


def read_request_log(log_path: Path) -> list[LoggedRequest]:
    """Every complete line of a request log; a missing log is an empty one.

    The server may be appending while this reads: a last line without its
    newline is still being written and is left for the next read.
    """
    try:
        text = log_path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return []
    complete = text.split("\n")[:-1]
    return [LoggedRequest.from_json(json.loads(line)) for line in complete if line.strip()]


class ModelServer:
    """The server on loopback; ``async with ModelServer(script, log) as server: server.url``."""

    def __init__(self, script: Script, log_path: Path, *, host: str = "127.0.0.1", port: int = 0) -> None:
        self.script = script
        self.log_path = log_path
        self._host = host
        self._port = port
        self._cursors: dict[str, int] = {}
        self._sequence = 0
        self._requests = 0
        self._runner: web.AppRunner | None = None
        self._bound_port: int | None = None

    @property
    def url(self) -> str:
        """The base URL for the ``default`` agent (no prefix)."""
        if self._bound_port is None:
            raise OperationError("the model server is not started")
        return f"http://{self._host}:{self._bound_port}"

    def agent_url(self, agent: str) -> str:
        """ANTHROPIC_BASE_URL for one agent: its script is chosen by this path prefix."""
        return f"{self.url}/agents/{agent}"

    def requests(self, *, agent: str | None = None, kind: core.RequestKind | None = None) -> list[LoggedRequest]:
        return [
            entry
            for entry in read_request_log(self.log_path)
            if (agent is None or entry.agent == agent) and (kind is None or entry.kind == kind)
        ]

    def consumed(self, agent: str) -> int:
        """How many of the agent's scripted turns have been answered."""
        return self._cursors.get(agent, 0)

    async def start(self) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((self._host, self._port))
        except OSError as exc:
            sock.close()
            raise OperationError(f"model server cannot listen on {self._host}:{self._port}: {exc.strerror}") from exc
        self._bound_port = sock.getsockname()[1]
        app = web.Application(client_max_size=core.MAX_REQUEST_BYTES)
        app.router.add_route("*", "/{tail:.*}", self._handle)
        runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await runner.setup()
        await web.SockSite(runner, sock).start()
        self._runner = runner

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        where = core.route(request.path_qs)
        request_id = self._next_request_id()
        try:
            raw = await request.read()
        except web.HTTPRequestEntityTooLarge:
            raw, body = b"", None
            answer = _error("request_too_large", _TOO_LARGE, request_id)
        else:
            body = _parse_json(raw)
            answer = self._decide(request.method, request.path, where, body, request_id)
        # Logged before the reply goes out: once a client has seen a reply, its line is in the log.
        self._log(
            {
                "time": _now(),
                "method": request.method,
                "path": request.path_qs,
                "agent": where.agent,
                "endpoint": where.endpoint.value,
                "kind": answer.kind.value if answer.kind else None,
                "headers": sorted({name.lower() for name in request.headers}),
                "body": body if body is not None else raw.decode("utf-8", "replace"),
                "turn": answer.turn,
                "reply": answer.payload,
            }
        )
        headers = {"request-id": request_id}
        if answer.stream:
            return await _stream(request, answer.payload, headers)
        return web.json_response(answer.payload, status=answer.status, headers=headers)

    def _decide(self, method: str, path: str, where: core.Route, body: Any, request_id: str) -> _Answer:
        if where.endpoint in (core.Endpoint.HELLO, core.Endpoint.ROOT):
            return _Answer(200, {"message": "hello"})
        if method != "POST" or where.endpoint is core.Endpoint.OTHER:
            return _error("not_found_error", f"no route for {method} {path}", request_id)
        if not isinstance(body, dict):
            return _error("invalid_request_error", "the body must be a JSON object", request_id)
        problem = core.request_problem(where.endpoint, body)
        if problem is not None:
            return _error("invalid_request_error", problem, request_id)
        if where.endpoint is core.Endpoint.COUNT_TOKENS:
            return _Answer(200, core.count_tokens_reply(body))
        kind = core.classify(body)
        choice = core.Choice(None, None)
        if kind is core.RequestKind.AGENT_TURN:
            choice, self._cursors = core.choose(self.script, self._cursors, where.agent, body)
        reply = core.build_reply(kind, choice, body, self._next_ids(choice), self.script.idle_text)
        return _Answer(200, reply, kind=kind, turn=choice.index, stream=bool(body.get("stream")))

    def _next_request_id(self) -> str:
        # The `request-id` header's shape is how Claude Code tells an answer of the API
        # from one of a proxy in between (it checks ^req_[A-Za-z0-9_-]{4,128}$).
        self._requests += 1
        return f"req_{self._requests:024x}"

    def _next_ids(self, choice: core.Choice) -> core.Ids:
        self._sequence += 1
        calls = len(choice.turn.tool_calls) if choice.turn else 0
        stem = f"{self._sequence:024x}"
        return core.Ids(f"msg_{stem}", tuple(f"toolu_{stem}{n:02x}" for n in range(calls)))

    def _log(self, entry: Mapping[str, Any]) -> None:
        with self.log_path.open("a", encoding="utf-8") as fh:
            fh.write(json.dumps(entry, ensure_ascii=False) + "\n")


@dataclass(frozen=True)
class _Answer:
    status: int
    payload: dict[str, Any]
    kind: core.RequestKind | None = None
    turn: int | None = None
    stream: bool = False


def _now() -> str:
    now = time.time()
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now)) + f".{int(now * 1000) % 1000:03d}Z"


def _parse_json(raw: bytes) -> Any:
    if not raw:
        return None
    try:
        return json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        return None


def _error(kind: str, message: str, request_id: str) -> _Answer:
    return _Answer(core.ERROR_STATUS[kind], core.error_body(kind, message, request_id))


_TOO_LARGE = f"Request exceeds the maximum allowed number of bytes ({core.MAX_REQUEST_BYTES})."


async def _stream(request: web.Request, reply: Mapping[str, Any], headers: Mapping[str, str]) -> web.StreamResponse:
    response = web.StreamResponse(headers={**headers, "Content-Type": "text/event-stream", "Cache-Control": "no-cache"})
    await response.prepare(request)
    for event, data in core.sse_events(reply):
        await response.write(core.encode_sse(event, data))
    await response.write_eof()
    return response


class ModelServerThread:
    """The server on its own event loop in a daemon thread, for synchronous callers (fixtures, demo).

    ``with ModelServerThread(script, log) as server: server.url``.
    """

    def __init__(self, script: Script, log_path: Path, *, host: str = "127.0.0.1", port: int = 0) -> None:
        self.server = ModelServer(script, log_path, host=host, port=port)
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="model-server", daemon=True)

    @property
    def url(self) -> str:
        return self.server.url

    def agent_url(self, agent: str) -> str:
        return self.server.agent_url(agent)

    def requests(self, *, agent: str | None = None, kind: core.RequestKind | None = None) -> list[LoggedRequest]:
        return self.server.requests(agent=agent, kind=kind)

    def consumed(self, agent: str) -> int:
        return self.server.consumed(agent)

    def start(self) -> None:
        self._thread.start()
        self._call(self.server.start())

    def stop(self) -> None:
        if not self._thread.is_alive():
            return
        try:
            self._call(self.server.stop())
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=10)
            self._loop.close()

    def _call(self, work: Awaitable[None]) -> None:
        async def run() -> None:
            await work

        asyncio.run_coroutine_threadsafe(run(), self._loop).result(timeout=30)

    def __enter__(self) -> Self:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


async def serve(server: ModelServer, ready: Callable[[str], None], stop: asyncio.Event) -> None:
    """Run until `stop` is set; `ready` gets the URL once the socket listens (the CLI prints it)."""
    await server.start()
    try:
        ready(server.url)
        await stop.wait()
    finally:
        await server.stop()
