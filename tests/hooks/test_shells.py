"""The hook shells with their I/O injected: context snapshot, prompt, tool spool, stop watcher, delivery."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import pytest

from agent_smith.crew import scaffold_crew
from agent_smith.errors import EventRefused, OperationError, RateLimited, UsageError
from agent_smith.hooks import deliver as deliver_module
from agent_smith.hooks.context import HookContext, load_context, snapshot_path
from agent_smith.hooks.deliver import MAX_ATTEMPTS, PrFacts, announcement, deliver, event_fields, run_deliver
from agent_smith.hooks.prompt import ACTIVITY_FILE, prompt_context
from agent_smith.hooks.prompt_mcp import prompt_tool
from agent_smith.hooks.rewake import Activity, PullRequest
from agent_smith.hooks.stop import CHECK_TIMEOUT, Snapshot, longest_watch, run_stop
from agent_smith.hooks.tool import SPOOL, retry_due, run_tool
from agent_smith.mcphttp import answer_http
from agent_smith.mcpstdio import McpServer
from agent_smith.quiet_hours import is_quiet, parse_hhmm, quiet_until
from tests.fixtures.nats import NatsServer
from tests.hooks.test_real_cli import stored_events

T0 = dt.datetime(2026, 11, 25, 12, 0, tzinfo=dt.UTC)
AGENT_SMITH = Path(sys.executable).parent / "agent-smith"


@pytest.fixture
def crew(tmp_path: Path) -> Path:
    directory = tmp_path / "crew"
    scaffold_crew(directory)
    text = (directory / "crew.yaml").read_text()
    text = text.replace("name: example-crew", "name: example-crew", 1)
    text = text.replace(
        '      display_name: devbot\n      rooms: ["#crew:localhost"]',
        '      display_name: devbot\n      rooms: ["#crew:localhost"]\n'
        '      quiet_hours: {start: "22:00", end: "07:00", timezone: "Europe/Berlin"}',
    )
    text = text.replace("egress:\n", f"runtime:\n  state_dir: {tmp_path / 'state'}\n\negress:\n", 1)
    (directory / "crew.yaml").write_text(text)
    return directory


@pytest.fixture
def env(crew: Path, tmp_path: Path) -> dict[str, str]:
    home = tmp_path / "home"
    home.mkdir()
    return {"AGENT_NAME": "devbot", "AGENT_SMITH_CREW": str(crew), "HOME": str(home), "PATH": os.environ["PATH"]}


@pytest.fixture
def context(env: dict[str, str]) -> HookContext:
    return load_context(env)


def test_context_is_built_once_then_read_from_the_snapshot(env: dict[str, str], crew: Path) -> None:
    first = load_context(env)
    assert first.agent == "devbot"
    assert [t.name for t in first.teammates] == ["reviewbot"]
    assert first.teammates[0].matrix_user_id == "@reviewbot:localhost"
    assert first.review_room == "#crew:localhost"
    cache = snapshot_path("devbot", env)
    assert cache.stat().st_mode & 0o777 == 0o600
    assert load_context(env) == first
    # an overriding variable or an edit of crew.yaml invalidates the snapshot
    assert load_context({**env, "AGENT_REPOS": "acme/other"}).repos == ["acme/other"]
    # ... and the cache keeps no overriding value, the forge token included
    load_context({**env, "GITHUB_TOKEN": "agent-smith-placeholder-from-the-environment"})
    assert "agent-smith-placeholder-from-the-environment" not in cache.read_text()
    text = (crew / "crew.yaml").read_text().replace("role: developer", "role: backend developer")
    (crew / "crew.yaml").write_text(text + "\n")
    assert load_context(env).teammates == first.teammates


def test_quiet_hours_cross_midnight_in_their_time_zone() -> None:
    start, end = parse_hhmm("22:00"), parse_hhmm("07:00")
    berlin_23 = dt.datetime(2026, 11, 25, 22, 0, tzinfo=dt.UTC)  # 23:00 in Berlin
    assert is_quiet(start, end, "Europe/Berlin", berlin_23)
    assert not is_quiet(start, end, "Europe/Berlin", T0)  # 13:00 in Berlin
    until = quiet_until(start, end, "Europe/Berlin", berlin_23)
    assert until is not None
    assert until.strftime("%Y-%m-%d %H:%M") == "2026-11-26 07:00"
    assert not is_quiet(start, start, "UTC", T0)


def test_prompt_context_names_style_quiet_hours_and_waiting_prs(context: HookContext) -> None:
    activity = {
        "checked_at": "2026-11-25T11:58:00+00:00",
        "pull_requests": [
            {"repo": "example/widgets", "number": 3, "title": "Fix", "url": "u", "unaddressed": 2},
            {"repo": "example/widgets", "number": 4, "title": "Done", "url": "u", "unaddressed": 0},
        ],
    }
    night = dt.datetime(2026, 11, 25, 23, 30, tzinfo=dt.UTC)
    text = prompt_context(context, night, activity)
    assert "Reply style: Answer in the room" in text
    assert "Quiet hours now (22:00–07:00 Europe/Berlin, until 07:00)" in text
    assert 'example/widgets#3 "Fix" — 2 unaddressed items' in text
    assert "#4" not in text
    day = prompt_context(context, T0, None)
    assert "Quiet hours: 22:00–07:00 Europe/Berlin (not now)." in day
    assert "not checked yet" in day


def test_prompt_context_says_when_the_review_checks_fail(context: HookContext) -> None:
    """A check that failed is no check that found nothing: the model is not told "none" when GitHub
    was never reached, nor given the last PRs found as current."""
    failing = {"failing_since": "2026-11-25T11:50:00+00:00", "failure": "OperationError: ghe.test answered 502"}
    never = prompt_context(context, T0, failing)
    assert "Open PRs awaiting you: unknown, review checks fail since 2026-11-25 11:50 UTC" in never
    assert "ghe.test answered 502" in never
    assert "none" not in never
    found = {
        "checked_at": "2026-11-25T11:40:00+00:00",
        "pull_requests": [{"repo": "example/widgets", "number": 3, "title": "Fix", "url": "u", "unaddressed": 1}],
    }
    stale = prompt_context(context, T0, {**found, **failing})
    assert (
        "Open PRs awaiting you (checked 2026-11-25 11:40 UTC; stale: review checks fail since 2026-11-25 11:50" in stale
    )
    assert 'example/widgets#3 "Fix" — 1 unaddressed item' in stale
    assert "(checked 2026-11-25 11:40 UTC):" in prompt_context(context, T0, found)


def test_prompt_hook_process_prints_claude_codes_json(env: dict[str, str]) -> None:
    result = subprocess.run(
        [str(AGENT_SMITH), "hook", "prompt"], input="{}", capture_output=True, text=True, env=env, check=False
    )
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout)
    assert out["hookSpecificOutput"]["hookEventName"] == "UserPromptSubmit"
    assert "You are devbot" in out["hookSpecificOutput"]["additionalContext"]


def call_prompt_tool(env: Mapping[str, str], now: dt.datetime | None = None) -> dict[str, Any]:
    """One `tools/call` of the agent's prompt tool, over HTTP the way the supervisor answers it."""
    token = "token-of-devbot"
    tool = prompt_tool(env) if now is None else prompt_tool(env, lambda: now)
    servers = {token: McpServer("agent-smith-events", "1.0", [tool])}
    call = {"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": "prompt_context", "arguments": {}}}
    headers = {"authorization": f"Bearer {token}", "content-type": "application/json"}
    answer = asyncio.run(answer_http(servers, "POST", headers, json.dumps(call).encode()))
    assert answer.status == 200
    result: dict[str, Any] = json.loads(answer.body)["result"]
    return result


