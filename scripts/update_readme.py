"""Regenerate the README's generated blocks: the crew.yaml reference, the container contract,
and the subsystem chapters (inlined from docs/*.md, the one place they are written).

Run after changing the crew models: `.venv/bin/python scripts/update_readme.py`.
A test fails while the README is out of date.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import Any

from agent_smith.crew.reference import contract_table_rows, crew_reference_markdown

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
CHAPTERS = (
    "home",
    "chat",
    "hooks",
    "events",
    "egress",
    "runtime",
    "forge",
    "kubernetes",
    "demo",
    "standins-model",
    "harness",
)


def subsystem_chapters() -> str:
    """docs/<chapter>.md in order, each headed at level 3 (headings inside code fences untouched)."""
    parts = []
    for name in CHAPTERS:
        path = ROOT / "docs" / f"{name}.md"
        if path.is_file():
            parts.append(_shifted(_from_root(path.read_text(encoding="utf-8").strip()), to_level=3))
    return "\n\n".join(parts)


def _from_root(text: str) -> str:
    """A chapter's links to its sibling docs, as the README (one directory up) reaches them."""
    return re.sub(r"\]\((?!https?:|/|#)([\w.-]+\.md)\)", r"](docs/\1)", text)


def _shifted(text: str, to_level: int) -> str:
    lines = text.splitlines()
    fenced = False
    top = None
    for line in lines:
        if line.startswith("```"):
            fenced = not fenced
        elif not fenced and line.startswith("#"):
            top = len(line) - len(line.lstrip("#"))
            break
    shift = to_level - (top or to_level)
    out, fenced = [], False
    for line in lines:
        if line.startswith("```"):
            fenced = not fenced
        elif not fenced and line.startswith("#"):
            level = len(line) - len(line.lstrip("#"))
            line = "#" * max(1, min(6, level + shift)) + line[level:]
        out.append(line)
    return "\n".join(out)


def verbs_table() -> str:
    """A row per CLI verb (sub-verbs included) with the first line of its help.

    Groups are walked with `list_commands` and `get_command`: the root loads a
    verb's module only when asked for it, so its `commands` stay empty until then."""
    import typer
    import typer.main

    from agent_smith.cli.app import app

    rows: list[str] = []

    def walk(group: Any, prefix: str) -> None:
        ctx = typer.Context(group)
        for name in sorted(group.list_commands(ctx)):
            sub = group.get_command(ctx, name)
            if sub is None or sub.hidden:
                continue
            path = f"{prefix} {name}".strip()
            summary = (sub.help or "").strip().split("\n")[0].replace("|", "\\|")
            if hasattr(sub, "list_commands"):
                if sub.invoke_without_command:
                    rows.append(f"| `{path}` | {summary} |")
                walk(sub, path)
            else:
                rows.append(f"| `{path}` | {summary} |")

    walk(typer.main.get_command(app), "")
    return "\n".join(["| verb | what it does |", "|---|---|", *rows])


BLOCKS = {
    "verbs": verbs_table,
    "crew-reference": crew_reference_markdown,
    "contract-table": contract_table_rows,
    "subsystems": subsystem_chapters,
}


def render(text: str) -> str:
    for name, make in BLOCKS.items():
        start, end = f"<!-- {name}:start -->", f"<!-- {name}:end -->"
        head, _, rest = text.partition(start)
        _, _, tail = rest.partition(end)
        text = f"{head}{start}\n{make()}\n{end}{tail}"
    return text


if __name__ == "__main__":
    current = README.read_text(encoding="utf-8")
    updated = render(current)
    if "--check" in sys.argv:
        sys.exit(0 if updated == current else 1)
    README.write_text(updated, encoding="utf-8")
