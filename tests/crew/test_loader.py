"""Loading a crew directory: every problem in one run, each as file:line:col: path: message."""

from __future__ import annotations

import functools
import json
import re
from datetime import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agent_smith.crew import CrewPaths, load_crew, scaffold_crew
from agent_smith.crew.loader import same_address, too_big
from agent_smith.crew.models import UNFORWARDED_REQUEST_HEADERS
from agent_smith.errors import CrewError, Problem, UsageError

FAKE_GITHUB_TOKEN = "ghp_" + "A1b2C3d4E5f6G7h8I9j0K1l2M3n4O5p6Q7r8"


@pytest.fixture
def crew_dir(tmp_path: Path) -> Path:
    directory = tmp_path / "crew"
    scaffold_crew(directory)
    return directory


def problems(directory: Path, env: dict[str, str] | None = None) -> list[str]:
    with pytest.raises(CrewError) as caught:
        load_crew(directory, env=env or {})
    return [str(p) for p in caught.value.problems]


def edit(file: Path, old: str, new: str) -> None:
    text = file.read_text()
    assert old in text, f"{old!r} not in {file}"
    file.write_text(text.replace(old, new, 1))


def line_of(file: Path, needle: str) -> int:
    return next(i for i, line in enumerate(file.read_text().splitlines(), 1) if needle in line)


def test_the_scaffolded_crew_loads_without_warnings(crew_dir: Path) -> None:
    loaded = load_crew(crew_dir, env={})
    assert [a.name for a in loaded.crew.agents] == ["devbot", "reviewbot"]
    assert loaded.warnings == ()
    assert set(loaded.personas) == {"devbot", "reviewbot"}
    assert "Working agreements" in loaded.shared.claude_md
    assert [p.name for p in loaded.personas["devbot"].subagents] == ["test-writer.md"]
    assert loaded.crew.agent("devbot").primary == "example/widgets"


def test_three_mistakes_give_three_located_problems(crew_dir: Path) -> None:
    crew_yaml = crew_dir / "crew.yaml"
    edit(crew_yaml, "    role: developer\n", "    role: developer\n    permision_mode: plan\n")
    edit(
        crew_yaml, "repos: [example/widgets]\n    git: {name: reviewbot", "repos: [widgets]\n    git: {name: reviewbot"
    )
    edit(crew_yaml, "max_age: 30d", "max_age: soon")
    found = problems(crew_dir)
    assert len(found) == 3
    name = str(crew_yaml)
    assert (
        f"{name}:{line_of(crew_yaml, 'permision_mode')}:5: agents[0].permision_mode: unknown key; did you mean 'permission_mode'?"
        in found
    )
    assert any(
        p.startswith(f"{name}:{line_of(crew_yaml, 'repos: [widgets]')}:") and "agents[1].repos[0]" in p for p in found
    )
    assert any(p.startswith(f"{name}:{line_of(crew_yaml, 'max_age')}:") and "events.max_age" in p for p in found)


def test_unknown_top_level_key_lists_a_suggestion(crew_dir: Path) -> None:
    (crew_dir / "crew.yaml").write_text((crew_dir / "crew.yaml").read_text() + "egres:\n  listen: x\n")
    [problem] = problems(crew_dir)
    assert "egres: unknown key; did you mean 'egress'?" in problem


def test_yaml_syntax_error_is_located(crew_dir: Path) -> None:
    (crew_dir / "crew.yaml").write_text("version: 1\ncrew: {name: x\nagents: []\n")
    [problem] = problems(crew_dir)
    assert problem.startswith(f"{crew_dir / 'crew.yaml'}:")
    assert "invalid YAML" in problem


def test_a_control_character_is_located_in_the_file_or_the_variable(crew_dir: Path) -> None:
    crew_yaml = crew_dir / "crew.yaml"
    crew_yaml.write_text(crew_yaml.read_text() + "x: a\x07b\n")
    lines = len(crew_yaml.read_text().splitlines())
    assert problems(crew_dir) == [f"{crew_yaml}:{lines}:5: invalid YAML: the control character U+0007 is not allowed"]
    crew_yaml.write_text(crew_yaml.read_text().replace("x: a\x07b\n", ""))
    assert problems(crew_dir, {"AGENT_SMITH_EVENTS__MAX_AGE": "\x1b"}) == [
        "$AGENT_SMITH_EVENTS__MAX_AGE:1:1: invalid YAML: the control character U+001B is not allowed"
    ]


@pytest.mark.parametrize(
    ("field", "git"),
    [
        ("name", 'git: {name: "Dev\\nBot", email: devbot@example.invalid}'),
        ("name", 'git: {name: "Dev\\tBot", email: devbot@example.invalid}'),
        ("email", 'git: {name: devbot, email: "dev\\x01@example.invalid"}'),
    ],
)
def test_a_git_identity_is_one_line(crew_dir: Path, field: str, git: str) -> None:
    # "Dev\nBot" was written raw into the home's gitconfig, and every git command failed on it.
    edit(crew_dir / "crew.yaml", "git: {name: devbot, email: devbot@example.invalid}", git)
    [problem] = problems(crew_dir)
    assert f"agents[0].git.{field}: " in problem
    assert problem.endswith("has a control character (a line break, a tab…)")


def test_what_is_too_deep_or_too_big_to_walk_is_refused_before_any_check_walks_it(crew_dir: Path) -> None:
    crew_yaml = crew_dir / "crew.yaml"
    scaffolded = crew_yaml.read_text()
    crew_yaml.write_text(scaffolded + "x: " + "[" * 400 + "]" * 400 + "\n")
    assert problems(crew_dir) == [f"{crew_yaml}:1:1: nested more than 64 levels deep"]
    # A few hundred bytes whose aliases expand to ten million values.
    bomb = ["x:", "  a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    bomb += [f"  a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]" for i in range(1, 7)]
    crew_yaml.write_text(scaffolded + "\n".join(bomb) + "\n")
    assert problems(crew_dir) == [
        f"{crew_yaml}:1:1: more than 100000 values (each alias counted as what it expands to)"
    ]
    crew_yaml.write_text(scaffolded)
    settings = crew_dir / "agents" / "_shared" / "settings.json"
    settings.write_text("[" * 600 + "]" * 600)
    assert problems(crew_dir) == [f"{settings}:1:1: nested more than 64 levels deep"]


@pytest.mark.parametrize(
    ("data", "why"),
    [
        ({"a": [1, {"b": "c"}]}, None),
        (functools.reduce(lambda inner, _: [inner], range(63), 1), None),
        (functools.reduce(lambda inner, _: [inner], range(64), 1), "nested more than 64 levels deep"),
        (functools.reduce(lambda inner, _: {"k": inner}, range(64), 1), "nested more than 64 levels deep"),
        ([0] * 99_999, None),
        ([0] * 100_000, "more than 100000 values (each alias counted as what it expands to)"),
        (
            functools.reduce(lambda inner, _: [inner] * 10, range(9), 0),
            "more than 100000 values (each alias counted as what it expands to)",
        ),
    ],
)
def test_too_big(data: object, why: str | None) -> None:
    assert too_big(data) == why


