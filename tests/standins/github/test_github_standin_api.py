"""The stand-in's REST, GraphQL, git and fault injection, spoken to over HTTPS."""

from __future__ import annotations

import os
import time

import httpx
import pytest
from tests.fixtures.github import GitHubFixture

pytestmark = pytest.mark.real

CHANGE = {"src/widgets.py": "def widget(n):\n    return [n] * n\n\n\ndef count(ws):\n    return len(ws) if ws else 0\n"}


def _pr_with_thread(gh: GitHubFixture) -> None:
    gh.push_branch("alice", "fix-count", CHANGE, "Count empty lists")
    with gh.http("alice") as http:
        created = http.post(
            "/api/v3/repos/carol/widgets/pulls",
            json={"head": "fix-count", "base": "main", "title": "Count empty", "body": "b"},
        )
        assert created.status_code == 201, created.text
    with gh.http("bob") as http:
        review = http.post(
            "/api/v3/repos/carol/widgets/pulls/1/reviews",
            json={
                "event": "COMMENT",
                "body": "See inline.",
                "comments": [{"path": "src/widgets.py", "line": 6, "body": "Why the guard?"}],
            },
        )
        assert review.status_code == 200, review.text


def test_unknown_token_is_refused_everywhere(github_standin: GitHubFixture) -> None:
    gh = github_standin
    with gh.http(None) as http:
        http.headers["Authorization"] = "Bearer ghp_not_a_token"
        assert http.get("/api/v3/user").status_code == 401
        assert http.post("/api/graphql", json={"query": "{viewer{login}}"}).status_code == 401
        assert http.get("/carol/widgets.git/info/refs?service=git-upload-pack").status_code == 401
    with gh.http(None) as http:
        anonymous = http.post("/api/graphql", json={"query": "{viewer{login}}"})
        assert anonymous.status_code == 401
        assert http.get("/api/v3/repos/carol/widgets").status_code == 200  # public


def test_graphql_rejects_fields_github_does_not_have(github_standin: GitHubFixture) -> None:
    body = github_standin.graphql("alice", '{ repository(owner: "carol", name: "widgets") { name starCount } }')
    assert "data" not in body
    assert "starCount" in body["errors"][0]["message"]
    ok = github_standin.graphql(
        "alice", '{ repository(owner: "carol", name: "widgets") { nameWithOwner viewerPermission } }'
    )
    assert ok["data"]["repository"] == {"nameWithOwner": "carol/widgets", "viewerPermission": "WRITE"}


def test_threads_resolve_and_unresolve(github_standin: GitHubFixture) -> None:
    gh = github_standin
    _pr_with_thread(gh)
    query = """query { repository(owner: "carol", name: "widgets") { pullRequest(number: 1) {
        reviewThreads(first: 10) { nodes { id isResolved line path
          comments(first: 5) { nodes { author { login } body } } } } } } }"""
    threads = gh.graphql("alice", query)["data"]["repository"]["pullRequest"]["reviewThreads"]
    [thread] = threads["nodes"]
    assert thread["isResolved"] is False
    assert thread["line"] == 6
    assert thread["comments"]["nodes"] == [{"author": {"login": "bob"}, "body": "Why the guard?"}]
    mutation = "mutation($id: ID!) { %s(input: {threadId: $id}) { thread { isResolved } } }"
    done = gh.graphql("alice", mutation % "resolveReviewThread", id=thread["id"])
    assert done["data"]["resolveReviewThread"]["thread"]["isResolved"] is True
    undone = gh.graphql("alice", mutation % "unresolveReviewThread", id=thread["id"])
    assert undone["data"]["unresolveReviewThread"]["thread"]["isResolved"] is False


def test_git_push_needs_a_token_with_push_access(github_standin: GitHubFixture) -> None:
    gh = github_standin
    gh.standin.world.add_user("dave", "ghp_dave_is_no_collaborator")
    gh.users["dave"] = gh.standin.world.user("dave")
    wt = gh.clone("dave")  # public: anyone may read
    gh.run("dave", "git", "checkout", "-q", "-b", "sneaky", cwd=wt)
    (wt / "x.txt").write_text("x\n")
    gh.run("dave", "git", "add", "x.txt", cwd=wt)
    gh.run("dave", "git", "commit", "-q", "-m", "x", cwd=wt)
    push = gh.run("dave", "git", "push", "origin", "sneaky", cwd=wt, check=False)
    assert push.returncode != 0
    assert gh.repo.git.rev_parse("sneaky") is None


def test_conditional_requests_do_not_spend_quota(github_standin: GitHubFixture) -> None:
    gh = github_standin
    with gh.http("alice") as http:
        first = http.get("/api/v3/repos/carol/widgets")
        again = http.get("/api/v3/repos/carol/widgets", headers={"If-None-Match": first.headers["etag"]})
        assert again.status_code == 304
        assert again.content == b""
        assert again.headers["x-ratelimit-remaining"] == first.headers["x-ratelimit-remaining"]
        third = http.get("/api/v3/repos/carol/widgets")
        assert int(third.headers["x-ratelimit-remaining"]) == int(first.headers["x-ratelimit-remaining"]) - 1


def test_faults_server_error_secondary_rate_limit_and_slow(github_standin: GitHubFixture) -> None:
    gh = github_standin
    gh.standin.faults.fail(503, times=2, path="/api/v3")
    gh.standin.faults.secondary_rate_limit(retry_after=7, path="/api/v3")
    with gh.http("alice") as http:
        assert http.get("/api/v3/user").status_code == 503
        assert http.get("/api/v3/user").status_code == 503
        limited = http.get("/api/v3/user")
        assert limited.status_code == 403
        assert limited.headers["retry-after"] == "7"
        assert "secondary rate limit" in limited.json()["message"]
        assert http.get("/api/v3/user").status_code == 200
        gh.standin.faults.slow(0.3, path="/api/v3/user")
        started = time.monotonic()
        assert http.get("/api/v3/user").status_code == 200
        assert time.monotonic() - started >= 0.3


