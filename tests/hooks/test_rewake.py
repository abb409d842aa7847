"""The Stop hook's decision: surface each item once, wake only on growth, cap wakes per PR per hour."""

from __future__ import annotations

import datetime as dt

from hypothesis import given, settings
from hypothesis import strategies as st

from agent_smith.hooks.rewake import WINDOW, Activity, Held, Limits, PullRequest, RewakeState, Wake, decide, excerpt

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
    assert decision == Held(("acme/widgets#7",))
    assert "t9" not in state.surfaced  # held, not lost
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
    _, decision = decide(RewakeState(), many, [PR], T0, Limits(excerpt_chars=100, reason_chars=1500))
    assert isinstance(decision, Wake)
    assert len(decision.reason) <= 1500
    assert decision.reason.endswith("(more activity not shown; read the pull requests)")
    assert all(len(line) < 250 for line in decision.reason.splitlines())


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
