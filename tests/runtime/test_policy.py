"""The restart policy: a table of single moves, and properties over any sequence of observations."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agent_smith.runtime.policy import (
    RUNNING,
    TRANSITIONS,
    Adopted,
    AgentState,
    ChannelLost,
    ChannelVerdict,
    ChannelWatch,
    Exited,
    IllegalTransition,
    Kill,
    Launch,
    Launched,
    Observation,
    PromptSeen,
    Publish,
    Record,
    Restart,
    StartRequested,
    StopRequested,
    Tick,
    TurnBegan,
    decide,
    watch_channel,
)

POLICY = Restart(min_uptime=10, backoff_initial=2, backoff_max=16, crash_loop_after=3, crash_loop_retry=900)


def record(state: AgentState = AgentState.STOPPED, **fields: object) -> Record:
    return Record("alice", POLICY, state=state, **fields)  # type: ignore[arg-type]


def running(at: float = 100.0, **fields: object) -> Record:
    return record(AgentState.READY, started_at=at, ever_started=True, announced=True, **fields)


@pytest.mark.parametrize(
    ("before", "now", "observation", "state", "actions"),
    [
        (record(), 0, StartRequested(), AgentState.STARTING, [Launch(restart=False)]),
        (record(), 0, StopRequested(), AgentState.STOPPED, []),
        (record(), 0, Tick(), AgentState.STOPPED, []),
        (record(), 50, Adopted(started_at=10), AgentState.STARTING, []),
        (
            record(AgentState.STARTING, started_at=0, ever_started=True),
            1,
            PromptSeen(),
            AgentState.READY,
            [Publish("agent_started", {"resumed": False})],
        ),
        (
            record(AgentState.STARTING, started_at=0, ever_started=True),
            1,
            PromptSeen(busy=True),
            AgentState.WORKING,
            [Publish("agent_started", {"resumed": False})],
        ),
        (running(), 101, PromptSeen(busy=True), AgentState.WORKING, []),
        (record(AgentState.WORKING, started_at=100, announced=True), 102, PromptSeen(), AgentState.IDLE, []),
        (running(), 101, PromptSeen(), AgentState.READY, []),
        (running(), 101, StartRequested(), AgentState.READY, []),
        (running(), 101, Tick(), AgentState.READY, []),
        (
            running(),
            101,
            StopRequested(),
            AgentState.STOPPED,
            [Kill(), Publish("agent_stopped", {"reason": "requested"})],
        ),
        (
            running(),
            101,
            StopRequested(claude_only=True),
            AgentState.STOPPED,
            [Kill(claude_only=True), Publish("agent_stopped", {"reason": "requested"})],
        ),
        (
            running(),
            103,
            Exited(1),
            AgentState.BACKING_OFF,
            [
                Publish(
                    "agent_crashed", {"exit_code": 1, "restarts": 0, "reason": "exited after 3.0s; restarting in 2.0s"}
                )
            ],
        ),
        (
            running(fast_crashes=2),
            103,
            Exited(137),
            AgentState.CRASH_LOOPING,
            [
                Publish(
                    "agent_crashed",
                    {"exit_code": 137, "restarts": 0, "reason": "exited after 3.0s; crash-looping, next try in 900s"},
                )
            ],
        ),
        (
            running(),
            103,
            ChannelLost(),
            AgentState.BACKING_OFF,
            [
                Kill(),
                Publish(
                    "agent_crashed",
                    {
                        "exit_code": None,
                        "restarts": 0,
                        "reason": "lost its Matrix channel after 3.0s; restarting in 2.0s",
                    },
                ),
            ],
        ),
        (record(AgentState.STARTING, started_at=100), 101, ChannelLost(), AgentState.STARTING, []),
        (record(AgentState.BACKING_OFF, retry_at=10, ever_started=True), 9, ChannelLost(), AgentState.BACKING_OFF, []),
        (record(AgentState.BACKING_OFF, retry_at=10, ever_started=True), 9, Tick(), AgentState.BACKING_OFF, []),
        (
            record(AgentState.BACKING_OFF, retry_at=10, ever_started=True),
            10,
            Tick(),
            AgentState.STARTING,
            [Launch(restart=True)],
        ),
        (
            record(AgentState.CRASH_LOOPING, retry_at=900, ever_started=True),
            20,
            StartRequested(),
            AgentState.STARTING,
            [Launch(restart=True)],
        ),
        (
            record(AgentState.CRASH_LOOPING, retry_at=900, ever_started=True),
            20,
            StopRequested(),
            AgentState.STOPPED,
            [Publish("agent_stopped", {"reason": "requested"})],
        ),
    ],
)
def test_one_move(
    before: Record, now: float, observation: Observation, state: AgentState, actions: list[object]
) -> None:
    after, done = decide(before, now, observation)
    assert after.state is state
    assert list(done) == actions


def test_a_turn_shorter_than_a_look_is_seen_through_the_prompt_hook() -> None:
    ready = record(AgentState.READY, started_at=100)
    working, actions = decide(ready, 150, TurnBegan())
    assert (working.state, working.last_activity, actions) == (AgentState.WORKING, 150, ())
    # The next look finds the prompt idle again: the turn was short, and it is on the record.
    idle, _ = decide(working, 150.5, PromptSeen(busy=False))
    assert (idle.state, idle.last_activity) == (AgentState.IDLE, 150.5)
    for state in (AgentState.STOPPED, AgentState.BACKING_OFF, AgentState.CRASH_LOOPING):
        assert decide(record(state, retry_at=900), 150, TurnBegan()) == (record(state, retry_at=900), ())


def test_a_start_counts_only_after_min_uptime() -> None:
    r, _ = decide(record(), 0, StartRequested())
    r, _ = decide(r, 1, PromptSeen())
    r, _ = decide(r, 5, Exited(1))
    assert (r.state, r.fast_crashes, r.retry_at) == (AgentState.BACKING_OFF, 1, 7)
    r, _ = decide(r, 7, Tick())
    r, _ = decide(r, 8, PromptSeen())
    r, _ = decide(r, 18, Tick())
    assert r.stable
    assert r.fast_crashes == 0
    r, _actions = decide(r, 30, Exited(1))
    assert r.fast_crashes == 0
    assert r.retry_at == 32
    assert r.restarts == 1


def test_backoff_doubles_up_to_the_cap_then_the_crash_loop_retries_slowly() -> None:
    policy = Restart(min_uptime=10, backoff_initial=1, backoff_max=4, crash_loop_after=5, crash_loop_retry=600)
    r, _ = decide(Record("bob", policy), 0, StartRequested())
    delays = []
    now = 0.0
    for _ in range(5):
        assert r.state is AgentState.STARTING
        now += 0.5
        r, _ = decide(r, now, Exited(1))
        assert r.retry_at is not None
        delays.append(r.retry_at - now)
        now = r.retry_at
        r, actions = decide(r, now, Tick())
        assert actions == (Launch(restart=True),)
    assert delays == [1, 2, 4, 4, 600]
    r, _ = decide(r, now + 10, Tick())
    assert r.fast_crashes == 0, "a retry that stays up ends the crash loop"


def test_up_of_a_crash_looping_agent_begins_a_new_crash_loop_count() -> None:
    # It was retried once, and its first fast crash made it crash-looping again (900 s more).
    looping = record(AgentState.CRASH_LOOPING, retry_at=900, ever_started=True, fast_crashes=3)
    r, _ = decide(looping, 20, StartRequested())
    assert (r.state, r.fast_crashes) == (AgentState.STARTING, 0)
    r, _ = decide(r, 21, Exited(1))
    assert (r.state, r.fast_crashes) == (AgentState.BACKING_OFF, 1)


def test_jitter_adds_at_most_a_quarter() -> None:
    low, _ = decide(running(), 101, Exited(1, jitter=0.0))
    high, _ = decide(running(), 101, Exited(1, jitter=0.999))
    assert low.retry_at == 103
    assert high.retry_at is not None
    assert 103 < high.retry_at < 103.5


def test_an_illegal_move_is_a_named_error() -> None:
    with pytest.raises(IllegalTransition, match="'stopped' has no transition for PromptSeen"):
        decide(record(), 0, PromptSeen())


def test_every_state_has_a_row() -> None:
    assert set(TRANSITIONS) == set(AgentState)


def test_adoption_after_min_uptime_is_stable_and_announced() -> None:
    r, actions = decide(record(fast_crashes=2), 100, Adopted(started_at=50))
    assert r.stable
    assert r.fast_crashes == 0
    assert r.announced
    r, actions = decide(r, 101, PromptSeen())
    assert r.state is AgentState.READY
    assert actions == (), "an adopted agent was already announced by the supervisor that started it"


def test_resumed_is_what_the_shell_launched() -> None:
    r, _ = decide(record(), 0, StartRequested())
    r, _ = decide(r, 0, Launched(resumed=True))
    _, actions = decide(r, 1, PromptSeen())
    assert actions == (Publish("agent_started", {"resumed": True}),)


observations = st.one_of(
    st.just(StartRequested()),
    st.builds(StopRequested, claude_only=st.booleans()),
    st.builds(Launched, resumed=st.booleans()),
    st.builds(PromptSeen, busy=st.booleans()),
    st.builds(Exited, code=st.none() | st.integers(0, 255), jitter=st.floats(0, 0.999)),
    st.builds(ChannelLost, jitter=st.floats(0, 0.999)),
    st.just(TurnBegan()),
    st.just(Tick()),
)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.floats(0, 120), observations), max_size=60))
def test_any_sequence_keeps_the_invariants(steps: list[tuple[float, Observation]]) -> None:
    r = record()
    now = 0.0
    for gap, observation in steps:
        now += gap
        if type(observation) not in TRANSITIONS[r.state]:
            with pytest.raises(IllegalTransition):
                decide(r, now, observation)
            continue
        before = r
        r, actions = decide(r, now, observation)
        launches = [a for a in actions if isinstance(a, Launch)]
        assert len(launches) <= 1
        if launches:
            assert r.state is AgentState.STARTING
            assert r.started_at == now
        assert r.restarts >= before.restarts
        assert r.fast_crashes < POLICY.crash_loop_after or r.state is not AgentState.BACKING_OFF
        entered = r.state is not before.state
        if entered and r.state is AgentState.CRASH_LOOPING:
            assert r.fast_crashes >= POLICY.crash_loop_after
            assert r.retry_at is not None
            assert r.retry_at >= now + POLICY.crash_loop_retry
        if entered and r.state is AgentState.BACKING_OFF:
            assert r.retry_at is not None
            assert now + POLICY.backoff_initial <= r.retry_at <= now + POLICY.backoff_max * 1.25
        if r.state in RUNNING:
            assert r.started_at is not None
            assert r.retry_at is None
        if r.state is AgentState.STOPPED:
            assert not any(isinstance(a, Launch) for a in actions)
        published = [a.type for a in actions if isinstance(a, Publish)]
        if isinstance(observation, Exited) and before.state in RUNNING:
            assert published == ["agent_crashed"]
        if isinstance(observation, ChannelLost):
            # Only a claude that was serving is given up on, and then its session goes.
            serving = before.state in RUNNING and before.state is not AgentState.STARTING
            assert published == (["agent_crashed"] if serving else [])
            assert (Kill() in actions) is serving


# ---- the Matrix channel's watch --------------------------------------------------------------

GRACE = 30.0


@pytest.mark.parametrize(
    ("before", "serving", "connected", "now", "after", "verdict"),
    [
        (ChannelWatch(), True, True, 5, ChannelWatch(held=True), None),
        (ChannelWatch(), True, False, 5, ChannelWatch(down_since=5), None),
        (ChannelWatch(down_since=5), True, False, 34, ChannelWatch(down_since=5), None),
        (ChannelWatch(held=True, down_since=5), True, False, 35, ChannelWatch(held=True), ChannelVerdict.LOST),
        (ChannelWatch(down_since=5), True, False, 35, ChannelWatch(down_since=5, told=True), ChannelVerdict.NEVER),
        (ChannelWatch(down_since=5, told=True), True, False, 99, ChannelWatch(down_since=5, told=True), None),
        (ChannelWatch(held=True, down_since=5), False, False, 99, ChannelWatch(held=True), None),
        (ChannelWatch(down_since=5, told=True), True, True, 99, ChannelWatch(held=True, told=True), None),
    ],
)
def test_one_look_at_a_channel(
    before: ChannelWatch,
    serving: bool,
    connected: bool,
    now: float,
    after: ChannelWatch,
    verdict: ChannelVerdict | None,
) -> None:
    assert watch_channel(before, serving=serving, connected=connected, now=now, grace=GRACE) == (after, verdict)


@settings(max_examples=300, deadline=None)
@given(st.booleans(), st.lists(st.tuples(st.floats(0, 20), st.booleans(), st.booleans()), max_size=60))
def test_any_looks_restart_only_a_claude_that_held_it_and_tell_of_one_that_never_did_once(
    adopted: bool, looks: list[tuple[float, bool, bool]]
) -> None:
    w = ChannelWatch(held=adopted)
    now, off_since, nevers = 0.0, None, 0
    for gap, serving, connected in looks:
        now += gap
        held_before = w.held
        w, verdict = watch_channel(w, serving=serving, connected=connected, now=now, grace=GRACE)
        off_since = now if off_since is None else off_since
        if connected or not serving:
            off_since = None
            assert verdict is None
        if verdict is not None:
            # Only after a whole grace of looks off the channel while serving.
            assert off_since is not None
            assert now - off_since >= GRACE
        if verdict is ChannelVerdict.LOST:
            assert held_before
            off_since = None
        if verdict is ChannelVerdict.NEVER:
            assert not held_before
            nevers += 1
        assert nevers <= 1
