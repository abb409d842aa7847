"""Forks in the stand-in, driven by the real `gh` and `git`: a fork made over REST, a pull request
from its branch to the base repository, and a same-named branch of another owner beside it.

Every REST answer is checked against GitHub's OpenAPI description by the fixture at teardown.
"""

from __future__ import annotations

import json
import secrets
from pathlib import Path
from typing import Any

import pytest
from tests.fixtures.github import GitHubFixture

pytestmark = pytest.mark.real

FIX = {"src/widgets.py": "def widget(n):\n    return [n] * n\n\n\ndef count(ws):\n    return len(list(ws))\n"}
BASE = "carol/widgets"


def add_outsider(github: GitHubFixture, login: str = "dave") -> None:
    """A user with no push access to carol/widgets: a pull request from them comes from a fork."""
    github.users[login] = github.standin.world.add_user(login, f"ghp_{secrets.token_hex(18)}", login.title())


def api(github: GitHubFixture, login: str, *args: str) -> Any:
    return json.loads(github.gh(login, "api", *args).stdout)


def fork_checkout(github: GitHubFixture, login: str, branch: str, files: dict[str, str], fork_remote: str) -> Path:
    """`login`'s clone of their fork, the fork as `fork_remote` and carol/widgets as `upstream`,
    with `branch` committed and pushed to the fork (`git push -u`)."""
    work = github.clone(login, f"{login}/widgets")
    if fork_remote != "origin":
        github.run(login, "git", "remote", "rename", "origin", fork_remote, cwd=work)
    github.run(login, "git", "remote", "add", "upstream", f"{github.standin.url}/{BASE}.git", cwd=work)
    github.run(login, "git", "checkout", "-q", "-b", branch, cwd=work)
    for name, text in files.items():
        (work / name).write_text(text)
    github.run(login, "git", "commit", "-qam", f"{branch} of {login}", cwd=work)
    github.run(login, "git", "push", "-q", "-u", fork_remote, branch, cwd=work)
    return work


def test_a_fork_is_made_over_rest_and_names_its_parent_and_source(github_standin: GitHubFixture) -> None:
    github = github_standin
    add_outsider(github)
    fork = api(github, "dave", "-X", "POST", f"repos/{BASE}/forks")
    assert (fork["full_name"], fork["fork"], fork["owner"]["login"]) == ("dave/widgets", True, "dave")
    assert (fork["parent"]["full_name"], fork["source"]["full_name"]) == (BASE, BASE)
    assert fork["permissions"]["push"] is True
    # Forking again gives the fork dave has; a fork of the fork names the network's root as source.
    assert api(github, "dave", "-X", "POST", f"repos/{BASE}/forks")["id"] == fork["id"]
    again = api(github, "bob", "-X", "POST", "repos/dave/widgets/forks", "-f", "name=gadgets")
    assert (again["full_name"], again["parent"]["full_name"], again["source"]["full_name"]) == (
        "bob/gadgets",
        "dave/widgets",
        BASE,
    )
    base = api(github, "carol", f"repos/{BASE}")
    assert (base["fork"], base["forks_count"], base["network_count"]) == (False, 1, 2)
    assert "parent" not in base
    # The fork has the base's branches, and takes dave's pushes where the base refuses them.
    work = github.clone("dave", "dave/widgets")
    github.run("dave", "git", "push", "-q", "origin", "HEAD:refs/heads/topic", cwd=work)
    refused = github.run(
        "dave", "git", "push", "-q", f"{github.standin.url}/{BASE}.git", "HEAD:topic", cwd=work, check=False
    )
    assert refused.returncode != 0
    data = github.graphql(
        "dave",
        'query { repository(owner: "dave", name: "widgets") { isFork parent { nameWithOwner } } '
        'base: repository(owner: "carol", name: "widgets") { forkCount forks(first: 5) { nodes { nameWithOwner } } } }',
    )["data"]
    assert data["repository"] == {"isFork": True, "parent": {"nameWithOwner": BASE}}
    assert data["base"] == {"forkCount": 1, "forks": {"nodes": [{"nameWithOwner": "dave/widgets"}]}}


