"""Events kept on disk until their publisher's event log is up: one JSON object a line.

The firewall (while the agents boot) and the supervisor (until its agents
have started) publish late, so as not to load the event log's client beside
the agents' boot. What they observe meanwhile is appended here with the
event id it will have; published, it is removed. A process killed
before that leaves the file for the next one, and an event it had published
already is stored once (the id is the `Nats-Msg-Id`). Nothing heavy is
imported: no event model, no client.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from agent_smith.errors import OperationError
from agent_smith.fsutil import write_atomic


def _line(item: Mapping[str, object]) -> str:
    # A time stamped as it happened goes as ISO text, which the event model reads back.
    return json.dumps(item, separators=(",", ":"), default=lambda value: value.isoformat()) + "\n"


def keep(path: Path, item: Mapping[str, object], *, durable: bool = True) -> None:
    """Append `item`; OSError when it cannot be. Durable, it is on disk before this returns;
    else in the file, which outlives a killed process, not a machine that stops (and costs no
    disk flush, ~3 ms here, to a supervisor telling `up` its agents are ready)."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        os.write(fd, _line(item).encode())
        if durable:
            os.fsync(fd)
    finally:
        os.close(fd)


def kept(path: Path, keys: frozenset[str]) -> list[dict[str, Any]]:
    """The items the file keeps, each with `keys`; a line torn by a crash (never fsynced, so never
    acknowledged) ends it, and rewriting what was read drops it."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        return []
    except OSError as exc:
        raise OperationError(f"{path}: cannot read the events kept there: {exc.strerror}") from exc
    items: list[dict[str, Any]] = []
    for line in lines:
        try:
            item = json.loads(line)
        except ValueError:
            break
        if not isinstance(item, dict) or not item.keys() >= keys:
            break
        items.append(item)
    return items


def rewrite(path: Path, items: Sequence[Mapping[str, object]]) -> None:
    """Keep only `items` (none: no file)."""
    if items:
        write_atomic(path, "".join(_line(i) for i in items), 0o600)
    else:
        path.unlink(missing_ok=True)
