"""``agent-smith firewall``: run the egress credential firewall, print its CA, import a Claude login."""

from __future__ import annotations

import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer

from agent_smith.cli.context import CrewOption, app_context
from agent_smith.cli.servers import serve_firewall
from agent_smith.crew import load_crew
from agent_smith.egress import ca_cert_for, check_ca, import_claude_login

_CREW_KEY = "agent_smith.firewall.crew"

firewall_app = typer.Typer(
    name="firewall",
    help="The egress credential firewall: every agent's HTTPS goes through it.\n\n"
    "Without a command it runs the firewall in the foreground until SIGINT/SIGTERM "
    "(`agent-smith up` starts it for you).",
    invoke_without_command=True,
    no_args_is_help=False,
)


@firewall_app.callback()
def serve(
    ctx: typer.Context,
    crew: CrewOption = None,
    listen_fd: Annotated[
        list[int] | None,
        typer.Option(
            "--listen-fd",
            metavar="FD",
            help="Serve egress.listen on this inherited listening socket instead of binding it "
            "(repeatable; `up` hands its own down, systemd socket activation passes 3).",
        ),
    ] = None,
    settings_fd: Annotated[
        int | None,
        typer.Option(
            "--settings-fd",
            metavar="FD",
            hidden=True,
            help="Read the settings `up`'s supervisor worked out from this pipe instead of loading the crew.",
        ),
    ] = None,
) -> None:
    """Run the firewall in the foreground until interrupted (SIGINT/SIGTERM)."""
    if ctx.invoked_subcommand is not None:
        ctx.meta[_CREW_KEY] = crew
        return
    serve_firewall(crew, os.environ, tuple(listen_fd or ()), settings_fd)


@firewall_app.command("ca")
def ca(ctx: typer.Context, crew: CrewOption = None) -> None:
    """Print the path of the CA certificate agents must trust (created on first use, checked)."""
    loaded = load_crew(crew or ctx.meta.get(_CREW_KEY))
    check_ca(loaded.crew)
    app_context(ctx).console.file.write(f"{ca_cert_for(loaded.crew)}\n")


@firewall_app.command("import-claude-login")
def import_login(
    ctx: typer.Context,
    credentials: Annotated[
        Path, typer.Argument(metavar="FILE", help="A real .credentials.json made by `claude /login`.")
    ],
    crew: CrewOption = None,
) -> None:
    """Copy a real Claude login into the firewall's secret store (agents only ever hold stubs)."""
    loaded = load_crew(crew or ctx.meta.get(_CREW_KEY))
    tokens = import_claude_login(loaded.crew, credentials)
    out = app_context(ctx)
    out.console.print(
        f"imported the Claude login (its access token expires {_utc(tokens.expires_at_ms)}) "
        "into the firewall's secret store; no token was printed",
        highlight=False,
    )
    # Left where it was: it may be a person's own claude login, which deleting would log out.
    out.warn(f"{credentials} still holds the real tokens: delete it unless a claude of yours uses it")
    if not loaded.crew.egress.claude_login.enabled:
        out.warn("egress.claude_login.enabled is false in crew.yaml: the firewall will not use this login")


def _utc(ms: int) -> str:
    """Milliseconds since the epoch as a time a person reads (the import bounds it below year 10000)."""
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%d %H:%M UTC")


def register(app: typer.Typer) -> None:
    app.add_typer(firewall_app)
