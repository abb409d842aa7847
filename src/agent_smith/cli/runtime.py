"""Running the crew: up, down, status, attach, logs, restart, run."""

from __future__ import annotations

import asyncio
import json
import os
import select
import shlex
import shutil
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from agent_smith.cli.context import CrewOption, JsonFlag, app_context
from agent_smith.cli.output import AppContext
from agent_smith.cli.up import UpRequest, bring_up, progress
from agent_smith.crew import Crew, CrewPaths, LoadedCrew, load_crew, resolve_crew_dir
from agent_smith.errors import CrewError, MissingPartError, OperationError, UsageError
from agent_smith.leave import leave
from agent_smith.logs import stderr_progress
from agent_smith.runtime import (
    CONTAINER_SESSION,
    CrewStopped,
    ServeOptions,
    Tmux,
    captured_log,
    check_startable,
    check_state_is_its_own,
    is_running,
    readable,
    run_dir,
    started_crew,
    stop_crew,
    supervise,
    wait_ready,
    where_it_runs,
)
from agent_smith.runtime.rundir import UnreadableStatus, status_number

if TYPE_CHECKING:
    from rich.console import Console, ConsoleOptions, RenderableType
    from rich.text import Text

# status and logs import what only they use when they run: `up`, which forks the supervisor
# as soon as the crew is checked, should not pay for them first.

AgentsArg = Annotated[
    list[str] | None, typer.Argument(metavar="AGENT", help="Agents to act on (default: all).", show_default=False)
]
NameArg = Annotated[str, typer.Argument(metavar="NAME", help="The agent.", show_default=False)]
NoProxyOption = Annotated[
    list[str] | None,
    typer.Option(
        "--no-proxy", metavar="HOST", help="A host agents reach without the firewall (repeatable).", show_default=False
    ),
]


def _positive(seconds: float) -> float:
    if not seconds > 0:
        raise typer.BadParameter("must be more than 0 seconds")
    return seconds


