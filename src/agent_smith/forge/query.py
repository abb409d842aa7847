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

# GitHub's largest page (`first`/`last` are 1 to 100 on every connection).
PAGE = 100
# Search gives at most 1,000 results (10 pages); a PR's review threads are rarely more than a few
# pages. Past this many round trips the server is taken to be paging in circles.
MAX_ROUNDS = 30
# A thread's newest comments: its last word among the agent and those trusted (`forge.activity`)
# is among them unless outsiders replied more often than this since.
THREAD_COMMENTS = 10

# Every comment and review carries its author's association with the repository (GitHub's
# `authorAssociation`): only those of its owner, members and collaborators count.
_COMMENT_FIELDS = "id author { login } authorAssociation body createdAt url"

_THREAD_FIELDS = f"""
            id
            isResolved
            path
            line
            comments(last: {THREAD_COMMENTS}) {{ nodes {{ {_COMMENT_FIELDS} }} }}"""

# A full page of threads, or of search results, says where the rest begins: the rest is asked for
# in a further round trip (see `ReviewActivityPages`). `last` gives the newest threads first, so
# the older ones are on the pages before.
_PULL_REQUEST_FIELDS = f"""
      ... on PullRequest {{
        id
        number
        title
        url
        repository {{ nameWithOwner }}
        reviewThreads(last: {PAGE}) {{
          pageInfo {{ hasPreviousPage startCursor }}
          nodes {{{_THREAD_FIELDS}
          }}
        }}
        # Not paged: a review or comment is addressed once the agent wrote after it, so older ones
        # than the newest 50 cannot change what waits for the agent.
        reviews(last: 50) {{ nodes {{ id author {{ login }} authorAssociation state body submittedAt url }} }}
        comments(last: 50) {{ nodes {{ {_COMMENT_FIELDS} }} }}
      }}"""


_SEARCH_FIELDS = f"""
    issueCount
    pageInfo {{ hasNextPage endCursor }}
    nodes {{{_PULL_REQUEST_FIELDS}
    }}"""


def review_activity_query(searches: int) -> str:
    """The ReviewActivity query for `searches` searches (variables ``q0``, ``q1``…), each under its
    own alias (``s0``, ``s1``…): however many there are, one round trip."""
    variables = ", ".join(f"$q{n}: String!" for n in range(searches))
    fields = "".join(
        f"\n  s{n}: search(query: $q{n}, type: ISSUE, first: {PAGE}) {{{_SEARCH_FIELDS}\n  }}" for n in range(searches)
    )
    return f"query ReviewActivity({variables}) {{{fields}\n}}\n"


def review_activity_request(login: str, repos: Sequence[str] | None) -> tuple[str, dict[str, str]]:
    """The ReviewActivity query and its variables: the login's open PRs, in `repos` when given."""
    searches = review_activity_searches(login, repos)
    return review_activity_query(len(searches)), {f"q{n}": q for n, q in enumerate(searches)}


def _more_query(searches: int, threads: int) -> str:
    """The query for what full pages said continues: `searches` searches from a cursor (``$q``,
    ``$a``; aliases ``s…``) and `threads` PRs' older review threads (``$p``, ``$b``; aliases ``t…``)."""
    variables = [f"$q{n}: String!, $a{n}: String!" for n in range(searches)]
    variables += [f"$p{n}: ID!, $b{n}: String!" for n in range(threads)]
    fields = [
        f"\n  s{n}: search(query: $q{n}, type: ISSUE, first: {PAGE}, after: $a{n}) {{{_SEARCH_FIELDS}\n  }}"
        for n in range(searches)
    ]
    fields += [
        f"\n  t{n}: node(id: $p{n}) {{\n    ... on PullRequest {{\n      reviewThreads(last: {PAGE}, before: $b{n}) {{"
        f"\n        pageInfo {{ hasPreviousPage startCursor }}\n        nodes {{{_THREAD_FIELDS}\n        }}"
        "\n      }\n    }\n  }"
        for n in range(threads)
    ]
    return f"query ReviewActivityMore({', '.join(variables)}) {{{''.join(fields)}\n}}\n"


