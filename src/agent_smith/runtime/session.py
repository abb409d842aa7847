"""An agent's tmux session: pane 0 claude, pane 1 a shell, both panes' output piped to log files.

Panes are addressed explicitly (``=SESSION:0.0``, ``=SESSION:0.1``) because a
person attached to the session may switch the active pane at any time.
Pane 0 keeps its window after claude exits (`remain-on-exit`), so the
supervisor sees the exit status and restarts claude in place with
`respawn-pane`, leaving the shell in pane 1 as it was.

Each pane carries its role in a pane option (`@agent_smith_pane`): a person
attached may close a pane (`C-b x`), and tmux then renumbers the others, so
the shell would pass for claude by its index. By role, the closed pane is
seen missing and opened again where it was.

A pane's environment holds the agent's proxy URL, password included, so it
never goes on a command line (``tmux -e`` would put it in the argv of the
tmux client and of the server it starts, readable by anyone in ``ps``): it
is written to a file only the user can read, which the pane's ``/bin/sh``
sources before it execs the real command.

Each pane's output goes to its log in chunks (LOG.000000, LOG.000001, …, LOG being
`pane_log`), written by one `split` per pane that begins the next chunk itself at the
chunk size: rotating by piping the pane again would lose what tmux had buffered for the
old pipe (it frees that buffer unwritten, ~4 KB under steady output). The supervisor only
removes the oldest chunks (`prune`); readers follow the newest (`panelog.Follower`).
"""

from __future__ import annotations

import os
import re
import shlex
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from agent_smith.errors import OperationError
from agent_smith.fsutil import write_atomic
from agent_smith.runtime.launch import AgentSpec
from agent_smith.runtime.tmux import DEFAULT_HEIGHT, DEFAULT_WIDTH, SERVER_OPTIONS, Tmux

CLAUDE_PANE = 0
SHELL_PANE = 1
_ROLE = "@agent_smith_pane"
_ROLES = {"claude": CLAUDE_PANE, "shell": SHELL_PANE}
# A session option: the session's panes have roles (one opened before they did goes by index).
_MARKED = "@agent_smith_roles"
_FORMAT = "\t".join(
    f"#{{{key}}}"
    for key in (
        "session_name", "pane_index", "pane_dead", "pane_dead_status", "pane_pid", "pane_dead_signal",
        "pane_id", "window_index", _ROLE, _MARKED,
    )
)  # fmt: skip
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
# `set -a` exports what the file assigns; "$0" is the file, "$@" the command.
_SOURCE_THEN_EXEC = 'set -a && . "$0" && set +a && exec "$@"'
_SCREEN_END = "agent-smith-screen-end-7f3c9a"
# A chunk's number has this many digits: split cannot widen it once started from a number,
# and a million chunks of 10 MB is more than a pane writes.
_CHUNK_DIGITS = 6


@dataclass(frozen=True)
class PaneStatus:
    session: str
    index: int  # its number in the session's first window, where the agent's panes are
    dead: bool
    exit_code: int | None
    pid: int
    id: str  # tmux's pane id (`%N`): a target that stays the pane's whatever is renumbered


def pane(session: str, index: int) -> str:
    return f"={session}:0.{index}"


def panes(tmux: Tmux) -> dict[tuple[str, int], PaneStatus]:
    """The agents' panes on the server, in one tmux call; none when no server runs.

    Any other failure raises OperationError: an unanswered question must not
    read as "every agent died", which would restart them all.
    """
    if tmux.server_pid() is None:
        return {}
    return _parse_panes(tmux.command("list-panes", "-a", "-F", _FORMAT))


