"""What the agent sends, as Matrix event content: pure functions, no I/O.

Markdown becomes Matrix HTML (``formatted_body``) beside the markdown itself
as the plain ``body``; raw HTML in the agent's text is escaped, never passed
through. Messages are ``m.notice`` (the bot convention: clients and other
bots do not answer notices automatically). Text that would make an event
over Matrix's size limit is split at blank lines, then lines, then
characters, and a code fence cut in two is closed and reopened so each part
renders on its own.
"""

from __future__ import annotations

import json
import re
from bisect import bisect_right
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from itertools import accumulate
from typing import Any

from markdown_it import MarkdownIt

HTML_FORMAT = "org.matrix.custom.html"
NOTICE = "m.notice"
# Matrix caps a whole event (PDU) at 65,536 bytes of canonical JSON; the envelope
# (ids, hashes, signatures, auth and prev events) takes a few hundred bytes to a few KB.
CONTENT_BUDGET = 60_000
# Bytes one byte of markdown can grow to in body + formatted_body, JSON-escaped: each ">" of
# ">>>>x" opens and closes a blockquote (about 30 bytes); plus a constant for the outermost
# block's tags. An upper bound, property-tested; only used to skip rendering small parts.
WORST_EXPANSION = 32
BLOCK_SLACK = 64

_FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})")
_markdown = MarkdownIt("commonmark", {"html": False, "breaks": True}).enable(["table", "strikethrough"])


def to_html(text: str) -> str:
    html: str = _markdown.render(text)
    return html.rstrip("\n")


def content_size(content: dict[str, Any]) -> int:
    """Bytes the content takes in the event's canonical JSON (UTF-8, no spaces)."""
    return len(json.dumps(content, ensure_ascii=False, separators=(",", ":")).encode())


def message_content(
    text: str,
    *,
    reply_to: str | None = None,
    thread_id: str | None = None,
    mention_ids: Iterable[str] = (),
    msgtype: str = NOTICE,
) -> dict[str, Any]:
    """One message: markdown as ``body``, its HTML as ``formatted_body``, relations per the spec.

    A thread reply carries ``rel_type: m.thread`` with the root, and
    ``m.in_reply_to`` for clients without threads (``is_falling_back`` says
    whether that reply target is only a fallback). ``m.mentions`` lists who is
    named on purpose, so mention rules never depend on parsing prose.
    """
    content: dict[str, Any] = {
        "msgtype": msgtype,
        "body": text,
        "format": HTML_FORMAT,
        "formatted_body": to_html(text),
        "m.mentions": {"user_ids": sorted(set(mention_ids))},
    }
    if thread_id is not None:
        content["m.relates_to"] = {
            "rel_type": "m.thread",
            "event_id": thread_id,
            "is_falling_back": reply_to is None,
            "m.in_reply_to": {"event_id": reply_to or thread_id},
        }
    elif reply_to is not None:
        content["m.relates_to"] = {"m.in_reply_to": {"event_id": reply_to}}
    return content


def edit_content(event_id: str, text: str, *, msgtype: str = NOTICE) -> dict[str, Any]:
    """A replacement (``m.replace``) of `event_id`; the fallback body is marked with ``*``."""
    new = {"msgtype": msgtype, "body": text, "format": HTML_FORMAT, "formatted_body": to_html(text)}
    return {
        "msgtype": msgtype,
        "body": f"* {text}",
        "format": HTML_FORMAT,
        "formatted_body": f"* {new['formatted_body']}",
        "m.new_content": new,
        "m.relates_to": {"rel_type": "m.replace", "event_id": event_id},
    }


def reaction_content(event_id: str, key: str) -> dict[str, Any]:
    return {"m.relates_to": {"rel_type": "m.annotation", "event_id": event_id, "key": key}}


def split_text(text: str, fits: Callable[[str], bool], max_chars: int) -> list[str]:
    """`text` in parts that each satisfy `fits`, cut at blank lines, then lines, then characters.

    A part that ends inside a code fence gets the fence closed, and the next
    part reopens it with the same opening line, so every part renders alone.
    No part longer than `max_chars` can fit, which bounds the search.
    """
    if fits(text):
        return [text]
    atoms = _atoms(text, fits, max_chars)
    ends = list(accumulate(len(a.text) for a in atoms))
    parts: list[str] = []
    start = 0
    while start < len(atoms):
        # Every atom fits alone; find the longest run from `start` that fits (rendering is
        # the costly step, so search instead of adding atoms one at a time).
        before = ends[start - 1] if start else 0
        low, high = start + 1, max(start + 1, bisect_right(ends, before + max_chars))
        while low < high:
            mid = (low + high + 1) // 2
            if fits(_wrap(atoms[start:mid])):
                low = mid
            else:
                high = mid - 1
        parts.append(_wrap(atoms[start:low]))
        start = low
    return [part for part in parts if part.strip()]


