"""Raw Matrix events (the JSON a homeserver sends) reduced to the plain data the rules read."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from agent_smith.chat.render import PART_OF
from agent_smith.chat.rules import Message

ROOM_MESSAGE = "m.room.message"
ENCRYPTED = "m.room.encrypted"
REDACTION = "m.room.redaction"
TOMBSTONE = "m.room.tombstone"
_MX_REPLY = re.compile(r"<mx-reply>.*?</mx-reply>", re.DOTALL | re.IGNORECASE)
# The fallback's first line quotes the replied-to sender: "> <@alice:example.org> …", "> * <…> …" for an emote.
_FALLBACK_START = re.compile(r"> (?:\* )?<[^<>\n]+>")


def without_reply_fallback(body: str, formatted: str | None) -> tuple[str, str | None]:
    """A reply's body and formatted body without the quote of the replied-to message older clients put first.

    Spec v1.13 dropped that fallback: a reply's body may open with a quote of the
    sender's own. So the body loses its leading quote only when it is the fallback:
    the formatted body says so with its ``<mx-reply>``, a plain body by the
    fallback's first line.
    """
    if formatted is None:
        fallback = _FALLBACK_START.match(body) is not None
    else:
        fallback = _MX_REPLY.search(formatted) is not None
        formatted = _MX_REPLY.sub("", formatted)
    return (strip_reply_fallback(body) if fallback else body), formatted


def strip_reply_fallback(body: str) -> str:
    """The body without its leading quoted block (and the blank line after it)."""
    lines = body.split("\n")
    if not lines or not lines[0].startswith(">"):
        return body
    index = 0
    while index < len(lines) and lines[index].startswith(">"):
        index += 1
    if index < len(lines) and lines[index] == "":
        index += 1
    return "\n".join(lines[index:])


def relation(content: Mapping[str, Any]) -> tuple[str | None, str | None, bool]:
    """(thread root, replied-to event, is an edit) from ``m.relates_to``."""
    relates = content.get("m.relates_to")
    if not isinstance(relates, Mapping):
        return None, None, False
    in_reply = relates.get("m.in_reply_to")
    reply_to = in_reply.get("event_id") if isinstance(in_reply, Mapping) else None
    rel_type = relates.get("rel_type")
    target = relates.get("event_id")
    thread_id = target if rel_type == "m.thread" and isinstance(target, str) else None
    if thread_id is not None and relates.get("is_falling_back") is True:
        # The reply target is only a fallback for clients without threads, not a real reply.
        reply_to = None
    return thread_id, reply_to if isinstance(reply_to, str) else None, rel_type == "m.replace"


def redacted(event: Mapping[str, Any]) -> str | None:
    """The event an ``m.room.redaction`` removes: ``redacts`` at the top, or in its content from room
    version 11 on; None for anything else."""
    if event.get("type") != REDACTION:
        return None
    content = event.get("content")
    for where in (content if isinstance(content, Mapping) else {}, event):
        target = where.get("redacts")
        if isinstance(target, str):
            return target
    return None


def replaced_by(event: Mapping[str, Any]) -> str | None:
    """The room an ``m.room.tombstone`` says replaces its room (an upgrade); None for anything else."""
    if event.get("type") != TOMBSTONE or event.get("state_key") != "":
        return None
    content = event.get("content")
    successor = content.get("replacement_room") if isinstance(content, Mapping) else None
    return successor if isinstance(successor, str) and successor else None


def mentioned_ids(content: Mapping[str, Any]) -> list[str]:
    """The user ids the content's ``m.mentions`` lists (anything else in it skipped)."""
    mentions = content.get("m.mentions")
    user_ids = mentions.get("user_ids") if isinstance(mentions, Mapping) else None
    return [u for u in user_ids if isinstance(u, str)] if isinstance(user_ids, list) else []


def parse_message(room_id: str, event: Mapping[str, Any]) -> Message | None:
    """A `Message` from an ``m.room.message`` event; None for anything else or a malformed one."""
    if event.get("type") != ROOM_MESSAGE:
        return None
    content = event.get("content")
    sender = event.get("sender")
    event_id = event.get("event_id")
    if not isinstance(content, Mapping) or not isinstance(sender, str) or not isinstance(event_id, str):
        return None
    body = content.get("body")
    msgtype = content.get("msgtype")
    if not isinstance(body, str) or not isinstance(msgtype, str):
        return None
    thread_id, reply_to, is_edit = relation(content)
    formatted = content.get("formatted_body") if content.get("format") == "org.matrix.custom.html" else None
    formatted = formatted if isinstance(formatted, str) else None
    if reply_to is not None:
        body, formatted = without_reply_fallback(body, formatted)
    mention_ids = tuple(mentioned_ids(content))
    part_of = content.get(PART_OF)
    return Message(
        room_id=room_id,
        event_id=event_id,
        sender=sender,
        msgtype=msgtype,
        body=body,
        formatted_body=formatted,
        mention_ids=mention_ids,
        thread_id=thread_id,
        reply_to=reply_to,
        is_edit=is_edit,
        part_of=part_of if isinstance(part_of, str) else None,
    )
