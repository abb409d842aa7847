"""The team's response rules as pure functions over plain data.

The original kept these as prompt text the model could ignore. Here they
decide, before the model ever sees a message, whether it wakes the agent:

    decide(roster, message, guard, quiet) -> Decision

1. The agent's own messages never wake it.
2. Only senders on the allowlist (operators, teammates, allowed senders) are heard.
3. Text, notice and emote messages are heard: teammates post ``m.notice``.
4. A message wakes the agent when it names the agent (name, display name or
   user id in plain text, a matrix.to pill, or ``m.mentions``; case-insensitive)
   or replies/threads to one of the agent's own messages.
5. An agent's message that does not name it never wakes it (no cross-talk loops).
6. An operator's message that names no other agent wakes it (a direct order).
7. Once an agent-only run in a room reached the limit and the agent was told,
   further agent messages there stay silent until a human speaks.
8. In quiet hours a message that would wake is held for the digest, unless it
   is an incident.

Each decision carries its reason, so the shell can log why a message did
or did not wake the agent.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, time
from enum import StrEnum
from functools import cached_property
from urllib.parse import unquote

from agent_smith.quiet_hours import is_quiet

HEARD_MSGTYPES = frozenset({"m.text", "m.notice", "m.emote"})
DEFAULT_INCIDENT_WORDS = ("incident", "outage", "sev1", "urgent")

# A pill links a Matrix URI: a matrix.to address (the user id, maybe percent-encoded) or a
# ``matrix:u/`` URI (the user id without its "@").
_PILL = re.compile(
    r"""href\s*=\s*["'](?:https://matrix\.to/#/(?P<to>[^"'?]+)|matrix:(?://[^/"']*/)?u/(?P<uri>[^"'?#]+))""",
    re.IGNORECASE,
)
# Characters that continue a word besides letters, digits and combining marks: a name glued to one
# is part of a longer word ("dev_ops", "dev-ops", a hyphen that is no dash, joiners inside a word).
_WORD_JOINERS = frozenset("_-\u2010\u2011\u200c\u200d")


def _word_char(char: str) -> bool:
    """Whether `char` belongs to a word in any script: "Dev" is not named in "Devé", "Devбот" or "Dev\u0301"."""
    return char.isalnum() or char in _WORD_JOINERS or unicodedata.category(char).startswith("M")


def _fold(text: str) -> str:
    """Text for caseless matching (the Unicode standard's canonical caseless match): a name typed
    with a precomposed "é" matches one a client sent decomposed, and "ß" matches "SS".

    Composed (NFC) at the end, not decomposed: decomposing would turn a spacing accent that ends a
    word ("΅") into a combining mark, glued to the name after it.
    """
    return unicodedata.normalize("NFC", unicodedata.normalize("NFD", text).casefold())


def whole_word_in(word: str, folded: str) -> bool:
    """Whether `word` occurs in `folded` (both already `_fold`ed) with no word character on either side.

    Every occurrence is tried: one glued to a word ("devbot") must not hide a later one that stands alone.
    """
    if not word:
        return False
    start = folded.find(word)
    while start >= 0:
        end = start + len(word)
        if (start == 0 or not _word_char(folded[start - 1])) and (end == len(folded) or not _word_char(folded[end])):
            return True
        start = folded.find(word, start + 1)
    return False


@dataclass(frozen=True)
class Member:
    """A crew member as chat sees them: the agent itself, a teammate, or a person."""

    user_id: str
    name: str | None = None
    display_name: str | None = None

    @property
    def localpart(self) -> str:
        return self.user_id.split(":", 1)[0].lstrip("@")

    @cached_property
    def _spellings(self) -> frozenset[str]:
        spellings = {self.user_id, self.localpart}
        spellings.update(s.strip() for s in (self.name, self.display_name) if s and s.strip())
        return frozenset(_fold(s) for s in spellings)

    def named_in(self, text: str) -> bool:
        """Whether `text` names this member as a whole word, in any case and script."""
        folded = _fold(text)
        return any(whole_word_in(spelling, folded) for spelling in self._spellings)


@dataclass(frozen=True)
class Roster:
    """Who is who, from crew.yaml: the agent, its teammates, operators and other allowed people."""

    me: Member
    teammates: tuple[Member, ...] = ()
    operators: frozenset[str] = frozenset()
    allowed: frozenset[str] = frozenset()

    @cached_property
    def agent_ids(self) -> frozenset[str]:
        return frozenset({self.me.user_id, *(t.user_id for t in self.teammates)})

    @cached_property
    def heard(self) -> frozenset[str]:
        return self.operators | self.allowed | frozenset(t.user_id for t in self.teammates)

    def is_agent(self, user_id: str) -> bool:
        return user_id in self.agent_ids

    def is_heard_human(self, user_id: str) -> bool:
        return user_id in self.heard and not self.is_agent(user_id)

    def named(self, message: Message) -> tuple[Member, ...]:
        """Crew agents the message names, the agent itself included."""
        return tuple(m for m in (self.me, *self.teammates) if mentions(m, message))


@dataclass(frozen=True)
class Message:
    """One ``m.room.message`` event, reduced to what the rules look at.

    `body` and `formatted_body` have any reply fallback removed (it quotes the
    replied-to sender's id, which is not a mention). `reply_to_sender` and
    `thread_root_sender` are resolved by the shell, None when unknown or absent.
    `part_of`: the first part's event id, when this is a later part of a message
    split for the event size limit.
    """

    room_id: str
    event_id: str
    sender: str
    msgtype: str
    body: str
    formatted_body: str | None = None
    mention_ids: tuple[str, ...] = ()
    thread_id: str | None = None
    reply_to: str | None = None
    reply_to_sender: str | None = None
    thread_root_sender: str | None = None
    is_edit: bool = False
    part_of: str | None = None


def mentions(member: Member, message: Message) -> bool:
    """Does the message name `member`: plain text, a matrix.to pill, or ``m.mentions``?"""
    if member.user_id in message.mention_ids:
        return True
    if member.named_in(message.body):
        return True
    if message.formatted_body:
        for pill in _PILL.finditer(message.formatted_body):
            target = unquote(pill["to"]) if pill["to"] else "@" + unquote(pill["uri"])
            if target.casefold() == member.user_id.casefold():
                return True
    return False


class Verdict(StrEnum):
    WAKE = "wake"
    HOLD = "hold"
    IGNORE = "ignore"


class Reason(StrEnum):
    MENTIONED = "names the agent"
    REPLY_TO_ME = "replies or threads to the agent's own message"
    OPERATOR = "an operator's message naming no other agent"
    OWN = "the agent's own message"
    EDIT = "an edit of an earlier message"
    NOT_ALLOWED = "sender is not on the allowlist"
    NOT_HEARD_TYPE = "not a text, notice or emote message"
    AGENT_DID_NOT_NAME = "another agent's message that does not name this agent"
    NOT_ADDRESSED = "not addressed to this agent"
    LOOP_GUARD = "the agent-only run in this room is over the limit and the agent was told"
    QUIET_HOURS = "quiet hours: held for the digest"


@dataclass(frozen=True)
class Decision:
    verdict: Verdict
    reason: Reason
    incident: bool = False

    @property
    def wakes(self) -> bool:
        return self.verdict is Verdict.WAKE


@dataclass(frozen=True)
class LoopGuard:
    """One room's run of agent messages since the last human message."""

    run: int = 0
    told: bool = False

    def blocks(self, limit: int) -> bool:
        """True when one more agent message would exceed `limit` in a row."""
        return self.run >= limit


def observe(guard: LoopGuard, roster: Roster, sender: str, *, part: bool = False) -> LoopGuard:
    """The guard after a message from `sender`: agents extend the run, heard humans reset it.

    Strangers neither count nor reset, so an unknown bot cannot lift the guard.
    A later `part` of an agent's split message was counted with its first.
    """
    if roster.is_agent(sender):
        if part:
            return guard
        return replace(guard, run=guard.run + 1)
    if roster.is_heard_human(sender):
        return LoopGuard()
    return guard


@dataclass(frozen=True)
class QuietHours:
    """A daily window in the agent's local time; `start == end` is an empty window."""

    start: time
    end: time
    timezone: str = "UTC"
    incident_words: tuple[str, ...] = DEFAULT_INCIDENT_WORDS

    def contains(self, now: datetime) -> bool:
        """Is the aware datetime `now` inside the window (start inclusive, end exclusive)?"""
        return is_quiet(self.start, self.end, self.timezone, now)


def is_incident(text: str, words: Iterable[str]) -> bool:
    """Does the text carry one of the incident words, as a whole word, case-insensitively?"""
    folded = _fold(text)
    return any(word.strip() and whole_word_in(_fold(word.strip()), folded) for word in words)


def decide(
    roster: Roster,
    message: Message,
    guard: LoopGuard = LoopGuard(),
    *,
    limit: int = 3,
    quiet: QuietHours | None = None,
    now: datetime | None = None,
) -> Decision:
    """Should `message` wake the agent? `guard` is the room's state before this message."""
    me = roster.me.user_id
    if message.sender == me:
        return Decision(Verdict.IGNORE, Reason.OWN)
    if message.sender not in roster.heard:
        return Decision(Verdict.IGNORE, Reason.NOT_ALLOWED)
    if message.msgtype not in HEARD_MSGTYPES:
        return Decision(Verdict.IGNORE, Reason.NOT_HEARD_TYPE)
    if message.is_edit:
        return Decision(Verdict.IGNORE, Reason.EDIT)
    reason = _addressed(roster, message)
    if reason is None:
        if roster.is_agent(message.sender):
            return Decision(Verdict.IGNORE, Reason.AGENT_DID_NOT_NAME)
        return Decision(Verdict.IGNORE, Reason.NOT_ADDRESSED)
    if roster.is_agent(message.sender) and guard.blocks(limit) and guard.told:
        return Decision(Verdict.IGNORE, Reason.LOOP_GUARD)
    incident = quiet is not None and is_incident(message.body, quiet.incident_words)
    if quiet is not None and now is not None and quiet.contains(now) and not incident:
        return Decision(Verdict.HOLD, Reason.QUIET_HOURS)
    return Decision(Verdict.WAKE, reason, incident=incident)


def _addressed(roster: Roster, message: Message) -> Reason | None:
    me = roster.me.user_id
    if mentions(roster.me, message):
        return Reason.MENTIONED
    if roster.is_agent(message.sender):
        # An agent must name this agent; replying to it is not enough (rule 5).
        return None
    if me in (message.reply_to_sender, message.thread_root_sender):
        return Reason.REPLY_TO_ME
    if message.sender in roster.operators and not _aimed_at_teammates(roster, message):
        return Reason.OPERATOR
    return None


def _aimed_at_teammates(roster: Roster, message: Message) -> bool:
    """Whether a message names another agent, or answers (replies or threads to) one of its messages."""
    answered = (message.reply_to_sender, message.thread_root_sender)
    return any(mentions(t, message) or t.user_id in answered for t in roster.teammates)


def roster_of(me: Member, teammates: Sequence[Member], operators: Iterable[str], allowed: Iterable[str] = ()) -> Roster:
    """A roster with teammates sharing the agent's id dropped (a crew.yaml slip, not a teammate)."""
    return Roster(
        me=me,
        teammates=tuple(t for t in teammates if t.user_id != me.user_id),
        operators=frozenset(operators),
        allowed=frozenset(allowed),
    )


@dataclass(frozen=True)
class Held:
    """A message held in quiet hours, for the digest."""

    room_id: str
    room_name: str
    sender: str
    sender_name: str
    event_id: str
    body: str


def render_digest(items: Sequence[Held], window: QuietHours | None) -> str:
    """The one message the agent gets when quiet hours end: everything held, oldest first.

    `window` is None when the quiet hours were taken out of the configuration while they ran.
    """
    over = (
        f"Quiet hours ({window.start:%H:%M}-{window.end:%H:%M} {window.timezone}) are over."
        if window is not None
        else "Quiet hours were turned off."
    )
    lines = [f"{over} {len(items)} message(s) addressed to you arrived meanwhile:"]
    for item in items:
        text = " ".join(item.body.split())
        lines.append(f"- [{item.room_name} {item.room_id}] {item.sender_name} ({item.sender}), {item.event_id}: {text}")
    return "\n".join(lines)