def test_the_prompt_tool_answers_what_the_prompt_hook_prints(env: dict[str, str], tmp_path: Path) -> None:
    before = call_prompt_tool(env)
    printed = subprocess.run(
        [str(AGENT_SMITH), "hook", "prompt"], input="{}", capture_output=True, text=True, env=env, check=True
    ).stdout
    after = call_prompt_tool(env)
    assert not before.get("isError")
    # Quiet hours may begin or end between two calls, so one of the two is the command's.
    assert printed.rstrip("\n") in {before["content"][0]["text"], after["content"][0]["text"]}
    at_night = call_prompt_tool(env, dt.datetime(2026, 11, 25, 23, 30, tzinfo=dt.UTC))
    context = json.loads(at_night["content"][0]["text"])["hookSpecificOutput"]["additionalContext"]
    assert "Quiet hours now (22:00–07:00 Europe/Berlin, until 07:00)" in context
    # Read-only: the agent's state is as it was (the context snapshot lives in its home's cache).
    assert not (tmp_path / "state").exists()


def test_the_prompt_tool_without_its_agent_fails_and_says_why(tmp_path: Path) -> None:
    result = call_prompt_tool({"PATH": os.environ["PATH"], "HOME": str(tmp_path)})
    assert result["isError"] is True
    assert "AGENT_NAME and AGENT_SMITH_CREW must be set" in result["content"][0]["text"]


def test_each_call_of_the_prompt_tool_is_told_as_a_turn_begins(env: dict[str, str]) -> None:
    turns: list[str] = []

    async def began() -> None:
        turns.append("turn")

    tool = prompt_tool(env, on_call=began)
    servers = {"token-of-devbot": McpServer("agent-smith-events", "1.0", [tool])}
    call = {"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": "prompt_context", "arguments": {}}}
    headers = {"authorization": "Bearer token-of-devbot", "content-type": "application/json"}
    for _ in range(2):
        answer = asyncio.run(answer_http(servers, "POST", headers, json.dumps(call).encode()))
        assert not json.loads(answer.body)["result"].get("isError")
    assert turns == ["turn", "turn"]


def test_a_damaged_activity_file_is_no_check_yet(env: dict[str, str], context: HookContext) -> None:
    hooks = context.state / "hooks"
    hooks.mkdir(parents=True)
    for damaged in ({"pull_requests": [{"unaddressed": 1}]}, {"pull_requests": ["a"]}, {"pull_requests": 3}):
        (hooks / ACTIVITY_FILE).write_text(json.dumps(damaged))
        result = call_prompt_tool(env)
        assert not result.get("isError"), result
        assert "Open PRs awaiting you: not checked yet." in result["content"][0]["text"]


