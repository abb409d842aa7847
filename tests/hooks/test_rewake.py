"""The Stop hook's decision: surface each item once, wake only on growth, cap wakes per PR per hour."""

from __future__ import annotations

import datetime as dt

from hypothesis import given, settings
from hypothesis import strategies as st

from agent_smith.hooks.rewake import (
    WINDOW,
    Activity,
    Held,
    Limits,
    PullRequest,
    RewakeState,
    Wake,
    decide,
    excerpt,
    read_state,
)

T0 = dt.datetime(2026, 11, 25, 12, 0, tzinfo=dt.UTC)
PR = PullRequest("acme/widgets", 7, "Add retries", "https://ghe.test/acme/widgets/pull/7")


def item(key: str, number: int = 7, body: str = "please rename this", author: str = "reviewbot") -> Activity:
    return Activity(
        key, "acme/widgets", number, author, "thread", body, f"https://ghe.test/x#{key}", "src/retry.py", 42
    )


def test_new_items_wake_with_pr_and_comment_in_the_reason() -> None:
    state, decision = decide(RewakeState(), [item("t1")], [PR], T0)
    assert isinstance(decision, Wake)
    assert "acme/widgets#7" in decision.reason
    assert "https://ghe.test/acme/widgets/pull/7" in decision.reason
    assert '"Add retries"' in decision.reason
    assert "reviewbot on src/retry.py:42" in decision.reason
    assert "please rename this" in decision.reason
    assert set(state.surfaced) == {"t1"}


def test_the_same_items_never_wake_twice() -> None:
    state, _ = decide(RewakeState(), [item("t1")], [PR], T0)
    state, decision = decide(state, [item("t1")], [PR], T0 + dt.timedelta(minutes=5))
    assert isinstance(decision, Held)
    assert decision.held == ()


def test_growth_wakes_with_only_the_new_item() -> None:
    state, _ = decide(RewakeState(), [item("t1")], [PR], T0)
    _, decision = decide(state, [item("t1"), item("t2", body="and this")], [PR], T0 + dt.timedelta(minutes=1))
    assert isinstance(decision, Wake)
    assert [i.key for i in decision.items] == ["t2"]


def test_the_loop_guard_caps_wakes_per_pr_per_hour_and_says_so() -> None:
    limits = Limits(wakes_per_pr_per_hour=3)
    state = RewakeState()
    reasons = []
    for n in range(3):
        state, decision = decide(state, [item(f"t{n}")], [PR], T0 + dt.timedelta(minutes=n), limits)
        assert isinstance(decision, Wake)
        reasons.append(decision.reason)
    assert "Loop guard" not in reasons[0]
    assert "Loop guard: this is the last wake this hour for acme/widgets#7" in reasons[2]
    state, decision = decide(state, [item("t9")], [PR], T0 + dt.timedelta(minutes=10), limits)
    # held (not lost) until the first of the three wakes leaves the hour's window
    assert decision == Held(("acme/widgets#7",), T0 + WINDOW)
    assert "t9" not in state.surfaced
    _, later = decide(state, [item("t9")], [PR], T0 + WINDOW + dt.timedelta(minutes=1), limits)
    assert isinstance(later, Wake)
    assert [i.key for i in later.items] == ["t9"]


def test_the_guard_is_per_pull_request() -> None:
    other = PullRequest("acme/widgets", 8, "Other", "https://ghe.test/acme/widgets/pull/8")
    state = RewakeState()
    for n in range(3):
        state, _ = decide(state, [item(f"t{n}")], [PR, other], T0, Limits(3))
    _, decision = decide(state, [item("t9"), item("o1", number=8)], [PR, other], T0, Limits(3))
    assert isinstance(decision, Wake)
    assert [i.key for i in decision.items] == ["o1"]


def test_reason_is_capped_and_excerpts_bounded() -> None:
    many = [item(f"t{n}", body="word " * 400) for n in range(40)]
    state, decision = decide(RewakeState(), many, [PR], T0, Limits(excerpt_chars=100, reason_chars=1500))
    assert isinstance(decision, Wake)
    assert len(decision.reason) <= 1500
    assert f"… {40 - len(decision.items)} more item(s) not shown here: they come at your next wake" in decision.reason
    assert all(len(line) < 250 for line in decision.reason.splitlines())
    assert set(state.surfaced) == {i.key for i in decision.items}


def test_items_cut_from_the_reason_are_not_surfaced_and_come_at_the_next_wake() -> None:
    """Cut excerpts, not PRs: every PR with activity keeps its header line, and an item the cap
    left out of the reason is shown at the next wake rather than lost."""
    prs = [PullRequest("acme/widgets", n, f"PR {n}", f"https://ghe.test/acme/widgets/pull/{n}") for n in (7, 8, 9)]
    busy = [item(f"b{n}", body=f"nit {n} " + "word " * 60) for n in range(12)]
    newest = [item("n8", number=8, body="the newest comment"), item("n9", number=9, body="and on nine")]
    limits = Limits(excerpt_chars=280, reason_chars=1500)
    state, decision = decide(RewakeState(), busy + newest, prs, T0, limits)
    assert isinstance(decision, Wake)
    for pr in prs:
        assert f'{pr.pr} "{pr.title}" — {pr.url}' in decision.reason
    shown = {i.key for i in decision.items}
    assert {"n8", "n9"} <= shown  # each PR's first item, whatever the busy one says
    assert all(f"#{i.key})" in decision.reason for i in decision.items)
    assert set(state.surfaced) == shown
    assert len(decision.reason) <= 1500
    left = [i.key for i in busy if i.key not in shown]
    assert left, "the cap cut some items"
    _, later = decide(state, busy + newest, prs, T0 + dt.timedelta(minutes=2), limits)
    assert isinstance(later, Wake)
    assert [i.key for i in later.items][: len(left)] == left[: len(later.items)]