def look(tmux: Tmux, sessions: Sequence[str]) -> tuple[dict[tuple[str, int], PaneStatus], dict[str, str]]:
    """The agents' panes (as `panes`) and claude's screen in each of `sessions`, in one tmux call.

    The supervisor looks this often while agents start: one tmux process per
    look instead of three. Claude's pane is read where it is opened (pane 0),
    and the screen kept only when that pane is still claude's; otherwise, or
    when the call fails (no server, or a session ended during it, which stops
    tmux's command list), the separate calls answer.
    """
    args = ["list-panes", "-a", "-F", _FORMAT, ";", "display-message", "-p", _SCREEN_END]
    for session in sessions:
        target = pane(session, CLAUDE_PANE)
        args += [";", "display-message", "-p", "-t", target, "#{pane_id}"]
        args += [";", "capture-pane", "-p", "-J", "-t", target, ";", "display-message", "-p", _SCREEN_END]
    parts = tmux.command(*args, check=False).split(_SCREEN_END + "\n")
    if len(parts) != len(sessions) + 2:
        live = panes(tmux)
        return live, screens(tmux, [claude for s in sessions if (claude := live.get((s, CLAUDE_PANE))) is not None])
    live = _parse_panes(parts[0])
    shown: dict[str, str] = {}
    for session, part in zip(sessions, parts[1:-1], strict=True):
        read_from, _, screen_text = part.partition("\n")
        claude = live.get((session, CLAUDE_PANE))
        if claude is not None and claude.id == read_from:
            shown[session] = screen_text
        elif claude is not None:
            shown[session] = screen(tmux, claude.id)
    return live, shown


def _parse_panes(out: str) -> dict[tuple[str, int], PaneStatus]:
    """The agents' panes, keyed by (session, CLAUDE_PANE or SHELL_PANE) after their role (pure).

    A pane without a role is a person's (they split one, or opened a window),
    never the agent's. In a session opened before panes had roles (no session
    marker), the panes of its first window go by their number.
    """
    found: dict[tuple[str, int], PaneStatus] = {}
    for line in out.splitlines():
        parts = line.split("\t")
        if len(parts) != 10 or not parts[1].isdigit() or not parts[4].isdigit():
            continue
        code = int(parts[3]) if parts[3].isdigit() else None
        if code is None and parts[5].isdigit():
            # Killed by a signal: reported the way shells do, 128 + the signal number.
            code = 128 + int(parts[5])
        status = PaneStatus(parts[0], int(parts[1]), parts[2] == "1", code, int(parts[4]), parts[6])
        if parts[9]:
            role = _ROLES.get(parts[8])
        else:
            role = status.index if parts[7] == "0" and status.index in _ROLES.values() else None
        if role is not None:
            found[(status.session, role)] = status
    return found


def env_script(env: Mapping[str, str]) -> str:
    """`env` as POSIX shell assignments, each value single-quoted (pure)."""
    bad = [key for key in env if not _NAME.fullmatch(key)]
    if bad:
        raise OperationError(f"environment variable name {bad[0]!r} cannot be passed to an agent's pane")
    return "".join(f"{key}={shlex.quote(value)}\n" for key, value in env.items())


def env_file(spec: AgentSpec, index: int) -> Path:
    """Where a pane's environment is kept between the supervisor writing it and the pane reading it."""
    return spec.state_dir / f"{spec.session}.{'claude' if index == CLAUDE_PANE else 'shell'}.env"


