"""Which PR a gh command acted on when it named none: the checkout's repository and branch.

The decisions are pure and tested over their inputs; the shell is tested against real git, the
real gh and the GitHub stand-in (a checkout of a repository that is not the agent's primary one,
and `gh pr merge --delete-branch`, which leaves the checkout on the default branch).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import subprocess
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from agent_smith.crew import scaffold_crew
from agent_smith.hooks.checkout import (
    SWITCH_WINDOW,
    BranchConfig,
    Remote,
    branch_config,
    branch_left_for,
    forge_host,
    gh_base_repo,
    parse_branch_config,
    parse_reflog,
    parse_remotes,
    pr_head,
    remote_repo,
)
from agent_smith.hooks.context import HookContext, load_context
from agent_smith.hooks.deliver import PrFacts, deliver, pr_facts
from agent_smith.hooks.recognise import PrAction, repo_name
from agent_smith.hooks.stop import fetch_snapshot
from agent_smith.hooks.tool import SPOOL, located, run_tool
from tests.fixtures.github import GitHubFixture
from tests.standins.github.test_github_standin_forks import FIX, add_outsider, fork_checkout

HOST = "ghe.test"
NAMES = st.from_regex(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,10}", fullmatch=True).filter(lambda n: n not in (".", ".."))


@given(
    NAMES, NAMES, st.sampled_from(["{o}/{r}", "ghe.test/{o}/{r}", "https://ghe.test/{o}/{r}", "https://h/{o}/{r}.git"])
)
def test_a_repository_is_named_as_gh_takes_it(owner: str, name: str, form: str) -> None:
    expected = f"{owner}/{name.removesuffix('.git')}" if form.endswith(".git") else f"{owner}/{name}"
    assert repo_name(form.format(o=owner, r=name)) == (expected if not expected.endswith("/") else None)


@pytest.mark.parametrize("value", ["", "widgets", "a/b/c/d", "https://ghe.test/a", "https://ghe.test/a/b/c", "a/ b"])
def test_what_names_no_repository_is_none(value: str) -> None:
    assert repo_name(value) is None


@pytest.mark.parametrize(
    ("url", "repo"),
    [
        ("https://ghe.test/acme/widgets.git", "acme/widgets"),
        ("https://GHE.test:443/acme/widgets", "acme/widgets"),
        ("https://x:token@ghe.test/acme/widgets.git/", "acme/widgets"),
        ("ssh://git@ghe.test/acme/widgets.git", "acme/widgets"),
        ("git@ghe.test:acme/widgets.git", "acme/widgets"),
        ("ghe.test:acme/widgets", "acme/widgets"),
        ("https://other.test/acme/widgets.git", None),
        ("git@other.test:acme/widgets.git", None),
        ("/srv/git/acme/widgets.git", None),
        ("../widgets", None),
        ("https://ghe.test/acme", None),
        ("https://[bad/acme/widgets", None),
    ],
)
def test_a_remote_url_names_a_repository_of_the_forge_s_host(url: str, repo: str | None) -> None:
    assert remote_repo(url, HOST) == repo


def test_github_com_s_own_subdomains_are_github_com() -> None:
    assert forge_host("https://api.github.com") == "github.com"
    assert forge_host("https://GHE.test/api/v3") == HOST
    assert remote_repo("git@ssh.github.com:acme/widgets.git", "github.com") == "acme/widgets"


def test_remotes_are_read_from_git_s_listing_and_gh_s_marks() -> None:
    listing = (
        "origin\thttps://ghe.test/me/widgets.git (fetch)\n"
        "origin\thttps://ghe.test/me/widgets.git (push)\n"
        "up.stream\tgit@ghe.test:acme/widgets.git (fetch)\n"
        "odd line\n"
    )
    marks = "remote.up.stream.gh-resolved base\nremote.gone.gh-resolved acme/x\n"
    assert parse_remotes(listing, marks) == [
        Remote("origin", "https://ghe.test/me/widgets.git"),
        Remote("up.stream", "git@ghe.test:acme/widgets.git", "base"),
    ]


REMOTE_NAMES = st.sampled_from(["origin", "upstream", "github", "fork", "alice", "Origin"])
REMOTES = st.lists(
    st.builds(
        Remote,
        REMOTE_NAMES,
        st.builds(
            "{}://{}/{}/{}.git".format,
            st.sampled_from(["https", "ssh"]),
            st.sampled_from([HOST, "other.test"]),
            NAMES,
            NAMES,
        ),
        st.sampled_from(["", "", "", "base", "acme/set"]),
    ),
    max_size=6,
    unique_by=lambda r: r.name.lower(),
)
RANK = {"upstream": 0, "github": 1, "origin": 2}


@given(REMOTES)
def test_gh_acts_on_the_marked_remote_else_upstream_github_origin_then_the_rest(remotes: list[Remote]) -> None:
    on_host = [r for r in remotes if remote_repo(r.url, HOST)]
    chosen = gh_base_repo(remotes, HOST)
    if not on_host:
        assert chosen is None
        return
    ordered = sorted(on_host, key=lambda r: RANK.get(r.name.lower(), 3))
    marked = [r for r in ordered if r.resolved]
    if marked:
        assert chosen == (remote_repo(marked[0].url, HOST) if marked[0].resolved == "base" else "acme/set")
    else:
        assert chosen == remote_repo(ordered[0].url, HOST)
        # the order of git's listing never matters for the named remotes
        assert gh_base_repo(list(reversed(remotes)), HOST) == chosen or ordered[0].name.lower() not in RANK


NOW = 1_800_000_000.0


@pytest.mark.parametrize(
    ("reflog", "left"),
    [
        # gh: checkout of the default branch, a pull; the merged branch deleted (no reflog entry)
        (
            [(NOW - 5, "pull --ff-only origin main: Fast-forward"), (NOW - 6, "checkout: moving from fix-1 to main")],
            "fix-1",
        ),
        ([(NOW - 6, "checkout: moving from fix-1 to main")], "fix-1"),
        ([(NOW - 6, "checkout: moving from main to fix-1")], None),  # the newest checkout went elsewhere
        ([(NOW - 6, "checkout: moving from main to main")], None),
        ([(NOW - SWITCH_WINDOW - 1, "checkout: moving from fix-1 to main")], None),  # long before this call
        (
            [
                (NOW - 1, "commit: x"),
                (NOW - 2, "checkout: moving from fix-1 to dev"),
                (NOW - 3, "checkout: moving from fix-2 to main"),
            ],
            None,
        ),
        ([(NOW - 1, "reset: moving to HEAD~1")], None),
        ([], None),
    ],
)
def test_the_branch_gh_left_is_that_of_the_newest_recent_checkout_to_the_current_one(
    reflog: list[tuple[float, str]], left: str | None
) -> None:
    assert branch_left_for("main", reflog, NOW) == left


@given(
    st.lists(
        st.tuples(
            st.floats(NOW - 2 * SWITCH_WINDOW, NOW),
            st.sampled_from(["fix", "main", "dev"]),
            st.sampled_from(
                ["fix", "main", "dev"],
            ),
            st.booleans(),
        ),
        max_size=8,
    )
)
def test_only_the_newest_checkout_counts(entries: list[tuple[float, str, str, bool]]) -> None:
    reflog = [
        (at, f"checkout: moving from {a} to {b}" if checkout else "pull: Fast-forward")
        for at, a, b, checkout in entries
    ]
    left = branch_left_for("main", reflog, NOW)
    newest = next(((at, a, b) for at, a, b, checkout in entries if checkout), None)
    if newest is None or newest[2] != "main" or newest[1] == "main" or newest[0] < NOW - SWITCH_WINDOW:
        assert left is None
    else:
        assert left == newest[1]


def test_the_reflog_is_read_with_its_times() -> None:
    text = "HEAD@{1800000000}\0checkout: moving from a to b\nnot an entry\nHEAD@{1799999999}\0clone: from x\n"
    assert parse_reflog(text) == [(1800000000.0, "checkout: moving from a to b"), (1799999999.0, "clone: from x")]


def git(cwd: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(cwd), *args], capture_output=True, text=True, check=True).stdout.strip()


@pytest.fixture
def context(tmp_path: Path) -> HookContext:
    crew = tmp_path / "crew"
    scaffold_crew(crew)
    text = (crew / "crew.yaml").read_text()
    text = text.replace("base_url: https://api.github.com", f"base_url: https://{HOST}/api/v3")
    text = text.replace("kind: github\n", "kind: github-enterprise\n", 1)
    (crew / "crew.yaml").write_text(text + f"\nruntime:\n  state_dir: {tmp_path / 'state'}\n")
    home = tmp_path / "home"
    home.mkdir()
    return load_context({"AGENT_NAME": "devbot", "AGENT_SMITH_CREW": str(crew), "HOME": str(home)})


def checkout(tmp_path: Path, **remotes: str) -> Path:
    work = tmp_path / "work"
    git(tmp_path, "init", "-q", "-b", "main", str(work))
    for name, url in remotes.items():
        git(work, "remote", "add", name, url)
    return work


def merged(number: int | None = 3, **fields: Any) -> PrAction:
    return PrAction("merged", None, number, repo_of_checkout=True, **fields)


def test_the_repository_is_the_checkout_s_as_gh_resolves_it(context: HookContext, tmp_path: Path) -> None:
    assert context.primary_repo == "example/widgets"
    work = checkout(
        tmp_path,
        origin=f"https://{HOST}/me/widgets.git",
        upstream=f"git@{HOST}:acme/tools.git",
        other="https://x.test/a/b",
    )
    assert located(merged(), context, str(work), {}).repo == "acme/tools"
    git(work, "config", "remote.origin.gh-resolved", "base")  # `gh repo set-default me/widgets`
    assert located(merged(), context, str(work), {}).repo == "me/widgets"
    assert located(merged(), context, str(work), {"GH_REPO": f"{HOST}/acme/env"}).repo == "acme/env"
    # Where gh ran is unknown, or no checkout of the forge: the agent's primary repository.
    assert located(merged(ran_in_cwd=False), context, str(work), {}).repo == "example/widgets"
    assert located(merged(), context, str(tmp_path), {}).repo == "example/widgets"
    assert located(merged(), context, None, {}).repo == "example/widgets"
    # A repository gh was told of is kept.
    assert located(PrAction("merged", "acme/x", 3), context, str(work), {}).repo == "acme/x"


def test_a_deleted_branch_is_recovered_only_when_gh_switched_from_it(context: HookContext, tmp_path: Path) -> None:
    work = checkout(tmp_path, origin=f"https://{HOST}/example/widgets.git")
    git(work, "-c", "user.name=d", "-c", "user.email=d@x", "commit", "-q", "--allow-empty", "-m", "init")
    git(work, "checkout", "-q", "-b", "fix-1")
    action = merged(number=None, on_checkout=True, deleted_branch=True)
    assert located(action, context, str(work), {}).branch == "fix-1", "not switched yet"
    git(work, "checkout", "-q", "main")
    assert located(action, context, str(work), {}).branch == "main", "fix-1 is still there: gh deleted nothing"
    git(work, "branch", "-q", "-D", "fix-1")
    assert located(action, context, str(work), {}).branch == "fix-1"
    assert located(merged(number=None, on_checkout=True), context, str(work), {}).branch == "main", "no -d"


# --- against real git, the real gh and the GitHub stand-in ---------------------------------------


def standin_context(
    github: GitHubFixture, tmp_path: Path, repos: str = "carol/widgets, carol/gadgets", login: str = "devbot"
) -> HookContext:
    """The hooks of devbot, working on `repos` of the stand-in with GitHub login `login`."""
    crew = tmp_path / "crew"
    scaffold_crew(crew)
    text = (crew / "crew.yaml").read_text()
    text = text.replace("base_url: https://api.github.com", f"base_url: {github.standin.api_url}")
    text = text.replace("kind: github\n", "kind: github-enterprise\n", 1)
    text = text.replace("repos: [example/widgets]", f"repos: [{repos}]", 1)
    text = text.replace("github_login: devbot", f"github_login: {login}", 1)
    (crew / "crew.yaml").write_text(text + f"\nruntime:\n  state_dir: {tmp_path / 'state'}\n")
    home = tmp_path / "home"
    home.mkdir()
    context = load_context({"AGENT_NAME": "devbot", "AGENT_SMITH_CREW": str(crew), "HOME": str(home)})
    assert (context.primary_repo, ", ".join(context.repos)) == (github.repo.full_name, repos)
    return context


def push(github: GitHubFixture, repo: str, branch: str, files: dict[str, str]) -> Path:
    work = github.clone("alice", repo)
    github.run("alice", "git", "checkout", "-q", "-b", branch, cwd=work)
    for name, text in files.items():
        (work / name).write_text(text)
    github.run("alice", "git", "commit", "-qam", branch, cwd=work)
    github.run("alice", "git", "push", "-q", "-u", "origin", branch, cwd=work)
    return work


async def open_pr(github: GitHubFixture, repo: str, branch: str) -> int:
    async with github.client("alice") as forge:
        return (await forge.open_pull_request(repo, head=branch, base="main", title=f"Fix {branch}")).number


def delivered(github: GitHubFixture, context: HookContext) -> list[tuple[str, Mapping[str, Any]]]:
    """What a delivery publishes, with the forge's answers from the stand-in."""
    published: list[tuple[str, Mapping[str, Any]]] = []

    async def run() -> None:
        async with github.client("alice") as forge:

            async def lookup(repo: str, number: int) -> PrFacts:
                return pr_facts(await forge.pull_request(repo, number))

            async def find(repo: str, branch: str) -> tuple[int, PrFacts] | None:
                data = await forge.pull_request_of_branch(repo, branch)
                return None if data is None else (int(data["number"]), pr_facts(data))

            async def publish(kind: str, fields: Mapping[str, Any], at: dt.datetime | None) -> str:
                published.append((kind, fields))
                return "in the stream"

            assert await deliver(context, lookup, publish, None, find) == (1, 0)

    asyncio.run(run())
    return published


