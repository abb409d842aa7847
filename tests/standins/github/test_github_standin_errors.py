"""How the stand-in refuses, in GitHub's words and shapes: a 422's particulars in ``errors[]``
(objects naming resource, field and code, or the review API's sentences), GraphQL saying the
particulars themselves, 404 for a method or path GitHub does not serve.

Every REST answer is checked against GitHub's OpenAPI description by the fixture at teardown.
"""

from __future__ import annotations

import secrets

import pytest
from tests.fixtures.github import GitHubFixture

pytestmark = pytest.mark.real

CHANGE = {"src/widgets.py": "def widget(n):\n    return [n] * n\n\n\ndef count(ws):\n    return len(ws) if ws else 0\n"}
PULLS = "/api/v3/repos/carol/widgets/pulls"
DOCS = "https://docs.github.com/rest"


def _open_pr(gh: GitHubFixture) -> str:
    """Pull request #1 from alice's ``fix-count``; its head sha."""
    sha = gh.push_branch("alice", "fix-count", CHANGE, "Count empty lists")
    with gh.http("alice") as http:
        created = http.post(PULLS, json={"head": "fix-count", "base": "main", "title": "Count empty"})
    assert created.status_code == 201, created.text
    return sha


def test_a_refused_pull_request_names_its_reasons_in_errors(github_standin: GitHubFixture) -> None:
    gh = github_standin
    _open_pr(gh)
    with gh.http("alice") as http:
        again = http.post(PULLS, json={"head": "fix-count", "base": "main", "title": "Again"})
        no_branch = http.post(PULLS, json={"head": "nowhere", "base": "main", "title": "Nothing"})
        no_base = http.post(PULLS, json={"head": "fix-count", "base": "nowhere", "title": "Nothing"})
        draft = http.post(PULLS, json={"head": "fix-count", "base": "main", "title": "x", "draft": "yes"})
    assert again.status_code == 422
    assert again.json() == {
        "message": "Validation Failed",
        "documentation_url": DOCS,
        "status": "422",
        "errors": [
            {
                "resource": "PullRequest",
                "code": "custom",
                "message": "A pull request already exists for carol:fix-count.",
            }
        ],
    }
    assert no_branch.json()["errors"] == [{"resource": "PullRequest", "field": "head", "code": "invalid"}]
    assert no_base.json()["errors"] == [{"resource": "PullRequest", "field": "base", "code": "invalid"}]
    assert (draft.status_code, draft.json()["message"]) == (
        422,
        "Invalid request.\n\nFor 'properties/draft', \"yes\" is not a boolean.",
    )

    # GraphQL says the particulars themselves.
    repo_id = gh.repo.node_id
    mutation = """mutation($repo: ID!) { createPullRequest(input: {repositoryId: $repo,
        headRefName: "fix-count", baseRefName: "main", title: "Again"}) { pullRequest { number } } }"""
    [error] = gh.graphql("alice", mutation, repo=repo_id)["errors"]
    assert (error["type"], error["message"]) == ("UNPROCESSABLE", "A pull request already exists for carol:fix-count.")


def test_review_refusals_are_unprocessable_entity_with_sentences(github_standin: GitHubFixture) -> None:
    gh = github_standin
    _open_pr(gh)
    with gh.http("alice") as http:
        own = http.post(f"{PULLS}/1/reviews", json={"event": "APPROVE"})
    with gh.http("bob") as http:
        off_diff = http.post(
            f"{PULLS}/1/reviews",
            json={"event": "COMMENT", "comments": [{"path": "src/widgets.py", "line": 1, "body": "Hm"}]},
        )
    assert own.status_code == 422
    assert own.json() == {
        "message": "Unprocessable Entity",
        "documentation_url": DOCS,
        "status": "422",
        "errors": ["Can not approve your own pull request"],
    }
    assert off_diff.json()["errors"] == [
        "Pull request review thread line must be part of the diff and Pull request review thread diff hunk can't be blank"
    ]

    pr_id = gh.standin.world.pull(gh.repo, 1).node_id
    mutation = (
        "mutation($pr: ID!) { addPullRequestReview(input: {pullRequestId: $pr, event: APPROVE}) { clientMutationId } }"
    )
    [error] = gh.graphql("alice", mutation, pr=pr_id)["errors"]
    assert (error["type"], error["message"]) == ("UNPROCESSABLE", "Can not approve your own pull request")
    refused = gh.gh("alice", "pr", "review", "1", "--approve", "-R", f"{gh.host}/carol/widgets", check=False)
    assert "Unprocessable Entity" not in refused.stderr
    assert "Can not approve your own pull request" in refused.stderr


def test_a_single_review_comment_needs_its_commit(github_standin: GitHubFixture) -> None:
    """GitHub requires commit_id (its description lists it as required); a reply needs only a body."""
    gh = github_standin
    head = _open_pr(gh)
    comment = {"body": "Why?", "path": "src/widgets.py", "line": 6, "side": "RIGHT"}
    with gh.http("bob") as http:
        without = http.post(f"{PULLS}/1/comments", json=comment)
        made = http.post(f"{PULLS}/1/comments", json={**comment, "commit_id": head})
        reply = http.post(f"{PULLS}/1/comments", json={"body": "Because.", "in_reply_to": made.json()["id"]})
    assert without.status_code == 422
    assert without.json()["message"] == 'Invalid request.\n\n"commit_id" wasn\'t supplied.'
    assert made.status_code == 201
    assert (reply.status_code, reply.json()["in_reply_to_id"]) == (201, made.json()["id"])


