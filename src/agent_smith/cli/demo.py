"""``agent-smith demo``: the whole crew loop on this machine, watched live, then summarised."""

from __future__ import annotations

import logging
import signal
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import FrameType
from typing import Annotated, Any

import typer
from rich.live import Live
from rich.markup import escape

from agent_smith.cli.context import app_context
from agent_smith.cli.output import AppContext
from agent_smith.demo import STEP_TITLES, DemoFailed, DemoInterrupted, DemoOptions, Snapshot, Step, run_demo
from agent_smith.demo.view import live_view, summary
from agent_smith.errors import OperationError
from agent_smith.logs import LogFormat


@contextmanager
def _sigterm_as_interrupt() -> Iterator[None]:
    """SIGTERM stops the demo the way Ctrl-C does: through the same teardown."""

    def interrupt(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


class _Headless:
    """Progress as plain lines on stderr: each bring-up phase, then each step as it is proven."""

    def __init__(self, out: AppContext) -> None:
        self.out = out
        self.shown: set[Step] = set()
        self.attach_shown = False

    def phase(self, name: str) -> None:
        self._say(f"• {escape(name)}", name, phase=name)

    def _say(self, markup: str, message: str, **fields: object) -> None:
        """A progress line: Rich `markup`, or with json logs `message` as one JSON object."""
        if self.out.log_format is LogFormat.json:
            self.out.log(logging.INFO, message, **fields)
        else:
            self.out.err.print(markup, highlight=False)

    def snapshot(self, snap: Snapshot) -> None:
        if snap.attach and not self.attach_shown:
            self.attach_shown = True
            for command in snap.attach:
                self._say(f"  attach: {escape(command)}", f"attach: {command}", attach=command)
        for step in Step:
            if step in snap.progress.steps and step not in self.shown:
                self.shown.add(step)
                at = snap.progress.steps[step]
                self._say(f"✓ {STEP_TITLES[step]} ({at:.1f}s)", f"{STEP_TITLES[step]} ({at:.1f}s)", step=step.value)


def demo(
    ctx: typer.Context,
    directory: Annotated[
        Path | None,
        typer.Option(
            "--dir",
            metavar="DIR",
            help="Run in this directory (default: a new one under $TMPDIR; either is left for its logs).",
        ),
    ] = None,
    duration: Annotated[
        float | None,
        typer.Option(
            "--duration", metavar="SECONDS", min=1.0, help="Stop everything after this many seconds, done or not."
        ),
    ] = None,
    keep: Annotated[
        bool,
        typer.Option("--keep", help="After the story, leave everything running to attach to, until Ctrl-C."),
    ] = False,
    json_out: Annotated[bool, typer.Option("--json", help="Print the run's record as JSON at the end.")] = False,
    step_timeout: Annotated[
        float,
        typer.Option(
            "--step-timeout", metavar="SECONDS", min=1.0, help="Give up when no step is proven for this many seconds."
        ),
    ] = 240.0,
) -> None:
    """Run the crew loop end to end: Synapse, the event log, the firewall, a GitHub stand-in and two real agents."""
    out = app_context(ctx)
    options = DemoOptions(directory=directory, duration=duration, keep=keep, step_timeout=step_timeout)
    live_wanted = out.err.is_terminal and not json_out
    try:
        with _sigterm_as_interrupt():
            record = _run_live(out, options) if live_wanted else _run_headless(out, options)
    except DemoFailed as exc:
        if json_out:
            out.print_json(exc.record)
        raise
    except DemoInterrupted as exc:
        # Only said where to look: the record stays in record.json, stdout empty, as for any interrupted verb.
        out.warn(f"interrupted; the record and the logs are in {exc.record['logs'].get('run directory', '?')}")
        raise KeyboardInterrupt from None
    if json_out:
        out.print_json(record)
    else:
        out.console.print(summary(record))
    if not record["complete"]:
        missing = [Step(k) for k, v in record["steps"].items() if v.get("done_at") is None]
        numbers = {step: number for number, step in enumerate(Step, start=1)}
        # By number: the titles hold semicolons of their own, so a list of them reads as one blur.
        raise OperationError(
            f"the demo ended ({record['outcome']}) with {len(missing)} of its {len(numbers)} steps not done "
            f"({', '.join(str(numbers[s]) for s in missing)}), the first being: {STEP_TITLES[missing[0]]}. "
            f"Logs: {record['logs'].get('run directory', '?')}"
        )


def _run_headless(out: AppContext, options: DemoOptions) -> dict[str, Any]:
    shown = _Headless(out)
    return run_demo(options, on_phase=shown.phase, on_snapshot=shown.snapshot)


def _run_live(out: AppContext, options: DemoOptions) -> dict[str, Any]:
    with Live(console=out.err, refresh_per_second=4, transient=False) as live:

        def phase(name: str) -> None:
            # A plain line above the view, as in the headless run: no log time nor source link.
            live.console.print(f"• {escape(name)}", highlight=False)

        def snapshot(snap: Snapshot) -> None:
            live.update(live_view(snap))

        return run_demo(options, on_phase=phase, on_snapshot=snapshot)


def register(app: typer.Typer) -> None:
    app.command("demo")(demo)