def tool_call(command: str, cwd: Path, stdout: str = "", stderr: str = "") -> dict[str, Any]:
    return {
        "tool_name": "Bash",
        "tool_input": {"command": command},
        "tool_response": {"stdout": stdout, "stderr": stderr},
        "cwd": str(cwd),
    }


def test_a_merge_by_number_in_a_checkout_of_another_repository_names_that_repository(
    github_standin: GitHubFixture, tmp_path: Path
) -> None:
    github = github_standin
    github.standin.world.add_repo(
        "carol", "gadgets", files={"README.md": "# gadgets\n"}, collaborators=("alice", "bob")
    )
    context = standin_context(github, tmp_path)
    work = push(github, "carol/gadgets", "fix-g", {"README.md": "# gadgets!\n"})
    # The primary repository has a PR of the same number: the one a wrong guess would name.
    push(github, "carol/widgets", "fix-w", {"README.md": "# widgets!\n"})
    assert asyncio.run(open_pr(github, "carol/widgets", "fix-w")) == 1
    assert asyncio.run(open_pr(github, "carol/gadgets", "fix-g")) == 1
    gh = github.run("alice", "gh", "pr", "merge", "1", "--squash", cwd=work)
    run_tool(context, tool_call("gh pr merge 1 --squash", work, gh.stdout, gh.stderr), spawn=False, env={})
    assert github.standin.world.pull(github.standin.world.repos["carol/gadgets"], 1).merged_at is not None
    [(kind, fields)] = delivered(github, context)
    assert (kind, fields["repo"], fields["pr"], fields["title"]) == ("pr_merged", "carol/gadgets", 1, "Fix fix-g")
    assert fields["url"].endswith("/carol/gadgets/pull/1")


