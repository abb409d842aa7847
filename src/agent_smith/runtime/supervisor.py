"""The supervisor: observes each agent's tmux session, asks `policy.decide`, carries out the answer.

Every `interval` it reads all panes in one tmux call and the screens of
every running claude in one more, takes requests from `restart`/`down`/`up`, and feeds
what it saw to the policy. It never blocks on an agent: tmux owns the
processes, so this process can die and a new one adopts the sessions it
finds (`Adopted`) without restarting a healthy agent.
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
import re
import socket
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal, Protocol

from agent_smith.errors import OperationError, UsageError
from agent_smith.events import pending
from agent_smith.events.ids import new_id
from agent_smith.fsutil import write_atomic
from agent_smith.mcphttp import HttpAnswer, answer_http
from agent_smith.mcpstdio import McpServer
from agent_smith.runtime import session as panes
from agent_smith.runtime.claude import PROMPT_READY
from agent_smith.runtime.endpoint import CHAT_PATH, MCP_PATH
from agent_smith.runtime.launch import (
    AgentSpec,
    busy,
    confirms_dev_channels,
    has_previous_session,
    unsent_input,
    with_resume,
)
from agent_smith.runtime.logfiles import LOG_LIMIT, rotate_if_large
from agent_smith.runtime.policy import (
    RUNNING,
    SERVING,
    Action,
    Adopted,
    AgentState,
    ChannelLost,
    ChannelVerdict,
    ChannelWatch,
    Exited,
    Kill,
    Launch,
    Launched,
    Observation,
    PromptSeen,
    Publish,
    Record,
    StartRequested,
    StopRequested,
    Tick,
    TurnBegan,
    decide,
    shifted,
    watch_channel,
)
from agent_smith.runtime.rundir import HeldLock, RunDir, status_number
from agent_smith.runtime.sweep import AGENT_VAR, LAUNCH_VAR, environment_value, sweep
from agent_smith.runtime.tmux import Tmux

log = logging.getLogger(__name__)

_SELECTOR = re.compile(r"^❯ \d+\.", re.MULTILINE)
# A pane's log keeps its chunk being written and this many before it (`session.prune`).
LOG_KEEP = 5
# While an agent starts its readiness is what `up` waits for. Its claude drawing on screen
# (its pane log growing) prompts a look, at most every _STARTING_GAP; one happens at least
# every _STARTING_INTERVAL. Once every agent serves, looks are calm (`interval`).
_STARTING_INTERVAL = 0.05
_STARTING_GAP = 0.015
_OUTPUT_POLL = 0.004
_MCP_READY_WAIT = 30.0
# What the endpoint serves besides MCP: read, never changed, by a request (GET or HEAD).
_READ_ONLY = frozenset({"/metrics", "/healthz", "/readyz"})
# A first-run prompt still in claude's input this long after its Enter gets another, this often at most.
_SUBMIT_CHECK = 1.0
# What an event held until the event log is up is kept as (`events.pending`).
_HELD_KEYS = frozenset({"id", "type", "agent", "fields"})
_SUBMIT_TRIES = 5
# How many of the requests taken last the status names (a few steps' worth).
_TOOK_KEPT = 64
# A change of the clock against the time since boot between two looks that is taken for the clock
# being set (by hand, or stepped by NTP); NTP's slewing is far below it.
_CLOCK_JUMP = 1.0
# Claude Code reconnects a broken MCP stream five times, 1 s to 30 s apart (~16 s when the
# endpoint refuses at once), then gives up on that server for good.
CHANNEL_GRACE = 30.0

Publisher = Callable[[str, str, Mapping[str, object]], Awaitable[None]]
"""publish(event type, agent, fields): sends one agent_started/agent_stopped/agent_crashed event."""


class Service(Protocol):
    """A helper process the supervisor keeps alive beside the agents (the firewall, the event log)."""

    name: str

    @property
    def listening(self) -> bool: ...

    def check(self, now: float) -> None: ...

    def stop(self, grace: float = 10.0) -> None: ...


def _count(entry: object, key: str) -> int:
    """A count in an agent's entry of an earlier status; 0 when absent or not a count."""
    value = entry.get(key) if isinstance(entry, dict) else None
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else 0


def _since_boot() -> float:
    """Seconds since the machine booted: never set, and counting on while it sleeps (a suspended
    laptop's clock is right when it wakes, not set)."""
    return time.clock_gettime(time.CLOCK_BOOTTIME)


