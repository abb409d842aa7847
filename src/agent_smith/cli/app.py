"""Entry point: global options, verb registration, and the one place errors become exit codes.

Exit codes: 0 ok, 1 failure while doing the work, 2 bad usage or configuration,
130 interrupted.
"""

from __future__ import annotations

import gc
import importlib
import itertools
import logging
import os
import sys
from typing import Annotated, Any

import typer
import typer.main

# Typer vendors Click and does not re-export its exceptions.
from typer._click.exceptions import ClickException
from typer._click.exceptions import UsageError as ClickUsageError
from typer.core import TyperGroup, TyperOption

from agent_smith import __version__
from agent_smith.cli.output import AppContext
from agent_smith.errors import AgentSmithError, UsageError
from agent_smith.logs import LogFormat, configure, requested_format

# Each verb and the CLI modules that define it, in --help order. A module is imported only when
# one of its verbs runs (or for the full --help): a hook or an MCP server started by Claude Code
# then loads only its own subsystem, not all of agent-smith.
VERBS: dict[str, tuple[str, ...]] = {
    "init": ("crew_commands",),
    "validate": ("crew_commands",),
    "schema": ("crew_commands",),
    "doctor": ("crew_commands",),
    "assemble": ("assemble",),
    "up": ("runtime",),
    "down": ("runtime",),
    "status": ("runtime",),
    "attach": ("runtime",),
    "logs": ("runtime",),
    "restart": ("runtime",),
    "run": ("runtime",),
    "firewall": ("firewall",),
    "events": ("events",),
    "hook": ("hook",),
    "mcp": ("mcp",),
    "k8s": ("k8s",),
    "demo": ("demo",),
    "standin": ("standin",),
}


# The verbs that are groups of sub-verbs.
GROUPS = frozenset({"firewall", "events", "hook", "mcp", "k8s", "standin"})


class _ErrorsToExitCodes(TyperGroup):
    """The root group: loads verbs on demand, and is the one place an agent-smith error
    becomes one line on stderr and an exit code."""

    # The log format asked for, as far as `main` can tell before Click reads the options.
    log_format = LogFormat.text

    def list_commands(self, ctx: Any) -> list[str]:
        return list(VERBS)

    def get_command(self, ctx: Any, cmd_name: str) -> Any:
        if cmd_name in VERBS and cmd_name not in self.commands:
            _load_verb(self, cmd_name)
        return super().get_command(ctx, cmd_name)

    def main(self, *args: Any, **kwargs: Any) -> Any:
        """Click's, but bad usage is one ``error:`` line (where Click and Typer print a usage
        block and a boxed message), exit 2."""
        kwargs["standalone_mode"] = False
        # Said in the format asked for, also when Click stops before the root options are read.
        given = kwargs.get("args")
        self.log_format = requested_format(sys.argv[1:] if given is None else given, os.environ)
        try:
            code = super().main(*args, **kwargs)
        except ClickUsageError as exc:
            if type(exc).__name__ != "NoArgsIsHelpError":  # That one has printed the help already.
                path = exc.ctx.command_path if exc.ctx is not None else _command_path(kwargs.get("args"))
                message = f"{' '.join(exc.format_message().split())} (see `{path} --help`)"
                self._output(exc.ctx).error(UsageError(message))
            sys.exit(exc.exit_code)
        except ClickException as exc:
            if self.log_format is LogFormat.json:
                self._output(None).log(logging.ERROR, exc.format_message())
            else:
                exc.show()
            sys.exit(exc.exit_code)
        sys.exit(code if isinstance(code, int) else 0)

    def invoke(self, ctx: Any) -> Any:
        gc.enable()  # off while the CLI's modules were imported (`agent_smith.__main__`)
        try:
            return super().invoke(ctx)
        except AgentSmithError as exc:
            self._output(ctx).error(exc)
            raise typer.Exit(exc.exit_code) from None
        except KeyboardInterrupt:
            raise typer.Exit(130) from None

    def _output(self, ctx: Any) -> AppContext:
        """The command's output, once the root options made it; else one in the format asked for."""
        made = ctx.find_root().obj if ctx is not None else None
        return made if isinstance(made, AppContext) else AppContext(log_format=self.log_format)


_option_type = TyperOption.display_type_rich


def _flag_shows_no_type(self: TyperOption, ctx: Any) -> str | None:
    """Typer's help shows each option's type, a flag's too (`--json <bool>`), as if it took a
    value, which it refuses: a flag (`--help` and `--version` included) shows none."""
    return None if self.is_flag else _option_type(self, ctx)


TyperOption.display_type_rich = _flag_shows_no_type  # type: ignore[method-assign]


def _command_path(args: list[str] | None) -> str:
    """The verb (and sub-verb) `args` name, for an error Click raised before it knew them."""
    words = list(itertools.takewhile(lambda a: not a.startswith("-"), sys.argv[1:] if args is None else args))
    verb = words[:1] if words[:1] and words[0] in VERBS else []
    sub = words[1:2] if verb and verb[0] in GROUPS else []
    return " ".join(["agent-smith", *verb, *sub])


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
        typer.Option(
            "--log-level", metavar="LEVEL", envvar="AGENT_SMITH_LOG_LEVEL", help="debug, info, warning or error."
        ),
    ] = "warning",
    version: Annotated[
        bool,
        typer.Option("--version", callback=_print_version, is_eager=True, help="Print the version and exit."),
    ] = False,
) -> None:
    configure(log_format, log_level)
    ctx.obj = AppContext(log_format=log_format)


def _load_verb(group: TyperGroup, name: str) -> None:
    """Import the modules that define `name` and add its click command to `group`."""
    staging = typer.Typer()
    for module in VERBS[name]:
        imported = importlib.import_module(f"agent_smith.cli.{module}")
        register = getattr(imported, "register", None)
        if register is not None:
            register(staging)
    group.add_command(typer.main.get_group(staging).commands[name], name)


def main() -> None:
    app()
