"""`agent-smith mcp events`: over stdio with a plain JSON-RPC client, and under the real `claude` CLI;
the agents' servers as the supervisor serves them over HTTP."""

from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
import sys
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from agent_smith.crew import scaffold_crew
from agent_smith.events import EventFilter, Publisher, TaskDone, event_servers, event_tools
from agent_smith.events.mcp import query_filter
from agent_smith.hooks import prompt_tool
from agent_smith.mcphttp import answer_http
from agent_smith.mcpstdio import McpServer, ToolError
from agent_smith.runtime import PermissionMode, claude_launch
from tests.events.helpers import SETTINGS, stored
from tests.fixtures.claude import PLACEHOLDER_API_KEY
from tests.fixtures.model import StartModelServer
from tests.fixtures.nats import NatsServer
from tests.fixtures.processes import LeakCheck

AGENT_SMITH = Path(sys.executable).parent / "agent-smith"
PR_FIELDS = {"repo": "acme/web", "pr": 42, "title": "Add search", "url": "https://github.com/acme/web/pull/42"}
T0 = datetime(2026, 5, 1, 12, tzinfo=UTC)


@pytest.mark.parametrize(
    ("arguments", "expected"),
    [
        ({}, (EventFilter(), 20)),
        ({"type": "pr_opened", "agent": "devbot", "limit": 5}, (EventFilter(("pr_opened",), "devbot"), 5)),
        ({"type": ["pr_opened", "pr_merged"]}, (EventFilter(("pr_opened", "pr_merged")), 20)),
        ({"repo": "acme/web", "pr": 3}, (EventFilter(repo="acme/web", pr=3), 20)),
        ({"since": "2h"}, (EventFilter(since=datetime(2026, 5, 1, 10, tzinfo=UTC)), 20)),
    ],
)
def test_query_arguments(arguments: dict[str, Any], expected: tuple[EventFilter, int]) -> None:
    assert query_filter(arguments, T0) == expected


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({"type": "nope"}, "unknown event type 'nope'"),
        ({"agent": "Robert'); DROP"}, "agent: "),
        ({"pr": 0}, "pr: must be a pull request number"),
        ({"pr": True}, "pr: must be a pull request number"),
        ({"limit": 10_000}, "limit: must be between 1 and 500"),
        ({"since": "whenever"}, "since: 'whenever' is neither"),
        ({"type": 7}, "type: one event type, or a list of them"),
        ({"type": ["pr_opened", 7]}, "type: one event type, or a list of them"),
        ({"since": 123}, "since: an ISO 8601 time, or a duration ago like 2h, as a string"),
        ({"repo": ["a"]}, "repo: ['a'] is not a repository as owner/name"),
        ({"colour": "red"}, "unknown argument 'colour' (arguments: type, agent, repo"),
    ],
)
def test_bad_query_arguments_are_tool_errors(arguments: dict[str, Any], message: str) -> None:
    with pytest.raises(ToolError, match=re.escape(message)):
        query_filter(arguments, T0)


class StdioClient:
    """A minimal MCP client: newline-delimited JSON-RPC over the server's stdin/stdout."""

    def __init__(self, process: subprocess.Popen[bytes]) -> None:
        self.process = process
        self.next_id = 0

    def request(self, method: str, params: dict[str, Any]) -> dict[str, Any]:
        assert self.process.stdin is not None
        assert self.process.stdout is not None
        self.next_id += 1
        self.process.stdin.write(
            json.dumps({"jsonrpc": "2.0", "id": self.next_id, "method": method, "params": params}).encode() + b"\n"
        )
        self.process.stdin.flush()
        while True:
            line = self.process.stdout.readline()
            assert line, "the MCP server closed its stdout"
            message: dict[str, Any] = json.loads(line)
            if message.get("id") == self.next_id:
                return message

    def notify(self, method: str) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(json.dumps({"jsonrpc": "2.0", "method": method}).encode() + b"\n")
        self.process.stdin.flush()

    def call(self, tool: str, arguments: dict[str, Any]) -> dict[str, Any]:
        result: dict[str, Any] = self.request("tools/call", {"name": tool, "arguments": arguments})["result"]
        return result


