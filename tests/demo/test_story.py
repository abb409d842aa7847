"""The demo's script and crew, as data: they parse, load, and say what the hooks and the firewall expect."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from ruamel.yaml import YAML

from agent_smith.crew import load_crew, scaffold_crew
from agent_smith.demo import clean_env
from agent_smith.demo.crewfile import FORGE_PLACEHOLDER, Facts, demo_crew
from agent_smith.demo.script import ASK, REVIEW_COMMENT, Story, build_script
from agent_smith.hooks.recognise import recognise
from agent_smith.standins import parse_script

STORY = Story(
    room_id="!room:localhost",
    repo="example/widgets",
    developer="devbot",
    reviewer="reviewbot",
    developer_user="@devbot:localhost",
    reviewer_user="@reviewbot:localhost",
    refused_host="hooks.slack.com",
)


def commands(agent: str) -> list[str]:
    turns = build_script(STORY)["agents"][agent]
    return [c["input"]["command"] for t in turns for c in t.get("tool_calls", ()) if c["name"] == "Bash"]


def test_the_script_is_a_valid_model_script() -> None:
    script = parse_script(build_script(STORY), "demo")
    assert [len(script.agents[a]) for a in ("devbot", "reviewbot")] == [11, 5]
    first = script.agents["devbot"][0]
    assert first.when.contains is not None
    assert first.when.contains in ASK, "the developer's first turn waits for the operator's ask"


@pytest.mark.parametrize(
    ("agent", "index", "output", "action", "state"),
    [
        ("devbot", 1, "https://vm/example/widgets/pull/1\n", "opened", None),
        ("reviewbot", 0, '{"id": 7, "state": "COMMENTED"}', "reviewed", "COMMENTED"),
        ("reviewbot", 1, "", "reviewed", "APPROVED"),
        ("devbot", 3, "", "merged", None),
    ],
)
def test_the_hooks_recognise_every_pull_request_action_of_the_script(
    agent: str, index: int, output: str, action: str, state: str | None
) -> None:
    command = commands(agent)[index]
    found = recognise({"tool_name": "Bash", "tool_input": {"command": command}, "tool_response": {"stdout": output}})
    assert found is not None, command
    assert (found.action, found.number) == (action, 1)
    # Named by gh's output, or (a bare number) the checkout's: the agents work in example/widgets'.
    assert found.repo == "example/widgets" if found.repo is not None else found.repo_of_checkout
    if state is not None:
        assert found.review_state == state


def test_no_agent_names_a_token_the_firewall_swaps_per_agent() -> None:
    assert not any("TOKEN" in c or FORGE_PLACEHOLDER in c for a in ("devbot", "reviewbot") for c in commands(a))


def test_the_inline_comment_is_what_wakes_the_developer() -> None:
    turns = build_script(STORY)["agents"]
    review = json.loads(commands("reviewbot")[0].split("printf '%s' ", 1)[1].split(" > ", 1)[0].strip("'"))
    assert review["comments"][0]["body"] == REVIEW_COMMENT
    assert any(t.get("when", {}).get("contains") == REVIEW_COMMENT for t in turns["devbot"])


def facts(tmp_path: Path) -> Facts:
    return Facts(
        crew_name="demo",
        homeserver="http://127.0.0.1:8448",
        forge_host="vm",
        forge_ca=str(tmp_path / "ca.pem"),
        model_urls={"devbot": "http://127.0.0.1:9/agents/devbot", "reviewbot": "http://127.0.0.1:9/agents/reviewbot"},
        egress_listen="127.0.0.1:3999",
        developer_secret_file=str(tmp_path / "secrets" / "dev"),
        reviewer_secret_file=str(tmp_path / "secrets" / "rev"),
        state_dir=str(tmp_path / "state"),
        tmux_socket="agent-smith-demo-test",
        nats_url="nats://127.0.0.1:4999",
    )


def test_the_demo_crew_is_the_scaffold_pointed_at_local_parts_and_loads_cleanly(tmp_path: Path) -> None:
    crew_dir = tmp_path / "crew"
    scaffold_crew(crew_dir)
    yaml = YAML()
    data: Any = yaml.load((crew_dir / "crew.yaml").read_text())
    with (crew_dir / "crew.yaml").open("w") as fh:
        yaml.dump(demo_crew(data, facts(tmp_path)), fh)
    loaded = load_crew(crew_dir, {})
    crew = loaded.crew
    assert not loaded.warnings
    assert [a.name for a in crew.agents] == ["devbot", "reviewbot"]
    assert all(a.permission_mode.value == "bypassPermissions" and a.first_run_prompt is None for a in crew.agents)
    assert crew.agent("devbot").env["ANTHROPIC_BASE_URL"].endswith("/agents/devbot")
    assert crew.forge.kind == "github-enterprise"
    assert crew.forge.host == "vm"
    assert crew.events.nats_url == "nats://127.0.0.1:4999"
    assert [r.host for r in crew.egress.allow] == ["vm"]
    assert {s.placeholder for s in crew.egress.secrets} == {crew.forge.token_placeholder}
    assert [s.agents for s in crew.egress.secrets] == [["devbot"], ["reviewbot"]]
    assert all(s.source.file is not None for s in crew.egress.secrets), "real tokens live in files, not crew.yaml"
    assert crew.egress.claude_login.enabled is False
    assert crew.matrix is not None
    assert crew.matrix.operators == ["@operator:localhost"]


def test_clean_env_drops_what_would_override_the_demo_crew() -> None:
    env = clean_env(
        {
            "PATH": "/bin",
            "HOME": "/root",
            "NATS_URL": "nats://elsewhere",
            "GITHUB_TOKEN": "x",
            "AGENT_NAME": "x",
            "AGENT_SMITH_CREW": "/elsewhere",
            "AGENT_SMITH_RUNTIME__STATE_DIR": "/elsewhere",
            "AGENT_SMITH_CLAUDE": "/opt/claude",
            "MATRIX_ACCESS_TOKEN": "x",
        }
    )
    assert env == {"PATH": "/bin", "HOME": "/root", "AGENT_SMITH_CLAUDE": "/opt/claude"}