def test_a_review_without_an_event_is_refused_not_published(github_standin: GitHubFixture) -> None:
    """Without an event GitHub keeps the review pending, unseen by others: never published."""
    gh = github_standin
    _open_pr(gh)
    with gh.http("bob") as http:
        pending = http.post(f"{PULLS}/1/reviews", json={"body": "Draft thoughts"})
        listed = http.get(f"{PULLS}/1/reviews")
    assert pending.status_code == 422
    assert "pending" in pending.json()["message"]
    assert listed.json() == []


def test_reviews_may_only_be_requested_from_collaborators(github_standin: GitHubFixture) -> None:
    gh = github_standin
    _open_pr(gh)
    gh.users["dave"] = gh.standin.world.add_user("dave", f"ghp_{secrets.token_hex(18)}")
    said = (
        "Reviews may only be requested from collaborators. One or more of the users or teams you "
        "specified is not a collaborator of the carol/widgets repository."
    )
    with gh.http("alice") as http:
        outsider = http.post(f"{PULLS}/1/requested_reviewers", json={"reviewers": ["bob", "dave"]})
        nobody = http.post(f"{PULLS}/1/requested_reviewers", json={"reviewers": ["nobody"]})
        pull = http.get(f"{PULLS}/1").json()
    assert (outsider.status_code, outsider.json()["message"]) == (422, said)
    assert (nobody.status_code, nobody.json()["message"]) == (422, said)
    assert pull["requested_reviewers"] == []  # all or nothing, as on GitHub


def test_unserved_methods_and_trailing_slashes_are_404(github_standin: GitHubFixture) -> None:
    """GitHub's "Troubleshooting the REST API": a method an endpoint does not support, or a
    trailing slash, answers 404 Not Found (not 405)."""
    gh = github_standin
    _open_pr(gh)
    not_found = {"message": "Not Found", "documentation_url": DOCS, "status": "404"}
    with gh.http("alice") as http:
        deleted = http.delete(f"{PULLS}/1")
        patched = http.patch("/api/v3/repos/carol/widgets/pulls/1/merge", json={})
        slashed = http.get("/api/v3/repos/carol/widgets/")
        assert http.get("/api/v3/").status_code == 200  # the root is the one path with a slash
    for response in (deleted, patched, slashed):
        assert (response.status_code, response.json()) == (404, not_found)


def test_malformed_json_and_merges_github_refuses(github_standin: GitHubFixture) -> None:
    gh = github_standin
    head = _open_pr(gh)
    with gh.http("alice") as http:
        malformed = http.post(f"{PULLS}/1/reviews", content=b"{not json", headers={"Content-Type": "application/json"})
        rebase = http.put(f"{PULLS}/1/merge", json={"merge_method": "rebase"})
        moved = http.put(f"{PULLS}/1/merge", json={"sha": "0" * 40})
        merged = http.put(f"{PULLS}/1/merge", json={"sha": head})
    assert (moved.status_code, moved.json()["message"]) == (
        409,
        "Head branch was modified. Review and try the merge again.",
    )
    assert (merged.status_code, merged.json()["merged"]) == (200, True)
    assert (malformed.status_code, malformed.json()) == (
        400,
        {"message": "Problems parsing JSON", "documentation_url": DOCS, "status": "400"},
    )
    assert (rebase.status_code, rebase.json()["message"]) == (405, "Rebase merges are not allowed on this repository.")


def test_a_query_github_cannot_validate_gets_its_words_and_no_type(github_standin: GitHubFixture) -> None:
    """GitHub types only the errors met while executing; an unknown field is said its way."""
    gh = github_standin
    invalid = gh.graphql("alice", '{ repository(owner: "carol", name: "widgets") { stackEntry } }')
    assert invalid == {
        "errors": [
            {
                "message": "Field 'stackEntry' doesn't exist on type 'Repository'",
                "locations": [{"line": 1, "column": 49}],
                "extensions": {"code": "undefinedField", "typeName": "Repository", "fieldName": "stackEntry"},
            }
        ]
    }
    unparsable = gh.graphql("alice", '{ repository(owner: "carol" name: "widgets") { name }')
    assert [set(e) for e in unparsable["errors"]] == [{"message", "locations"}]
    said = gh.gh("alice", "api", "graphql", "-f", "query={ viewer { stackEntry } }", check=False)
    assert "Field 'stackEntry' doesn't exist on type 'User'" in said.stderr


def test_head_is_answered_as_get_without_a_body(github_standin: GitHubFixture) -> None:
    gh = github_standin
    with gh.http("alice") as http:
        got = http.get("/api/v3/repos/carol/widgets")
        head = http.head("/api/v3/repos/carol/widgets")
        missing = http.head("/api/v3/repos/carol/nothing")
    assert (head.status_code, head.content) == (200, b"")
    assert head.headers["etag"] == got.headers["etag"]
    assert head.headers["content-length"] == got.headers["content-length"]
    assert missing.status_code == 404
