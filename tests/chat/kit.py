"""Builders for the chat tests: a crew on a real Synapse, a channel in-process, a faulty door."""

from __future__ import annotations

import asyncio
import json
import secrets
import time
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web
from ruamel.yaml import YAML

from agent_smith.chat.channel import ChatChannel
from agent_smith.chat.config import chat_config
from agent_smith.chat.matrix import MatrixLink
from agent_smith.crew import load_crew
from agent_smith.listeners import free_port
from agent_smith.standins.synapse import MatrixUser, SynapseServer


@dataclass
class Cast:
    """Users on the homeserver for one test, each with a unique id so tests never share a room."""

    devbot: MatrixUser
    reviewbot: MatrixUser
    alice: MatrixUser  # an allowed sender, not an operator
    op: MatrixUser  # an operator
    mallory: MatrixUser  # on no list
    room: str


def make_cast(synapse: SynapseServer, *, encrypted: bool = False) -> Cast:
    tag = secrets.token_hex(3)
    users = {name: synapse.register(f"{name}{tag}") for name in ("devbot", "reviewbot", "alice", "op", "mallory")}
    room = synapse.create_room(
        users["alice"], name=f"crew {tag}", invite=[users[n].user_id for n in ("devbot", "reviewbot", "op", "mallory")]
    )
    if encrypted:
        synapse._call(
            "PUT",
            f"/_matrix/client/v3/rooms/{room}/state/m.room.encryption/",
            token=users["alice"].access_token,
            body={"algorithm": "m.megolm.v1.aes-sha2"},
        )
    for name in ("reviewbot", "op", "mallory"):
        synapse.join(users[name], room)
    return Cast(room=room, **users)


def write_crew(
    root: Path,
    cast: Cast,
    homeserver: str,
    *,
    rooms: list[str] | None = None,
    quiet_hours: Mapping[str, Any] | None = None,
) -> Path:
    """A two-agent crew (devbot, reviewbot) whose chat identities are the cast's."""
    for name in ("devbot", "reviewbot"):
        (root / "agents" / name).mkdir(parents=True, exist_ok=True)
        (root / "agents" / name / "CLAUDE.md").write_text(f"# {name}\n")
    (root / "agents" / "_shared").mkdir(parents=True, exist_ok=True)
    (root / "agents" / "_shared" / "CLAUDE.md").write_text("# crew\n")
    devbot: dict[str, Any] = {
        "user_id": cast.devbot.user_id,
        "display_name": "Dev Bot",
        "rooms": rooms if rooms is not None else [cast.room],
        "allowed_senders": [cast.alice.user_id],
    }
    if quiet_hours:
        devbot["quiet_hours"] = dict(quiet_hours)
    crew = {
        "version": 1,
        "crew": {"name": "chat-test"},
        "agents": [
            {"name": "devbot", "matrix": devbot},
            {"name": "reviewbot", "matrix": {"user_id": cast.reviewbot.user_id}},
        ],
        "matrix": {"homeserver": homeserver, "operators": [cast.op.user_id]},
        "runtime": {"state_dir": str(root / "state")},
    }
    with (root / "crew.yaml").open("w") as fh:
        YAML().dump(crew, fh)
    return root


Notification = tuple[str, dict[str, str]]


@dataclass
class Running:
    channel: ChatChannel
    notes: asyncio.Queue[Notification] = field(default_factory=asyncio.Queue)

    async def next(self, within: float = 20.0) -> Notification:
        return await asyncio.wait_for(self.notes.get(), within)

    def pending(self) -> list[Notification]:
        found = []
        while not self.notes.empty():
            found.append(self.notes.get_nowait())
        return found


@asynccontextmanager
async def running_channel(
    crew_dir: Path,
    token: str,
    *,
    homeserver: str | None = None,
    clock: Callable[[], datetime] | None = None,
    poll_ms: int = 2000,
) -> AsyncIterator[Running]:
    """The devbot channel in this event loop, synced once before the body runs; stopped after."""
    config = chat_config(load_crew(crew_dir, {}).crew, "devbot", token)
    link = MatrixLink(
        homeserver or config.homeserver, config.roster.me.user_id, token, agent="devbot", request_timeout=10
    )
    queue: asyncio.Queue[Notification] = asyncio.Queue()

    async def notify(content: str, meta: Mapping[str, str]) -> None:
        await queue.put((content, dict(meta)))

    extra = {"clock": clock} if clock is not None else {}
    channel = ChatChannel(config, link, notify, poll_ms=poll_ms, **extra)
    running = Running(channel, queue)
    stop = asyncio.Event()
    task = asyncio.create_task(channel.run(stop))
    try:
        await asyncio.wait_for(channel.synced.wait(), 20)
        yield running
    finally:
        stop.set()
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await link.close()