def test_gh_s_choice_among_remotes_is_the_hook_s(github_standin: GitHubFixture, tmp_path: Path) -> None:
    """gh (outside a terminal) acts on `upstream` before `origin`: so does the hook."""
    github = github_standin
    github.standin.world.add_repo(
        "carol", "gadgets", files={"README.md": "# gadgets\n"}, collaborators=("alice", "bob")
    )
    context = standin_context(github, tmp_path)
    work = push(github, "carol/gadgets", "fix-g", {"README.md": "# gadgets!\n"})
    asyncio.run(open_pr(github, "carol/gadgets", "fix-g"))
    github.run("alice", "git", "remote", "add", "upstream", f"{github.standin.url}/carol/widgets.git", cwd=work)
    push(github, "carol/widgets", "fix-w", {"README.md": "# widgets!\n"})
    asyncio.run(open_pr(github, "carol/widgets", "fix-w"))
    view = github.run("alice", "gh", "pr", "view", "1", "--json", "url", cwd=work)
    assert json.loads(view.stdout)["url"].endswith("/carol/widgets/pull/1"), "gh's own choice"
    action = located(merged(number=1), context, str(work), {})
    assert action.repo == "carol/widgets"


def test_a_merge_that_deleted_the_checked_out_branch_publishes_its_pr(
    github_standin: GitHubFixture, tmp_path: Path
) -> None:
    github = github_standin
    context = standin_context(github, tmp_path)
    work = push(github, "carol/widgets", "fix-1", {"README.md": "# widgets!\n"})
    number = asyncio.run(open_pr(github, "carol/widgets", "fix-1"))
    # The real gh: it merges, checks out main, pulls, deletes fix-1 locally, then the remote branch
    # (a stand-in without DELETE of refs fails only that last step: the checkout is as gh leaves it).
    gh = github.run("alice", "gh", "pr", "merge", "--squash", "--delete-branch", cwd=work, check=False)
    assert git(work, "branch", "--show-current") == "main"
    assert "fix-1" not in git(work, "branch", "--list")
    run_tool(context, tool_call("gh pr merge --squash --delete-branch", work, gh.stdout), spawn=False, env={})
    [job] = (context.state / "hooks" / SPOOL).iterdir()
    assert json.loads(job.read_text())["branch"] == "fix-1"
    [(kind, fields)] = delivered(github, context)
    assert (kind, fields["repo"], fields["pr"]) == ("pr_merged", "carol/widgets", number)


