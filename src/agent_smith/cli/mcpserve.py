"""`agent-smith mcp events|chat` without the CLI framework: plain argv, no Typer or Rich.

Claude Code starts these servers for every agent at every start, beside the
CLI it is booting, so what they import is paid per agent in CPU while the
agents come up and in resident memory for as long as they run (see
`agent_smith.__main__`). `--help` and anything else unusual take the full CLI.
"""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

TYPE_CHECKING = False
if TYPE_CHECKING:
    from agent_smith.events import EventTarget

SERVERS = ("events", "chat")
_OPTIONS = {"events": ("--crew", "--agent"), "chat": ()}


def parse_options(name: str, argv: Sequence[str]) -> dict[str, str] | None:
    """`--opt VALUE` / `--opt=VALUE` pairs of server `name`; None for anything else (pure)."""
    allowed = _OPTIONS.get(name)
    if allowed is None:
        return None
    found: dict[str, str] = {}
    rest = list(argv)
    while rest:
        arg = rest.pop(0)
        key, sep, value = arg.partition("=")
        if key not in allowed or key in found:
            return None
        if not sep:
            if not rest:
                return None
            value = rest.pop(0)
        found[key] = value
    return found


def resolve_target(crew_dir: Path | None, env: Mapping[str, str]) -> EventTarget:
    """The crew's target when there is a crew (named, or crew.yaml here), else the environment's."""
    from agent_smith.crew import load_crew, resolve_crew_dir
    from agent_smith.events import crew_target, standalone_target

    if crew_dir is not None or env.get("AGENT_SMITH_CREW") or (resolve_crew_dir(None, env) / "crew.yaml").is_file():
        return crew_target(load_crew(crew_dir, env).crew, env)
    return standalone_target(env)


def serve_events(crew_dir: Path | None, agent: str | None, env: Mapping[str, str]) -> None:
    """The event log's MCP server for `agent`, on stdin/stdout until stdin closes."""
    from agent_smith.errors import UsageError
    from agent_smith.events import Publisher, check_agent_name, events_server

    if not agent:
        raise UsageError("AGENT_NAME is not set: the events MCP server publishes as that agent")
    check_agent_name(agent)
    target = resolve_target(crew_dir, env)

    async def run() -> None:
        async with Publisher(target.settings, target.outbox, target.url) as publisher:
            await events_server(agent, publisher, target.settings, target.url).serve_stdio()

    asyncio.run(run())


def serve_chat() -> None:
    """The Matrix channel server, on stdin/stdout (its settings come from the environment)."""
    from agent_smith.chat import load_chat_config, serve

    asyncio.run(serve(load_chat_config()))


def run(name: str, argv: Sequence[str], env: Mapping[str, str] | None = None) -> int | None:
    """Serve `name`; its exit code, or None when `argv` needs the full CLI."""
    from agent_smith.errors import AgentSmithError

    env = os.environ if env is None else env
    options = parse_options(name, argv)
    if options is None:
        return None
    try:
        if name == "events":
            crew = options.get("--crew") or env.get("AGENT_SMITH_CREW")
            serve_events(Path(crew) if crew else None, options.get("--agent") or env.get("AGENT_NAME"), env)
        else:
            serve_chat()
    except AgentSmithError as exc:
        for line in str(exc).splitlines() or [type(exc).__name__]:
            sys.stderr.write(f"error: {line}\n")
        return exc.exit_code
    except KeyboardInterrupt:
        return 130
    return 0
