"""What the agent sends, as Matrix event content: pure functions, no I/O.

Markdown becomes Matrix HTML (``formatted_body``) beside the markdown itself
as the plain ``body``; raw HTML in the agent's text is escaped, never passed
through. Messages are ``m.notice`` (the bot convention: clients and other
bots do not answer notices automatically). Text that would make an event
over Matrix's size limit is split at blank lines, then lines, then between
user-perceived characters, into at most `MAX_PARTS` events; a code fence cut
in two is closed and reopened so each part renders on its own.
"""

from __future__ import annotations

import json
import re
import unicodedata
from bisect import bisect_right
from collections.abc import Callable, Iterable, Iterator
from itertools import accumulate, islice
from typing import Any

from markdown_it import MarkdownIt

HTML_FORMAT = "org.matrix.custom.html"
NOTICE = "m.notice"
# Matrix caps a whole event (PDU) at 65,536 bytes of canonical JSON; the envelope
# (ids, hashes, signatures, auth and prev events) takes a few hundred bytes to a few KB.
CONTENT_BUDGET = 60_000
# More parts than this flood the room and the homeserver's rate limit, and nobody reads them
# in a chat: 20 parts hold about a megabyte of plain text. Longer output belongs in a file.
MAX_PARTS = 20
# A part is guessed from the bytes per character the last render measured; aiming a little
# under the budget makes the guess fit at the first render almost always.
FILL = 0.97
# Characters rendered to guess the first part of a long text.
SAMPLE = 2_000
ZWJ = "\u200d"
# On every part of a split message after the first: the first part's event id. Readers count the
# parts as the one message they are (the loop guard), as the sender does.
PART_OF = "agent_smith.part_of"

_FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})")
_markdown = MarkdownIt("commonmark", {"html": False, "breaks": True}).enable(["table", "strikethrough"])


class TooLong(ValueError):
    """Text that cannot be sent as one reply; the message says why and what to do instead."""


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
    latest: str | None = None,
    mention_ids: Iterable[str] = (),
    msgtype: str = NOTICE,
) -> dict[str, Any]:
    """One message: markdown as ``body``, its HTML as ``formatted_body``, relations per the spec.

    A thread reply carries ``rel_type: m.thread`` with the root, and
    ``m.in_reply_to`` for clients without threads (``is_falling_back`` says
    whether that reply target is only a fallback). A message in a thread that
    answers no message in particular falls back, as the spec says, to the
    latest message of the thread known (`latest`; the root when it has none
    yet), so an older client shows it after what it follows. ``m.mentions``
    lists who is named on purpose, so mention rules never depend on parsing prose.
    """
    return _content(
        text,
        to_html(text),
        reply_to=reply_to,
        thread_id=thread_id,
        latest=latest,
        mention_ids=mention_ids,
        msgtype=msgtype,
    )


def _content(
    text: str,
    html: str,
    *,
    reply_to: str | None = None,
    thread_id: str | None = None,
    latest: str | None = None,
    mention_ids: Iterable[str] = (),
    msgtype: str = NOTICE,
) -> dict[str, Any]:
    content: dict[str, Any] = {
        "msgtype": msgtype,
        "body": text,
        "format": HTML_FORMAT,
        "formatted_body": html,
        "m.mentions": {"user_ids": sorted(set(mention_ids))},
    }
    if thread_id is not None:
        content["m.relates_to"] = {
            "rel_type": "m.thread",
            "event_id": thread_id,
            "is_falling_back": reply_to is None,
            "m.in_reply_to": {"event_id": reply_to or latest or thread_id},
        }
    elif reply_to is not None:
        content["m.relates_to"] = {"m.in_reply_to": {"event_id": reply_to}}
    return content