class ReviewActivityPages:
    """A login's review activity, gathered a page at a time. Pure: the caller sends each
    :meth:`request` and hands its answer's ``data`` to :meth:`add`, until there is no request left.

    The first request is `review_activity_request`'s; there is another only when a page came back
    full (more than 100 open PRs in a search, or more than 100 review threads on a PR), asking in
    one round trip for the next page of each. Without it those would be dropped unseen: search
    results past the first page, and a PR's oldest threads.
    """

    def __init__(self, login: str, repos: Sequence[str] | None) -> None:
        self.login = login
        self.rounds = 0
        self._searches = review_activity_searches(login, repos)
        self._pulls: dict[tuple[str, int], dict[str, Any]] = {}  # each PR's node, as first seen
        self._more_searches: list[tuple[str, str]] = []  # (search, cursor after its last page)
        self._more_threads: list[tuple[tuple[str, int], str]] = []  # (PR, cursor before its oldest threads)
        self._asked_searches: list[str] = []
        self._asked_threads: list[tuple[str, int]] = []

    def request(self) -> tuple[str, dict[str, str]] | None:
        """The next query and its variables; None once every page is in."""
        if self.rounds == 0:
            self._asked_searches, self._asked_threads = list(self._searches), []
            query = review_activity_query(len(self._searches))
            variables = {f"q{n}": q for n, q in enumerate(self._searches)}
        elif not self._more_searches and not self._more_threads:
            return None
        elif self.rounds >= MAX_ROUNDS:
            from agent_smith.errors import OperationError  # here: errors imports dataclasses, the hooks avoid it

            raise OperationError(
                f"review activity of {self.login}: GitHub still had more pages after {MAX_ROUNDS} requests"
            )
        else:
            searches, threads = self._more_searches, self._more_threads
            self._more_searches, self._more_threads = [], []
            self._asked_searches = [search for search, _ in searches]
            self._asked_threads = [key for key, _ in threads]
            query = _more_query(len(searches), len(threads))
            variables = {}
            for n, (search, after) in enumerate(searches):
                variables |= {f"q{n}": search, f"a{n}": after}
            for n, (key, before) in enumerate(threads):
                variables |= {f"p{n}": str(self._pulls[key]["id"]), f"b{n}": before}
        self.rounds += 1
        return query, variables

    def add(self, data: Mapping[str, Any]) -> None:
        """Take in the ``data`` answering the last request."""
        for n, search in enumerate(self._asked_searches):
            result = data[f"s{n}"]
            for node in result["nodes"]:
                if not node or (key := (node["repository"]["nameWithOwner"], node["number"])) in self._pulls:
                    continue
                self._pulls[key] = node
                self._follow_threads(key, node["reviewThreads"]["pageInfo"])
            page = result["pageInfo"]
            if page["hasNextPage"] and page["endCursor"]:
                self._more_searches.append((search, page["endCursor"]))
        for n, key in enumerate(self._asked_threads):
            older = data[f"t{n}"]
            if not older:
                continue  # the PR went away between the two requests
            threads = self._pulls[key]["reviewThreads"]
            threads["nodes"] = [*older["reviewThreads"]["nodes"], *threads["nodes"]]
            self._follow_threads(key, older["reviewThreads"]["pageInfo"])
        self._asked_searches, self._asked_threads = [], []

    def _follow_threads(self, key: tuple[str, int], page: Mapping[str, Any]) -> None:
        if page["hasPreviousPage"] and page["startCursor"]:
            self._more_threads.append((key, page["startCursor"]))

    def activity(self, since: dt.datetime | None) -> ReviewActivity:
        """Every page's PRs and threads, with reviews and comments newer than `since`."""
        return parse_review_activity(self.login, {"s0": {"nodes": list(self._pulls.values())}}, since)


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

    def comment(c: Mapping[str, Any]) -> Comment:
        return Comment(c["id"], _login(c), c["authorAssociation"], c["body"], _when(c["createdAt"]), c["url"])

    pulls = []
    seen: set[tuple[str, int]] = set()
    # Each search's nodes (aliased s0, s1…: see `review_activity_query`), each PR once.
    for node in (n for result in data.values() for n in result["nodes"]):
        if not node or (key := (node["repository"]["nameWithOwner"], node["number"])) in seen:
            continue
        seen.add(key)
        threads = [
            Thread(t["id"], t["isResolved"], t["path"], t["line"], tuple(comment(c) for c in t["comments"]["nodes"]))
            for t in node["reviewThreads"]["nodes"]
            if not t["isResolved"] and t["comments"]["nodes"]
        ]
        reviews = [
            Review(r["id"], _login(r), r["authorAssociation"], r["state"], r["body"], _when(r["submittedAt"]), r["url"])
            for r in node["reviews"]["nodes"]
            if r["submittedAt"] and (since is None or _when(r["submittedAt"]) > since)
        ]
        comments = [comment(c) for c in node["comments"]["nodes"] if since is None or _when(c["createdAt"]) > since]
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
