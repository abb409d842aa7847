"""Helpers for the demo's real-parts tests: what is still running, and where a secret shows up."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable
from pathlib import Path


def processes_mentioning(needles: Iterable[str]) -> dict[int, str]:
    """Live processes (not this one) whose command line or environment contains any of `needles`."""
    wanted = [n.encode() for n in needles if n]
    found: dict[int, str] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            stat = (entry / "stat").read_text(errors="replace")
            if stat.rsplit(")", 1)[1].split()[0] == "Z":
                continue
            cmdline = (entry / "cmdline").read_bytes()
            environ = (entry / "environ").read_bytes()
        except OSError:
            continue
        if any(n in cmdline or n in environ for n in wanted):
            found[int(entry.name)] = cmdline.replace(b"\0", b" ").decode(errors="replace")[:200]
    return found


def files_containing(root: Path, secret: str, *, skip: Iterable[Path] = ()) -> list[Path]:
    """Every file under `root` (but `skip`) whose bytes contain `secret`."""
    needle = secret.encode()
    skipped = [s.resolve() for s in skip]
    hits = []
    for path in root.rglob("*"):
        if not path.is_file() or path.is_symlink():
            continue
        if any(path.resolve().is_relative_to(s) for s in skipped):
            continue
        try:
            if needle in path.read_bytes():
                hits.append(path)
        except OSError:
            continue
    return hits


def demo_env(tmp_path: Path) -> dict[str, str]:
    """A clean environment for `agent-smith demo` run as a subprocess."""
    home = tmp_path / "home"
    home.mkdir(exist_ok=True)
    return {
        "PATH": f"{Path(sys.executable).parent}:/usr/local/bin:/usr/bin:/bin",
        "HOME": str(home),
        "LANG": "C.UTF-8",
        "TMPDIR": str(tmp_path),
    }
