"""The hooks under the real `claude` CLI: two agents, the GitHub stand-in, a real nats-server and Synapse.

devbot (author) opens a PR with the real `gh` from its Bash tool: the
PostToolUse hook publishes `pr_opened` and announces the PR in the review
room, mentioning reviewbot. reviewbot posts an inline comment: `pr_reviewed`.
devbot's Stop hook (asyncRewake) wakes it with the comment in the reason
(seen by the model server); devbot pushes a fix and comments — its own
words never wake it. reviewbot approves; the approval wakes devbot, which
merges: `pr_merged`. Exactly two wakes in all.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import secrets
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from agent_smith.crew import EventLog, scaffold_crew
from agent_smith.errors import OperationError
from agent_smith.events import EventFilter, connect, query
from agent_smith.forge import review_activity_once
from agent_smith.standins.synapse import SynapseServer
from tests.chat.kit import room_events
from tests.fixtures.claude import StartClaude
from tests.fixtures.github import GitHubFixture
from tests.fixtures.model import StartModelServer
from tests.fixtures.nats import NatsServer
from tests.forge.test_forge_client import ConnectProxy

AGENT_SMITH = Path(sys.executable).parent / "agent-smith"
REPO = "carol/gadgets"
COMMENT = "Please handle None as well as the empty list in count()."
FIX = "def count(ws):\\n    return len(ws or [])\\n"


def write_crew(tmp: Path, github: GitHubFixture, homeserver: str, room: str, users: dict[str, str]) -> Path:
    crew = tmp / "crew"
    scaffold_crew(crew)
    (crew / "crew.yaml").write_text(
        f"""
version: 1
crew: {{name: hooks-test}}
agents:
  - name: devbot
    role: developer
    repos: [{REPO}]
    github_login: devbot
    matrix: {{user_id: "{users["devbot"]}", rooms: ["{room}"]}}
  - name: reviewbot
    role: reviewer
    repos: [{REPO}]
    github_login: reviewbot
    matrix: {{user_id: "{users["reviewbot"]}", rooms: ["{room}"]}}
matrix:
  homeserver: {homeserver}
  review_room: "{room}"
forge:
  kind: github-enterprise
  base_url: {github.standin.api_url}
runtime:
  state_dir: {tmp / "state"}
