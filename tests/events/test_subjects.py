from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from agent_smith.credentials import shown_url
from agent_smith.events import EventFilter, parse_time, subject_for
from agent_smith.events.outbox import OutboxRecord
from agent_smith.events.subjects import newest, retarget

P = "swarm.events"


def test_subjects_start_with_the_type_and_match_the_prefix_wildcard() -> None:
    subject = subject_for(P, "pr_opened", "devbot")
    assert subject == "swarm.events.pr_opened.devbot"
    assert subject.startswith("swarm.events.pr_opened")


@pytest.mark.parametrize(
    ("flt", "subjects"),
    [
        (EventFilter(), ["swarm.events.>"]),
        (EventFilter(agent="devbot"), ["swarm.events.*.devbot"]),
        (EventFilter(types=("pr_opened",)), ["swarm.events.pr_opened.*"]),
        (EventFilter(types=("pr_opened",), agent="devbot"), ["swarm.events.pr_opened.devbot"]),
        (
            EventFilter(types=("pr_merged", "pr_opened", "pr_merged")),
            ["swarm.events.pr_merged.*", "swarm.events.pr_opened.*"],
        ),
        (EventFilter(repo="acme/web", pr=3), ["swarm.events.>"]),
    ],
)
def test_the_server_side_filter_is_the_narrowest_subject(flt: EventFilter, subjects: list[str]) -> None:
    assert flt.subjects(P) == subjects


T0 = datetime(2026, 1, 1, 12, tzinfo=UTC)
EVENT = {"type": "pr_opened", "agent": "devbot", "repo": "acme/web", "pr": 3, "time": "2026-01-01T12:00:00Z"}


@pytest.mark.parametrize(
    ("flt", "expected"),
    [
        (EventFilter(), True),
        (EventFilter(types=("pr_opened", "pr_merged")), True),
        (EventFilter(types=("pr_merged",)), False),
        (EventFilter(agent="devbot"), True),
        (EventFilter(agent="reviewbot"), False),
        (EventFilter(repo="acme/web"), True),
        (EventFilter(repo="acme/api"), False),
        (EventFilter(pr=3), True),
        (EventFilter(pr=4), False),
        (EventFilter(since=T0), True),
        (EventFilter(since=T0 + timedelta(milliseconds=1)), False),
        (EventFilter(until=T0), True),
        (EventFilter(until=T0 - timedelta(milliseconds=1)), False),
    ],
)
def test_the_client_side_filter(flt: EventFilter, expected: bool) -> None:
    assert flt.matches(EVENT) is expected


def test_an_event_without_a_readable_time_fails_a_time_filter() -> None:
    assert not EventFilter(since=T0).matches({**EVENT, "time": "yesterday"})
    assert EventFilter().matches({**EVENT, "time": "yesterday"})


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2h", T0 - timedelta(hours=2)),
        ("90m", T0 - timedelta(minutes=90)),
        ("7d", T0 - timedelta(days=7)),
        ("2026-01-01T09:00:00Z", datetime(2026, 1, 1, 9, tzinfo=UTC)),
        ("2026-01-01T09:00:00", datetime(2026, 1, 1, 9, tzinfo=UTC)),
        ("2026-01-01T10:00:00+01:00", datetime(2026, 1, 1, 9, tzinfo=UTC)),
    ],
)
def test_parse_time(text: str, expected: datetime) -> None:
    assert parse_time(text, T0) == expected


def test_parse_time_says_what_it_accepts() -> None:
    with pytest.raises(ValueError, match="neither a time"):
        parse_time("last tuesday", T0)


@given(st.integers(min_value=0, max_value=50 * 365 * 86400))
def test_a_duration_ago_is_that_far_back(seconds: int) -> None:
    assert parse_time(f"{seconds}s", T0) == T0 - timedelta(seconds=seconds)


@given(st.integers(min_value=10**7, max_value=10**30), st.sampled_from(["d", "w"]))
def test_a_duration_beyond_the_calendar_is_one_line_not_a_traceback(amount: int, unit: str) -> None:
    with pytest.raises(ValueError, match="reaches back before the year 1"):
        parse_time(f"{amount}{unit}", T0)


@pytest.mark.parametrize(("limit", "expected"), [(None, [1, 2, 3]), (2, [2, 3]), (5, [1, 2, 3]), (0, [])])
def test_newest(limit: int | None, expected: list[int]) -> None:
    assert newest([1, 2, 3], limit, lambda n: n) == expected


@given(st.lists(st.integers(-5, 5)), st.none() | st.integers(0, 12))
def test_newest_skips_what_is_no_event_without_losing_a_place(items: list[int], limit: int | None) -> None:
    def keep(n: int) -> str | None:
        return None if n < 0 else str(n)

    kept = [str(n) for n in items if n >= 0]
    assert newest(items, limit, keep) == (kept if limit is None else kept[-limit:] if limit else [])


@given(
    st.sampled_from(["swarm.events", "crew2.events", "a", "x.y.z"]),
    st.sampled_from(["swarm.events", "crew2.events", "a"]),
    st.sampled_from(["task_done", "pr_opened"]),
    st.sampled_from(["devbot", "review-bot"]),
)
def test_a_kept_record_is_retargeted_to_the_crew_s_prefix(old: str, new: str, type_name: str, agent: str) -> None:
    record = OutboxRecord(subject_for(old, type_name, agent), "01ID", b"{}")
    moved = retarget(record, new)
    assert moved.subject == subject_for(new, type_name, agent)
    assert (moved.msg_id, moved.data) == (record.msg_id, record.data)
    assert (moved is record) == (old == new)


@given(
    st.sampled_from(["nats", "tls", "ws"]),
    st.from_regex(r"[a-z]{1,8}", fullmatch=True),
    st.from_regex(r"[A-Z0-9!$%^&*()_+=-]{8,24}", fullmatch=True),
    st.booleans(),
)
def test_a_nats_url_is_shown_without_its_secret(scheme: str, user: str, secret: str, token_only: bool) -> None:
    userinfo = secret if token_only else f"{user}:{secret}"
    url = f"{scheme}://{userinfo}@nats.test:4222"
    shown = shown_url(f"{url},{scheme}://nats2.test:4222")
    assert secret not in shown
    assert shown == f"{scheme}://{'' if token_only else user + ':'}***@nats.test:4222,{scheme}://nats2.test:4222"
