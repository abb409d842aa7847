"""The homeserver's answers read as plain data: no I/O, every decision the Matrix link makes.

A ``/sync`` answer gives a `SyncBatch` (`read_batch`), a ``/messages`` page
filling one of its gaps its events and the next page (`read_page`), and updates what the
client knows of its joined rooms (`Rooms.absorb`): their names, members'
display names and encryption, as the client-server spec computes them
("Calculating the display name for a room" and "... for a user"). An error
answer gives one line (`failure`); a rate-limited one, the wait before
sending again (`rate_limit_wait`). Answers come from the network: anything
malformed in them is skipped, never trusted and never a crash.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from agent_smith.errors import OperationError

MEMBER = "m.room.member"
HEROES_MAX = 5  # the spec's servers send up to five heroes; the client-side fallback picks as many
DEFAULT_RETRY_MS = 5000  # a 429 that names no wait
ERROR_TEXT_MAX = 200  # a homeserver's error text in a log line

_Json = Mapping[str, Any]


@dataclass(frozen=True)
class SyncBatch:
    """One /sync answer as plain data: timeline events in order, invites, the next token, and the gaps.

    `gaps`: the rooms whose timeline the filter's limit cut short, each with
    the timeline's ``prev_batch`` (None when the answer has none): the events
    between `since` and it were left out and must be fetched (``/messages``).
    """

    next_batch: str
    events: tuple[tuple[str, Mapping[str, Any]], ...]
    invites: tuple[tuple[str, str], ...]
    gaps: tuple[tuple[str, str | None], ...] = ()
    since: str | None = None


def _object(value: object) -> _Json:
    return value if isinstance(value, Mapping) else {}


def _events(section: object) -> list[_Json]:
    """The events of a ``{"events": [...]}`` section (state, timeline, invite_state)."""
    events = _object(section).get("events")
    return [event for event in events if isinstance(event, Mapping)] if isinstance(events, list) else []


def _text(value: object) -> str | None:
    return value if isinstance(value, str) and value else None


def _count(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else None


def read_batch(answer: _Json, me: str, since: str | None) -> SyncBatch:
    """The joined rooms' new timeline events, the invites addressed to `me`, and the rooms with a gap.

    A gap (``limited``) only counts after a token: the first sync's timeline
    is the recent past, not something missed. Nor does a room `me` joined in
    this answer have one: its timeline starts with the room's past, which is
    left out (`_since_joining`).
    """
    next_batch = answer.get("next_batch")
    if not isinstance(next_batch, str):
        raise OperationError("sync: the answer has no next_batch")
    rooms = _object(answer.get("rooms"))
    events: list[tuple[str, _Json]] = []
    gaps: list[tuple[str, str | None]] = []
    for room_id, joined in _object(rooms.get("join")).items():
        timeline = _object(_object(joined).get("timeline"))
        news, joined_now = _since_joining(_events(timeline), me)
        if timeline.get("limited") is True and since is not None and not joined_now:
            gaps.append((room_id, _text(timeline.get("prev_batch"))))
        events.extend((room_id, event) for event in news)
    invites: list[tuple[str, str]] = []
    for room_id, invited in _object(rooms.get("invite")).items():
        for event in _events(_object(invited).get("invite_state")):
            sender = event.get("sender")
            if (
                event.get("type") == MEMBER
                and event.get("state_key") == me
                and _object(event.get("content")).get("membership") == "invite"
                and isinstance(sender, str)
            ):
                invites.append((room_id, sender))
    return SyncBatch(next_batch, tuple(events), tuple(invites), tuple(gaps), since)


def read_page(answer: _Json, start: str) -> tuple[list[_Json], str | None]:
    """One backwards ``/messages`` page asked `from` `start`: its events (newest first, as sent) and
    where the next page starts, None when this was the last.

    The last page has no ``end`` (the spec), or, from some Synapse versions,
    one equal to `start` (matrix-org/synapse#12102); an empty page ends it too,
    so a homeserver that keeps handing out tokens cannot keep the caller paging.
    """
    chunk = answer.get("chunk")
    events = [event for event in chunk if isinstance(event, Mapping)] if isinstance(chunk, list) else []
    end = _text(answer.get("end"))
    return events, (end if events and end != start else None)


def _since_joining(timeline: list[_Json], me: str) -> tuple[list[_Json], bool]:
    """The events after `me` joined, when the join is among them, and whether it was: a room joined
    since the last answer comes with its recent past, which was said before the agent was there."""
    for index in range(len(timeline) - 1, -1, -1):
        if _joins(timeline[index], me):
            return timeline[index + 1 :], True
    return timeline, False


def _joins(event: _Json, me: str) -> bool:
    """Whether `event` is `me` joining, not a change of a member's name or avatar (also "join")."""
    if event.get("type") != MEMBER or event.get("state_key") != me:
        return False
    before = _object(_object(event.get("unsigned")).get("prev_content")).get("membership")
    return _object(event.get("content")).get("membership") == "join" and before != "join"


@dataclass
class Room:
    """One joined room's state, as far as names and encryption need it."""

    room_id: str
    name: str | None = None
    alias: str | None = None
    encrypted: bool = False
    # Joined and invited members (the spec's set for names): user id → display name, None when unset.
    members: dict[str, str | None] = field(default_factory=dict)
    # The server's room summary, each field kept until an answer changes it (answers send only changes).
    heroes: tuple[str, ...] | None = None
    joined_count: int | None = None
    invited_count: int | None = None

    def apply(self, event: _Json) -> None:
        """Fold in one event: state events change the room, anything else (a message) changes nothing."""
        key = event.get("state_key")
        content = event.get("content")
        if not isinstance(key, str) or not isinstance(content, Mapping):
            return
        kind = event.get("type")
        if kind == MEMBER:
            if content.get("membership") in ("join", "invite"):
                self.members[key] = _text(content.get("displayname"))
            else:
                self.members.pop(key, None)
        elif key != "":
            return  # the room's own state events have an empty state key
        elif kind == "m.room.name":
            self.name = _text(content.get("name"))
        elif kind == "m.room.canonical_alias":
            self.alias = _text(content.get("alias"))
        elif kind == "m.room.encryption":
            # A room cannot be made unencrypted again, so even an emptied event keeps it encrypted.
            self.encrypted = True

    def summarise(self, summary: _Json) -> None:
        heroes = summary.get("m.heroes")
        if isinstance(heroes, list):
            self.heroes = tuple(hero for hero in heroes if isinstance(hero, str))
        joined = _count(summary.get("m.joined_member_count"))
        invited = _count(summary.get("m.invited_member_count"))
        self.joined_count = self.joined_count if joined is None else joined
        self.invited_count = self.invited_count if invited is None else invited

    def member_name(self, user_id: str) -> str | None:
        """The member's display name, followed by the user id when another member shares it; None for a non-member."""
        if user_id not in self.members:
            return None
        shown = self.members[user_id]
        if shown is None:
            return user_id
        if sum(1 for other in self.members.values() if other == shown) > 1:
            return f"{shown} ({user_id})"
        return shown

    def display_name(self, me: str) -> str:
        """The name, else the canonical alias, else one made of the other members' names; the room id for none."""
        if self.name is not None:
            return self.name
        if self.alias is not None:
            return self.alias
        others = sorted(user for user in self.members if user != me)
        # No summary (the server sends one only when members are lazy-loaded): the members are all known.
        heroes = others if self.heroes is None else [hero for hero in self.heroes if hero != me]
        if self.joined_count is not None and self.invited_count is not None:
            count = self.joined_count + self.invited_count - 1  # the summary counts me too
        else:
            count = len(others)
        names = [self.member_name(hero) or hero for hero in heroes[:HEROES_MAX]]
        if count <= 0:
            return f"Empty Room (was {_listing(names, 0)})" if names else "Empty Room"
        if not names:
            return self.room_id
        return _listing(names, max(0, count - len(names)))


def _listing(names: list[str], others: int) -> str:
    if others:
        return f"{', '.join(names)} and {others} other{'s' if others > 1 else ''}"
    if len(names) == 1:
        return names[0]
    return f"{', '.join(names[:-1])} and {names[-1]}"


class Rooms:
    """The rooms `me` is joined to, kept current by folding in every sync answer."""

    def __init__(self, me: str) -> None:
        self.me = me
        self._rooms: dict[str, Room] = {}

    def absorb(self, answer: _Json) -> None:
        """Fold in one sync answer: a room left is forgotten; a joined one takes its state, then its timeline."""
        rooms = _object(answer.get("rooms"))
        for room_id in _object(rooms.get("leave")):
            self._rooms.pop(room_id, None)
        for room_id, joined in _object(rooms.get("join")).items():
            section = _object(joined)
            room = self._rooms.get(room_id)
            if room is None:
                room = self._rooms[room_id] = Room(room_id)
            # The state section is the state before the timeline's first event, so it goes first.
            for event in _events(section.get("state")) + _events(section.get("timeline")):
                room.apply(event)
            room.summarise(_object(section.get("summary")))

    def joined(self) -> tuple[str, ...]:
        return tuple(self._rooms)

    def room_name(self, room_id: str) -> str:
        room = self._rooms.get(room_id)
        return room.display_name(self.me) if room is not None else room_id

    def member_name(self, room_id: str, user_id: str) -> str:
        room = self._rooms.get(room_id)
        name = room.member_name(user_id) if room is not None else None
        return name or user_id

    def is_encrypted(self, room_id: str) -> bool:
        room = self._rooms.get(room_id)
        return room is not None and room.encrypted


def rate_limit_wait(status: int, answer: object, retry_after: str | None) -> float | None:
    """Seconds to wait before sending again when the homeserver rate-limits (429 or M_LIMIT_EXCEEDED), else None.

    The body's ``retry_after_ms`` first (milliseconds), then the Retry-After
    header (its delay-seconds form; spec v1.10 moved the hint there), else 5 s.
    """
    body = _object(answer)
    if status != 429 and body.get("errcode") != "M_LIMIT_EXCEEDED":
        return None
    millis = body.get("retry_after_ms")
    if isinstance(millis, int | float) and not isinstance(millis, bool) and math.isfinite(millis) and millis >= 0:
        return millis / 1000
    seconds = (retry_after or "").strip()
    if seconds.isascii() and seconds.isdigit():
        return float(seconds)
    return DEFAULT_RETRY_MS / 1000


def failure(what: str, status: int, reason: str, answer: object) -> str:
    """One line for an answer that is not 2xx: what failed, the status, and the errcode and error the homeserver gave.

    Without a Matrix error body (a proxy's HTML page, say) the HTTP reason phrase stands in.
    """
    body = _object(answer)
    said = [text[:ERROR_TEXT_MAX] for text in (body.get("errcode"), body.get("error")) if isinstance(text, str)]
    detail = " ".join(" ".join(said or [reason]).split())
    return f"{what}: {status} {detail}".rstrip()
