"""When to start, restart and give up on an agent: a pure state machine, Supervisor's semantics.

`decide(record, now, observation) -> (record, actions)` is the whole policy.
The shell (`supervisor.py`) observes tmux, feeds what it saw in here, and
carries out the actions; time and randomness come in as values (`now`, and
the jitter carried by `Exited`), so every path is tested without sleeping.

Semantics worth keeping from Supervisor (`supervisor/process.py`):
- a start counts only once the process stayed up `min_uptime`; an exit
  before that is a *fast crash*;
- after each fast crash the agent backs off exponentially (from
  `backoff_initial`, doubling, capped at `backoff_max`, jittered);
- `crash_loop_after` fast crashes in a row make it *crash-looping*: it is
  retried only every `crash_loop_retry`, until a start lasts `min_uptime`.

An exit after `min_uptime` is a crash too (it is published as one) but
restarts after `backoff_initial` and does not count toward a crash loop.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from enum import StrEnum

from agent_smith.errors import OperationError


class AgentState(StrEnum):
    STARTING = "starting"
    READY = "ready"
    WORKING = "working"
    IDLE = "idle"
    BACKING_OFF = "backing off"
    CRASH_LOOPING = "crash-looping"
    STOPPED = "stopped"


RUNNING = frozenset({AgentState.STARTING, AgentState.READY, AgentState.WORKING, AgentState.IDLE})
SERVING = RUNNING - {AgentState.STARTING}
WAITING = frozenset({AgentState.BACKING_OFF, AgentState.CRASH_LOOPING})


@dataclass(frozen=True)
class Restart:
    """The restart policy, in seconds (the crew's `RestartPolicy`, as plain numbers)."""

    min_uptime: float = 10.0
    backoff_initial: float = 2.0
    backoff_max: float = 300.0
    crash_loop_after: int = 5
    crash_loop_retry: float = 900.0

    def backoff(self, fast_crashes: int, jitter: float) -> float:
        """Delay after the `fast_crashes`-th fast crash in a row; `jitter` in [0, 1) adds up to 25%."""
        base: float = min(self.backoff_max, self.backoff_initial * 2.0 ** max(0, fast_crashes - 1))
        return base * (1 + 0.25 * jitter)


@dataclass(frozen=True)
class Record:
    """What the supervisor knows about one agent."""

    name: str
    policy: Restart
    state: AgentState = AgentState.STOPPED
    started_at: float | None = None
    stable: bool = False
    fast_crashes: int = 0
    restarts: int = 0
    retry_at: float | None = None
    last_exit: int | None = None
    last_activity: float | None = None
    ever_started: bool = False
    resumed: bool = False
    announced: bool = False


# ---- observations (what the shell saw or was asked) ---------------------------------------


@dataclass(frozen=True)
class StartRequested:
    """`up`/`restart` asked for the agent; a waiting agent is started at once."""


@dataclass(frozen=True)
class StopRequested:
    """`down` asked for the agent to stop; it is not restarted. `restart` asks with
    `claude_only`: its claude stops, its shell pane (and what runs there) is kept."""

    claude_only: bool = False


@dataclass(frozen=True)
class Adopted:
    """A supervisor (re)started and found the agent's claude already running in tmux."""

    started_at: float


@dataclass(frozen=True)
class Launched:
    """The shell started claude (the pane exists); `resumed` when it continues an earlier session."""

    resumed: bool = False


@dataclass(frozen=True)
class PromptSeen:
    """claude's input prompt is on screen; `busy` when it shows it is working on a turn."""

    busy: bool = False


@dataclass(frozen=True)
class TurnBegan:
    """claude began a turn: its prompt hook asked the supervisor for the agent's context. A turn
    shorter than the look at the screen would otherwise go unseen."""


@dataclass(frozen=True)
class Exited:
    """claude exited or its pane died. `jitter` in [0, 1) is drawn by the shell."""

    code: int | None
    jitter: float = 0.0


@dataclass(frozen=True)
class ChannelLost:
    """claude's Matrix channel stayed disconnected longer than claude keeps reconnecting: it gave up
    on it, and a claude nobody can reach from chat is as good as gone. `jitter` as for `Exited`."""

    jitter: float = 0.0


@dataclass(frozen=True)
class Tick:
    """Time passed."""


Observation = StartRequested | StopRequested | Adopted | Launched | PromptSeen | TurnBegan | Exited | ChannelLost | Tick


# ---- actions (what the shell must do) ----------------------------------------------------


@dataclass(frozen=True)
class Launch:
    """Start claude in the agent's pane; `restart` when it ran before under this supervisor."""

    restart: bool


@dataclass(frozen=True)
class Kill:
    """Stop the agent's processes (its tmux session), or with `claude_only` its claude and
    what that started."""

    claude_only: bool = False


@dataclass(frozen=True)
class Publish:
    """Publish an event: `agent_started`, `agent_stopped` or `agent_crashed`, with these fields."""

    type: str
    fields: Mapping[str, object]


Action = Launch | Kill | Publish
Outcome = tuple[Record, tuple[Action, ...]]


class IllegalTransition(OperationError):
    def __init__(self, state: AgentState, observation: Observation) -> None:
        super().__init__(f"agent state {state.value!r} has no transition for {type(observation).__name__}")


# ---- transitions --------------------------------------------------------------------------


def _launch(r: Record, now: float) -> Outcome:
    restart = r.ever_started
    record = replace(
        r,
        state=AgentState.STARTING,
        started_at=now,
        stable=False,
        retry_at=None,
        restarts=r.restarts + (1 if restart else 0),
        ever_started=True,
        announced=False,
    )
    return record, (Launch(restart=restart),)


def _start(r: Record, now: float, o: Observation) -> Outcome:
    return _launch(replace(r, fast_crashes=0), now)


def _retry_now(r: Record, now: float, o: Observation) -> Outcome:
    return _launch(r, now)


def _stop(r: Record, now: float, o: Observation) -> Outcome:
    assert isinstance(o, StopRequested)
    stopped = replace(r, state=AgentState.STOPPED, started_at=None, stable=False, retry_at=None, fast_crashes=0)
    return stopped, (Kill(claude_only=o.claude_only), Publish("agent_stopped", {"reason": "requested"}))


def _stop_waiting(r: Record, now: float, o: Observation) -> Outcome:
    stopped = replace(r, state=AgentState.STOPPED, retry_at=None, fast_crashes=0)
    return stopped, (Publish("agent_stopped", {"reason": "requested"}),)


def _ignore(r: Record, now: float, o: Observation) -> Outcome:
    return r, ()


def _adopt(r: Record, now: float, o: Observation) -> Outcome:
    assert isinstance(o, Adopted)
    stable = now - o.started_at >= r.policy.min_uptime
    record = replace(
        r,
        state=AgentState.STARTING,
        started_at=o.started_at,
        stable=stable,
        fast_crashes=0 if stable else r.fast_crashes,
        ever_started=True,
        retry_at=None,
        announced=True,
    )
    return record, ()


def _launched(r: Record, now: float, o: Observation) -> Outcome:
    assert isinstance(o, Launched)
    return replace(r, resumed=o.resumed), ()


def _prompt(r: Record, now: float, o: Observation) -> Outcome:
    assert isinstance(o, PromptSeen)
    if o.busy:
        record = replace(r, state=AgentState.WORKING, last_activity=now)
    elif r.state is AgentState.STARTING:
        record = replace(r, state=AgentState.READY)
    elif r.state is AgentState.WORKING:
        record = replace(r, state=AgentState.IDLE, last_activity=now)
    else:
        record = r
    record = _mark_stable(record, now)
    if record.announced:
        return record, ()
    return replace(record, announced=True), (Publish("agent_started", {"resumed": record.resumed}),)


def _turn_began(r: Record, now: float, o: Observation) -> Outcome:
    return replace(r, state=AgentState.WORKING, last_activity=now), ()


def _mark_stable(r: Record, now: float) -> Record:
    if r.stable or r.started_at is None or now - r.started_at < r.policy.min_uptime:
        return r
    return replace(r, stable=True, fast_crashes=0)


def _tick_running(r: Record, now: float, o: Observation) -> Outcome:
    return _mark_stable(r, now), ()


def _tick_waiting(r: Record, now: float, o: Observation) -> Outcome:
    if r.retry_at is not None and now >= r.retry_at:
        return _launch(r, now)
    return r, ()


def _exited(r: Record, now: float, o: Observation) -> Outcome:
    assert isinstance(o, Exited)
    return _down(r, now, o.jitter, o.code, "exited")


def _channel_lost(r: Record, now: float, o: Observation) -> Outcome:
    assert isinstance(o, ChannelLost)
    record, actions = _down(r, now, o.jitter, None, "lost its Matrix channel")
    return record, (Kill(), *actions)


def _down(r: Record, now: float, jitter: float, code: int | None, what: str) -> Outcome:
    """claude ended (or must end): back off, or crash-loop after too many fast ends in a row."""
    record = _mark_stable(r, now)
    p = record.policy
    if record.stable:
        fast, delay, state = 0, p.backoff_initial * (1 + 0.25 * jitter), AgentState.BACKING_OFF
    else:
        fast = record.fast_crashes + 1
        if fast >= p.crash_loop_after:
            delay, state = p.crash_loop_retry * (1 + 0.25 * jitter), AgentState.CRASH_LOOPING
        else:
            delay, state = p.backoff(fast, jitter), AgentState.BACKING_OFF
    uptime = now - record.started_at if record.started_at is not None else None
    crashed = replace(
        record,
        state=state,
        started_at=None,
        stable=False,
        fast_crashes=fast,
        retry_at=now + delay,
        last_exit=code,
    )
    fields: dict[str, object] = {
        "exit_code": code,
        "restarts": record.restarts,
        "reason": _reason(what, state, uptime, delay),
    }
    return crashed, (Publish("agent_crashed", fields),)


def _reason(what: str, state: AgentState, uptime: float | None, delay: float) -> str:
    lived = f"after {uptime:.1f}s" if uptime is not None else "before it was seen running"
    if state is AgentState.CRASH_LOOPING:
        return f"{what} {lived}; crash-looping, next try in {delay:.0f}s"
    return f"{what} {lived}; restarting in {delay:.1f}s"


Handler = Callable[[Record, float, Observation], Outcome]

_RUNNING_MOVES: dict[type, Handler] = {
    StartRequested: _ignore,
    StopRequested: _stop,
    Launched: _launched,
    PromptSeen: _prompt,
    TurnBegan: _turn_began,
    Exited: _exited,
    ChannelLost: _channel_lost,
    Tick: _tick_running,
}

TRANSITIONS: dict[AgentState, dict[type, Handler]] = {
    AgentState.STOPPED: {
        StartRequested: _start,
        StopRequested: _ignore,
        Adopted: _adopt,
        Tick: _ignore,
        Exited: _ignore,
        TurnBegan: _ignore,
    },
    # A booting claude has not connected its channel yet.
    AgentState.STARTING: {**_RUNNING_MOVES, ChannelLost: _ignore},
    AgentState.READY: _RUNNING_MOVES,
    AgentState.WORKING: _RUNNING_MOVES,
    AgentState.IDLE: _RUNNING_MOVES,
    AgentState.BACKING_OFF: {
        StartRequested: _retry_now,
        StopRequested: _stop_waiting,
        Tick: _tick_waiting,
        Exited: _ignore,
        ChannelLost: _ignore,
        TurnBegan: _ignore,
    },
    AgentState.CRASH_LOOPING: {
        # Asked for by a person (`up`), who may have fixed what crashed it: a new count.
        StartRequested: _start,
        StopRequested: _stop_waiting,
        Tick: _tick_waiting,
        Exited: _ignore,
        ChannelLost: _ignore,
        TurnBegan: _ignore,
    },
}
"""TRANSITIONS[state][type(observation)]: a missing key is an illegal move (`IllegalTransition`)."""


def decide(record: Record, now: float, observation: Observation) -> Outcome:
    """The next record and the actions to carry out, for one observation at time `now`."""
    handler = TRANSITIONS[record.state].get(type(observation))
    if handler is None:
        raise IllegalTransition(record.state, observation)
    return handler(record, now, observation)


def shifted(record: Record, by: float) -> Record:
    """`record` with its times moved `by` seconds: the clock they were read from was set that far
    (pure). A restart due in 2 s stays due in 2 s, an uptime stays what it was."""

    def move(moment: float | None) -> float | None:
        return None if moment is None else moment + by

    return replace(
        record,
        started_at=move(record.started_at),
        retry_at=move(record.retry_at),
        last_activity=move(record.last_activity),
    )


# ---- the Matrix channel's watch ------------------------------------------------------------


class ChannelVerdict(StrEnum):
    LOST = "lost"  # it held the channel and gave up on it: a new claude connects again
    NEVER = "never"  # it never connected since it started: another start would do the same; say so once


@dataclass(frozen=True)
class ChannelWatch:
    """What the supervisor knows of one claude and its Matrix channel.

    `held`: it was connected since it started (or it came from an earlier
    supervisor, whose channel it held); `down_since`: since when it has been
    off while serving; `told`: NEVER was said for this claude.
    """

    held: bool = False
    down_since: float | None = None
    told: bool = False


def watch_channel(
    w: ChannelWatch, *, serving: bool, connected: bool, now: float, grace: float
) -> tuple[ChannelWatch, ChannelVerdict | None]:
    """The next watch and what to do, for one look at an agent's channel (pure)."""
    if connected:
        return replace(w, held=True, down_since=None), None
    if not serving:
        return replace(w, down_since=None), None
    if w.down_since is None or now - w.down_since < grace:
        return replace(w, down_since=now if w.down_since is None else w.down_since), None
    if w.held:
        return replace(w, down_since=None), ChannelVerdict.LOST
    if not w.told:
        return replace(w, told=True), ChannelVerdict.NEVER
    return w, None
