"""What runs in an agent's tmux session: pure decisions over plain data.

`AgentSpec` is everything the supervisor needs to start one agent; the
functions here build claude's command line, decide whether to resume, and
recognise the one start-up dialog the CLI cannot be configured out of.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from agent_smith.runtime.policy import Restart

CHAT_CHANNEL = "server:matrix"
"""The Matrix channel as the CLI names it: the `matrix` MCP server that `agent-smith assemble` installs."""

BUSY = re.compile(r"esc to interrupt")
"""Shown by the CLI on its spinner line while a turn runs."""

DEV_CHANNELS_DIALOG = re.compile(r"WARNING: Loading development channels")
_DIALOG_CHANNELS = re.compile(r"Channels:\s*(?P<list>[^\n]*)")
_NOT_PROJECT_KEY = re.compile(r"[^A-Za-z0-9]")

LOG_MAX_BYTES = 10 * 1024 * 1024
"""A pane's log is written in chunks this big (`AgentSpec.log_max_bytes`)."""


@dataclass(frozen=True)
class AgentSpec:
    """One agent's tmux session: pane 0 runs `claude` in `cwd`, pane 1 runs `shell` in `shell_cwd`.

    `tag` (``<crew>/<agent>``) is in `env` as ``AGENT_SMITH_AGENT``: every process of the agent carries it.
    """

    name: str
    session: str
    claude: tuple[str, ...]
    env: Mapping[str, str] = field(repr=False)
    cwd: Path
    shell: tuple[str, ...]
    shell_cwd: Path
    config_dir: Path
    state_dir: Path
    log_dir: Path
    tag: str = ""
    restart: Restart = field(default_factory=Restart)
    first_run_prompt: str | None = None
    channels: tuple[str, ...] = ()
    # A chunk of a pane's log (`session.chunk`) holds this much; the pane's pipe starts the next.
    log_max_bytes: int = LOG_MAX_BYTES

    @property
    def first_run_marker(self) -> Path:
        return self.state_dir / "first-run-prompt-sent"

    def log(self, pane: int) -> Path:
        return pane_log(self.log_dir, self.name, pane)


def pane_log(log_dir: Path, agent: str, pane: int) -> Path:
    """Where pane `pane` of `agent`'s session is captured (0 claude, 1 the shell): named by the
    agent, not the session, so that `logs NAME` finds it under `run` too (session `main`)."""
    return log_dir / f"{agent}.{'claude' if pane == 0 else 'shell'}.log"


def claude_argv(
    binary: Path,
    *,
    permission_mode: str,
    remote_control: str | None,
    channels: Sequence[str],
) -> tuple[str, ...]:
    """claude's arguments for an agent, except `--continue` (decided at each start)."""
    argv = [str(binary)]
    if permission_mode != "default":
        argv += ["--permission-mode", permission_mode]
    if remote_control:
        argv += ["--remote-control", remote_control]
    if channels:
        argv += ["--dangerously-load-development-channels", *channels]
    return tuple(argv)


def with_resume(argv: Sequence[str], resume: bool) -> tuple[str, ...]:
    return (*argv, "--continue") if resume else tuple(argv)


def project_key(cwd: Path) -> str:
    """How the CLI names a working directory under ``~/.claude/projects/``."""
    return _NOT_PROJECT_KEY.sub("-", str(cwd))


def has_previous_session(config_dir: Path, cwd: Path) -> bool:
    """True when the CLI saved a conversation for `cwd`, so ``--continue`` has one to resume."""
    project = config_dir / "projects" / project_key(cwd)
    return project.is_dir() and any(project.glob("*.jsonl"))


def confirms_dev_channels(screen: str, channels: Sequence[str]) -> bool:
    """True when `screen` shows the development-channels warning for exactly `channels`.

    The pinned CLI (2.1.331) shows this dialog for every ``server:`` channel
    and no setting skips it for a first-party model provider; its first
    option is "I am using this for local development". The supervisor
    confirms it only after reading that the listed channels are the ones it
    asked for, never by pressing Enter blind.
    """
    if not channels or not DEV_CHANNELS_DIALOG.search(screen):
        return False
    listed = _DIALOG_CHANNELS.search(screen)
    if listed is None:
        return False
    shown = {part.strip() for part in listed.group("list").split(",") if part.strip()}
    return shown == set(channels)


def busy(screen: str) -> bool:
    return BUSY.search(screen) is not None


_RULE = re.compile(r"^─{20,}\s*$")


def unsent_input(screen: str) -> bool | None:
    """Whether claude's input box (between the screen's last two rules) holds text not sent yet;
    None when the screen shows no box (being redrawn, say).

    Pure. Right after the box first shows, the pinned CLI keeps what is typed but
    drops an Enter: the text then waits there (a long paste as ``[Pasted text …]``)."""
    lines = screen.splitlines()
    rules = [i for i, line in enumerate(lines) if _RULE.match(line)]
    if len(rules) < 2:
        return None
    box = lines[rules[-2] + 1 : rules[-1]]
    return any(line.strip().removeprefix("❯").strip() for line in box)
