"""`agent-smith demo`: the whole crew loop on one machine, from the operator's ask to the merged PR."""

from agent_smith.demo.run import Demo, DemoFailed, DemoInterrupted, DemoOptions, Snapshot, clean_env, run_demo
from agent_smith.demo.steps import STEP_TITLES, Cast, Observation, Progress, Step, advance, checks, step_durations

__all__ = [
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
]
