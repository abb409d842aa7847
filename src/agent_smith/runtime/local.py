"""Running a crew: from crew.yaml to supervised tmux sessions, on one machine or in a container.

`check_startable` refuses bad input before anything starts; `supervise` is the
supervisor process (foreground); `start_background` daemonises it and
waits until the agents are ready; `stop_crew` ends it and everything it ran.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import gc
import json
import logging
import os
import select
import shutil
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

from agent_smith.crew import Agent, Crew, CrewPaths, LoadedCrew
from agent_smith.crew.loader import firewall_listeners, format_loc, same_address
from agent_smith.errors import AgentSmithError, MissingPartError, OperationError, UsageError
from agent_smith.logs import LogFormat, configure
from agent_smith.processes import runs_agent_smith
from agent_smith.runtime.claude import DEFAULT_PATH, find_claude
from agent_smith.runtime.endpoint import CHAT_PATH, McpEndpoint, http_socket
from agent_smith.runtime.launch import CHAT_CHANNEL, AgentSpec, claude_argv, pane_log
from agent_smith.runtime.panelog import Streamer
from agent_smith.runtime.policy import SERVING, AgentState, Restart
from agent_smith.runtime.rundir import HeldLock, RunDir
from agent_smith.runtime.services import ChildService, bind_problem, parse_listen, read_pid, terminate
from agent_smith.runtime.started import (
    forget_started,
    keep_started,
    started_crew,
    started_from,
    started_runtime,
    where_it_runs,
)
from agent_smith.runtime.supervisor import Service, Supervisor
from agent_smith.runtime.sweep import AGENT_VAR, sweep
from agent_smith.runtime.tmux import Tmux

TYPE_CHECKING = False
if TYPE_CHECKING:
    from agent_smith.chat.config import ChatConfig
    from agent_smith.chat.server import ChannelHost
    from agent_smith.events import Publisher

CONTAINER_SESSION = "main"
# The longest the event client waits for starting agents to show their prompts.
_EVENT_LOG_AFTER = 5.0
# How long `up` gives a supervisor whose agent was stopped to end too, when `down` stopped both.
_STOPPING_WAIT = 3.0
# How often `run` copies the panes' new lines to its stream, and how long its last copy may
# take once the agent stopped (the kubelet's SIGKILL comes 60 s after its SIGTERM).
_STREAM_EVERY = 0.2
_STREAM_DRAIN = 15.0
# The events the supervisor observes before its event log is up, kept across a crash.
HELD_EVENTS = "held-events.jsonl"
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ServeOptions:
    """How to run: which agents, and the knobs `up` and `run` expose."""

    agents: tuple[str, ...] = ()
    firewall: bool = True
    no_proxy: tuple[str, ...] = ()
    clone: bool = True
    interval: float = 0.5
    env: Mapping[str, str] = field(default_factory=lambda: dict(os.environ), repr=False)

    def __post_init__(self) -> None:
        from agent_smith.home.plan import no_proxy_problem

        if (problem := no_proxy_problem(self.no_proxy)) is not None:
            raise UsageError(problem)


def started_with(options: ServeOptions) -> dict[str, object]:
    """The options a later `up` compares its own with (pure)."""
    return {"no_proxy": sorted(options.no_proxy), "firewall": options.firewall}


def options_kept(running: Mapping[str, object], asked: Mapping[str, object]) -> str | None:
    """What to tell a person whose `up` asked for other options than the running supervisor's,
    or None when they are the same (pure)."""
    if running == asked:
        return None
    hosts = running.get("no_proxy")
    described = [
        f"--no-proxy {', '.join(map(str, hosts))}" if isinstance(hosts, list) and hosts else "no --no-proxy",
        "the firewall" if running.get("firewall", True) else "--no-firewall",
    ]
    return (
        f"the running supervisor keeps the options it was started with ({'; '.join(described)}): "
        "`agent-smith down`, then `up`, to change them"
    )


def run_dir(crew: Crew) -> RunDir:
    return RunDir(CrewPaths.of(crew).root / "runtime")


def tmux_for(crew: Crew) -> Tmux:
    return Tmux(crew.tmux_socket)


def selected_agents(crew: Crew, names: Sequence[str]) -> list[Agent]:
    """The named agents (all when none is named); an unknown name is a UsageError."""
    if not names:
        return list(crew.agents)
    return [crew.agent(name) for name in dict.fromkeys(names)]


def is_running(crew: Crew) -> bool:
    """Whether anything of `crew` runs: its supervisor, or agents' sessions one left."""
    return run_dir(crew).running_pid() is not None or bool(tmux_for(crew).list_sessions())


