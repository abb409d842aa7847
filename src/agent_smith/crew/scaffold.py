"""`agent-smith init`: write a working example crew."""

from __future__ import annotations

import json
from dataclasses import dataclass
from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import Path

from agent_smith.crew.schema import crew_json_schema
from agent_smith.errors import OperationError, UsageError
from agent_smith.fsutil import write_atomic

SCHEMA_FILE = "crew.schema.json"


@dataclass(frozen=True)
class Scaffolded:
    written: tuple[Path, ...]
    kept: tuple[Path, ...]


def scaffold_crew(directory: Path, *, force: bool = False) -> Scaffolded:
    """Write the example crew (two personas, shared rules, the schema) into `directory`. With
    `force` into a non-empty one, whose files are kept (a crew's edits are never overwritten) but
    for the schema, which is the model's."""
    if directory.exists() and not directory.is_dir():
        raise UsageError(f"{directory} exists and is not a directory")
    if directory.is_dir() and any(directory.iterdir()) and not force:
        raise UsageError(f"{directory} is not empty; pass --force to write the example crew into it anyway")
    written: list[Path] = []
    kept: list[Path] = []
    template = resources.files("agent_smith.crew").joinpath("template")
    try:
        for relative, source in _walk(template, Path()):
            target = directory / relative
            if target.exists() or target.is_symlink():
                kept.append(target)
                continue
            mode = 0o600 if target.name == ".credentials.json" else 0o644
            write_atomic(target, source.read_bytes(), mode)
            written.append(target)
        schema = directory / SCHEMA_FILE
        write_atomic(schema, json.dumps(crew_json_schema(), indent=2) + "\n")
    except OSError as exc:
        # A parent that is a file, a read-only place: what was written stays, complete (atomic).
        raise OperationError(f"cannot write the example crew into {directory}: {exc.strerror or exc}") from None
    written.append(schema)
    return Scaffolded(tuple(written), tuple(kept))


def _walk(node: Traversable, relative: Path) -> list[tuple[Path, Traversable]]:
    out: list[tuple[Path, Traversable]] = []
    for child in sorted(node.iterdir(), key=lambda c: c.name):
        if child.name == "__pycache__":
            continue
        if child.is_dir():
            out.extend(_walk(child, relative / child.name))
        else:
            out.append((relative / child.name, child))
    return out
