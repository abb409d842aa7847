"""The real Debian `gh` and `git` against the stand-in: the PR loop end to end."""

from __future__ import annotations

import json

import pytest
from tests.fixtures.github import GitHubFixture

pytestmark = pytest.mark.real

FEATURE = {
    "src/widgets.py": "def widget(n):\n    return [n] * n\n\n\ndef count(ws):\n    return len(ws)\n\n\ndef total(ws):\n    return sum(len(w) for w in ws)\n"
}


def _open_pr(gh: GitHubFixture, login: str = "alice", branch: str = "feature") -> str:
    gh.push_branch(login, branch, FEATURE, "Add total()")
    out = gh.gh(
        login,
        "pr",
        "create",
        "-R",
        f"{gh.host}/carol/widgets",
        "--head",
        branch,
        "--base",
        "main",
        "--title",
        "Add total()",
        "--body",
        "Sums widget sizes.",
    )
    return out.stdout.strip()


def test_gh_sees_the_standin_as_github_enterprise(github_standin: GitHubFixture) -> None:
    out = github_standin.gh("alice", "auth", "status")
    assert "Logged in to" in out.stdout + out.stderr
    assert "alice" in out.stdout + out.stderr


def test_pr_create_list_view_diff(github_standin: GitHubFixture) -> None:
    gh = github_standin
    url = _open_pr(gh)
    assert url == f"{gh.standin.url}/carol/widgets/pull/1"
    listed = gh.gh("bob", "pr", "list", "-R", f"{gh.host}/carol/widgets").stdout
    assert "Add total()" in listed
    assert "feature" in listed
    view = gh.gh(
        "bob",
        "pr",
        "view",
        "1",
        "-R",
        f"{gh.host}/carol/widgets",
        "--json",
        "title,author,state,headRefName,mergeStateStatus,additions,files",
    ).stdout
    data = json.loads(view)
    assert data["author"]["login"] == "alice"
    assert data["state"] == "OPEN"
    assert data["headRefName"] == "feature"
    assert data["mergeStateStatus"] == "CLEAN"
    assert data["additions"] == 4
    assert [(f["path"], f["additions"], f["deletions"]) for f in data["files"]] == [("src/widgets.py", 4, 0)]
    diff = gh.gh("bob", "pr", "diff", "1", "-R", f"{gh.host}/carol/widgets").stdout
    assert "+def total(ws):" in diff
    assert diff.startswith("diff --git a/src/widgets.py")


def test_review_inline_comment_self_approval_and_merge(github_standin: GitHubFixture) -> None:
    gh = github_standin
    _open_pr(gh)
    repo = f"{gh.host}/carol/widgets"
    gh.gh("bob", "pr", "review", "1", "--comment", "-b", "One question inline.", "-R", repo)
    pr = gh.standin.world.pull(gh.repo, 1)
    inline = gh.gh(
        "bob",
        "api",
        "repos/carol/widgets/pulls/1/comments",
        "-f",
        "body=Empty list?",
        "-f",
        "path=src/widgets.py",
        "-F",
        "line=10",
        "-f",
        "side=RIGHT",
        "-f",
        f"commit_id={pr.head_sha}",
    )
    comment = json.loads(inline.stdout)
    assert comment["line"] == 10
    assert comment["user"]["login"] == "bob"
    assert "+    return sum(len(w) for w in ws)" in comment["diff_hunk"]

    outside = gh.gh(
        "bob",
        "api",
        "repos/carol/widgets/pulls/1/comments",
        "-f",
        "body=x",
        "-f",
        "path=src/widgets.py",
        "-F",
        "line=1",
        "-f",
        "side=RIGHT",
        "-f",
        f"commit_id={pr.head_sha}",
        check=False,
    )
    assert outside.returncode != 0
    # GitHub's shape: the particulars in errors[], not in the message.
    assert json.loads(outside.stdout)["errors"] == [
        {
            "resource": "PullRequestReviewComment",
            "field": "pull_request_review_thread.line",
            "code": "custom",
            "message": "could not be resolved",
        }
    ]

    own = gh.gh("alice", "pr", "review", "1", "--approve", "-R", repo, check=False)
    assert own.returncode != 0
    assert "Can not approve your own pull request" in own.stderr

    view = gh.gh("alice", "pr", "view", "1", "--comments", "-R", repo).stdout
    assert "One question inline." in view

    gh.gh("bob", "pr", "review", "1", "--approve", "-R", repo)
    assert "bob (Approved)" in gh.gh("alice", "pr", "view", "1", "-R", repo).stdout
    gh.gh("alice", "pr", "merge", "1", "--merge", "-R", repo)
    assert pr.state == "MERGED"
    assert pr.merged_by is gh.users["alice"]
    merged = gh.gh("bob", "pr", "view", "1", "-R", repo, "--json", "state,mergedBy").stdout
    assert json.loads(merged)["mergedBy"]["login"] == "alice"

    wt = gh.clone("carol")
    log = gh.run("carol", "git", "log", "--format=%s%n%P", "-1", cwd=wt).stdout.splitlines()
    assert log[0] == "Merge pull request #1 from carol/feature"
    assert len(log[1].split()) == 2  # a real merge commit: two parents
    assert "def total(ws):" in (wt / "src/widgets.py").read_text()