def check_not_running_elsewhere(crew: Crew) -> None:
    """Refuse to start `crew` while the crew `up` started from its directory runs with other
    state or another tmux server (crew.yaml, or the environment, changed the crew's name,
    state_dir or tmux socket): two supervisors would share the agents, or this `up` would
    report the one running as if it ran crew.yaml's."""
    if crew.directory is None:
        return
    here = run_dir(crew)
    if started_runtime(crew.directory) in (None, here.path.absolute()) and here.running_pid() is None:
        return
    started = started_crew(crew.directory)
    if started is None or not is_running(started):
        return
    if where_it_runs(started) != where_it_runs(crew):
        raise UsageError(
            f"the crew started from {crew.directory} runs with the state and tmux server it was started with "
            f"({CrewPaths.of(started).root}, -L {started.tmux_socket}), not those it would have now: "
            "`agent-smith down` it first"
        )


def check_state_is_its_own(crew: Crew) -> None:
    """Refuse to act on another crew that runs with `crew`'s state: one started from another
    directory with the same crew.name and runtime.state_dir (two crews `init` wrote alike). This
    crew's `up` would join that crew's supervisor, and its `down` stop that crew."""
    if crew.directory is None:
        return
    rd = run_dir(crew)
    if rd.running_pid() is None:
        return
    other = started_from(rd.path)
    if other is not None and other != crew.directory.resolve():
        raise UsageError(
            f"the crew started from {other} runs with this crew's state ({CrewPaths.of(crew).root}): give this "
            f"crew its own crew.name or runtime.state_dir (`--crew {other}` acts on the one running)"
        )


def check_startable(loaded: LoadedCrew, options: ServeOptions, *, services: bool) -> Path:
    """Refuse what cannot start, before anything starts; the claude binary to use."""
    agents = selected_agents(loaded.crew, options.agents)
    binary = claude_binary(options.env)
    check_state_dir(loaded.crew)
    if loaded.crew.matrix is not None and not options.env.get("MATRIX_ACCESS_TOKEN", "").strip():
        # Assembly writes MATRIX_ACCESS_TOKEN to each agent's token file; without it, the file must be there.
        _chat_configs(loaded, [a.name for a in agents if a.matrix is not None])
    if shutil.which("tmux") is None:
        raise MissingPartError("tmux is not installed: install it with `apt-get install tmux`")
    crew = loaded.crew
    host, port = parse_listen(crew.runtime.metrics_listen, "runtime.metrics_listen")
    if services and options.firewall:
        for loc, address in firewall_listeners(crew):
            if same_address(crew.runtime.metrics_listen, address):
                raise UsageError(f"runtime.metrics_listen: {crew.runtime.metrics_listen} is {format_loc(loc)} too")
    if (problem := bind_problem(host, port)) is not None:
        raise UsageError(f"runtime.metrics_listen: {problem[1]}")
    if services and options.firewall and _firewall_pid(run_dir(crew)) is None:
        host, port = parse_listen(crew.egress.listen, "egress.listen")
        if (problem := bind_problem(host, port)) is not None:
            running = " (is a firewall running?)" if problem[0] == errno.EADDRINUSE else ""
            raise UsageError(f"egress.listen: {problem[1]}{running}")
        from agent_smith.egress import settings_for

        # What the supervisor hands the firewall (a secret it cannot read, an upstream CA that is not there).
        settings_for(crew, loaded.root, options.env)
    return binary


def check_state_dir(crew: Crew) -> None:
    """Refuse, in one line, a crew whose state could not be kept where its runtime.state_dir says."""
    # The panes' logs too: the supervisor makes that directory only once the agents are
    # assembled, and `run` streams the panes from it, so a file in its place (a volume restored
    # by hand) ended `run` with a traceback after the assembly instead of this line.
    for what, path in (("state", run_dir(crew).path), ("logs", CrewPaths.of(crew).logs)):
        if (blocked := unusable_directory(path)) is not None:
            raise UsageError(f"runtime.state_dir: cannot keep the crew's {what} in {path}: {blocked}")


def unusable_directory(path: Path) -> str | None:
    """Why `path` could not be a directory this process writes in (made later, if missing), or
    None; looked at without making anything."""
    existing = path
    while not existing.exists():
        if existing.is_symlink():
            return f"{existing} is a dangling link"
        existing = existing.parent
    if not existing.is_dir():
        return f"{existing} is not a directory"
    if not os.access(existing, os.W_OK | os.X_OK):
        return f"{existing} is not writable"
    return None


def agent_tag(crew: Crew, agent: str) -> str:
    """What marks every process of `agent` (its AGENT_VAR): by the crew's state directory, not its
    name alone, which two crews may share (`init` gives every crew the same), so `down` of one
    never sweeps the other's."""
    return f"{CrewPaths.of(crew).root}:{agent}"


def claude_binary(env: Mapping[str, str]) -> Path:
    """``$AGENT_SMITH_CLAUDE`` when set, else the pinned CLI of this checkout, else `claude` on PATH."""
    chosen = env.get("AGENT_SMITH_CLAUDE")
    if not chosen:
        return find_claude()
    path = Path(chosen).expanduser()
    if not (path.is_file() and os.access(path, os.X_OK)):
        raise MissingPartError(f"AGENT_SMITH_CLAUDE: {path} is not an executable claude CLI")
    return path


