"""The pure decision: which review activity on an agent's pull requests is unaddressed."""

from __future__ import annotations

import datetime as dt
import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from agent_smith.forge import (
    Comment,
    ItemKind,
    PullRequestActivity,
    Review,
    ReviewActivity,
    Thread,
    unaddressed,
)

AGENT = "alice"
T0 = dt.datetime(2026, 11, 25, tzinfo=dt.UTC)


def _at(minute: int) -> dt.datetime:
    return T0 + dt.timedelta(minutes=minute)


def _thread(i: int, author: str, resolved: bool = False, minute: int = 0, last: str = "c") -> Thread:
    return Thread(f"T{i}", resolved, "a.py", 3, f"{last}{i}", author, _at(minute), "why?", f"u/t{i}")


def _activity(*prs: PullRequestActivity, login: str = AGENT) -> ReviewActivity:
    return ReviewActivity(login, prs)


def _pr(
    threads: tuple[Thread, ...] = (),
    reviews: tuple[Review, ...] = (),
    comments: tuple[Comment, ...] = (),
    number: int = 1,
) -> PullRequestActivity:
    return PullRequestActivity("o/r", number, "t", f"u/{number}", threads, reviews, comments)


# Every combination for one thread: resolved?, whose last word?, surfaced before?
@pytest.mark.parametrize(
    ("resolved", "last_author", "surfaced", "expected"),
    [
        (resolved, author, surfaced, not resolved and author != AGENT and not surfaced)
        for resolved, author, surfaced in itertools.product(
            (False, True), (AGENT, "ALICE", "bob", "ghost"), (False, True)
        )
    ],
)
def test_one_thread_every_case(resolved: bool, last_author: str, surfaced: bool, expected: bool) -> None:
    t = _thread(1, last_author, resolved)
    seen = frozenset({"thread:T1:c1"}) if surfaced else frozenset()
    items = unaddressed(_activity(_pr((t,))), seen)
    own = last_author.casefold() == AGENT
    assert bool(items) == (expected and not own)


def test_a_new_reply_from_someone_else_resurfaces_a_thread() -> None:
    first = _thread(1, "bob", minute=1, last="c")
    [item] = unaddressed(_activity(_pr((first,))))
    replied = _thread(1, "bob", minute=5, last="d")
    assert [i.key for i in unaddressed(_activity(_pr((replied,))), frozenset({item.key}))] == ["thread:T1:d1"]


@pytest.mark.parametrize(
    ("state", "body", "counts"),
    [
        ("APPROVED", "", True),
        ("CHANGES_REQUESTED", "fix it", True),
        ("COMMENTED", "overall fine", True),
        ("COMMENTED", "  ", False),  # only the envelope of inline comments
        ("DISMISSED", "old", False),
        ("PENDING", "draft", False),
    ],
)
def test_reviews_by_others(state: str, body: str, counts: bool) -> None:
    review = Review("R1", "bob", state, body, _at(1), "u/r1")
    items = unaddressed(_activity(_pr(reviews=(review,))))
    assert [i.kind for i in items] == ([ItemKind.REVIEW] if counts else [])


def test_a_later_word_from_the_agent_addresses_reviews_and_comments() -> None:
    review = Review("R1", "bob", "CHANGES_REQUESTED", "fix", _at(1), "u")
    theirs = Comment("C1", "carol", "and docs?", _at(2), "u")
    mine = Comment("C2", AGENT, "done both", _at(3), "u")
    later = Comment("C3", "carol", "thanks, one more", _at(4), "u")
    items = unaddressed(_activity(_pr(reviews=(review,), comments=(theirs, mine, later))))
    assert [i.key for i in items] == ["comment:C3"]


# -- properties over arbitrary activity -----------------------------------------------