"""
    )
    return crew


def hooks_settings() -> dict[str, Any]:
    def hook(kind: str, **extra: Any) -> dict[str, Any]:
        return {"type": "command", "command": f"{AGENT_SMITH} hook {kind}", "timeout": 300, **extra}

    return {
        "hooks": {
            "UserPromptSubmit": [{"hooks": [hook("prompt")]}],
            "PostToolUse": [{"matcher": "Bash|mcp__.*", "hooks": [hook("tool")]}],
            "Stop": [{"hooks": [hook("stop", asyncRewake=True)]}],
        }
    }


def bash(command: str, description: str) -> dict[str, Any]:
    return {"name": "Bash", "input": {"command": command, "description": description}}


def script(github: GitHubFixture) -> dict[str, Any]:
    clone = f"{github.standin.url}/{REPO}.git"
    return {
        "agents": {
            "devbot": [
                {
                    "when": {"contains": "open the pull request"},
                    "tool_calls": [
                        bash(
                            f"gh pr create -R {REPO} --head dev/empty --base main "
                            '--title "Handle empty lists" --body "count() accepts an empty list."',
                            "Open the PR",
                        )
                    ],
                },
                {"when": {"tool_result": True}, "text": "Opened the pull request."},
                {
                    "when": {"contains": COMMENT},
                    "tool_calls": [
                        bash(
                            f"git clone -q {clone} w && cd w && git checkout -q dev/empty && printf '{FIX}' > "
                            "src/widgets.py && git commit -qam 'Handle None in count()' && git push -q origin "
                            f"dev/empty && gh pr comment 1 -R {REPO} -b 'Fixed: count() handles None too.'",
                            "Address the review",
                        )
                    ],
                },
                {"when": {"tool_result": True}, "text": "Addressed the review and pushed."},
                {
                    "when": {"contains": "APPROVED"},
                    "tool_calls": [bash(f"gh pr merge 1 -R {REPO} --merge", "Merge the approved PR")],
                },
                {"when": {"tool_result": True}, "text": "Merged."},
            ],
            "reviewbot": [
                {
                    "when": {"contains": "review the pull request"},
                    "tool_calls": [
                        bash(
                            f"sha=$(gh pr view 1 -R {REPO} --json headRefOid -q .headRefOid) && "
                            f"gh api repos/{REPO}/pulls/1/comments -f body='{COMMENT}' -f path=src/widgets.py "
                            f"-F line=2 -f side=RIGHT -f commit_id=$sha >/dev/null && "
                            f"gh pr review 1 -R {REPO} --comment -b 'One finding, inline.'",
                            "Review the PR",
                        )
                    ],
                },
                {"when": {"tool_result": True}, "text": "Reviewed with one inline comment."},
                {
                    "when": {"contains": "approve it"},
                    "tool_calls": [bash(f"gh pr review 1 -R {REPO} --approve -b 'Thanks, LGTM.'", "Approve")],
                },
                {"when": {"tool_result": True}, "text": "Approved."},
            ],
        }
    }


def wait_until(predicate: Any, timeout: float, what: str, logs: Path) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if value := predicate():
            return value
        time.sleep(0.25)
    said = "\n".join(f"{p}:\n{p.read_text()}" for p in sorted(logs.rglob("*.log")))
    pytest.fail(f"timed out after {timeout}s waiting for {what}; the hooks' logs:\n{said}")


def stored_events(url: str) -> list[dict[str, Any]]:
    async def run() -> list[dict[str, Any]]:
        nc = await connect(url)
        try:
            return [e.payload for e in await query(nc, EventLog(), EventFilter(), limit=100)]
        except OperationError:
            return []  # the stream appears with the first event
        finally:
            await nc.close()

    return asyncio.run(run())


def of_type(url: str, kind: str, count: int) -> list[dict[str, Any]] | None:
    found = [e for e in stored_events(url) if e["type"] == kind]
    return found if len(found) >= count else None


def test_two_agents_close_the_review_loop(
    tmp_path: Path,
    github_standin: GitHubFixture,
    nats_server: NatsServer,
    synapse: SynapseServer,
    model_server: StartModelServer,
    claude_session: StartClaude,
) -> None:
    github = github_standin
    # Agents hold placeholders, never credential-shaped tokens (the crew refuses those); with no
    # firewall in this test, the stand-in takes the placeholders as the agents' tokens.
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

    suffix = secrets.token_hex(3)
    matrix = {name: synapse.register(f"{name}-{suffix}") for name in ("devbot", "reviewbot", "operator")}
    room = synapse.create_room(
        matrix["operator"], name="crew", invite=[matrix["devbot"].user_id, matrix["reviewbot"].user_id]
    )
    for name in ("devbot", "reviewbot"):
        synapse.join(matrix[name], room)
    crew = write_crew(tmp_path, github, synapse.url, room, {n: u.user_id for n, u in matrix.items()})
    server = model_server(script(github))
    state = tmp_path / "state" / "hooks-test" / "agents"

    def start(name: str) -> Any:
        env = {
            **{k: v for k, v in github.env(name).items() if k not in ("HOME", "TMPDIR")},
            "AGENT_NAME": name,
            "AGENT_SMITH_CREW": str(crew),
            "GITHUB_TOKEN": github.token(name),
            "NATS_URL": nats_server.url,
            "MATRIX_ACCESS_TOKEN": matrix[name].access_token,
            "AGENT_SMITH_STOP_POLL": "1",
            "AGENT_SMITH_STOP_WATCH": "240",
        }
        return claude_session(name, base_url=server.agent_url(name), settings=hooks_settings(), extra_env=env)

    dev, rev = start("devbot"), start("reviewbot")

    dev.type("open the pull request")
    dev.wait_for("Opened the pull request", timeout=60)
    first = next(r for r in server.requests(agent="devbot") if r.kind == "agent_turn")
    assert "[agent-smith] You are devbot, GitHub login devbot." in json.dumps(first.body)
    [opened] = wait_until(lambda: of_type(nats_server.url, "pr_opened", 1), 30, "pr_opened", state)
    assert (opened["agent"], opened["repo"], opened["pr"], opened["title"]) == ("devbot", REPO, 1, "Handle empty lists")
    assert (opened["base"], opened["head"]) == ("main", "dev/empty")

    def announcement() -> dict[str, Any] | None:
        # The room's history, not a first sync's last few events: the review goes on meanwhile.
        return next(
            (
                e
                for e in room_events(synapse, matrix["operator"], room)
                if e["sender"] == matrix["devbot"].user_id and "pull/1" in e.get("content", {}).get("body", "")
            ),
            None,
        )

    notice = wait_until(announcement, 30, "the PR announcement in the review room", state)
    assert notice["content"]["msgtype"] == "m.notice"
    assert matrix["reviewbot"].user_id in notice["content"]["m.mentions"]["user_ids"]

    rev.type("review the pull request")
    rev.wait_for("Reviewed with one inline comment", timeout=60)
    [reviewed] = wait_until(lambda: of_type(nats_server.url, "pr_reviewed", 1), 30, "pr_reviewed", state)
    assert (reviewed["agent"], reviewed["state"]) == ("reviewbot", "commented")

    dev.wait_for("Addressed the review and pushed", timeout=90)
    woken = next(r for r in server.requests(agent="devbot") if COMMENT in json.dumps(r.body))
    reason = json.dumps(woken.body)
    assert f"{REPO}#1" in reason
    assert "reviewbot on src/widgets.py:2" in reason

    rev.type("approve it")
    rev.wait_for("Approved\\.", timeout=60)
    dev.wait_for("Merged\\.", timeout=90)
    [merged] = wait_until(lambda: of_type(nats_server.url, "pr_merged", 1), 30, "pr_merged", state)
    assert (merged["agent"], merged["pr"]) == ("devbot", 1)
    assert world.pull(github.repo, 1).merged_at is not None

    log = (state / "devbot" / "state" / "hooks" / "hooks.log").read_text()
    wakes = [line for line in log.splitlines() if "woke the agent" in line]
    # The inline comment, the review's body (in the same check or the next) and the approval;
    # never devbot's own comment.
    assert 2 <= len(wakes) <= 3, log
    assert all(f"by reviewbot on {REPO}#1" in line for line in wakes), log
    assert not (state / "reviewbot" / "state" / "hooks" / "hooks.log").read_text().count("woke the agent")


@pytest.mark.parametrize(
    ("fault", "said"),
    [
        ("server error", "answered 502"),
        ("rate limit", "rate limited the token (403); it asks to wait 60 s"),
        ("bad token", "rejected the token (401)"),
    ],
)
def test_a_failing_check_never_blocks_the_stop_hook(
    tmp_path: Path, github_standin: GitHubFixture, fault: str, said: str
) -> None:
    """GitHub down, rate-limited, or a bad token: one line in the hooks' log and exit 0."""
    github = github_standin
    github.users["devbot"] = github.standin.world.add_user("devbot", "agent-smith-placeholder-devbot-token", "devbot")
    crew = tmp_path / "crew"
    scaffold_crew(crew)
    text = (crew / "crew.yaml").read_text()
    text = text.replace(
        "  base_url: https://api.github.com", f"  kind: github-enterprise\n  base_url: {github.standin.api_url}"
    )
    text = text.replace("forge:\n  kind: github\n", "forge:\n")
    text += f"\nruntime:\n  state_dir: {tmp_path / 'state'}\n"
    (crew / "crew.yaml").write_text(text)
    if fault == "server error":
        github.standin.faults.fail(502, times=10, path="/api/graphql")
    elif fault == "rate limit":
        github.standin.faults.secondary_rate_limit(retry_after=60, times=10, path="/api/graphql")
    env = {
        "PATH": os.environ["PATH"],
        "HOME": str(tmp_path),
        "AGENT_NAME": "devbot",
        "AGENT_SMITH_CREW": str(crew),
        "GITHUB_TOKEN": github.token("devbot") if fault != "bad token" else "agent-smith-placeholder-wrong",
        "SSL_CERT_FILE": str(github.standin.ca_path),
        "AGENT_SMITH_STOP_WATCH": "0",
    }
    started = time.monotonic()
    result = subprocess.run(
        [str(AGENT_SMITH), "hook", "stop"], input="{}", capture_output=True, text=True, env=env, timeout=60, check=False
    )
    assert result.returncode == 0
    assert time.monotonic() - started < 20
    log = (tmp_path / "state" / "example-crew" / "agents" / "devbot" / "state" / "hooks" / "hooks.log").read_text()
    assert log.count("\n") == 1
    assert "review check failed, not waking" in log
    assert said in log
    assert env["GITHUB_TOKEN"] not in log


def test_the_one_shot_check_goes_through_an_authenticating_proxy(github_standin: GitHubFixture) -> None:
    """The Stop hook's check honours HTTPS_PROXY with credentials (as behind the firewall) and NO_PROXY."""
    github = github_standin
    github.users["devbot"] = github.standin.world.add_user("devbot", "agent-smith-placeholder-devbot-token", "devbot")
    proxy = ConnectProxy()
    try:
        host, port = proxy.url.removeprefix("http://").split(":")
        env = {
            "GITHUB_TOKEN": github.token("devbot"),
            "SSL_CERT_FILE": str(github.standin.ca_path),
            "HTTPS_PROXY": f"http://devbot:s3cret@{host}:{port}",
        }
        activity = review_activity_once(github.standin.graphql_url, "devbot", None, env)
        assert activity.pull_requests == ()
        assert proxy.targets == [f"{github.host}:443"]
        assert proxy.authorizations == ["Basic " + base64.b64encode(b"devbot:s3cret").decode()]
        review_activity_once(github.standin.graphql_url, "devbot", None, {**env, "NO_PROXY": github.host})
        assert len(proxy.targets) == 1
    finally:
        proxy.close()