def _path() -> str:
    # agent-smith's own directory first, so the shell pane and hooks find `agent-smith`.
    return f"{Path(sys.executable).parent}:{DEFAULT_PATH}"


def _shell() -> tuple[str, ...]:
    for candidate in ("/bin/bash", "/bin/sh"):
        if Path(candidate).is_file():
            return (candidate,)
    raise MissingPartError("no shell for the agent's second pane: install bash")


def agent_spec(
    loaded: LoadedCrew,
    agent: Agent,
    binary: Path,
    options: ServeOptions,
    *,
    mcp: McpEndpoint,
    session: str | None = None,
    progress: Callable[[str], None] | None = None,
) -> AgentSpec:
    """Assemble the agent's home and workspace, and describe its tmux session."""
    # Imported here, not at the top: `up` forks the supervisor before it needs these.
    from agent_smith.home import (
        MCP_TOKEN_VAR,
        MCP_URL_VAR,
        AssembleOptions,
        agent_environment,
        assemble,
        default_agent_smith_command,
    )

    crew = loaded.crew
    # The agent reaches its MCP tools on this host directly: through the firewall, which proxies
    # HTTPS only, every call would be refused.
    no_proxy = tuple(dict.fromkeys([*options.no_proxy, mcp.host]))
    report = assemble(
        loaded,
        agent.name,
        AssembleOptions(
            clone=options.clone,
            no_proxy=no_proxy,
            env=options.env,
            progress=progress,
            agent_smith_command=default_agent_smith_command(),
        ),
    )
    env = agent_environment(loaded, agent.name, report.home, report.workspace, no_proxy=no_proxy)
    tag = agent_tag(loaded.crew, agent.name)
    env.update({"PATH": _path(), "TERM": "xterm-256color", "LANG": "C.UTF-8", AGENT_VAR: tag})
    # The assembled ~/.claude.json names these two: the CLI expands them when it connects.
    env.update({MCP_URL_VAR: mcp.url, MCP_TOKEN_VAR: mcp.token_for(agent.name)})
    if agent.permission_mode.value == "bypassPermissions" and os.geteuid() == 0:
        # As root the CLI refuses this mode unless told it is sandboxed; an agent is confined
        # by design (its own home, the egress firewall), as `runtime.claude.claude_launch` decides too.
        env["IS_SANDBOX"] = "1"
    paths = CrewPaths.of(crew)
    cwd = report.workspace / agent.primary if agent.primary else report.workspace
    cwd.mkdir(parents=True, exist_ok=True)
    chat = crew.matrix is not None and agent.matrix is not None
    channels = (CHAT_CHANNEL,) if chat else ()
    policy = agent.restart
    return AgentSpec(
        name=agent.name,
        session=session or agent.name,
        claude=claude_argv(
            binary,
            permission_mode=agent.permission_mode.value,
            remote_control=agent.name if agent.remote_control else None,
            channels=channels,
        ),
        env=env,
        tag=tag,
        cwd=cwd,
        shell=_shell(),
        shell_cwd=cwd,
        config_dir=report.home / ".claude",
        state_dir=paths.agent_state(agent.name),
        log_dir=paths.logs,
        restart=Restart(
            min_uptime=policy.min_uptime,
            backoff_initial=policy.backoff_initial,
            backoff_max=policy.backoff_max,
            crash_loop_after=policy.crash_loop_after,
            crash_loop_retry=policy.crash_loop_retry,
        ),
        first_run_prompt=agent.first_run_prompt,
        channels=channels,
    )


def _event_publisher(publisher: Publisher) -> Callable[[str, str, Mapping[str, object]], Any]:
    from agent_smith.events import build_event

    async def publish(type_name: str, agent: str, fields: Mapping[str, object]) -> None:
        await publisher.publish(build_event(type_name, agent, dict(fields)))

    return publish


