"""The crew directory's files that the pods need, read once: the I/O half of the render."""

from __future__ import annotations

from agent_smith.crew import LoadedCrew
from agent_smith.errors import OperationError, UsageError

_SKIP = frozenset({".DS_Store"})


def crew_files(loaded: LoadedCrew) -> dict[str, str]:
    """crew.yaml, agents/_shared/ and each crew agent's persona directory, by crew-relative path.

    Every agent's persona is included: `agent-smith assemble` loads the whole
    crew, and the team section names every teammate.
    """
    root = loaded.root
    wanted = [root / "agents" / "_shared", *(root / "agents" / a.name for a in loaded.crew.agents)]
    paths = [root / "crew.yaml"]
    for directory in wanted:
        if directory.is_dir():
            paths += sorted(p for p in directory.rglob("*") if p.is_file() and p.name not in _SKIP)
    files: dict[str, str] = {}
    for path in paths:
        relative = path.relative_to(root).as_posix()
        try:
            files[relative] = path.read_text(encoding="utf-8")
        except UnicodeDecodeError as exc:
            raise UsageError(f"{path}: not UTF-8 text; a crew ConfigMap carries text files only") from exc
        except OSError as exc:
            raise OperationError(f"{path}: cannot read: {exc.strerror}") from exc
    return files


__all__ = ["crew_files"]
