"""A thin shell over the tmux binary, always on a private server (``tmux -L <socket>``).

agent-smith never talks to the user's default tmux server and never reads
the user's ``~/.tmux.conf`` (``-f /dev/null``): sessions look the same on
every machine. The server starts with an explicit, minimal environment, and
each session gets exactly the environment its caller gives it, so ambient
variables (CA bundles, proxies, tokens) never leak into an agent.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from agent_smith.errors import MissingPartError, OperationError

DEFAULT_WIDTH = 160
DEFAULT_HEIGHT = 50
_POLL = 0.05
_KILL_WAIT = 5.0
_SERVER_PATH = "/usr/local/bin:/usr/bin:/bin"
# Chained after every `new-session`: the server reads no config (`-f /dev/null`). Claude Code asks
# for focus events and, without them, advises editing ~/.tmux.conf, which this server never reads.
SERVER_OPTIONS = (";", "set-option", "-s", "focus-events", "on")


@dataclass(frozen=True)
class TmuxSession:
    name: str
    pane_pid: int


def find_tmux() -> str:
    found = shutil.which("tmux")
    if found is None:
        raise MissingPartError("tmux is not installed: install it with `apt-get install tmux`")
    return found


class Tmux:
    """One private tmux server, addressed by its socket name."""

    def __init__(
        self,
        socket_name: str,
        *,
        binary: str | None = None,
        server_env: Mapping[str, str] | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if not socket_name or "/" in socket_name:
            raise ValueError(f"tmux socket name {socket_name!r} must be a plain name")
        self.socket_name = socket_name
        self._binary = binary or find_tmux()
        self._server_env = dict(server_env) if server_env is not None else _minimal_env()
        self._clock = clock
        self._sleep = sleep

    def _run(self, *args: str, check: bool = True, client_path: str | None = None) -> subprocess.CompletedProcess[str]:
        argv = [self._binary, "-L", self.socket_name, "-f", "/dev/null", *args]
        env = self._server_env if client_path is None else {**self._server_env, "PATH": client_path}
        result = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=30, check=False)
        if check and result.returncode != 0:
            message = (result.stderr or result.stdout).strip().splitlines()
            reason = message[0] if message else f"exit {result.returncode}"
            raise OperationError(f"tmux {args[0]} on socket {self.socket_name!r} failed: {reason}")
        return result

    def command(self, *args: str, check: bool = True, client_path: str | None = None) -> str:
        """Run any tmux command on this server (layouts beyond one pane); its stdout."""
        return self._run(*args, check=check, client_path=client_path).stdout

    def new_session(
        self,
        name: str,
        command: Sequence[str],
        *,
        env: Mapping[str, str],
        cwd: Path,
        width: int = DEFAULT_WIDTH,
        height: int = DEFAULT_HEIGHT,
        remain_on_exit: bool = False,
    ) -> TmuxSession:
        """Start `command` (argv, run without a shell) detached in a new session.

        The pane's environment is `env` plus what tmux itself adds (TERM,
        TMUX, TMUX_PANE, SHELL) and LANG; tmux takes the pane's PATH from the
        client that creates the session, so the client runs with `env`'s PATH.

        With `remain_on_exit` the pane stays after the command exits, so its
        last screen can still be read (a crashed agent's error, say).

        `env` goes on tmux's command line (``-e``), which the server that the
        first session starts keeps for its whole life: nothing secret belongs
        in it. Agents' panes get theirs from a file (`session.open_session`).
        """
        if not command:
            raise ValueError("a tmux session needs a command")
        env_args = [arg for key, value in env.items() for arg in ("-e", f"{key}={value}")]
        # Chained in one tmux command list so the option is set before a fast-exiting
        # command can end the pane.
        keep = [";", "set-option", "-w", "-t", _pane(name), "remain-on-exit", "on"] if remain_on_exit else []
        out = self._run(
            "new-session", "-d", "-s", name, "-x", str(width), "-y", str(height),
            "-c", str(cwd), *env_args, "-P", "-F", "#{pane_pid}", "--", *command, *keep,
            *SERVER_OPTIONS,
            client_path=env.get("PATH"),
        ).stdout  # fmt: skip
        return TmuxSession(name, int(out.split()[0]))

    def send_text(self, name: str, text: str, *, echo_timeout: float = 5.0) -> None:
        """Type `text` literally, then press Enter as a separate key (as a person would).

        Enter waits until the end of the text shows in the pane (at most `echo_timeout`):
        pressed during the burst, the CLI takes it as part of a paste and leaves it unsubmitted.
        """
        if text:
            self._run("send-keys", "-t", _pane(name), "-l", text)
            tail = "".join(text.split())[-16:]
            deadline = self._clock() + echo_timeout
            while tail not in "".join(self.capture(name).split()) and self._clock() < deadline:
                self._sleep(_POLL)
        self._run("send-keys", "-t", _pane(name), "Enter")

    def send_keys(self, name: str, *keys: str) -> None:
        """Press named keys (``Enter``, ``Escape``, ``C-c``, ``Down``)."""
        self._run("send-keys", "-t", _pane(name), *keys)

    def capture(self, name: str, *, history: bool = False) -> str:
        """The pane's text (joined wrapped lines); with `history` the scrollback too."""
        extra = ["-S", "-"] if history else []
        return self._run("capture-pane", "-p", "-J", "-t", _pane(name), *extra).stdout

    def pane_dead(self, name: str) -> bool:
        return self._run("display-message", "-p", "-t", _pane(name), "#{pane_dead}").stdout.strip() == "1"

    def wait_for(
        self, name: str, pattern: str | re.Pattern[str], *, timeout: float, history: bool = False
    ) -> re.Match[str]:
        """Poll the pane until `pattern` matches; OperationError with the pane's tail at the deadline."""
        regex = re.compile(pattern) if isinstance(pattern, str) else pattern
        deadline = self._clock() + timeout
        screen = ""
        while True:
            try:
                screen = self.capture(name, history=history)
            except OperationError:
                if self.has_session(name):
                    raise
                raise OperationError(f"tmux session {name!r} ended while waiting for {regex.pattern!r}") from None
            found = regex.search(screen)
            if found:
                return found
            if self._clock() >= deadline:
                tail = "\n".join(line for line in screen.rstrip().splitlines()[-15:])
                raise OperationError(
                    f"tmux session {name!r}: no {regex.pattern!r} within {timeout:g}s; the pane ends with:\n{tail}"
                )
            self._sleep(_POLL)

    @property
    def socket_path(self) -> Path:
        """Where the server listens, by tmux's own rule: ``$TMUX_TMPDIR`` (else /tmp), ``tmux-UID``."""
        return Path(self._server_env.get("TMUX_TMPDIR") or "/tmp") / f"tmux-{os.getuid()}" / self.socket_name

    def _absent(self) -> bool:
        """Whether no server listens, known without a tmux process (each costs a supervisor
        starting its agents ~4 ms): no socket, or one nothing listens on, which tmux leaves
        behind when its server ends. Anything less clear is left to tmux to answer."""
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
            try:
                probe.connect(str(self.socket_path))
            except (FileNotFoundError, ConnectionRefusedError):
                return True
            except OSError:
                return False
        return False

    def has_session(self, name: str) -> bool:
        if self._absent():
            return False
        return self._run("has-session", "-t", _session(name), check=False).returncode == 0

    def list_sessions(self) -> list[str]:
        if self._absent():
            return []
        result = self._run("list-sessions", "-F", "#{session_name}", check=False)
        return result.stdout.split() if result.returncode == 0 else []

    def server_pid(self) -> int | None:
        if self._absent():
            return None
        result = self._run("display-message", "-p", "#{pid}", check=False)
        return int(result.stdout.strip()) if result.returncode == 0 and result.stdout.strip() else None

    def reap(self) -> None:
        """Make the server collect the processes of panes that ended.

        tmux 3.3a can miss a SIGCHLD: the pane's process then stays a zombie and
        the pane has no exit status until another child of the server exits
        (seen here in about 1 run in 15). A SIGCHLD of our own makes it reap.
        """
        pid = self.server_pid()
        if pid is not None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGCHLD)

    def pane_pids(self) -> list[int]:
        if self._absent():
            return []
        result = self._run("list-panes", "-a", "-F", "#{pane_pid}", check=False)
        return [int(pid) for pid in result.stdout.split()] if result.returncode == 0 else []

    def kill_session(self, name: str, *, grace: float = 5.0) -> None:
        """Kill one session and wait for its processes (the pane's and their children) to be gone."""
        if not self.has_session(name):
            return
        panes = self._run("list-panes", "-s", "-t", _session(name), "-F", "#{pane_pid}", check=False).stdout.split()
        pids = _with_descendants([int(pid) for pid in panes])
        self._run("kill-session", "-t", _session(name), check=False)
        _signal_all(pids, signal.SIGTERM)
        self._reap(pids, grace)

    def kill_server(self, *, grace: float = 5.0) -> None:
        """Kill the private server and every pane process it ran; a no-op when none runs."""
        pids = _with_descendants(self.pane_pids())
        server = self.server_pid()
        if server is None:
            # It ended on its own (its last session did): its socket may be left all the same.
            self._remove_dead_socket()
            return
        self._run("kill-server", check=False)
        _signal_all(pids, signal.SIGTERM)
        self._reap([*pids, server], grace)
        self._remove_dead_socket()

    def _remove_dead_socket(self) -> None:
        """Remove the socket tmux 3.3a leaves when its server ends. Only that one: a server started
        since made a new socket (another inode), which stays."""
        with contextlib.suppress(FileNotFoundError):
            seen = self.socket_path.stat().st_ino
            if self._absent() and self.socket_path.stat().st_ino == seen:
                self.socket_path.unlink()

    def _reap(self, pids: Sequence[int], grace: float) -> None:
        # tmux has sent SIGHUP to each pane's process group and the caller SIGTERM to
        # the rest; anything still up after `grace` seconds is killed with its group.
        self._wait_gone(pids, grace)
        for pid in pids:
            if _alive(pid):
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(pid, signal.SIGKILL)
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(pid, signal.SIGKILL)
        if not self._wait_gone(pids, _KILL_WAIT):
            survivors = [pid for pid in pids if _alive(pid)]
            raise OperationError(f"tmux socket {self.socket_name!r}: processes {survivors} survived SIGKILL")

    def _wait_gone(self, pids: Sequence[int], seconds: float) -> bool:
        deadline = self._clock() + seconds
        while any(_alive(pid) for pid in pids):
            if self._clock() >= deadline:
                return False
            self._sleep(_POLL)
        return True


def _session(name: str) -> str:
    return f"={name}"


def _pane(name: str) -> str:
    return f"={name}:"


def _alive(pid: int) -> bool:
    """True while `pid` exists and is not a zombie waiting to be reaped by someone else."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as fh:
            state = fh.read().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return False
    return state != "Z"


def _signal_all(pids: Sequence[int], signum: signal.Signals) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signum)


def _with_descendants(roots: Sequence[int]) -> list[int]:
    """`roots` and every process below them: an agent's tool may start jobs in their own
    process group, which tmux's SIGHUP to the pane's group would miss."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text(errors="replace")
            except OSError:
                continue
            parents[int(entry.name)] = int(stat.rsplit(")", 1)[1].split()[1])
    found = list(roots)
    frontier = set(roots)
    while frontier:
        frontier = {pid for pid, parent in parents.items() if parent in frontier} - set(found)
        found.extend(sorted(frontier))
    return found


def _minimal_env() -> dict[str, str]:
    return {
        "PATH": _SERVER_PATH,
        "LANG": "C.UTF-8",
        "TERM": "xterm-256color",
        "HOME": os.environ.get("HOME", "/root"),
    }