def edit_content(
    event_id: str,
    text: str,
    *,
    mention_ids: Iterable[str] = (),
    mentioned_before: Iterable[str] = (),
    msgtype: str = NOTICE,
) -> dict[str, Any]:
    """A replacement (``m.replace``) of `event_id`; the fallback body is marked with ``*``.

    Per the spec, the new content lists everyone it mentions (`mention_ids`): it
    replaces the old content whole. The edit itself lists only those the old one
    did not (`mentioned_before`), so an edit notifies nobody a second time.
    """
    mentioned = set(mention_ids)
    new = {
        "msgtype": msgtype,
        "body": text,
        "format": HTML_FORMAT,
        "formatted_body": to_html(text),
        "m.mentions": {"user_ids": sorted(mentioned)},
    }
    return {
        "msgtype": msgtype,
        "body": f"* {text}",
        "format": HTML_FORMAT,
        "formatted_body": f"* {new['formatted_body']}",
        "m.mentions": {"user_ids": sorted(mentioned - set(mentioned_before))},
        "m.new_content": new,
        "m.relates_to": {"rel_type": "m.replace", "event_id": event_id},
    }


def reaction_content(event_id: str, key: str) -> dict[str, Any]:
    return {"m.relates_to": {"rel_type": "m.annotation", "event_id": event_id, "key": key}}


def split_text(text: str, size: Callable[[str], int], budget: int) -> Iterator[str]:
    """`text` in parts of at most `budget` by `size`, cut at blank lines, then lines, then characters.

    `size` renders, the costly step, so a part is guessed from the bytes per
    character the last render measured and rendered once to confirm, shrunk
    only on a miss. The cut is the last blank line in the second half of the
    guess, else the last line end there, else the last place between two
    user-perceived characters: a nicer cut costs at most half a part.
    A part that ends inside a code fence gets the fence closed, and the next
    part reopens it with the same opening line, so every part renders alone.
    """
    lines = text.splitlines(keepends=True)
    starts = [0, *accumulate(len(line) for line in lines)]
    fences: list[str | None] = [None]  # fences[k]: the fence open before line k
    for line in lines:
        fences.append(_fence_after(fences[-1], line))
    line_cuts = starts[1:-1]
    # A blank line inside a fence is code, not a paragraph break.
    blank_cuts = [starts[k + 1] for k, line in enumerate(lines[:-1]) if not line.strip() and fences[k + 1] is None]

    def part(start: int, end: int) -> str:
        # A cut inside a line keeps the fence open before that line on both sides.
        return _wrap(text[start:end], fences[bisect_right(starts, start) - 1], fences[bisect_right(starts, end) - 1])

    overhead = size("")
    room = max(1, budget - overhead)
    start = 0
    guess = room  # the longest text that could fit: a character takes at least a byte, in the body
    if len(text) > room:
        # Surely more than one part: a sample guesses the first, cheaper than a miss on a whole part.
        sample = min(len(text), SAMPLE)
        guess = max(1, int(room * FILL * sample / (size(part(0, sample)) - overhead)))
    while True:
        while True:
            end = len(text) if guess >= len(text) else _cut(text, start, guess, blank_cuts, line_cuts)
            candidate = part(start, end)
            measured = size(candidate)
            per_char = (measured - overhead) / max(end - start, 1)
            if measured <= budget:
                break
            if end - start == 1:
                raise TooLong(
                    f"the text cannot be split: at character {start:,} even one character is over the size "
                    "limit with its code fence reopened; shorten the fence's opening line"
                )
            guess = start + max(1, min(int(room * FILL / per_char), end - start - 1))
        if candidate.strip() or end - start == len(text):
            yield candidate
        start = end
        if start >= len(text):
            return
        guess = start + max(1, int(room * FILL / per_char))


def _wrap(body: str, opener: str | None, closer: str | None) -> str:
    if opener is not None:
        body = opener + "\n" + body
    if closer is not None:
        body = body + ("" if body.endswith("\n") else "\n") + _fence_run(closer)
    return body


def _cut(text: str, start: int, guess: int, blank_cuts: list[int], line_cuts: list[int]) -> int:
    """Where a part from `start` that should end by `guess` ends (after `start`, at most `guess`)."""
    half = start + (guess - start) // 2
    for cuts in (blank_cuts, line_cuts):
        k = bisect_right(cuts, guess) - 1
        if k >= 0 and cuts[k] > half:
            return cuts[k]
    return grapheme_cut(text, start, guess)


