"""Review activity on an agent's pull requests, and which of it still wants an answer.

Pure: plain frozen data in, plain data out, no I/O and no clock. The client
(`forge.client`) fetches a :class:`ReviewActivity` in one GraphQL round trip;
:func:`unaddressed` decides what to surface to the agent. The records are
`agent_smith.record` classes, not dataclasses: the Stop hook imports this
module in a new process every time.

The rules, which the original watcher got wrong:

- only other people's activity counts, never the agent's own, and of theirs
  only what someone the crew trusts wrote: the repository's owner, members
  and collaborators (GitHub's ``authorAssociation``), and the crew's other
  agents. On a public repository anyone can comment or submit a review; a
  stranger's words must not wake the agent, reach its model, or count as an
  approval. Their activity is left out as if it were not there: no count of
  it either, which would only send the agent to read it;
- a review thread is addressed when it is resolved, or when its last word
  among the agent and those trusted is the agent's; a new reply from someone
  trusted makes it unaddressed again;
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
    "TRUSTED_ASSOCIATIONS",
    "Comment",
    "Item",
    "ItemKind",
    "PullRequestActivity",
    "Review",
    "ReviewActivity",
    "Thread",
    "unaddressed",
]

# GitHub's CommentAuthorAssociation values of those its owners chose: the repository's owner, the
# members of the organisation owning it, and the collaborators it invited. CONTRIBUTOR (a merged
# commit), FIRST_TIME_CONTRIBUTOR, FIRST_TIMER, MANNEQUIN and NONE can be anyone on a public
# repository.
TRUSTED_ASSOCIATIONS = frozenset({"OWNER", "MEMBER", "COLLABORATOR"})


class Review(Record):
    _fields = ("id", "author", "association", "state", "body", "submitted_at", "url")
    __slots__ = _fields
    id: str
    author: str
    association: str  # GitHub's CommentAuthorAssociation: OWNER | MEMBER | COLLABORATOR | CONTRIBUTOR | NONE | …
    state: str  # APPROVED | CHANGES_REQUESTED | COMMENTED | DISMISSED | PENDING
    body: str
    submitted_at: dt.datetime
    url: str

    def __init__(
        self, id: str, author: str, association: str, state: str, body: str, submitted_at: dt.datetime, url: str
    ) -> None:
        fill(self, id, author, association, state, body, submitted_at, url)


class Comment(Record):
    """A comment on the pull request's conversation (an issue comment), or in a review thread."""

    _fields = ("id", "author", "association", "body", "created_at", "url")

    __slots__ = _fields
    id: str
    author: str
    association: str  # GitHub's CommentAuthorAssociation
    body: str
    created_at: dt.datetime
    url: str

    def __init__(self, id: str, author: str, association: str, body: str, created_at: dt.datetime, url: str) -> None:
        fill(self, id, author, association, body, created_at, url)


class Thread(Record):
    """An inline review thread, with its newest comments (oldest first)."""

    _fields = ("id", "is_resolved", "path", "line", "comments")

    __slots__ = _fields
    id: str
    is_resolved: bool
    path: str
    line: int | None
    comments: tuple[Comment, ...]

    def __init__(self, id: str, is_resolved: bool, path: str, line: int | None, comments: tuple[Comment, ...]) -> None:
        fill(self, id, is_resolved, path, line, comments)


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


def _items(pr: PullRequestActivity, login: str, teammates: frozenset[str]) -> Iterable[Item]:
    def own(author: str) -> bool:
        return _same(author, login)

    def counts(author: str, association: str) -> bool:
        # A teammate agent counts whatever GitHub calls it: its bot account need not be a collaborator.
        return association in TRUSTED_ASSOCIATIONS or author.casefold() in teammates

    own_comments = [c.created_at for c in pr.comments if own(c.author)]
    last_own = max(own_comments) if own_comments else None

    def answered(at: dt.datetime) -> bool:
        return last_own is not None and last_own > at

    for t in pr.threads:
        # An outsider's reply is passed over, so it neither re-opens a thread the agent answered nor
        # puts its words in place of a reviewer's.
        said = [c for c in t.comments if own(c.author) or counts(c.author, c.association)]
        if t.is_resolved or not said or own(said[-1].author):
            continue
        last = said[-1]
        yield Item(
            # The last comment is part of the key: a new reply re-opens the conversation.
            f"thread:{t.id}:{last.id}",
            ItemKind.THREAD,
            pr.repo,
            pr.number,
            last.author,
            last.created_at,
            last.body,
            last.url,
            t.path,
            t.line,
        )
    for r in pr.reviews:
        if own(r.author) or not counts(r.author, r.association) or answered(r.submitted_at):
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
        if own(c.author) or not counts(c.author, c.association) or answered(c.created_at):
            continue
        yield Item(f"comment:{c.id}", ItemKind.COMMENT, pr.repo, pr.number, c.author, c.created_at, c.body, c.url)


def unaddressed(
    activity: ReviewActivity, surfaced: frozenset[str] = frozenset(), teammates: Iterable[str] = ()
) -> tuple[Item, ...]:
    """The items of ``activity`` still waiting for ``activity.login``, oldest first, leaving out
    those whose keys are in ``surfaced``. Only the words of the repository's owner, members and
    collaborators count, and those of ``teammates`` (the GitHub logins of the crew's other agents)."""
    crew = frozenset(t.casefold() for t in teammates)
    found = {
        item.key: item
        for pr in activity.pull_requests
        for item in _items(pr, activity.login, crew)
        if item.key not in surfaced
    }
    return tuple(sorted(found.values(), key=lambda i: (i.at, i.repo, i.number, i.key)))
