"""`agent-smith` / `python -m agent_smith`: hooks, MCP servers, the firewall and a plain `up` take a fast path
(no Typer or Rich), the rest the full CLI."""

from __future__ import annotations

import gc
import os
import sys


def main() -> None:
    try:
        _main()
    except KeyboardInterrupt:
        # Ctrl-C before a verb's own handling (while its modules import): the exit code every
        # verb gives it, without a traceback.
        from agent_smith.leave import leave

        leave(130)


def _main() -> None:
    from agent_smith.deferred import defer, without_pydantic_plugins

    defer()
    without_pydantic_plugins()
    argv = sys.argv[1:]
    if len(argv) >= 2 and argv[0] == "hook" and not any(a in ("-h", "--help") for a in argv):
        from agent_smith.hooks.entry import run
        from agent_smith.leave import leave

        leave(run(argv[1], argv[2:]))
    if argv[:1] in (["mcp"], ["firewall"]) and not any(a in ("-h", "--help") for a in argv):
        from agent_smith.cli.servers import run as serve

        served = serve(argv)
        if served is not None:
            sys.exit(served)
    # Importing the CLI, the crew's models and the verb's modules allocates much and frees
    # little: the cyclic collector would only walk it (~8% of that CPU, ~10 ms of `up` before
    # its agents start). It is on again when the verb runs, and in the supervisor.
    gc.disable()
    if argv[:1] == ["up"]:
        from agent_smith.cli.up import parse_up, run_up

        request = parse_up(argv[1:])
        code = run_up(request, os.environ) if request is not None else None
        if code is not None:
            from agent_smith.leave import leave

            leave(code)
    from agent_smith.cli.app import main as cli_main

    cli_main()


if __name__ == "__main__":
    main()