async def supervise(
    loaded: LoadedCrew,
    options: ServeOptions,
    *,
    binary: Path,
    services: bool,
    session: str | None = None,
    stream: Callable[[str], None] | None = None,
    progress: Callable[[str], None] | None = None,
    on_status: Callable[[], None] | None = None,
    lock: HeldLock | None = None,
) -> None:
    """The supervisor process: services, agents, /metrics, until SIGTERM/SIGINT (or SIGHUP: under
    `up` a detach, keeping the agents; under `run` a stop).

    The order is what makes `up` fast: the firewall's port is bound (a port in
    use fails here, before anything starts), the agents are assembled and their
    claude started, and only then is the firewall launched (not awaited: the
    CLIs' first requests wait in its port's backlog rather than fail) and the
    embedded event log's server started, while the CLIs boot. The event client
    and the event tools (a large import) come up once the agents have shown
    their prompts; the events observed until then are held and published first.
    Agents with repositories are the exception: their clones and fetches go
    through the firewall, so it is launched before they are assembled.
    """
    from agent_smith.home import default_agent_smith_command

    # `up` imports with the collector off (`agent_smith.__main__`), and this process runs for
    # days. What is there now stays as long, so it is frozen out of the collector's walks: the
    # first collection would otherwise walk all of it (~20 ms) while the agents start.
    gc.freeze()
    gc.enable()
    crew = loaded.crew
    paths = CrewPaths.of(crew)
    rd = run_dir(loaded.crew)
    agents = selected_agents(loaded.crew, options.agents)
    # Cloning or fetching takes the firewall, and may take minutes.
    syncs_repos = options.clone and any(a.repos for a in agents)
    interrupted = asyncio.Event()
    with rd.hold(lock) as held:
        began = time.monotonic()
        # What the supervisor keeps alive beside the agents; stopped last first.
        services_kept: list[Service] = []
        firewall: ChildService | None = None
        detached = False
        try:
            if services and options.firewall:
                from agent_smith.egress import launch_for

                # Handed its settings, the firewall does not load the crew again while the agents boot.
                firewall = ChildService(
                    "firewall",
                    [default_agent_smith_command(), "firewall", "--settings-fd", "0"],
                    env=options.env,
                    log_file=paths.logs / "firewall.log",
                    pid_file=rd.firewall_pid,
                    is_ours=is_firewall,
                    listen=parse_listen(crew.egress.listen, "egress.listen"),
                    fd_option="--listen-fd",
                    stdin=launch_for(crew, loaded.root, options.env).pack(),
                )
                services_kept.append(firewall)
                firewall.bind()
                if syncs_repos:
                    # The assembly clones and fetches through it: bound but not serving, it would
                    # hold their CONNECTs in its backlog until the assembly was over, i.e. forever.
                    firewall.launch()
            if syncs_repos:
                _show_assembling(rd, [a.name for a in agents], on_status)
            listener = http_socket(crew.runtime.metrics_listen, rd)
            try:
                mcp = McpEndpoint.at(listener, paths)
                specs = [
                    agent_spec(loaded, a, binary, options, mcp=mcp, session=session, progress=progress) for a in agents
                ]
                log.info("assembled %d agent(s) after %.2fs", len(specs), time.monotonic() - began)
                chat = _chat_configs(loaded, [s.name for s in specs if s.channels])
                supervisor = Supervisor(
                    specs,
                    tmux_for(loaded.crew),
                    rd,
                    services=services_kept,
                    interval=options.interval,
                    logs=(rd.log, paths.logs / "firewall.log"),
                    on_status=on_status,
                    started_with=started_with(options),
                    lock=held,
                )
                await supervisor.serve_http(listener)
            except BaseException:
                listener.close()
                raise
            stop, keep = asyncio.Event(), asyncio.Event()
            # `run` names its session (the container's `main`): nothing adopts what it would leave.
            _handle_signals(stop, keep, interrupted, detachable=session is None)
            waker = wake_on_requests(rd, supervisor)
            watching = False
            channels = None
            try:
                supervisor.hold_events(rd.path / HELD_EVENTS)
                # Before the panes start: their logs may hold an earlier run's output (a container
                # restarted on the same volume), which is not to be streamed again.
                streamer = _streamer(specs, stream) if stream is not None else None
                await supervisor.begin([s.name for s in specs])
                if firewall is not None:
                    firewall.launch()
                if session is None:
                    # `down` and `status` find this crew by its directory even once crew.yaml changes.
                    keep_started(crew, rd.path)
                log.info("started %d agent(s) after %.2fs", len(specs), time.monotonic() - began)
                tokens = {s.name: mcp.token_for(s.name) for s in specs}
                if chat:
                    from agent_smith.chat.server import ChannelHost

                    channels = ChannelHost(chat)
                    channels.start()
                    supervisor.before_launch = partial(_renew_token, channels, crew)
                hosted = channels.servers if channels is not None else {}
                supervisor.serve_mcp({tokens[name]: server for name, server in hosted.items()}, CHAT_PATH)
                supervisor.watch_channels(hosted)
                watcher = asyncio.create_task(_serve(supervisor, stop, keep, streamer))
                watching = True
                try:
                    await _until_started(supervisor, watcher)
                    url = crew.events.nats_url
                    if services and url is None:
                        from agent_smith.runtime.eventlog import EventLogService

                        event_log = EventLogService(paths.nats)
                        # In a thread: the watch and the agents' MCP calls are served meanwhile.
                        url = await asyncio.to_thread(event_log.start)
                        # The supervisor's own list: from now on it keeps this one alive too. First,
                        # so that it is stopped after the firewall.
                        services_kept.insert(0, event_log)
                    from agent_smith.events import Publisher, event_servers
                    from agent_smith.hooks import prompt_tool

                    async with Publisher(crew.events, paths.events, url) as publisher:
                        # The agents' UserPromptSubmit hook calls this tool. Its environment is the one
                        # a command hook of the agent would have had (the pane's, on top of ours).
                        prompts = {
                            s.name: [
                                prompt_tool({**options.env, **s.env}, on_call=partial(supervisor.turn_began, s.name))
                            ]
                            for s in specs
                        }
                        supervisor.serve_mcp(event_servers(tokens, publisher, crew.events, url, prompts))
                        await supervisor.publish_with(_event_publisher(publisher))
                        await watcher
                finally:
                    # Also when the event client failed: the watch ends, and the agents with it.
                    stop.set()
                    await watcher
                detached = keep.is_set()
            except BaseException:
                # Agents started before the failure must not outlive this supervisor.
                if not watching:
                    await supervisor.shutdown()
                raise
            finally:
                if channels is not None:
                    await channels.close()
                await supervisor.close_http()
                loop = asyncio.get_running_loop()
                for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
                    loop.remove_signal_handler(sig)
                if waker is not None:
                    loop.remove_reader(waker.fileno())
                    waker.close()
        finally:
            # Detached (SIGHUP): the agents keep running, so does what they use.
            if not detached:
                for child in reversed(services_kept):
                    child.stop()
    if interrupted.is_set():
        # Everything is stopped; Ctrl-C's own exit (130) is for the caller to give.
        raise KeyboardInterrupt


