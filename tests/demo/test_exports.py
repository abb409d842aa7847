"""The public surface of `agent_smith.demo`: what the CLI and the tests use, and nothing else."""

from __future__ import annotations

import agent_smith.demo as demo


def test_exported_members() -> None:
    assert set(demo.__all__) == {
        "STEP_TITLES",
        "Cast",
        "Demo",
        "DemoFailed",
        "DemoInterrupted",
        "DemoOptions",
        "Observation",
        "Progress",
        "Snapshot",
        "Step",
        "advance",
        "checks",
        "clean_env",
        "run_demo",
        "step_durations",
    }
    for name in demo.__all__:
        assert getattr(demo, name) is not None
