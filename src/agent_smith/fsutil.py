"""Files written so that a crash at any instant leaves either the old or the new content."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path


def write_atomic(path: Path, data: bytes | str, mode: int = 0o644, *, durable: bool = True) -> None:
    """Replace `path` with `data` atomically: temp file in the same directory, fsync, rename.

    The file has `mode` from its first byte on, so a secret-bearing file is
    never readable by others even for an instant. `durable=False` skips the two
    disk flushes (~3 ms each here): for files that describe running processes
    (a pid, a status, a pane's environment) or that the next run rewrites,
    which a crash of the machine makes moot; readers still see old or new.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    raw = data.encode() if isinstance(data, str) else data
    # os.open rather than tempfile: the hooks write through here and must start fast.
    tmp = path.parent / f".{path.name}.{os.urandom(6).hex()}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as fh:
            fh.write(raw)
            if durable:
                fh.flush()
                os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    if durable:
        fsync_dir(path.parent)


def fsync_dir(directory: Path) -> None:
    """Make the names in `directory` durable: a file's own fsync keeps its bytes, not its name."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