def test_pr_create_refuses_a_second_pr_for_the_same_head(github_standin: GitHubFixture) -> None:
    gh = github_standin
    _open_pr(gh)
    again = gh.gh(
        "alice",
        "pr",
        "create",
        "-R",
        f"{gh.host}/carol/widgets",
        "--head",
        "feature",
        "--base",
        "main",
        "--title",
        "Again",
        "--body",
        "",
        check=False,
    )
    assert again.returncode != 0
    assert "already exists" in again.stderr


def test_tokens_never_show_in_client_output(github_standin: GitHubFixture) -> None:
    gh = github_standin
    _open_pr(gh)
    outputs = [
        gh.gh("bob", "pr", "view", "1", "--comments", "-R", f"{gh.host}/carol/widgets"),
        gh.gh("bob", "auth", "status"),
        gh.gh("bob", "api", "user"),
    ]
    recorded = json.dumps([(e.body, e.request) for e in gh.standin.exchanges], default=str)
    for user in gh.users.values():
        for proc in outputs:
            assert user.token not in proc.stdout + proc.stderr
        assert user.token not in recorded


def test_pr_create_with_reviewer_and_pr_comment(github_standin: GitHubFixture) -> None:
    gh = github_standin
    repo = f"{gh.host}/carol/widgets"
    gh.push_branch("alice", "docs", {"README.md": "# widgets\n\nNow documented.\n"})
    gh.gh(
        "alice",
        "pr",
        "create",
        "-R",
        repo,
        "--head",
        "docs",
        "--base",
        "main",
        "--title",
        "Docs",
        "--body",
        "",
        "--reviewer",
        "bob",
    )
    pr = gh.standin.world.pull(gh.repo, 1)
    assert [u.login for u in pr.requested_reviewers] == ["bob"]
    gh.gh("bob", "pr", "comment", "1", "-R", repo, "-b", "Reading it now.")
    assert [(c.author.login, c.body) for c in pr.comments] == [("bob", "Reading it now.")]


def test_pr_status_and_search(github_standin: GitHubFixture) -> None:
    gh = github_standin
    repo = f"{gh.host}/carol/widgets"
    gh.push_branch("alice", "docs", {"README.md": "# widgets\n\nNow documented.\n"})
    gh.gh(
        "alice",
        "pr",
        "create",
        "-R",
        repo,
        "--head",
        "docs",
        "--base",
        "main",
        "--title",
        "Docs",
        "--body",
        "",
        "--reviewer",
        "bob",
    )
    status = gh.gh("bob", "pr", "status", "-R", repo).stdout
    requested = status.split("Requesting a code review from you")[1]
    assert "Docs" in requested
    mine = gh.gh("alice", "pr", "list", "-R", repo, "--search", "author:@me docs").stdout
    assert "Docs" in mine
    none = gh.gh("alice", "pr", "list", "-R", repo, "--search", "-author:@me").stdout
    assert "Docs" not in none


