"""The homeserver, through matrix-nio: a thin adapter that hands back plain data.

matrix-nio returns typed error responses instead of raising; every one of
them, and every transport failure, becomes an `OperationError` with one
line saying what failed where. nio itself honours a 429's ``retry_after_ms``
(up to `RATE_LIMIT_RETRIES` times per request). Transport errors are not
retried here (``max_timeouts=0``): the sync loop owns backoff, and a tool
call must fail promptly rather than hang on a dead homeserver.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import aiohttp
from nio import (
    AsyncClient,
    AsyncClientConfig,
    ErrorResponse,
    InviteMemberEvent,
    JoinResponse,
    MessageDirection,
    RoomGetEventResponse,
    RoomMessagesResponse,
    RoomSendResponse,
    SyncResponse,
)

from agent_smith.errors import OperationError

log = logging.getLogger(__name__)

RATE_LIMIT_RETRIES = 5
SYNC_TIMELINE_LIMIT = 100


@dataclass(frozen=True)
class SyncBatch:
    """One /sync answer as plain data: timeline events in order, invites, and the next token."""

    next_batch: str
    events: tuple[tuple[str, Mapping[str, Any]], ...]
    invites: tuple[tuple[str, str], ...]
    limited_rooms: tuple[str, ...]


class MatrixLink:
    """One agent's connection to its homeserver (an access token, no end-to-end encryption)."""

    def __init__(self, homeserver: str, user_id: str, access_token: str, *, request_timeout: float = 60.0) -> None:
        config = AsyncClientConfig(
            max_limit_exceeded=RATE_LIMIT_RETRIES,
            max_timeouts=0,
            request_timeout=request_timeout,
            store_sync_tokens=False,
            encryption_enabled=False,
        )
        self.homeserver = homeserver.rstrip("/")
        self.user_id = user_id
        self._client = AsyncClient(self.homeserver, user_id, config=config)
        self._client.access_token = access_token
        self._client.user_id = user_id

    async def close(self) -> None:
        await self._client.close()

    async def _call(self, what: str, work: Any) -> Any:
        try:
            response = await work
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            raise OperationError(f"{what}: homeserver {self.homeserver} unreachable ({type(exc).__name__})") from exc
        if isinstance(response, ErrorResponse):
            status = response.status_code or "error"
            raise OperationError(f"{what}: {status} {response.message}")
        return response

    async def sync(self, since: str | None, *, timeout_ms: int, full_state: bool = False) -> SyncBatch:
        # Typing, receipts and presence would only wake the long-poll for nothing.
        nothing = {"not_types": ["*"]}
        sync_filter = {
            "room": {"timeline": {"limit": SYNC_TIMELINE_LIMIT}, "ephemeral": nothing, "account_data": nothing},
            "presence": nothing,
            "account_data": nothing,
        }
        response = await self._call(
            "sync",
            self._client.sync(timeout=timeout_ms, since=since, full_state=full_state, sync_filter=sync_filter),
        )
        if not isinstance(response, SyncResponse):
            raise OperationError(f"sync: unexpected answer {type(response).__name__}")
        events: list[tuple[str, Mapping[str, Any]]] = []
        limited: list[str] = []
        for room_id, room in response.rooms.join.items():
            if room.timeline.limited and since is not None:
                limited.append(room_id)
            events.extend((room_id, event.source) for event in room.timeline.events)
        invites: list[tuple[str, str]] = []
        for room_id, invited in response.rooms.invite.items():
            for event in invited.invite_state:
                # nio pops "content" out of an invite's source: read its parsed fields.
                if (
                    isinstance(event, InviteMemberEvent)
                    and event.state_key == self.user_id
                    and event.membership == "invite"
                ):
                    invites.append((room_id, event.sender))
        return SyncBatch(response.next_batch, tuple(events), tuple(invites), tuple(limited))

    def joined_rooms(self) -> tuple[str, ...]:
        return tuple(self._client.rooms)

    def room_name(self, room_id: str) -> str:
        room = self._client.rooms.get(room_id)
        return room.display_name if room is not None else room_id

    def member_name(self, room_id: str, user_id: str) -> str:
        room = self._client.rooms.get(room_id)
        name = room.user_name(user_id) if room is not None else None
        return name or user_id

    def is_encrypted(self, room_id: str) -> bool:
        room = self._client.rooms.get(room_id)
        return bool(room is not None and room.encrypted)

    async def send(self, room_id: str, event_type: str, content: Mapping[str, Any]) -> str:
        response = await self._call(
            f"send {event_type} to {room_id}", self._client.room_send(room_id, event_type, dict(content))
        )
        if not isinstance(response, RoomSendResponse):
            raise OperationError(f"send to {room_id}: unexpected answer {type(response).__name__}")
        return str(response.event_id)

    async def join(self, room: str) -> str:
        response = await self._call(f"join {room}", self._client.join(room))
        if not isinstance(response, JoinResponse):
            raise OperationError(f"join {room}: unexpected answer {type(response).__name__}")
        return str(response.room_id)

    async def get_event(self, room_id: str, event_id: str) -> Mapping[str, Any]:
        response = await self._call(f"get {event_id} in {room_id}", self._client.room_get_event(room_id, event_id))
        if not isinstance(response, RoomGetEventResponse):
            raise OperationError(f"get {event_id}: unexpected answer {type(response).__name__}")
        source: Mapping[str, Any] = response.event.source
        return source

    async def recent(self, room_id: str, limit: int) -> list[Mapping[str, Any]]:
        """The room's last `limit` events, oldest first (from the homeserver, so it covers any gap)."""
        response = await self._call(
            f"history of {room_id}",
            self._client.room_messages(room_id, start=None, direction=MessageDirection.back, limit=limit),
        )
        if not isinstance(response, RoomMessagesResponse):
            raise OperationError(f"history of {room_id}: unexpected answer {type(response).__name__}")
        return [event.source for event in reversed(response.chunk)]


async def wait_or_stop(delay: float, stop: asyncio.Event) -> bool:
    """Sleep `delay` seconds unless `stop` is set first; True when stopped."""
    try:
        await asyncio.wait_for(stop.wait(), timeout=delay)
    except TimeoutError:
        return False
    return True
