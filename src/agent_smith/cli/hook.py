"""`agent-smith hook …`: the Claude Code hook commands (installed in settings.json by assemble).

The commands normally run through the fast path in `agent_smith.__main__`;
these Typer commands give them `--help` and the same behaviour otherwise.
"""

from __future__ import annotations

import typer

hook_app = typer.Typer(
    name="hook",
    help="Claude Code hook commands; each reads the hook's JSON on stdin.",
    no_args_is_help=True,
)


def _run(kind: str) -> None:
    from agent_smith.hooks import run

    raise typer.Exit(run(kind))


@hook_app.command("stop")
def stop() -> None:
    """Stop (asyncRewake): wake the agent when others leave review activity on its PRs (exit 2, reason on stderr)."""
    _run("stop")


@hook_app.command("prompt")
def prompt() -> None:
    """UserPromptSubmit: add the crew's reply style and the agent's state (quiet hours, PRs awaiting it)."""
    _run("prompt")


@hook_app.command("tool")
def tool() -> None:
    """PostToolUse: recognise a PR opened, reviewed or merged; publish it and announce new PRs to reviewers."""
    _run("tool")


@hook_app.command("deliver")
def deliver() -> None:
    """Deliver queued PR events and announcements (started detached by `hook tool`)."""
    _run("deliver")


def register(app: typer.Typer) -> None:
    app.add_typer(hook_app)
