"""Servers other programs start, without the CLI framework: plain argv, no Typer or Rich.

`agent-smith mcp events|chat`: Claude Code starts these for an agent at every
start; `agent-smith firewall`: the supervisor starts it beside the agents it
boots. What they import is paid in CPU taken from the booting CLIs (~0.1 s
for the CLI framework alone) and in resident memory for as long as they run
(see `agent_smith.__main__`). `--help`, subcommands and anything else unusual
take the full CLI.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

TYPE_CHECKING = False
if TYPE_CHECKING:
    from agent_smith.crew import Crew
    from agent_smith.egress import Firewall
    from agent_smith.events import EventTarget

_OPTIONS = {"events": ("--crew", "--agent"), "chat": (), "firewall": ("--crew", "--listen-fd", "--settings-fd")}
_REPEATABLE = frozenset({"--listen-fd"})
# The command line that starts each server, before its options.
_COMMANDS = {("mcp", "events"): "events", ("mcp", "chat"): "chat", ("firewall",): "firewall"}


def server_for(argv: Sequence[str]) -> tuple[str, Sequence[str]] | None:
    """The server `argv` starts and its options; None when it starts none of them (pure)."""
    for command, name in _COMMANDS.items():
        if tuple(argv[: len(command)]) == command:
            return name, argv[len(command) :]
    return None


def parse_options(name: str, argv: Sequence[str]) -> dict[str, list[str]] | None:
    """The values of each `--opt VALUE` / `--opt=VALUE` of server `name`, in order; None for
    anything else, or an option given twice that may be given once (pure)."""
    allowed = _OPTIONS.get(name)
    if allowed is None:
        return None
    found: dict[str, list[str]] = {}
    rest = list(argv)
    while rest:
        arg = rest.pop(0)
        key, sep, value = arg.partition("=")
        if key not in allowed or (key in found and key not in _REPEATABLE):
            return None
        if not sep:
            if not rest:
                return None
            value = rest.pop(0)
        found.setdefault(key, []).append(value)
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
    target.check_publisher(agent)

    async def run() -> None:
        async with Publisher(target.settings, target.outbox, target.url) as publisher:
            await events_server(agent, publisher, target.settings, target.url).serve_stdio()

    asyncio.run(run())


def serve_chat() -> None:
    """The Matrix channel server, on stdin/stdout (its settings come from the environment)."""
    from agent_smith.chat import load_chat_config, serve

    asyncio.run(serve(load_chat_config()))


def firewall_lines(firewall: Firewall) -> list[str]:
    """What a started firewall announces: where it listens."""
    lines = []
    if address := firewall.address:
        lines.append(f"firewall listening on {address[0]}:{address[1]}")
    if transparent := firewall.transparent_address:
        lines.append(f"transparent listener on {transparent[0]}:{transparent[1]}")
    if metrics := firewall.metrics_address:
        lines.append(f"metrics on http://{metrics[0]}:{metrics[1]}/metrics")
    return lines


def serve_firewall(
    crew_dir: Path | None, env: Mapping[str, str], listen_fds: tuple[int, ...] = (), settings_fd: int | None = None
) -> None:
    """The egress firewall for the crew, until SIGINT or SIGTERM; on `listen_fds` when given.

    With `settings_fd` its settings are read from that pipe (`up`'s supervisor writes them), with
    the crew as it was started, made into the crew only to publish a first denial.
    """
    from dataclasses import replace

    from agent_smith.egress import read_launch, run_firewall

    if settings_fd is not None:
        launch = read_launch(settings_fd)
        settings = launch.settings

        def crew() -> Crew:
            from agent_smith.crew import Crew

            return Crew.model_validate(launch.crew).located_in(launch.crew_dir)
    else:
        from agent_smith.crew import load_crew
        from agent_smith.egress import settings_for

        loaded = load_crew(crew_dir, env)
        for warning in loaded.warnings:
            sys.stderr.write(_said(logging.WARNING, warning, env))
        settings = settings_for(loaded.crew, loaded.root, env)

        def crew() -> Crew:
            return loaded.crew

    def ready(firewall: Firewall) -> None:
        sys.stdout.write("".join(f"{line}\n" for line in firewall_lines(firewall)))
        sys.stdout.flush()

    asyncio.run(run_firewall(replace(settings, listen_fds=listen_fds), ready, crew))


def _said(level: int, message: str, env: Mapping[str, str]) -> str:
    """An error or a warning for stderr, as the full CLI says it (`AppContext`), without Rich: a
    `warning:`/`error:` line per line of it, or with json logs one JSON object."""
    from agent_smith.logs import LogFormat, json_line, requested_format

    if requested_format((), env) is LogFormat.json:
        return json_line(level, message) + "\n"
    return "".join(f"{logging.getLevelName(level).lower()}: {line}\n" for line in message.splitlines())


def run(argv: Sequence[str], env: Mapping[str, str] | None = None) -> int | None:
    """Serve what `argv` (the command line after `agent-smith`) starts; its exit code, or None when
    `argv` needs the full CLI."""
    from agent_smith.errors import AgentSmithError
    from agent_smith.logs import LEVELS, LogFormat, configure

    env = os.environ if env is None else env
    found = server_for(argv)
    if found is None:
        return None
    name, rest = found
    options = parse_options(name, rest)
    log_format = env.get("AGENT_SMITH_LOG_FORMAT", LogFormat.text.value)
    log_level = env.get("AGENT_SMITH_LOG_LEVEL", "warning")
    if options is None or log_format not in {f.value for f in LogFormat} or log_level.lower() not in LEVELS:
        return None
    fds = options.pop("--listen-fd", [])
    settings_fds = options.pop("--settings-fd", [])
    if not all(fd.isdigit() for fd in (*fds, *settings_fds)):
        return None
    given = {key: values[0] for key, values in options.items()}
    # The environment is all an `mcpServers` entry can set: its log settings hold as the options would.
    configure(LogFormat(log_format), log_level)
    try:
        if name == "events":
            crew = given.get("--crew") or env.get("AGENT_SMITH_CREW")
            serve_events(Path(crew) if crew else None, given.get("--agent") or env.get("AGENT_NAME"), env)
        elif name == "firewall":
            crew = given.get("--crew")
            serve_firewall(
                Path(crew) if crew else None,
                env,
                tuple(int(fd) for fd in fds),
                int(settings_fds[0]) if settings_fds else None,
            )
        else:
            serve_chat()
    except AgentSmithError as exc:
        sys.stderr.write(_said(logging.ERROR, str(exc) or type(exc).__name__, env))
        return exc.exit_code
    except KeyboardInterrupt:
        return 130
    return 0