def test_pr_view_lists_each_commit_of_the_pr(github_standin: GitHubFixture) -> None:
    gh = github_standin
    wt = gh.clone("alice")
    gh.run("alice", "git", "checkout", "-q", "-b", "feature", cwd=wt)
    for n in (1, 2):
        (wt / f"f{n}.txt").write_text(f"{n}\n")
        gh.run("alice", "git", "add", "-A", cwd=wt)
        gh.run("alice", "git", "commit", "-q", "-m", f"Step {n}\n\nWhy {n}.", cwd=wt)
    gh.run("alice", "git", "push", "-q", "origin", "feature", cwd=wt)
    shas = gh.run("alice", "git", "rev-list", "--reverse", "main..feature", cwd=wt).stdout.split()
    repo = f"{gh.host}/carol/widgets"
    gh.gh("alice", "pr", "create", "-R", repo, "--head", "feature", "--base", "main", "--title", "Steps", "--body", "")
    view = json.loads(gh.gh("bob", "pr", "view", "1", "-R", repo, "--json", "commits").stdout)
    assert [(c["oid"], c["messageHeadline"], c["messageBody"]) for c in view["commits"]] == [
        (shas[0], "Step 1", "Why 1."),
        (shas[1], "Step 2", "Why 2."),
    ]
    assert [a["login"] for c in view["commits"] for a in c["authors"]] == ["alice", "alice"]


def test_review_decision_is_null_without_branch_protection(github_standin: GitHubFixture) -> None:
    """GitHub decides on reviews only when a branch protection rule requires them; the stand-in
    has none, so an approval leaves reviewDecision null (gh: "") as on such a repository."""
    gh = github_standin
    _open_pr(gh)
    repo = f"{gh.host}/carol/widgets"
    gh.gh("bob", "pr", "review", "1", "--approve", "-R", repo)
    view = json.loads(gh.gh("alice", "pr", "view", "1", "-R", repo, "--json", "reviewDecision,latestReviews").stdout)
    assert view["reviewDecision"] == ""
    assert [r["state"] for r in view["latestReviews"]] == ["APPROVED"]


def test_a_mutation_the_standin_does_not_model_fails_instead_of_pretending(github_standin: GitHubFixture) -> None:
    gh = github_standin
    _open_pr(gh)
    repo = f"{gh.host}/carol/widgets"
    edit = gh.gh("alice", "pr", "edit", "1", "-R", repo, "--title", "Renamed", check=False)
    assert edit.returncode != 0
    assert "does not model the mutation updatePullRequest" in edit.stderr
    assert gh.standin.world.pull(gh.repo, 1).title == "Add total()"


def test_a_draft_made_ready_can_be_merged(github_standin: GitHubFixture) -> None:
    gh = github_standin
    gh.push_branch("alice", "feature", FEATURE, "Add total()")
    repo = f"{gh.host}/carol/widgets"
    gh.gh("alice", "pr", "create", "-R", repo, "--head", "feature", "--title", "Total", "--body", "", "--draft")
    refused = gh.gh("alice", "pr", "merge", "1", "--merge", "-R", repo, check=False)
    assert refused.returncode != 0
    gh.gh("alice", "pr", "ready", "1", "-R", repo)
    assert gh.standin.world.pull(gh.repo, 1).draft is False
    gh.gh("alice", "pr", "merge", "1", "--merge", "-R", repo)
    assert gh.standin.world.pull(gh.repo, 1).state == "MERGED"
