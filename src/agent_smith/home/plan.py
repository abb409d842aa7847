"""What an agent's home should contain: pure functions from the crew to file contents.

Nothing here touches the disk or the network. `assemble.py` reads what is
there, asks these functions what should be there, and writes the difference.
"""

from __future__ import annotations

import json
import re
import shlex
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from agent_smith.crew import Agent, Crew, Forge
from agent_smith.crew.loader import SURROGATE
from agent_smith.crew.models import shown
from agent_smith.errors import UsageError
from agent_smith.hooks import PROMPT_TOOL

# The CLI version the seeded onboarding answers belong to; tests pin it to the runtime's.
CLAUDE_VERSION = "2.1.331"

EVENTS_SERVER = "agent-smith-events"
# The supervisor serves the event tools over HTTP; its address and the agent's token are only
# known when it runs, so the assembled entry names them and the CLI expands them at connect.
MCP_URL_VAR = "AGENT_SMITH_MCP_URL"
MCP_TOKEN_VAR = "AGENT_SMITH_MCP_TOKEN"
# Seconds the prompt hook waits for the supervisor's answer (usually a few ms): enough for a
# supervisor still bringing up the event log at an agent's first prompt, not long on a hung one.
PROMPT_TIMEOUT = 10
# The Stop hook's timeout (s): its watch (AGENT_SMITH_STOP_WATCH, 3000 s by default), and while the
# loop guard holds activity, up to one guard window (1 h) and a poll more, until the activity is
# delivered (`hooks.stop.longest_watch`: 6660 s by default); with room to spare.
STOP_TIMEOUT = 7200
CHAT_SERVER = "matrix"
# Served beside the event tools by the supervisor: its URL is theirs plus this.
CHAT_URL_SUFFIX = "/matrix"
MATRIX_TOKEN_FILE = "matrix_access_token"

CA_VARIABLES = ("SSL_CERT_FILE", "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE", "GIT_SSL_CAINFO")
# Node adds these certificates to its own root store, parsing every one as it starts: the
# firewall's CA alone, which signs every site a node process reaches through the firewall,
# costs claude nothing, where the whole bundle (~145) cost it ~30 ms per start.
NODE_CA_VARIABLE = "NODE_EXTRA_CA_CERTS"

# Where the system's CA bundle may be; the first that exists is used (Debian, Fedora, Alpine).
SYSTEM_BUNDLES = (
    Path("/etc/ssl/certs/ca-certificates.crt"),
    Path("/etc/pki/tls/certs/ca-bundle.crt"),
    Path("/etc/ssl/cert.pem"),
)


@dataclass(frozen=True)
class HomeLayout:
    """Where each assembled file lives, given the agent's home, workspace and state directories."""

    home: Path
    workspace: Path
    state: Path

    @property
    def claude_dir(self) -> Path:
        return self.home / ".claude"

    @property
    def claude_md(self) -> Path:
        return self.claude_dir / "CLAUDE.md"

    @property
    def settings(self) -> Path:
        return self.claude_dir / "settings.json"

    @property
    def credentials(self) -> Path:
        return self.claude_dir / ".credentials.json"

    @property
    def subagents(self) -> Path:
        return self.claude_dir / "agents"

    @property
    def claude_json(self) -> Path:
        return self.home / ".claude.json"

    @property
    def config(self) -> Path:
        return self.home / ".config"

    @property
    def gitconfig(self) -> Path:
        # git's XDG file, read before ~/.gitconfig: the agent's own `git config --global` still wins.
        return self.config / "git" / "config"

    @property
    def own(self) -> Path:
        return self.config / "agent-smith"

    @property
    def ca_bundle(self) -> Path:
        return self.own / "ca-bundle.pem"

    @property
    def firewall_ca(self) -> Path:
        return self.own / "firewall-ca.pem"

    @property
    def manifest(self) -> Path:
        return self.own / "assembly.json"

    @property
    def setup_record(self) -> Path:
        return self.own / "setup.json"

    @property
    def matrix_token(self) -> Path:
        return self.state / MATRIX_TOKEN_FILE

    @property
    def setup_log(self) -> Path:
        return self.state / "setup.log"

    def repo_dir(self, repo: str) -> Path:
        return self.workspace / repo


