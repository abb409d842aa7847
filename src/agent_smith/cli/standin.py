"""`agent-smith standin …`: run a stand-in by hand (the scripted model server)."""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path
from typing import Annotated

import typer

from agent_smith.cli.context import app_context
from agent_smith.standins import ModelServer, load_script, serve

standin_app = typer.Typer(
    name="standin",
    help="Run a stand-in for the outside world by hand.",
    no_args_is_help=True,
)


@standin_app.command("model")
def model(
    ctx: typer.Context,
    script: Annotated[
        Path,
        typer.Option(
            "--script",
            metavar="FILE",
            envvar="AGENT_SMITH_MODEL_SCRIPT",
            help="YAML or JSON script of replies per agent.",
        ),
    ],
    port: Annotated[
        int,
        typer.Option(
            "--port", metavar="PORT", envvar="AGENT_SMITH_MODEL_PORT", help="Port on 127.0.0.1 (0: any free port)."
        ),
    ] = 0,
    log: Annotated[
        Path,
        typer.Option(
            "--log", metavar="FILE", envvar="AGENT_SMITH_MODEL_LOG", help="JSONL file every request is appended to."
        ),
    ] = Path("model-requests.jsonl"),
    json_output: Annotated[bool, typer.Option("--json", help="Print the address as JSON.")] = False,
) -> None:
    """Serve the Anthropic Messages API from a script until Ctrl-C or SIGTERM.

    Prints the base URL once listening. Point an agent at it with
    ANTHROPIC_BASE_URL=<url>/agents/<name>; without the prefix the script's
    `default` agent answers.
    """
    out = app_context(ctx)
    server = ModelServer(load_script(script), log, port=port)

    def ready(url: str) -> None:
        if json_output:
            out.print_json({"url": url, "log": str(log.resolve())})
        else:
            out.console.print(url, highlight=False, soft_wrap=True)
        out.console.file.flush()

    async def run() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, stop.set)
        await serve(server, ready, stop)

    asyncio.run(run())


def register(app: typer.Typer) -> None:
    app.add_typer(standin_app)
