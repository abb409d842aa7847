"""Running the crew: up, down, status, attach, logs, restart, run."""

from __future__ import annotations

import asyncio
import json
import os
import shlex
import shutil
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.markup import escape

from agent_smith.cli.context import CrewOption, JsonFlag, app_context
from agent_smith.cli.output import AppContext
from agent_smith.cli.up import UpRequest, assembly_progress, bring_up, progress
from agent_smith.crew import Crew, CrewPaths, LoadedCrew, load_crew, resolve_crew_dir
from agent_smith.errors import CrewError, MissingPartError, OperationError, UsageError
from agent_smith.leave import leave
from agent_smith.runtime import (
    CONTAINER_SESSION,
    ServeOptions,
    Tmux,
    check_startable,
    is_running,
    readable,
    rotated_logs,
    run_dir,
    started_crew,
    stop_crew,
    supervise,
    wait_ready,
    where_it_runs,
)

if TYPE_CHECKING:
    from rich.table import Table

# status and logs import what only they use when they run: `up`, which forks the supervisor
# as soon as the crew is checked, should not pay for them first.

AgentsArg = Annotated[list[str] | None, typer.Argument(help="Agents to act on (default: all).", show_default=False)]
NameArg = Annotated[str, typer.Argument(help="The agent.", show_default=False)]
NoProxyOption = Annotated[
    list[str] | None,
    typer.Option("--no-proxy", help="A host agents reach without the firewall (repeatable).", show_default=False),
]


def _positive(seconds: float) -> float:
    if not seconds > 0:
        raise typer.BadParameter("must be more than 0 seconds")
    return seconds


TimeoutOption = Annotated[
    float, typer.Option("--timeout", callback=_positive, help="Seconds to wait for the agents to be ready.")
]


def _load(out: AppContext, crew: Path | None) -> LoadedCrew:
    loaded = load_crew(crew)
    for warning in loaded.warnings:
        out.warn(warning)
    return loaded


def up(
    ctx: typer.Context,
    agents: AgentsArg = None,
    crew: CrewOption = None,
    foreground: Annotated[
        bool, typer.Option("--foreground", help="Supervise in this process instead of in the background.")
    ] = False,
    firewall: Annotated[
        bool,
        typer.Option("--firewall/--no-firewall", help="Start the egress firewall, or use one that runs elsewhere."),
    ] = True,
    no_proxy: NoProxyOption = None,
    timeout: TimeoutOption = 180.0,
) -> None:
    """Start the event log, the firewall and every agent (or those named), supervised; return when ready."""
    out = app_context(ctx)
    request = UpRequest(
        crew=crew,
        agents=tuple(agents or ()),
        foreground=foreground,
        firewall=firewall,
        no_proxy=tuple(no_proxy or ()),
        timeout=timeout,
    )
    if bring_up(request, lambda: out) is not None:
        # The supervisor owns everything now; this process only has its interpreter left to free.
        leave(0)


def _running(out: AppContext, crew: Path | None, *, for_down: bool = False) -> Crew:
    """The crew a command acts on: crew.yaml's, or the crew as `up` started it from this directory
    when crew.yaml no longer loads, or the crew runs with other state or agents than crew.yaml
    names now (said in a warning). `down` always stops the crew as started (`for_down`): every
    process it started, whatever crew.yaml says."""
    started = started_crew(resolve_crew_dir(crew))
    try:
        loaded = _load(out, crew)
    except CrewError:
        if started is None:
            raise
        out.warn("crew.yaml does not load (`agent-smith validate` says why): acting on the crew as it was started")
        return started
    if started is None or not (for_down or is_running(started)):
        return loaded.crew
    if where_it_runs(started) != where_it_runs(loaded.crew) or _names(started) != _names(loaded.crew):
        out.warn(
            "the crew runs as it was started, with other state or agents than crew.yaml names now: acting on "
            f"it (its state in {CrewPaths.of(started).root}; `down`, then `up`, to run crew.yaml's)"
        )
        return started
    return started if for_down else loaded.crew


