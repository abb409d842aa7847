"""The crew directory's files that the pods need, read once: the I/O half of the render."""

from __future__ import annotations

from pathlib import Path

from agent_smith.crew import LoadedCrew
from agent_smith.deploy.render import FileContent
from agent_smith.errors import OperationError


def is_editor_litter(name: str) -> bool:
    """An editor's swap or backup file, or Finder's folder settings (vim `.x.swp`, emacs `x~`, `.DS_Store`).

    The home assembly never reads one (it takes CLAUDE.md, mcp.json, settings.json,
    .credentials.json and subagents/*.md by name), so leaving them out changes no pod.
    Carried, each save of an open editor would change the agent's rollout hash and
    restart it.
    """
    return name == ".DS_Store" or name.endswith(("~", ".swp", ".swo"))


def _read(path: Path) -> FileContent:
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise OperationError(f"{path}: cannot read: {exc.strerror}") from exc
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        # An image beside a persona, say: the ConfigMap carries it as binaryData, byte for byte.
        return raw


def crew_files(loaded: LoadedCrew) -> dict[str, FileContent]:
    """crew.yaml, agents/_shared/ and each crew agent's persona directory, by crew-relative path.

    Every agent's persona is included: `agent-smith assemble` loads the whole
    crew, and the team section names every teammate. A file is its text when it
    is UTF-8, else its bytes.
    """
    root = loaded.root
    wanted = [root / "agents" / "_shared", *(root / "agents" / a.name for a in loaded.crew.agents)]
    paths = [root / "crew.yaml"]
    for directory in wanted:
        if directory.is_dir():
            paths += sorted(p for p in directory.rglob("*") if p.is_file() and not is_editor_litter(p.name))
    return {path.relative_to(root).as_posix(): _read(path) for path in paths}


__all__ = ["crew_files"]