# ---- CLAUDE.md ----------------------------------------------------------------------------


def team_section(crew: Crew, name: str) -> str:
    """The generated "Your team" section: who the agent is, its teammates, and who may direct it."""
    me = crew.agent(name)
    lines = ["## Your team", "", f"You are **{me.name}** ({me.role}){_ids(me)}."]
    mates = crew.teammates(name)
    if mates:
        lines += ["", "Your teammates:", "", "| name | role | Matrix | GitHub |", "|---|---|---|---|"]
        lines += [f"| {a.name} | {a.role} | {a.matrix.user_id if a.matrix else '—'} | @{a.login} |" for a in mates]
    else:
        lines += ["", "You have no teammates in this crew."]
    if crew.matrix is not None and crew.matrix.operators:
        lines += ["", f"People who may direct you: {', '.join(crew.matrix.operators)}."]
    return "\n".join(lines) + "\n"


def _ids(agent: Agent) -> str:
    parts = [f"GitHub @{agent.login}"]
    if agent.matrix is not None:
        parts.insert(0, f"Matrix {agent.matrix.user_id}")
    return "; " + ", ".join(parts)


def claude_md(shared: str, persona: str, team: str) -> str:
    """`_shared/CLAUDE.md`, then the persona's, then the team section — each block separated by a blank line."""
    blocks = [b.strip("\n") for b in (shared, persona, team) if b.strip()]
    return "\n\n".join(blocks) + "\n"


# ---- settings.json ------------------------------------------------------------------------


def agent_hooks(command: str) -> dict[str, list[dict[str, Any]]]:
    """agent-smith's own hooks: commands run by absolute path so they work whatever the agent's
    PATH, and the prompt context as a call on the supervisor's MCP server."""
    exe = shlex.quote(command)
    return {
        # The Stop hook keeps watching for review activity after the turn ended, so its timeout
        # must outlast the longest watch (see STOP_TIMEOUT).
        "Stop": [
            {
                "hooks": [
                    {"type": "command", "command": f"{exe} hook stop", "asyncRewake": True, "timeout": STOP_TIMEOUT}
                ]
            }
        ],
        # Before every turn, chat turns included: a tool call on the connection the CLI already
        # holds costs a few ms where a command costs a Python start (~30 ms). A supervisor that is
        # down or slow must not hold the prompt: it goes on without the context.
        "UserPromptSubmit": [
            {
                "hooks": [
                    {
                        "type": "mcp_tool",
                        "server": EVENTS_SERVER,
                        "tool": PROMPT_TOOL,
                        "onFailure": "continue",
                        "timeout": PROMPT_TIMEOUT,
                    }
                ]
            }
        ],
        "PostToolUse": [
            {"matcher": "Bash|mcp__.*", "hooks": [{"type": "command", "command": f"{exe} hook tool", "timeout": 30}]}
        ],
    }


# The settings.json key the CLI itself writes once a person accepted bypassPermissions' warning.
SKIP_BYPASS_WARNING = "skipDangerousModePermissionPrompt"


def own_tool_rules(chat: bool) -> list[str]:
    """Permission rules that let the agent use agent-smith's own MCP servers without asking.

    An agent runs unattended: a permission prompt for publishing an event or
    answering in chat would wait for a person who is not there.
    """
    return [f"mcp__{EVENTS_SERVER}", *([f"mcp__{CHAT_SERVER}"] if chat else [])]


