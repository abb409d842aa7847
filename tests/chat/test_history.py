"""What the history tool shows, over raw events: each message once, its latest edit applied, removed ones said."""

from __future__ import annotations

from typing import Any

from agent_smith.chat.history import Shown, shown


def message(event_id: str, sender: str, body: str, **extra: Any) -> dict[str, Any]:
    return {
        "type": "m.room.message",
        "event_id": event_id,
        "sender": sender,
        "origin_server_ts": 1000,
        "content": {"msgtype": "m.text", "body": body},
        **extra,
    }


def edit(event_id: str, sender: str, target: str, body: str) -> dict[str, Any]:
    new = {"msgtype": "m.notice", "body": body}
    return message(
        event_id,
        sender,
        f"* {body}",
        content={
            **new,
            "body": f"* {body}",
            "m.new_content": new,
            "m.relates_to": {"rel_type": "m.replace", "event_id": target},
        },
    )


def test_an_edit_the_homeserver_bundled_applies_without_the_edit_among_the_events() -> None:
    bundled = {"m.relations": {"m.replace": edit("$e", "@a:hs", "$m", "new words")}}
    assert shown([message("$m", "@a:hs", "old words", unsigned=bundled)]) == [
        Shown("$m", "@a:hs", 1000, "new words", notice=True, edited=True)
    ]


def test_only_the_senders_own_edits_count() -> None:
    events = [message("$m", "@a:hs", "mine"), edit("$e", "@b:hs", "$m", "not yours")]
    assert shown(events) == [Shown("$m", "@a:hs", 1000, "mine")]


def test_the_latest_edit_wins_and_edits_are_no_messages() -> None:
    events = [
        message("$m", "@a:hs", "first"),
        edit("$e1", "@a:hs", "$m", "second"),
        edit("$e2", "@a:hs", "$m", "third"),
        edit("$e3", "@a:hs", "$older", "of a message before these"),
    ]
    assert [(s.event_id, s.body, s.edited) for s in shown(events)] == [("$m", "third", True)]


def test_a_removed_message_has_no_body() -> None:
    removed = message("$m", "@a:hs", "", content={}, unsigned={"redacted_because": {"type": "m.room.redaction"}})
    assert shown([removed]) == [Shown("$m", "@a:hs", 1000, None)]