def test_a_pull_request_from_a_fork_is_told_from_a_same_named_branch_of_another_owner(
    github_standin: GitHubFixture,
) -> None:
    github = github_standin
    add_outsider(github)
    github.gh("dave", "api", "-X", "POST", f"repos/{BASE}/forks")
    work = fork_checkout(github, "dave", "fix", FIX, "origin")
    # gh finds where the branch was pushed (the fork) and asks for the head `dave:fix`.
    created = github.run("dave", "gh", "pr", "create", "--title", "Count any iterable", "--body", "b", cwd=work)
    assert created.stdout.strip() == f"{github.standin.url}/{BASE}/pull/1"
    # alice, a collaborator, has a branch `fix` in the base repository and its own PR.
    github.push_branch("alice", "fix", {"README.md": "# widgets\n\nFixed.\n"})
    github.gh(
        "alice", "pr", "create", "-R", f"{github.host}/{BASE}", "--head", "fix", "--title", "Readme", "--body", ""
    )

    def heads(query: str) -> list[tuple[int, str, str, str]]:
        pulls = api(github, "carol", f"repos/{BASE}/pulls?{query}")
        return [
            (p["number"], p["head"]["label"], p["head"]["repo"]["full_name"], p["head"]["user"]["login"]) for p in pulls
        ]

    assert heads("head=dave:fix") == [(1, "dave:fix", "dave/widgets", "dave")]
    assert heads("head=carol:fix") == [(2, "carol:fix", BASE, "carol")]
    # GitHub silently ignores a head without its owner.
    assert [n for n, *_ in heads("head=fix")] == [2, 1]
    pull = api(github, "carol", f"repos/{BASE}/pulls/1")
    assert (pull["base"]["label"], pull["base"]["repo"]["full_name"], pull["head"]["repo"]["fork"]) == (
        "carol:main",
        BASE,
        True,
    )
    assert pull["head"]["sha"] == github.run("dave", "git", "rev-parse", "HEAD", cwd=work).stdout.strip()
    # GraphQL filters by the ref name alone; the owner tells the two apart.
    nodes = github.graphql(
        "carol",
        'query { repository(owner: "carol", name: "widgets") { pullRequests(headRefName: "fix", first: 10) '
        "{ nodes { number isCrossRepository headRefName headRepositoryOwner { login } headRepository { nameWithOwner } } } } }",
    )["data"]["repository"]["pullRequests"]["nodes"]
    assert nodes == [
        {
            "number": 1,
            "isCrossRepository": True,
            "headRefName": "fix",
            "headRepositoryOwner": {"login": "dave"},
            "headRepository": {"nameWithOwner": "dave/widgets"},
        },
        {
            "number": 2,
            "isCrossRepository": False,
            "headRefName": "fix",
            "headRepositoryOwner": {"login": "carol"},
            "headRepository": {"nameWithOwner": BASE},
        },
    ]
    # gh's own lookup of the checked-out branch's PR: each checkout finds its own.
    mine = json.loads(github.run("dave", "gh", "pr", "view", "--json", "number,headRepositoryOwner", cwd=work).stdout)
    assert (mine["number"], mine["headRepositoryOwner"]["login"]) == (1, "dave")
    # gh's selector: a bare branch is the base repository's, `owner:branch` a fork's.
    for selector, number in (("fix", 2), ("dave:fix", 1)):
        view = github.gh("carol", "pr", "view", selector, "-R", f"{github.host}/{BASE}", "--json", "number")
        assert json.loads(view.stdout)["number"] == number
    # A second PR for the same head is refused, whoever's same-named branch has one too.
    again = github.run("dave", "gh", "pr", "create", "--title", "Again", "--body", "", cwd=work, check=False)
    assert again.returncode != 0
    assert f"{github.standin.url}/{BASE}/pull/1" in again.stdout + again.stderr


def test_a_fork_s_pull_request_is_reviewed_follows_pushes_and_merges(github_standin: GitHubFixture) -> None:
    github = github_standin
    add_outsider(github)
    github.gh("dave", "api", "-X", "POST", f"repos/{BASE}/forks")
    work = fork_checkout(github, "dave", "fix", FIX, "fork")
    github.run("dave", "gh", "pr", "create", "--title", "Count any iterable", "--body", "b", cwd=work)
    first_head = github.run("dave", "git", "rev-parse", "HEAD", cwd=work).stdout.strip()
    comment = api(
        github,
        "bob",
        "-X",
        "POST",
        f"repos/{BASE}/pulls/1/comments",
        "-f",
        "body=Why list()?",
        "-f",
        "path=src/widgets.py",
        "-F",
        "line=6",
        "-f",
        "side=RIGHT",
        "-f",
        f"commit_id={first_head}",
    )
    assert comment["line"] == 6
    # A push to the fork moves the PR's head; the thread's line is untouched, so it stays put.
    (work / "NOTES.md").write_text("why list: generators\n")
    github.run("dave", "git", "add", "NOTES.md", cwd=work)
    github.run("dave", "git", "commit", "-qm", "notes", cwd=work)
    github.run("dave", "git", "push", "-q", cwd=work)
    head = github.run("dave", "git", "rev-parse", "HEAD", cwd=work).stdout.strip()
    pull = api(github, "carol", f"repos/{BASE}/pulls/1")
    assert (pull["head"]["sha"], pull["commits"], pull["changed_files"]) == (head, 2, 2)
    [thread] = api(github, "carol", f"repos/{BASE}/pulls/1/comments")
    assert (thread["line"], thread["commit_id"]) == (6, head)
    github.gh("carol", "pr", "merge", "1", "--merge", "-R", f"{github.host}/{BASE}")
    merged = github.standin.world.pull(github.repo, 1)
    assert merged.state == "MERGED"
    message = github.repo.git.commit_message(merged.merge_commit_sha or "")
    assert message.startswith("Merge pull request #1 from dave/fix")
    assert github.repo.git.is_ancestor(head, github.repo.git.rev_parse("main") or "")
