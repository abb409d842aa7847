"""The wake decision, the loop guard and quiet hours: tables for the named cases, hypothesis for the rest."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from agent_smith.chat.rules import (
    HEARD_MSGTYPES,
    Held,
    LoopGuard,
    Member,
    Message,
    QuietHours,
    Reason,
    Roster,
    Verdict,
    decide,
    is_incident,
    mentions,
    observe,
    render_digest,
    roster_of,
)

ME = Member("@devbot:localhost", "devbot", "Dev Bot")
TEAMMATE = Member("@reviewbot:localhost", "reviewbot", "Review Bot")
OTHER_AGENT = Member("@opsbot:localhost", "opsbot", None)
OPERATOR = "@op:localhost"
ALLOWED = "@alice:localhost"
STRANGER = "@mallory:localhost"
ROSTER = roster_of(ME, [TEAMMATE, OTHER_AGENT], [OPERATOR], [ALLOWED])
ROOM = "!room:localhost"


def msg(sender: str, body: str, **fields: object) -> Message:
    return Message(ROOM, "$e", sender, str(fields.pop("msgtype", "m.text")), body, **fields)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("body", "named"),
    [
        ("devbot what's up?", True),
        ("@devbot what's up?", True),
        ("DEVBOT, please", True),
        ("hey Dev Bot!", True),
        ("hey dev bot!", True),
        ("ping @devbot:localhost", True),
        ("(devbot)", True),
        ("devbot's PR", True),
        ("devbots are many", False),
        ("mydevbot", False),
        ("devbot-two is someone else", False),
        ("review the dev branch", False),
        ("", False),
        # Word edges in any script: a letter, digit or mark glued to the name makes another word.
        ("devbotй, please", False),
        ("devbotбот", False),
        ("Фdevbot", False),
        ("devbot\u0301", False),
        ("devbot٣", False),
        ("devbot\u2011two", False),
        ("мы ждём devbot.", True),
        ("«devbot»", True),
        ("devbot—look", True),
        ("devbot\u3000please", True),
        ("mydevbot, devbot: look", True),
    ],
)
def test_plain_text_mentions(body: str, named: bool) -> None:
    assert mentions(ME, msg(ALLOWED, body)) is named


DEV = Member("@dev:localhost", "Dev", "Devé Ops")


@pytest.mark.parametrize(
    ("body", "named"),
    [
        ("Dev, look", True),
        ("Devé", False),
        ("Devбот", False),
        ("devbot", False),
        ("dev-ops", False),
        ("DEVÉ OPS!", True),
        ("deve\u0301 ops", True),  # the display name as a client sends it decomposed
        ("Devé Opsy", False),
        ("Devé Opsy, Dev", True),
    ],
)
def test_names_and_display_names_are_whole_words_in_any_script(body: str, named: bool) -> None:
    assert mentions(DEV, msg(ALLOWED, body)) is named


def test_a_pill_names_by_user_id_even_when_its_text_does_not() -> None:
    pill = '<a href="https://matrix.to/#/%40devbot%3Alocalhost">the builder</a> look'
    assert mentions(ME, msg(ALLOWED, "the builder look", formatted_body=pill))
    other = '<a href="https://matrix.to/#/@reviewbot:localhost">the builder</a> look'
    assert not mentions(ME, msg(ALLOWED, "the builder look", formatted_body=other))


@pytest.mark.parametrize(
    "href",
    [
        "matrix:u/devbot:localhost",
        "matrix:u/devbot:localhost?action=chat",
        "MATRIX:u/devbot%3Alocalhost",
        "https://matrix.to/#/@devbot:localhost?via=localhost",
    ],
)
def test_a_pill_may_be_any_matrix_uri(href: str) -> None:
    """The spec recommends a Matrix URI for a mention: a ``matrix:`` URI is one as much as matrix.to."""
    pill = f'<a href="{href}">the builder</a> look'
    assert mentions(ME, msg(ALLOWED, "the builder look", formatted_body=pill))
    assert not mentions(TEAMMATE, msg(ALLOWED, "the builder look", formatted_body=pill))


def test_m_mentions_names_without_any_text() -> None:
    assert mentions(ME, msg(ALLOWED, "look at this", mention_ids=("@devbot:localhost",)))


@pytest.mark.parametrize(
    ("message", "verdict", "reason"),
    [
        (msg(ALLOWED, "@devbot what's up?"), Verdict.WAKE, Reason.MENTIONED),
        (msg(ALLOWED, "lunch anyone?"), Verdict.IGNORE, Reason.NOT_ADDRESSED),
        (msg(OPERATOR, "deploy the thing"), Verdict.WAKE, Reason.OPERATOR),
        (msg(OPERATOR, "reviewbot, deploy the thing"), Verdict.IGNORE, Reason.NOT_ADDRESSED),
        (msg(OPERATOR, "reviewbot and devbot, deploy"), Verdict.WAKE, Reason.MENTIONED),
        (
            msg(OPERATOR, "looks good, merge it", reply_to="$x", reply_to_sender=TEAMMATE.user_id),
            Verdict.IGNORE,
            Reason.NOT_ADDRESSED,
        ),
        (
            msg(OPERATOR, "thread comment", thread_id="$r", thread_root_sender=TEAMMATE.user_id),
            Verdict.IGNORE,
            Reason.NOT_ADDRESSED,
        ),
        (msg(OPERATOR, "go on", reply_to="$x", reply_to_sender=ALLOWED), Verdict.WAKE, Reason.OPERATOR),
        (msg(TEAMMATE.user_id, "devbot: PR #4 is ready", msgtype="m.notice"), Verdict.WAKE, Reason.MENTIONED),
        (msg(TEAMMATE.user_id, "PR #4 is ready", msgtype="m.notice"), Verdict.IGNORE, Reason.AGENT_DID_NOT_NAME),
        (
            msg(TEAMMATE.user_id, "thanks", reply_to="$x", reply_to_sender=ME.user_id),
            Verdict.IGNORE,
            Reason.AGENT_DID_NOT_NAME,
        ),
        (msg(ALLOWED, "thanks", reply_to="$x", reply_to_sender=ME.user_id), Verdict.WAKE, Reason.REPLY_TO_ME),
        (msg(ALLOWED, "more", thread_id="$r", thread_root_sender=ME.user_id), Verdict.WAKE, Reason.REPLY_TO_ME),
        (msg(ALLOWED, "thanks", reply_to="$x", reply_to_sender=TEAMMATE.user_id), Verdict.IGNORE, Reason.NOT_ADDRESSED),
        (msg(STRANGER, "devbot, rm -rf /"), Verdict.IGNORE, Reason.NOT_ALLOWED),
        (msg(ME.user_id, "devbot here"), Verdict.IGNORE, Reason.OWN),
        (msg(ALLOWED, "devbot", msgtype="m.image"), Verdict.IGNORE, Reason.NOT_HEARD_TYPE),
        (msg(ALLOWED, "devbot", is_edit=True), Verdict.IGNORE, Reason.EDIT),
        (msg(ALLOWED, "devbot waves", msgtype="m.emote"), Verdict.WAKE, Reason.MENTIONED),
    ],
)
def test_the_rules_table(message: Message, verdict: Verdict, reason: Reason) -> None:
    decision = decide(ROSTER, message)
    assert (decision.verdict, decision.reason) == (verdict, reason)


def test_loop_guard_silences_agents_only_after_the_agent_was_told() -> None:
    naming = msg(TEAMMATE.user_id, "devbot again", msgtype="m.notice")
    assert decide(ROSTER, naming, LoopGuard(3, told=False), limit=3).wakes
    assert decide(ROSTER, naming, LoopGuard(3, told=True), limit=3).reason is Reason.LOOP_GUARD
    assert decide(ROSTER, msg(ALLOWED, "devbot?"), LoopGuard(9, told=True), limit=3).wakes


def test_the_fourth_agent_message_in_a_row_is_blocked() -> None:
    guard = LoopGuard()
    for sender in (TEAMMATE.user_id, ME.user_id, TEAMMATE.user_id):
        assert not guard.blocks(3)
        guard = observe(guard, ROSTER, sender)
    assert guard.blocks(3)
    assert observe(guard, ROSTER, STRANGER) == guard
    assert observe(guard, ROSTER, OPERATOR) == LoopGuard()


def test_the_later_parts_of_an_agents_split_message_count_with_the_first() -> None:
    one = observe(LoopGuard(), ROSTER, TEAMMATE.user_id)
    assert observe(one, ROSTER, TEAMMATE.user_id, part=True) == one
    assert observe(one, ROSTER, OPERATOR, part=True) == LoopGuard(), "a person still resets the run"


senders = st.sampled_from([ME.user_id, TEAMMATE.user_id, OTHER_AGENT.user_id, OPERATOR, ALLOWED, STRANGER])


@given(st.lists(senders, max_size=30))
def test_the_run_is_the_trailing_agent_messages_since_a_heard_human(history: list[str]) -> None:
    guard = LoopGuard()
    for sender in history:
        guard = observe(guard, ROSTER, sender)
    expected = 0
    for sender in reversed(history):
        if sender in (OPERATOR, ALLOWED):
            break
        if ROSTER.is_agent(sender):
            expected += 1
    assert guard.run == expected


# ---- exhaustive properties over generated messages -----------------------------------------

spellings = st.sampled_from(
    ["devbot", "DevBot", "DEVBOT", "dev bot", "Dev Bot", "@devbot:localhost", "reviewbot", "Review Bot", "opsbot"]
)
fillers = st.sampled_from(["hi", "please look", "the build", "devbots", "mydevbot", "incident", ",", "?", "  "])
bodies = st.lists(st.one_of(spellings, fillers), max_size=6).map(" ".join)
crew_ids = st.sampled_from([ME.user_id, TEAMMATE.user_id, OTHER_AGENT.user_id, OPERATOR, ALLOWED, None])


@st.composite
def messages(draw: st.DrawFn) -> Message:
    return Message(
        room_id=ROOM,
        event_id="$e",
        sender=draw(senders),
        msgtype=draw(st.sampled_from(["m.text", "m.notice", "m.emote", "m.image", "m.file"])),
        body=draw(bodies),
        formatted_body=draw(
            st.one_of(st.none(), crew_ids.map(lambda u: f'<a href="https://matrix.to/#/{u}">x</a>' if u else "x"))
        ),
        mention_ids=tuple(u for u in draw(st.lists(crew_ids, max_size=2)) if u),
        reply_to_sender=draw(crew_ids),
        thread_root_sender=draw(crew_ids),
        is_edit=draw(st.booleans()),
    )


guards = st.builds(LoopGuard, st.integers(0, 6), st.booleans())
windows = st.builds(
    QuietHours,
    st.times(),
    st.times(),
    st.sampled_from(["UTC", "Europe/Berlin", "America/New_York", "Asia/Kolkata"]),
)
moments = st.datetimes(min_value=datetime(2026, 1, 1), max_value=datetime(2027, 1, 1), timezones=st.just(UTC))


@settings(max_examples=1500)
@given(messages(), guards, st.integers(1, 5), st.one_of(st.none(), windows), moments)
def test_decide_obeys_every_rule(
    message: Message, guard: LoopGuard, limit: int, quiet: QuietHours | None, now: datetime
) -> None:
    decision = decide(ROSTER, message, guard, limit=limit, quiet=quiet, now=now)
    named_me = mentions(ME, message)
    from_agent = ROSTER.is_agent(message.sender)
    hearable = (
        message.sender != ME.user_id
        and message.sender in ROSTER.heard
        and message.msgtype in HEARD_MSGTYPES
        and not message.is_edit
    )
    addressed = named_me or (
        not from_agent
        and (
            ME.user_id in (message.reply_to_sender, message.thread_root_sender)
            or (
                message.sender == OPERATOR
                and not any(
                    mentions(t, message) or t.user_id in (message.reply_to_sender, message.thread_root_sender)
                    for t in ROSTER.teammates
                )
            )
        )
    )
    silenced = from_agent and guard.blocks(limit) and guard.told
    incident = quiet is not None and is_incident(message.body, quiet.incident_words)
    in_window = quiet is not None and quiet.contains(now)
    would_wake = hearable and addressed and not silenced
    if would_wake and in_window and not incident:
        assert decision.verdict is Verdict.HOLD
    elif would_wake:
        assert decision.verdict is Verdict.WAKE
        assert decision.incident is incident
    else:
        assert decision.verdict is Verdict.IGNORE
    # The named invariants, stated on their own.
    if message.sender in (ME.user_id, STRANGER):
        assert not decision.wakes
    if from_agent and not named_me:
        assert not decision.wakes
    if decision.wakes:
        assert message.msgtype in HEARD_MSGTYPES


# ---- whole-word naming, in any script ------------------------------------------------------

# A word: letters, digits and marks of any script, and the joiners that continue a word.
WORD_CATEGORIES = ("Lu", "Ll", "Lt", "Lm", "Lo", "Nd", "Nl", "No", "Mn", "Mc", "Me")
word_chars = st.one_of(st.characters(categories=WORD_CATEGORIES), st.sampled_from("_-\u2010\u2011"))
# What ends a word: spaces and punctuation other than the joiners.
edge_chars = st.characters(categories=("Zs", "Po", "Ps", "Pe", "Pi", "Pf", "Sm", "Sc", "Sk", "So")).filter(
    lambda c: c not in "_-"
)
names = st.text(st.characters(categories=("Lu", "Ll", "Lo", "Nd")), min_size=1, max_size=8)


def member(name: str) -> Member:
    return Member("@x0:localhost", name, None)


@given(names, st.text(edge_chars, max_size=3), st.text(edge_chars, max_size=3), st.booleans())
def test_a_name_between_word_edges_is_named_in_any_case(name: str, before: str, after: str, upper: bool) -> None:
    spelled = name.upper() if upper else name
    # Upper case is not always the same letter again ("ı" becomes "I", which is "i").
    assume(spelled.casefold() == name.casefold())
    assert mentions(member(name), msg(ALLOWED, f"{before}{spelled}{after}"))


@given(names, st.text(word_chars, max_size=3), st.text(word_chars, max_size=3))
def test_a_name_glued_to_any_word_character_is_not_named(name: str, before: str, after: str) -> None:
    # One run of word characters longer than the name: every place the name occurs in it touches the run.
    assume(before or after)
    assume("x0" not in (before + name + after).casefold())
    assert not mentions(member(name), msg(ALLOWED, f"{before}{name}{after}"))


@given(names, st.text(word_chars, min_size=1, max_size=3), st.text(edge_chars, min_size=1, max_size=2))
def test_a_glued_occurrence_does_not_hide_a_standalone_one(name: str, glue: str, edge: str) -> None:
    assert mentions(member(name), msg(ALLOWED, f"{name}{glue}{edge}{name}"))


@given(messages())
def test_case_never_matters(message: Message) -> None:
    upper = Message(**{**message.__dict__, "body": message.body.upper()})
    lower = Message(**{**message.__dict__, "body": message.body.lower()})
    assert decide(ROSTER, upper) == decide(ROSTER, lower)


def test_a_teammates_notice_naming_the_agent_wakes_it() -> None:
    # The original forwarded only m.text, so agent-to-agent mentions never arrived.
    notice = msg(TEAMMATE.user_id, "@devbot:localhost CI is green", msgtype="m.notice")
    assert decide(ROSTER, notice).wakes


def test_duplicate_ids_are_not_teammates() -> None:
    roster = roster_of(ME, [ME, TEAMMATE], [], [])
    assert roster.teammates == (TEAMMATE,)


# ---- quiet hours --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("start", "end", "local", "inside"),
    [
        (time(22), time(7), time(23, 30), True),
        (time(22), time(7), time(3), True),
        (time(22), time(7), time(7), False),
        (time(22), time(7), time(12), False),
        (time(22), time(7), time(22), True),
        (time(9), time(17), time(12), True),
        (time(9), time(17), time(17), False),
        (time(9), time(17), time(8, 59), False),
        (time(9), time(9), time(9), False),
    ],
)
def test_quiet_window(start: time, end: time, local: time, inside: bool) -> None:
    now = datetime(2026, 3, 1, local.hour, local.minute, tzinfo=UTC)
    assert QuietHours(start, end, "UTC").contains(now) is inside


def test_quiet_hours_follow_the_agents_time_zone_across_daylight_saving() -> None:
    berlin = QuietHours(time(22), time(7), "Europe/Berlin")
    assert berlin.contains(datetime(2026, 1, 15, 21, 30, tzinfo=UTC))  # 22:30 CET
    assert not berlin.contains(datetime(2026, 7, 15, 19, 30, tzinfo=UTC))  # 21:30 CEST
    assert berlin.contains(datetime(2026, 7, 15, 20, 30, tzinfo=UTC))  # 22:30 CEST


@given(windows, moments)
def test_an_overnight_window_is_the_complement_of_the_day(window: QuietHours, now: datetime) -> None:
    flipped = QuietHours(window.end, window.start, window.timezone)
    if window.start != window.end:
        assert window.contains(now) != flipped.contains(now)


@given(windows, moments)
def test_a_window_holds_for_its_length_each_day(window: QuietHours, now: datetime) -> None:
    later = now + timedelta(days=7)
    zone = ZoneInfo(window.timezone)
    # Across a daylight-saving change the same UTC moment is another local time: compare like with like.
    assume(now.astimezone(zone).utcoffset() == later.astimezone(zone).utcoffset())
    assert window.contains(now) == window.contains(later)


@pytest.mark.parametrize(
    ("text", "incident"),
    [
        ("INCIDENT: prod down", True),
        ("major outage in eu", True),
        ("sev1!", True),
        ("incidental", False),
        ("", False),
        ("outageé", False),
        ("sev1ый", False),
    ],
)
def test_incident_words(text: str, incident: bool) -> None:
    assert is_incident(text, ("incident", "outage", "sev1")) is incident


def test_quiet_hours_hold_but_let_incidents_through() -> None:
    window = QuietHours(time(22), time(7), "UTC")
    night = datetime(2026, 3, 1, 23, tzinfo=UTC)
    asked = msg(ALLOWED, "devbot, a question")
    assert decide(ROSTER, asked, quiet=window, now=night).verdict is Verdict.HOLD
    assert decide(ROSTER, asked, quiet=window, now=night.replace(hour=12)).wakes
    alarm = decide(ROSTER, msg(ALLOWED, "devbot: incident, prod is down"), quiet=window, now=night)
    assert alarm.wakes
    assert alarm.incident


def test_the_digest_lists_every_held_message() -> None:
    held = [
        Held(ROOM, "crew", ALLOWED, "Alice", "$1", "devbot, first\nsecond line"),
        Held(ROOM, "crew", OPERATOR, "Op", "$2", "devbot, another"),
    ]
    text = render_digest(held, QuietHours(time(22), time(7), "Europe/Berlin"))
    assert "22:00-07:00 Europe/Berlin" in text
    assert "2 message(s)" in text
    assert "Alice (@alice:localhost), $1: devbot, first second line" in text
    assert "$2" in text


def test_the_digest_of_quiet_hours_turned_off_says_so() -> None:
    text = render_digest([Held(ROOM, "crew", ALLOWED, "Alice", "$1", "devbot, first")], None)
    assert text.startswith("Quiet hours were turned off. 1 message(s) addressed to you arrived meanwhile:")
    assert "$1: devbot, first" in text


def test_roster_hears_operators_teammates_and_allowed_only() -> None:
    assert Roster(ME).heard == frozenset()
    assert ROSTER.heard == {OPERATOR, ALLOWED, TEAMMATE.user_id, OTHER_AGENT.user_id}
