"""Reading the real sources into an `Observation`: Synapse's room, the stream, the stand-in, the audit log.

Each reader turns a source's own format into the plain data of
`agent_smith.demo.steps`; a source that is not there yet (the stream before
its first event, the audit log before the first request) reads as empty.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx

from agent_smith.crew import EventLog
from agent_smith.demo.steps import AuditSeen, ChatEvent, PullSeen, ReviewSeen, StreamEvent
from agent_smith.errors import OperationError
from agent_smith.events import EventFilter, connect, query
from agent_smith.standins.github import World


def room_timeline(homeserver: str, token: str, room_id: str, limit: int = 200) -> list[dict[str, Any]]:
    """The room's latest events, oldest first, as the token's user sees them."""
    try:
        with httpx.Client(base_url=homeserver, trust_env=False, timeout=10) as client:
            response = client.get(
                f"/_matrix/client/v3/rooms/{quote(room_id)}/messages",
                params={"dir": "b", "limit": str(limit)},
                headers={"Authorization": f"Bearer {token}"},
            )
    except httpx.HTTPError as exc:
        raise OperationError(f"Synapse at {homeserver} unreachable: {exc}") from exc
    if response.status_code != 200:
        raise OperationError(f"Synapse: reading {room_id} answered {response.status_code}")
    chunk = response.json().get("chunk", [])
    return list(reversed(chunk)) if isinstance(chunk, list) else []


def chat_events(timeline: Sequence[dict[str, Any]]) -> tuple[ChatEvent, ...]:
    out: list[ChatEvent] = []
    for event in timeline:
        content = event.get("content") or {}
        if event.get("type") == "m.room.message":
            mentions = (content.get("m.mentions") or {}).get("user_ids") or []
            out.append(
                ChatEvent(
                    event_id=str(event.get("event_id", "")),
                    sender=str(event.get("sender", "")),
                    kind="message",
                    body=str(content.get("body", "")),
                    mentions=tuple(str(m) for m in mentions),
                )
            )
        elif event.get("type") == "m.reaction":
            relates = content.get("m.relates_to") or {}
            out.append(
                ChatEvent(
                    event_id=str(event.get("event_id", "")),
                    sender=str(event.get("sender", "")),
                    kind="reaction",
                    relates_to=relates.get("event_id"),
                    key=relates.get("key"),
                )
            )
    return tuple(out)


async def _stream(url: str, settings: EventLog) -> list[dict[str, Any]]:
    nc = await connect(url)
    try:
        stored = await query(nc, settings, EventFilter(), limit=500)
    except OperationError:
        return []  # the stream appears with its first event
    finally:
        await nc.close()
    return [s.payload for s in stored]


def stream_payloads(url: str | None, settings: EventLog) -> list[dict[str, Any]]:
    if url is None:
        return []
    try:
        return asyncio.run(_stream(url, settings))
    except OperationError:
        return []


def stream_events(payloads: Sequence[dict[str, Any]]) -> tuple[StreamEvent, ...]:
    out = []
    for p in payloads:
        pr = p.get("pr")
        out.append(StreamEvent(str(p.get("type", "")), str(p.get("agent", "")), pr if isinstance(pr, int) else None))
    return tuple(out)


def pulls_seen(world: World) -> tuple[PullSeen, ...]:
    out = []
    for pr in list(world.all_pulls()):
        reviews = []
        for review in list(pr.reviews):
            inline = sum(1 for t in pr.threads for c in t.comments if c.review is review)
            reviews.append(ReviewSeen(review.author.login, review.state, review.commit_id, inline))
        out.append(PullSeen(pr.number, pr.author.login, pr.state, pr.head_sha, tuple(reviews)))
    return tuple(out)


def audit_seen(path: Path) -> tuple[AuditSeen, ...]:
    try:
        lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    except FileNotFoundError:
        return ()
    out = []
    for line in lines:
        try:
            entry = json.loads(line)
        except ValueError:
            continue  # a line still being written
        if isinstance(entry, dict):
            out.append(
                AuditSeen(str(entry.get("agent", "")), str(entry.get("host", "")), str(entry.get("decision", "")))
            )
    return tuple(out)


def count_in_file(path: Path, needle: str) -> int:
    try:
        return path.read_text(encoding="utf-8", errors="replace").count(needle)
    except FileNotFoundError:
        return 0