TimeoutOption = Annotated[
    float, typer.Option("--timeout", metavar="SECONDS", callback=_positive, help="Seconds to wait until ready.")
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
        check_state_is_its_own(loaded.crew)
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
    out.console.print(stopped_line(stopped))


def stopped_line(stopped: CrewStopped) -> str:
    """What `down` stopped, in one line (pure): the crew's own processes too, or one would think
    the firewall and the event log still ran."""
    parts = [", ".join(stopped.agents)] if stopped.agents else []
    own = stopped.services
    if own:
        parts.append(f"the crew's {own[0] if len(own) == 1 else ', '.join(own[:-1]) + ' and ' + own[-1]}")
    return f"stopped: {'; and '.join(parts)}" if parts else "nothing was running"


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


def _text(entry: Mapping[str, Any], key: str) -> str | None:
    value = entry.get(key)
    return value if isinstance(value, str) else None


def _whole(entry: Mapping[str, Any], key: str) -> int | None:
    """The integer the status says at `key`; None for anything else."""
    value = entry.get(key)
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def status_rows(crew: Crew, now: float) -> tuple[bool, list[dict[str, Any]], str | None]:
    """Whether a supervisor runs, one row per agent (stopped when it is not supervised), and why
    the status file could not be read (None when it could, or there is none)."""
    from agent_smith.hooks import read_activity

    rd = run_dir(crew)
    running = rd.running_pid() is not None
    unreadable: str | None = None
    try:
        status = rd.load_status() or {}
    except UnreadableStatus as exc:
        status = {}
        unreadable = f"{exc}: the agents' states are unknown" if running else str(exc)
    agents = status.get("agents")
    agents = agents if isinstance(agents, dict) else {}
    sessions = set() if running else set(Tmux(crew.tmux_socket).list_sessions())
    rows = []
    for agent in crew.agents:
        entry = agents.get(agent.name)
        entry = entry if isinstance(entry, dict) else {}
        state = entry.get("state")
        if running and unreadable is not None:
            state = "unknown"
        elif agent.name in sessions:
            # Left running by a supervisor that is gone: what it last said holds (`up` adopts the
            # agent with it), but nothing retries the agent or holds its channel now.
            entry = {key: value for key, value in entry.items() if key not in ("retry_at", "channel_connected")}
            state = "unsupervised"
        elif not running:
            # Stopped, and the next `up` starts it anew: the gone supervisor's counts are over.
            entry, state = {}, "stopped"
        started = status_number(entry, "started_at")
        activity = status_number(entry, "last_activity")
        retry_at = status_number(entry, "retry_at")
        connected = entry.get("channel_connected")
        reviews = read_activity(CrewPaths.of(crew).agent_state(agent.name)) or {}
        rows.append(
            {
                "agent": agent.name,
                "state": state if isinstance(state, str) else "stopped",
                "uptime_seconds": None if started is None else now - started,
                "restarts": _whole(entry, "restarts") or 0,
                "last_activity_seconds_ago": None if activity is None else now - activity,
                "last_exit": _whole(entry, "last_exit"),
                "retry_in_seconds": None if retry_at is None else max(0.0, retry_at - now),
                # The agent's open PRs as its Stop hook last saw them (None: never checked).
                "open_prs": reviews.get("pull_requests"),
                "open_prs_checked_at": reviews.get("checked_at"),
                # Since when, and why, its checks fail (None: the last one did not): open_prs is stale.
                "open_prs_failing_since": _text(reviews, "failing_since"),
                "open_prs_failure": _text(reviews, "failure"),
                # Whether its claude holds its Matrix channel now (None: no channel, or not running).
                "chat_connected": connected if isinstance(connected, bool) else None,
            }
        )
    return running, rows, unreadable


_COLOURS = {
    "ready": "green",
    "idle": "green",
    "working": "cyan",
    "assembling": "yellow",
    "starting": "yellow",
    "backing off": "yellow",
}
_HEADERS = ("agent", "state", "uptime", "restarts", "last activity", "last exit", "open PRs", "chat")
# Cells that are one word, however narrow the table: a count or an age cut in two reads as two.
_NO_WRAP = frozenset({"uptime", "restarts", "last exit", "chat"})
# A long agent name is cut (with an ellipsis) to this, and may be cut to _NAME_MIN where room is short.
_NAME_MAX = 20
_NAME_MIN = 8


def column_widths(minimums: Sequence[int], maximums: Sequence[int], room: int) -> list[int] | None:
    """Each column's width in a table with `room` for its cells: its widest cell where all fit,
    else the columns with most to spare above their minimum narrowed first; None when not even
    the minimums fit (pure)."""
    if sum(minimums) > room:
        return None
    widths = [max(low, high) for low, high in zip(minimums, maximums, strict=True)]
    for _ in range(sum(widths) - room):
        spare = max(range(len(widths)), key=lambda i: widths[i] - minimums[i])
        widths[spare] -= 1
    return widths


class StatusView:
    """`status` for the terminal: a table whose every column stays legible (a long agent name is
    cut, numbers never wrap), or one block per agent where the terminal is too narrow for that.
    Laid out at each render, so a resized terminal under `--watch` gets what fits it."""

    def __init__(self, title: str, caption: str | None, rows: Sequence[dict[str, Any]]) -> None:
        self.title, self.caption = title, caption
        self.cells = [_cells(row) for row in rows]

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> Iterator[RenderableType]:
        from rich.table import Table
        from rich.text import Text

        columns = list(zip(*self.cells, strict=True)) if self.cells else [() for _ in _HEADERS]
        minimums, maximums = [], []
        for header, cells in zip(_HEADERS, columns, strict=True):
            longest = max((cell.cell_len for cell in cells), default=0)
            word = max((len(w) for text in (header, *(c.plain for c in cells)) for w in text.split()), default=1)
            if header == "agent":
                minimums.append(max(len(header), min(longest, _NAME_MIN)))
                maximums.append(max(len(header), min(longest, _NAME_MAX)))
            else:
                minimums.append(max(word, longest) if header in _NO_WRAP else word)
                maximums.append(max(len(header), longest))
        # Each column has a border before it and a space either side; the table one border more.
        widths = column_widths(minimums, maximums, options.max_width - 3 * len(_HEADERS) - 1)
        if widths is None:
            yield Text(self.title, style="italic")
            for row in self.cells:
                yield Text(row[0].plain, style="bold", no_wrap=True, overflow="ellipsis")
                for header, cell in zip(_HEADERS[1:], row[1:], strict=True):
                    yield Text.assemble(f"  {header}: ", cell)
            if self.caption:
                yield Text(self.caption, style="dim")
            return
        table = Table(title=self.title, caption=self.caption)
        for header, width in zip(_HEADERS, widths, strict=True):
            # Headers wrap at words; the cells that must not wrap say so (`_cells`).
            table.add_column(header, width=width, overflow="ellipsis")
        for row in self.cells:
            table.add_row(*row)
        yield table


def _cells(row: Mapping[str, Any]) -> list[Text]:
    from rich.text import Text

    state = row["state"]
    if row["retry_in_seconds"] is not None:
        state += f" (retry in {_age(row['retry_in_seconds'])})"
    activity = row["last_activity_seconds_ago"]
    return [
        Text(row["agent"], no_wrap=True, overflow="ellipsis"),
        Text(state, style=_COLOURS.get(row["state"], "red")),
        Text(_age(row["uptime_seconds"]), no_wrap=True),
        Text(str(row["restarts"]), no_wrap=True),
        Text(_age(activity) + ("" if activity is None else " ago")),
        Text("—" if row["last_exit"] is None else str(row["last_exit"]), no_wrap=True),
        Text(_open_prs(row["open_prs"], failing=row["open_prs_failure"] is not None)),
        _chat(row["chat_connected"]),
    ]


def _rows(crew: Crew, warn: Callable[[str], None]) -> tuple[bool, list[dict[str, Any]]]:
    """`status_rows` now, with what makes them less than current said in warnings."""
    running, rows, unreadable = status_rows(crew, time.time())
    if unreadable is not None:
        warn(unreadable)
    for row in rows:
        if row["open_prs_failure"] is not None:
            checked = row["open_prs_checked_at"]
            warn(
                f"{row['agent']}: its review checks fail since {row['open_prs_failing_since']} "
                f"({row['open_prs_failure']}); its open PRs are "
                + (f"as of {checked}" if isinstance(checked, str) else "unknown")
            )
    return running, rows


def _view(crew: Crew, warn: Callable[[str], None]) -> StatusView:
    running, rows = _rows(crew, warn)
    services, metrics = _supervisor(crew, running)
    shown = ", ".join(f"{name} {'listening' if up else 'starting'}" for name, up in services.items())
    title = (
        f"crew {crew.crew.name}" + (f" ({shown})" if shown else "") + ("" if running else " (supervisor not running)")
    )
    return StatusView(title, f"/metrics and /healthz at {metrics}" if metrics else None, rows)


def _supervisor(crew: Crew, running: bool) -> tuple[dict[str, bool], str | None]:
    """The running supervisor's services (listening or not) and where it serves /metrics."""
    status = (run_dir(crew).read_status() or {}) if running else {}
    services, supervisor = status.get("services"), status.get("supervisor")
    metrics = supervisor.get("metrics") if isinstance(supervisor, dict) else None
    return (services if isinstance(services, dict) else {}), (metrics if isinstance(metrics, str) else None)


def _chat(connected: bool | None) -> Text:
    from rich.text import Text

    if connected is None:
        return Text("—", no_wrap=True)
    # Short: the table fits 80 columns.
    return Text("on", style="green", no_wrap=True) if connected else Text("off", style="yellow", no_wrap=True)


def _open_prs(prs: list[dict[str, Any]] | None, *, failing: bool) -> str:
    if prs is None:
        return "check failing" if failing else "—"
    waiting = sum(1 for pr in prs if pr.get("unaddressed"))
    return f"{len(prs)}" + (f" ({waiting} awaiting it)" if waiting else "") + (", stale" if failing else "")


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
    warned: set[str] = set()

    def warn(problem: str) -> None:
        # Once, not at each look of --watch.
        if problem not in warned:
            warned.add(problem)
            out.warn(problem)

    if as_json and not watch:
        out.print_json(_status_document(running, warn))
        return
    if as_json:
        # One JSON object per line, each as it comes: for a pipe or a log to read line by line.
        _every(lambda: out.console.file.write(json.dumps(_status_document(running, warn), default=str) + "\n"), out)
        return
    # The table is all this prints, and fits the width (soft wrapping keeps a message one line).
    out.console.soft_wrap = False
    if not watch:
        out.console.print(_view(running, warn))
        return
    if not out.console.is_terminal:
        # No screen to redraw: a table at each look, one after another.
        _every(lambda: out.console.print(_view(running, warn)), out)
        return
    from rich.live import Live

    with Live(_view(running, warn), console=out.console, refresh_per_second=2) as live:
        while True:
            time.sleep(1)
            live.update(_view(running, warn))


def _status_document(crew: Crew, warn: Callable[[str], None]) -> dict[str, Any]:
    running, rows = _rows(crew, warn)
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
    socket = running.tmux_socket
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
    from agent_smith.runtime.panelog import Follower

    follower = Follower(captured_log(running, agent.name, pane=1 if shell else 0))
    sink = out.console.file
    data = follower.read()
    if not data:
        raise OperationError(f"agent {agent.name!r} has no captured output yet")
    # A chunk at a time (a log holds several of 10 MB); an escape sequence cut by a chunk's end
    # shows as text, as one cut by a file's end did.
    while data:
        sink.write(data.decode("utf-8", "replace") if raw else readable(data))
        data = follower.read()
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

    asyncio.run(
        supervise(
            loaded,
            options,
            binary=binary,
            services=False,
            session=CONTAINER_SESSION,
            stream=_to_stdout,
            progress=stderr_progress(out.log_format),
        )
    )


def _to_stdout(line: str) -> None:
    """Write `line` to file descriptor 1 whole, past sys.stdout's buffer.

    `run` streams from a thread that a slow reader may leave blocked in this write when the
    process ends; blocked inside sys.stdout it would hold the buffer's lock, which the
    interpreter takes to flush stdout as it exits (a fatal error then). A stdout left
    non-blocking by whatever started `run` is waited for rather than given up on.
    """
    data = memoryview(line.encode())
    while data:
        try:
            data = data[os.write(1, data) :]
        except BlockingIOError:
            select.select([], [1], [])


def register(app: typer.Typer) -> None:
    for verb in (up, down, status, attach, logs, restart, run):
        app.command(verb.__name__)(verb)
