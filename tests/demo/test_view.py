"""The demo's live view and summary as a person reads them in a narrow terminal or a file."""

from __future__ import annotations

import io
import re
from collections.abc import Callable
from typing import Any

import pytest
from rich.console import Console
from rich.live_render import LiveRender

from agent_smith.cli import demo as demo_cli
from agent_smith.cli.output import AppContext
from agent_smith.demo.run import DemoOptions, Snapshot
from agent_smith.demo.steps import STEP_TITLES, Observation, Progress, Step
from agent_smith.demo.view import live_view, summary

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


ATTACH = [
    "tmux -L agent-smith-demo-abcdefgh-0123456789 attach -t devbot",
    "tmux -L agent-smith-demo-abcdefgh-0123456789 attach -t reviewbot",
]


def _live(attach: list[str], events: list[dict[str, Any]], width: int) -> str:
    snapshot = Snapshot(
        elapsed=3.0,
        phase="the story",
        progress=Progress(),
        observation=Observation(),
        agents={"devbot": "working", "reviewbot": "idle"},
        chat=[],
        events=events,
        pull=None,
        attach=attach,
    )
    sink = io.StringIO()
    # As `Live` draws it on the CLI's soft-wrapping console: through a LiveRender.
    Console(file=sink, width=width, color_system=None, soft_wrap=True).print(LiveRender(live_view(snapshot)))
    return sink.getvalue()


def test_each_attach_command_is_on_a_line_of_its_own_whole() -> None:
    lines = _live(ATTACH, [], 100).splitlines()
    assert [line.rstrip() for line in lines if "attach -t" in line] == [f"attach: {c}" for c in ATTACH]


def test_an_attach_command_wider_than_the_terminal_is_folded_not_cut() -> None:
    text = _live(ATTACH, [], 40)
    flat = "".join(text.split())
    for command in ATTACH:
        assert "".join(f"attach: {command}".split()) in flat


def test_the_events_panel_tells_a_request_for_changes_from_an_approval() -> None:
    reviews = [
        {"type": "pr_reviewed", "agent": "reviewbot", "pr": 1, "state": "changes_requested"},
        {"type": "pr_reviewed", "agent": "reviewbot", "pr": 1, "state": "approved"},
    ]
    text = _live([], reviews, 100)
    assert "pr_reviewed reviewbot #1 changes requested" in text
    assert "pr_reviewed reviewbot #1 approved" in text


def test_live_bring_up_phases_are_plain_lines(monkeypatch: pytest.MonkeyPatch) -> None:
    def fake_run(options: DemoOptions, *, on_phase: Callable[[str], None], **_: object) -> dict[str, Any]:
        on_phase("starting Synapse")
        return {}

    monkeypatch.setattr(demo_cli, "run_demo", fake_run)
    sink = io.StringIO()
    err = Console(file=sink, width=100, force_terminal=True, color_system=None, soft_wrap=True)
    demo_cli._run_live(AppContext(err=err), DemoOptions())
    shown = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", sink.getvalue())  # Live's cursor moves
    # Not `console.log`'s "[22:44:00] • starting Synapse   demo.py:136".
    assert [line.strip() for line in shown.splitlines() if "Synapse" in line] == ["• starting Synapse"]
