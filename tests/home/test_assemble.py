"""Assembly against a real file system and real git: idempotence, credentials, secrets, atomicity."""

from __future__ import annotations

import json
import re
import shutil
import signal
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from ruamel.yaml import YAML

from agent_smith.crew import load_crew
from agent_smith.egress import ca_cert_for
from agent_smith.errors import OperationError, UnknownAgentError, UsageError
from agent_smith.home import AssembleOptions, AssemblyReport, FileAction, HomeLayout, agent_environment, assemble
from agent_smith.home.plan import CA_VARIABLES, CLAUDE_VERSION, NODE_CA_VARIABLE
from agent_smith.runtime import PINNED_VERSION
from tests.home.crewkit import (
    PERSONA_MARK,
    REAL_LOOKING,
    SHARED_MARK,
    STUB,
    USER_HOOK,
    recording_command,
    tree,
    write_crew,
)

MATRIX_TOKEN = "syt_ZGV2Ym90_tokenvalueabcdefghij_0a1b2c"


@pytest.fixture
def setup_crew(tmp_path: Path) -> tuple[Path, Path, Path]:
    """(crew dir, state dir, agent-smith command)."""
    state = tmp_path / "state"
    crew = write_crew(tmp_path / "crew", state_dir=state, persona_servers={"docs": {"command": "/bin/true"}})
    command, _ = recording_command(tmp_path / "bin")
    return crew, state, command


def _assemble(crew: Path, command: Path, env: dict[str, str] | None = None, **kw: Any) -> AssemblyReport:
    loaded = load_crew(crew, env=env or {})
    return assemble(loaded, "devbot", AssembleOptions(agent_smith_command=str(command), env=env or {}, **kw))


def _layout(state: Path) -> HomeLayout:
    base = state / "t-crew" / "agents" / "devbot"
    return HomeLayout(base / "home", base / "workspace", base / "state")


def test_the_pinned_cli_version_is_the_one_onboarding_is_seeded_for() -> None:
    assert CLAUDE_VERSION == PINNED_VERSION


def test_assembles_every_file_claude_code_reads(setup_crew: tuple[Path, Path, Path]) -> None:
    crew, state, command = setup_crew
    report = _assemble(crew, command, env={"MATRIX_ACCESS_TOKEN": MATRIX_TOKEN})
    layout = _layout(state)
    md = layout.claude_md.read_text()
    assert md.index(SHARED_MARK) < md.index(PERSONA_MARK) < md.index("## Your team")
    assert "| reviewbot | reviewer | @reviewbot:localhost | @reviewbot |" in md
    assert "@devbot:localhost" in md
    assert "@devbot-gh" in md
    assert "@op:localhost" in md

    settings = json.loads(layout.settings.read_text())
    # agent-smith's own tools are allowed: an unattended agent has nobody to answer a permission prompt.
    assert settings["permissions"]["allow"] == ["Bash(git:*)", "Read", "mcp__agent-smith-events", "mcp__matrix"]
    stop = settings["hooks"]["Stop"]
    assert stop[0]["hooks"][0]["command"] == USER_HOOK
    assert stop[1]["hooks"][0] == {
        "type": "command",
        "command": f"{command} hook stop",
        "asyncRewake": True,
        "timeout": 7200,
    }
    assert settings["hooks"]["UserPromptSubmit"] == [
        {
            "hooks": [
                {
                    "type": "mcp_tool",
                    "server": "agent-smith-events",
                    "tool": "prompt_context",
                    "onFailure": "continue",
                    "timeout": 10,
                }
            ]
        }
    ]
    assert settings["hooks"]["PostToolUse"][0]["matcher"] == "Bash|mcp__.*"
    assert settings["env"]["CREW_SETTING"] == "kept"
    for var in CA_VARIABLES:
        assert settings["env"][var] == str(layout.ca_bundle)
    # Node trusts the firewall's CA on top of its own roots: that one certificate, not the bundle.
    assert settings["env"][NODE_CA_VARIABLE] == str(layout.firewall_ca)
    assert layout.firewall_ca.read_bytes() == ca_cert_for(load_crew(crew).crew).read_bytes()
    assert layout.ca_bundle.read_bytes().endswith(layout.firewall_ca.read_bytes())

    assert json.loads(layout.credentials.read_text()) == STUB
    assert stat.S_IMODE(layout.credentials.stat().st_mode) == 0o600
    assert (layout.subagents / "test-writer.md").read_text().startswith("---\nname: test-writer")

    claude_json = json.loads(layout.claude_json.read_text())
    assert claude_json["hasCompletedOnboarding"] is True
    assert claude_json["projects"][str(layout.workspace)]["hasTrustDialogAccepted"] is True
    servers = claude_json["mcpServers"]
    assert set(servers) == {"docs", "agent-smith-events", "matrix"}
    # The event tools are the supervisor's: their address and the agent's token are expanded by the CLI.
    assert servers["agent-smith-events"] == {
        "type": "http",
        "url": "${AGENT_SMITH_MCP_URL}",
        "headers": {"Authorization": "Bearer ${AGENT_SMITH_MCP_TOKEN}"},
    }
    # So is the Matrix channel, beside them; the supervisor reads the access token from its file.
    assert servers["matrix"] == {**servers["agent-smith-events"], "url": "${AGENT_SMITH_MCP_URL}/matrix"}
    assert layout.matrix_token.read_text() == MATRIX_TOKEN
    assert stat.S_IMODE(layout.matrix_token.stat().st_mode) == 0o600

    bundle = layout.ca_bundle.read_bytes()
    firewall_ca = (state / "t-crew" / "firewall" / "ca.pem").read_bytes()
    assert bundle.endswith(firewall_ca)
    assert bundle.count(b"BEGIN CERTIFICATE") > 10
    assert {c.action for c in report.files} == {FileAction.create}

    # The Matrix token is in no file but its own, and in no report.
    for path in layout.home.rglob("*"):
        if path.is_file():
            assert MATRIX_TOKEN.encode() not in path.read_bytes(), path
    assert MATRIX_TOKEN not in repr(report)