def test_a_failing_prompt_tool_logs_like_the_command(
    env: dict[str, str], context: HookContext, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*_: object) -> str:
        raise KeyError("repo")

    monkeypatch.setattr("agent_smith.hooks.prompt_mcp.prompt_output", broken)
    hooks = context.state / "hooks"
    result = call_prompt_tool(env)
    assert result["isError"] is True
    assert "KeyError" in result["content"][0]["text"]
    [line] = (hooks / "hooks.log").read_text().splitlines()
    assert json.loads(line)["hook"] == "prompt"
    assert "failed: KeyError" in json.loads(line)["message"]


def test_hooks_without_an_agent_exit_zero_with_one_line(tmp_path: Path) -> None:
    gh = json.dumps({"tool_name": "Bash", "tool_input": {"command": "gh pr merge 3"}, "tool_response": {}})
    for kind, stdin in (("stop", "not json"), ("prompt", "{}"), ("tool", gh)):
        result = subprocess.run(
            [str(AGENT_SMITH), "hook", kind],
            input=stdin,
            capture_output=True,
            text=True,
            env={"PATH": os.environ["PATH"], "HOME": str(tmp_path)},
            check=False,
        )
        assert result.returncode == 0
        assert result.stderr.count("\n") == 1
        assert "AGENT_NAME and AGENT_SMITH_CREW" in result.stderr


def test_tool_hook_spools_a_recognised_pr_and_ignores_the_rest(context: HookContext) -> None:
    plain = {"tool_name": "Bash", "tool_input": {"command": "ls"}, "tool_response": {"stdout": "a"}}
    assert run_tool(context, plain, spawn=False) == 0
    spool = context.state / "hooks" / SPOOL
    assert not spool.exists() or not list(spool.iterdir())
    url = "https://ghe.test/example/widgets/pull/5"
    opened = {"tool_name": "Bash", "tool_input": {"command": "gh pr create -t Fix"}, "tool_response": {"stdout": url}}
    assert run_tool(context, opened, spawn=False) == 0
    [job] = list(spool.iterdir())
    data = json.loads(job.read_text())
    assert data["action"] == "opened"
    assert data["number"] == 5
    assert data["agent"] == "devbot"


def test_delivery_publishes_announces_and_keeps_failed_jobs(context: HookContext) -> None:
    url = "https://ghe.test/example/widgets/pull/5"
    for command, stdout in (("gh pr create -t Fix", url), ("gh pr merge 5 --merge", "")):
        payload = {"tool_name": "Bash", "tool_input": {"command": command}, "tool_response": {"stdout": stdout}}
        run_tool(context, payload, spawn=False)
    published: list[tuple[str, Mapping[str, Any]]] = []
    announced: list[tuple[str, str]] = []
    fail = {"on": True}

    async def lookup(repo: str, number: int) -> PrFacts:
        return PrFacts("Fix the thing", f"https://ghe.test/{repo}/pull/{number}", "main", "dev/fix")

    async def publish(kind: str, fields: Mapping[str, Any], at: dt.datetime | None) -> str:
        if kind == "pr_merged" and fail["on"]:
            raise ConnectionError("nats is away")
        published.append((kind, fields))
        return "in the stream"

    async def announce(room: str, text: str) -> None:
        announced.append((room, text))

    assert asyncio.run(deliver(context, lookup, publish, announce)) == (1, 1)
    # gh said the title and URL; the forge, the branches.
    assert published == [
        (
            "pr_opened",
            {"repo": "example/widgets", "pr": 5, "title": "Fix", "url": url, "base": "main", "head": "dev/fix"},
        )
    ]
    assert announced == [
        ("#crew:localhost", f"@reviewbot:localhost: devbot opened a pull request for review — Fix {url}")
    ]
    fail["on"] = False
    assert asyncio.run(deliver(context, lookup, publish, announce)) == (1, 0)
    assert published[-1] == (
        "pr_merged",
        {
            "repo": "example/widgets",
            "pr": 5,
            "title": "Fix the thing",
            "url": "https://ghe.test/example/widgets/pull/5",
        },
    )
    assert "not delivered yet: ConnectionError: nats is away" in (context.state / "hooks" / "hooks.log").read_text()


def test_a_new_pr_s_branches_come_from_gh_or_else_the_forge_which_being_away_holds_nothing_back(
    context: HookContext,
) -> None:
    url = "https://ghe.test/example/widgets/pull/{}"
    for number, command in ((3, "gh pr create -t Three -B release -H dev/three"), (4, "gh pr create -t Four")):
        payload = {
            "tool_name": "Bash",
            "tool_input": {"command": command},
            "tool_response": {"stdout": url.format(number)},
        }
        run_tool(context, payload, spawn=False)
    published: list[Mapping[str, Any]] = []

    async def lookup(repo: str, number: int) -> PrFacts:
        assert number == 4, "gh named both branches of #3"
        raise OperationError("PR #4: ghe.test answered 502 Bad Gateway")

    async def publish(kind: str, fields: Mapping[str, Any], at: dt.datetime | None) -> str:
        published.append(fields)
        return "in the stream"

    assert asyncio.run(deliver(context, lookup, publish, None)) == (2, 0)
    assert [(f["pr"], f.get("base"), f.get("head")) for f in published] == [
        (3, "release", "dev/three"),
        (4, None, None),
    ]


