"""The hooks' files under the agent's state directory, written atomically."""

from __future__ import annotations

import datetime as dt
import json
import os
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
    text = json.dumps(data, indent=1, default=str)
    if durable:
        write_atomic(path, text, 0o600)
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f".{path.name}.{os.getpid()}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(text)
    os.replace(tmp, path)


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