def settings_contribution(
    crew_settings: Mapping[str, Any],
    hooks: Mapping[str, list[dict[str, Any]]],
    env: Mapping[str, str],
    allow: Sequence[str] = (),
    *,
    bypass_permissions: bool = False,
) -> dict[str, Any]:
    """The crew's shared settings with agent-smith's hooks, permission rules and environment added.

    The crew's own hooks come first; agent-smith's are separate groups after
    them, so both fire. `allow` joins the crew's `permissions.allow` (the
    crew's deny rules still win, as Claude Code applies deny first).
    agent-smith's environment wins over the crew's for the same variable
    (trust and proxy must not be undone by a settings file).
    `bypass_permissions`: the agent starts in that mode.
    """
    contribution: dict[str, Any] = json.loads(json.dumps(dict(crew_settings)))
    merged_hooks = contribution.get("hooks")
    merged_hooks = dict(merged_hooks) if isinstance(merged_hooks, dict) else {}
    for event, groups in hooks.items():
        existing = merged_hooks.get(event)
        existing = list(existing) if isinstance(existing, list) else []
        merged_hooks[event] = existing + [g for g in groups if g not in existing]
    contribution["hooks"] = merged_hooks
    crew_env = contribution.get("env")
    contribution["env"] = {**(crew_env if isinstance(crew_env, dict) else {}), **env}
    if allow:
        permissions = contribution.get("permissions")
        permissions = dict(permissions) if isinstance(permissions, dict) else {}
        existing = permissions.get("allow")
        existing = list(existing) if isinstance(existing, list) else []
        permissions["allow"] = existing + [rule for rule in allow if rule not in existing]
        contribution["permissions"] = permissions
    if bypass_permissions:
        # Else the CLI starts at a warning whose preselected answer is "No, exit": an agent nobody
        # attends would wait there for ever, and a stray Enter would quit it.
        contribution[SKIP_BYPASS_WARNING] = True
    return contribution


# ---- MCP servers --------------------------------------------------------------------------


def mcp_servers(persona_servers: Mapping[str, Any], *, chat: bool) -> tuple[dict[str, Any], list[str]]:
    """The persona's MCP servers plus agent-smith's own; and a warning per persona server shadowed.

    agent-smith's servers (the event tools, and the Matrix channel with `chat`)
    are served by the supervisor and carry no secret: their entries name the
    environment variables that hold the supervisor's address and the agent's
    token for it. The supervisor reads the Matrix access token itself.
    """
    ours: dict[str, Any] = {
        EVENTS_SERVER: {
            "type": "http",
            "url": f"${{{MCP_URL_VAR}}}",
            "headers": {"Authorization": f"Bearer ${{{MCP_TOKEN_VAR}}}"},
        },
    }
    if chat:
        ours[CHAT_SERVER] = {**ours[EVENTS_SERVER], "url": f"${{{MCP_URL_VAR}}}{CHAT_URL_SUFFIX}"}
    warnings = [
        f"the persona's MCP server {name!r} is replaced by agent-smith's own of that name"
        for name in persona_servers
        if name in ours
    ]
    return {**json.loads(json.dumps(dict(persona_servers))), **ours}, warnings


# ---- ~/.claude.json -----------------------------------------------------------------------

# Measured with 2.1.331: once a session has run, the CLI drops these seeded values again
# (they are its defaults, or done for good). They matter only before the first start.
_CLI_DROPS_TOP = {"theme": "dark"}
MISSING_VALUE = object()
_CLI_DROPS_PROJECT = {"hasCompletedProjectOnboarding": True}


def _without_dropped(data: Mapping[str, Any]) -> dict[str, Any]:
    out = {k: v for k, v in data.items() if _CLI_DROPS_TOP.get(k, MISSING_VALUE) != v}
    projects = out.get("projects")
    if isinstance(projects, dict):
        out["projects"] = {
            path: {k: v for k, v in entry.items() if _CLI_DROPS_PROJECT.get(k, MISSING_VALUE) != v}
            if isinstance(entry, dict)
            else entry
            for path, entry in projects.items()
        }
    return out


def claude_json_settled(existing: Any, seeded: Mapping[str, Any]) -> bool:
    """Whether `existing` already is `seeded` but for values the CLI itself drops after a session.

    Rewriting the file for those would make every assembly after a session a
    change, and the CLI would drop them again.
    """
    return isinstance(existing, dict) and _without_dropped(existing) == _without_dropped(seeded)


# ---- git ----------------------------------------------------------------------------------