def test_a_second_run_changes_nothing(setup_crew: tuple[Path, Path, Path]) -> None:
    crew, state, command = setup_crew
    _assemble(crew, command, env={"MATRIX_ACCESS_TOKEN": MATRIX_TOKEN})
    before = tree(state)
    for _ in range(3):
        report = _assemble(crew, command, env={"MATRIX_ACCESS_TOKEN": MATRIX_TOKEN})
        assert not report.changed
    assert tree(state) == before
    settings = json.loads(_layout(state).settings.read_text())
    assert len(settings["hooks"]["Stop"]) == 2
    assert len(settings["hooks"]["PostToolUse"]) == 1


def test_what_the_agent_added_survives_and_stale_contributions_go(setup_crew: tuple[Path, Path, Path]) -> None:
    crew, state, command = setup_crew
    _assemble(crew, command)
    layout = _layout(state)
    settings = json.loads(layout.settings.read_text())
    settings["permissions"]["allow"].append("Bash(make:*)")
    settings["model"] = "opus"
    layout.settings.write_text(json.dumps(settings))
    claude_json = json.loads(layout.claude_json.read_text())
    claude_json["numStartups"] = 7
    claude_json["mcpServers"]["mine"] = {"command": "/bin/true"}
    layout.claude_json.write_text(json.dumps(claude_json))
    (layout.subagents / "own.md").write_text("---\nname: own\ndescription: mine\n---\n")

    # The crew drops its Read permission, a persona server and the subagent; agent-smith moves.
    shared = crew / "agents" / "_shared" / "settings.json"
    crew_settings = json.loads(shared.read_text())
    crew_settings["permissions"]["allow"] = ["Bash(git:*)"]
    shared.write_text(json.dumps(crew_settings))
    (crew / "agents" / "devbot" / "mcp.json").write_text('{"mcpServers": {}}')
    (crew / "agents" / "devbot" / "subagents" / "test-writer.md").unlink()
    moved, _ = recording_command(crew.parent / "bin2")
    _assemble(crew, moved)

    settings = json.loads(layout.settings.read_text())
    assert settings["permissions"]["allow"] == ["Bash(git:*)", "mcp__agent-smith-events", "mcp__matrix", "Bash(make:*)"]
    assert settings["model"] == "opus"
    commands = [h["command"] for g in settings["hooks"]["Stop"] for h in g["hooks"]]
    assert commands == [USER_HOOK, f"{moved} hook stop"]
    claude_json = json.loads(layout.claude_json.read_text())
    assert claude_json["numStartups"] == 7
    assert set(claude_json["mcpServers"]) == {"mine", "agent-smith-events", "matrix"}
    assert not (layout.subagents / "test-writer.md").exists()
    assert (layout.subagents / "own.md").exists()