def server_env(tmp_path: Path, url: str) -> dict[str, str]:
    return {
        "PATH": os.environ["PATH"],
        "LANG": "C.UTF-8",
        "HOME": str(tmp_path),
        "AGENT_NAME": "devbot",
        "NATS_URL": url,
        "AGENT_SMITH_EVENTS_OUTBOX": str(tmp_path / "outbox"),
    }


@pytest.mark.real
def test_the_stdio_server_publishes_as_its_agent_only(
    nats_server: NatsServer, tmp_path: Path, leak_check: LeakCheck
) -> None:
    stderr_log = (tmp_path / "server.err").open("wb")
    process = subprocess.Popen(
        [str(AGENT_SMITH), "mcp", "events"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=stderr_log,
        cwd=tmp_path,
        env=server_env(tmp_path, nats_server.url),
    )
    leak_check.track(process.pid, "agent-smith mcp events")
    try:
        client = StdioClient(process)
        assert client.request("server/discover", {})["error"]["code"] == -32601
        init = client.request(
            "initialize",
            {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "t", "version": "0"}},
        )
        assert init["result"]["serverInfo"]["name"] == "agent-smith-events"
        client.notify("notifications/initialized")
        tools = {t["name"]: t for t in client.request("tools/list", {})["result"]["tools"]}
        assert set(tools) == {"publish_event", "query_events"}
        assert "pr_opened: requires repo, pr, title, url" in tools["publish_event"]["description"]
        assert "pr_opened" in tools["publish_event"]["inputSchema"]["properties"]["type"]["enum"]

        published = client.call("publish_event", {"type": "pr_opened", "fields": PR_FIELDS})
        assert not published.get("isError"), published
        assert published["structuredContent"]["agent"] == "devbot"
        assert published["structuredContent"]["stored"]["seq"] == 1

        refused = client.call("publish_event", {"type": "task_done", "fields": {"summary": "x", "agent": "reviewbot"}})
        assert refused["isError"] is True
        assert refused["content"][0]["text"] == "you publish as devbot; you cannot publish as 'reviewbot'"

        reused = client.call(
            "publish_event",
            {"type": "incident", "fields": {"summary": "other", "id": published["structuredContent"]["id"]}},
        )
        assert reused["isError"] is True, "a reused id would be dropped by the stream, reported as stored"
        assert reused["content"][0]["text"] == "incident: field 'id' is set by agent-smith, not by the caller"

        missing = client.call("publish_event", {"type": "pr_opened", "fields": {"repo": "acme/web"}})
        assert missing["isError"] is True
        assert missing["content"][0]["text"] == "pr_opened: missing field 'pr'"

        found = client.call("query_events", {"type": "pr_opened", "repo": "acme/web"})
        assert found["structuredContent"]["count"] == 1
        event = found["structuredContent"]["events"][0]
        assert event["agent"] == "devbot"
        assert event["action"] == "pr_opened"
        assert event["pr"] == 42
        assert event["id"] == published["structuredContent"]["id"]

        bad = client.call("query_events", {"limit": 0})
        assert bad["isError"] is True
    finally:
        if process.stdin is not None:
            process.stdin.close()
        try:
            process.wait(30)
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()
            for stream in (process.stdout, process.stderr):
                if stream is not None:
                    stream.close()
    assert process.returncode == 0
    in_stream = asyncio.run(stored(nats_server.url))
    assert [(e.payload["type"], e.payload["agent"]) for e in in_stream] == [("pr_opened", "devbot")]