@pytest.mark.parametrize("forge", ["hangs", "answers oddly"])
def test_a_forge_that_hangs_or_answers_oddly_leaves_the_branches_out_and_the_event_goes(
    context: HookContext, monkeypatch: pytest.MonkeyPatch, forge: str
) -> None:
    monkeypatch.setattr(deliver_module, "BRANCHES_WAIT", 0.2)
    url = "https://ghe.test/example/widgets/pull/12"
    payload = {"tool_name": "Bash", "tool_input": {"command": "gh pr create -t T"}, "tool_response": {"stdout": url}}
    run_tool(context, payload, spawn=False)
    published: list[Mapping[str, Any]] = []

    async def lookup(repo: str, number: int) -> PrFacts:
        if forge == "hangs":
            await asyncio.sleep(30)
        raise KeyError("title")

    async def publish(kind: str, fields: Mapping[str, Any], at: dt.datetime | None) -> str:
        published.append(fields)
        return "in the stream"

    assert asyncio.run(deliver(context, lookup, publish, None)) == (1, 0)
    assert published == [{"repo": "example/widgets", "pr": 12, "title": "T", "url": url}]


def test_delivery_drops_a_job_whose_event_nats_refuses(context: HookContext) -> None:
    url = "https://ghe.test/example/widgets/pull/6"
    payload = {"tool_name": "Bash", "tool_input": {"command": "gh pr create -t Big"}, "tool_response": {"stdout": url}}
    run_tool(context, payload, spawn=False)
    spool = context.state / "hooks" / SPOOL
    [job] = list(spool.iterdir())

    async def lookup(repo: str, number: int) -> PrFacts:
        return PrFacts("Big", url)

    async def publish(kind: str, fields: Mapping[str, Any], at: dt.datetime | None) -> str:
        raise EventRefused("NATS refused event 01X: MaxPayloadError: nats: maximum payload exceeded")

    assert asyncio.run(deliver(context, lookup, publish, None)) == (0, 0)
    assert list(spool.iterdir()) == []
    assert f"{job.name} dropped: NATS refused event 01X" in (context.state / "hooks" / "hooks.log").read_text()


def test_a_merge_of_the_current_branch_s_pr_is_found_by_its_branch(context: HookContext, tmp_path: Path) -> None:
    work = tmp_path / "work"
    subprocess.run(["git", "init", "-q", "-b", "feat/login", str(work)], check=True)
    # gh prints nothing when it merges the current branch's PR outside a terminal.
    payload = {
        "tool_name": "Bash",
        "tool_input": {"command": "gh pr merge --squash"},
        "tool_response": {"stdout": ""},
        "cwd": str(work),
    }
    run_tool(context, payload, spawn=False)
    [job] = list((context.state / "hooks" / SPOOL).iterdir())
    assert json.loads(job.read_text())["branch"] == "feat/login"
    published: list[tuple[str, Mapping[str, Any]]] = []

    async def lookup(repo: str, number: int) -> PrFacts:
        raise AssertionError("the branch's PR came with its facts")

    async def find(repo: str, branch: str) -> tuple[int, PrFacts] | None:
        assert (repo, branch) == ("example/widgets", "feat/login")
        return 21, PrFacts("Login", "https://ghe.test/example/widgets/pull/21")

    async def publish(kind: str, fields: Mapping[str, Any], at: dt.datetime | None) -> str:
        published.append((kind, fields))
        return "in the stream"

    assert asyncio.run(deliver(context, lookup, publish, None, find)) == (1, 0)
    assert published == [
        (
            "pr_merged",
            {"repo": "example/widgets", "pr": 21, "title": "Login", "url": "https://ghe.test/example/widgets/pull/21"},
        )
    ]


def test_a_job_queued_while_a_delivery_runs_is_delivered_by_it(context: HookContext) -> None:
    url = "https://ghe.test/example/widgets/pull/{}"

    def queue(number: int) -> None:
        payload = {
            "tool_name": "Bash",
            "tool_input": {"command": f"gh pr create -t T{number}"},
            "tool_response": {"stdout": url.format(number)},
        }
        run_tool(context, payload, spawn=False)

    queue(7)
    published: list[int] = []
    second: list[tuple[int, int]] = []

    async def lookup(repo: str, number: int) -> PrFacts:
        return PrFacts(f"T{number}", url.format(number))

    async def publish(kind: str, fields: Mapping[str, Any], at: dt.datetime | None) -> str:
        if fields["pr"] == 7:
            # A second PR action meanwhile: its deliverer finds the lock taken and leaves.
            queue(8)
            second.append(await deliver(context, lookup, publish, None))
        published.append(fields["pr"])
        return "in the stream"

    assert asyncio.run(deliver(context, lookup, publish, None)) == (2, 0)
    assert second == [(0, 0)]
    assert published == [7, 8]
    assert list((context.state / "hooks" / SPOOL).iterdir()) == []