def test_a_lone_surrogate_the_cli_wrote_into_its_files_is_kept_as_its_escape(
    setup_crew: tuple[Path, Path, Path],
) -> None:
    # JSON.stringify writes a lone surrogate (half an emoji cut off in a pasted prompt, say) as
    # `\ud83d`; Python reads it back as a character UTF-8 cannot hold, and assembly failed with
    # a traceback writing the merged file: an agent whose home cannot be assembled cannot start.
    crew, state, command = setup_crew
    _assemble(crew, command)
    layout = _layout(state)
    for path in (layout.claude_json, layout.settings):
        path.write_text(path.read_text().replace("{", '{\n  "cut": "half \\ud83d",', 1))
    _assemble(crew, command)
    for path in (layout.claude_json, layout.settings):
        assert '"cut": "half \\ud83d"' in path.read_text()
        assert json.loads(path.read_text())["cut"] == "half \ud83d"
    assert not _assemble(crew, command).changed


def test_a_home_with_the_old_prompt_command_hook_gets_the_mcp_tool_hook_in_its_place(
    setup_crew: tuple[Path, Path, Path],
) -> None:
    crew, state, command = setup_crew
    _assemble(crew, command)
    layout = _layout(state)
    # What agent-smith wrote before the prompt context became an MCP tool: in the file and its manifest.
    old = [{"hooks": [{"type": "command", "command": f"{command} hook prompt", "timeout": 30}]}]
    for path in (layout.settings, layout.manifest):
        data = json.loads(path.read_text())
        (data if path == layout.settings else data["settings"])["hooks"]["UserPromptSubmit"] = old
        path.write_text(json.dumps(data))
    _assemble(crew, command)
    groups = json.loads(layout.settings.read_text())["hooks"]["UserPromptSubmit"]
    assert [(h["type"], h.get("tool")) for g in groups for h in g["hooks"]] == [("mcp_tool", "prompt_context")]


def test_a_real_credential_on_the_volume_survives_and_is_reported(setup_crew: tuple[Path, Path, Path]) -> None:
    crew, state, command = setup_crew
    _assemble(crew, command)
    layout = _layout(state)
    real = {"claudeAiOauth": {**STUB["claudeAiOauth"], "accessToken": REAL_LOOKING}}
    layout.credentials.write_text(json.dumps(real))
    report = _assemble(crew, command)
    assert json.loads(layout.credentials.read_text()) == real
    warnings = report.warnings
    assert any("Anthropic" in w and str(layout.credentials) in w for w in warnings)
    assert REAL_LOOKING not in repr(report)
    assert not report.changed


def test_a_changed_stub_converges_back(setup_crew: tuple[Path, Path, Path]) -> None:
    crew, state, command = setup_crew
    _assemble(crew, command)
    layout = _layout(state)
    layout.credentials.write_text('{"claudeAiOauth": {"accessToken": "x", "refreshToken": "y"}}')
    layout.credentials.chmod(0o644)
    report = _assemble(crew, command)
    assert [c.path for c in report.files] == [layout.credentials]
    assert json.loads(layout.credentials.read_text()) == STUB
    assert stat.S_IMODE(layout.credentials.stat().st_mode) == 0o600


