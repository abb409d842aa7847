"""What the history tool shows: each message of a room once, as it reads now. Pure, over raw events.

An edit (``m.replace``) is no message of its own: its original shows its
latest text, marked edited. The homeserver bundles an original's latest edit
(``unsigned["m.relations"]["m.replace"]``, spec v1.7 on) even when the edit
itself is not among the events fetched; an edit among them stands in for a
homeserver that bundles none. Only the original sender's edits count (the
spec: others' are ignored). A removed (redacted) message shows as removed.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from agent_smith.chat.events import relation, without_reply_fallback
from agent_smith.chat.render import HTML_FORMAT


@dataclass(frozen=True)
class Shown:
    """One message as history shows it. `body` is None when it was removed."""

    event_id: str
    sender: str
    stamp: int | None
    body: str | None
    notice: bool = False
    thread_id: str | None = None
    reply_to: str | None = None
    edited: bool = False


def _content(event: Mapping[str, Any]) -> Mapping[str, Any]:
    content = event.get("content")
    return content if isinstance(content, Mapping) else {}


def is_edit(event: Mapping[str, Any]) -> bool:
    return relation(_content(event))[2]


def _edit_target(event: Mapping[str, Any]) -> str | None:
    relates = _content(event).get("m.relates_to")
    target = relates.get("event_id") if isinstance(relates, Mapping) else None
    return target if isinstance(target, str) else None


def _new_content(edit: object, sender: object) -> Mapping[str, Any] | None:
    """The replacement content an edit carries, when it is a valid edit by `sender`."""
    if not isinstance(edit, Mapping) or edit.get("sender") != sender:
        return None
    new = _content(edit).get("m.new_content")
    return new if isinstance(new, Mapping) and isinstance(new.get("body"), str) else None


def _removed(event: Mapping[str, Any]) -> bool:
    unsigned = event.get("unsigned")
    return (isinstance(unsigned, Mapping) and "redacted_because" in unsigned) or not _content(event)


def shown(events: Sequence[Mapping[str, Any]]) -> list[Shown]:
    """The messages among `events` (oldest first), each once, edits applied; edits themselves left out."""
    edits: dict[str, Mapping[str, Any]] = {}
    for event in events:
        target = _edit_target(event) if is_edit(event) else None
        if target is not None:
            edits[target] = event  # oldest first: the last one is the latest
    found: list[Shown] = []
    for event in events:
        event_id, sender = event.get("event_id"), event.get("sender")
        if not isinstance(event_id, str) or not isinstance(sender, str) or is_edit(event):
            continue
        raw_stamp = event.get("origin_server_ts")
        stamp = raw_stamp if isinstance(raw_stamp, int) else None
        if _removed(event):
            found.append(Shown(event_id, sender, stamp, None))
            continue
        content = _content(event)
        thread_id, reply_to, _ = relation(content)
        unsigned = event.get("unsigned")
        relations = unsigned.get("m.relations") if isinstance(unsigned, Mapping) else None
        bundled = relations.get("m.replace") if isinstance(relations, Mapping) else None
        new = _new_content(bundled, sender) or _new_content(edits.get(event_id), sender)
        if new is not None:
            # The replacement has no reply fallback to strip; the original's relations still hold.
            body, notice = str(new["body"]), new.get("msgtype") == "m.notice"
        else:
            body = str(content.get("body", ""))
            if reply_to is not None:
                formatted = content.get("formatted_body") if content.get("format") == HTML_FORMAT else None
                body = without_reply_fallback(body, formatted if isinstance(formatted, str) else None)[0]
            notice = content.get("msgtype") == "m.notice"
        found.append(Shown(event_id, sender, stamp, body, notice, thread_id, reply_to, edited=new is not None))
    return found
