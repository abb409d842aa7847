"""The demo's summary as a person reads it in a narrow terminal or a file."""

from __future__ import annotations

import io
from typing import Any

from rich.console import Console

from agent_smith.demo.steps import STEP_TITLES, Step
from agent_smith.demo.view import summary

LONG = "/tmp/agent-smith-demo-abcdefgh/state/demo/agents/reviewbot/state/hooks/hooks.log"


def _record(steps: dict[str, Any]) -> dict[str, Any]:
    return {
        "steps": steps,
        "outcome": "complete",
        "complete": True,
        "wall_time": 12.3,
        "setup": {"start Synapse": 2.1},
        "logs": {"run directory": "/tmp/agent-smith-demo-abcdefgh", "reviewbot hooks": LONG},
    }


def _shown(record: dict[str, Any]) -> str:
    sink = io.StringIO()
    # As the CLI's console prints it (`AppContext`): 80 columns where nothing says otherwise.
    Console(file=sink, width=80, color_system=None, soft_wrap=True).print(summary(record))
    return sink.getvalue()


def test_every_log_path_is_shown_whole_on_a_line_of_its_own_in_80_columns() -> None:
    lines = _shown(_record({})).splitlines()
    # A selection in the terminal copies the path as one: never folded across lines, nor cut.
    assert [line.split() for line in lines if LONG in line] == [["reviewbot", "hooks", LONG]]
    assert [line.split() for line in lines if line.startswith("run directory")] == [
        ["run", "directory", "/tmp/agent-smith-demo-abcdefgh"]
    ]
    assert "…" not in "".join(lines)


def test_steps_are_listed_in_the_order_they_were_done_each_took_counting_from_the_row_above() -> None:
    # The refused request waits on no other step: here it came before the merge.
    done = {"asked": 2.2, "pr_opened": 4.5, "reviewed": 7.1, "addressed": 7.1, "refused": 8.3, "merged": 8.8}
    text = _shown(_record({step: {"done_at": at} for step, at in done.items()}))
    rows = [line for line in text.splitlines() if "✓" in line]
    assert [row.split("│")[1].split(".")[0].strip() for row in rows] == ["1", "2", "3", "4", "6", "5"]
    assert [row.split("│")[-1].strip() for row in rows] == ["2.2s", "2.3s", "2.6s", "0.0s", "1.2s", "0.5s"]


def test_steps_not_done_follow_those_done_in_the_story_order() -> None:
    text = _shown(_record({"asked": {"done_at": 2.0}, "refused": {"done_at": 3.0}}))
    titled = [step for line in text.splitlines() for step in Step if STEP_TITLES[step][:30] in line]
    assert titled == [Step.ASKED, Step.REFUSED, Step.PR_OPENED, Step.REVIEWED, Step.ADDRESSED, Step.MERGED]