def test_the_event_goes_out_when_the_announcement_cannot_and_is_not_sent_twice(context: HookContext) -> None:
    url = "https://ghe.test/example/widgets/pull/9"
    payload = {"tool_name": "Bash", "tool_input": {"command": "gh pr create -t Nine"}, "tool_response": {"stdout": url}}
    run_tool(context, payload, spawn=False)
    [job] = list((context.state / "hooks" / SPOOL).iterdir())
    queued_at = dt.datetime.fromisoformat(json.loads(job.read_text())["at"])
    published: list[tuple[str, dt.datetime | None]] = []
    announced: list[str] = []
    matrix = {"up": False}

    async def lookup(repo: str, number: int) -> PrFacts:
        return PrFacts("Nine", url, "main", "dev/nine")

    async def publish(kind: str, fields: Mapping[str, Any], at: dt.datetime | None) -> str:
        published.append((kind, at))
        return "in the outbox"

    async def announce(room: str, text: str) -> None:
        if not matrix["up"]:
            raise ConnectionError("homeserver is away")
        announced.append(text)

    assert asyncio.run(deliver(context, lookup, publish, announce)) == (0, 1)
    assert published == [("pr_opened", queued_at)], "published at once, with the time the PR was opened"
    matrix["up"] = True
    assert asyncio.run(deliver(context, lookup, publish, announce)) == (1, 0)
    assert len(published) == 1, "not published a second time"
    assert len(announced) == 1
    log = (context.state / "hooks" / "hooks.log").read_text()
    assert "pr_opened for example/widgets#9: in the outbox" in log


def test_a_job_that_can_never_be_delivered_is_given_up(context: HookContext) -> None:
    spool = context.state / "hooks" / SPOOL
    for command, number in (("gh pr create -t Bad", 10), ("gh pr create -t Gone", 11)):
        stdout = f"https://ghe.test/{'my_org' if number == 10 else 'example'}/widgets/pull/{number}"
        run_tool(
            context,
            {"tool_name": "Bash", "tool_input": {"command": command}, "tool_response": {"stdout": stdout}},
            spawn=False,
        )

    async def lookup(repo: str, number: int) -> PrFacts:
        raise OperationError("the forge is away too")

    async def publish(kind: str, fields: Mapping[str, Any], at: dt.datetime | None) -> str:
        if fields["pr"] == 10:
            raise UsageError("pr_opened: repo: 'my_org/widgets' is not a repository")
        raise ConnectionError("never there")

    assert asyncio.run(deliver(context, lookup, publish, None)) == (0, 1)
    assert len(list(spool.iterdir())) == 1, "the job the event model refuses is dropped at once"
    for _ in range(MAX_ATTEMPTS - 1):
        asyncio.run(deliver(context, lookup, publish, None))
    assert list(spool.iterdir()) == []
    log = (context.state / "hooks" / "hooks.log").read_text()
    assert "dropped: pr_opened: repo: 'my_org/widgets' is not a repository" in log
    assert f"dropped after {MAX_ATTEMPTS} attempts: ConnectionError: never there" in log


def test_the_end_of_a_turn_starts_a_delivery_of_jobs_left_waiting(env: dict[str, str], context: HookContext) -> None:
    hooks = context.state / "hooks"
    job = hooks / SPOOL / "20260101T000000000000-left.json"
    job.parent.mkdir(parents=True)
    # No PR (as when its lookup never answered): a deliverer drops it, so it is seen to have run.
    job.write_text(json.dumps({"agent": "devbot", "action": "merged", "repo": None, "number": None}))
    stop = subprocess.run(
        [str(AGENT_SMITH), "hook", "stop"],
        input="{}",
        capture_output=True,
        text=True,
        env={**env, "AGENT_SMITH_STOP_WATCH": "0", "GITHUB_TOKEN": "agent-smith-placeholder-gh"},
        check=False,
        timeout=60,
    )
    assert stop.returncode == 0, stop.stderr
    deadline = time.monotonic() + 30
    while job.exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not job.exists(), "a deliverer took the job"
    assert "dropped: a merged job names no PR, nor a branch to find it by" in (hooks / "hooks.log").read_text()