def at_prompt(screen: str) -> bool:
    """claude's input prompt is on screen (and not a dialog's selection cursor)."""
    return PROMPT_READY.search(screen) is not None and _SELECTOR.search(screen) is None


@dataclass(frozen=True)
class Unsent:
    """A first-run prompt typed and not yet seen sent: when to look again, the Enters pressed
    again, and since when claude's input box has been seen empty (None: not since the last look
    that saw the text there)."""

    at: float
    tries: int = 0
    empty_since: float | None = None

    def shifted(self, jump: float) -> Unsent:
        """The same wait, its times moved with a clock set by `jump` seconds (pure)."""
        since = self.empty_since
        return replace(self, at=self.at + jump, empty_since=None if since is None else since + jump)


def submit_step(
    unsent: Unsent, waiting: bool | None, now: float
) -> tuple[Unsent | None, Literal["enter", "give up"] | None]:
    """What to remember next of a typed first-run prompt, and what to do: press Enter again, a few
    times at most, never type it again. Pure.

    `waiting`: whether the text still sits in claude's input box (the CLI dropped the Enter, as
    it does right after the box first shows); None when the screen showed no box. One look at
    an empty box is no proof it was sent: a screen caught mid-redraw has shown the text outside
    the box. It is sent once the box has stayed empty for `_SUBMIT_CHECK`."""
    if waiting is None:
        return unsent, None
    if not waiting:
        if unsent.empty_since is None:
            return replace(unsent, empty_since=now), None
        return (None, None) if now - unsent.empty_since >= _SUBMIT_CHECK else (unsent, None)
    unsent = replace(unsent, empty_since=None)
    if now < unsent.at:
        return unsent, None
    if unsent.tries >= _SUBMIT_TRIES:
        return None, "give up"
    return Unsent(now + _SUBMIT_CHECK, unsent.tries + 1), "enter"


@dataclass
class _Agent:
    spec: AgentSpec
    record: Record
    dialog_answered: bool = False
    launch_id: str | None = None
    exit_unread: bool = False
    channel: ChannelWatch = field(default_factory=ChannelWatch)
    # The first-run prompt typed and not seen sent yet.
    unsent: Unsent | None = None


class Metrics:
    """The agents' Prometheus metrics, made on the first scrape (prometheus_client is imported then:
    `up` starts the agents without it)."""

    def __init__(self) -> None:
        from prometheus_client import CollectorRegistry, Counter, Gauge

        self.registry = CollectorRegistry()
        self.state = Gauge(
            "agent_smith_agent_state", "1 for the state each agent is in.", ["agent", "state"], registry=self.registry
        )
        # A counter (exposed as agent_smith_agent_restarts_total), so that rate() and increase() apply.
        self.restarts = Counter(
            "agent_smith_agent_restarts", "Restarts of each agent's claude since it was first started.",
            ["agent"], registry=self.registry,
        )  # fmt: skip
        # What each agent's counter holds: a Counter is only ever increased, by the restarts since.
        self._restarts_counted: dict[str, int] = {}
        self.uptime = Gauge(
            "agent_smith_agent_uptime_seconds", "How long each agent's claude has run.", ["agent"],
            registry=self.registry,
        )  # fmt: skip
        self.channel = Gauge(
            "agent_smith_agent_channel_connected", "1 while each chat agent's claude holds its Matrix channel.",
            ["agent"], registry=self.registry,
        )  # fmt: skip
        self.service = Gauge(
            "agent_smith_service_up", "1 while each service kept beside the agents runs (firewall, event log).",
            ["service"], registry=self.registry,
        )  # fmt: skip

    def update(self, record: Record, now: float, channel: bool | None) -> None:
        for state in AgentState:
            self.state.labels(record.name, state.value).set(1 if record.state is state else 0)
        counted = self._restarts_counted.get(record.name, 0)
        # The first scrape counts an adopted agent's restarts from the supervisor before.
        self.restarts.labels(record.name).inc(max(0, record.restarts - counted))
        self._restarts_counted[record.name] = max(counted, record.restarts)
        self.uptime.labels(record.name).set(now - record.started_at if record.started_at is not None else 0)
        if channel is not None:
            self.channel.labels(record.name).set(1 if channel else 0)

    def exposition(self) -> tuple[str, bytes]:
        """The content type and body of a scrape: the agents', and what this process's other parts
        keep on prometheus_client's default registry (its event publisher's, the process's own)."""
        from prometheus_client import REGISTRY, generate_latest
        from prometheus_client.exposition import CONTENT_TYPE_LATEST

        return CONTENT_TYPE_LATEST, generate_latest(self.registry) + generate_latest(REGISTRY)


