"""Regenerate the README's generated blocks (crew.yaml reference, container contract).

Run after changing the crew models: `.venv/bin/python scripts/update_readme.py`.
A test fails while the README is out of date.
"""

from __future__ import annotations

import sys
from pathlib import Path

from agent_smith.crew.reference import contract_table_rows, crew_reference_markdown

README = Path(__file__).resolve().parent.parent / "README.md"
BLOCKS = {"crew-reference": crew_reference_markdown, "contract-table": contract_table_rows}


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
