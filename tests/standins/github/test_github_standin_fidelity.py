"""Where GitHub is strict, the stand-in is too: paging, connection bounds, outdated
threads, deleting branches and how a bad token is turned away."""

from __future__ import annotations

import httpx
import pytest
from tests.fixtures.github import GitHubFixture

pytestmark = pytest.mark.real

WIDGETS = "def widget(n):\n    return [n] * n\n\n\ndef count(ws):\n    return {}\n"
CHANGE = {"src/widgets.py": WIDGETS.format("len(ws) if ws else 0")}
REVIEW_QUERY = """query { repository(owner: "carol", name: "widgets") { pullRequest(number: 1) {
    reviewThreads(first: 10) { nodes { isOutdated line originalLine
      comments(first: 5) { nodes { outdated line originalLine position originalPosition
        commit { oid } originalCommit { oid } } } } } } } }"""


def _open_pr(gh: GitHubFixture, branch: str = "fix-count") -> None:
    gh.push_branch("alice", branch, CHANGE, "Count empty lists")
    with gh.http("alice") as http:
        created = http.post(
            "/api/v3/repos/carol/widgets/pulls", json={"head": branch, "base": "main", "title": "Count empty"}
        )
        assert created.status_code == 201, created.text


def _comment_on_line_6(gh: GitHubFixture) -> None:
    with gh.http("bob") as http:
        review = http.post(
            "/api/v3/repos/carol/widgets/pulls/1/reviews",
            json={"event": "COMMENT", "comments": [{"path": "src/widgets.py", "line": 6, "body": "Why?"}]},
        )
        assert review.status_code == 200, review.text


def _force_push(gh: GitHubFixture, branch: str, text: str) -> str:
    """Replace ``branch`` with one commit on main that sets src/widgets.py to ``text``."""
    wt = gh.clone("alice")
    gh.run("alice", "git", "checkout", "-q", "-b", branch, cwd=wt)
    (wt / "src/widgets.py").write_text(text)
    gh.run("alice", "git", "commit", "-q", "-am", "rewrite", cwd=wt)
    gh.run("alice", "git", "push", "-q", "-f", "origin", branch, cwd=wt)
    return gh.run("alice", "git", "rev-parse", "HEAD", cwd=wt).stdout.strip()


def _links(response: httpx.Response) -> dict[str, str]:
    header = response.headers.get("link")
    if header is None:
        return {}
    pairs = (part.split(">; rel=") for part in header.split(", "))
    return {rel.strip('"'): url.lstrip("<") for url, rel in pairs}


# -- REST paging ---------------------------------------------------------------


def test_lists_come_in_pages_with_githubs_link_header(github_standin: GitHubFixture) -> None:
    gh = github_standin
    _open_pr(gh)
    world = gh.standin.world
    with world.lock:
        pr = world.pull(gh.repo, 1)
        for i in range(105):
            world.comment(pr, gh.users["bob"], f"c{i}")
    path = "/api/v3/repos/carol/widgets/issues/1/comments"
    by_id = f"{gh.standin.api_url}/repositories/{gh.repo.id}/issues/1/comments"
    with gh.http("alice") as http:
        first = http.get(path)
        assert [c["body"] for c in first.json()] == [f"c{i}" for i in range(30)]
        assert _links(first) == {"next": f"{by_id}?page=2", "last": f"{by_id}?page=4"}

        middle = http.get(path, params={"per_page": "10", "page": "3"})
        assert [c["body"] for c in middle.json()] == [f"c{i}" for i in range(20, 30)]
        assert _links(middle) == {
            "prev": f"{by_id}?per_page=10&page=2",
            "next": f"{by_id}?per_page=10&page=4",
            "last": f"{by_id}?per_page=10&page=11",
            "first": f"{by_id}?per_page=10&page=1",
        }
        assert list(_links(middle)) == ["prev", "next", "last", "first"]  # GitHub's order

        capped = http.get(path, params={"per_page": "500"})
        assert len(capped.json()) == 100
        # The links name the repository by id; following them works as on GitHub.
        rest = http.get(_links(capped)["next"])
        assert rest.status_code == 200
        assert [c["body"] for c in rest.json()] == [f"c{i}" for i in range(100, 105)]
        assert set(_links(rest)) == {"prev", "first"}

        beyond = http.get(path, params={"page": "9"})
        assert beyond.json() == []
        unreadable = http.get(path, params={"per_page": "lots", "page": "x"})
        assert len(unreadable.json()) == 30


