"""Entry point: global options, verb registration, and the one place errors become exit codes.

Exit codes: 0 ok, 1 failure while doing the work, 2 bad usage or configuration,
130 interrupted.
"""

from __future__ import annotations

from typing import Annotated, Any

import typer
from rich.markup import escape
from typer.core import TyperGroup

from agent_smith import __version__
from agent_smith.cli.context import AppContext
from agent_smith.errors import AgentSmithError
from agent_smith.logs import LogFormat, configure


class _ErrorsToExitCodes(TyperGroup):
    """The one place an agent-smith error becomes one line on stderr and an exit code."""

    def invoke(self, ctx: Any) -> Any:
        try:
            return super().invoke(ctx)
        except AgentSmithError as exc:
            err = AppContext().err
            for line in str(exc).splitlines() or [type(exc).__name__]:
                err.print(f"[red]error:[/] {escape(line)}", highlight=False, soft_wrap=True)
            raise typer.Exit(exc.exit_code) from None
        except KeyboardInterrupt:
            raise typer.Exit(130) from None


app = typer.Typer(
    cls=_ErrorsToExitCodes,
    name="agent-smith",
    help="Run a crew of long-lived Claude Code agents as peers.",
    no_args_is_help=True,
    rich_markup_mode="rich",
    pretty_exceptions_enable=False,
    add_completion=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _print_version(value: bool) -> None:
    if value:
        typer.echo(f"agent-smith {__version__}")
        raise typer.Exit()


@app.callback()
def root(
    ctx: typer.Context,
    log_format: Annotated[
        LogFormat,
        typer.Option(
            "--log-format",
            envvar="AGENT_SMITH_LOG_FORMAT",
            help="Log lines as text or one JSON object per line.",
        ),
    ] = LogFormat.text,
    log_level: Annotated[
        str,
        typer.Option("--log-level", envvar="AGENT_SMITH_LOG_LEVEL", help="debug, info, warning or error."),
    ] = "warning",
    version: Annotated[
        bool,
        typer.Option("--version", callback=_print_version, is_eager=True, help="Print the version and exit."),
    ] = False,
) -> None:
    configure(log_format, log_level)
    ctx.obj = AppContext()


def _register() -> None:
    # Each verb module adds its commands to `app`; the order here is the order in --help.
    from agent_smith.cli import crew_commands, mcp

    crew_commands.register(app)
    # Verb modules of other subsystems register here (each: `<module>.register(app)`).
    app.add_typer(mcp.mcp_app)


_register()


def main() -> None:
    app()
