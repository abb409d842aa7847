"""Review activity on an agent's pull requests, and which of it still wants an answer.

Pure: plain frozen data in, plain data out, no I/O and no clock. The client
(`forge.client`) fetches a :class:`ReviewActivity` in one GraphQL round trip;
:func:`unaddressed` decides what to surface to the agent. The records are
`agent_smith.record` classes, not dataclasses: the Stop hook imports this
module in a new process every time.

The rules, which the original watcher got wrong:

- only other people's activity counts, never the agent's own;
- a review thread is addressed when it is resolved, or when its last word is
  the agent's; a new reply from someone else makes it unaddressed again;
- a review or conversation comment is addressed once the agent has written on
  that pull request's conversation after it;
- a review with no body and no verdict is only the envelope of inline
  comments, which surface as their threads;
- an item surfaced once is not surfaced again (its key is in ``surfaced``).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from enum import StrEnum

from agent_smith.record import Record, fill

__all__ = [
    "Comment",
    "Item",
    "ItemKind",
    "PullRequestActivity",
    "Review",
    "ReviewActivity",
    "Thread",
    "unaddressed",
]


class Thread(Record):
    """An inline review thread; ``last_*`` describe its newest comment."""

    _fields = (
        "id",
        "is_resolved",
        "path",
        "line",
        "last_comment_id",
        "last_author",
        "last_at",
        "last_body",
        "url",
    )

    __slots__ = _fields
    id: str
    is_resolved: bool
    path: str
    line: int | None
    last_comment_id: str
    last_author: str
    last_at: dt.datetime
    last_body: str
    url: str

    def __init__(
        self,
        id: str,
        is_resolved: bool,
        path: str,
        line: int | None,
        last_comment_id: str,
        last_author: str,
        last_at: dt.datetime,
        last_body: str,
        url: str,
    ) -> None:
        fill(self, id, is_resolved, path, line, last_comment_id, last_author, last_at, last_body, url)


class Review(Record):
    _fields = ("id", "author", "state", "body", "submitted_at", "url")
    __slots__ = _fields
    id: str
    author: str
    state: str  # APPROVED | CHANGES_REQUESTED | COMMENTED | DISMISSED | PENDING
    body: str
    submitted_at: dt.datetime
    url: str

    def __init__(self, id: str, author: str, state: str, body: str, submitted_at: dt.datetime, url: str) -> None:
        fill(self, id, author, state, body, submitted_at, url)


class Comment(Record):
    """A comment on the pull request's conversation (an issue comment)."""

    _fields = ("id", "author", "body", "created_at", "url")

    __slots__ = _fields
    id: str
    author: str
    body: str
    created_at: dt.datetime
    url: str

    def __init__(self, id: str, author: str, body: str, created_at: dt.datetime, url: str) -> None:
        fill(self, id, author, body, created_at, url)


class PullRequestActivity(Record):
    _fields = ("repo", "number", "title", "url", "threads", "reviews", "comments")
    __slots__ = _fields
    repo: str
    number: int
    title: str
    url: str
    threads: tuple[Thread, ...]
    reviews: tuple[Review, ...]
    comments: tuple[Comment, ...]

    def __init__(
        self,
        repo: str,
        number: int,
        title: str,
        url: str,
        threads: tuple[Thread, ...] = (),
        reviews: tuple[Review, ...] = (),
        comments: tuple[Comment, ...] = (),
    ) -> None:
        fill(self, repo, number, title, url, threads, reviews, comments)


class ReviewActivity(Record):
    """Everything one check saw: the login's open pull requests and their talk."""

    _fields = ("login", "pull_requests")

    __slots__ = _fields
    login: str
    pull_requests: tuple[PullRequestActivity, ...]

    def __init__(self, login: str, pull_requests: tuple[PullRequestActivity, ...]) -> None:
        fill(self, login, pull_requests)


class ItemKind(StrEnum):
    THREAD = "thread"
    REVIEW = "review"
    COMMENT = "comment"


class Item(Record):
    """One thing someone else said that the agent has not answered."""

    _fields = ("key", "kind", "repo", "number", "author", "at", "body", "url", "path", "line", "state")

    __slots__ = _fields
    key: str
    kind: ItemKind
    repo: str
    number: int
    author: str
    at: dt.datetime
    body: str
    url: str
    path: str | None
    line: int | None
    state: str | None

    def __init__(
        self,
        key: str,
        kind: ItemKind,
        repo: str,
        number: int,
        author: str,
        at: dt.datetime,
        body: str,
        url: str,
        path: str | None = None,
        line: int | None = None,
        state: str | None = None,
    ) -> None:
        fill(self, key, kind, repo, number, author, at, body, url, path, line, state)


def _same(a: str, b: str) -> bool:
    return a.casefold() == b.casefold()


def _thread_key(t: Thread) -> str:
    # The last comment is part of the key: a new reply re-opens the conversation.
    return f"thread:{t.id}:{t.last_comment_id}"


def _items(pr: PullRequestActivity, login: str) -> Iterable[Item]:
    own_comments = [c.created_at for c in pr.comments if _same(c.author, login)]
    last_own = max(own_comments) if own_comments else None

    def answered(at: dt.datetime) -> bool:
        return last_own is not None and last_own > at

    for t in pr.threads:
        if t.is_resolved or _same(t.last_author, login):
            continue
        yield Item(
            _thread_key(t),
            ItemKind.THREAD,
            pr.repo,
            pr.number,
            t.last_author,
            t.last_at,
            t.last_body,
            t.url,
            t.path,
            t.line,
        )
    for r in pr.reviews:
        if _same(r.author, login) or answered(r.submitted_at):
            continue
        if r.state in ("PENDING", "DISMISSED"):
            continue
        if r.state == "COMMENTED" and not r.body.strip():
            continue
        yield Item(
            f"review:{r.id}",
            ItemKind.REVIEW,
            pr.repo,
            pr.number,
            r.author,
            r.submitted_at,
            r.body,
            r.url,
            state=r.state,
        )
    for c in pr.comments:
        if _same(c.author, login) or answered(c.created_at):
            continue
        yield Item(f"comment:{c.id}", ItemKind.COMMENT, pr.repo, pr.number, c.author, c.created_at, c.body, c.url)


def unaddressed(activity: ReviewActivity, surfaced: frozenset[str] = frozenset()) -> tuple[Item, ...]:
    """The items of ``activity`` still waiting for ``activity.login``, oldest first,
    leaving out those whose keys are in ``surfaced``."""
    found = {
        item.key: item
        for pr in activity.pull_requests
        for item in _items(pr, activity.login)
        if item.key not in surfaced
    }
    return tuple(sorted(found.values(), key=lambda i: (i.at, i.repo, i.number, i.key)))