def test_dry_run_prints_a_diff_and_touches_nothing(setup_crew: tuple[Path, Path, Path]) -> None:
    crew, state, command = setup_crew
    report = _assemble(crew, command, dry_run=True, env={"MATRIX_ACCESS_TOKEN": MATRIX_TOKEN})
    assert not state.exists()
    diffs = "".join(c.diff for c in report.files)
    assert f"+{SHARED_MARK}" in diffs
    assert MATRIX_TOKEN not in diffs
    assert "contents not shown (secret)" in diffs

    _assemble(crew, command)
    before = tree(state)
    (crew / "agents" / "devbot" / "CLAUDE.md").write_text("# devbot\n\nA new rule.\n")
    report = _assemble(crew, command, dry_run=True)
    assert tree(state) == before
    [change] = report.files
    assert change.action is FileAction.update
    assert f"-{PERSONA_MARK}\n" in change.diff
    assert "+A new rule.\n" in change.diff
    proxy_password = agent_environment(load_crew(crew, env={}), "devbot")["HTTPS_PROXY"].split(":")[2].split("@")[0]
    _layout(state).settings.unlink()
    whole = "".join(c.diff for c in _assemble(crew, command, dry_run=True).files)
    assert '"HTTPS_PROXY": "http://devbot:***@127.0.0.1:3128"' in whole
    assert proxy_password not in whole


def test_dry_run_shows_no_credential_someone_else_put_in_a_file_it_diffs(setup_crew: tuple[Path, Path, Path]) -> None:
    # The CLI keeps an API key it was given in ~/.claude.json (`primaryApiKey`); a person may put
    # a token in settings.json `env`. Their lines are a diff's context, or changed by the merge.
    crew, state, command = setup_crew
    _assemble(crew, command)
    layout = _layout(state)
    for path in (layout.settings, layout.claude_json):
        data = json.loads(path.read_text())
        data["primaryApiKey"] = REAL_LOOKING
        data.setdefault("env", {})["ANTHROPIC_API_KEY"] = REAL_LOOKING
        path.write_text(json.dumps(data, indent=2))
    shared = crew / "agents" / "_shared" / "settings.json"
    shared.write_text(json.dumps({**json.loads(shared.read_text()), "env": {"NEW": "1"}}))
    (crew / "agents" / "devbot" / "mcp.json").write_text('{"mcpServers": {"new": {"command": "/bin/true"}}}')
    report = _assemble(crew, command, dry_run=True)
    whole = "".join(c.diff for c in report.files)
    assert {c.path for c in report.files} >= {layout.settings, layout.claude_json}
    assert REAL_LOOKING not in whole
    assert '"primaryApiKey": "<an Anthropic key or OAuth token (sk-ant-…), not shown>"' in whole
    assert '+  "primaryApiKey"' not in whole, "a key nobody changed is context, not a change"


# Run as a child process: assembles devbot with the given agent-smith command, and SIGKILLs itself
# at write or deletion number STOP (counting from 0) — at that point of the run, as a crash would.
_KILLED_ASSEMBLY = """\
import importlib, os, signal, sys
from pathlib import Path
from agent_smith.crew import load_crew

a = importlib.import_module("agent_smith.home.assemble")  # the package's `assemble` is the function

crew, command, stop = sys.argv[1], sys.argv[2], int(sys.argv[3])
done = [0]

def counted(real):
    def step(*args, **kwargs):
        if done[0] == stop:
            os.kill(os.getpid(), signal.SIGKILL)
        done[0] += 1
        return real(*args, **kwargs)
    return step

a.write_atomic = counted(a.write_atomic)
Path.unlink = counted(Path.unlink)
a.assemble(load_crew(crew, env={}), "devbot", a.AssembleOptions(agent_smith_command=command, env={}))
"""


def _crew_b(crew: Path) -> None:
    """The crew grown in every kind of contribution: a list item, a scalar key, a persona server
    and a subagent. (Only grown: a list item dropped and added back moves to the end, so whether
    the run that dropped it got as far as the file would show in the order.)"""
    shared = crew / "agents" / "_shared" / "settings.json"
    data = json.loads(shared.read_text())
    data["permissions"]["allow"].append("Bash(rm:*)")
    data["model"] = "opus"
    shared.write_text(json.dumps(data))
    persona = crew / "agents" / "devbot"
    (persona / "mcp.json").write_text(
        json.dumps({"mcpServers": {"docs": {"command": "/bin/true"}, "extra": {"command": "/bin/false"}}})
    )
    (persona / "subagents" / "extra.md").write_text("---\nname: extra\ndescription: Extra.\n---\n")