@dataclass(frozen=True)
class _Atom:
    """A piece of the text and the code fence open before and after it (its opening line)."""

    text: str
    fence_before: str | None
    fence_after: str | None


def _wrap(atoms: list[_Atom]) -> str:
    body = "".join(a.text for a in atoms)
    opener, closer = atoms[0].fence_before, atoms[-1].fence_after
    if opener is not None:
        body = opener + "\n" + body
    if closer is not None:
        body = body + ("" if body.endswith("\n") else "\n") + _fence_run(closer)
    return body


def _atoms(text: str, fits: Callable[[str], bool], max_chars: int) -> list[_Atom]:
    """Paragraphs where one fits a part, else their lines, else pieces of a line."""
    lines: list[_Atom] = []
    fence: str | None = None
    for raw in text.splitlines(keepends=True):
        after = _fence_after(fence, raw)
        lines.append(_Atom(raw, fence, after))
        fence = after
    paragraphs: list[list[_Atom]] = [[]]
    for line in lines:
        paragraphs[-1].append(line)
        if not line.text.strip() and line.fence_after is None:
            paragraphs.append([])
    atoms: list[_Atom] = []
    for paragraph in filter(None, paragraphs):
        joined = _Atom("".join(a.text for a in paragraph), paragraph[0].fence_before, paragraph[-1].fence_after)
        if len(joined.text) <= max_chars and fits(_wrap([joined])):
            atoms.append(joined)
            continue
        for line in paragraph:
            fits_alone = len(line.text) <= max_chars and fits(_wrap([line]))
            atoms.extend([line] if fits_alone else _pieces(line, fits, max_chars))
    return atoms


def _pieces(line: _Atom, fits: Callable[[str], bool], max_chars: int) -> list[_Atom]:
    """A line too long for one part, cut at the longest prefixes that fit (binary search)."""
    inside = line.fence_before if line.fence_before is not None else line.fence_after
    pieces: list[_Atom] = []
    rest = line.text
    while rest:
        low, high = 1, min(len(rest), max_chars)
        while low < high:
            mid = (low + high + 1) // 2
            if fits(_wrap([_Atom(rest[:mid], inside, inside)])):
                low = mid
            else:
                high = mid - 1
        pieces.append(_Atom(rest[:low], inside, inside))
        rest = rest[low:]
    return pieces


def _fence_after(fence: str | None, line: str) -> str | None:
    """The open fence (its opening line) after `line`; None outside a fence."""
    match = _FENCE.match(line)
    if match is None:
        return fence
    if fence is None:
        return line.rstrip("\r\n")
    run = match.group(1)
    opener = _fence_run(fence)
    closes = run[0] == opener[0] and len(run) >= len(opener) and not line.strip().strip(run[0])
    return None if closes else fence


def _fence_run(fence: str) -> str:
    match = _FENCE.match(fence)
    return match.group(1) if match else "```"


def message_contents(
    text: str,
    *,
    reply_to: str | None = None,
    thread_id: str | None = None,
    mention_ids: Iterable[str] = (),
    budget: int = CONTENT_BUDGET,
) -> list[dict[str, Any]]:
    """The events one reply becomes: one, or several when it is over the size limit.

    Only the first part is the reply; every part stays in the thread.
    """
    mentioned = tuple(mention_ids)
    overhead = content_size(message_content("", reply_to=reply_to, thread_id=thread_id, mention_ids=mentioned))

    def fits(part: str) -> bool:
        # Rendering is the costly step: skip it when even the worst case is small enough.
        if overhead + BLOCK_SLACK + WORST_EXPANSION * len(part.encode()) <= budget:
            return True
        return (
            content_size(message_content(part, reply_to=reply_to, thread_id=thread_id, mention_ids=mentioned)) <= budget
        )

    parts = split_text(text, fits, budget)
    return [
        message_content(part, reply_to=reply_to if n == 0 else None, thread_id=thread_id, mention_ids=mentioned)
        for n, part in enumerate(parts)
    ]