def sourcing(env: Mapping[str, str], path: Path, command: Sequence[str]) -> list[str]:
    """Write `env` to `path` (0600) and return the argv that runs `command` with it, no value in it."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    write_atomic(path, env_script(env), 0o600, durable=False)
    return ["/bin/sh", "-c", _SOURCE_THEN_EXEC, str(path), *command]


def _role(spec: AgentSpec, index: int, role: str) -> list[str]:
    return ["set-option", "-p", "-t", pane(spec.session, index), _ROLE, role]


def _roles(spec: AgentSpec, claude: int, shell: int) -> list[str]:
    """Mark the panes at `claude` and `shell` with their roles, and the session as having them."""
    return [
        *_role(spec, claude, "claude"), ";", *_role(spec, shell, "shell"),
        ";", "set-option", "-t", f"={spec.session}:", _MARKED, "on",
    ]  # fmt: skip


def _pipe(spec: AgentSpec, role: int, index: int) -> list[str]:
    """Pipe the pane at `index` to the log of `role` (CLAUDE_PANE or SHELL_PANE), unless it is piped
    already.

    A pane respawned still has its pipe (tmux keeps it across `respawn-pane`), and it is left
    alone: replacing a pipe, tmux drops what it had buffered for the old one. A new pipe numbers
    its chunks on from the last one on disk, since split truncates the files it opens: an earlier
    session's output is never written over.
    """
    log = spec.log(role)
    target = pane(spec.session, index)
    # split is as cheap as cat (one small process per pane) and cuts the chunks itself.
    split = (
        f"exec split -b {spec.log_max_bytes} -a {_CHUNK_DIGITS} --numeric-suffixes={next_chunk(chunk_numbers(log))}"
        f" - {shlex.quote(f'{log}.')}"
    )
    return ["if-shell", "-F", "-t", target, "#{pane_pipe}", "", f"pipe-pane -t {_quoted(target)} {_quoted(split)}"]


def _quoted(text: str) -> str:
    """`text` as one argument of a tmux command string (pure): `if-shell` parses its commands."""
    escaped = text.replace("\\", "\\\\").replace('"', '\\"').replace("$", "\\$")
    return f'"{escaped}"'


def open_session(tmux: Tmux, spec: AgentSpec, claude: Iterable[str], env: Mapping[str, str]) -> int:
    """Create the two-pane session and start claude with `env`; the pid of claude's pane.

    One tmux command list does it all: the server runs the list before it reads any
    pane output, so both pipes are attached before the first byte either pane writes,
    and `remain-on-exit` is set before a fast-exiting claude could end its pane.
    """
    spec.log_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    first = sourcing(env, env_file(spec, CLAUDE_PANE), list(claude))
    shell = sourcing(spec.env, env_file(spec, SHELL_PANE), spec.shell)
    target = pane(spec.session, CLAUDE_PANE)
    out = tmux.command(
        "new-session", "-d", "-s", spec.session, "-x", str(DEFAULT_WIDTH), "-y", str(DEFAULT_HEIGHT),
        "-c", str(spec.cwd), "-P", "-F", "#{pane_pid}", "--", *first,
        ";", "set-option", "-w", "-t", target, "remain-on-exit", "on",
        ";", *_pipe(spec, CLAUDE_PANE, CLAUDE_PANE),
        ";", "split-window", "-d", "-v", "-t", target, "-c", str(spec.shell_cwd), "--", *shell,
        ";", *_pipe(spec, SHELL_PANE, SHELL_PANE),
        ";", *_roles(spec, CLAUDE_PANE, SHELL_PANE),
        *SERVER_OPTIONS,
        client_path=spec.env.get("PATH"),
    )  # fmt: skip
    return int(out.split()[0])


def restart_claude(
    tmux: Tmux,
    spec: AgentSpec,
    claude: Iterable[str],
    env: Mapping[str, str],
    *,
    at: PaneStatus | None,
    shell: PaneStatus | None,
) -> None:
    """Start claude again, with `env`: in its pane `at`, or, its pane closed (`at` None), in a
    new one above the `shell`'s; the shell is left alone. With neither pane left, the caller
    opens the session anew."""
    argv = sourcing(env, env_file(spec, CLAUDE_PANE), list(claude))
    if at is not None:
        start, index, roles = "respawn-pane -k", at.index, _role(spec, at.index, "claude")
    elif shell is not None:
        # Above the shell: the new pane takes the shell's number, the shell the next.
        start, index, roles = "split-window -b -d -v", shell.index, _roles(spec, shell.index, shell.index + 1)
    else:
        raise OperationError(f"agent {spec.name}: neither of its panes is left to start claude beside")
    _start_pane(tmux, spec, start, index, spec.cwd, argv, roles, (CLAUDE_PANE, index))


def restart_shell(tmux: Tmux, spec: AgentSpec, *, at: PaneStatus | None, claude: PaneStatus | None) -> None:
    """Start the agent's shell again in its pane `at`, or, its pane closed (`at` None), in a
    new one below `claude`'s pane; claude is left alone."""
    argv = sourcing(spec.env, env_file(spec, SHELL_PANE), spec.shell)
    if at is not None:
        start, target, index, roles = "respawn-pane -k", at.index, at.index, _role(spec, at.index, "shell")
    elif claude is not None:
        start, target, index = "split-window -d -v", claude.index, claude.index + 1
        roles = _roles(spec, claude.index, index)
    else:
        raise OperationError(f"agent {spec.name}: neither of its panes is left to start a shell beside")
    _start_pane(tmux, spec, start, target, spec.shell_cwd, argv, roles, (SHELL_PANE, index))