def _names(crew: Crew) -> list[str]:
    return [agent.name for agent in crew.agents]


def down(ctx: typer.Context, agents: AgentsArg = None, crew: CrewOption = None) -> None:
    """Stop the named agents, or everything (agents, firewall, event log, supervisor) when none is named."""
    out = app_context(ctx)
    stopped = stop_crew(_running(out, crew, for_down=True), agents or ())
    out.console.print(f"stopped: {', '.join(stopped)}" if stopped else "nothing was running")


def _age(seconds: float | None) -> str:
    if seconds is None:
        return "—"
    seconds = max(0, int(seconds))
    if seconds < 120:
        return f"{seconds}s"
    if seconds < 7200:
        return f"{seconds // 60}m"
    if seconds < 172800:
        return f"{seconds // 3600}h{(seconds % 3600) // 60:02d}m"
    return f"{seconds // 86400}d"


def status_rows(crew: Crew, now: float) -> tuple[bool, list[dict[str, Any]]]:
    """Whether a supervisor runs, and one row per agent (stopped when it is not supervised)."""
    from agent_smith.hooks import read_activity

    rd = run_dir(crew)
    running = rd.running_pid() is not None
    agents = (rd.read_status() or {}).get("agents", {}) if running else {}
    sessions = set() if running else set(Tmux(crew.runtime.tmux_socket).list_sessions())
    rows = []
    for agent in crew.agents:
        entry = agents.get(agent.name) if isinstance(agents, dict) else None
        entry = entry if isinstance(entry, dict) else {}
        if agent.name in sessions:
            # Left running by a supervisor that is gone: `up` adopts it.
            entry = {"state": "unsupervised"}
        started = entry.get("started_at")
        activity = entry.get("last_activity")
        reviews = read_activity(CrewPaths.of(crew).agent_state(agent.name)) or {}
        rows.append(
            {
                "agent": agent.name,
                "state": entry.get("state", "stopped"),
                "uptime_seconds": now - started if isinstance(started, int | float) else None,
                "restarts": entry.get("restarts", 0),
                "last_activity_seconds_ago": now - activity if isinstance(activity, int | float) else None,
                "last_exit": entry.get("last_exit"),
                "retry_in_seconds": (
                    max(0.0, entry["retry_at"] - now) if isinstance(entry.get("retry_at"), int | float) else None
                ),
                # The agent's open PRs as its Stop hook last saw them (None: never checked).
                "open_prs": reviews.get("pull_requests"),
                "open_prs_checked_at": reviews.get("checked_at"),
                # Whether its claude holds its Matrix channel now (None: no channel, or not running).
                "chat_connected": entry.get("channel_connected"),
            }
        )
    return running, rows


_COLOURS = {
    "ready": "green",
    "idle": "green",
    "working": "cyan",
    "assembling": "yellow",
    "starting": "yellow",
    "backing off": "yellow",
}


def _table(crew: Crew) -> Table:
    from rich.table import Table

    running, rows = status_rows(crew, time.time())
    services, metrics = _supervisor(crew, running)
    shown = ", ".join(f"{name} {'listening' if up else 'starting'}" for name, up in services.items())
    title = (
        f"crew {crew.crew.name}" + (f" ({shown})" if shown else "") + ("" if running else " (supervisor not running)")
    )
    table = Table(title=title, caption=f"/metrics and /healthz at {metrics}" if metrics else None)
    table.add_column("agent", no_wrap=True)
    table.add_column("state", no_wrap=True)
    for column in ("uptime", "restarts", "last activity", "last exit", "open PRs", "chat"):
        table.add_column(column)
    for row in rows:
        colour = _COLOURS.get(row["state"], "red")
        state = row["state"]
        if row["retry_in_seconds"] is not None:
            state += f" (retry in {_age(row['retry_in_seconds'])})"
        table.add_row(
            row["agent"],
            f"[{colour}]{escape(state)}[/]",
            _age(row["uptime_seconds"]),
            str(row["restarts"]),
            _age(row["last_activity_seconds_ago"]) + (" ago" if row["last_activity_seconds_ago"] is not None else ""),
            "—" if row["last_exit"] is None else str(row["last_exit"]),
            _open_prs(row["open_prs"]),
            _chat(row["chat_connected"]),
        )
    return table