@pytest.mark.parametrize(
    "path",
    [
        "/api/v3/repos/carol/widgets/pulls?state=all",
        "/api/v3/repos/carol/widgets/pulls/1/comments",
        "/api/v3/repos/carol/widgets/pulls/1/reviews",
        "/api/v3/repos/carol/widgets/issues/1/comments",
    ],
)
def test_every_list_the_standin_serves_is_paged(github_standin: GitHubFixture, path: str) -> None:
    gh = github_standin
    _open_pr(gh)
    _open_pr(gh, "fix-other")
    world = gh.standin.world
    with world.lock:
        pr = world.pull(gh.repo, 1)
        world.comment(pr, gh.users["bob"], "one")
        world.comment(pr, gh.users["bob"], "two")
    _comment_on_line_6(gh)
    _comment_on_line_6(gh)
    with gh.http("alice") as http:
        whole = http.get(path)
        assert len(whole.json()) == 2
        assert "link" not in whole.headers  # everything fits on one page
        one = http.get(path, params={"per_page": "1"})
        assert len(one.json()) == 1
        assert set(_links(one)) == {"next", "last"}
        second = http.get(_links(one)["next"])
        assert second.json() == whole.json()[1:]


# -- GraphQL connection bounds ---------------------------------------------------


def test_graphql_connections_need_first_or_last_at_most_100(github_standin: GitHubFixture) -> None:
    gh = github_standin
    _open_pr(gh)
    unbounded = gh.graphql(
        "alice", '{ repository(owner: "carol", name: "widgets") { pullRequests { nodes { number } } } }'
    )
    assert unbounded["data"] == {"repository": None}
    assert unbounded["errors"] == [
        {
            "type": "MISSING_PAGINATION_BOUNDARIES",
            "message": "You must provide a `first` or `last` value to properly paginate the `pullRequests` connection.",
            "locations": [{"line": 1, "column": 49}],
            "path": ["repository", "pullRequests"],
        }
    ]
    # Through a fragment, and on a connection the stand-in does not model, alike.
    fragment = gh.graphql(
        "alice",
        '{ repository(owner: "carol", name: "widgets") { pullRequest(number: 1) { labels { ...L } } } }'
        " fragment L on LabelConnection { edges { node { name } } }",
    )
    assert fragment["errors"][0]["type"] == "MISSING_PAGINATION_BOUNDARIES"
    assert "`labels` connection" in fragment["errors"][0]["message"]

    too_many = gh.graphql("alice", '{ search(query: "is:pr", type: ISSUE, last: 101) { issueCount } }')
    assert too_many["errors"][0]["type"] == "EXCESSIVE_PAGINATION"
    assert too_many["errors"][0]["message"] == (
        "Requesting 101 records on the `search` connection exceeds the `last` limit of 100 records."
    )
    counted = gh.graphql("alice", '{ repository(owner: "carol", name: "widgets") { pullRequests { totalCount } } }')
    assert counted == {"data": {"repository": {"pullRequests": {"totalCount": 1}}}}


# -- outdated review threads ------------------------------------------------------


def test_a_thread_follows_its_line_until_a_push_changes_it(github_standin: GitHubFixture) -> None:
    gh = github_standin
    _open_pr(gh)
    _comment_on_line_6(gh)
    first_head = gh.standin.world.pull(gh.repo, 1).head_sha

    # Two lines above it: the thread moves down with its line.
    moved_head = _force_push(gh, "fix-count", "# a\n# b\n" + CHANGE["src/widgets.py"])
    thread = gh.graphql("bob", REVIEW_QUERY)["data"]["repository"]["pullRequest"]["reviewThreads"]["nodes"][0]
    [comment] = thread["comments"]["nodes"]
    assert (thread["isOutdated"], thread["line"], thread["originalLine"]) == (False, 8, 6)
    assert (comment["outdated"], comment["line"], comment["originalLine"]) == (False, 8, 6)
    # Positions count diff lines below the first @@: the change was 5th, now 9th (2 added above).
    assert (comment["position"], comment["originalPosition"]) == (9, 5)
    assert (comment["commit"]["oid"], comment["originalCommit"]["oid"]) == (moved_head, first_head)

    # Its line rewritten: outdated; where it was first made stays.
    _force_push(gh, "fix-count", WIDGETS.format("len(ws or [])"))
    thread = gh.graphql("bob", REVIEW_QUERY)["data"]["repository"]["pullRequest"]["reviewThreads"]["nodes"][0]
    [comment] = thread["comments"]["nodes"]
    assert (thread["isOutdated"], thread["line"], thread["originalLine"]) == (True, None, 6)
    assert (comment["outdated"], comment["line"], comment["position"]) == (True, None, None)
    assert comment["originalPosition"] == 5
    with gh.http("bob") as http:
        [rest] = http.get("/api/v3/repos/carol/widgets/pulls/1/comments").json()
    assert (rest["line"], rest["original_line"], rest["position"], rest["original_position"]) == (None, 6, None, 5)
    assert rest["original_commit_id"] == first_head