def test_a_job_whose_pr_is_not_found_is_kept_then_given_up_never_counted_delivered(context: HookContext) -> None:
    """A branch with no PR (gh left the checkout on another branch, the forge lags) is retried and
    said in the log; a job with nothing to find its PR by is dropped with a line at once."""
    spool = context.state / "hooks" / SPOOL
    spool.mkdir(parents=True)
    (spool / "1-branch.json").write_text(
        json.dumps({"action": "merged", "repo": "example/widgets", "number": None, "branch": "main"})
    )
    (spool / "2-nothing.json").write_text(json.dumps({"action": "reviewed", "repo": "example/widgets", "number": None}))

    async def lookup(repo: str, number: int) -> PrFacts:
        raise AssertionError("nothing to look up")

    async def find(repo: str, branch: str) -> tuple[int, PrFacts] | None:
        return None

    async def publish(kind: str, fields: Mapping[str, Any], at: dt.datetime | None) -> str:
        raise AssertionError("nothing to publish")

    assert asyncio.run(deliver(context, lookup, publish, None, find)) == (0, 1)
    assert [p.name for p in spool.iterdir()] == ["1-branch.json"]
    assert json.loads((spool / "1-branch.json").read_text())["attempts"] == 1
    log = (context.state / "hooks" / "hooks.log").read_text()
    assert (
        "1-branch.json not delivered yet: OperationError: example/widgets has no pull request from branch main" in log
    )
    assert "2-nothing.json dropped: a reviewed job names no PR, nor a branch to find it by" in log
    for _ in range(MAX_ATTEMPTS - 1):
        assert asyncio.run(deliver(context, lookup, publish, None, find))[0] == 0
    assert list(spool.iterdir()) == []
    assert f"1-branch.json dropped after {MAX_ATTEMPTS} attempts" in (context.state / "hooks" / "hooks.log").read_text()


def test_what_is_no_job_in_the_spool_neither_stops_nor_crashes_a_delivery(context: HookContext) -> None:
    spool = context.state / "hooks" / SPOOL
    url = "https://ghe.test/example/widgets/pull/{}"
    for number in (31, 32):
        payload = {
            "tool_name": "Bash",
            "tool_input": {"command": f"gh pr create -t T{number}"},
            "tool_response": {"stdout": url.format(number)},
        }
        run_tool(context, payload, spawn=False)
    (spool / "00-a-directory.json").mkdir()
    (spool / "01-not-json.json").write_text("{not json")
    (spool / "02-no-action.json").write_text('{"repo": "example/widgets", "number": 3}')
    [first, _] = sorted(p for p in spool.glob("2*.json"))
    first.write_text(json.dumps({**json.loads(first.read_text()), "attempts": "many"}))
    published: list[int] = []

    async def lookup(repo: str, number: int) -> PrFacts:
        return PrFacts(f"T{number}", url.format(number), "main", f"dev/{number}")

    async def publish(kind: str, fields: Mapping[str, Any], at: dt.datetime | None) -> str:
        if fields["pr"] == 31:
            raise ConnectionError("not now")
        published.append(fields["pr"])
        return "in the stream"

    assert asyncio.run(deliver(context, lookup, publish, None)) == (1, 1)
    assert published == [32]
    assert json.loads(first.read_text())["attempts"] == 1, "a count that is no number starts again"
    assert sorted(p.name for p in spool.iterdir()) == ["00-a-directory.json", first.name]
    log = (context.state / "hooks" / "hooks.log").read_text()
    assert "01-not-json.json dropped: not a job the tool hook wrote" in log
    assert "02-no-action.json dropped: not a job the tool hook wrote" in log


def test_left_jobs_are_retried_at_a_later_tool_call_at_most_once_a_minute(tmp_path: Path) -> None:
    hooks = tmp_path / "hooks"
    assert not retry_due(hooks, 1000.0)
    (hooks / SPOOL).mkdir(parents=True)
    (hooks / SPOOL / "job.json").write_text("{}")
    assert retry_due(hooks, 1000.0), "never tried yet"
    (hooks / "deliver.log").write_text("")
    started = (hooks / "deliver.log").stat().st_mtime
    assert not retry_due(hooks, started + 59)
    assert retry_due(hooks, started + 60)


def test_a_lone_surrogate_in_a_title_becomes_text_the_log_can_carry() -> None:
    job = {"action": "opened", "repo": "a/b", "number": 2, "title": "fix \ud800 it"}
    _, fields = event_fields(job, PrFacts("", "https://x/a/b/pull/2"))
    assert fields["title"] == "fix ? it"
    fields["title"].encode()


def test_event_fields_and_announcement_are_pure() -> None:
    job = {"action": "reviewed", "repo": "a/b", "number": 2, "review_state": "CHANGES_REQUESTED", "title": None}
    assert event_fields(job, PrFacts("T", "https://x/a/b/pull/2")) == (
        "pr_reviewed",
        {"repo": "a/b", "pr": 2, "title": "T", "url": "https://x/a/b/pull/2", "state": "changes_requested"},
    )
    counted = event_fields({**job, "comments": 2}, PrFacts("T", "https://x/a/b/pull/2"))[1]
    assert counted["comments"] == 2
    assert "comments" not in event_fields({**job, "comments": None}, PrFacts("T", "https://x/a/b/pull/2"))[1]
    assert announcement("dev", "T", "U", []) == "team: dev opened a pull request for review — T U"


class FakeTime:
    def __init__(self) -> None:
        self.now = 0.0
        self.slept: list[float] = []

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds

    def clock(self) -> float:
        return self.now


PR = PullRequest("example/widgets", 5, "Fix", "https://ghe.test/example/widgets/pull/5")


def snapshot(*keys: str, author: str = "reviewbot") -> Snapshot:
    items = tuple(
        Activity(k, "example/widgets", 5, author, "thread", f"comment {k}", f"https://x#{k}", "a.py", 3) for k in keys
    )
    return Snapshot(items, (PR,), {PR.pr: len(items)} if items else {})


