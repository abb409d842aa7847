"""An agent's tmux session: pane 0 claude, pane 1 a shell, both panes' output piped to log files.

Panes are addressed explicitly (``=SESSION:0.0``, ``=SESSION:0.1``) because a
person attached to the session may switch the active pane at any time.
Pane 0 keeps its window after claude exits (`remain-on-exit`), so the
supervisor sees the exit status and restarts claude in place with
`respawn-pane`, leaving the shell in pane 1 as it was.
"""

from __future__ import annotations

import shlex
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from agent_smith.runtime.launch import AgentSpec
from agent_smith.runtime.tmux import Tmux

CLAUDE_PANE = 0
SHELL_PANE = 1
_FORMAT = "#{session_name}\t#{pane_index}\t#{pane_dead}\t#{pane_dead_status}\t#{pane_pid}\t#{pane_dead_signal}"


@dataclass(frozen=True)
class PaneStatus:
    session: str
    index: int
    dead: bool
    exit_code: int | None
    pid: int


def pane(session: str, index: int) -> str:
    return f"={session}:0.{index}"


def panes(tmux: Tmux) -> dict[tuple[str, int], PaneStatus]:
    """Every pane on the server, in one tmux call; none when no server runs.

    Any other failure raises OperationError: an unanswered question must not
    read as "every agent died", which would restart them all.
    """
    if tmux.server_pid() is None:
        return {}
    out = tmux.command("list-panes", "-a", "-F", _FORMAT)
    found: dict[tuple[str, int], PaneStatus] = {}
    for line in out.splitlines():
        parts = line.split("\t")
        if len(parts) != 6 or not parts[1].isdigit() or not parts[4].isdigit():
            continue
        code = int(parts[3]) if parts[3].isdigit() else None
        if code is None and parts[5].isdigit():
            # Killed by a signal: reported the way shells do, 128 + the signal number.
            code = 128 + int(parts[5])
        status = PaneStatus(parts[0], int(parts[1]), parts[2] == "1", code, int(parts[4]))
        found[(status.session, status.index)] = status
    return found


def _env_args(env: Mapping[str, str]) -> list[str]:
    return [arg for key, value in env.items() for arg in ("-e", f"{key}={value}")]


def _pipe(tmux: Tmux, spec: AgentSpec, index: int) -> None:
    # `cat` is the cheapest process that can hold the file open; rotation renames the
    # file and pipes the pane again, which replaces this cat with one on a new file.
    target = spec.log(index)
    tmux.command("pipe-pane", "-t", pane(spec.session, index), f"exec cat >> {shlex.quote(str(target))}")


def open_session(tmux: Tmux, spec: AgentSpec, claude: Iterable[str], env: Mapping[str, str]) -> int:
    """Create the two-pane session and start claude with `env`; the pid of claude's pane."""
    spec.log_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    started = tmux.new_session(spec.session, list(claude), env=env, cwd=spec.cwd, remain_on_exit=True)
    _pipe(tmux, spec, CLAUDE_PANE)
    tmux.command(
        "split-window", "-d", "-v", "-t", pane(spec.session, CLAUDE_PANE), "-c", str(spec.shell_cwd),
        *_env_args(spec.env), "--", *spec.shell,
        client_path=spec.env.get("PATH"),
    )  # fmt: skip
    _pipe(tmux, spec, SHELL_PANE)
    # The shell draws its prompt at once, often before the pipe is attached: what is
    # already on screen goes first into the log (a line may then appear twice, none is lost).
    shown = tmux.command("capture-pane", "-p", "-t", pane(spec.session, SHELL_PANE), check=False).rstrip("\n")
    if shown.strip():
        with spec.log(SHELL_PANE).open("a", encoding="utf-8") as log:
            log.write(shown)
    return started.pane_pid


def respawn_claude(tmux: Tmux, spec: AgentSpec, claude: Iterable[str], env: Mapping[str, str]) -> None:
    """Start claude again, with `env`, in pane 0 of an existing session (the shell pane is left alone)."""
    tmux.command(
        "respawn-pane", "-k", "-t", pane(spec.session, CLAUDE_PANE), "-c", str(spec.cwd),
        *_env_args(env), "--", *claude,
        client_path=spec.env.get("PATH"),
    )  # fmt: skip
    _pipe(tmux, spec, CLAUDE_PANE)


def screen(tmux: Tmux, session: str) -> str:
    return tmux.command("capture-pane", "-p", "-J", "-t", pane(session, CLAUDE_PANE), check=False)


def type_text(tmux: Tmux, session: str, text: str) -> None:
    """Type into claude's pane as a person would: the text literally, then Enter as its own key."""
    tmux.command("send-keys", "-t", pane(session, CLAUDE_PANE), "-l", text)
    tmux.command("send-keys", "-t", pane(session, CLAUDE_PANE), "Enter")


def press(tmux: Tmux, session: str, key: str) -> None:
    tmux.command("send-keys", "-t", pane(session, CLAUDE_PANE), key)


def rotate(tmux: Tmux, spec: AgentSpec, index: int, *, max_bytes: int, keep: int) -> bool:
    """Rotate a pane's log once it passed `max_bytes`: LOG → LOG.1 → … → LOG.<keep>."""
    log = spec.log(index)
    try:
        if log.stat().st_size < max_bytes:
            return False
    except FileNotFoundError:
        return False
    for n in range(keep - 1, 0, -1):
        older = log.with_name(f"{log.name}.{n}")
        if older.exists():
            older.rename(log.with_name(f"{log.name}.{n + 1}"))
    log.rename(log.with_name(f"{log.name}.1"))
    _pipe(tmux, spec, index)
    return True


def rotated(log: Path, keep: int) -> list[Path]:
    """A pane's log files, oldest first."""
    older = [log.with_name(f"{log.name}.{n}") for n in range(keep, 0, -1)]
    return [p for p in [*older, log] if p.exists()]