@pytest.mark.real
def test_the_server_without_agent_name_refuses_to_start(tmp_path: Path) -> None:
    env = server_env(tmp_path, "nats://127.0.0.1:1")
    del env["AGENT_NAME"]
    result = subprocess.run(
        [str(AGENT_SMITH), "mcp", "events"],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    assert result.stderr.strip() == "error: AGENT_NAME is not set: the events MCP server publishes as that agent"


@pytest.mark.real
def test_a_scripted_claude_tool_call_publishes_an_event_that_query_shows(
    nats_server: NatsServer,
    tmp_path: Path,
    model_server: StartModelServer,
    claude_binary: Path,
    leak_check: LeakCheck,
) -> None:
    """The real `claude -p` loads `agent-smith mcp events` and the scripted model calls its tools."""
    publish = "mcp__events__publish_event"
    model = model_server(
        {
            "agents": {
                "devbot": [
                    {"tool_calls": [{"name": publish, "input": {"type": "pr_opened", "fields": PR_FIELDS}}]},
                    {
                        "when": {"tool_result_contains": '"stored"'},
                        "tool_calls": [
                            {
                                "name": publish,
                                "input": {"type": "pr_merged", "fields": {**PR_FIELDS, "agent": "reviewbot"}},
                            }
                        ],
                    },
                    {"when": {"tool_result_contains": "cannot publish as 'reviewbot'"}, "text": "Published once."},
                ]
            }
        }
    )
    home = tmp_path / "claude-home"
    config_dir = home / ".claude"
    cwd = tmp_path / "work"
    config_dir.mkdir(parents=True)
    cwd.mkdir()
    mcp_config = tmp_path / "mcp.json"
    mcp_config.write_text(
        json.dumps(
            {
                "mcpServers": {
                    "events": {
                        "type": "stdio",
                        "command": str(AGENT_SMITH),
                        "args": ["mcp", "events"],
                        "env": server_env(tmp_path, nats_server.url),
                    }
                }
            }
        )
    )
    launch = claude_launch(
        claude_binary,
        cwd=cwd,
        home=home,
        config_dir=config_dir,
        base_url=model.agent_url("devbot"),
        running_as_root=os.geteuid() == 0,
        api_key=PLACEHOLDER_API_KEY,
        permission_mode=PermissionMode.BYPASS_PERMISSIONS,
        mcp_config=mcp_config,
        tool_search=False,
        extra_args=["-p", "Announce PR 42.", "--output-format", "json"],
    )
    process = subprocess.Popen(
        list(launch.argv),
        env=dict(launch.env),
        cwd=launch.cwd,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    leak_check.track(process.pid, "claude -p")
    try:
        out, err = process.communicate(timeout=120)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, 9)
            process.wait()
    assert process.returncode == 0, err
    assert json.loads(out)["result"] == "Published once."
    assert model.consumed("devbot") == 3

    result = subprocess.run(
        [str(AGENT_SMITH), "events", "query", "--json"],
        env={"PATH": os.environ["PATH"], "LANG": "C.UTF-8", "HOME": str(tmp_path), "NATS_URL": nats_server.url},
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    events = json.loads(result.stdout)
    assert [(e["type"], e["agent"], e["pr"], e["title"]) for e in events] == [("pr_opened", "devbot", 42, "Add search")]
    assert PLACEHOLDER_API_KEY not in result.stdout + json.dumps(events)


@pytest.mark.real
def test_a_dead_nats_is_not_an_error_for_the_agent(tmp_path: Path, leak_check: LeakCheck) -> None:
    process = subprocess.Popen(
        [str(AGENT_SMITH), "mcp", "events"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        cwd=tmp_path,
        env=server_env(tmp_path, "nats://127.0.0.1:1"),
    )
    leak_check.track(process.pid, "agent-smith mcp events")
    try:
        client = StdioClient(process)
        client.request(
            "initialize",
            {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "t", "version": "0"}},
        )
        client.notify("notifications/initialized")
        result = client.call("publish_event", {"type": "task_done", "fields": {"summary": "offline work"}})
        assert not result.get("isError"), result
        assert "outbox" in result["structuredContent"]["queued"]
        assert client.call("query_events", {})["isError"] is True
    finally:
        assert process.stdin is not None
        process.stdin.close()
        process.wait(10)
        assert process.stderr is not None
        err = process.stderr.read().decode()
        for stream in (process.stdout, process.stderr):
            if stream is not None:
                stream.close()
    assert process.returncode == 0
    assert err.count("NATS unreachable") == 1
    assert len(list((tmp_path / "outbox").glob("seg-*.log"))) == 1
    assert "Traceback" not in err


def test_published_receipts_report_the_outbox(tmp_path: Path) -> None:
    async def run() -> None:
        async with Publisher(SETTINGS, tmp_path / "outbox", None) as publisher:
            assert not (await publisher.publish(TaskDone(agent="devbot", summary="x"))).stored

    asyncio.run(run())


def test_each_agents_server_offers_its_own_prompt_context_beside_the_event_tools(tmp_path: Path) -> None:
    crew = tmp_path / "crew"
    scaffold_crew(crew)
    tokens = {"devbot": "token-devbot", "reviewbot": "token-reviewbot"}

    def env(agent: str) -> dict[str, str]:
        (tmp_path / agent).mkdir()
        return {"AGENT_NAME": agent, "AGENT_SMITH_CREW": str(crew), "HOME": str(tmp_path / agent)}

    async def post(servers: Mapping[str, McpServer], agent: str, method: str, params: dict[str, Any]) -> Any:
        message = {"jsonrpc": "2.0", "id": 1, "method": method, "params": params}
        headers = {"authorization": f"Bearer {tokens[agent]}", "content-type": "application/json"}
        answer = await answer_http(servers, "POST", headers, json.dumps(message).encode())
        return json.loads(answer.body)["result"]

    async def run() -> None:
        async with Publisher(SETTINGS, tmp_path / "outbox", None) as publisher:
            servers = event_servers(tokens, publisher, SETTINGS, None, {a: [prompt_tool(env(a))] for a in tokens})
            for agent in tokens:
                listed = await post(servers, agent, "tools/list", {})
                assert [t["name"] for t in listed["tools"]] == ["publish_event", "query_events", "prompt_context"]
                called = await post(servers, agent, "tools/call", {"name": "prompt_context", "arguments": {}})
                context = json.loads(called["content"][0]["text"])["hookSpecificOutput"]["additionalContext"]
                assert context.startswith(f"[agent-smith] You are {agent}, GitHub login {agent}.")
            # Without extra tools an agent's server has the event tools alone.
            alone = event_servers({"devbot": tokens["devbot"]}, publisher, SETTINGS, None)
            listed = await post(alone, "devbot", "tools/list", {})
            assert [t["name"] for t in listed["tools"]] == ["publish_event", "query_events"]

    asyncio.run(run())


def test_publish_refuses_what_its_schema_does_not_name_and_true_for_a_number(tmp_path: Path) -> None:
    async def run() -> None:
        async with Publisher(SETTINGS, tmp_path / "outbox", None) as publisher:
            tools = {t.name: t for t in event_tools("devbot", publisher, SETTINGS, None)}
            publish = tools["publish_event"].handler
            with pytest.raises(ToolError, match=r"^unknown argument 'agent' \(arguments: type, fields\)$"):
                await publish({"type": "task_done", "fields": {"summary": "x"}, "agent": "reviewbot"})
            with pytest.raises(ToolError, match=r"^task_done: field 'pr': Input should not be true or false$"):
                await publish({"type": "task_done", "fields": {"summary": "x", "pr": True}})
            for fields in (0, False, "", []):
                with pytest.raises(ToolError, match=r"^fields: must be an object$"):
                    await publish({"type": "agent_started", "fields": fields})
            assert publisher.outbox.depth() == 0

    asyncio.run(run())


def test_a_range_that_ends_before_it_begins_is_refused_as_the_cli_refuses_it() -> None:
    with pytest.raises(ToolError, match=r"^until 3h is before since 1h: nothing can be found between them$"):
        query_filter({"since": "1h", "until": "3h"}, T0)
    assert query_filter({"since": "3h", "until": "1h"}, T0)[0] == EventFilter(
        since=datetime(2026, 5, 1, 9, tzinfo=UTC), until=datetime(2026, 5, 1, 11, tzinfo=UTC)
    )