def test_a_thread_whose_file_leaves_the_diff_is_outdated(github_standin: GitHubFixture) -> None:
    gh = github_standin
    _open_pr(gh)
    _comment_on_line_6(gh)
    # The change reverted: the line is as on main again, so no longer part of the diff.
    _force_push(gh, "fix-count", WIDGETS.format("len(ws)") + "# tail\n")
    thread = gh.graphql("bob", REVIEW_QUERY)["data"]["repository"]["pullRequest"]["reviewThreads"]["nodes"][0]
    assert (thread["isOutdated"], thread["line"]) == (True, None)


# -- deleting branches ------------------------------------------------------------


def test_delete_a_branch_ref(github_standin: GitHubFixture) -> None:
    gh = github_standin
    _open_pr(gh)
    gh.push_branch("alice", "spare", {"spare.txt": "x\n"})
    with gh.http("bob") as http:
        deleted = http.delete("/api/v3/repos/carol/widgets/git/refs/heads/spare")
        assert (deleted.status_code, deleted.content) == (204, b"")
        assert gh.repo.git.rev_parse("spare") is None
        again = http.delete("/api/v3/repos/carol/widgets/git/refs/heads/spare")
        assert again.status_code == 422
        assert again.json()["message"] == "Reference does not exist"
        assert http.delete("/api/v3/repos/carol/widgets/git/refs/heads/main").status_code == 422
        # As on GitHub: deleting an open pull request's head branch closes it.
        assert http.delete("/api/v3/repos/carol/widgets/git/refs/heads/fix-count").status_code == 204
    pr = gh.standin.world.pull(gh.repo, 1)
    assert pr.state == "CLOSED"
    assert pr.head_sha  # GitHub keeps the head it had

    gh.standin.world.add_user("dave", "ghp_dave_is_no_collaborator")
    gh.users["dave"] = gh.standin.world.user("dave")
    gh.push_branch("alice", "kept", {"kept.txt": "x\n"})
    with gh.http("dave") as http:
        assert http.delete("/api/v3/repos/carol/widgets/git/refs/heads/kept").status_code == 403
    assert gh.repo.git.rev_parse("kept") is not None


def test_gh_pr_merge_delete_branch(github_standin: GitHubFixture) -> None:
    gh = github_standin
    _open_pr(gh)
    gh.gh("alice", "pr", "merge", "1", "--merge", "--delete-branch", "-R", f"{gh.host}/carol/widgets")
    assert gh.standin.world.pull(gh.repo, 1).state == "MERGED"
    assert gh.repo.git.rev_parse("fix-count") is None


# -- authentication ----------------------------------------------------------------


def test_bad_and_missing_tokens_get_githubs_answers(github_standin: GitHubFixture) -> None:
    gh = github_standin
    with gh.http(None) as http:
        anonymous = http.post("/api/graphql", json={"query": "{viewer{login}}"})
        http.headers["Authorization"] = "Bearer ghp_not_a_token"
        bad_graphql = http.post("/api/graphql", json={"query": "{viewer{login}}"})
        bad_rest = http.get("/api/v3/repos/carol/widgets")
    assert anonymous.status_code == 401
    assert anonymous.json() == {
        "message": "This endpoint requires you to be authenticated.",
        "documentation_url": "https://docs.github.com/graphql/guides/forming-calls-with-graphql#authenticating-with-graphql",
    }
    assert bad_graphql.status_code == 401
    assert bad_graphql.json() == {"message": "Bad credentials", "documentation_url": "https://docs.github.com/graphql"}
    assert bad_rest.status_code == 401
    assert bad_rest.json() == {
        "message": "Bad credentials",
        "documentation_url": "https://docs.github.com/rest",
        "status": "401",
    }


def test_a_search_longer_than_github_supports_is_refused_in_githubs_words(github_standin: GitHubFixture) -> None:
    """GitHub does not support search queries over 256 characters ("Troubleshooting search queries")."""
    query = "query($q: String!) { search(query: $q, type: ISSUE, first: 5) { issueCount } }"
    longest = "is:pr " + "x" * 250
    assert github_standin.graphql("alice", query, q=longest) == {"data": {"search": {"issueCount": 0}}}
    refused = github_standin.graphql("alice", query, q=longest + "y")
    assert refused["errors"][0]["message"] == "The search is longer than 256 characters."
    assert refused["errors"][0]["path"] == ["search"]