# --- a branch pushed to a fork: its PR is found by `owner:branch`, as gh finds it ---------------

FORK_REMOTES = [Remote("origin", f"https://{HOST}/dave/widgets.git"), Remote("upstream", f"git@{HOST}:acme/widgets")]


@pytest.mark.parametrize(
    ("config", "head"),
    [
        (BranchConfig(), "fix"),  # never pushed with -u: the branch itself
        (BranchConfig("upstream", "refs/heads/fix"), "fix"),  # pushed to the base repository
        (BranchConfig("origin", "refs/heads/fix"), "dave:fix"),  # pushed to dave's fork
        (BranchConfig("origin", "refs/heads/fix-upstream"), "dave:fix-upstream"),  # under another name
        (BranchConfig("origin", ""), "dave:fix"),
        (BranchConfig(f"https://{HOST}/erin/widgets.git", "refs/heads/fix"), "erin:fix"),  # a URL
        (BranchConfig("git@elsewhere.test:erin/widgets.git", "refs/heads/fix"), "erin:fix"),  # any host's
        (BranchConfig(f"https://{HOST}/ACME/widgets.git", "refs/heads/fix"), "fix"),  # owners match any case
        (BranchConfig("gone", "refs/heads/fix"), "fix"),  # no such remote
        (BranchConfig(".", "refs/heads/main"), "fix"),  # a local upstream
        (BranchConfig("/srv/git/widgets.git", "refs/heads/fix"), "fix"),
        (BranchConfig("origin", "refs/pull/7/head"), 7),  # `gh pr checkout 7` of a fork's PR
    ],
)
def test_the_pr_of_the_checked_out_branch_is_found_by_its_upstream_s_owner(
    config: BranchConfig, head: str | int
) -> None:
    assert pr_head("fix", config, FORK_REMOTES, "acme/widgets", HOST) == head


