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

REVIEW_ACTIVITY_QUERY = """
query ReviewActivity($q: String!) {
  search(query: $q, type: ISSUE, first: 100) {
    issueCount
    nodes {
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
      }
    }
  }
}
"""

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
    for node in data["search"]["nodes"]:
        if not node:
            continue
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


def review_activity_search(login: str, repos: Sequence[str] | None) -> str:
    """The ReviewActivity query's search: the login's open PRs, in `repos` when given."""
    qualifiers = ["is:pr", "is:open", "archived:false", f"author:{login}"]
    qualifiers += [f"repo:{repo_path(r)}" for r in repos or ()]
    return " ".join(qualifiers)


def repo_path(repo: str) -> str:
    owner, sep, name = repo.partition("/")
    if not sep or not owner or not name or "/" in name:
        from agent_smith.errors import UsageError  # here: errors imports dataclasses, the hooks avoid it

        raise UsageError(f"repository {repo!r} is not OWNER/NAME")
    return f"{quote(owner, safe='')}/{quote(name, safe='')}"