def test_stop_watches_until_activity_grows_then_wakes(context: HookContext, capsys: pytest.CaptureFixture[str]) -> None:
    checks = iter([snapshot(), snapshot(), snapshot("t1")])
    fake = FakeTime()
    code = run_stop(
        context, lambda _: next(checks), poll=30, watch_for=600, sleep=fake.sleep, clock=fake.clock, now=lambda: T0
    )
    assert code == 2
    assert fake.slept == [30, 30]
    err = capsys.readouterr().err
    assert "example/widgets#5" in err
    assert "comment t1" in err
    # the same activity does not wake again: a single check returns 0
    assert run_stop(context, lambda _: snapshot("t1"), poll=30, watch_for=0, sleep=fake.sleep, now=lambda: T0) == 0
    activity = json.loads((context.state / "hooks" / "activity.json").read_text())
    assert activity["pull_requests"][0]["unaddressed"] == 1


def test_a_watch_of_zero_is_one_check_whatever_the_poll(context: HookContext) -> None:
    """AGENT_SMITH_STOP_WATCH=0 (and `claude -p`, which waits for the hook): a poll shorter than a
    check's time does not make it a watch of that time."""
    fake = FakeTime()
    checked: list[float] = []

    def check(timeout: float) -> Snapshot:
        checked.append(timeout)
        return snapshot()

    assert run_stop(context, check, poll=1, watch_for=0, sleep=fake.sleep, clock=fake.clock, now=lambda: T0) == 0
    assert (checked, fake.slept) == ([CHECK_TIMEOUT], [])
    assert not (context.state / "hooks" / "stop-watcher.pid").exists()


def test_stop_never_wedges_on_errors(context: HookContext) -> None:
    def broken(_: float) -> Snapshot:
        raise RuntimeError("HTTP 502 from ghe.test")

    fake = FakeTime()
    assert run_stop(context, broken, poll=10, watch_for=35, sleep=fake.sleep, clock=fake.clock, now=lambda: T0) == 0
    assert fake.slept == [10, 10, 10]
    log = (context.state / "hooks" / "hooks.log").read_text().splitlines()
    assert len(log) == 1  # the same failure is said once
    assert "review check failed, not waking: RuntimeError: HTTP 502" in log[0]


def test_failing_checks_keep_the_last_found_prs_and_say_since_when_until_one_does_not(context: HookContext) -> None:
    activity = context.state / "hooks" / "activity.json"
    assert run_stop(context, lambda _: snapshot("t1"), poll=30, watch_for=0, sleep=FakeTime().sleep, now=lambda: T0)
    found = json.loads(activity.read_text())

    def broken(message: str) -> Callable[[float], Snapshot]:
        def check(_: float) -> Snapshot:
            raise RuntimeError(message)

        return check

    later = T0 + dt.timedelta(minutes=5)
    assert run_stop(context, broken("HTTP 502"), poll=10, watch_for=0, sleep=FakeTime().sleep, now=lambda: later) == 0
    assert json.loads(activity.read_text()) == {
        **found,
        "failing_since": later.isoformat(timespec="seconds"),
        "failure": "RuntimeError: HTTP 502",
    }
    # Another failure, later: the run of failures began at the first.
    last = later + dt.timedelta(minutes=5)
    assert run_stop(context, broken("HTTP 503"), poll=10, watch_for=0, sleep=FakeTime().sleep, now=lambda: last) == 0
    assert json.loads(activity.read_text())["failing_since"] == later.isoformat(timespec="seconds")
    assert json.loads(activity.read_text())["failure"] == "RuntimeError: HTTP 503"
    # A check that does not fail says the PRs as it found them, and nothing of the failures.
    assert (
        run_stop(context, lambda _: snapshot("t1"), poll=30, watch_for=0, sleep=FakeTime().sleep, now=lambda: last) == 0
    )
    assert set(json.loads(activity.read_text())) == {"checked_at", "pull_requests"}


def test_stop_waits_out_a_rate_limit_before_its_next_check(context: HookContext) -> None:
    # Asked again sooner, GitHub only limits the token longer (and may ban an integration that insists).
    def limited(_: float) -> Snapshot:
        raise RateLimited(
            "review activity of devbot: ghe.test rate limited the token (403); it asks to wait 120 s", 120
        )

    fake = FakeTime()
    assert run_stop(context, limited, poll=10, watch_for=300, sleep=fake.sleep, clock=fake.clock, now=lambda: T0) == 0
    assert fake.slept == [120, 120]
    log = (context.state / "hooks" / "hooks.log").read_text().splitlines()
    assert len(log) == 1
    assert "rate limited the token (403); it asks to wait 120 s" in log[0]


def test_a_newer_stop_hook_supersedes_the_watcher(context: HookContext) -> None:
    def sleep_then_supersede(_: float) -> None:
        (context.state / "hooks" / "stop-watcher.pid").write_text(json.dumps({"pid": "other"}))

    fake = FakeTime()
    code = run_stop(
        context,
        lambda _: snapshot(),
        poll=5,
        watch_for=600,
        sleep=sleep_then_supersede,
        clock=fake.clock,
        now=lambda: T0,
        pid=1,
    )
    assert code == 0