async def in_thread(function: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    return await asyncio.to_thread(function, *args, **kwargs)


def reply_call(room: str, text: str) -> dict[str, Any]:
    """A scripted model's call of the channel's `reply` tool."""
    return {"name": "mcp__matrix__reply", "input": {"room_id": room, "text": text}}


def answering(when: str, room: str, text: str, then: str) -> list[dict[str, Any]]:
    """Two scripted steps: a message containing `when` is answered in `room` with `text`, then the turn ends."""
    return [
        {"when": {"contains": when}, "tool_calls": [reply_call(room, text)]},
        {"when": {"tool_result": True}, "text": then},
    ]


def send(
    synapse: SynapseServer, user: MatrixUser, room: str, content: Mapping[str, Any], kind: str = "m.room.message"
) -> str:
    txn = secrets.token_hex(8)
    event_id: str = synapse._call(
        "PUT", f"/_matrix/client/v3/rooms/{room}/send/{kind}/{txn}", token=user.access_token, body=dict(content)
    )["event_id"]
    return event_id


def room_events(synapse: SynapseServer, user: MatrixUser, room: str, limit: int = 100) -> list[dict[str, Any]]:
    """The room's recent events, oldest first, as `user` sees them."""
    data = synapse._call(
        "GET", f"/_matrix/client/v3/rooms/{room}/messages?dir=b&limit={limit}", token=user.access_token
    )
    return list(reversed(data["chunk"]))


def wait_until(check: Callable[[], Any], timeout: float = 15.0, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while True:
        found = check()
        if found:
            return found
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


class FaultyDoor:
    """A reverse proxy in front of Synapse that can go down (dropping requests in flight) or answer 429."""

    def __init__(self, upstream: str) -> None:
        self.upstream = upstream.rstrip("/")
        self.port = free_port()
        self.seen: list[tuple[float, str, str, int]] = []
        self._limit_next = 0
        self._retry_after_ms: int | None = None
        self._retry_after: int | None = None
        self._limit_path = ""
        self._drop_next = 0
        self._drop_path = ""
        self._inflight: set[asyncio.Task[Any]] = set()
        self._runner: web.AppRunner | None = None
        self._session: aiohttp.ClientSession | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def rate_limit(
        self,
        count: int,
        *,
        retry_after_ms: int | None = None,
        retry_after: int | None = None,
        path: str = "/send/m.room.message/",
    ) -> None:
        """Answer the next `count` requests whose path holds `path` (m.room.message sends) with 429, naming
        the wait in the body (`retry_after_ms`) or in a Retry-After header (`retry_after`, seconds)."""
        self._limit_next, self._retry_after_ms, self._retry_after = count, retry_after_ms, retry_after
        self._limit_path = path

    def drop_answers(self, count: int, *, path: str = "/send/m.room.message/") -> None:
        """Pass the next `count` requests whose path holds `path` to Synapse, then cut the connection
        instead of answering: the request took effect, and the client cannot know it."""
        self._drop_next, self._drop_path = count, path

    async def up(self) -> None:
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=120))
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._forward)
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port, reuse_address=True).start()

    async def down(self) -> None:
        for task in list(self._inflight):
            task.cancel()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def close(self) -> None:
        await self.down()
        if self._session is not None:
            await self._session.close()

    async def _forward(self, request: web.Request) -> web.StreamResponse:
        task = asyncio.current_task()
        assert task is not None
        self._inflight.add(task)
        try:
            if self._limit_next and self._limit_path in request.path:
                self._limit_next -= 1
                self.seen.append((time.monotonic(), request.method, request.path, 429))
                body: dict[str, Any] = {"errcode": "M_LIMIT_EXCEEDED", "error": "Too Many Requests"}
                if self._retry_after_ms is not None:
                    body["retry_after_ms"] = self._retry_after_ms
                hint = {} if self._retry_after is None else {"Retry-After": str(self._retry_after)}
                return web.json_response(body, status=429, headers=hint)
            assert self._session is not None
            headers = {k: v for k, v in request.headers.items() if k.lower() not in ("host", "content-length")}
            async with self._session.request(
                request.method, self.upstream + request.path_qs, headers=headers, data=await request.read()
            ) as upstream:
                payload = await upstream.read()
                self.seen.append((time.monotonic(), request.method, request.path, upstream.status))
                if self._drop_next and self._drop_path in request.path:
                    self._drop_next -= 1
                    assert request.transport is not None
                    request.transport.abort()
                    raise ConnectionResetError("the answer was dropped on purpose")
                return web.Response(
                    body=payload, status=upstream.status, content_type=upstream.content_type or "application/json"
                )
        finally:
            self._inflight.discard(task)


def read_json(path: Path) -> Any:
    return json.loads(path.read_text())
