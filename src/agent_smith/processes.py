"""Which program a pid names now: pid files outlive their processes.

The crew's state directory keeps the pids of the firewall and the embedded
nats-server a supervisor started. After a reboot (or a supervisor killed
long ago) such a pid may name an unrelated process, which `down` must not
kill and `up` must not adopt: a pid counts as ours only while the process
runs with the arguments it was started with.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path


def command_line(pid: int) -> list[str] | None:
    """The arguments process `pid` runs with; None when there is no such process, or when
    it has none to show (a zombie, a kernel thread) or they cannot be read."""
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return None
    if not raw:
        return None
    return raw.rstrip(b"\0").decode(errors="surrogateescape").split("\0")


def runs_with(pid: int, args: Iterable[str]) -> bool:
    """Whether process `pid` runs, with every one of `args` among its arguments."""
    line = command_line(pid)
    return line is not None and set(args) <= set(line)


def runs_agent_smith(pid: int, verb: str) -> bool:
    """Whether process `pid` runs `agent-smith VERB` (the entry point, or `python -m agent_smith`),
    whatever options it was given."""
    line = command_line(pid)
    if line is None or verb not in line:
        return False
    return any(Path(arg).name == "agent-smith" or arg == "agent_smith" for arg in line[: line.index(verb)])
