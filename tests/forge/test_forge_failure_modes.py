"""The forge client under GitHub's failure modes, against the stand-in over real HTTPS."""

from __future__ import annotations

import pytest
from tests.fixtures.github import GitHubFixture, Sleeps

from agent_smith.errors import OperationError
from agent_smith.forge import ItemKind, unaddressed
from agent_smith.forge.oneshot import review_activity_once
from agent_smith.standins.github.state import InlineComment

pytestmark = [pytest.mark.real, pytest.mark.anyio]

REPO = "carol/widgets"


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def _one_line_without_html_or_token(message: str) -> None:
    assert "\n" not in message
    assert "<" not in message
    assert "Unicorn" not in message
    assert "ghp_" not in message


async def test_github_s_html_error_page_is_retried_for_reads_then_said_in_one_line(
    github_standin: GitHubFixture,
) -> None:
    gh = github_standin
    sleeps = Sleeps()
    async with gh.client("alice", sleep=sleeps) as alice:
        gh.standin.faults.fail(502, times=2, path="/api/v3/user", html=True)
        assert await alice.viewer_login() == "alice"
        gh.standin.faults.fail(503, times=2, path="/api/graphql", html=True)
        await alice.review_activity("alice", [REPO])
        assert sleeps.waits == [0.5, 1.0, 0.5, 1.0]
        gh.standin.faults.fail(504, times=9, path="/api/v3/user", html=True)
        with pytest.raises(OperationError) as failed:
            await alice.viewer_login()
        gh.standin.faults.clear()
    message = str(failed.value)
    assert message == f"who am I: {gh.host}: server error 504 after 4 tries"
    _one_line_without_html_or_token(message)


async def test_a_write_met_by_github_s_html_error_page_is_sent_once(github_standin: GitHubFixture) -> None:
    gh = github_standin
    sleeps = Sleeps()
    async with gh.client("alice", sleep=sleeps) as alice:
        gh.standin.faults.fail(502, path=f"/api/v3/repos/{REPO}/pulls", html=True, applied=False)
        sent = len(gh.standin.exchanges)
        with pytest.raises(OperationError) as failed:
            await alice.open_pull_request(REPO, head="main", base="main", title="x")
        assert [e.method for e in gh.standin.exchanges[sent:]] == ["POST"]
    message = str(failed.value)
    assert message.startswith(f"open a pull request on {REPO}: {gh.host} answered 502")
    assert "may have applied it anyway" in message
    assert sleeps.waits == []
    _one_line_without_html_or_token(message)


def test_the_stop_hook_s_check_says_github_s_html_error_page_in_one_line(github_standin: GitHubFixture) -> None:
    gh = github_standin
    gh.standin.faults.fail(502, path="/api/graphql", html=True)
    env = {"GITHUB_TOKEN": gh.token("alice"), "SSL_CERT_FILE": str(gh.standin.ca_path)}
    with pytest.raises(OperationError) as failed:
        review_activity_once(gh.standin.graphql_url, "alice", [REPO], env)
    message = str(failed.value)
    assert message == f"review activity of alice: {gh.host} answered 502 Bad Gateway"
    _one_line_without_html_or_token(message)


def _seed_pulls(gh: GitHubFixture, count: int) -> list[int]:
    """`count` open pull requests by alice, made in the stand-in's state (not over HTTP: quicker)."""
    world = gh.standin.world
    alice = gh.users["alice"]
    numbers = []
    with world.lock:
        for n in range(count):
            gh.repo.git.commit_files(
                f"many-{n}", {f"src/m{n}.py": f"n = {n}\n"}, f"many {n}", alice.identity, start_point="main"
            )
            numbers.append(world.open_pull(gh.repo, alice, head=f"many-{n}", base="main", title=f"Many {n}").number)
    return numbers


