"""The supervisor's own logs (its log and the firewall's) kept bounded, as the panes' logs are.

Each is written by a process that keeps it open, in append mode (the supervisor's stderr, the
firewall's stdout): one past its limit is copied to ``NAME.1`` (older copies moved up to
``NAME.<keep>``, the oldest beyond it dropped) and emptied where it is, and its writers go on at
its start. A line written between the copy and the emptying is lost: the price of leaving the
file to the processes that hold it open.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

LOG_LIMIT = 10 * 1024 * 1024
LOG_COPIES = 3


def copies(path: Path, keep: int) -> list[Path]:
    """The copies a rotation of `path` keeps, newest first (pure)."""
    return [path.with_name(f"{path.name}.{n}") for n in range(1, keep + 1)]


def rotate_if_large(path: Path, *, limit: int = LOG_LIMIT, keep: int = LOG_COPIES) -> bool:
    """Rotate `path` when it holds more than `limit` bytes; whether it did."""
    try:
        if path.stat().st_size <= limit:
            return False
    except FileNotFoundError:
        return False
    kept = copies(path, keep)
    for older, newer in zip(reversed(kept[1:]), reversed(kept[:-1]), strict=True):
        if newer.exists():
            os.replace(newer, older)
    shutil.copyfile(path, kept[0])
    os.truncate(path, 0)
    return True