def test_the_loop_guard_notice_survives_the_length_cap() -> None:
    many = [item(f"t{n}", body="word " * 400) for n in range(40)]
    limits = Limits(wakes_per_pr_per_hour=1, excerpt_chars=280, reason_chars=1200)
    _, decision = decide(RewakeState(), many, [PR], T0, limits)
    assert isinstance(decision, Wake)
    assert len(decision.reason) <= 1200
    assert "Loop guard: this is the last wake this hour for acme/widgets#7" in decision.reason


def _prs_of(numbers: list[int]) -> list[PullRequest]:
    return [PullRequest("acme/widgets", n, f"T{n}", f"https://ghe.test/acme/widgets/pull/{n}") for n in numbers]


@settings(max_examples=300)
@given(
    st.lists(
        st.tuples(st.integers(min_value=1, max_value=6), st.text(max_size=600)), min_size=1, max_size=30, unique_by=str
    ),
    st.integers(min_value=1, max_value=3),
    st.integers(min_value=1, max_value=400),
    st.integers(min_value=200, max_value=5000),
)
def test_what_the_reason_shows_is_exactly_what_is_surfaced(
    raw: list[tuple[int, str]], cap: int, excerpt_chars: int, reason_chars: int
) -> None:
    items = [item(f"k{n}", number=number, body=body) for n, (number, body) in enumerate(raw)]
    prs = _prs_of(sorted({i.number for i in items}))
    limits = Limits(cap, excerpt_chars, reason_chars)
    state, decision = decide(RewakeState(), items, prs, T0, limits)
    assert isinstance(decision, Wake)
    lines = decision.reason.splitlines()
    for pr in prs:  # every PR keeps its header line
        assert f'{pr.pr} "{pr.title}" — {pr.url}' in lines
    if cap == 1:  # every woken PR is at its cap: the notice is there, whatever the length
        assert lines[-1].startswith("Loop guard: this is the last wake this hour for ")
    shown = {i.key for i in decision.items}
    assert set(state.surfaced) == shown
    described = {line.split("(https://ghe.test/x#", 1)[1].split(")", 1)[0] for line in lines if line.startswith("  - ")}
    assert described == shown
    mandatory = len(decide(RewakeState(), items, prs, T0, Limits(cap, excerpt_chars, 0))[1].reason)
    assert len(decision.reason) <= max(reason_chars, mandatory)


def test_state_round_trips_through_json_and_prunes_old_entries() -> None:
    state, _ = decide(RewakeState(), [item("t1")], [PR], T0)
    again = RewakeState.from_json(state.to_json())
    assert again == state
    much_later = T0 + dt.timedelta(days=31)
    pruned, decision = decide(again, [], [PR], much_later)
    assert pruned.surfaced == {}
    assert pruned.wakes == {}
    assert isinstance(decision, Held)


keys = st.lists(st.sampled_from([f"k{n}" for n in range(12)]), max_size=8)


@settings(max_examples=300)
@given(st.lists(st.tuples(keys, st.integers(min_value=0, max_value=200)), max_size=12))
def test_every_item_is_surfaced_at_most_once_and_never_lost(rounds: list[tuple[list[str], int]]) -> None:
    """Over any sequence of checks: no item is woken for twice within its retention; and an item
    still present once the guard window has room again is surfaced."""
    state = RewakeState()
    now = T0
    woken: list[str] = []
    for keys_now, minutes in rounds:
        now = now + dt.timedelta(minutes=minutes)
        state, decision = decide(state, [item(k, number=1 + int(k[1:]) % 2) for k in keys_now], [PR], now)
        if isinstance(decision, Wake):
            woken.extend(i.key for i in decision.items)
    assert len(woken) == len(set(woken))
    final = sorted({k for keys_now, _ in rounds for k in keys_now})
    state, decision = decide(state, [item(k, number=1 + int(k[1:]) % 2) for k in final], [PR], now + 2 * WINDOW)
    surfaced_now = [i.key for i in decision.items] if isinstance(decision, Wake) else []
    assert set(woken) | set(surfaced_now) == set(final)


@given(st.text(max_size=500), st.integers(min_value=1, max_value=300))
def test_excerpt_is_one_bounded_line(text: str, limit: int) -> None:
    cut = excerpt(text, limit)
    assert len(cut) <= limit
    assert "\n" not in cut


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=30) | st.sampled_from(["2026-12-07T10:00:00", "now"]),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)
stored_times = st.one_of(st.just(T0.isoformat()), st.just("2026-12-07T10:00:00"), json_values)


@given(
    st.dictionaries(
        st.sampled_from(["surfaced", "wakes", "other"]),
        st.one_of(
            json_values,
            st.dictionaries(st.text(max_size=8), st.one_of(stored_times, st.lists(stored_times, max_size=3))),
        ),
    )
)
def test_any_stored_state_reads_as_aware_times_dropping_the_rest(data: dict[str, object]) -> None:
    state, _ = read_state(data)
    times = [*state.surfaced.values(), *(t for ts in state.wakes.values() for t in ts)]
    assert all(t.utcoffset() is not None for t in times)
    decide(state, [item("t1")], [PR], T0)  # and the decision can compare them with now
    assert read_state(state.to_json()) == (state, ())


def test_a_time_without_a_zone_is_dropped_and_named() -> None:
    state, dropped = read_state(
        {"surfaced": {"a": "2026-12-07T10:00:00", "b": T0.isoformat()}, "wakes": {"x#1": [T0.isoformat(), "soon"]}}
    )
    assert state == RewakeState({"b": T0}, {})
    assert dropped == ("surfaced a", "wakes x#1")