def test_a_branch_s_upstream_is_read_from_git_s_config(tmp_path: Path) -> None:
    work = checkout(tmp_path, origin=f"https://{HOST}/dave/widgets.git")
    git(work, "config", "branch.fix-1.remote", "origin")
    git(work, "config", "branch.fix-1.merge", "refs/heads/fix-1")
    git(work, "config", "branch.fix-10.remote", "elsewhere")  # a pattern must not take it for fix-1's
    assert branch_config(str(work), "fix-1") == BranchConfig("origin", "refs/heads/fix-1")
    assert branch_config(str(work), "fix") == BranchConfig()
    assert parse_branch_config("branch.a.b.remote fork\nbranch.a.b.merge refs/heads/a.b\n") == BranchConfig(
        "fork", "refs/heads/a.b"
    )


def dave_context(github: GitHubFixture, tmp_path: Path) -> HookContext:
    """The hooks of an agent whose GitHub login is dave, working on carol/widgets."""
    return standin_context(github, tmp_path, repos=github.repo.full_name, login="dave")


@pytest.mark.parametrize("fork_remote", ["origin", "fork"])
def test_a_pr_from_a_fork_is_found_by_its_owner_and_its_review_surfaces(
    github_standin: GitHubFixture, tmp_path: Path, fork_remote: str
) -> None:
    """dave pushes `fix` to his fork and opens a PR to carol/widgets; alice then opens a PR from a
    same-named branch of carol/widgets. dave's `gh pr review` (no number) is his PR's, as gh found
    it; the Stop hook's check shows bob's comment on it, and nothing of alice's."""
    github = github_standin
    add_outsider(github)
    github.gh("dave", "api", "-X", "POST", "repos/carol/widgets/forks")
    context = dave_context(github, tmp_path)
    work = fork_checkout(github, "dave", "fix", FIX, fork_remote)
    created = github.run("dave", "gh", "pr", "create", "--title", "Count any iterable", "--body", "", cwd=work)
    assert created.stdout.strip().endswith("/carol/widgets/pull/1")
    push(github, "carol/widgets", "fix", {"README.md": "# widgets!\n"})
    assert asyncio.run(open_pr(github, "carol/widgets", "fix")) == 2
    # GitHub requires the commit a review comment is on.
    head = github.gh("bob", "pr", "view", "1", "-R", "carol/widgets", "--json", "headRefOid", "-q", ".headRefOid")
    github.gh(
        "bob",
        "api",
        "-X",
        "POST",
        "repos/carol/widgets/pulls/1/comments",
        "-f",
        "body=Why list() here?",
        "-f",
        "path=src/widgets.py",
        "-F",
        "line=6",
        "-f",
        f"commit_id={head.stdout.strip()}",
    )
    command = "gh pr review --comment -b 'Answered inline'"
    review = github.run("dave", "gh", "pr", "review", "--comment", "-b", "Answered inline", cwd=work)
    assert [r.author.login for r in github.standin.world.pull(github.repo, 1).reviews][-1] == "dave", "gh's own PR"
    run_tool(context, tool_call(command, work, review.stdout, review.stderr), spawn=False, env={})
    [job] = (context.state / "hooks" / SPOOL).iterdir()
    assert json.loads(job.read_text())["branch"] == "dave:fix"
    [(kind, fields)] = delivered(github, context)
    assert (kind, fields["repo"], fields["pr"], fields["title"]) == (
        "pr_reviewed",
        "carol/widgets",
        1,
        "Count any iterable",
    )
    env = {"GITHUB_TOKEN": github.token("dave"), "SSL_CERT_FILE": str(github.standin.ca_path)}
    snapshot = fetch_snapshot(context, env)
    assert [(p.repo, p.number) for p in snapshot.pull_requests] == [("carol/widgets", 1)]
    assert [(i.pr, i.author, i.body, i.path, i.line) for i in snapshot.items] == [
        ("carol/widgets#1", "bob", "Why list() here?", "src/widgets.py", 6)
    ]