def _home_as_text(state: Path) -> dict[str, str]:
    """The merged files and the subagents, without what differs between two crews alike: their
    directory and the agent's proxy password."""
    layout = _layout(state)
    files = {
        "settings": layout.settings.read_text(),
        "mcpServers": json.dumps(json.loads(layout.claude_json.read_text())["mcpServers"]),
        "subagents": " ".join(sorted(p.name for p in layout.subagents.iterdir())),
    }
    return {k: re.sub(r"devbot:\w+@", "devbot:***@", v.replace(str(state.parent), "ROOT")) for k, v in files.items()}


def _started(root: Path, command: Path) -> tuple[Path, Path]:
    """A crew assembled once (command `command`), to which the agent added a permission of its own."""
    state = root / "state"
    crew = write_crew(root / "crew", state_dir=state, persona_servers={"docs": {"command": "/bin/true"}})
    _assemble(crew, command)
    settings_file = _layout(state).settings
    settings = json.loads(settings_file.read_text())
    settings["permissions"]["allow"].append("Bash(make:*)")
    settings_file.write_text(json.dumps(settings))
    return crew, state


@pytest.mark.parametrize("then", ["withdrawn", "kept"])
def test_a_run_killed_at_any_write_converges_on_the_next_run(tmp_path: Path, then: str) -> None:
    # A → B (killed at write k) → `then` (A again, or B): each k ends exactly where B's run completing would.
    original, _ = recording_command(tmp_path / "bin")
    moved, _ = recording_command(tmp_path / "moved")
    child = tmp_path / "killed.py"
    child.write_text(_KILLED_ASSEMBLY)

    def finish(crew: Path) -> Path:
        if then == "withdrawn":
            shutil.rmtree(crew)
            write_crew(crew, state_dir=crew.parent / "state", persona_servers={"docs": {"command": "/bin/true"}})
            return original
        return moved

    crew, state = _started(tmp_path / "reference", original)
    _crew_b(crew)
    _assemble(crew, moved)
    _assemble(crew, finish(crew))
    expected = _home_as_text(state)
    if then == "withdrawn":
        assert "Bash(rm:*)" not in expected["settings"]
        assert '"model"' not in expected["settings"]
        assert str(moved) not in expected["settings"]
        assert "extra" not in expected["mcpServers"] + expected["subagents"]
    assert "Bash(make:*)" in expected["settings"]

    for stop in range(20):
        crew, state = _started(tmp_path / f"killed-at-{stop}", original)
        _crew_b(crew)
        run = subprocess.run(
            [sys.executable, str(child), str(crew), str(moved), str(stop)], capture_output=True, text=True, check=False
        )
        layout = _layout(state)
        assert not list(layout.home.rglob("*.tmp"))
        command = finish(crew)
        _assemble(crew, command)
        assert _home_as_text(state) == expected, f"killed at write {stop}"
        assert not _assemble(crew, command).changed
        assert "unsettled" not in json.loads(layout.manifest.read_text())
        if run.returncode == 0:
            break
        assert run.returncode == -signal.SIGKILL, run.stderr
    else:
        pytest.fail("the killed assembly never ran to its end")
    assert stop >= 5, "fewer writes than the change needs: the kill missed the files"


def test_an_older_manifest_is_read_and_only_the_manifest_is_updated(setup_crew: tuple[Path, Path, Path]) -> None:
    crew, state, command = setup_crew
    _assemble(crew, command)
    manifest = _layout(state).manifest
    data = json.loads(manifest.read_text())
    del data["credentials"]
    manifest.write_text(json.dumps(data))
    report = _assemble(crew, command)
    assert [c.path for c in report.files] == [manifest]
    assert not _assemble(crew, command).changed


def _set_permission_mode(crew: Path, mode: str) -> None:
    yaml = YAML()
    data = yaml.load(crew / "crew.yaml")
    data["agents"][0]["permission_mode"] = mode
    yaml.dump(data, crew / "crew.yaml")


