"""The demo's summary as a person reads it in a narrow terminal or a file."""

from __future__ import annotations

import io

from rich.console import Console

from agent_smith.demo.view import summary


def test_every_log_path_is_shown_whole_in_80_columns() -> None:
    long = "/tmp/agent-smith-demo-abcdefgh/state/demo/agents/reviewbot/state/hooks/hooks.log"
    record = {
        "steps": {},
        "outcome": "complete",
        "complete": True,
        "wall_time": 12.3,
        "setup": {"start Synapse": 2.1},
        "logs": {"run directory": "/tmp/agent-smith-demo-abcdefgh", "reviewbot hooks": long},
    }
    sink = io.StringIO()
    Console(file=sink, width=80, color_system=None).print(summary(record))
    text = sink.getvalue()
    assert "…" not in text
    # Folded onto following lines when it does not fit: read back without the table's layout.
    cells = "".join(line.split("│")[-1].strip() for line in text.splitlines() if "│" in line)
    assert long in cells
