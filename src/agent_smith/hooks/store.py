"""The hooks' files under the agent's state directory, written atomically."""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import json
from collections.abc import Iterator
from pathlib import Path

from agent_smith.fsutil import write_atomic

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any


def hooks_dir(state: Path) -> Path:
    return state / "hooks"


def read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def write_json(path: Path, data: Any, *, durable: bool = True) -> None:
    """Replace `path` atomically. `durable` also fsyncs (two disk flushes): for what must
    survive a crash, not for a watcher's pid or a cache the next check rewrites anyway."""
    write_atomic(path, json.dumps(data, indent=1, default=str), 0o600, durable=durable)


def log_line(state: Path, hook: str, message: str, now: dt.datetime | None = None) -> None:
    """One JSON line in the hooks' log (and never a secret: messages are written by us)."""
    stamp = (now or dt.datetime.now(dt.UTC)).isoformat(timespec="seconds")
    entry = json.dumps({"time": stamp, "hook": hook, "message": message})
    path = hooks_dir(state) / "hooks.log"
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("a", encoding="utf-8") as fh:
            fh.write(entry + "\n")
    except OSError:
        return


@contextlib.contextmanager
def exclusive(path: Path, *, wait: bool = False) -> Iterator[bool]:
    """Hold an flock on `path` (created if need be) for the `with` block: True once held. Without
    `wait`, False at once when another process holds it (the caller leaves the work to it)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX if wait else fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        try:
            yield True
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