def _start_pane(
    tmux: Tmux,
    spec: AgentSpec,
    start: str,
    target: int,
    cwd: Path,
    argv: Sequence[str],
    roles: Sequence[str],
    piped: tuple[int, int],
) -> None:
    """One tmux command list: `start` (respawn-pane or split-window) at pane `target`, running
    `argv` in `cwd`; mark the panes' `roles`; pipe the pane at `piped[1]` to the log of the role
    `piped[0]`."""
    role, index = piped
    tmux.command(
        *start.split(), "-t", pane(spec.session, target), "-c", str(cwd), "--", *argv,
        ";", *roles,
        ";", *_pipe(spec, role, index),
        client_path=spec.env.get("PATH"),
    )  # fmt: skip


def screen(tmux: Tmux, target: str) -> str:
    """What the pane `target` (claude's, by its id) shows."""
    return tmux.command("capture-pane", "-p", "-J", "-t", target, check=False)


def screens(tmux: Tmux, claudes: Sequence[PaneStatus]) -> dict[str, str]:
    """The screen of each of `claudes` (their panes), by session, with one tmux call instead of
    one per pane.

    A marker line follows each screen; a pane whose capture failed (it ended
    meanwhile: tmux then stops the list) is read again on its own.
    """
    if not claudes:
        return {}
    args: list[str] = []
    for claude in claudes:
        args += ["capture-pane", "-p", "-J", "-t", claude.id, ";"]
        args += ["display-message", "-p", _SCREEN_END, ";"]
    out = tmux.command(*args[:-1], check=False)
    parts = out.split(_SCREEN_END + "\n")
    found = {claude.session: part for claude, part in zip(claudes, parts[: len(parts) - 1], strict=False)}
    for claude in claudes:
        if claude.session not in found:
            found[claude.session] = screen(tmux, claude.id)
    return found


def type_text(tmux: Tmux, target: str, text: str) -> None:
    """Type into the pane `target` (claude's) as a person would: the text literally, then Enter
    as its own key."""
    tmux.command("send-keys", "-t", target, "-l", text)
    tmux.command("send-keys", "-t", target, "Enter")


def press(tmux: Tmux, target: str, key: str) -> None:
    tmux.command("send-keys", "-t", target, key)


def chunk(log: Path, number: int) -> Path:
    """Chunk `number` of the pane log `log`."""
    return log.with_name(f"{log.name}.{number:0{_CHUNK_DIGITS}d}")


def numbered(names: Iterable[str], log_name: str) -> list[int]:
    """The numbers of the chunks of the log named `log_name` among the file `names`, oldest first (pure)."""
    pattern = re.compile(rf"{re.escape(log_name)}\.([0-9]{{{_CHUNK_DIGITS}}})")
    return sorted(int(found[1]) for name in names if (found := pattern.fullmatch(name)))


def chunk_numbers(log: Path) -> list[int]:
    """The numbers of the pane log `log`'s chunks on disk, oldest first."""
    try:
        return numbered(os.listdir(log.parent), log.name)
    except FileNotFoundError:
        return []


def next_chunk(numbers: Sequence[int]) -> int:
    """The number a new pipe starts its chunks at, after a log's chunk `numbers` (pure)."""
    return numbers[-1] + 1 if numbers else 0


def to_prune(numbers: Sequence[int], keep: int) -> list[int]:
    """Of a log's chunk `numbers` (oldest first), those before the newest and the `keep` before it (pure)."""
    return list(numbers[: max(len(numbers) - keep - 1, 0)])


def prune(spec: AgentSpec, role: int, *, keep: int) -> None:
    """Remove the chunks of `role`'s log but the one being written and the `keep` before it.

    A reader that has one open (`logs -f`) reads it to its end all the same.
    """
    log = spec.log(role)
    for number in to_prune(chunk_numbers(log), keep):
        chunk(log, number).unlink(missing_ok=True)


def drawn(spec: AgentSpec, index: int) -> int:
    """How much the pane has drawn into its log so far (-1: no log yet); it grows as the pane draws.

    Counted as the newest chunk's number of whole chunks plus its size: a pipe started anew
    begins a chunk past the last one, which held no more than a chunk.
    """
    log = spec.log(index)
    numbers = chunk_numbers(log)
    if not numbers:
        return -1
    try:
        return numbers[-1] * spec.log_max_bytes + chunk(log, numbers[-1]).stat().st_size
    except FileNotFoundError:
        return -1