def _show_assembling(rd: RunDir, names: Sequence[str], on_status: Callable[[], None] | None) -> None:
    """Say in the status that `names` are being assembled: cloning may take minutes, in which
    `up` and `status` would otherwise show them starting, or stopped. What the status said of
    each before (restarts, when an adopted claude started) stays for the supervisor to read."""
    status = rd.read_status() or {}
    before = status.get("agents")
    before = before if isinstance(before, dict) else {}
    agents = {
        name: {**(before[name] if isinstance(before.get(name), dict) else {}), "state": "assembling"} for name in names
    }
    # Said by this supervisor (`up` reads only its own): its metrics come once it serves them.
    rd.write_status({**status, "supervisor": {"pid": os.getpid()}, "agents": {**before, **agents}})
    if on_status is not None:
        on_status()


def _chat_configs(loaded: LoadedCrew, names: Sequence[str]) -> dict[str, ChatConfig]:
    """The Matrix channel settings of each named agent, its access token read from its state directory.

    Read before any agent starts: an agent whose channel cannot log in is a
    configuration error, not a silent agent.
    """
    if not names:
        return {}
    from agent_smith.chat.config import chat_config

    return {name: chat_config(loaded.crew, name, _matrix_token(loaded.crew, name)) for name in names}


def _matrix_token(crew: Crew, name: str) -> str:
    """The Matrix access token in agent `name`'s state directory; a UsageError naming it if unusable."""
    from agent_smith.chat.config import TOKEN_FILE, read_token

    try:
        return read_token({}, CrewPaths.of(crew).agent_state(name) / TOKEN_FILE)
    except UsageError as exc:
        raise UsageError(f"agent {name}'s Matrix channel: {exc}") from None


def _renew_token(channels: ChannelHost, crew: Crew, name: str) -> None:
    """Give `name`'s channel the token its file holds now: restarting an agent is how it takes a
    mended one. One that became unusable is said, and the channel keeps the one it has."""
    try:
        channels.renew_token(name, _matrix_token(crew, name))
    except UsageError as exc:
        log.warning("%s; its channel keeps the token it has", exc)


def _handle_signals(stop: asyncio.Event, keep: asyncio.Event, interrupted: asyncio.Event, *, detachable: bool) -> None:
    """SIGTERM/SIGINT stop everything (SIGINT `interrupted` too); SIGHUP stops only a
    `detachable` supervisor (a detach), and everything for one that is not (`run`: its terminal
    or container went away)."""
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)

    def interrupt() -> None:
        interrupted.set()
        stop.set()

    loop.add_signal_handler(signal.SIGINT, interrupt)

    def detach() -> None:
        keep.set()
        stop.set()

    loop.add_signal_handler(signal.SIGHUP, detach if detachable else stop.set)


def wake_on_requests(rd: RunDir, supervisor: Supervisor) -> socket.socket | None:
    """Wake the supervisor at each nudge on the crew's wake socket (`RunDir.request` sends one)."""
    try:
        sock = rd.wake_listener()
    except OSError as exc:
        log.warning("requests wait for the supervisor's next look: no wake socket (%s)", exc.strerror)
        return None

    def drained() -> None:
        with contextlib.suppress(OSError):
            while sock.recv(16):
                pass
        supervisor.wake()

    asyncio.get_running_loop().add_reader(sock.fileno(), drained)
    return sock


async def _until_started(supervisor: Supervisor, watcher: asyncio.Task[None]) -> None:
    """Until no agent is starting (or the watch ended), _EVENT_LOG_AFTER at most.

    The event client and its tools (nats-py, the event model: ~0.1 s of CPU) load
    after that rather than beside the agents' boot, which they would slow down once
    there are more agents than cores. Meanwhile events are held, and the agents'
    calls of the event tools wait for them.
    """
    started = asyncio.ensure_future(supervisor.none_starting.wait())
    try:
        await asyncio.wait([started, watcher], timeout=_EVENT_LOG_AFTER, return_when=asyncio.FIRST_COMPLETED)
    finally:
        started.cancel()


