"""`agent-smith` / `python -m agent_smith`: hooks take a fast path, everything else the full CLI."""

from __future__ import annotations

import sys


def main() -> None:
    argv = sys.argv[1:]
    if len(argv) >= 2 and argv[0] == "hook" and not any(a in ("-h", "--help") for a in argv):
        from agent_smith.hooks.entry import run

        sys.exit(run(argv[1], argv[2:]))
    from agent_smith.cli.app import main as cli_main

    cli_main()


if __name__ == "__main__":
    main()