def git_base_url(forge: Forge) -> str:
    """Where repositories are cloned from: the configured mirror, github.com, or the enterprise host."""
    if forge.git_base_url:
        return forge.git_base_url.rstrip("/")
    if forge.kind == "github" and forge.host == "api.github.com":
        return "https://github.com"
    scheme = forge.base_url.split("://", 1)[0]
    return f"{scheme}://{forge.host}"


def clone_url(forge: Forge, repo: str) -> str:
    return f"{git_base_url(forge)}/{repo}.git"


# Inside a quoted git config value these are the only escapes; any other character, control
# characters included, is read back as written (git's own writer does the same). A raw line break
# would end the line mid-quote: `fatal: bad config line`.
_GIT_ESCAPES = str.maketrans({"\\": "\\\\", '"': '\\"', "\n": "\\n", "\t": "\\t", "\b": "\\b"})


def _git_value(value: str, what: str) -> str:
    """`value` as a quoted git config value that git reads back exactly."""
    if "\0" in value:
        raise UsageError(f"{what} {shown(value)} holds a NUL character, which no git config value can hold")
    return '"' + value.translate(_GIT_ESCAPES) + '"'


def _git_subsection(value: str, what: str) -> str:
    """`value` as a quoted section name (`[credential "…"]`): there a backslash escapes the next
    character as itself (`\\n` is `n`), and a line break or NUL cannot be written at all."""
    if "\n" in value or "\0" in value:
        raise UsageError(f"{what} {shown(value)} holds a line break or NUL, which a git config section cannot hold")
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def gitconfig(agent: Agent, forge: Forge) -> str:
    """The agent's git identity and a credential helper that hands out the forge placeholder.

    The helper is a shell function inside the config, so it needs nothing
    installed. It answers only `get` and only for the forge's URL; the
    placeholder is swapped for the real token by the egress firewall.
    """
    identity = agent.git_identity
    base = git_base_url(forge)
    lines = [
        "# Written by `agent-smith assemble`; rewritten on every assembly.",
        "# Put your own settings in ~/.gitconfig, which git reads after this file.",
        "[user]",
        f"\tname = {_git_value(identity.name, f'git.name of {agent.name}')}",
        f"\temail = {_git_value(identity.email, f'git.email of {agent.name}')}",
        "[init]",
        "\tdefaultBranch = main",
    ]
    if not base.startswith("file://"):
        # git's credential protocol is one `key=value` per line: a line break in the password would
        # end it early (a trailing CR is taken for a CRLF ending) and start a line of its own.
        if any(c in forge.token_placeholder for c in "\r\n\0"):
            raise UsageError("forge.token_placeholder (GITHUB_TOKEN) holds a line break or NUL, which no token has")
        placeholder = shlex.quote(forge.token_placeholder)
        helper = f"!f() {{ test \"$1\" = get && printf 'username=x-access-token\\npassword=%s\\n' {placeholder}; }}; f"
        lines += [
            f"[credential {_git_subsection(base, 'forge.git_base_url')}]",
            "\thelper = ",
            f"\thelper = {_git_value(helper, 'forge.token_placeholder (GITHUB_TOKEN)')}",
        ]
    return "\n".join(lines) + "\n"


# ---- environment --------------------------------------------------------------------------


def host_of(url: str) -> str | None:
    return urlsplit(url).hostname


# What NO_PROXY's readers (curl, git, Python, Node, Go) take as one entry: a host, .domain or
# *.domain, an IP address (IPv6 in brackets or not), a CIDR range, each with an optional port.
_NO_PROXY_ENTRY = re.compile(
    r"^(?:\*|\.?[A-Za-z0-9_-]+(?:\.[A-Za-z0-9_-]+)*\.?|\[?[0-9A-Fa-f.]*:[0-9A-Fa-f:.]*\]?)(?:/\d{1,3})?(?::\d{1,5})?$"
)


