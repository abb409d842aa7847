"""The pure planning functions: team section, hooks, git config (parsed by real git), environment."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agent_smith.crew import Crew
from agent_smith.crew.claude_files import check_settings
from agent_smith.crew.models import GitIdentity
from agent_smith.errors import UsageError
from agent_smith.home.plan import (
    HomeLayout,
    agent_env,
    agent_hooks,
    ca_bundle,
    claude_json_settled,
    claude_md,
    clone_url,
    gitconfig,
    no_proxy_problem,
    settings_contribution,
    team_section,
)


def _crew(**forge: str) -> Crew:
    return Crew.model_validate(
        {
            "crew": {"name": "cc"},
            "agents": [
                {"name": "solo", "role": "lone wolf", "github_login": "solo-gh", "env": {"HTTPS_PROXY": "http://evil"}}
            ],
            "forge": forge or {},
        }
    )


def test_team_section_without_teammates_or_matrix() -> None:
    text = team_section(_crew(), "solo")
    assert "You are **solo** (lone wolf); GitHub @solo-gh." in text
    assert "You have no teammates in this crew." in text
    assert "Matrix" not in text


def test_claude_md_joins_blocks_with_one_blank_line() -> None:
    assert claude_md("# A\n\n", "\n# B\n", "## T\n") == "# A\n\n# B\n\n## T\n"
    assert claude_md("", "# B", "## T") == "# B\n\n## T\n"


def test_hooks_quote_the_command_path() -> None:
    hooks = agent_hooks("/opt/agent smith/bin/agent-smith")
    assert hooks["Stop"][0]["hooks"][0]["command"] == "'/opt/agent smith/bin/agent-smith' hook stop"


def test_the_stop_hook_outlives_its_longest_watch() -> None:
    """A watcher holding activity for the loop guard runs until the guard has room: Claude Code
    must not kill it first, or the held comment is never delivered to an idle agent."""
    from agent_smith.hooks.entry import DEFAULT_POLL, DEFAULT_WATCH
    from agent_smith.hooks.stop import longest_watch

    [group] = agent_hooks("/x/agent-smith")["Stop"]
    assert group["hooks"][0]["timeout"] > longest_watch(DEFAULT_WATCH, DEFAULT_POLL)


def test_the_prompt_hook_is_a_call_on_the_supervisors_mcp_server_that_never_blocks_the_prompt() -> None:
    [group] = agent_hooks("/x/agent-smith")["UserPromptSubmit"]
    assert group == {
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
    assert check_settings({"hooks": agent_hooks("/x/agent-smith")}) == []


def test_agent_smith_hooks_follow_the_crews_own() -> None:
    crew_settings = {"hooks": {"Stop": [{"hooks": [{"type": "command", "command": "mine"}]}]}, "env": {"A": "1"}}
    merged = settings_contribution(crew_settings, agent_hooks("/x/agent-smith"), {"B": "2", "A": "3"})
    assert [g["hooks"][0]["command"] for g in merged["hooks"]["Stop"]] == ["mine", "/x/agent-smith hook stop"]
    assert merged["env"] == {"A": "3", "B": "2"}
    assert crew_settings["env"] == {"A": "1"}


def test_clone_urls() -> None:
    assert clone_url(_crew().forge, "o/r") == "https://github.com/o/r.git"
    ghe = _crew(kind="github-enterprise", base_url="https://ghe.example/api/v3").forge
    assert clone_url(ghe, "o/r") == "https://ghe.example/o/r.git"
    assert clone_url(_crew(git_base_url="file:///srv/git/").forge, "o/r") == "file:///srv/git/o/r.git"


def test_git_reads_the_generated_config(tmp_path: Path) -> None:
    crew = Crew.model_validate(
        {
            "crew": {"name": "cc"},
            "agents": [{"name": "solo", "git": {"name": 'Ann "the bot" O\'Neil', "email": "a@b.c"}}],
            "forge": {"token_placeholder": "place'holder-$(x)"},
        }
    )
    config = tmp_path / "config"
    config.write_text(gitconfig(crew.agents[0], crew.forge))
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "GIT_CONFIG_NOSYSTEM": "1", "GIT_CONFIG_GLOBAL": str(config)}
    name = subprocess.run(["git", "config", "user.name"], env=env, capture_output=True, text=True, check=True)
    assert name.stdout.strip() == 'Ann "the bot" O\'Neil'
    fill = subprocess.run(
        ["git", "credential", "fill"],
        input="protocol=https\nhost=github.com\n\n",
        env={**env, "GIT_TERMINAL_PROMPT": "0"},
        capture_output=True,
        text=True,
        check=True,
    )
    assert "username=x-access-token\npassword=place'holder-$(x)\n" in fill.stdout
    other = subprocess.run(
        ["git", "credential", "fill"],
        input="protocol=https\nhost=elsewhere.example\n\n",
        env={**env, "GIT_TERMINAL_PROMPT": "0"},
        capture_output=True,
        text=True,
        check=False,
    )
    assert other.returncode != 0
    assert "place" not in other.stdout


def _git_env(home: Path, config: Path) -> dict[str, str]:
    return {"PATH": "/usr/bin:/bin", "HOME": str(home), "GIT_CONFIG_NOSYSTEM": "1", "GIT_CONFIG_GLOBAL": str(config)}


def _read_back(config: Path, key: str) -> bytes:
    got = subprocess.run(["git", "config", "--file", str(config), "--get", key], capture_output=True, check=False)
    assert got.returncode == 0, got.stderr.decode(errors="replace")
    assert got.stdout.endswith(b"\n")
    return got.stdout[:-1]


# Whatever git.name and git.email hold (bypassing the crew's own validation, so the quoting is
# held to this alone), git reads back exactly that, or assembly refuses the value before writing.
@settings(max_examples=300, deadline=None)
@given(name=st.text(min_size=1), email=st.text(min_size=1))
def test_git_reads_back_any_identity_exactly_or_it_is_refused(
    tmp_path_factory: pytest.TempPathFactory, name: str, email: str
) -> None:
    crew = _crew()
    agent = crew.agents[0].model_copy(update={"git": GitIdentity.model_construct(name=name, email=email)})
    if "\0" in name + email:
        with pytest.raises(UsageError, match="holds a NUL character"):
            gitconfig(agent, crew.forge)
        return
    text = gitconfig(agent, crew.forge)
    config = tmp_path_factory.mktemp("git") / "config"
    config.write_bytes(text.encode())
    assert _read_back(config, "user.name") == name.encode()
    assert _read_back(config, "user.email") == email.encode()


@pytest.mark.parametrize(
    "name", ["Dev\nBot", "tab\there", "back\bspace", "C:\\bot\\n", 'q"\\"', " pad ", "a;b#c", "cr\r", "\x01\x1f\x7f"]
)
def test_control_characters_in_the_identity_round_trip_through_git(tmp_path: Path, name: str) -> None:
    crew = _crew()
    agent = crew.agents[0].model_copy(update={"git": GitIdentity.model_construct(name=name, email="a@b.c")})
    config = tmp_path / "config"
    config.write_text(gitconfig(agent, crew.forge))
    assert _read_back(config, "user.name") == name.encode()
    # And the file as a whole is one git reads: every command, not only this key.
    listed = subprocess.run(["git", "config", "--file", str(config), "--list"], capture_output=True, check=False)
    assert listed.returncode == 0, listed.stderr


def test_a_nul_in_the_identity_is_refused_before_anything_is_written() -> None:
    crew = _crew()
    agent = crew.agents[0].model_copy(update={"git": GitIdentity.model_construct(name="a\0b", email="a@b.c")})
    with pytest.raises(UsageError, match=r"^git.name of solo 'a\\x00b' holds a NUL character"):
        gitconfig(agent, crew.forge)


@settings(max_examples=60, deadline=None)
@given(placeholder=st.text(min_size=8, max_size=40))
def test_the_credential_helper_hands_out_any_placeholder_exactly_or_it_is_refused(
    tmp_path_factory: pytest.TempPathFactory, placeholder: str
) -> None:
    crew = _crew()
    forge = crew.forge.model_copy(update={"token_placeholder": placeholder})
    if set(placeholder) & {"\r", "\n", "\0"}:
        with pytest.raises(UsageError, match="holds a line break or NUL"):
            gitconfig(crew.agents[0], forge)
        return
    text = gitconfig(crew.agents[0], forge)
    home = tmp_path_factory.mktemp("cred")
    config = home / "config"
    config.write_bytes(text.encode())
    fill = subprocess.run(
        ["git", "credential", "fill"],
        input=b"protocol=https\nhost=github.com\n\n",
        env={**_git_env(home, config), "GIT_TERMINAL_PROMPT": "0"},
        capture_output=True,
        check=False,
    )
    assert fill.returncode == 0, fill.stderr
    assert b"\npassword=" + placeholder.encode() + b"\n" in fill.stdout


def test_a_base_url_is_a_section_name_git_reads_back(tmp_path: Path) -> None:
    forge = _crew().forge.model_copy(update={"git_base_url": 'https://h.example/a\\t"b'})
    config = tmp_path / "config"
    config.write_text(gitconfig(_crew().agents[0], forge))
    listed = subprocess.run(
        ["git", "config", "--file", str(config), "--list"], capture_output=True, text=True, check=True
    )
    assert 'credential.https://h.example/a\\t"b.helper=' in listed.stdout
    newline = _crew().forge.model_copy(update={"git_base_url": "https://h.example/\n[core]"})
    with pytest.raises(UsageError, match=r"^forge.git_base_url .* holds a line break or NUL"):
        gitconfig(_crew().agents[0], newline)


def test_the_agents_own_env_cannot_undo_the_proxy(tmp_path: Path) -> None:
    crew = _crew(kind="github-enterprise", base_url="https://ghe.example/api/v3")
    layout = HomeLayout(tmp_path / "h", tmp_path / "w", tmp_path / "s")
    env = agent_env(
        crew, crew.agents[0], layout, crew_dir=tmp_path, proxy_url="http://solo:pw@fw:3128", no_proxy=["a", "a"]
    )
    assert env["HTTPS_PROXY"] == "http://solo:pw@fw:3128"
    assert env["NO_PROXY"] == "a"
    assert env["GH_HOST"] == "ghe.example"
    assert env["GH_ENTERPRISE_TOKEN"] == crew.forge.token_placeholder


@pytest.mark.parametrize(
    "host",
    ["localhost", "127.0.0.1", "::1", "[::1]:8080", ".example.com", "*.example.com", "*", "10.0.0.0/8", "fd00::/8",
     "example.com:8443", "host_1.internal."],
)  # fmt: skip
def test_a_no_proxy_entry_may_be_any_form_its_readers_take(host: str) -> None:
    assert no_proxy_problem(["localhost", host]) is None


@pytest.mark.parametrize("host", ["bad host", "a,b", "", "http://x", "a..b", "ex$mple", "a\nb", "x y" * 60])
def test_a_no_proxy_entry_that_would_make_other_entries_or_none_is_refused(host: str) -> None:
    problem = no_proxy_problem(["localhost", host])
    assert problem is not None
    assert problem.startswith("--no-proxy: ")
    assert "\n" not in problem
    assert len(problem) < 200


def test_ca_bundle_ends_with_the_firewall_ca() -> None:
    assert ca_bundle(b"SYS", b"FW") == b"SYS\n# agent-smith egress firewall CA\nFW\n"


def test_values_the_cli_drops_after_a_session_are_no_change() -> None:
    seeded = {
        "theme": "dark",
        "projects": {"/w": {"hasTrustDialogAccepted": True, "hasCompletedProjectOnboarding": True}},
    }
    after_session = {"projects": {"/w": {"hasTrustDialogAccepted": True}}}
    assert claude_json_settled(after_session, seeded)
    assert not claude_json_settled({"projects": {"/w": {}}}, seeded)
    assert not claude_json_settled({"theme": "light", **after_session}, seeded)
    assert not claude_json_settled(None, seeded)