def test_a_bot_to_bot_ping_pong_stops_at_the_cap(context: HookContext, capsys: pytest.CaptureFixture[str]) -> None:
    """A reviewer bot answering every fix with a new comment wakes the author three times an hour, then not."""
    fake = FakeTime()
    codes = []
    for n in range(6):
        codes.append(
            run_stop(
                context,
                lambda _, n=n: snapshot(*(f"t{i}" for i in range(n + 1))),
                poll=1,
                watch_for=0,
                sleep=fake.sleep,
                clock=fake.clock,
                now=lambda n=n: T0 + dt.timedelta(minutes=n),
            )
        )
    assert codes == [2, 2, 2, 0, 0, 0]
    assert "Loop guard: this is the last wake this hour for example/widgets#5" in capsys.readouterr().err
    log = (context.state / "hooks" / "hooks.log").read_text()
    assert log.count("loop guard holds new activity on example/widgets#5") == 3
    later = run_stop(
        context,
        lambda _: snapshot(*(f"t{i}" for i in range(7))),
        poll=1,
        watch_for=0,
        now=lambda: T0 + dt.timedelta(hours=2),
    )
    assert later == 2  # held, not lost: once the hour has room, the waiting comments surface


def test_activity_the_loop_guard_holds_reaches_an_idle_agent_when_the_hour_has_room(
    context: HookContext, capsys: pytest.CaptureFixture[str]
) -> None:
    """Three wakes 9–7 minutes ago: a new comment waits 51 minutes, longer than the usual watch's
    50. The watcher watches on until the guard has room, wakes the agent, and says it held once."""
    hooks = context.state / "hooks"
    hooks.mkdir(parents=True, exist_ok=True)
    recent = [(T0 - dt.timedelta(minutes=m)).isoformat() for m in (9, 8, 7)]
    (hooks / "rewake.json").write_text(json.dumps({"surfaced": {}, "wakes": {PR.pr: recent}}))
    fake = FakeTime()
    code = run_stop(
        context,
        lambda _: snapshot("held"),
        poll=60,
        watch_for=3000,
        sleep=fake.sleep,
        clock=fake.clock,
        now=lambda: T0 + dt.timedelta(seconds=fake.now),
    )
    assert code == 2
    assert "comment held" in capsys.readouterr().err
    assert 51 * 60 <= fake.now <= 52 * 60
    log = (hooks / "hooks.log").read_text()
    assert log.count("loop guard holds new activity on example/widgets#5") == 1


def test_a_hold_never_keeps_the_watcher_past_one_window_more(context: HookContext) -> None:
    hooks = context.state / "hooks"
    hooks.mkdir(parents=True, exist_ok=True)
    now = [T0]
    fake = FakeTime()

    def held_forever(_: float) -> Snapshot:
        # Three wakes always just now: the guard never has room.
        recent = [now[0].isoformat()] * 3
        (hooks / "rewake.json").write_text(json.dumps({"surfaced": {}, "wakes": {PR.pr: recent}}))
        return snapshot("held")

    def later() -> dt.datetime:
        now[0] = T0 + dt.timedelta(seconds=fake.now)
        return now[0]

    code = run_stop(context, held_forever, poll=60, watch_for=3000, sleep=fake.sleep, clock=fake.clock, now=later)
    assert code == 0
    assert 3000 + 3600 - 60 <= fake.now <= longest_watch(3000, 60)


def test_no_check_runs_past_the_watchers_deadline(context: HookContext) -> None:
    """Each check is given at most its own time, and never more than the watch has left."""
    fake = FakeTime()
    given: list[float] = []

    def slow(timeout: float) -> Snapshot:
        given.append(timeout)
        fake.now += timeout  # a server that takes all the time it is given
        raise OperationError("review activity of devbot: cannot reach ghe.test: TimeoutError: timed out")

    assert run_stop(context, slow, poll=60, watch_for=150, sleep=fake.sleep, clock=fake.clock, now=lambda: T0) == 0
    assert given[0] == CHECK_TIMEOUT
    assert all(t <= CHECK_TIMEOUT for t in given)
    assert fake.now <= 150


@pytest.mark.real
def test_without_a_github_token_a_pr_opened_is_published_without_its_branches(
    env: dict[str, str], context: HookContext, nats_server: NatsServer
) -> None:
    # gh said the title and URL; the branches are what only the forge knows, and there is none to ask.
    url = "https://ghe.test/example/widgets/pull/5"
    payload = {"tool_name": "Bash", "tool_input": {"command": "gh pr create -t Fix"}, "tool_response": {"stdout": url}}
    run_tool(context, payload, spawn=False)
    run_deliver(context, {**env, "NATS_URL": nats_server.url})
    [opened] = [e for e in stored_events(nats_server.url) if e["type"] == "pr_opened"]
    assert (opened["repo"], opened["pr"], opened["title"], opened["url"]) == ("example/widgets", 5, "Fix", url)
    assert "base" not in opened
    assert "no forge: no GitHub token" in (Path(context.state) / "hooks" / "hooks.log").read_text()