def no_proxy_problem(hosts: Iterable[str]) -> str | None:
    """Why a `--no-proxy` value cannot join NO_PROXY, or None (pure). A space or a comma in one
    would make other entries of it, or none."""
    for host in hosts:
        if not _NO_PROXY_ENTRY.match(host.removeprefix("*.")):
            return f"--no-proxy: {shown(host)} is not a host name, .domain, IP address or CIDR range"
    return None


def agent_env(
    crew: Crew,
    agent: Agent,
    layout: HomeLayout,
    *,
    crew_dir: Path,
    proxy_url: str,
    no_proxy: Iterable[str] = (),
) -> dict[str, str]:
    """Every variable the agent's processes need (without PATH, TERM and the model endpoint).

    The CA variables are set explicitly because the machine may export them
    pointing elsewhere. `agent.env` comes first so it cannot undo trust,
    proxy or identity.
    """
    bundle = str(layout.ca_bundle)
    bypass: list[str] = []
    candidates = [*no_proxy, host_of(crew.matrix.homeserver) if crew.matrix else None]
    for host in candidates:
        if host and host not in bypass:
            bypass.append(host)
    env: dict[str, str] = dict(agent.env)
    env.update(
        {
            "HOME": str(layout.home),
            "XDG_CONFIG_HOME": str(layout.config),
            "AGENT_NAME": agent.name,
            "AGENT_SMITH_CREW": str(crew_dir),
            "AGENT_SMITH_WORKSPACE": str(layout.workspace),
            "GITHUB_TOKEN": crew.forge.token_placeholder,
            "GH_TOKEN": crew.forge.token_placeholder,
            "GIT_TERMINAL_PROMPT": "0",
            # Not DISABLE_TELEMETRY nor CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC, though the allowlist denies
            # what they would spare (9 of a start's 13 denials): they also turn the channels off.
            "DISABLE_AUTOUPDATER": "1",
            "HTTPS_PROXY": proxy_url,
            "https_proxy": proxy_url,
            "HTTP_PROXY": proxy_url,
            "http_proxy": proxy_url,
            "NO_PROXY": ",".join(bypass),
            "no_proxy": ",".join(bypass),
            "npm_config_https_proxy": proxy_url,
            "npm_config_proxy": proxy_url,
            "npm_config_cafile": bundle,
        }
    )
    env.update(dict.fromkeys(CA_VARIABLES, bundle))
    env[NODE_CA_VARIABLE] = str(layout.firewall_ca)
    if crew.forge.kind == "github-enterprise":
        env["GH_HOST"] = crew.forge.host
        env["GH_ENTERPRISE_TOKEN"] = crew.forge.token_placeholder
    if crew.events.nats_url:
        env["NATS_URL"] = crew.events.nats_url
    if agent.primary:
        env["PRIMARY_REPO"] = agent.primary
    if agent.repos:
        env["AGENT_REPOS"] = ",".join(agent.repos)
    return env


# Set by whoever starts claude, not by settings.json: Claude Code already runs with them.
PROCESS_ONLY = frozenset({"HOME", "XDG_CONFIG_HOME"})


def settings_env(env: Mapping[str, str]) -> dict[str, str]:
    """The part of the agent's environment written into settings.json `env`."""
    return {k: v for k, v in env.items() if k not in PROCESS_ONLY}


def ca_bundle(system_bundle: bytes, firewall_ca: bytes) -> bytes:
    """The system's trusted CAs plus the firewall's, as one PEM file."""
    head = system_bundle if system_bundle.endswith(b"\n") or not system_bundle else system_bundle + b"\n"
    tail = firewall_ca if firewall_ca.endswith(b"\n") else firewall_ca + b"\n"
    return head + b"# agent-smith egress firewall CA\n" + tail


def dump_json(data: Any) -> str:
    """`data` as the JSON files of a home hold it: readable UTF-8, but for a lone surrogate (which
    JSON.parse reads from, and JSON.stringify writes as, an escape: the CLI may have put one in
    ~/.claude.json), kept as its escape so the file can be written and reads back the same."""
    text = json.dumps(data, indent=2, ensure_ascii=False) + "\n"
    return SURROGATE.sub(lambda m: f"\\u{ord(m.group()):04x}", text)