def _supervisor(crew: Crew, running: bool) -> tuple[dict[str, bool], str | None]:
    """The running supervisor's services (listening or not) and where it serves /metrics."""
    status = (run_dir(crew).read_status() or {}) if running else {}
    services, supervisor = status.get("services"), status.get("supervisor")
    metrics = supervisor.get("metrics") if isinstance(supervisor, dict) else None
    return (services if isinstance(services, dict) else {}), (metrics if isinstance(metrics, str) else None)


def _chat(connected: bool | None) -> str:
    if connected is None:
        return "—"
    # Short: the table fits 80 columns.
    return "[green]on[/]" if connected else "[yellow]off[/]"


def _open_prs(prs: list[dict[str, Any]] | None) -> str:
    if prs is None:
        return "—"
    waiting = sum(1 for pr in prs if pr.get("unaddressed"))
    return f"{len(prs)}" + (f" ({waiting} awaiting it)" if waiting else "")


def status(
    ctx: typer.Context,
    crew: CrewOption = None,
    as_json: JsonFlag = False,
    watch: Annotated[
        bool,
        typer.Option(
            "--watch",
            help="Refresh until interrupted: live on a terminal; else a table, or with --json a JSON line, every 2 s.",
        ),
    ] = False,
) -> None:
    """Each agent's state, uptime, restarts, last activity and open PRs."""
    out = app_context(ctx)
    running = _running(out, crew)
    if as_json and not watch:
        out.print_json(_status_document(running))
        return
    if as_json:
        # One JSON object per line, each as it comes: for a pipe or a log to read line by line.
        _every(lambda: out.console.file.write(json.dumps(_status_document(running), default=str) + "\n"), out)
        return
    # The table is all this prints, and fits the width (soft wrapping keeps a message one line).
    out.console.soft_wrap = False
    if not watch:
        out.console.print(_table(running))
        return
    if not out.console.is_terminal:
        # No screen to redraw: a table at each look, one after another.
        _every(lambda: out.console.print(_table(running)), out)
        return
    from rich.live import Live

    with Live(_table(running), console=out.console, refresh_per_second=2) as live:
        while True:
            time.sleep(1)
            live.update(_table(running))


def _status_document(crew: Crew) -> dict[str, Any]:
    running, rows = status_rows(crew, time.time())
    services, metrics = _supervisor(crew, running)
    return {
        "crew": crew.crew.name,
        "supervisor_running": running,
        "metrics": metrics,
        "services": services,
        "agents": rows,
    }


_WATCH_EVERY = 2.0


def _every(show: Callable[[], object], out: AppContext) -> None:
    """`show` now and every _WATCH_EVERY seconds until interrupted, or until the reader (`| head`)
    is gone: then without a word, exit 1, as Rich ends any print to a pipe that closed."""
    try:
        while True:
            show()
            out.console.file.flush()
            time.sleep(_WATCH_EVERY)
    except BrokenPipeError:
        out.console.on_broken_pipe()


def attach(ctx: typer.Context, name: NameArg, crew: CrewOption = None) -> None:
    """Attach this terminal to NAME's tmux session (detach with C-b d)."""
    out = app_context(ctx)
    running = _running(out, crew)
    agent = running.agent(name)
    binary = shutil.which("tmux")
    if binary is None:
        raise MissingPartError("tmux is not installed: install it with `apt-get install tmux`")
    socket = running.runtime.tmux_socket
    tmux = Tmux(socket)
    # In its container (`run`) the agent's session is `main`.
    in_container = os.environ.get("AGENT_NAME") == agent.name and tmux.has_session(CONTAINER_SESSION)
    session = CONTAINER_SESSION if in_container else agent.name
    # The commands it suggests name the crew as this one was named: from elsewhere they would find none.
    named = f" --crew {shlex.quote(str(crew))}" if crew is not None else ""
    if not in_container and not tmux.has_session(agent.name):
        raise OperationError(f"agent {agent.name!r} is not running: start it with `agent-smith up {agent.name}{named}`")
    if not (sys.stdin.isatty() and sys.stdout.isatty()):
        raise UsageError(
            f"attach needs a terminal; without one, `agent-smith logs {agent.name} -f{named}` follows its output"
        )
    os.execv(binary, [binary, "-L", socket, "-f", "/dev/null", "attach-session", "-t", f"={session}"])