logins = st.sampled_from([AGENT, "Alice", "bob", "carol", "ghost"])
minutes = st.integers(min_value=0, max_value=30)
threads = st.builds(_thread, st.integers(0, 5), logins, st.booleans(), minutes, st.sampled_from(["c", "d"]))
reviews = st.builds(
    lambda i, a, s, b, m: Review(f"R{i}", a, s, b, _at(m), "u"),
    st.integers(0, 5),
    logins,
    st.sampled_from(["APPROVED", "CHANGES_REQUESTED", "COMMENTED", "DISMISSED", "PENDING"]),
    st.sampled_from(["", "text"]),
    minutes,
)
comments = st.builds(lambda i, a, m: Comment(f"C{i}", a, "text", _at(m), "u"), st.integers(0, 5), logins, minutes)


def _unique_ids(pr: PullRequestActivity) -> PullRequestActivity:
    """GitHub's node ids are global: make the generated ones so across pull requests."""
    n = pr.number
    return PullRequestActivity(
        pr.repo,
        n,
        pr.title,
        pr.url,
        tuple(
            Thread(
                f"{n}{t.id}",
                t.is_resolved,
                t.path,
                t.line,
                t.last_comment_id,
                t.last_author,
                t.last_at,
                t.last_body,
                t.url,
            )
            for t in pr.threads
        ),
        tuple(Review(f"{n}{r.id}", r.author, r.state, r.body, r.submitted_at, r.url) for r in pr.reviews),
        tuple(Comment(f"{n}{c.id}", c.author, c.body, c.created_at, c.url) for c in pr.comments),
    )


prs = st.builds(
    _pr,
    st.lists(threads, max_size=4, unique_by=lambda t: t.id).map(tuple),
    st.lists(reviews, max_size=4, unique_by=lambda r: r.id).map(tuple),
    st.lists(comments, max_size=4, unique_by=lambda c: c.id).map(tuple),
    st.integers(1, 4),
).map(_unique_ids)
activities = st.lists(prs, max_size=4, unique_by=lambda p: p.number).map(lambda ps: ReviewActivity(AGENT, tuple(ps)))


def _all_keys(a: ReviewActivity) -> set[str]:
    keys = set()
    for pr in a.pull_requests:
        keys |= {f"thread:{t.id}:{t.last_comment_id}" for t in pr.threads}
        keys |= {f"review:{r.id}" for r in pr.reviews} | {f"comment:{c.id}" for c in pr.comments}
    return keys


@given(activities, st.data())
def test_properties(activity: ReviewActivity, data: st.DataObject) -> None:
    surfaced = data.draw(st.sets(st.sampled_from(sorted(_all_keys(activity) | {"review:none"}))))
    seen = frozenset(surfaced)
    items = unaddressed(activity, seen)
    by_key = {
        **{f"thread:{t.id}:{t.last_comment_id}": t for p in activity.pull_requests for t in p.threads},
    }
    for item in items:
        assert item.author.casefold() != AGENT  # never the agent's own activity
        assert item.key not in seen  # never twice
        assert item.key in _all_keys(activity)
        if item.kind is ItemKind.THREAD:
            assert not by_key[item.key].is_resolved
    # surfacing what came back leaves nothing to surface
    assert unaddressed(activity, seen | {i.key for i in items}) == ()
    # oldest first, and the order of pull requests does not matter
    assert [i.at for i in items] == sorted(i.at for i in items)
    flipped = ReviewActivity(AGENT, tuple(reversed(activity.pull_requests)))
    assert set(unaddressed(flipped, seen)) == set(items)


@given(activities)
def test_every_open_thread_with_another_persons_last_word_surfaces(activity: ReviewActivity) -> None:
    keys = {i.key for i in unaddressed(activity)}
    for pr in activity.pull_requests:
        for t in pr.threads:
            wanted = not t.is_resolved and t.last_author.casefold() != AGENT
            assert (f"thread:{t.id}:{t.last_comment_id}" in keys) == wanted


@given(activities, minutes)
def test_the_agents_own_activity_never_adds_items(activity: ReviewActivity, minute: int) -> None:
    before = set(unaddressed(activity))
    mine = Comment("C-own", AGENT, "mine", _at(minute), "u")
    more = ReviewActivity(
        AGENT,
        tuple(
            PullRequestActivity(p.repo, p.number, p.title, p.url, p.threads, p.reviews, (*p.comments, mine))
            for p in activity.pull_requests
        ),
    )
    assert set(unaddressed(more)) <= before