def _seed_threads(gh: GitHubFixture, count: int) -> tuple[int, list[str]]:
    """A pull request by alice with `count` unresolved threads of bob's, oldest first by body."""
    world = gh.standin.world
    alice, bob = gh.users["alice"], gh.users["bob"]
    with world.lock:
        gh.repo.git.commit_files(
            "threads",
            {"src/t.py": "".join(f"t{i} = {i}\n" for i in range(count))},
            "threads",
            alice.identity,
            start_point="main",
        )
        pr = world.open_pull(gh.repo, alice, head="threads", base="main", title="Threads")
        bodies = [f"thread {i}" for i in range(count)]
        world.review(pr, bob, "COMMENT", "", tuple(InlineComment("src/t.py", i + 1, b) for i, b in enumerate(bodies)))
    return pr.number, bodies


def _graphql_requests(gh: GitHubFixture) -> int:
    return sum(1 for e in gh.standin.exchanges if e.kind == "graphql")


async def test_every_unresolved_thread_is_seen_past_a_page_of_a_hundred(github_standin: GitHubFixture) -> None:
    """A PR with more review threads than one page holds: the oldest, on the page not asked for at
    first, still wait for an answer."""
    gh = github_standin
    number, bodies = _seed_threads(gh, 130)
    env = {"GITHUB_TOKEN": gh.token("alice"), "SSL_CERT_FILE": str(gh.standin.ca_path)}
    async with gh.client("alice") as alice:
        before = _graphql_requests(gh)
        activity = await alice.review_activity("alice", [REPO])
        assert _graphql_requests(gh) - before == 2  # the second only because the first page was full
    once = review_activity_once(gh.standin.graphql_url, "alice", [REPO], env)
    for got in (activity, once):
        [pull] = got.pull_requests
        assert pull.number == number
        assert sorted(t.comments[-1].body for t in pull.threads) == sorted(bodies)
        assert len([i for i in unaddressed(got) if i.kind is ItemKind.THREAD]) == 130


async def test_every_open_pull_request_is_seen_past_a_page_of_a_hundred(github_standin: GitHubFixture) -> None:
    gh = github_standin
    numbers = _seed_pulls(gh, 105)
    env = {"GITHUB_TOKEN": gh.token("alice"), "SSL_CERT_FILE": str(gh.standin.ca_path)}
    async with gh.client("alice") as alice:
        activity = await alice.review_activity("alice", [REPO])
    once = review_activity_once(gh.standin.graphql_url, "alice", [REPO], env)
    for got in (activity, once):
        assert sorted(p.number for p in got.pull_requests) == numbers


async def test_a_connection_reset_is_retried_for_reads_and_never_resends_a_write(
    github_standin: GitHubFixture,
) -> None:
    gh = github_standin
    sleeps = Sleeps()
    async with gh.client("alice", sleep=sleeps) as alice:
        gh.standin.faults.disconnect(times=2, path="/api/v3/user", reset=True)
        assert await alice.viewer_login() == "alice"
        assert sleeps.waits == [0.5, 1.0]
        gh.standin.faults.disconnect(path=f"/api/v3/repos/{REPO}/pulls", reset=True)
        sent = len(gh.standin.exchanges)
        with pytest.raises(OperationError) as failed:
            await alice.open_pull_request(REPO, head="main", base="main", title="x")
        assert [e.method for e in gh.standin.exchanges[sent:]] == ["POST"]
        assert sleeps.waits == [0.5, 1.0]
    message = str(failed.value)
    assert message.startswith(f"open a pull request on {REPO}: {gh.host} dropped the connection (")
    assert "reset by peer" in message  # the OS says what happened; httpx alone says "ReadError"
    assert "may have applied it anyway" in message
    _one_line_without_html_or_token(message)


async def test_a_success_that_is_not_json_is_said_in_one_line(github_standin: GitHubFixture) -> None:
    # GitHub never sends it; a proxy or captive portal in its place does (a login page with a 200).
    gh = github_standin
    async with gh.client("alice") as alice:
        gh.standin.faults.fail(200, path="/api/v3/user", html=True)
        with pytest.raises(OperationError) as failed:
            await alice.viewer_login()
    message = str(failed.value)
    assert message == f"who am I: {gh.host} answered 200 but not in JSON"
    _one_line_without_html_or_token(message)