def grapheme_cut(text: str, start: int, end: int) -> int:
    """The last place in (`start`, `end`] between two user-perceived characters; `end` if none is.

    A cut never leaves a joiner, mark or modifier without its base, nor half a
    flag, and `start` is taken as such a place (`start < end < len(text)`). One
    character longer than `end - start` has to be cut somewhere: at `end`.
    """
    for cut in range(end, start, -1):
        before, after = text[cut - 1], text[cut]
        if before == ZWJ or _extends(after):
            continue
        if _regional(before) and _regional(after):
            first = cut - 1
            while first > start and _regional(text[first - 1]):
                first -= 1
            if (cut - first) % 2:
                continue
        return cut
    return end


def _extends(char: str) -> bool:
    """Whether `char` belongs to the character before it (variation selectors are marks, Mn)."""
    code = ord(char)
    return (
        char == ZWJ
        or unicodedata.category(char) in ("Mn", "Me", "Mc")
        or 0x1F3FB <= code <= 0x1F3FF  # emoji skin-tone modifiers
        or 0xE0020 <= code <= 0xE007F  # tags, as in subdivision flags
    )


def _regional(char: str) -> bool:
    """Whether `char` is a regional indicator: two of them make a flag."""
    return 0x1F1E6 <= ord(char) <= 0x1F1FF


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
    latest: str | None = None,
    mention_ids: Iterable[str] = (),
    budget: int = CONTENT_BUDGET,
    max_parts: int = MAX_PARTS,
) -> list[dict[str, Any]]:
    """The events one reply becomes: one, or several when it is over the size limit.

    Only the first part is the reply; every part stays in the thread (a later
    part's fallback target is set by `later_part`, once the part before it has
    an event id). Text that needs more than `max_parts` parts raises `TooLong`.
    """
    mentioned = tuple(mention_ids)
    # A part takes an empty message plus its share of the text, JSON-escaped, as the body, and
    # more once rendered: a floor that refuses a huge text before rendering any of it.
    empty = content_size(message_content("", thread_id=thread_id, mention_ids=mentioned))
    body = content_size({"body": text}) - content_size({"body": ""})
    if body > max_parts * (budget - empty):
        raise _too_long(text, max_parts)
    rendered: dict[str, str] = {}

    def size(part: str) -> int:
        # With the first part's relations: a later part's name another event id (and flip a flag),
        # tens of bytes at most, which the budget's room for the envelope absorbs.
        html = rendered[part] = to_html(part)
        return content_size(_content(part, html, reply_to=reply_to, thread_id=thread_id, mention_ids=mentioned))

    parts = list(islice(split_text(text, size, budget), max_parts + 1))
    if len(parts) > max_parts:
        raise _too_long(text, max_parts)
    return [
        _content(
            part,
            rendered[part],
            reply_to=reply_to if n == 0 else None,
            thread_id=thread_id,
            latest=latest,
            mention_ids=mentioned,
        )
        for n, part in enumerate(parts)
    ]


def later_part(content: dict[str, Any], first_event_id: str, previous_event_id: str) -> dict[str, Any]:
    """`content`, a part after the first of a split message, marked as a part of the first.

    In a thread its fallback target is the part before it: the thread's latest message by then.
    """
    marked = {**content, PART_OF: first_event_id}
    relates = content.get("m.relates_to")
    if isinstance(relates, dict) and relates.get("is_falling_back") is True:
        marked["m.relates_to"] = {**relates, "m.in_reply_to": {"event_id": previous_event_id}}
    return marked


def _too_long(text: str, max_parts: int) -> TooLong:
    return TooLong(
        f"the text is {len(text):,} characters, more than {max_parts} messages can hold; put long output "
        "in a file or a pull request and reply with a short summary and where to find it"
    )