def test_a_merge_of_a_fork_s_pr_with_delete_branch_publishes_the_fork_s_pr(
    github_standin: GitHubFixture, tmp_path: Path
) -> None:
    """dave merges his fork's PR with `gh pr merge --delete-branch`, no number, while alice has a
    PR from a same-named branch of carol/widgets: gh deletes no branch of a fork's PR (not the
    fork's, not the local one), and the merge published is his PR's."""
    github = github_standin
    add_outsider(github)
    github.gh("dave", "api", "-X", "POST", "repos/carol/widgets/forks")
    github.repo.collaborators.add("dave")  # a maintainer who works from his fork, as some do
    context = dave_context(github, tmp_path)
    work = fork_checkout(github, "dave", "fix", FIX, "fork")
    github.run("dave", "gh", "pr", "create", "--title", "Count any iterable", "--body", "", cwd=work)
    push(github, "carol/widgets", "fix", {"README.md": "# widgets!\n"})
    assert asyncio.run(open_pr(github, "carol/widgets", "fix")) == 2
    # alice's branch is known to dave's checkout too, at another commit than his.
    github.run("dave", "git", "fetch", "-q", "upstream", cwd=work)
    gh = github.run("dave", "gh", "pr", "merge", "--merge", "--delete-branch", cwd=work, check=False)
    assert github.standin.world.pull(github.repo, 1).state == "MERGED", gh.stderr
    assert git(work, "branch", "--show-current") == "fix", "gh left the checkout as it was"
    run_tool(context, tool_call("gh pr merge --merge --delete-branch", work, gh.stdout, gh.stderr), spawn=False, env={})
    [job] = (context.state / "hooks" / SPOOL).iterdir()
    assert json.loads(job.read_text())["branch"] == "dave:fix"
    [(kind, fields)] = delivered(github, context)
    assert (kind, fields["repo"], fields["pr"]) == ("pr_merged", "carol/widgets", 1)