def _streamer(specs: Sequence[AgentSpec], stream: Callable[[str], None]) -> Streamer:
    return Streamer(
        [(f"{s.name}:{pane}", s.log(index)) for s in specs for index, pane in ((0, "claude"), (1, "shell"))], stream
    )


class _Streaming:
    """`run`'s copy of the panes' new lines to its stream, in a thread of its own.

    A stream that takes lines slowly (a pipe its reader empties slowly, or not at all) holds
    back this thread alone: copied from the supervisor's loop, a full pipe stopped the loop,
    and with it the answers to the kubelet's probes and the restarts of claude. What waits
    meanwhile is in the pane logs on disk, not in memory.
    """

    def __init__(self, streamer: Streamer) -> None:
        self._streamer = streamer
        self._stop = threading.Event()
        # A daemon: one blocked on a stream that takes nothing must not keep the process from ending.
        self._thread = threading.Thread(target=self._copy, name="stream", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def _copy(self) -> None:
        try:
            while not self._stop.wait(_STREAM_EVERY):
                self._streamer.pump()
            self._streamer.finish()
        except OSError as exc:
            # The stream's reader is gone (`run | head` ended): the agent is supervised on, unstreamed.
            log.warning("the panes' output is no longer streamed: %s", exc.strerror or exc)
            self._streamer.close()

    def finish(self, timeout: float) -> bool:
        """Copy what the panes wrote last, partial lines included, and end; whether that was
        done within `timeout` seconds."""
        self._stop.set()
        self._thread.join(timeout)
        return not self._thread.is_alive()


async def _serve(supervisor: Supervisor, stop: asyncio.Event, keep: asyncio.Event, streamer: Streamer | None) -> None:
    """Supervise until told to stop (`keep` set: told to detach, leaving everything running)."""
    streaming = _Streaming(streamer) if streamer is not None else None
    if streaming is not None:
        streaming.start()
    try:
        await supervisor.watch(stop, keep_agents=keep)
    finally:
        # The agents are stopped by now: their panes' last output is in the logs.
        if streaming is not None and not await asyncio.to_thread(streaming.finish, _STREAM_DRAIN):
            log.warning(
                "the panes' last output was not all streamed within %gs: the stream took it too slowly "
                "(it is in the pane logs: `agent-smith logs`)",
                _STREAM_DRAIN,
            )


# ---- the background supervisor ------------------------------------------------------------


@dataclass(frozen=True)
class Background:
    """The forked supervisor: its pid, and the read end of a pipe it writes a byte to at
    each change of status.json (`up` learns of readiness without polling for it)."""

    pid: int
    updates: int

    def close(self) -> None:
        """Done waiting: close the pipe."""
        os.close(self.updates)


def start_background(loaded: LoadedCrew, options: ServeOptions, binary: Path, lock: HeldLock) -> Background:
    """Fork the supervisor into its own session (no second interpreter start-up), handing it
    the supervisor `lock` this process took.

    The child's output goes to the supervisor log; the parent returns at once
    and waits for readiness with `wait_ready`.
    """
    rd = run_dir(loaded.crew)
    sys.stdout.flush()
    sys.stderr.flush()
    updates, tell = os.pipe()
    pid = os.fork()
    if pid:
        os.close(tell)
        # The child holds the lock on; the pid file is its to keep and remove.
        lock.file.close()
        return Background(pid, updates)
    os.close(updates)
    os.set_blocking(tell, False)
    code = 1
    try:
        os.setsid()
        fd = os.open(rd.log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        null = os.open(os.devnull, os.O_RDONLY)
        os.dup2(null, 0)
        os.dup2(fd, 1)
        os.dup2(fd, 2)
        configure(LogFormat.json, "info", sys.stderr)
        asyncio.run(supervise(loaded, options, binary=binary, services=True, on_status=_Teller(tell), lock=lock))
        code = 0
    except KeyboardInterrupt:
        code = 130
    except AgentSmithError as exc:
        log.error("%s", exc)
        code = exc.exit_code
    except BaseException:
        log.exception("the supervisor failed")
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


class _Teller:
    """Writes a byte to `fd` at each status change, until its reader (`up`, gone once ready) is."""

    def __init__(self, fd: int) -> None:
        self.fd: int | None = fd

    def __call__(self) -> None:
        if self.fd is None:
            return
        try:
            os.write(self.fd, b".")
        except BlockingIOError:
            pass  # A full pipe already says that something changed.
        except OSError:
            os.close(self.fd)
            self.fd = None


def _exited(pid: int) -> int | None:
    """The exit code of our child `pid` once it ended, else None."""
    try:
        done, status = os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        return -1
    if done == 0:
        return None
    return os.waitstatus_to_exitcode(status)


def _exit_within(pid: int, timeout: float) -> int | None:
    """The exit code of our child `pid` once it ended within `timeout` seconds, else None."""
    deadline = time.monotonic() + timeout
    while (code := _exited(pid)) is None and time.monotonic() < deadline:
        time.sleep(0.05)
    return code


def _failed(rd: RunDir, code: int) -> AgentSmithError:
    """The supervisor `up` forked exited with `code`: its last word is why (a configuration
    problem found there is still bad usage)."""
    failure = UsageError if code == UsageError.exit_code else OperationError
    return failure(f"{_last_message(rd.log)} (the supervisor exited with code {code})")


def wait_ready(
    crew: Crew,
    names: Sequence[str],
    *,
    timeout: float,
    child: Background | None,
    progress: Callable[[str, str], None],
    since: float = 0.0,
    asked: Sequence[str] = (),
) -> dict[str, Any]:
    """Read status.json until every agent in `names` serves; report each state change.

    `asked`: the ids of the requests made of a running supervisor; only a status that names
    them all as taken is believed, and an agent stopped there (a `down NAME` meanwhile) ends
    the wait at once.

    The supervisor `up` forked (`child`) says when the file changes; one that ran
    already is polled. The firewall is not waited for: it comes up beside the
    agents, which need it only for their first HTTPS request; `status` shows
    whether it listens.
    """
    rd = run_dir(crew)
    deadline = time.monotonic() + timeout
    shown: dict[str, str] = {}
    while True:
        status = rd.read_status() or {}
        supervisor = status.get("supervisor")
        if child is not None and (supervisor.get("pid") if isinstance(supervisor, dict) else None) != child.pid:
            # An earlier supervisor's word: the agents it saw ready may have died since.
            status = {}
        took = supervisor.get("took") if isinstance(supervisor, dict) else None
        # States from after the requests were taken: none that ends waiting will change by
        # waiting, and none said before them (serving then, stopped by them) ends it.
        fresh = child is None and asked and isinstance(took, list) and set(asked) <= set(took)
        states = report_states(status, names, shown, progress, since)
        if (fresh or not asked) and all(s in {x.value for x in SERVING} for s in states.values()):
            return status
        if child is not None and (code := _exited(child.pid)) is not None:
            raise _failed(rd, code)
        if child is None and rd.running_pid() is None:
            # It ran when asked (a `down` since?): nothing will start the agents now.
            raise OperationError("the supervisor stopped meanwhile: start the crew with `agent-smith up`")
        if fresh and (why := given_up(states, supervisor_ended=False)) is not None:
            raise OperationError(why)
        if child is not None and given_up(states, supervisor_ended=False):
            # The states of the supervisor `up` started: none of them ends by waiting (one that
            # ran before may not have taken a start or restart asked of it yet). An agent stopped
            # by a `down` of the whole crew: the supervisor is on its way out too.
            stopped = AgentState.STOPPED.value in states.values()
            code = _exit_within(child.pid, _STOPPING_WAIT) if stopped else None
            if code is not None and code > 0:
                # It failed, and stopped its agents on its way out: no `down` did.
                raise _failed(rd, code)
            raise OperationError(given_up(states, supervisor_ended=code is not None) or "")
        if time.monotonic() >= deadline:
            waiting = ", ".join(f"{n} ({s})" for n, s in states.items() if s not in {x.value for x in SERVING})
            raise OperationError(f"not ready within {timeout:g}s: {waiting}; see `agent-smith logs NAME`")
        if child is not None and _changed(child.updates, min(0.5, deadline - time.monotonic())):
            continue
        # Reading a small file is cheap; a coarse poll would add its period to every `up`.
        time.sleep(0.02)


def wait_taken(rd: RunDir, asked: Sequence[Path], *, timeout: float) -> None:
    """Until the running supervisor took the requests `asked` (their files are gone); an
    OperationError when it stops first, as one stopped by a `down` does without taking them."""
    deadline = time.monotonic() + timeout
    while any(path.exists() for path in asked) and time.monotonic() < deadline:
        if rd.running_pid() is None:
            raise OperationError("the supervisor stopped meanwhile (a `down`?): start the crew with `agent-smith up`")
        time.sleep(0.02)


def given_up(states: Mapping[str, str], *, supervisor_ended: bool) -> str | None:
    """Why waiting for `states` cannot help (pure): an agent stopped (`down`), or whose claude
    crash-loops (it is retried only slowly); None when waiting can."""
    looping = [name for name, state in states.items() if state == AgentState.CRASH_LOOPING.value]
    stopped = [name for name, state in states.items() if state == AgentState.STOPPED.value]
    if not (looping or stopped):
        return None
    ended = [f"{name} is crash-looping" for name in looping] + [f"{name} was stopped" for name in stopped]
    if supervisor_ended:
        return f"{', '.join(ended)}: the crew was stopped (`agent-smith down`) while it started"
    return f"{', '.join(ended)}; see `agent-smith logs {(looping or stopped)[0]}` (the supervisor runs on)"


def report_states(
    status: Mapping[str, Any],
    names: Sequence[str],
    shown: dict[str, str],
    progress: Callable[[str, str], None],
    since: float = 0.0,
) -> dict[str, str]:
    """Each agent's state in `status` (one that served before `since` is starting again), told to
    `progress` when it differs from `shown`, which is updated."""
    agents = status.get("agents", {}) if isinstance(status.get("agents"), dict) else {}
    states: dict[str, str] = {}
    for name in names:
        entry = agents.get(name, {})
        state = entry.get("state", "starting") if isinstance(entry, dict) else "starting"
        started = entry.get("started_at") if isinstance(entry, dict) else None
        if state in (s.value for s in SERVING) and isinstance(started, int | float) and started < since:
            state = "starting"
        states[name] = state
        if shown.get(name) != state:
            shown[name] = state
            progress(name, state)
    return states


def _changed(updates: int, timeout: float) -> bool:
    """Whether the supervisor told of a change within `timeout`; False once it closed the pipe
    (it exited), which the caller then finds."""
    ready, _, _ = select.select([updates], [], [], max(timeout, 0.0))
    return bool(ready) and bool(os.read(updates, 4096))


def _last_message(path: Path) -> str:
    """The message of the last line of a log (JSON lines, or text from before they were)."""
    try:
        lines = [line for line in path.read_text(errors="replace").splitlines() if line.strip()]
    except FileNotFoundError:
        return "no output"
    if not lines:
        return "no output"
    try:
        entry = json.loads(lines[-1])
    except ValueError:
        return lines[-1]
    message = entry.get("message") if isinstance(entry, dict) else None
    if not isinstance(message, str):
        return lines[-1]
    # The exception a failure was logged with: "the supervisor failed" alone says not why.
    error = entry.get("error")
    return f"{message}: {error}" if isinstance(error, str) else message


@dataclass(frozen=True)
class CrewStopped:
    """What `stop_crew` stopped: the agents that were running or supervised (one backing off, say),
    not every agent named; and the crew's own processes that ran ("supervisor", "firewall",
    "event log", in that order)."""

    agents: tuple[str, ...]
    services: tuple[str, ...] = ()


def stop_crew(crew: Crew, names: Sequence[str], *, timeout: float = 30.0) -> CrewStopped:
    """Stop the named agents (all, and the supervisor with its services, when none is named).

    Whatever the supervisor left (it may have been killed), the agents'
    tmux sessions are gone afterwards.
    """
    rd = run_dir(crew)
    agents = selected_agents(crew, names)
    tmux = tmux_for(crew)
    pid = rd.running_pid()
    was_up = rd.supervised() | set(tmux.list_sessions())
    ran = {"supervisor": pid, "firewall": _firewall_pid(rd), "event log": _nats_pid(crew)}
    services = () if names else tuple(name for name, running in ran.items() if running is not None)
    if names and pid is not None:
        for agent in agents:
            rd.request("stop", agent.name)
        _wait(lambda: all(not tmux.has_session(a.name) for a in agents), timeout)
    elif pid is not None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
        if not _wait(lambda: rd.running_pid() is None, timeout):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            _wait(lambda: rd.running_pid() is None, 5.0)
    if not names and rd.running_pid() is None:
        # What a killed supervisor left behind: its firewall and embedded event log.
        for leftover in (_firewall_pid(rd), _nats_pid(crew)):
            if leftover is not None:
                terminate(leftover, 10.0)
    stopped = []
    for agent in agents:
        if tmux.has_session(agent.name):
            tmux.kill_session(agent.name)
        sweep(AGENT_VAR, agent_tag(crew, agent.name))
        if agent.name in was_up:
            stopped.append(agent.name)
    if not names and not tmux.list_sessions():
        tmux.kill_server()
    if not names:
        forget_started(crew, rd.path)
    return CrewStopped(tuple(stopped), services)


def _nats_pid(crew: Crew) -> int | None:
    from agent_smith.events.embedded import running_server

    found = running_server(CrewPaths.of(crew).nats)
    return None if found is None else found.pid


def _firewall_pid(rd: RunDir) -> int | None:
    """The firewall a supervisor started, if it runs (its pid file may have outlived it)."""
    pid = read_pid(rd.firewall_pid)
    return pid if pid is not None and is_firewall(pid) else None


def is_firewall(pid: int) -> bool:
    """Whether `pid` is an agent-smith firewall, however it was started: by a supervisor
    (`--settings-fd`), or before it (`--crew`, as the demo does, for the supervisor to adopt)."""
    return runs_agent_smith(pid, "firewall")


def captured_log(crew: Crew, agent: str, *, pane: int) -> Path:
    """Where an agent's pane output is captured (pane 0 claude, 1 the shell), in chunks: read it
    with `panelog.Follower`."""
    return pane_log(CrewPaths.of(crew).logs, agent, pane)


def _wait(done: Callable[[], bool], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while not done():
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.05)
    return True
