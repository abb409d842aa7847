"""Finding every process an agent started, even those that left its process tree.

Claude Code starts hooks and MCP servers in sessions of their own, and they
outlive a claude that was killed (their parent becomes init). Killing the
tmux session therefore is not enough to leave nothing behind. Every pane is
started with ``AGENT_SMITH_AGENT=<crew state dir>:<agent>`` and claude with a fresh
``AGENT_SMITH_LAUNCH=<id>`` per start; children inherit both, so the
processes to end are found by their environment.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from collections.abc import Iterable
from pathlib import Path

AGENT_VAR = "AGENT_SMITH_AGENT"
LAUNCH_VAR = "AGENT_SMITH_LAUNCH"


def tagged(variable: str, value: str, proc: Path = Path("/proc")) -> list[int]:
    """Live processes whose environment has ``variable=value`` (this process excluded)."""
    needle = f"{variable}={value}".encode()
    found = []
    me = os.getpid()
    for entry in proc.iterdir():
        if not entry.name.isdigit() or int(entry.name) == me:
            continue
        try:
            environ = (entry / "environ").read_bytes()
        except OSError:
            continue
        if needle in environ.split(b"\0"):
            found.append(int(entry.name))
    return found


def environment_value(pid: int, variable: str) -> str | None:
    """`variable` in the environment `pid` was started with (None when unset or unreadable)."""
    prefix = f"{variable}=".encode()
    try:
        environ = Path(f"/proc/{pid}/environ").read_bytes()
    except OSError:
        return None
    for entry in environ.split(b"\0"):
        if entry.startswith(prefix):
            return entry[len(prefix) :].decode(errors="replace")
    return None


def _alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text(errors="replace")
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def end(pids: Iterable[int], grace: float = 3.0) -> None:
    """SIGTERM, then SIGKILL whatever is still up after `grace` seconds."""
    pending = [pid for pid in pids if _alive(pid)]
    for pid in pending:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while any(_alive(pid) for pid in pending) and time.monotonic() < deadline:
        time.sleep(0.05)
    for pid in pending:
        if _alive(pid):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)


def sweep(variable: str, value: str, grace: float = 3.0) -> int:
    """End every process tagged ``variable=value``; how many there were."""
    pids = tagged(variable, value)
    end(pids, grace)
    return len(pids)