def logs(
    ctx: typer.Context,
    name: NameArg,
    crew: CrewOption = None,
    follow: Annotated[bool, typer.Option("--follow", "-f", help="Keep printing new output.")] = False,
    shell: Annotated[bool, typer.Option("--shell", help="The shell pane (pane 1) instead of claude's.")] = False,
    raw: Annotated[bool, typer.Option("--raw", help="Terminal bytes as captured, escape sequences included.")] = False,
) -> None:
    """Print an agent's captured pane output (rotated files included, oldest first)."""
    out = app_context(ctx)
    running = _running(out, crew)
    agent = running.agent(name)
    files = rotated_logs(running, agent.name, pane=1 if shell else 0)
    sink = out.console.file
    for path in files[:-1]:
        data = path.read_bytes()
        sink.write(data.decode("utf-8", "replace") if raw else readable(data))
    if not files:
        raise OperationError(f"agent {agent.name!r} has no captured output yet")
    from agent_smith.runtime.panelog import Follower

    current = files[-1]
    follower = Follower(current)
    data = follower.read()
    sink.write(data.decode("utf-8", "replace") if raw else readable(data))
    sink.flush()
    while follow:
        time.sleep(0.25)
        data = follower.read()
        if data:
            sink.write(data.decode("utf-8", "replace") if raw else readable(data))
            sink.flush()
    follower.close()


def restart(ctx: typer.Context, name: NameArg, crew: CrewOption = None, timeout: TimeoutOption = 180.0) -> None:
    """Stop NAME's claude and start it again (resuming its conversation); return when it is ready."""
    out = app_context(ctx)
    running = _running(out, crew)
    agent = running.agent(name)
    rd = run_dir(running)
    status = rd.supervisor_status(timeout=timeout)
    if status is None:
        raise OperationError("the supervisor is not running: start the crew with `agent-smith up`")
    rd.check_managed([agent.name], status)
    since = time.time()
    asked = rd.request("restart", agent.name)
    wait_ready(
        running, [agent.name], timeout=timeout, child=None, progress=progress(out), since=since, asked=[asked.stem]
    )
    out.console.print(f"[green]restarted[/] {agent.name}")


def run(
    ctx: typer.Context,
    crew: CrewOption = None,
    no_proxy: NoProxyOption = None,
) -> None:
    """The container entrypoint: assemble AGENT_NAME from the environment, supervise it in session `main`.

    Both panes' output goes to stdout, so `kubectl logs` shows them.
    """
    out = app_context(ctx)
    name = os.environ.get("AGENT_NAME", "").strip()
    if not name:
        raise UsageError("AGENT_NAME is not set: the container runs one agent of the crew, named by AGENT_NAME")
    try:
        loaded = _load(out, crew)
    except CrewError as exc:
        # One line for `kubectl logs` to show as the container's last words.
        raise UsageError(exc.first_of_all()) from None
    options = ServeOptions(agents=(name,), firewall=False, no_proxy=tuple(no_proxy or ()))
    binary = check_startable(loaded, options, services=False)

    def write(line: str) -> None:
        sys.stdout.write(line)
        sys.stdout.flush()

    asyncio.run(
        supervise(
            loaded,
            options,
            binary=binary,
            services=False,
            session=CONTAINER_SESSION,
            stream=write,
            progress=assembly_progress,
        )
    )


def register(app: typer.Typer) -> None:
    for verb in (up, down, status, attach, logs, restart, run):
        app.command(verb.__name__)(verb)
