"""How the real `claude` CLI is found and launched for one agent.

`claude_launch` is pure: it builds the argv and the complete environment
(never the ambient one) from plain parameters, so what an agent sees is
decided here and visible in tests. `find_claude` and `claude_version` are the
only parts that touch the machine.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path

from agent_smith.errors import MissingPartError, OperationError
from agent_smith.runtime.tmux import Tmux, TmuxSession

PINNED_VERSION = "2.1.331"
NPM_PACKAGE = "@anthropic-ai/claude-code"
DEFAULT_PATH = "/usr/local/bin:/usr/bin:/bin"
_VERSION = re.compile(r"(\d+\.\d+\.\d+)")
_INSTALL_FIX = f"run `npm ci` in the agent-smith checkout (it pins {NPM_PACKAGE}@{PINNED_VERSION})"


class PermissionMode(StrEnum):
    """Values ``claude --permission-mode`` accepts (2.1.331); ``default`` leaves the flag off."""

    DEFAULT = "default"
    MANUAL = "manual"
    ACCEPT_EDITS = "acceptEdits"
    AUTO = "auto"
    DONT_ASK = "dontAsk"
    PLAN = "plan"
    BYPASS_PERMISSIONS = "bypassPermissions"


@dataclass(frozen=True)
class ClaudeLaunch:
    """Everything needed to start one agent's CLI: run `argv` in `cwd` with exactly `env`."""

    argv: tuple[str, ...]
    env: Mapping[str, str] = field(repr=False)
    cwd: Path


def _project_roots() -> list[Path]:
    # The checkout this package runs from (src layout: src/agent_smith/runtime/claude.py),
    # then the current directory: both are where `npm ci` puts node_modules.
    here = Path(__file__).resolve()
    return [*here.parents[3:4], Path.cwd()]


def find_claude(roots: Sequence[Path] | None = None, path: str | None = None) -> Path:
    """The pinned CLI: ``<root>/node_modules/.bin/claude`` first, then ``claude`` on PATH."""
    for root in roots if roots is not None else _project_roots():
        candidate = root / "node_modules" / ".bin" / "claude"
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return candidate
    found = shutil.which("claude", path=path)
    if found is not None:
        return Path(found)
    raise MissingPartError(f"the claude CLI is not installed: {_INSTALL_FIX}")


def claude_version(binary: Path) -> str:
    """``2.1.331`` from ``claude --version``."""
    env = {"PATH": DEFAULT_PATH, "DISABLE_AUTOUPDATER": "1", "HOME": os.environ.get("HOME", "/root")}
    try:
        result = subprocess.run(
            [str(binary), "--version"], env=env, capture_output=True, text=True, timeout=30, check=False
        )
    except OSError as exc:
        raise MissingPartError(f"{binary} cannot run ({exc.strerror}): {_INSTALL_FIX}") from exc
    except subprocess.TimeoutExpired as exc:
        raise OperationError(f"{binary} --version did not answer within 30s") from exc
    found = _VERSION.search(result.stdout)
    if result.returncode != 0 or found is None:
        raise OperationError(f"{binary} --version failed (exit {result.returncode}): {_INSTALL_FIX}")
    return found.group(1)


def claude_launch(
    binary: Path,
    *,
    cwd: Path,
    home: Path,
    config_dir: Path,
    base_url: str,
    running_as_root: bool,
    api_key: str | None = None,
    permission_mode: PermissionMode = PermissionMode.DEFAULT,
    mcp_config: Path | None = None,
    tool_search: bool = True,
    path: str = DEFAULT_PATH,
    extra_env: Mapping[str, str] | None = None,
    extra_args: Sequence[str] = (),
) -> ClaudeLaunch:
    """The argv and complete environment for one agent's interactive CLI.

    `base_url` is the model endpoint (for the scripted model server, the
    agent's ``/agents/<name>`` URL). Without `api_key` the CLI uses the stub
    OAuth ``.credentials.json`` in `config_dir`. `tool_search=False` makes MCP
    tools visible to the model directly instead of behind ToolSearch.

    As root the CLI refuses bypassPermissions unless ``IS_SANDBOX=1``; an
    agent asked to run in that mode is by design confined (its own home,
    the egress firewall), so the variable is set for exactly that case and
    never otherwise. `extra_env` cannot override the variables set here.
    """
    env: dict[str, str] = dict(extra_env or {})
    env.update(
        {
            "PATH": path,
            "HOME": str(home),
            "LANG": "C.UTF-8",
            "TERM": "xterm-256color",
            "CLAUDE_CONFIG_DIR": str(config_dir),
            "ANTHROPIC_BASE_URL": base_url,
            "DISABLE_AUTOUPDATER": "1",
        }
    )
    if api_key is not None:
        env["ANTHROPIC_API_KEY"] = api_key
    else:
        env.pop("ANTHROPIC_API_KEY", None)
    if not tool_search:
        env["ENABLE_TOOL_SEARCH"] = "false"
    if permission_mode is PermissionMode.BYPASS_PERMISSIONS and running_as_root:
        env["IS_SANDBOX"] = "1"
    else:
        env.pop("IS_SANDBOX", None)
    argv = [str(binary)]
    if permission_mode is not PermissionMode.DEFAULT:
        argv += ["--permission-mode", permission_mode.value]
    if mcp_config is not None:
        argv += ["--mcp-config", str(mcp_config)]
    argv += list(extra_args)
    return ClaudeLaunch(tuple(argv), env, cwd)


PROMPT_READY = re.compile(r"^❯", re.MULTILINE)
"""The CLI's input prompt at the start of a pane line: the session is ready to be typed into."""


def start_in_tmux(
    tmux: Tmux, name: str, launch: ClaudeLaunch, *, ready_timeout: float = 30.0, remain_on_exit: bool = False
) -> TmuxSession:
    """Start the CLI in a new tmux session and wait for its prompt.

    The config directory must be seeded first (``agent_smith.home.seed_claude_json``):
    an unseeded CLI shows onboarding, and its trust dialog's preselected answer quits.
    """
    session = tmux.new_session(name, launch.argv, env=launch.env, cwd=launch.cwd, remain_on_exit=remain_on_exit)
    tmux.wait_for(name, PROMPT_READY, timeout=ready_timeout)
    return session
