"""Gathering review activity a page at a time: which requests follow an answer (pure)."""

from __future__ import annotations

from typing import Any

import pytest

from agent_smith.errors import OperationError
from agent_smith.forge.query import MAX_ROUNDS, ReviewActivityPages

REPO = "carol/widgets"


def _thread(n: int) -> dict[str, Any]:
    comment = {
        "id": f"C{n}",
        "author": {"login": "bob"},
        "authorAssociation": "COLLABORATOR",
        "body": f"t{n}",
        "createdAt": "2026-01-01T00:00:00Z",
        "url": "u",
    }
    return {"id": f"T{n}", "isResolved": False, "path": "a.py", "line": n, "comments": {"nodes": [comment]}}


def _pull(number: int, threads: list[int], before: str | None = None) -> dict[str, Any]:
    return {
        "id": f"PR{number}",
        "number": number,
        "title": f"PR {number}",
        "url": f"https://github.example/{REPO}/pull/{number}",
        "repository": {"nameWithOwner": REPO},
        "reviewThreads": {
            "pageInfo": {"hasPreviousPage": before is not None, "startCursor": before},
            "nodes": [_thread(n) for n in threads],
        },
        "reviews": {"nodes": []},
        "comments": {"nodes": []},
    }


def _search(pulls: list[dict[str, Any]], after: str | None = None) -> dict[str, Any]:
    return {
        "issueCount": 0,
        "pageInfo": {"hasNextPage": after is not None, "endCursor": after},
        "nodes": pulls,
    }


def test_one_request_when_no_page_is_full() -> None:
    pages = ReviewActivityPages("alice", [REPO])
    first = pages.request()
    assert first is not None
    assert "search(query: $q0, type: ISSUE, first: 100)" in first[0]
    pages.add({"s0": _search([_pull(1, [1, 2])])})
    assert pages.request() is None
    [pull] = pages.activity(None).pull_requests
    assert [t.comments[-1].body for t in pull.threads] == ["t1", "t2"]


def test_full_pages_are_followed_in_one_more_round_trip_each() -> None:
    pages = ReviewActivityPages("alice", [REPO])
    pages.request()
    # The first page of PRs is full (a cursor after it), and PR 1's newest threads are (one before).
    pages.add({"s0": _search([_pull(1, [3, 4], before="B1"), _pull(2, [])], after="A1")})
    more = pages.request()
    assert more is not None
    query, variables = more
    assert "search(query: $q0, type: ISSUE, first: 100, after: $a0)" in query
    assert "t0: node(id: $p0)" in query
    assert "reviewThreads(last: 100, before: $b0)" in query
    assert variables == {
        "q0": f"is:pr is:open archived:false author:alice repo:{REPO}",
        "a0": "A1",
        "p0": "PR1",
        "b0": "B1",
    }
    # The next page of PRs repeats PR 2 (the search moved) and brings PR 3 with a full page of its own.
    older = {"reviewThreads": {"pageInfo": {"hasPreviousPage": False, "startCursor": "x"}, "nodes": [_thread(1)]}}
    pages.add({"s0": _search([_pull(2, []), _pull(3, [9], before="B3")]), "t0": older})
    last = pages.request()
    assert last is not None
    assert "search(" not in last[0]
    assert last[1] == {"p0": "PR3", "b0": "B3"}
    pages.add({"t0": None})  # PR 3 went away meanwhile
    assert pages.request() is None
    activity = pages.activity(None)
    assert [p.number for p in activity.pull_requests] == [1, 2, 3]
    assert [t.comments[-1].body for t in activity.pull_requests[0].threads] == ["t1", "t3", "t4"]


def test_a_server_that_never_stops_paging_is_not_followed_forever() -> None:
    pages = ReviewActivityPages("alice", [REPO])
    for _ in range(MAX_ROUNDS):
        assert pages.request() is not None
        pages.add({"s0": _search([], after="again")})
    with pytest.raises(
        OperationError, match=f"review activity of alice: GitHub still had more pages after {MAX_ROUNDS}"
    ):
        pages.request()
