"""Raw Matrix events reduced to the rules' plain data."""

from __future__ import annotations

from typing import Any

import pytest

from agent_smith.chat.events import (
    parse_message,
    redacted,
    replaced_by,
    strip_reply_fallback,
    without_reply_fallback,
)


def event(content: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"type": "m.room.message", "event_id": "$e", "sender": "@alice:hs", "content": content, **extra}


def test_a_plain_message() -> None:
    message = parse_message("!r:hs", event({"msgtype": "m.text", "body": "hi devbot"}))
    assert message is not None
    assert (message.room_id, message.event_id, message.sender, message.msgtype, message.body) == (
        "!r:hs",
        "$e",
        "@alice:hs",
        "m.text",
        "hi devbot",
    )
    assert message.thread_id is None
    assert message.reply_to is None


def test_a_reply_loses_its_quoted_fallback() -> None:
    content = {
        "msgtype": "m.text",
        "body": "> <@reviewbot:hs> earlier words\n> more\n\nthe answer",
        "format": "org.matrix.custom.html",
        "formatted_body": '<mx-reply><a href="https://matrix.to/#/@reviewbot:hs">x</a></mx-reply>the answer',
        "m.relates_to": {"m.in_reply_to": {"event_id": "$q"}},
        "m.mentions": {"user_ids": ["@devbot:hs", 7]},
    }
    message = parse_message("!r:hs", event(content))
    assert message is not None
    assert message.body == "the answer"
    assert message.formatted_body == "the answer"
    assert message.reply_to == "$q"
    assert message.mention_ids == ("@devbot:hs",)


def test_a_thread_reply_with_fallback_is_in_the_thread_not_a_reply() -> None:
    relates = {
        "rel_type": "m.thread",
        "event_id": "$root",
        "is_falling_back": True,
        "m.in_reply_to": {"event_id": "$x"},
    }
    message = parse_message("!r:hs", event({"msgtype": "m.text", "body": "b", "m.relates_to": relates}))
    assert message is not None
    assert (message.thread_id, message.reply_to) == ("$root", None)
    relates["is_falling_back"] = False
    message = parse_message("!r:hs", event({"msgtype": "m.text", "body": "b", "m.relates_to": relates}))
    assert message is not None
    assert (message.thread_id, message.reply_to) == ("$root", "$x")


def test_an_edit_is_marked() -> None:
    relates = {"rel_type": "m.replace", "event_id": "$old"}
    message = parse_message("!r:hs", event({"msgtype": "m.text", "body": "* new", "m.relates_to": relates}))
    assert message is not None
    assert message.is_edit


@pytest.mark.parametrize(
    "raw",
    [
        {"type": "m.reaction", "event_id": "$e", "sender": "@a:hs", "content": {}},
        {"type": "m.room.message", "event_id": "$e", "sender": "@a:hs", "content": {"body": "no msgtype"}},
        {"type": "m.room.message", "event_id": "$e", "sender": "@a:hs", "content": "not a dict"},
        {"type": "m.room.message", "sender": "@a:hs", "content": {"msgtype": "m.text", "body": "no id"}},
        {"type": "m.room.message", "event_id": "$e", "sender": "@a:hs", "content": {"msgtype": "m.text", "body": 3}},
    ],
)
def test_anything_else_is_none(raw: dict[str, Any]) -> None:
    assert parse_message("!r:hs", raw) is None


def test_fallback_stripping_leaves_plain_text_alone() -> None:
    assert strip_reply_fallback("no quote\n> later quote") == "no quote\n> later quote"
    assert strip_reply_fallback("> only a quote") == ""


@pytest.mark.parametrize(
    ("body", "formatted", "left"),
    [
        ("> <@bob:hs> earlier\n> more\n\nanswer", None, ("answer", None)),
        ("> * <@bob:hs> waves\n\nanswer", None, ("answer", None)),
        ("> <Bob> earlier\n\nanswer", None, ("answer", None)),
        ("> <@bob:hs> earlier\n\nanswer", "<mx-reply>q</mx-reply>answer", ("answer", "answer")),
        # Spec v1.13 replies carry no fallback: a leading quote is the sender's own.
        ("> the log says E42\n\nwhy?", None, ("> the log says E42\n\nwhy?", None)),
        ("> the log says E42\n\nwhy?", "<blockquote>the log</blockquote>why?", None),
        ("> <@bob:hs> looks like a fallback", "<p>no mx-reply</p>", None),
    ],
)
def test_only_a_reply_fallback_is_stripped(
    body: str, formatted: str | None, left: tuple[str, str | None] | None
) -> None:
    assert without_reply_fallback(body, formatted) == (left or (body, formatted))


@pytest.mark.parametrize(
    ("raw", "target"),
    [
        ({"type": "m.room.redaction", "redacts": "$x", "content": {}}, "$x"),
        ({"type": "m.room.redaction", "content": {"redacts": "$x"}}, "$x"),  # room version 11
        ({"type": "m.room.redaction", "redacts": "$old", "content": {"redacts": "$x"}}, "$x"),
        ({"type": "m.room.redaction", "content": "junk", "redacts": 5}, None),
        ({"type": "m.room.message", "redacts": "$x", "content": {"redacts": "$x"}}, None),
    ],
)
def test_what_a_redaction_removes(raw: dict[str, Any], target: str | None) -> None:
    assert redacted(raw) == target


@pytest.mark.parametrize(
    ("raw", "successor"),
    [
        (
            {"type": "m.room.tombstone", "state_key": "", "content": {"body": "moved", "replacement_room": "!n:hs"}},
            "!n:hs",
        ),
        ({"type": "m.room.tombstone", "state_key": "", "content": {}}, None),  # a tombstone taken back
        ({"type": "m.room.tombstone", "state_key": "", "content": {"replacement_room": ""}}, None),
        ({"type": "m.room.tombstone", "state_key": "", "content": {"replacement_room": 7}}, None),
        ({"type": "m.room.tombstone", "state_key": "", "content": "junk"}, None),
        ({"type": "m.room.tombstone", "state_key": "@a:hs", "content": {"replacement_room": "!n:hs"}}, None),
        ({"type": "m.room.tombstone", "content": {"replacement_room": "!n:hs"}}, None),  # no state event
        ({"type": "m.room.message", "state_key": "", "content": {"replacement_room": "!n:hs"}}, None),
    ],
)
def test_which_room_a_tombstone_names(raw: dict[str, Any], successor: str | None) -> None:
    assert replaced_by(raw) == successor