class Supervisor:
    def __init__(
        self,
        specs: Sequence[AgentSpec],
        tmux: Tmux,
        run_dir: RunDir,
        *,
        publish: Publisher | None = None,
        services: Sequence[Service] = (),
        clock: Callable[[], float] = time.time,
        jitter: Callable[[], float] = random.random,
        interval: float = 0.5,
        log_keep: int = LOG_KEEP,
        logs: Sequence[Path] = (),
        log_limit: int = LOG_LIMIT,
        channel_grace: float = CHANNEL_GRACE,
        on_status: Callable[[], None] | None = None,
        started_with: Mapping[str, object] | None = None,
        lock: HeldLock | None = None,
    ) -> None:
        self.tmux = tmux
        # Looked at before every step: once the crew's state directory is gone, so is the crew.
        self._lock = lock
        self.state_gone = False
        self._took: tuple[str, ...] = ()
        # The options of `up` it runs with, in its status: a later `up` with others says they stay.
        self._started_with = dict(started_with or {})
        self._on_status = on_status
        # Per path (the event tools, the Matrix channel), bearer token → the agent's MCP server.
        # An agent's CLI may connect before they are up (it boots meanwhile): its requests wait
        # for `serve_mcp`.
        self.mcp: dict[str, Mapping[str, McpServer]] = {}
        self._mcp_ready = {path: asyncio.Event() for path in (MCP_PATH, CHAT_PATH)}
        self._channels: Mapping[str, McpServer] = {}
        self._channel_grace = channel_grace
        self.run_dir = run_dir
        self.publish = publish
        # Events observed while held (`hold_events` until `publish_with`), in order, each with its time.
        self._held: list[dict[str, Any]] | None = None
        self._held_in: Path | None = None
        # Called with an agent's name before each start of its claude (its Matrix token is read again).
        self.before_launch: Callable[[str], None] | None = None
        # Set while no agent is starting (launched, its prompt not seen yet), from the first status on.
        self.none_starting = asyncio.Event()
        self._services = services
        self._clock = clock
        self._jitter = jitter
        self.interval = interval
        self._log_keep = log_keep
        # Its own log and the firewall's, kept bounded as the panes' are.
        self._logs, self._log_limit = tuple(logs), log_limit
        self._metrics: Metrics | None = None
        self.metrics_url: str | None = None
        self._http_server: asyncio.Server | None = None
        self._connections: set[asyncio.Task[Any]] = set()
        self.started_at = clock()
        previous = (run_dir.read_status() or {}).get("agents", {})
        self.agents: dict[str, _Agent] = {}
        for spec in specs:
            self.agents[spec.name] = _Agent(spec, Record(spec.name, spec.restart))
        self._previous = previous if isinstance(previous, dict) else {}
        self._last_status: dict[str, Any] | None = None
        # The clock and the time since boot when last read together: a jump of one is seen against the other.
        self._clocks = (clock(), _since_boot())
        # Why the status file could not be written (None: it was), said once until it can be again.
        self._status_unwritten: str | None = None
        self._woken = asyncio.Event()

    # ---- the loop -------------------------------------------------------------------------

    async def begin(self, wanted: Sequence[str]) -> None:
        """Adopt sessions that already run; start the `wanted` agents that do not."""
        live = panes.panes(self.tmux)
        now = self._clock()
        for name, agent in self.agents.items():
            claude = live.get((agent.spec.session, panes.CLAUDE_PANE))
            if claude is not None and not claude.dead:
                before = self._previous.get(name, {})
                started = status_number(before, "started_at")
                # Counted on from the supervisor before: an adopted agent keeps its restarts, and
                # one that crashed fast just before stays that close to a crash loop. One started
                # anew (it was not running) begins with none.
                restarts, fast = (_count(before, key) for key in ("restarts", "fast_crashes"))
                # And what `status` showed of it meanwhile: its last exit and last activity.
                code = before.get("last_exit") if isinstance(before, dict) else None
                agent.record = replace(
                    agent.record,
                    restarts=restarts,
                    fast_crashes=fast,
                    last_exit=code if isinstance(code, int) and not isinstance(code, bool) else None,
                    last_activity=status_number(before, "last_activity"),
                )
                agent.launch_id = environment_value(claude.pid, LAUNCH_VAR)
                # Its claude held the channel of the supervisor before: lost now, it is given up on.
                agent.channel = ChannelWatch(held=True)
                await self._observe(agent, Adopted(now if started is None else started))
            elif name in wanted:
                await self._observe(agent, StartRequested())
        self._write_status()

    async def step(self) -> None:
        self._follow_the_clock()
        self._bound_logs()
        if taken := self.run_dir.take_requests():
            for op, name, _ in taken:
                await self.handle(op, name)
            # In the status this step writes: a waiter whose request is named there knows the
            # states it reads are after it, and that an agent stopped is stopped for good. The
            # last few steps' requests stay named, for a waiter that read no status in between.
            self._took = (*self._took, *(request for *_, request in taken))[-_TOOK_KEPT:]
        running = [a.spec.session for a in self.agents.values() if a.record.state in RUNNING]
        try:
            live, shown = panes.look(self.tmux, running)
        except OperationError as exc:
            log.warning("tmux did not answer, skipping this look: %s", exc)
            return
        for agent in self.agents.values():
            try:
                if agent.record.state in RUNNING:
                    await self._look(agent, live, shown)
                await self._observe(agent, Tick())
                for role in (panes.CLAUDE_PANE, panes.SHELL_PANE):
                    panes.prune(agent.spec, role, keep=self._log_keep)
            except OperationError as exc:
                # A session that vanished between two tmux calls: the next look sees it gone.
                log.warning("agent %s: %s", agent.spec.name, exc)
            except OSError as exc:
                # A full disk or a read-only state directory (a pane's environment file, the
                # first-run marker): the agents that run are left running, and the next look tries again.
                log.warning("agent %s: %s", agent.spec.name, exc)
        now = self._clock()
        await self._check_channels(now)
        for service in self._services:
            service.check(now)
        self._write_status()

    def _bound_logs(self) -> None:
        for path in self._logs:
            try:
                if rotate_if_large(path, limit=self._log_limit):
                    log.info("%s passed %d bytes: its lines so far are in %s.1", path, self._log_limit, path.name)
            except OSError as exc:
                # A full disk, say: it grows on, and the next step tries again.
                log.warning("cannot rotate %s: %s", path, exc.strerror or exc)

    def _follow_the_clock(self) -> None:
        """Move the agents' times with a clock that was set: the restarts, channel checks and
        Enter presses they hold are as far away after it as before, not the jump nearer or
        farther (a clock set back an hour would hold every restart back an hour)."""
        clocks = (self._clock(), _since_boot())
        jump = (clocks[0] - self._clocks[0]) - (clocks[1] - self._clocks[1])
        self._clocks = clocks
        if abs(jump) < _CLOCK_JUMP:
            return
        log.warning("the clock was set %+.0fs: the agents' times are moved with it", jump)
        for agent in self.agents.values():
            agent.record = shifted(agent.record, jump)
            if agent.channel.down_since is not None:
                agent.channel = replace(agent.channel, down_since=agent.channel.down_since + jump)
            if agent.unsent is not None:
                agent.unsent = agent.unsent.shifted(jump)

    def _channel_connected(self, name: str) -> bool | None:
        server = self._channels.get(name)
        return None if server is None else server.connected

    def watch_channels(self, servers: Mapping[str, McpServer]) -> None:
        """Restart an agent whose claude stays off its Matrix channel (`servers`: agent → its channel)."""
        self._channels = servers

    async def _check_channels(self, now: float) -> None:
        for name, server in self._channels.items():
            agent = self.agents.get(name)
            if agent is None:
                continue
            serving = agent.record.state in SERVING
            off = now - agent.channel.down_since if agent.channel.down_since is not None else 0.0
            agent.channel, verdict = watch_channel(
                agent.channel, serving=serving, connected=server.connected, now=now, grace=self._channel_grace
            )
            if verdict is ChannelVerdict.LOST:
                log.warning("agent %s: its claude has been off the Matrix channel for %.0fs; restarting it", name, off)
                await self._observe(agent, ChannelLost(self._jitter()))
            elif verdict is ChannelVerdict.NEVER:
                log.warning(
                    "agent %s: its claude has not connected its Matrix channel in %.0fs; is the MCP server "
                    "`matrix` turned off in its settings? See its pane (`agent-smith attach %s`)",
                    name,
                    off,
                    name,
                )

    async def run(
        self, wanted: Sequence[str], stop: asyncio.Event, *, keep_agents: asyncio.Event | None = None
    ) -> None:
        """`begin`, then `watch` until `stop`."""
        await self.begin(wanted)
        await self.watch(stop, keep_agents=keep_agents)

    async def watch(self, stop: asyncio.Event, *, keep_agents: asyncio.Event | None = None) -> None:
        """Step until `stop`; then end every agent, unless `keep_agents` was set (a detach)."""
        try:
            while not stop.is_set():
                if self._lock is not None and self._lock.taken_away():
                    # Its agents' homes and logs went with it: running on would restart them into
                    # a state directory made anew, and leave this process for `down` to miss.
                    log.error(
                        "the crew's state directory %s was removed or replaced: stopping the crew",
                        self.run_dir.path.parent,
                    )
                    self.state_gone = True
                    stop.set()
                    break
                await self.step()
                starting = [a.spec for a in self.agents.values() if a.record.state is AgentState.STARTING]
                if starting and self.interval > _STARTING_INTERVAL:
                    await self._until_drawn(stop, starting)
                else:
                    await self._pause(stop, self.interval)
        finally:
            if keep_agents is None or not keep_agents.is_set():
                await self.shutdown()

    async def _until_drawn(self, stop: asyncio.Event, starting: Sequence[AgentSpec]) -> None:
        """Pause until a starting claude has drawn something since the last look, or for
        _STARTING_INTERVAL: a prompt is seen within a few ms of being drawn, and a claude
        that draws nothing costs no tmux call."""
        sizes = [panes.drawn(spec, panes.CLAUDE_PANE) for spec in starting]
        loop = asyncio.get_running_loop()
        until = loop.time() + _STARTING_INTERVAL
        if await self._pause(stop, _STARTING_GAP):
            return
        while loop.time() < until:
            if [panes.drawn(spec, panes.CLAUDE_PANE) for spec in starting] != sizes:
                return
            if await self._pause(stop, _OUTPUT_POLL):
                return

    def wake(self) -> None:
        """Look now rather than at the end of the pause: a request is waiting."""
        self._woken.set()

    async def _pause(self, stop: asyncio.Event, seconds: float) -> bool:
        """Wait `seconds`, less when stopped or woken; whether it was."""
        waits = [asyncio.ensure_future(stop.wait()), asyncio.ensure_future(self._woken.wait())]
        try:
            done, _ = await asyncio.wait(waits, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for wait in waits:
                wait.cancel()
        self._woken.clear()
        return bool(done)

    async def turn_began(self, name: str) -> None:
        """`name`'s claude began a turn (its prompt hook called the supervisor)."""
        if (agent := self.agents.get(name)) is not None:
            await self._observe(agent, TurnBegan())
            self._write_status()

    async def handle(self, op: str, name: str) -> None:
        agent = self.agents.get(name)
        if agent is None:
            log.warning("request %s for unknown agent %s ignored", op, name)
            return
        if op in ("stop", "restart"):
            await self._observe(agent, StopRequested(claude_only=op == "restart"))
        if op in ("start", "restart"):
            await self._observe(agent, StartRequested())

    async def shutdown(self) -> None:
        for agent in self.agents.values():
            await self._observe(agent, StopRequested())
        for agent in self.agents.values():
            self.tmux.kill_session(agent.spec.session)
        if not self.tmux.list_sessions():
            self.tmux.kill_server()
        self._write_status()

    # ---- observing ------------------------------------------------------------------------

    async def _look(
        self, agent: _Agent, live: Mapping[tuple[str, int], panes.PaneStatus], shown: Mapping[str, str]
    ) -> None:
        spec = agent.spec
        shell = live.get((spec.session, panes.SHELL_PANE))
        claude = live.get((spec.session, panes.CLAUDE_PANE))
        if shell is not None and shell.dead:
            # The agent's shell ended (`exit`, or killed): a new one, where the old one started.
            log.info("%s: its shell ended (code %s); starting a new one", spec.name, shell.exit_code)
            panes.restart_shell(self.tmux, spec, at=shell, claude=claude)
        elif shell is None and claude is not None:
            log.info("%s: its shell's pane was closed; opening it again", spec.name)
            panes.restart_shell(self.tmux, spec, at=None, claude=claude)
        if claude is not None and claude.dead and claude.exit_code is None and not agent.exit_unread:
            # tmux marks a pane dead when its pty closes, which can come before it has reaped the
            # process (and it can miss the SIGCHLD altogether): nudge it, read it on the next round.
            self.tmux.reap()
            agent.exit_unread = True
            return
        if claude is None or claude.dead:
            agent.exit_unread = False
            code = claude.exit_code if claude is not None else None
            if agent.launch_id is not None:
                # Hooks and MCP servers of the claude that died would otherwise outlive it.
                await asyncio.to_thread(sweep, LAUNCH_VAR, agent.launch_id)
            await self._observe(agent, Exited(code, self._jitter()))
            return
        screen = shown[spec.session] if spec.session in shown else panes.screen(self.tmux, claude.id)
        if not agent.dialog_answered and confirms_dev_channels(screen, spec.channels):
            panes.press(self.tmux, claude.id, "Enter")
            agent.dialog_answered = True
            return
        if at_prompt(screen):
            await self._observe(agent, PromptSeen(busy=busy(screen)))
            self._first_run(agent, screen, claude.id)

    def _first_run(self, agent: _Agent, screen: str, claude: str) -> None:
        """Type the first-run prompt into the pane `claude` (by its id) once, ever; then see it sent."""
        spec = agent.spec
        if agent.unsent is not None:
            self._see_it_sent(agent, screen, claude)
            return
        if not spec.first_run_prompt or spec.first_run_marker.exists():
            return
        # The marker is written before typing: the prompt is sent at most once, ever,
        # even if this process dies between the two.
        write_atomic(spec.first_run_marker, f"{self._clock():.3f}\n")
        panes.type_text(self.tmux, claude, spec.first_run_prompt)
        agent.unsent = Unsent(self._clock() + _SUBMIT_CHECK)

    def _see_it_sent(self, agent: _Agent, screen: str, claude: str) -> None:
        assert agent.unsent is not None
        agent.unsent, act = submit_step(agent.unsent, unsent_input(screen), self._clock())
        name = agent.spec.name
        if act == "enter":
            log.info("%s: the first-run prompt waits in claude's input; pressing Enter again", name)
            panes.press(self.tmux, claude, "Enter")
        elif act == "give up":
            log.warning("%s: the first-run prompt is still unsent in claude's input; attach to send it", name)

    async def _observe(self, agent: _Agent, observation: Observation) -> None:
        now = self._clock()
        record, actions = decide(agent.record, now, observation)
        agent.record = record
        for action in actions:
            await self._carry_out(agent, action)

    async def _carry_out(self, agent: _Agent, action: Action) -> None:
        spec = agent.spec
        if isinstance(action, Launch):
            if self.before_launch is not None:
                self.before_launch(spec.name)
            resumed = has_previous_session(spec.config_dir, spec.cwd)
            argv = with_resume(spec.claude, resumed)
            agent.dialog_answered = False
            agent.channel = ChannelWatch()
            agent.launch_id = uuid.uuid4().hex
            env = {**spec.env, LAUNCH_VAR: agent.launch_id}
            try:
                if self.tmux.has_session(spec.session):
                    live = panes.panes(self.tmux)
                    claude = live.get((spec.session, panes.CLAUDE_PANE))
                    shell = live.get((spec.session, panes.SHELL_PANE))
                    if claude is None and shell is None:
                        # Only a person's panes are left (the agent's were closed): a new session.
                        log.warning(
                            "%s: none of its panes is left; opening its session anew (a person's panes in it end)",
                            spec.name,
                        )
                        self.tmux.kill_session(spec.session)
                        panes.open_session(self.tmux, spec, argv, env)
                    else:
                        if claude is None:
                            log.info("%s: claude's pane was closed; opening it again", spec.name)
                        panes.restart_claude(self.tmux, spec, argv, env, at=claude, shell=shell)
                else:
                    panes.open_session(self.tmux, spec, argv, env)
            except (OperationError, OSError) as exc:
                # OSError: its pane's environment file could not be written (a full disk, say).
                log.error("agent %s could not be started: %s", spec.name, exc)
                await self._observe(agent, Exited(None, self._jitter()))
                return
            await self._observe(agent, Launched(resumed=resumed))
        elif isinstance(action, Kill) and action.claude_only:
            # Pane 0 stays, dead (remain-on-exit), for the Launch that follows to respawn in place.
            if agent.launch_id is not None:
                await asyncio.to_thread(sweep, LAUNCH_VAR, agent.launch_id)
        elif isinstance(action, Kill):
            self.tmux.kill_session(spec.session)
            await asyncio.to_thread(sweep, AGENT_VAR, spec.tag)
        elif isinstance(action, Publish):
            if action.type == "agent_crashed":
                # Said at the default level: in a container, `kubectl logs` is where a crash loop shows.
                code = action.fields.get("exit_code")
                log.warning(
                    "agent %s: claude %s%s",
                    spec.name,
                    action.fields.get("reason"),
                    f" (exit code {code})" if code is not None else "",
                )
            else:
                log.info("%s %s %s", spec.name, action.type, dict(action.fields))
            if self._held is not None:
                # Stamped now: the event happened now, not when the event log comes up.
                stamped = {**action.fields, "time": datetime.fromtimestamp(self._clock(), UTC)}
                item = {"id": new_id(), "type": action.type, "agent": spec.name, "fields": stamped}
                if self._held_in is not None:
                    try:
                        pending.keep(self._held_in, item, durable=False)
                    except OSError as exc:
                        # Still published (it is held in memory), only not across a crash.
                        log.warning("cannot keep an event in %s: %s", self._held_in, exc.strerror)
                self._held.append(item)
            else:
                await self._publish(action.type, spec.name, action.fields)

    async def _publish(self, type_name: str, agent: str, fields: Mapping[str, object]) -> None:
        if self.publish is None:
            return
        try:
            await self.publish(type_name, agent, fields)
        except (OperationError, UsageError) as exc:
            log.error("event %s for %s was not published: %s", type_name, agent, exc)

    # ---- the event log coming up late -----------------------------------------------------

    def hold_events(self, kept_in: Path | None = None) -> None:
        """Keep the events observed from now on until `publish_with` (the supervisor brings its
        event log up once its agents have started, rather than beside their boot). With
        `kept_in`, on disk too: a supervisor killed meanwhile leaves them to the next, which
        publishes them first."""
        self._held_in = kept_in
        self._held = pending.kept(kept_in, _HELD_KEYS) if kept_in is not None else []

    async def publish_with(self, publish: Publisher) -> None:
        """Publish with `publish` from now on: first the events held until now, in order."""
        self.publish = publish
        # Still held while they go out: one observed meanwhile queues behind them. Each goes with
        # the id it was kept with, so one a killed supervisor had published is stored once.
        while self._held:
            item = self._held.pop(0)
            await self._publish(item["type"], item["agent"], {**item["fields"], "id": item["id"]})
        self._held = None
        if self._held_in is not None:
            pending.rewrite(self._held_in, [])

    # ---- status and metrics ---------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        agents: dict[str, Any] = {}
        for name, agent in self.agents.items():
            r = agent.record
            agents[name] = {
                "state": r.state.value,
                "session": agent.spec.session,
                "started_at": r.started_at,
                "restarts": r.restarts,
                "last_exit": r.last_exit,
                "last_activity": r.last_activity,
                "retry_at": r.retry_at,
                "fast_crashes": r.fast_crashes,
                "logs": [str(agent.spec.log(0)), str(agent.spec.log(1))],
                # None: the agent has no Matrix channel.
                "channel_connected": self._channel_connected(name),
            }
        return {
            "supervisor": {
                "pid": os.getpid(),
                "started_at": self.started_at,
                "metrics": self.metrics_url,
                "options": self._started_with,
                "took": list(self._took),
            },
            "services": {service.name: service.listening for service in self._services},
            "agents": agents,
        }

    def _write_status(self) -> None:
        if any(agent.record.state is AgentState.STARTING for agent in self.agents.values()):
            self.none_starting.clear()
        else:
            self.none_starting.set()
        status = self.status()
        # Not written into a state directory made anew: the crew's was removed.
        if status != self._last_status and not self.state_gone:
            try:
                self.run_dir.write_status(status)
            except OSError as exc:
                # A full disk or a read-only state directory must not end the supervisor, and every
                # agent with it: tried again at each step until it is written.
                why = str(exc.strerror or exc)
                if why != self._status_unwritten:
                    log.error(
                        "cannot write %s (`agent-smith status` shows an older status): %s",
                        self.run_dir.status_file,
                        why,
                    )
                    self._status_unwritten = why
                return
            if self._status_unwritten is not None:
                log.warning("the status is written again")
                self._status_unwritten = None
            self._last_status = status
            if self._on_status is not None:
                self._on_status()

    # ---- /metrics, /healthz and /mcp ------------------------------------------------------

    async def serve_http(self, sock: socket.socket) -> None:
        """Serve ``/metrics`` (Prometheus text), ``/healthz`` and the agents' MCP servers on a listening socket."""
        self._http_server = await asyncio.start_server(self._http, sock=sock)
        host, port = sock.getsockname()[:2]
        self.metrics_url = f"http://{f'[{host}]' if ':' in host else host}:{port}"

    async def close_http(self) -> None:
        """Stop listening and end every open connection: the agents' streams reconnect to the next supervisor."""
        if self._http_server is None:
            return
        self._http_server.close()
        for task in list(self._connections):
            task.cancel()
        await asyncio.gather(*self._connections, return_exceptions=True)
        await self._http_server.wait_closed()
        self._http_server = None

    def serve_mcp(self, servers: Mapping[str, McpServer], path: str = MCP_PATH) -> None:
        """Answer MCP requests to `path` from now on: `servers` maps each agent's bearer token to its server."""
        self.mcp[path] = servers
        self._mcp_ready[path].set()

    async def _http(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        from agent_smith.runtime.httpserve import serve_connection

        task = asyncio.current_task()
        assert task is not None
        self._connections.add(task)
        try:
            await serve_connection(reader, writer, self._answer)
        except asyncio.CancelledError:
            # `close_http` ends it. It must end without raising: Python 3.11's start_server asks a
            # finished connection task for its exception, which a cancelled one raises, and the
            # loop would log that as a traceback (a supervisor log of one JSON object per line).
            writer.close()
        finally:
            self._connections.discard(task)

    async def _answer(self, method: str, path: str, headers: Mapping[str, str], body: bytes) -> HttpAnswer:
        if (ready := self._mcp_ready.get(path)) is not None:
            try:
                await asyncio.wait_for(ready.wait(), _MCP_READY_WAIT)
            except TimeoutError:
                return HttpAnswer(503, "Service Unavailable", (("Retry-After", "5"),))
            return await answer_http(self.mcp[path], method, headers, body)
        if path in _READ_ONLY and method not in ("GET", "HEAD"):
            return HttpAnswer(
                405,
                "Method Not Allowed",
                (("Allow", "GET, HEAD"), ("Content-Type", "text/plain; charset=utf-8")),
                f"{path} takes GET and HEAD only\n".encode(),
            )
        # HEAD is answered as GET is: the connection sends the head alone.
        if path == "/metrics":
            self._metrics = self._metrics or Metrics()
            now = self._clock()
            for agent in self.agents.values():
                self._metrics.update(agent.record, now, self._channel_connected(agent.spec.name))
            for service in self._services:
                self._metrics.service.labels(service.name).set(1 if service.listening else 0)
            content_type, text = self._metrics.exposition()
            return HttpAnswer(200, "OK", (("Content-Type", content_type),), text)
        if path == "/healthz":
            return HttpAnswer(200, "OK", (("Content-Type", "text/plain; charset=utf-8"),), b"ok\n")
        if path == "/readyz":
            # Alive is /healthz (the supervisor answers); ready is every agent serving. A pod whose
            # claude crash-loops shows NotReady, and a rollout of a broken version stops there.
            waiting = {n: a.record.state.value for n, a in self.agents.items() if a.record.state not in SERVING}
            said = "".join(f"{name}: {state}\n" for name, state in sorted(waiting.items())) or "ready\n"
            status, reason = (503, "Service Unavailable") if waiting else (200, "OK")
            return HttpAnswer(status, reason, (("Content-Type", "text/plain; charset=utf-8"),), said.encode())
        return HttpAnswer(404, "Not Found", (("Content-Type", "text/plain; charset=utf-8"),), b"not found\n")
