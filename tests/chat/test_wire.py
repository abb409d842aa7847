"""The homeserver's answers as plain data: sync batches, room and member names, errors and rate limits."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agent_smith.chat.wire import (
    DEFAULT_RETRY_MS,
    ERROR_TEXT_MAX,
    HEROES_MAX,
    Room,
    Rooms,
    SyncBatch,
    failure,
    rate_limit_wait,
    read_batch,
    read_page,
)
from agent_smith.errors import OperationError

ME = "@devbot:hs"
ROOM = "!room:hs"


def state(kind: str, content: dict[str, Any], key: str = "", **extra: Any) -> dict[str, Any]:
    return {"type": kind, "state_key": key, "content": content, "sender": "@alice:hs", **extra}


def member(user_id: str, membership: str = "join", displayname: Any = None, **extra: Any) -> dict[str, Any]:
    content: dict[str, Any] = {"membership": membership}
    if displayname is not None:
        content["displayname"] = displayname
    return state("m.room.member", content, key=user_id, **extra)


def message(body: str, event_id: str = "$m") -> dict[str, Any]:
    return {"type": "m.room.message", "event_id": event_id, "sender": "@alice:hs", "content": {"body": body}}


def joined(
    *,
    state_events: list[dict[str, Any]] | None = None,
    timeline: list[dict[str, Any]] | None = None,
    limited: bool = False,
    summary: dict[str, Any] | None = None,
) -> dict[str, Any]:
    return {
        "state": {"events": state_events or []},
        "timeline": {"events": timeline or [], "limited": limited},
        "summary": summary or {},
    }


def answer(
    join: dict[str, Any] | None = None,
    invite: dict[str, Any] | None = None,
    leave: dict[str, Any] | None = None,
    next_batch: str = "s2",
) -> dict[str, Any]:
    return {"next_batch": next_batch, "rooms": {"join": join or {}, "invite": invite or {}, "leave": leave or {}}}


def room_of(*events: dict[str, Any], summary: dict[str, Any] | None = None) -> Room:
    room = Room(ROOM)
    for event in events:
        room.apply(event)
    room.summarise(summary or {})
    return room


# ---- the batch ---------------------------------------------------------------------------


def test_a_batch_keeps_each_rooms_timeline_in_order_and_leaves_state_out() -> None:
    first, second, other = message("one", "$1"), message("two", "$2"), message("elsewhere", "$3")
    batch = read_batch(
        answer(
            {
                "!a:hs": joined(state_events=[member("@alice:hs")], timeline=[first, member("@bob:hs"), second]),
                "!b:hs": joined(timeline=[other]),
            }
        ),
        ME,
        "s1",
    )
    assert batch == SyncBatch(
        "s2", (("!a:hs", first), ("!a:hs", member("@bob:hs")), ("!a:hs", second), ("!b:hs", other)), (), (), "s1"
    )


def test_a_gap_counts_only_after_a_token() -> None:
    body = answer({"!a:hs": joined(limited=True), "!b:hs": joined()})
    body["rooms"]["join"]["!a:hs"]["timeline"]["prev_batch"] = "t9"
    assert read_batch(body, ME, "s1").gaps == (("!a:hs", "t9"),)
    assert read_batch(body, ME, "s1").since == "s1"
    assert read_batch(body, ME, None).gaps == ()


def test_a_gap_without_a_prev_batch_is_still_a_gap() -> None:
    assert read_batch(answer({"!a:hs": joined(limited=True)}), ME, "s1").gaps == (("!a:hs", None),)


@pytest.mark.parametrize(
    ("page", "more"),
    [
        ({"chunk": [message("x")], "start": "t9", "end": "t5"}, "t5"),
        ({"chunk": [message("x")], "start": "t9"}, None),  # the spec: no end, no more
        ({"chunk": [message("x")], "start": "t9", "end": "t9"}, None),  # synapse#12102
        ({"chunk": [], "start": "t9", "end": "t5"}, None),  # nothing left, whatever the token says
        ({"chunk": "junk", "end": 5}, None),
    ],
)
def test_a_gap_is_paged_until_no_page_follows(page: dict[str, Any], more: str | None) -> None:
    events, following = read_page(page, "t9")
    assert following == more
    assert events == ([message("x")] if isinstance(page["chunk"], list) and page["chunk"] else [])


def test_a_room_joined_in_the_answer_brings_only_what_was_said_after_the_join() -> None:
    before, after = message("said before devbot came", "$1"), message("said since", "$2")
    rename = member(ME, "join", "Dev Bot", unsigned={"prev_content": {"membership": "join"}})
    timeline = [before, member(ME, "join", unsigned={"prev_content": {"membership": "invite"}}), after, rename]
    batch = read_batch(answer({"!a:hs": joined(timeline=timeline, limited=True)}), ME, "s1")
    assert batch.events == (("!a:hs", after), ("!a:hs", rename)), "a change of name is no join"
    assert batch.gaps == (), "the past of a room just joined is no gap"
    # Joined without an invite (no earlier membership), or back after leaving: the same.
    for unsigned in ({}, {"prev_content": {"membership": "leave"}}):
        timeline = [before, member(ME, "join", unsigned=unsigned), after]
        assert read_batch(answer({"!a:hs": joined(timeline=timeline)}), ME, "s1").events == (("!a:hs", after),)
    # Someone else joining is news like any other event.
    timeline = [before, member("@alice:hs", "join"), after]
    assert len(read_batch(answer({"!a:hs": joined(timeline=timeline)}), ME, "s1").events) == 3


def test_only_invites_of_me_are_invites() -> None:
    invite_state = {
        "events": [
            state("m.room.name", {"name": "ops"}),
            member("@op:hs", "join", sender="@op:hs"),
            member(ME, "invite", sender="@op:hs"),
        ]
    }
    someone_else = {"events": [member("@alice:hs", "invite", sender="@op:hs")]}
    not_an_invite = {"events": [member(ME, "join", sender="@op:hs")]}
    no_sender = {"events": [{"type": "m.room.member", "state_key": ME, "content": {"membership": "invite"}}]}
    batch = read_batch(
        answer(
            invite={
                "!ops:hs": {"invite_state": invite_state},
                "!x:hs": {"invite_state": someone_else},
                "!y:hs": {"invite_state": not_an_invite},
                "!z:hs": {"invite_state": no_sender},
            }
        ),
        ME,
        "s1",
    )
    assert batch.invites == (("!ops:hs", "@op:hs"),)


def test_an_answer_without_a_token_is_an_error() -> None:
    with pytest.raises(OperationError, match="sync: the answer has no next_batch"):
        read_batch({"rooms": {}}, ME, None)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=5),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
    max_leaves=12,
)
keys = st.sampled_from(["type", "state_key", "content", "sender", "events", "timeline", "state", "membership"])


@st.composite
def sync_answers(draw: st.DrawFn) -> dict[str, Any]:
    """Answers shaped like /sync at the top, with anything at all further down."""
    anything = st.dictionaries(keys | st.text(max_size=3), json_values, max_size=4)
    section = st.dictionaries(st.sampled_from(["!a:hs", "!b:hs"]), anything | json_values, max_size=2)
    rooms = st.fixed_dictionaries({}, optional={"join": section, "invite": section, "leave": section}) | json_values
    return {"next_batch": "s", "rooms": draw(rooms)}


@settings(max_examples=300)
@given(sync_answers())
def test_no_answer_breaks_the_reader_or_the_rooms(body: dict[str, Any]) -> None:
    batch = read_batch(body, ME, "s1")
    assert batch.next_batch == "s"
    assert all(isinstance(event, dict) for _, event in batch.events)
    rooms = Rooms(ME)
    rooms.absorb(body)
    for room_id in rooms.joined():
        assert isinstance(rooms.room_name(room_id), str)
        assert isinstance(rooms.member_name(room_id, "@alice:hs"), str)


# ---- members -----------------------------------------------------------------------------

users = st.sampled_from(["@alice:hs", "@bob:hs", "@carol:hs", ME])
memberships = st.sampled_from(["join", "invite", "leave", "ban", "knock"])
display_names = st.one_of(st.none(), st.sampled_from(["Alice", "Bob", "Dev Bot", ""]), st.integers())


@given(st.lists(st.tuples(users, memberships, display_names), max_size=20))
def test_the_members_are_the_joined_and_invited_as_their_last_event_says(
    changes: list[tuple[str, str, Any]],
) -> None:
    room = room_of(*(member(user, membership, name) for user, membership, name in changes))
    last = {user: (membership, name) for user, membership, name in changes}
    expected = {
        user: name if isinstance(name, str) and name else None
        for user, (membership, name) in last.items()
        if membership in ("join", "invite")
    }
    assert room.members == expected


@given(st.dictionaries(users, st.one_of(st.none(), st.sampled_from(["Alice", "Bob", "Dev Bot"])), max_size=4))
def test_a_shared_display_name_is_followed_by_the_user_id(names: dict[str, str | None]) -> None:
    room = room_of(*(member(user, displayname=name) for user, name in names.items()))
    shown = {user: room.member_name(user) for user in names}
    for user, name in names.items():
        if name is None:
            assert shown[user] == user
        elif list(names.values()).count(name) > 1:
            assert shown[user] == f"{name} ({user})"
        else:
            assert shown[user] == name
    assert len(set(shown.values())) == len(shown), "every member is told apart"


def test_a_member_who_left_has_no_name_in_the_room() -> None:
    room = room_of(member("@alice:hs", displayname="Alice"), member("@alice:hs", "leave"))
    assert room.member_name("@alice:hs") is None
    rooms = Rooms(ME)
    rooms.absorb(answer({ROOM: joined(timeline=[member("@alice:hs", displayname="Alice")])}))
    assert rooms.member_name(ROOM, "@alice:hs") == "Alice"
    rooms.absorb(answer({ROOM: joined(timeline=[member("@alice:hs", "leave")])}))
    assert rooms.member_name(ROOM, "@alice:hs") == "@alice:hs"


def test_a_display_name_stays_unique_once_its_twin_leaves() -> None:
    room = room_of(member("@alice:hs", displayname="Al"), member("@bob:hs", displayname="Al"))
    assert room.member_name("@alice:hs") == "Al (@alice:hs)"
    room.apply(member("@bob:hs", "ban"))
    assert room.member_name("@alice:hs") == "Al"


# ---- room names --------------------------------------------------------------------------

ALICE = member("@alice:hs", displayname="Alice")
BOB = member("@bob:hs", displayname="Bob")
CAROL = member("@carol:hs", "invite", displayname="Carol")
SELF = member(ME, displayname="Dev Bot")


@pytest.mark.parametrize(
    ("events", "summary", "name"),
    [
        ([state("m.room.name", {"name": "crew"}), state("m.room.canonical_alias", {"alias": "#c:hs"}), ALICE], {}, "crew"),
        ([state("m.room.name", {"name": ""}), state("m.room.canonical_alias", {"alias": "#c:hs"})], {}, "#c:hs"),
        ([state("m.room.name", {"name": "old"}), state("m.room.name", {})], {}, "Empty Room"),
        ([state("m.room.canonical_alias", {"alias": 7}), SELF, ALICE], {}, "Alice"),
        ([SELF, ALICE, BOB], {}, "Alice and Bob"),
        ([SELF, ALICE, BOB, CAROL], {}, "Alice, Bob and Carol"),
        ([SELF, member("@alice:hs", displayname="Twin"), member("@bob:hs", displayname="Twin")], {}, "Twin (@alice:hs) and Twin (@bob:hs)"),
        ([SELF, member("@zed:hs")], {}, "@zed:hs"),
        ([SELF], {}, "Empty Room"),
        ([], {}, "Empty Room"),
        ([SELF, *(member(f"@u{i}:hs", displayname=f"U{i}") for i in range(7))], {}, "U0, U1, U2, U3, U4 and 2 others"),
        ([SELF, *(member(f"@u{i}:hs", displayname=f"U{i}") for i in range(6))], {}, "U0, U1, U2, U3, U4 and 1 other"),
        # The server's summary: its heroes and counts stand for members not loaded.
        ([SELF, ALICE], {"m.heroes": ["@alice:hs", "@bob:hs"], "m.joined_member_count": 3, "m.invited_member_count": 0}, "Alice and @bob:hs"),
        ([ALICE], {"m.heroes": ["@alice:hs"], "m.joined_member_count": 10, "m.invited_member_count": 2}, "Alice and 10 others"),
        ([ALICE], {"m.heroes": [ME, "@alice:hs"], "m.joined_member_count": 2, "m.invited_member_count": 0}, "Alice"),
        ([SELF], {"m.heroes": ["@alice:hs"], "m.joined_member_count": 1, "m.invited_member_count": 0}, "Empty Room (was @alice:hs)"),
        ([SELF, ALICE], {"m.heroes": ["@alice:hs", "@bob:hs"], "m.joined_member_count": 1, "m.invited_member_count": 0}, "Empty Room (was Alice and @bob:hs)"),
        ([SELF], {"m.heroes": [], "m.joined_member_count": 1, "m.invited_member_count": 0}, "Empty Room"),
        ([SELF], {"m.heroes": [], "m.joined_member_count": 4, "m.invited_member_count": 0}, ROOM),
    ],
)  # fmt: skip
def test_room_names_as_the_spec_computes_them(events: list[dict[str, Any]], summary: dict[str, Any], name: str) -> None:
    assert room_of(*events, summary=summary).display_name(ME) == name


@given(st.lists(users.filter(lambda u: u != ME), max_size=4, unique=True), st.text(min_size=1, max_size=8))
def test_a_name_beats_everything_and_an_alias_beats_the_members(others: list[str], name: str) -> None:
    members = [member(user) for user in others]
    alias = state("m.room.canonical_alias", {"alias": "#crew:hs"})
    assert room_of(*members, alias, state("m.room.name", {"name": name})).display_name(ME) == name
    assert room_of(*members, alias).display_name(ME) == "#crew:hs"


@given(st.lists(st.sampled_from([f"@u{i}:hs" for i in range(9)] + [ME]), max_size=9, unique=True))
def test_members_name_an_unnamed_room_by_at_most_five_others(present: list[str]) -> None:
    name = room_of(*(member(user) for user in present)).display_name(ME)
    others = sorted(user for user in present if user != ME)
    if not others:
        assert name == "Empty Room"
    else:
        assert all(user in name for user in others[:HEROES_MAX])
        assert not any(user in name for user in others[HEROES_MAX:])
        assert ME not in name
        assert name.endswith(f"{len(others) - HEROES_MAX} other{'s' if len(others) > HEROES_MAX + 1 else ''}") == (
            len(others) > HEROES_MAX
        )


def test_room_state_only_comes_from_state_events() -> None:
    not_state = {"type": "m.room.name", "content": {"name": "spoofed"}, "sender": "@mallory:hs"}
    keyed = state("m.room.name", {"name": "keyed"}, key="x")
    room = room_of(SELF, ALICE, not_state, keyed, state("m.room.encryption", {}, key="x"))
    assert room.display_name(ME) == "Alice"
    assert not room.encrypted


def test_a_summary_field_lasts_until_an_answer_changes_it() -> None:
    room = room_of(summary={"m.heroes": ["@alice:hs"], "m.joined_member_count": 2, "m.invited_member_count": 0})
    room.summarise({"m.joined_member_count": 3})
    assert (room.heroes, room.joined_count, room.invited_count) == (("@alice:hs",), 3, 0)
    room.summarise({"m.heroes": ["@bob:hs", 5], "m.invited_member_count": True})
    assert (room.heroes, room.joined_count, room.invited_count) == (("@bob:hs",), 3, 0)


# ---- the rooms as sync answers build them ------------------------------------------------


def test_rooms_follow_the_sync_answers() -> None:
    rooms = Rooms(ME)
    assert (rooms.room_name(ROOM), rooms.member_name(ROOM, "@alice:hs"), rooms.is_encrypted(ROOM)) == (
        ROOM,
        "@alice:hs",
        False,
    )
    rooms.absorb(
        answer(
            {
                ROOM: joined(
                    state_events=[state("m.room.name", {"name": "before"}), SELF, ALICE],
                    timeline=[message("hi"), state("m.room.name", {"name": "crew"})],
                ),
                "!dm:hs": joined(state_events=[SELF, BOB]),
            },
            invite={"!invited:hs": {"invite_state": {"events": [member(ME, "invite")]}}},
        )
    )
    assert rooms.joined() == (ROOM, "!dm:hs")
    assert rooms.room_name(ROOM) == "crew", "the timeline comes after the state"
    assert rooms.room_name("!dm:hs") == "Bob"
    assert rooms.member_name(ROOM, "@alice:hs") == "Alice"
    assert rooms.member_name(ROOM, "@bob:hs") == "@bob:hs"
    rooms.absorb(answer({ROOM: joined(timeline=[state("m.room.encryption", {"algorithm": "m.megolm.v1.aes-sha2"})])}))
    assert rooms.is_encrypted(ROOM)
    assert rooms.room_name(ROOM) == "crew", "an answer without a room's state keeps what was known"
    rooms.absorb(answer(leave={ROOM: {"timeline": {"events": [member(ME, "leave")]}}}))
    assert rooms.joined() == ("!dm:hs",)
    assert (rooms.room_name(ROOM), rooms.is_encrypted(ROOM)) == (ROOM, False), "a room left is forgotten"


@given(st.lists(st.tuples(users, memberships, display_names), max_size=12), st.booleans())
def test_a_full_state_answer_again_changes_nothing(changes: list[tuple[str, str, Any]], named: bool) -> None:
    events = [member(user, membership, name) for user, membership, name in changes]
    if named:
        events.append(state("m.room.name", {"name": "crew"}))
    body = answer({ROOM: joined(state_events=events)})
    rooms = Rooms(ME)
    rooms.absorb(body)
    before = (rooms.room_name(ROOM), [rooms.member_name(ROOM, user) for user, _, _ in changes])
    rooms.absorb(body)
    assert (rooms.room_name(ROOM), [rooms.member_name(ROOM, user) for user, _, _ in changes]) == before


# ---- errors and rate limits --------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "body", "header", "wait"),
    [
        (200, {"event_id": "$e"}, None, None),
        (403, {"errcode": "M_FORBIDDEN", "error": "no"}, "3", None),
        (429, {"errcode": "M_LIMIT_EXCEEDED", "retry_after_ms": 700}, None, 0.7),
        (429, {"errcode": "M_LIMIT_EXCEEDED", "retry_after_ms": 700}, "9", 0.7),
        (429, {"errcode": "M_LIMIT_EXCEEDED", "retry_after_ms": 0}, None, 0.0),
        (429, {"errcode": "M_LIMIT_EXCEEDED"}, "2", 2.0),
        (429, {"errcode": "M_LIMIT_EXCEEDED"}, " 2 ", 2.0),
        (429, None, "4", 4.0),
        (400, {"errcode": "M_LIMIT_EXCEEDED", "retry_after_ms": 1500.5}, None, 1.5005),
        (429, {"retry_after_ms": -5}, "Wed, 21 Oct 2015 07:28:00 GMT", DEFAULT_RETRY_MS / 1000),
        (429, {"retry_after_ms": "700"}, "-1", DEFAULT_RETRY_MS / 1000),
        (429, {"retry_after_ms": True}, "²", DEFAULT_RETRY_MS / 1000),
        (429, {"retry_after_ms": float("inf")}, None, DEFAULT_RETRY_MS / 1000),
        (429, "Too Many Requests", None, DEFAULT_RETRY_MS / 1000),
    ],
)
def test_how_long_a_rate_limit_is_waited_out(status: int, body: object, header: str | None, wait: float | None) -> None:
    assert rate_limit_wait(status, body, header) == wait


@pytest.mark.parametrize(
    ("body", "reason", "line"),
    [
        ({"errcode": "M_FORBIDDEN", "error": "You are not invited"}, "Forbidden", "join #x:hs: 403 M_FORBIDDEN You are not invited"),
        ({"errcode": "M_UNKNOWN"}, "Forbidden", "join #x:hs: 403 M_UNKNOWN"),
        ({"error": "multi\nline\r\n  text"}, "Forbidden", "join #x:hs: 403 multi line text"),
        ("<html>\n<body>oops</body></html>", "Forbidden", "join #x:hs: 403 Forbidden"),
        (None, "", "join #x:hs: 403"),
        ({"errcode": 5, "error": None}, "Forbidden", "join #x:hs: 403 Forbidden"),
    ],
)  # fmt: skip
def test_an_error_answer_is_one_line(body: object, reason: str, line: str) -> None:
    assert failure("join #x:hs", 403, reason, body) == line


@given(
    st.integers(100, 599),
    st.text(max_size=20),
    json_values | st.dictionaries(st.sampled_from(["errcode", "error"]), st.text()),
)
def test_every_error_line_is_one_short_line(status: int, reason: str, body: object) -> None:
    line = failure("sync", status, reason, body)
    assert line.startswith(f"sync: {status}")
    assert len(line.splitlines()) == 1
    assert len(line) <= len(f"sync: {status} ") + 2 * ERROR_TEXT_MAX + 1 + len(reason)