def test_a_relative_state_dir_is_the_crew_directory_s_wherever_a_command_runs(
    crew_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (crew_dir / "crew.yaml").write_text((crew_dir / "crew.yaml").read_text() + "runtime: {state_dir: state}\n")
    monkeypatch.chdir(crew_dir.parent)
    from_above = load_crew("crew", env={}).crew
    assert CrewPaths.of(from_above).root == crew_dir / "state" / from_above.crew.name
    monkeypatch.chdir(crew_dir)
    here = load_crew(".", env={}).crew
    assert CrewPaths.of(here) == CrewPaths.of(from_above)
    # As written, for what is made of the settings (Helm values): no path of this machine in them.
    assert here.runtime.state_dir == "state"
    assert here.model_dump()["runtime"]["state_dir"] == "state"
    edit(crew_dir / "crew.yaml", "state_dir: state", "state_dir: ''")
    assert any("runtime.state_dir: String should have at least 1 character" in p for p in problems(crew_dir))


def test_duplicate_keys_are_refused(crew_dir: Path) -> None:
    crew_yaml = crew_dir / "crew.yaml"
    edit(crew_yaml, "events:\n", "events:\n  max_bytes: 1GiB\n")
    [problem] = problems(crew_dir)
    assert "invalid YAML" in problem


def test_missing_crew_yaml_says_how_to_make_one(tmp_path: Path) -> None:
    [problem] = problems(tmp_path)
    assert "agent-smith init" in problem


def test_duplicate_agent_names_point_at_the_second(crew_dir: Path) -> None:
    crew_yaml = crew_dir / "crew.yaml"
    edit(crew_yaml, "  - name: reviewbot", "  - name: devbot")
    found = problems(crew_dir)
    assert any("agents[1].name: agent name 'devbot' is already used at agents[0].name" in p for p in found)


def test_a_persona_directory_is_required_and_unnamed_ones_warn(crew_dir: Path) -> None:
    (crew_dir / "agents" / "devbot").rename(crew_dir / "agents" / "olddev")
    found = problems(crew_dir)
    assert any("agents[0].name: no persona directory" in p for p in found)
    (crew_dir / "agents" / "olddev").rename(crew_dir / "agents" / "devbot")
    (crew_dir / "agents" / "spare").mkdir()
    loaded = load_crew(crew_dir, env={})
    assert any("spare/: persona directory not named in crew.yaml" in w for w in loaded.warnings)


def test_enabled_plugins_must_be_booleans(crew_dir: Path) -> None:
    settings = crew_dir / "agents" / "_shared" / "settings.json"
    data = json.loads(settings.read_text())
    data["enabledPlugins"] = {"good@market": True, "bad@market": {"enabled": True}}
    settings.write_text(json.dumps(data, indent=2))
    [problem] = problems(crew_dir)
    line = line_of(settings, '"bad@market"')
    assert problem.startswith(f"{settings}:{line}:")
    assert "enabledPlugins.bad@market: must be true or false, not an object" in problem


def test_hook_shapes_are_checked(crew_dir: Path) -> None:
    settings = crew_dir / "agents" / "_shared" / "settings.json"
    data = json.loads(settings.read_text())
    data["hooks"] = {
        "Stop": [{"hooks": [{"type": "command"}]}],
        "PostToolUse": [{"matcher": "Bash", "hooks": [{"type": "shell", "command": "x"}]}],
        "NoSuchEvent": [],
    }
    settings.write_text(json.dumps(data, indent=2))
    with pytest.raises(CrewError) as caught:
        load_crew(crew_dir, env={})
    found = [str(p) for p in caught.value.problems]
    assert any('hooks.Stop[0].hooks[0]: a command hook needs "command"' in p for p in found)
    assert any("hooks.PostToolUse[0].hooks[0].type: type must be one of" in p for p in found)
    assert len(found) == 2


def test_a_real_looking_credential_in_markdown_or_any_crew_yaml_value_is_refused(crew_dir: Path) -> None:
    # They are copied into the agents' homes (a role goes into CLAUDE.md), where only placeholders belong.
    persona = crew_dir / "agents" / "devbot" / "CLAUDE.md"
    persona.write_text(persona.read_text() + f"\nUse `{FAKE_GITHUB_TOKEN}` for the API.\n")
    line = len(persona.read_text().splitlines())
    subagent = crew_dir / "agents" / "devbot" / "subagents" / "helper.md"
    subagent.parent.mkdir(exist_ok=True)
    subagent.write_text(f"---\nname: helper\ndescription: helps\n---\n{FAKE_GITHUB_TOKEN}\n")
    shared = crew_dir / "agents" / "_shared" / "CLAUDE.md"
    shared.write_text(f"{FAKE_GITHUB_TOKEN}\n" + shared.read_text())
    crew_yaml = crew_dir / "crew.yaml"
    edit(crew_yaml, "    role: reviewer\n", f'    role: "reviewer {FAKE_GITHUB_TOKEN}"\n')
    found = problems(crew_dir)
    kind = "looks like a GitHub token (gh?_…)"
    role = line_of(crew_yaml, 'role: "reviewer')
    assert found == sorted(
        [
            f"{crew_yaml}:{role}:11: agents[1].role: {kind}; agents see "
            "crew.yaml's values, so it holds placeholders only (value not shown)",
            *(
                f"{file}:{at}: {kind}; it is copied into the agents' homes, which hold placeholders only "
                "(value not shown)"
                for file, at in ((persona, f"{line}:6"), (subagent, "5:1"), (shared, "1:1"))
            ),
        ]
    )
    assert FAKE_GITHUB_TOKEN not in "\n".join(found)


def test_a_real_looking_credential_is_refused_without_printing_it(crew_dir: Path) -> None:
    stub = crew_dir / "agents" / "_shared" / ".credentials.json"
    data = json.loads(stub.read_text())
    data["claudeAiOauth"]["accessToken"] = "sk-ant-oat01-" + "x" * 40
    stub.write_text(json.dumps(data, indent=2))
    mcp = crew_dir / "agents" / "devbot" / "mcp.json"
    mcp.write_text(json.dumps({"mcpServers": {"gh": {"command": "gh-mcp", "env": {"TOKEN": FAKE_GITHUB_TOKEN}}}}))
    found = problems(crew_dir)
    assert len(found) == 2
    joined = "\n".join(found)
    assert "sk-ant-oat01-" not in joined
    assert FAKE_GITHUB_TOKEN not in joined
    assert "claudeAiOauth.accessToken: holds what looks like an Anthropic key" in joined
    assert "mcpServers.gh.env.TOKEN: holds what looks like a GitHub token" in joined


def test_a_credential_pasted_where_a_name_belongs_is_refused_and_never_quoted(crew_dir: Path) -> None:
    # "Put the real secrets where the firewall reads them": not in crew.yaml, where they would be quoted.
    edit(crew_dir / "crew.yaml", "source: {env: AGENT_SMITH_SECRET_GITHUB}", f"source: {{env: {FAKE_GITHUB_TOKEN}}}")
    found = problems(crew_dir, {"AGENT_NAME": "devbot", "AGENT_REPOS": FAKE_GITHUB_TOKEN})
    joined = "\n".join(found)
    assert "egress.secrets[0].source.env: looks like a GitHub token" in joined
    assert "$AGENT_REPOS:1:1: agents[0].repos[0]:" in joined
    assert FAKE_GITHUB_TOKEN not in joined


def test_a_real_github_token_in_the_shell_s_github_token_is_no_placeholder_whatever_its_age(crew_dir: Path) -> None:
    """GITHUB_TOKEN overrides forge.token_placeholder, and many a shell exports a real one: a classic
    token (40 hex digits, no prefix) would otherwise be every agent's "placeholder"."""
    classic = "0123456789abcdef" * 2 + "01234567"
    for token in (classic, FAKE_GITHUB_TOKEN):
        joined = "\n".join(problems(crew_dir, {"GITHUB_TOKEN": token}))
        assert "$GITHUB_TOKEN:1:1: forge.token_placeholder: looks like" in joined, joined
        assert token not in joined
    # 40 hex digits elsewhere are a commit, say: no credential.
    edit(crew_dir / "crew.yaml", "    role: reviewer\n", f"    role: reviewer\n    env: {{BASE_COMMIT: '{classic}'}}\n")
    assert load_crew(crew_dir, env={}).crew.agent("reviewbot").env["BASE_COMMIT"] == classic


def test_no_agent_smith_error_repeats_a_credential_it_was_given() -> None:
    # Messages quote what they were given; the error itself is the last line of defence.
    error = UsageError(f"egress secret github: environment variable {FAKE_GITHUB_TOKEN} is not set")
    assert str(error) == "egress secret github: environment variable <a GitHub token (gh?_…), not shown> is not set"
    problem = Problem("crew.yaml", 3, 1, "x", f"{FAKE_GITHUB_TOKEN!r} is not a repository")
    assert FAKE_GITHUB_TOKEN not in str(problem)
    assert FAKE_GITHUB_TOKEN not in str(CrewError([problem]))


def test_a_link_out_of_the_crew_directory_is_followed_with_a_warning(crew_dir: Path, tmp_path: Path) -> None:
    outside = tmp_path / "elsewhere.md"
    outside.write_text("# rules kept elsewhere\n")
    persona = crew_dir / "agents" / "devbot" / "CLAUDE.md"
    persona.unlink()
    persona.symlink_to(outside)
    shared = crew_dir / "agents" / "_shared" / "CLAUDE.md"
    (crew_dir / "agents" / "shared-rules.md").write_text(shared.read_text())
    shared.unlink()
    shared.symlink_to(crew_dir / "agents" / "shared-rules.md")
    loaded = load_crew(crew_dir, env={})
    assert loaded.personas["devbot"].claude_md == "# rules kept elsewhere\n"
    assert [w for w in loaded.warnings if "outside the crew directory" in w] == [
        f"{persona}:1:1: links to {outside}, outside the crew directory: the agent reads it"
    ]


def test_mcp_json_shapes(crew_dir: Path) -> None:
    mcp = crew_dir / "agents" / "devbot" / "mcp.json"
    mcp.write_text(
        json.dumps({"mcpServers": {"a": {"type": "stdio"}, "b": {"type": "http"}, "c": {"type": "pigeon"}}, "x": 1})
    )
    found = "\n".join(problems(crew_dir))
    assert 'mcpServers.a: a stdio server needs "command"' in found
    assert 'mcpServers.b: a http server needs "url"' in found
    assert "mcpServers.c.type: type must be one of" in found
    assert 'x: unknown key; an MCP config holds only "mcpServers"' in found


def test_invalid_json_is_located(crew_dir: Path) -> None:
    settings = crew_dir / "agents" / "_shared" / "settings.json"
    settings.write_text('{\n  "env": {\n    "A": "b",\n  }\n}\n')
    [problem] = problems(crew_dir)
    assert problem.startswith(f"{settings}:4:3: invalid JSON")


def test_subagent_front_matter(crew_dir: Path) -> None:
    sub = crew_dir / "agents" / "devbot" / "subagents" / "broken.md"
    sub.write_text("---\nname: broken\n---\nno description\n")
    [problem] = problems(crew_dir)
    assert f"{sub}:1:1: description: required" in problem
    sub.write_text("just text\n")
    assert any("no front matter" in w for w in load_crew(crew_dir, env={}).warnings)


def test_container_contract_overrides_the_file(crew_dir: Path) -> None:
    env = {
        "AGENT_NAME": "devbot",
        "AGENT_REPOS": "acme/api, acme/web",
        "PRIMARY_REPO": "acme/web",
        "MATRIX_HOMESERVER_URL": "https://matrix.acme.test",
        "MATRIX_BOT_USER_ID": "@dev:acme.test",
        "MATRIX_ALLOWED_USERS": "@alice:acme.test @bob:acme.test",
        "GITHUB_TOKEN": "placeholder-from-env",
        "NATS_URL": "nats://nats:4222",
        "AGENT_SMITH_CA_CERT": "/etc/agent-smith/ca.pem",
        "AGENT_SMITH_EVENTS__MAX_AGE": "7d",
        "AGENT_SMITH_LOG_FORMAT": "json",
    }
    loaded = load_crew(crew_dir, env=env)
    dev = loaded.crew.agent("devbot")
    assert dev.repos == ["acme/api", "acme/web"]
    assert dev.primary == "acme/web"
    assert dev.matrix is not None
    assert dev.matrix.user_id == "@dev:acme.test"
    assert dev.matrix.allowed_senders == ["@alice:acme.test", "@bob:acme.test"]
    assert loaded.crew.matrix is not None
    assert loaded.crew.matrix.homeserver == "https://matrix.acme.test"
    assert loaded.crew.forge.token_placeholder == "placeholder-from-env"
    assert loaded.crew.events.nats_url == "nats://nats:4222"
    assert loaded.crew.events.max_age == 7 * 86400
    assert loaded.crew.egress.ca_cert == "/etc/agent-smith/ca.pem"
    assert loaded.crew.agent("reviewbot").repos == ["example/widgets"]
    assert "AGENT_SMITH_EVENTS__MAX_AGE" in loaded.overrides


def test_agent_name_from_env_can_add_an_agent_with_a_persona(crew_dir: Path) -> None:
    persona = crew_dir / "agents" / "opsbot"
    persona.mkdir()
    (persona / "CLAUDE.md").write_text("# opsbot\n")
    loaded = load_crew(crew_dir, env={"AGENT_NAME": "opsbot", "AGENT_REPOS": "acme/infra"})
    assert loaded.crew.agent("opsbot").repos == ["acme/infra"]


def test_an_agent_name_from_env_with_neither_an_entry_nor_a_persona_is_the_variable_s_problem(
    crew_dir: Path,
) -> None:
    assert problems(crew_dir, {"AGENT_NAME": "ghost"}) == [
        f"$AGENT_NAME:1:1: 'ghost' is no agent of crew.yaml (devbot, reviewbot), and there is no persona "
        f"directory {crew_dir / 'agents' / 'ghost'}/ to make it from"
    ]


def test_bad_env_values_are_reported_against_the_variable(crew_dir: Path) -> None:
    found = problems(crew_dir, {"AGENT_NAME": "devbot", "PRIMARY_REPO": "nope", "GITHUB_TOKEN": FAKE_GITHUB_TOKEN})
    joined = "\n".join(found)
    assert "$PRIMARY_REPO:1:1: agents[0].primary_repo:" in joined
    assert "$GITHUB_TOKEN:1:1: forge.token_placeholder: looks like a GitHub token" in joined
    assert FAKE_GITHUB_TOKEN not in joined
    # A well-formed repository the agent does not have: the variable's problem too, not crew.yaml's.
    [problem] = problems(crew_dir, {"AGENT_NAME": "devbot", "PRIMARY_REPO": "other/repo"})
    assert problem == "$PRIMARY_REPO:1:1: agents[0].primary_repo: 'other/repo' is not one of repos"
    # An agent with no repositories has no primary one: claude started in an empty directory so named.
    edit(crew_dir / "crew.yaml", "    repos: [example/widgets]\n", "")
    [problem] = problems(crew_dir, {"AGENT_NAME": "devbot", "PRIMARY_REPO": "acme/x"})
    assert problem == "$PRIMARY_REPO:1:1: agents[0].primary_repo: 'acme/x' is not one of repos (the agent has none)"


@pytest.mark.parametrize("name", ["a/b", "../../x", "..", "x" * 65, "tab\tbed"])
def test_a_tmux_socket_that_is_no_plain_name_is_refused(crew_dir: Path, name: str) -> None:
    # It passed validate, then `run`, `status` and `down` ended in a traceback from tmux's wrapper.
    [problem] = problems(crew_dir, {"AGENT_SMITH_RUNTIME__TMUX_SOCKET": repr(name)})
    assert problem.startswith("$AGENT_SMITH_RUNTIME__TMUX_SOCKET:1:1: runtime.tmux_socket: "), problem
    assert problem.endswith("is not a tmux socket name (1-64 letters, digits, '.', '_' or '-')"), problem


def test_a_crew_file_path_is_accepted_as_well_as_its_directory(crew_dir: Path) -> None:
    assert load_crew(crew_dir / "crew.yaml", env={}).root == crew_dir
    assert load_crew(None, env={"AGENT_SMITH_CREW": str(crew_dir)}).root == crew_dir


def test_a_file_other_than_crew_yaml_is_no_crew_directory(crew_dir: Path) -> None:
    other = crew_dir / "notes.txt"
    other.write_text("not a crew")
    with pytest.raises(UsageError, match=rf"^{re.escape(str(other))}: a file, not a crew directory"):
        load_crew(other)


def test_secret_rules_may_share_a_placeholder_only_for_different_agents(crew_dir: Path) -> None:
    crew_yaml = crew_dir / "crew.yaml"
    per_agent = """      where: {header: Authorization}
      agents: [devbot]
    - name: github-review
      placeholder: agent-smith-placeholder-github-token
      source: {env: AGENT_SMITH_SECRET_GITHUB_REVIEW}
      hosts: [api.github.com, github.com]
      agents: [reviewbot]
"""
    text = crew_yaml.read_text()
    edit(crew_yaml, "      where: {header: Authorization}\n", per_agent)
    loaded = load_crew(crew_dir, env={})
    assert [r.agents for r in loaded.crew.egress.secrets] == [["devbot"], ["reviewbot"]]

    crew_yaml.write_text(text)
    edit(
        crew_yaml,
        "      where: {header: Authorization}\n",
        per_agent.replace("agents: [reviewbot]", "agents: [devbot, ghost]"),
    )
    found = problems(crew_dir)
    assert any(
        "egress.secrets[1].placeholder: placeholder is already used at egress.secrets[0].placeholder" in p
        for p in found
    )
    assert any("egress.secrets[1].agents[1]: no agent 'ghost' in this crew" in p for p in found)


@pytest.mark.parametrize(
    ("old", "new", "where"),
    [
        ("  name: example-crew\n", '  name: "example-crew\\n"\n', "crew.name"),
        ("    repos: [example/widgets]\n", '    repos: ["example/widgets\\n"]\n', "agents[0].repos[0]"),
        ('      user_id: "@devbot:localhost"\n', '      user_id: "@devbot:localhost\\n"\n', "agents[0].matrix.user_id"),
        ("    - host: api.github.com\n", '    - host: "api.github.com\\n"\n', "egress.allow[0].host"),
    ],
)
def test_a_name_with_a_trailing_newline_is_refused(crew_dir: Path, old: str, new: str, where: str) -> None:
    # `$` matches before a final newline: "example-crew\n" passed, and named a state directory so.
    edit(crew_dir / "crew.yaml", old, new)
    assert any(f"{where}: " in p and "\\n" in p for p in problems(crew_dir)), problems(crew_dir)


@pytest.mark.parametrize("field", ["stub_access_token", "stub_refresh_token"])
def test_a_claude_login_stub_that_looks_real_is_refused(crew_dir: Path, field: str) -> None:
    # The agents hold it, and the firewall hands it out in its refresh answers: a placeholder only.
    real_looking = "sk-ant-ort01-" + "Zz9_-" * 16
    edit(crew_dir / "crew.yaml", "  claude_login:\n", f"  claude_login:\n    {field}: {real_looking}\n")
    [problem] = problems(crew_dir)
    assert f"egress.claude_login.{field}: looks like" in problem
    assert "(value not shown)" in problem
    assert real_looking not in problem


@pytest.mark.parametrize("header", ["Proxy-Authorization", "host", "Connection", "TE", "Upgrade", "Expect"])
def test_a_secret_placed_in_a_header_the_firewall_drops_is_refused(crew_dir: Path, header: str) -> None:
    # It validated, and the firewall silently sent the request without the header, secret and all.
    edit(crew_dir / "crew.yaml", "      where: {header: Authorization}\n", f"      where: {{header: {header}}}\n")
    [problem] = problems(crew_dir)
    assert problem.endswith(
        f"egress.secrets[0].where.header: {header} never reaches the upstream (the firewall drops it, "
        "as a proxy does): a secret placed there would never be sent"
    ), problem


def test_the_headers_a_secret_cannot_be_placed_in_are_those_the_firewall_drops() -> None:
    from agent_smith.egress.proxy import _HOP_REQUEST

    assert UNFORWARDED_REQUEST_HEADERS == _HOP_REQUEST


def _own_listeners(crew_yaml: Path, devbot: str, reviewbot: str, *, transparent: bool = True) -> None:
    edit(crew_yaml, "    role: developer\n", f"    role: developer\n    kubernetes: {devbot}\n")
    edit(crew_yaml, "    role: reviewer\n", f"    role: reviewer\n    kubernetes: {reviewbot}\n")
    if transparent:
        edit(crew_yaml, "  listen: 127.0.0.1:3128\n", "  listen: 127.0.0.1:3128\n  transparent_listen: 0.0.0.0:8443\n")


def test_agents_may_have_transparent_listeners_of_their_own(crew_dir: Path) -> None:
    _own_listeners(
        crew_dir / "crew.yaml",
        "{firewall_cluster_ip: 10.96.0.60, firewall_port: 9443}",
        "{firewall_cluster_ip: 10.96.0.61, firewall_port: 9444}",
    )
    crew = load_crew(crew_dir, env={}).crew
    blocks = [a.kubernetes for a in crew.agents]
    assert [(b.firewall_cluster_ip, b.firewall_port) for b in blocks if b] == [
        ("10.96.0.60", 9443),
        ("10.96.0.61", 9444),
    ]


def test_an_agent_s_listener_port_and_address_are_its_own(crew_dir: Path) -> None:
    crew_yaml = crew_dir / "crew.yaml"
    edit(crew_yaml, "egress:\n", "kubernetes:\n  firewall_cluster_ip: 10.96.0.53\negress:\n")
    _own_listeners(
        crew_yaml,
        "{firewall_cluster_ip: 10.96.0.53, firewall_port: 9443}",
        "{firewall_cluster_ip: 10.96.0.61, firewall_port: 9443}",
    )
    found = problems(crew_dir)
    name = str(crew_yaml)
    devbot, reviewbot = line_of(crew_yaml, "10.96.0.53, firewall_port"), line_of(crew_yaml, "10.96.0.61")
    lines = crew_yaml.read_text().splitlines()
    ip_col = lines[devbot - 1].index("10.96.0.53") + 1
    port_col = lines[reviewbot - 1].index("9443") + 1
    assert len(found) == 2, found
    assert (
        f"{name}:{devbot}:{ip_col}: agents[0].kubernetes.firewall_cluster_ip: cluster IP 10.96.0.53 is already used at "
        "kubernetes.firewall_cluster_ip" in found
    )
    assert (
        f"{name}:{reviewbot}:{port_col}: agents[1].kubernetes.firewall_port: port 9443 is already used at "
        "agents[0].kubernetes.firewall_port" in found
    )


@pytest.mark.parametrize(
    ("port", "taken_by"),
    [(3128, "egress.listen"), (8443, "egress.transparent_listen"), (9464, "egress.metrics_listen")],
)
def test_an_agent_s_listener_port_is_none_of_the_firewall_s_others(crew_dir: Path, port: int, taken_by: str) -> None:
    crew_yaml = crew_dir / "crew.yaml"
    edit(crew_yaml, "  listen: 127.0.0.1:3128\n", "  listen: 127.0.0.1:3128\n  metrics_listen: 127.0.0.1:9464\n")
    _own_listeners(
        crew_yaml,
        f"{{firewall_cluster_ip: 10.96.0.60, firewall_port: {port}}}",
        "{firewall_cluster_ip: 10.96.0.61, firewall_port: 9444}",
    )
    [problem] = problems(crew_dir)
    assert f"agents[0].kubernetes.firewall_port: port {port} is already used at {taken_by}" in problem


def test_an_agent_s_listener_needs_transparent_mode_and_both_keys(crew_dir: Path) -> None:
    crew_yaml = crew_dir / "crew.yaml"
    _own_listeners(
        crew_yaml,
        "{firewall_cluster_ip: 10.96.0.60, firewall_port: 9443}",
        "{firewall_cluster_ip: 10.96.0.61, firewall_port: 9444}",
        transparent=False,
    )
    found = problems(crew_dir)
    line = line_of(crew_yaml, "10.96.0.60")
    assert (
        f"{crew_yaml}:{line}:17: agents[0].kubernetes: needs egress.transparent_listen "
        "(its host is where this agent's listener listens)" in found
    )
    assert any("agents[1].kubernetes: needs egress.transparent_listen" in p for p in found)


@pytest.mark.parametrize(
    ("block", "path", "message"),
    [
        ("{firewall_port: 9443}", "agents[0].kubernetes.firewall_cluster_ip", "required"),
        ("{firewall_cluster_ip: 10.96.0.60}", "agents[0].kubernetes.firewall_port", "required"),
        (
            "{firewall_cluster_ip: 10.96.0.256, firewall_port: 9443}",
            "agents[0].kubernetes.firewall_cluster_ip",
            "pattern",
        ),
        (
            "{firewall_cluster_ip: 10.96.0.060, firewall_port: 9443}",
            "agents[0].kubernetes.firewall_cluster_ip",
            "pattern",
        ),
        (
            "{firewall_cluster_ip: 10.96.0.60, firewall_port: 443}",
            "agents[0].kubernetes.firewall_port",
            "greater than or equal to 1024",
        ),
        (
            "{firewall_cluster_ip: 10.96.0.60, firewall_port: 70000}",
            "agents[0].kubernetes.firewall_port",
            "less than or equal to 65535",
        ),
        ("{firewall_cluster_ip: 10.96.0.60, port: 9443}", "agents[0].kubernetes.port", "unknown key"),
    ],
)
def test_an_agent_s_listener_block_is_checked(crew_dir: Path, block: str, path: str, message: str) -> None:
    crew_yaml = crew_dir / "crew.yaml"
    edit(crew_yaml, "    role: developer\n", f"    role: developer\n    kubernetes: {block}\n")
    edit(crew_yaml, "  listen: 127.0.0.1:3128\n", "  listen: 127.0.0.1:3128\n  transparent_listen: 0.0.0.0:8443\n")
    found = problems(crew_dir)
    assert any(f"{path}: " in p and message in p for p in found), found


@pytest.mark.parametrize(
    "where", ["agents/devbot/CLAUDE.md", "agents/_shared/CLAUDE.md", "agents/devbot/subagents/x.md"]
)
def test_a_file_that_is_no_utf8_is_a_located_problem(crew_dir: Path, where: str) -> None:
    file = crew_dir / where
    file.parent.mkdir(parents=True, exist_ok=True)
    # Located at the bad byte, its column counted in characters ("é" is one, two bytes).
    file.write_bytes("---\nh\u00e9llo ".encode() + b"\xc3\x28\n")
    assert problems(crew_dir) == [f"{file}:2:7: not UTF-8 here (invalid continuation byte)"]


def test_a_crew_yaml_that_is_no_utf8_is_located_at_the_bad_byte(crew_dir: Path) -> None:
    crew_yaml = crew_dir / "crew.yaml"
    crew_yaml.write_bytes(b"crew:\n  name: \xff\n")
    assert problems(crew_dir) == [f"{crew_yaml}:2:9: not UTF-8 here (invalid start byte)"]


def test_a_dangling_link_is_a_problem_not_a_file_left_out(crew_dir: Path) -> None:
    mcp = crew_dir / "agents" / "devbot" / "mcp.json"
    mcp.unlink(missing_ok=True)
    mcp.symlink_to(crew_dir / "nowhere.json")
    [problem] = problems(crew_dir)
    assert problem.startswith(f"{mcp}:1:1: cannot read: [Errno 2] No such file or directory")


def test_a_number_too_long_to_read_is_a_located_problem(crew_dir: Path) -> None:
    edit(crew_dir / "crew.yaml", "max_age: 30d", "max_age: 1" + "0" * 5000)
    assert problems(crew_dir) == [
        f"{crew_dir / 'crew.yaml'}:1:1: invalid YAML: Exceeds the limit (4300 digits) for integer string conversion"
    ]
    settings = crew_dir / "agents" / "_shared" / "settings.json"
    edit(crew_dir / "crew.yaml", "max_age: 1" + "0" * 5000, "max_age: 30d")
    settings.write_text('{"x": 1' + "0" * 5000 + "}")
    assert problems(crew_dir) == [
        f"{settings}:1:1: invalid JSON: Exceeds the limit (4300 digits) for integer string conversion"
    ]


@pytest.mark.parametrize(
    ("var", "value", "expected"),
    [
        ("AGENT_SMITH_EVENTS__MAX_AGE", "[1", "$AGENT_SMITH_EVENTS__MAX_AGE:1:3: invalid YAML: expected ',' or ']'"),
        ("AGENT_SMITH_NOPE__X", "1", "$AGENT_SMITH_NOPE__X:1:1: nope: unknown key"),
        ("AGENT_SMITH_EVENTS__MAX_AGE__X", "1", "$AGENT_SMITH_EVENTS__MAX_AGE__X:1:1: events.max_age: expected a"),
        ("AGENT_SMITH_AGENTS__0__ROLE", "x", "$AGENT_SMITH_AGENTS__0__ROLE:1:1: agents are not set this way"),
        (
            "AGENT_SMITH_EGRESS__SECRETS__NAME",
            "x",
            "$AGENT_SMITH_EGRESS__SECRETS__NAME:1:1: egress.secrets is a list: a variable cannot set name in it",
        ),
        (
            "AGENT_SMITH_EGRESS__ALLOW__0__HOST",
            "x.com",
            "$AGENT_SMITH_EGRESS__ALLOW__0__HOST:1:1: egress.allow is a list: a variable cannot set 0.host in it",
        ),
    ],
)
def test_a_problem_an_override_made_is_the_variable_s(crew_dir: Path, var: str, value: str, expected: str) -> None:
    [problem] = problems(crew_dir, {var: value})
    assert problem.startswith(expected)


def test_a_contract_variable_over_a_list_in_crew_yaml_is_one_line(crew_dir: Path) -> None:
    edit(
        crew_dir / "crew.yaml",
        '    matrix:\n      user_id: "@devbot:localhost"\n      display_name: devbot\n      rooms: ["#crew:localhost"]\n',
        '    matrix: ["@devbot:localhost"]\n',
    )
    env = {"AGENT_NAME": "devbot", "MATRIX_BOT_USER_ID": "@devbot:localhost"}
    assert problems(crew_dir, env) == [
        "$MATRIX_BOT_USER_ID:1:1: agents[0].matrix is a list: a variable cannot set user_id in it"
    ]


_KEYS = ["egress", "allow", "secrets", "listen", "host", "0", "1", "events", "matrix", "runtime", "forge", "x"]


@settings(max_examples=300, suppress_health_check=[HealthCheck.function_scoped_fixture], deadline=None)
@given(
    paths=st.lists(st.lists(st.sampled_from(_KEYS), min_size=1, max_size=4), min_size=1, max_size=3),
    value=st.sampled_from(["x", "1", "[a, b]", "{a: 1}", "null", ""]),
)
def test_no_override_breaks_loading_with_anything_but_a_located_problem(
    crew_dir: Path, paths: list[list[str]], value: str
) -> None:
    env = {"AGENT_SMITH_" + "__".join(p.upper() for p in path): value for path in paths}
    found: list[Problem] = []
    try:
        load_crew(crew_dir, env=env)
    except CrewError as exc:
        found = exc.problems
    assert all(p.file.startswith("$") or p.file.endswith("crew.yaml") for p in found), found


@pytest.mark.parametrize(
    ("var", "value", "key"),
    [
        ("AGENT_SMITH_MATRIX__MAX_AGENT_MESSAGES_IN_A_ROW", "true", "matrix.max_agent_messages_in_a_row"),
        ("AGENT_SMITH_MATRIX__MAX_AGENT_MESSAGES_IN_A_ROW", "'3'", "matrix.max_agent_messages_in_a_row"),
        ("AGENT_SMITH_MATRIX__MAX_AGENT_MESSAGES_IN_A_ROW", "3.0", "matrix.max_agent_messages_in_a_row"),
    ],
)
def test_a_count_is_an_integer_not_what_pydantic_would_make_of_it(
    crew_dir: Path, var: str, value: str, key: str
) -> None:
    [problem] = problems(crew_dir, {var: value})
    assert problem.startswith(f"${var}:1:1: {key}: Input should be a valid integer"), problem


@pytest.mark.parametrize(
    ("var", "value", "message"),
    [
        (
            "AGENT_SMITH_KUBERNETES__TRANSPARENT_EGRESS",
            "yes",
            "kubernetes.transparent_egress: expected true or false",
        ),
        (
            "AGENT_SMITH_KUBERNETES__EXTERNAL_SECRETS",
            "'no'",
            "kubernetes.external_secrets: expected true or false",
        ),
        ("AGENT_SMITH_KUBERNETES__AGENT_ROLE", "1", "kubernetes.agent_role: expected true or false"),
        ("AGENT_SMITH_EGRESS__LISTEN", "127.0.0.1:99999", "egress.listen: '127.0.0.1:99999': a port is at most 65535"),
        ("AGENT_SMITH_RUNTIME__METRICS_LISTEN", "'[::1]:70000'", "runtime.metrics_listen: '[::1]:70000': a port is at"),
        ("AGENT_SMITH_EVENTS__NATS_URL", "not a url", "events.nats_url: 'not a url' is no NATS server URL"),
        ("AGENT_SMITH_EVENTS__NATS_URL", "nats://", "events.nats_url: 'nats://' is no NATS server URL"),
        ("AGENT_SMITH_EVENTS__NATS_URL", "http://n:4222", "events.nats_url: 'http://n:4222' is no NATS server URL"),
        ("AGENT_SMITH_EVENTS__NATS_URL", "nats://n:99999", "events.nats_url: 'nats://n:99999' is no NATS server URL"),
        # The client takes a scheme in lower case only; a password is never repeated.
        ("AGENT_SMITH_EVENTS__NATS_URL", "NATS://n:4222", "events.nats_url: 'NATS://n:4222' is no NATS server URL"),
        (
            "AGENT_SMITH_EVENTS__NATS_URL",
            "'nats://n:4222,nats://alice:hunter2@m:99999'",
            "events.nats_url: 'nats://n:4222,nats://alice:***@m:99999' is no NATS server URL",
        ),
        ("AGENT_SMITH_KUBERNETES__FIREWALL_CLUSTER_IP", "notanip", "kubernetes.firewall_cluster_ip: does not match"),
        ("AGENT_SMITH_KUBERNETES__IMAGE", "''", "kubernetes.image: String should have at least 1 character"),
        ("AGENT_SMITH_KUBERNETES__MATRIX_PEER", "{cidr: notacidr}", "kubernetes.matrix_peer.cidr: 'notacidr' is no IP"),
        (
            "AGENT_SMITH_KUBERNETES__NATS_PEER",
            "{cidr: 203.0.113.10}",
            "kubernetes.nats_peer.cidr: '203.0.113.10' needs its prefix length (e.g. 203.0.113.10/32)",
        ),
    ],
)
def test_what_up_events_or_the_render_would_refuse_later_is_refused_by_validate(
    crew_dir: Path, var: str, value: str, message: str
) -> None:
    [problem] = problems(crew_dir, {var: value})
    assert problem.startswith(f"${var}:1:1: {message}"), problem


@pytest.mark.parametrize(
    ("var", "address"),
    [
        ("AGENT_SMITH_EGRESS__TRANSPARENT_LISTEN", "':8443'"),
        ("AGENT_SMITH_EGRESS__METRICS_LISTEN", "'[::ffff:127.0.0.1]:9464'"),
        ("AGENT_SMITH_EGRESS__TRANSPARENT_LISTEN", "'[fe80::1%eth0]:8443'"),
        ("AGENT_SMITH_EGRESS__LISTEN", "'[::]:3128'"),
        ("AGENT_SMITH_RUNTIME__METRICS_LISTEN", "0.0.0.0:0"),
    ],
)
def test_an_address_the_firewall_or_the_supervisor_reads_is_taken(crew_dir: Path, var: str, address: str) -> None:
    load_crew(crew_dir, env={var: address})


@pytest.mark.parametrize(
    "url", ["127.0.0.1:4222", "localhost:4222", "nats://a:4222,nats://b:4222", "a:4222, tls://b:4443", "nats://u:p@h"]
)
def test_a_nats_url_the_client_takes_is_taken(crew_dir: Path, url: str) -> None:
    assert load_crew(crew_dir, env={"NATS_URL": url}).crew.events.nats_url == url


def test_two_of_the_firewall_s_listeners_on_one_address_are_refused(crew_dir: Path) -> None:
    env = {
        "AGENT_SMITH_EGRESS__LISTEN": "127.0.0.1:47128",
        "AGENT_SMITH_EGRESS__METRICS_LISTEN": "0.0.0.0:47128",
        # The supervisor's, in a pod of its own in a cluster: `up` checks it, on one host.
        "AGENT_SMITH_RUNTIME__METRICS_LISTEN": "0.0.0.0:47128",
    }
    assert problems(crew_dir, env) == [
        "$AGENT_SMITH_EGRESS__METRICS_LISTEN:1:1: egress.metrics_listen: 0.0.0.0:47128 is already used at egress.listen",
    ]
    load_crew(crew_dir, env={**env, "AGENT_SMITH_EGRESS__METRICS_LISTEN": "127.0.0.1:0"})


@pytest.mark.parametrize(
    ("one", "other", "same"),
    [
        ("127.0.0.1:3128", "127.0.0.1:3128", True),
        ("0.0.0.0:3128", "127.0.0.2:3128", True),
        ("[::]:3128", "127.0.0.1:3128", True),
        ("[::]:3128", "[::1]:3128", True),
        (":3128", "localhost:3128", True),
        ("0.0.0.0:3128", "[::1]:3128", False),
        ("127.0.0.1:3128", "127.0.0.2:3128", False),
        ("127.0.0.1:3128", "127.0.0.1:3129", False),
        ("127.0.0.1:0", "127.0.0.1:0", False),
    ],
)
def test_same_address(one: str, other: str, same: bool) -> None:
    assert same_address(one, other) is same
    assert same_address(other, one) is same


def test_a_restart_policy_s_count_and_a_rule_s_ports_are_integers(crew_dir: Path) -> None:
    crew_yaml = crew_dir / "crew.yaml"
    edit(crew_yaml, "    role: developer\n", "    role: developer\n    restart: {crash_loop_after: true}\n")
    edit(crew_yaml, "    - host: api.github.com\n", "    - {host: api.github.com, ports: [true]}\n")
    found = problems(crew_dir)
    assert len(found) == 2, found
    assert any("agents[0].restart.crash_loop_after: Input should be a valid integer" in p for p in found)
    assert any("egress.allow[0].ports[0]: Input should be a valid integer" in p for p in found)


@pytest.mark.parametrize(
    ("quiet", "message"),
    [
        ("{start: 22, end: '07:00'}", "start: expected a time of day like 22:00"),
        ("{start: '22:00Z', end: '07:00'}", "start: expected a time of day like 22:00"),
        ("{start: '22:00', end: '07:00+02:00'}", "end: expected a time of day like 22:00"),
        ("{start: '24:00', end: '07:00'}", "start: expected a time of day like 22:00"),
        ("{start: '22:00', end: '22:00'}", "start and end are both 22:00: the window would be empty"),
        ("{start: '22:00', end: '07:00', incident_words: ['']}", "incident_words[0]: '' is not a word (it is blank)"),
    ],
)
def test_quiet_hours_mistakes_are_located(crew_dir: Path, quiet: str, message: str) -> None:
    crew_yaml = crew_dir / "crew.yaml"
    edit(crew_yaml, "      display_name: devbot\n", f"      display_name: devbot\n      quiet_hours: {quiet}\n")
    [problem] = problems(crew_dir)
    assert problem.startswith(f"{crew_yaml}:{line_of(crew_yaml, 'quiet_hours')}:"), problem
    assert "agents[0].matrix.quiet_hours" in problem
    assert message in problem


def test_quiet_hours_are_a_local_time_of_day(crew_dir: Path) -> None:
    crew_yaml = crew_dir / "crew.yaml"
    quiet = "{start: '22:30', end: '7:05:30', timezone: Europe/Berlin}"
    edit(crew_yaml, "      display_name: devbot\n", f"      display_name: devbot\n      quiet_hours: {quiet}\n")
    window = load_crew(crew_dir, env={}).crew.agent("devbot").matrix.quiet_hours  # type: ignore[union-attr]
    assert window is not None
    assert (window.start, window.end) == (time(22, 30), time(7, 5, 30))
    assert window.start.tzinfo is None


@pytest.mark.parametrize("url", ["https://", "https://matrix example.org", "http://[::1"])
def test_a_homeserver_no_client_can_use_is_located(crew_dir: Path, url: str) -> None:
    crew_yaml = crew_dir / "crew.yaml"
    edit(crew_yaml, "homeserver: http://127.0.0.1:8008", f"homeserver: '{url}'")
    [problem] = problems(crew_dir)
    assert problem.startswith(f"{crew_yaml}:{line_of(crew_yaml, 'homeserver')}:"), problem
    assert "matrix.homeserver: " in problem
    assert "is not a usable URL" in problem


def test_chat_identities_that_would_be_taken_for_one_another(crew_dir: Path) -> None:
    crew_yaml = crew_dir / "crew.yaml"
    edit(crew_yaml, "      display_name: devbot\n", "      display_name: ReviewBot\n")
    edit(crew_yaml, 'operators: ["@operator:localhost"]', 'operators: ["@operator:localhost", "@devbot:localhost"]')
    found = problems(crew_dir)
    assert len(found) == 2, found
    assert any(
        p.startswith(f"{crew_yaml}:{line_of(crew_yaml, 'ReviewBot')}:")
        and "agents[0].matrix.display_name: 'ReviewBot' is how reviewbot is mentioned too" in p
        for p in found
    ), found
    assert any("matrix.operators[1]: @devbot:localhost is agent devbot: an operator is a person" in p for p in found)


def test_agent_variables_without_agent_name_are_warned_about(crew_dir: Path) -> None:
    loaded = load_crew(crew_dir, env={"PRIMARY_REPO": "notarepo", "AGENT_REPOS": "a/b"})
    assert loaded.warnings == ("AGENT_REPOS, PRIMARY_REPO set without AGENT_NAME: they apply to no agent",)
    assert load_crew(crew_dir, env={"PRIMARY_REPO": "x/y"}).warnings == (
        "PRIMARY_REPO set without AGENT_NAME: it applies to no agent",
    )
    assert load_crew(crew_dir, env={"AGENT_NAME": "devbot", "PRIMARY_REPO": "example/widgets"}).warnings == ()


def test_a_volume_of_no_size_is_refused(crew_dir: Path) -> None:
    found = problems(crew_dir, {"AGENT_SMITH_KUBERNETES__NATS_STORAGE": "0Gi"})
    assert found == [
        "$AGENT_SMITH_KUBERNETES__NATS_STORAGE:1:1: kubernetes.nats_storage: '0Gi': a volume of no size "
        "(Kubernetes refuses the claim)"
    ]


def test_a_quantity_may_be_a_yaml_number(crew_dir: Path) -> None:
    edit(
        crew_dir / "crew.yaml",
        "    role: developer\n",
        "    role: developer\n    resources: {cpu_limit: 2, cpu_request: 0.5}\n",
    )
    resources = load_crew(crew_dir, env={"AGENT_SMITH_KUBERNETES__NATS_STORAGE": "3"}).crew.agents[0].resources
    assert (resources.cpu_limit, resources.cpu_request) == ("2", "0.5")
    # A float keeps every digit: 3221225472.0 is 3Gi, not 3.22123e+09.
    memory = "memory_limit: 3221225472.0, memory_request: 2147483648.0"
    edit(crew_dir / "crew.yaml", "cpu_request: 0.5}", f"cpu_request: 0.5, {memory}}}")
    resources = load_crew(crew_dir, env={}).crew.agents[0].resources
    assert (resources.memory_limit, resources.memory_request) == ("3221225472", "2147483648")
    edit(crew_dir / "crew.yaml", "cpu_limit: 2,", "cpu_limit: true,")
    [problem] = problems(crew_dir)
    assert "agents[0].resources.cpu_limit" in problem


def test_a_user_id_s_localpart_that_is_another_agent_s_spelling_is_a_problem(crew_dir: Path) -> None:
    crew_yaml = crew_dir / "crew.yaml"
    edit(crew_yaml, "      display_name: reviewbot\n", "      display_name: dbot\n")
    edit(crew_yaml, 'user_id: "@devbot:localhost"', 'user_id: "@dbot:localhost"')
    [problem] = problems(crew_dir)
    assert "agents[1].matrix.display_name: 'dbot' is how devbot is mentioned too" in problem


def test_a_mistake_in_what_a_yaml_merge_key_brought_in_is_located_where_the_anchor_wrote_it(
    crew_dir: Path,
) -> None:
    # Agents sharing settings through `<<: *anchor`: a key merged in has no position in the
    # mapping it was merged into (ruamel keeps none), which crashed every error located there.
    crew_yaml = crew_dir / "crew.yaml"
    edit(crew_yaml, "  - name: devbot\n", "  - &dev\n    name: devbot\n")
    edit(
        crew_yaml,
        "    permission_mode: acceptEdits\n    first_run_prompt",
        "    permission_mode: acceptEdit\n    first_run_prompt",
    )
    edit(
        crew_yaml,
        "  - name: reviewbot\n    role: reviewer\n",
        "  - <<: *dev\n    name: reviewbot\n    role: reviewer\n",
    )
    edit(crew_yaml, "    permission_mode: acceptEdits\n\nmatrix:", "\nmatrix:")
    edit(crew_yaml, "crew:\n  name: example-crew\n", "crew:\n  <<: {name: Example}\n")
    where = line_of(crew_yaml, "permission_mode: acceptEdit")
    found = problems(crew_dir)
    assert f"{crew_yaml}:{where}:22: agents[0].permission_mode: " in "\n".join(found)
    assert f"{crew_yaml}:{where}:22: agents[1].permission_mode: " in "\n".join(found)
    assert any(p.startswith(f"{crew_yaml}:{line_of(crew_yaml, '<<: {name')}:14: crew.name: ") for p in found), found


@pytest.mark.parametrize(
    ("where", "text", "path", "column"),
    [
        ("agents/_shared/settings.json", '{"env": {"A": "x\\ud800"}}', "env.A", 15),
        ("agents/_shared/settings.json", '{"env": {"x\\udfff": "a"}}', "env.x\udfff", 10),
        ("agents/devbot/mcp.json", '{"mcpServers": {"d": {"command": "\\udc00"}}}', "mcpServers.d.command", 34),
        ("crew.yaml", None, "agents[0].role", 11),
    ],
)
def test_a_string_no_utf8_file_can_hold_is_refused_where_it_is(
    crew_dir: Path, where: str, text: str | None, path: str, column: int
) -> None:
    # A lone surrogate (an escape like \ud800) is no character: it loaded, then assembly failed
    # writing CLAUDE.md or settings.json with a traceback, half-way through.
    file = crew_dir / where
    if text is None:
        edit(file, "    role: developer\n", '    role: "dev\\ud800"\n')
    else:
        file.write_text(text)
    line = line_of(file, "\\ud") if text is None else 1
    [problem] = problems(crew_dir)
    assert problem.startswith(f"{file}:{line}:{column}: {path}: holds a UTF-16 surrogate"), problem


def test_a_surrogate_from_a_variable_is_the_variable_s_problem(crew_dir: Path) -> None:
    # What os.environ makes of a byte that is no UTF-8 (surrogateescape), in a value YAML reads.
    found = problems(crew_dir, env={"AGENT_SMITH_CREW__DESCRIPTION": '"a\\udcff"'})
    assert found == [
        "$AGENT_SMITH_CREW__DESCRIPTION:1:1: crew.description: holds a UTF-16 surrogate (U+D800 to U+DFFF, "
        "from an escape like \\ud800): it is no character, and no UTF-8 file can hold it"
    ]


@pytest.mark.parametrize("number", ["NaN", "Infinity", "-Infinity", "1e999"])
def test_a_json_number_claude_code_cannot_parse_is_refused(crew_dir: Path, number: str) -> None:
    # Python's JSON reader takes these; Claude Code's JSON.parse refuses them and then ignores the
    # whole settings.json ("Invalid or malformed JSON" in its debug log): hooks, env, permissions.
    settings = crew_dir / "agents" / "_shared" / "settings.json"
    settings.write_text('{\n  "cleanupPeriodDays": ' + number + "\n}\n")
    assert problems(crew_dir) == [
        f"{settings}:2:24: cleanupPeriodDays: is NaN or infinite, which is no JSON number: "
        "Claude Code refuses the whole file"
    ]


@pytest.mark.parametrize("quantity", ['"1e999"', '"1E400"', "1" + "0" * 400])
def test_a_quantity_past_any_number_is_a_located_problem(crew_dir: Path, quantity: str) -> None:
    # `10.0 ** 999` raises OverflowError, which pydantic passes through: a traceback, exit 1.
    crew_yaml = crew_dir / "crew.yaml"
    edit(crew_yaml, "    role: developer\n", f"    role: developer\n    resources: {{memory_limit: {quantity}}}\n")
    [problem] = problems(crew_dir)
    assert problem.startswith(f"{crew_yaml}:{line_of(crew_yaml, 'memory_limit')}:"), problem
    assert "agents[0].resources.memory_limit: " in problem
    assert problem.endswith("is too large a Kubernetes quantity"), problem
