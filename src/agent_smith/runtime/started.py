"""The crew as its supervisor started it, found from the crew directory alone.

`down` and `status` read crew.yaml to find the crew's state. Edited while the
crew runs, crew.yaml may no longer load, or may name other state (another
`runtime.state_dir`, crew name or tmux socket, an agent gone): `down` would
then stop nothing, or not everything, and what it left would have nothing
left that knows it. So the supervisor keeps the crew it started with in its
runtime directory (`crew.json`) and links that directory from the user's
state, by the crew directory (`~/.local/state/agent-smith/.started/<digest>`;
no crew is named with a dot). A full `down` removes the link once everything
is stopped; until then the crew as started is what runs.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import uuid
from pathlib import Path

from agent_smith.crew import Crew, CrewPaths
from agent_smith.fsutil import write_atomic

CREW_AS_STARTED = "crew.json"
_LINKS = Path("~/.local/state/agent-smith/.started")

log = logging.getLogger(__name__)


def _link(directory: Path) -> Path:
    digest = hashlib.sha256(str(directory.resolve()).encode()).hexdigest()[:32]
    return _LINKS.expanduser() / digest


def keep_started(crew: Crew, runtime: Path) -> None:
    """Keep `crew` in `runtime`, its supervisor's directory, and link it from `crew`'s directory
    (a crew not read from one cannot be found by it: nothing to do)."""
    if crew.directory is None:
        return
    document = {"directory": str(crew.directory.resolve()), "crew": crew.model_dump(mode="json")}
    link = _link(crew.directory)
    fresh = link.with_name(f".{link.name}.{uuid.uuid4().hex}")
    try:
        write_atomic(runtime / CREW_AS_STARTED, json.dumps(document) + "\n", 0o600, durable=False)
        link.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        fresh.symlink_to(runtime.absolute())
        os.replace(fresh, link)
    except OSError as exc:
        # The crew runs all the same; only an edited crew.yaml would then hide it from `down`.
        log.warning("cannot keep the crew as started in %s: %s", link, exc.strerror or exc)
        with contextlib.suppress(OSError):
            fresh.unlink()


def where_it_runs(crew: Crew) -> tuple[Path, str]:
    """What tells two crews' processes apart: their state and their tmux server."""
    return CrewPaths.of(crew).root, crew.tmux_socket


def started_runtime(directory: Path) -> Path | None:
    """The runtime directory of the crew last started from `directory`, while its link is kept."""
    try:
        return Path(os.readlink(_link(directory)))
    except OSError:
        return None


def started_from(runtime: Path) -> Path | None:
    """The crew directory of the crew its supervisor keeps in `runtime`; None when it keeps none
    (or what it keeps cannot be read)."""
    try:
        document = json.loads((runtime / CREW_AS_STARTED).read_text())
    except (OSError, ValueError):
        return None
    directory = document.get("directory") if isinstance(document, dict) else None
    return Path(directory) if isinstance(directory, str) else None


def started_crew(directory: Path) -> Crew | None:
    """The crew as the supervisor last started from `directory` had it, while its link is kept;
    None when there is none, or what it left cannot be read (as if nothing was started)."""
    try:
        document = json.loads((_link(directory) / CREW_AS_STARTED).read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(document, dict) or document.get("directory") != str(directory.resolve()):
        return None
    try:
        return Crew.model_validate(document.get("crew")).located_in(directory)
    except ValueError:
        return None


def forget_started(crew: Crew, runtime: Path) -> None:
    """Remove the link of `crew`'s directory when it is to `runtime`: the crew started there is stopped."""
    if crew.directory is None:
        return
    if started_runtime(crew.directory) == runtime.absolute():
        with contextlib.suppress(OSError):
            _link(crew.directory).unlink()