def test_an_agent_in_bypass_mode_starts_past_its_warning_and_loses_the_skip_with_the_mode(
    setup_crew: tuple[Path, Path, Path],
) -> None:
    crew, state, command = setup_crew
    layout = _layout(state)
    _assemble(crew, command)
    assert "skipDangerousModePermissionPrompt" not in json.loads(layout.settings.read_text())

    _set_permission_mode(crew, "bypassPermissions")
    _assemble(crew, command)
    assert json.loads(layout.settings.read_text())["skipDangerousModePermissionPrompt"] is True
    assert not _assemble(crew, command).changed

    _set_permission_mode(crew, "acceptEdits")
    _assemble(crew, command)
    assert "skipDangerousModePermissionPrompt" not in json.loads(layout.settings.read_text())


def test_a_withdrawn_matrix_section_takes_the_token_and_the_channel_away(setup_crew: tuple[Path, Path, Path]) -> None:
    crew, state, command = setup_crew
    _assemble(crew, command, env={"MATRIX_ACCESS_TOKEN": MATRIX_TOKEN})
    layout = _layout(state)
    assert layout.matrix_token.read_text() == MATRIX_TOKEN
    chat_state = layout.state / "chat" / "state.json"  # the supervisor's, not assembly's
    chat_state.parent.mkdir()
    chat_state.write_text("{}")

    yaml = YAML()
    data = yaml.load(crew / "crew.yaml")
    del data["agents"][0]["matrix"]
    yaml.dump(data, crew / "crew.yaml")
    dry = _assemble(crew, command, dry_run=True)
    [shown] = [c for c in dry.files if c.path == layout.matrix_token]
    assert shown.action is FileAction.delete
    assert shown.diff == f"{layout.matrix_token}: contents not shown (secret)\n"
    assert layout.matrix_token.exists()

    report = _assemble(crew, command)
    assert not layout.matrix_token.exists()
    assert MATRIX_TOKEN not in repr(report)
    assert "mcp__matrix" not in json.loads(layout.settings.read_text())["permissions"]["allow"]
    assert "matrix" not in json.loads(layout.claude_json.read_text())["mcpServers"]
    assert chat_state.exists()
    assert not _assemble(crew, command).changed


def test_a_token_stays_while_the_agent_has_chat_and_the_environment_has_none(
    setup_crew: tuple[Path, Path, Path],
) -> None:
    crew, state, command = setup_crew
    _assemble(crew, command, env={"MATRIX_ACCESS_TOKEN": MATRIX_TOKEN})
    report = _assemble(crew, command)
    assert _layout(state).matrix_token.read_text() == MATRIX_TOKEN
    assert not report.changed


def test_a_withdrawn_credentials_stub_is_taken_away_but_a_real_login_stays(setup_crew: tuple[Path, Path, Path]) -> None:
    crew, state, command = setup_crew
    _assemble(crew, command)
    layout = _layout(state)
    (crew / "agents" / "_shared" / ".credentials.json").unlink()
    report = _assemble(crew, command)
    assert not layout.credentials.exists()
    assert FileAction.delete in {c.action for c in report.files if c.path == layout.credentials}
    assert not _assemble(crew, command).changed

    real = {"claudeAiOauth": {**STUB["claudeAiOauth"], "accessToken": REAL_LOOKING}}
    layout.credentials.write_text(json.dumps(real))
    _assemble(crew, command)
    assert json.loads(layout.credentials.read_text()) == real


def test_a_stub_the_crew_never_contributed_is_not_taken(setup_crew: tuple[Path, Path, Path]) -> None:
    crew, state, command = setup_crew
    (crew / "agents" / "_shared" / ".credentials.json").unlink()
    _assemble(crew, command)
    layout = _layout(state)
    layout.credentials.write_text(json.dumps(STUB))
    assert not _assemble(crew, command).changed
    assert layout.credentials.exists()


