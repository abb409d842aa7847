"""The review-activity query and its answer as plain data. No I/O, no HTTP library.

Both the async client and the Stop hook's one-shot check use these, so a
hook can ask GitHub without importing httpx.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from urllib.parse import quote

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from agent_smith.forge.activity import ReviewActivity

# GitHub does not support a search query longer than this ("Troubleshooting search queries" in
# its docs; the REST search answers 422 "The search is longer than 256 characters."): an agent
# in many repositories has its `repo:` qualifiers split over several searches.
MAX_SEARCH_CHARS = 256

_PULL_REQUEST_FIELDS = """
      ... on PullRequest {
        number
        title
        url
        repository { nameWithOwner }
        reviewThreads(last: 100) {
          nodes {
            id
            isResolved
            path
            line
            comments(last: 1) { nodes { id author { login } body createdAt url } }
          }
        }
        reviews(last: 50) { nodes { id author { login } state body submittedAt url } }
        comments(last: 50) { nodes { id author { login } body createdAt url } }
      }"""


def review_activity_query(searches: int) -> str:
    """The ReviewActivity query for `searches` searches (variables ``q0``, ``q1``…), each under its
    own alias (``s0``, ``s1``…): however many there are, one round trip."""
    variables = ", ".join(f"$q{n}: String!" for n in range(searches))
    fields = "".join(
        f"\n  s{n}: search(query: $q{n}, type: ISSUE, first: 100) {{\n    issueCount\n    nodes {{"
        f"{_PULL_REQUEST_FIELDS}\n    }}\n  }}"
        for n in range(searches)
    )
    return f"query ReviewActivity({variables}) {{{fields}\n}}\n"


def review_activity_request(login: str, repos: Sequence[str] | None) -> tuple[str, dict[str, str]]:
    """The ReviewActivity query and its variables: the login's open PRs, in `repos` when given."""
    searches = review_activity_searches(login, repos)
    return review_activity_query(len(searches)), {f"q{n}": q for n, q in enumerate(searches)}


_GHOST = "ghost"  # GitHub's name for a deleted account


def _when(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text.replace("Z", "+00:00"))


def _login(node: Mapping[str, Any]) -> str:
    author = node.get("author")
    return str(author["login"]) if author else _GHOST


def parse_review_activity(login: str, data: Mapping[str, Any], since: dt.datetime | None) -> ReviewActivity:
    """The :class:`ReviewActivity` in a ReviewActivity query's ``data``."""
    # Imported here so that the Stop hook can send its query before loading the records.
    from agent_smith.forge.activity import Comment, PullRequestActivity, Review, ReviewActivity, Thread

    pulls = []
    seen: set[tuple[str, int]] = set()
    # Each search's nodes (aliased s0, s1…: see `review_activity_query`), each PR once.
    for node in (n for result in data.values() for n in result["nodes"]):
        if not node or (key := (node["repository"]["nameWithOwner"], node["number"])) in seen:
            continue
        seen.add(key)
        threads = []
        for t in node["reviewThreads"]["nodes"]:
            last = (t["comments"]["nodes"] or [None])[-1]
            if t["isResolved"] or last is None:
                continue
            threads.append(
                Thread(
                    t["id"],
                    t["isResolved"],
                    t["path"],
                    t["line"],
                    last["id"],
                    _login(last),
                    _when(last["createdAt"]),
                    last["body"],
                    last["url"],
                )
            )
        reviews = [
            Review(r["id"], _login(r), r["state"], r["body"], _when(r["submittedAt"]), r["url"])
            for r in node["reviews"]["nodes"]
            if r["submittedAt"] and (since is None or _when(r["submittedAt"]) > since)
        ]
        comments = [
            Comment(c["id"], _login(c), c["body"], _when(c["createdAt"]), c["url"])
            for c in node["comments"]["nodes"]
            if since is None or _when(c["createdAt"]) > since
        ]
        pulls.append(
            PullRequestActivity(
                node["repository"]["nameWithOwner"],
                node["number"],
                node["title"],
                node["url"],
                tuple(threads),
                tuple(reviews),
                tuple(comments),
            )
        )
    return ReviewActivity(login, tuple(pulls))


def review_activity_searches(login: str, repos: Sequence[str] | None) -> list[str]:
    """The searches for the login's open PRs, in `repos` when given: as few as fit GitHub's
    `MAX_SEARCH_CHARS` (GitHub takes a search's `repo:` qualifiers as alternatives). Pure."""
    base = ["is:pr", "is:open", "archived:false", f"author:{login}"]
    searches: list[str] = []
    current = list(base)
    for repo in repos or ():
        qualifier = f"repo:{repo_path(repo)}"
        if len(current) > len(base) and len(" ".join([*current, qualifier])) > MAX_SEARCH_CHARS:
            searches.append(" ".join(current))
            current = list(base)
        current.append(qualifier)
    return [*searches, " ".join(current)]


def repo_path(repo: str) -> str:
    owner, sep, name = repo.partition("/")
    if not sep or not owner or not name or "/" in name:
        from agent_smith.errors import UsageError  # here: errors imports dataclasses, the hooks avoid it

        raise UsageError(f"repository {repo!r} is not OWNER/NAME")
    return f"{quote(owner, safe='')}/{quote(name, safe='')}"
