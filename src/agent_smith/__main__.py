"""`agent-smith` / `python -m agent_smith`: hooks and MCP servers take a fast path, everything else the full CLI."""

from __future__ import annotations

import os
import sys


def main() -> None:
    from agent_smith.deferred import defer

    defer()
    argv = sys.argv[1:]
    if len(argv) >= 2 and argv[0] == "hook" and not any(a in ("-h", "--help") for a in argv):
        from agent_smith.hooks.entry import run

        code = run(argv[1], argv[2:])
        # A hook's work is done and its files are closed: leave without tearing the
        # interpreter down (freeing every module costs ~3 ms of the hook's wall time).
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except (OSError, ValueError):  # the reader is gone: there is no one left to tell
                continue
        os._exit(code)
    if len(argv) >= 2 and argv[0] == "mcp" and not any(a in ("-h", "--help") for a in argv):
        from agent_smith.cli.mcpserve import run as serve

        served = serve(argv[1], argv[2:])
        if served is not None:
            sys.exit(served)
    from agent_smith.cli.app import main as cli_main

    cli_main()


if __name__ == "__main__":
    main()
