"""The hooks under the real `claude` CLI: the GitHub stand-in, a real nats-server, the scripted model.

One agent (devbot) opens a PR with the real `gh` from its
Bash tool; the PostToolUse hook publishes `pr_opened`. A reviewer (reviewbot)
leaves an inline comment; the Stop hook (asyncRewake) wakes devbot with the
comment in the reason, which the model server receives. The reviewer's own
old comment does not wake it twice.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from agent_smith.crew import EventLog, scaffold_crew
from agent_smith.errors import OperationError
from agent_smith.events import EventFilter, connect, query
from agent_smith.forge import InlineComment
from tests.fixtures.claude import StartClaude
from tests.fixtures.github import GitHubFixture
from tests.fixtures.model import StartModelServer
from tests.fixtures.nats import NatsServer

AGENT_SMITH = Path(sys.executable).parent / "agent-smith"
COMMENT = "Please handle the empty list in count()."


def write_crew(tmp: Path, github: GitHubFixture, state: Path) -> Path:
    crew = tmp / "crew"
    scaffold_crew(crew)
    (crew / "crew.yaml").write_text(
        f"""
version: 1
crew: {{name: hooks-test}}
agents:
  - name: devbot
    role: developer
    repos: [carol/gadgets]
    github_login: devbot
  - name: reviewbot
    role: reviewer
    repos: [carol/gadgets]
    github_login: reviewbot
forge:
  kind: github-enterprise
  base_url: {github.standin.api_url}
runtime:
  state_dir: {state}
"""
    )
    return crew


def hook(kind: str) -> dict[str, Any]:
    return {"type": "command", "command": f"{AGENT_SMITH} hook {kind}", "timeout": 120}


def texts(body: Any) -> str:
    return json.dumps(body)


def wait_until(predicate: Any, timeout: float, what: str, logs: Path) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if value := predicate():
            return value
        time.sleep(0.25)
    said = "\n".join(f"{p.name}:\n{p.read_text()}" for p in sorted(logs.glob("*.log")))
    pytest.fail(f"timed out after {timeout}s waiting for {what}; the hooks' logs:\n{said}")


def test_pr_loop_hooks_with_the_real_cli(
    tmp_path: Path,
    github_standin: GitHubFixture,
    nats_server: NatsServer,
    model_server: StartModelServer,
    claude_session: StartClaude,
) -> None:
    github = github_standin
    # Agents hold placeholders, never credential-shaped tokens (the crew refuses those); with no
    # firewall in this test, the stand-in accepts the placeholders as the agents' tokens.
    world = github.standin.world
    for login in ("devbot", "reviewbot"):
        github.users[login] = world.add_user(login, f"agent-smith-placeholder-{login}-token", login)
    github.repo = world.add_repo(
        "carol",
        "gadgets",
        files={"src/widgets.py": "def count(ws):\n    return len(ws)\n"},
        collaborators=("devbot", "reviewbot"),
    )
    github.push_branch("devbot", "dev/empty", {"src/widgets.py": "def count(ws):\n    return len(ws or [])\n"})
    crew = write_crew(tmp_path, github, tmp_path / "state")
    server = model_server(
        {
            "agents": {
                "devbot": [
                    {
                        "when": {"contains": "open the pull request"},
                        "tool_calls": [
                            {
                                "name": "Bash",
                                "input": {
                                    "command": "gh pr create -R carol/gadgets --head dev/empty --base main "
                                    '--title "Handle empty lists" --body "count() accepts None."',
                                    "description": "Open the PR",
                                },
                            }
                        ],
                    },
                    {"when": {"tool_result": True}, "text": "Opened the pull request."},
                    {"when": {"contains": COMMENT}, "text": "Fixed: count() now handles the empty list."},
                ]
            }
        }
    )
    env = {
        **{k: v for k, v in github.env("devbot").items() if k not in ("HOME", "TMPDIR")},
        "AGENT_NAME": "devbot",
        "AGENT_SMITH_CREW": str(crew),
        "GITHUB_TOKEN": github.token("devbot"),
        "NATS_URL": nats_server.url,
        "AGENT_SMITH_STOP_POLL": "1",
        "AGENT_SMITH_STOP_WATCH": "90",
    }
    session = claude_session(
        "devbot",
        base_url=server.agent_url("devbot"),
        settings={
            "hooks": {
                "UserPromptSubmit": [{"hooks": [hook("prompt")]}],
                "PostToolUse": [{"matcher": "Bash|mcp__.*", "hooks": [hook("tool")]}],
                "Stop": [{"hooks": [{**hook("stop"), "asyncRewake": True}]}],
            }
        },
        extra_env=env,
    )
    session.type("open the pull request")
    session.wait_for("Opened the pull request", timeout=60)

    first = next(r for r in server.requests(agent="devbot") if r.kind == "agent_turn")
    assert "[agent-smith] You are devbot, GitHub login devbot." in texts(first.body)

    [pr] = world.pulls(github.repo)
    assert pr.title == "Handle empty lists"

    async def events() -> list[Any]:
        nc = await connect(nats_server.url)
        try:
            return await query(nc, EventLog(), EventFilter(types=("pr_opened",)), limit=10)
        except OperationError:
            return []  # the stream appears with the first event
        finally:
            await nc.close()

    hooks_dir = tmp_path / "state" / "hooks-test" / "agents" / "devbot" / "state" / "hooks"
    [opened] = wait_until(lambda: asyncio.run(events()), 30, "pr_opened on the stream", hooks_dir)
    assert opened.payload["agent"] == "devbot"
    assert opened.payload["pr"] == pr.number
    assert opened.payload["title"] == "Handle empty lists"

    async def review() -> None:
        async with github.client("reviewbot") as bob:
            await bob.review(
                "carol/gadgets",
                pr.number,
                event="COMMENT",
                comments=[InlineComment("src/widgets.py", 2, COMMENT)],
            )

    asyncio.run(review())
    session.wait_for("Fixed: count\\(\\) now handles", timeout=60)
    woken = [r for r in server.requests(agent="devbot") if COMMENT in texts(r.body)]
    assert woken, "the Stop hook's reason never reached the model"
    reason = texts(woken[0].body)
    assert f"carol/gadgets#{pr.number}" in reason
    assert "reviewbot on src/widgets.py:2" in reason

    log = (hooks_dir / "hooks.log").read_text()
    assert log.count("woke the agent") == 1