def test_conflicting_pull_request_is_not_mergeable(github_standin: GitHubFixture) -> None:
    gh = github_standin
    gh.push_branch("alice", "one", {"README.md": "# one\n"})
    gh.push_branch("bob", "two", {"README.md": "# two\n"})
    with gh.http("alice") as http:
        for head in ("one", "two"):
            assert (
                http.post(
                    "/api/v3/repos/carol/widgets/pulls", json={"head": head, "base": "main", "title": head}
                ).status_code
                == 201
            )
        assert http.put("/api/v3/repos/carol/widgets/pulls/1/merge", json={"merge_method": "squash"}).status_code == 200
        second = http.get("/api/v3/repos/carol/widgets/pulls/2").json()
        assert second["mergeable"] is False
        assert second["mergeable_state"] == "dirty"
        refused = http.put("/api/v3/repos/carol/widgets/pulls/2/merge", json={})
        assert refused.status_code == 405
    squashed = gh.standin.world.pull(gh.repo, 1)
    assert gh.repo.git.commit_message(squashed.merge_commit_sha or "") == "one (#1)"


def test_requested_reviewers_and_conversation(github_standin: GitHubFixture) -> None:
    gh = github_standin
    _pr_with_thread(gh)
    with gh.http("alice") as http:
        asked = http.post("/api/v3/repos/carol/widgets/pulls/1/requested_reviewers", json={"reviewers": ["carol"]})
        assert asked.status_code == 201
        assert [u["login"] for u in asked.json()["requested_reviewers"]] == ["carol"]
        assert http.post("/api/v3/repos/carol/widgets/issues/1/comments", json={"body": "Ready."}).status_code == 201
        comments = http.get("/api/v3/repos/carol/widgets/pulls/1/comments").json()
        reply = http.post(
            f"/api/v3/repos/carol/widgets/pulls/1/comments/{comments[0]['id']}/replies",
            json={"body": "Empty lists crashed."},
        )
        assert reply.status_code == 201
        assert reply.json()["in_reply_to_id"] == comments[0]["id"]
        assert len(http.get("/api/v3/repos/carol/widgets/issues/1/comments").json()) == 1
        assert len(http.get("/api/v3/repos/carol/widgets/pulls/1/reviews").json()) == 2
        assert http.get("/api/v3/repos/carol/nothing").status_code == 404


def test_large_push_is_streamed_chunked(github_standin: GitHubFixture) -> None:
    gh = github_standin
    blob = os.urandom(3 << 19).hex()  # packs to more than git's 1 MiB post buffer
    sha = gh.push_branch("alice", "big", {"data/blob.txt": blob}, "big file")
    assert gh.repo.git.rev_parse("big") == sha
    wt = gh.clone("bob")
    gh.run("bob", "git", "checkout", "-q", "big", cwd=wt)
    assert (wt / "data/blob.txt").read_text() == blob


def test_faults_primary_rate_limit_as_each_api_says_it(github_standin: GitHubFixture) -> None:
    gh = github_standin
    gh.standin.faults.primary_rate_limit(reset_in=300, path="/api/v3/user")
    gh.standin.faults.primary_rate_limit(reset_in=300, path="/api/graphql")
    alice_id = gh.standin.world.users["alice"].id
    with gh.http("alice") as http:
        rest = http.get("/api/v3/user")
        graphql = http.post("/api/graphql", json={"query": "{ viewer { login } }"})
    # REST: 403, the limit spent, and when it resets (UTC epoch seconds).
    assert rest.status_code == 403
    assert rest.json()["message"] == f"API rate limit exceeded for user ID {alice_id}."
    assert rest.headers["x-ratelimit-remaining"] == "0"
    assert rest.headers["x-ratelimit-resource"] == "core"
    assert 290 <= int(rest.headers["x-ratelimit-reset"]) - time.time() <= 301
    # GraphQL: a 200 whose only error is of type RATE_LIMITED, with no data.
    assert graphql.status_code == 200
    assert graphql.json() == {
        "errors": [{"type": "RATE_LIMITED", "message": f"API rate limit exceeded for user ID {alice_id}."}]
    }
    assert graphql.headers["x-ratelimit-remaining"] == "0"
    assert graphql.headers["x-ratelimit-resource"] == "graphql"


def test_faults_applied_then_failed_or_dropped(github_standin: GitHubFixture) -> None:
    """GitHub's front can fail to answer a request its back end carried out."""
    gh = github_standin
    gh.standin.faults.fail(502, path="/api/graphql", applied=True)
    gh.standin.faults.disconnect(path="/api/v3/user")
    sent = len(gh.standin.exchanges)
    with gh.http("alice") as http:
        assert http.post("/api/graphql", json={"query": "{ viewer { login } }"}).status_code == 502
        with pytest.raises(httpx.RemoteProtocolError):
            http.get("/api/v3/user")
        assert http.get("/api/v3/user").status_code == 200
    kinds = [(e.kind, e.path, e.status) for e in gh.standin.exchanges[sent:]]
    assert kinds == [
        ("graphql", "/api/graphql", 200),  # carried out
        ("fault", "/api/graphql", 502),  # and answered 502
        ("fault", "/api/v3/user", 0),  # not carried out, no answer at all
        ("rest", "/api/v3/user", 200),
    ]