def test_agent_environment_overrides_the_machines_trust_and_proxy(setup_crew: tuple[Path, Path, Path]) -> None:
    crew, state, _ = setup_crew
    env = agent_environment(load_crew(crew, env={"NATS_URL": "nats://127.0.0.1:4999"}), "devbot")
    layout = _layout(state)
    assert env["HOME"] == str(layout.home)
    assert {env[v] for v in CA_VARIABLES} == {str(layout.ca_bundle)}
    assert env[NODE_CA_VARIABLE] == str(layout.firewall_ca)
    assert env["HTTPS_PROXY"].startswith("http://devbot:")
    assert env["HTTPS_PROXY"].endswith("@127.0.0.1:3128")
    assert env["npm_config_https_proxy"] == env["HTTPS_PROXY"]
    assert env["NO_PROXY"] == "127.0.0.1"
    assert env["GITHUB_TOKEN"] == env["GH_TOKEN"] == "agent-smith-placeholder-github-token"
    assert env["NATS_URL"] == "nats://127.0.0.1:4999"


def test_in_a_pod_the_proxy_comes_from_the_pod_and_no_identity_key_is_made(setup_crew: tuple[Path, Path, Path]) -> None:
    crew, state, command = setup_crew
    pod_proxy = "http://devbot:from-a-secret@firewall.agent-smith.svc:3128"
    _assemble(crew, command, env={"AGENT_SMITH_PROXY_PASSWORD": "from-a-secret", "HTTPS_PROXY": pod_proxy})
    settings = json.loads(_layout(state).settings.read_text())
    assert settings["env"]["HTTPS_PROXY"] == pod_proxy
    assert not (state / "t-crew" / "firewall" / "identity.key").exists()


def test_an_ambient_proxy_never_replaces_the_firewall(setup_crew: tuple[Path, Path, Path]) -> None:
    crew, state, command = setup_crew
    _assemble(crew, command, env={"HTTPS_PROXY": "http://corporate-proxy.example:8080"})
    proxy = json.loads(_layout(state).settings.read_text())["env"]["HTTPS_PROXY"]
    assert proxy.startswith("http://devbot:")
    assert proxy.endswith("@127.0.0.1:3128")


def test_unknown_agent_is_one_line_and_touches_nothing(setup_crew: tuple[Path, Path, Path]) -> None:
    crew, state, command = setup_crew
    loaded = load_crew(crew, env={})
    with pytest.raises(UnknownAgentError, match="unknown agent 'nobody' \\(the crew has: devbot, reviewbot\\)"):
        assemble(loaded, "nobody", AssembleOptions(agent_smith_command=str(command), env={}))
    assert not state.exists()


def test_an_unwritable_home_fails_before_anything_is_written(setup_crew: tuple[Path, Path, Path]) -> None:
    crew, state, command = setup_crew
    blocker = crew.parent / "blocker"
    blocker.write_text("a file where a directory belongs")
    with pytest.raises(OperationError, match=f"cannot write to {blocker}/home"):
        _assemble(crew, command, home=blocker / "home")
    assert not (state / "t-crew" / "agents").exists()


def test_a_relative_agent_smith_command_is_refused(setup_crew: tuple[Path, Path, Path]) -> None:
    crew, _, _ = setup_crew
    with pytest.raises(UsageError, match="must be an absolute path"):
        assemble(load_crew(crew, env={}), "devbot", AssembleOptions(agent_smith_command="agent-smith", env={}))


@pytest.mark.parametrize(
    ("which", "corrupt", "why"),
    [
        ("settings", "{not json", "not valid JSON"),
        ("settings", "[1, 2]\n", "holds JSON that is no object"),
        ("claude_json", '"a string"\n', "holds JSON that is no object"),
        # Python reads these; Claude Code's JSON.parse refuses them, and with them the whole file.
        ("settings", '{"n": NaN}\n', r"not valid JSON \(NaN is no JSON value\)"),
        ("claude_json", '{"numStartups": -Infinity}\n', r"not valid JSON \(-Infinity is no JSON value\)"),
        ("claude_json", '{"n": 1e999}\n', r"not valid JSON \(1e999 is beyond the range of a number\)"),
    ],
)
def test_a_corrupt_settings_file_is_reported_not_replaced(
    setup_crew: tuple[Path, Path, Path], which: str, corrupt: str, why: str
) -> None:
    crew, state, command = setup_crew
    _assemble(crew, command)
    file = getattr(_layout(state), which)
    file.write_text(corrupt)
    with pytest.raises(OperationError, match=rf"^{re.escape(str(file))}: {why}"):
        _assemble(crew, command)
    assert file.read_text() == corrupt
