"""Denials as events: kept at once (fsynced, with their ids), published once the agents have booted."""

from __future__ import annotations

import asyncio
import json
import shutil
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from agent_smith.crew import Crew, CrewPaths, EventLog
from agent_smith.egress import DenialPublisher, EgressDenied, FirewallState
from agent_smith.egress.service import _PENDING_KEYS, RepeatWindow
from agent_smith.events import EventFilter, connect, query
from agent_smith.events.embedded import EmbeddedNats
from agent_smith.events.pending import kept
from tests.fixtures.nats import NatsServer

pytestmark = pytest.mark.real


def _denial(agent: str = "devbot", host: str = "evil.test") -> EgressDenied:
    return EgressDenied(
        "2026-12-06T03:26:20.015Z", agent, "CONNECT", host, 443, "", f"host {host}:443 is not on the allowlist", None
    )


def _crew(tmp_path: Path, url: str) -> Crew:
    return Crew.model_validate(
        {
            "crew": {"name": "cc"},
            "agents": [{"name": "devbot"}],
            "runtime": {"state_dir": str(tmp_path / "state")},
            "events": {"nats_url": url, "stream": "DENIALS_TEST"},
        }
    )


async def _stored(url: str) -> list[dict[str, object]]:
    nc = await connect(url)
    try:
        found = await query(nc, EventLog(stream="DENIALS_TEST"), EventFilter(types=("egress_denied",)))
    finally:
        await nc.close()
    return [{"id": e.id, **e.payload} for e in found]


def test_a_killed_firewalls_denials_are_published_by_the_next_once(tmp_path: Path, nats_server: NatsServer) -> None:
    crew = _crew(tmp_path, nats_server.url)
    pending = FirewallState(tmp_path / "firewall").pending_denials_path
    loaded: list[str] = []

    def load() -> Crew:
        loaded.append("crew")
        return crew

    async def killed() -> None:
        # Long settling: the process is "killed" (its loop ends) before it publishes anything.
        denials = DenialPublisher(load, pending, settle=60)
        denials(_denial())
        denials(_denial(host="other.test"))
        denials(_denial(agent="-"))  # the shared transparent listener: no agent to publish as
        await asyncio.sleep(0.05)

    asyncio.run(killed())
    assert loaded == [], "nothing heavy is loaded while agents boot"
    kept = [json.loads(line) for line in pending.read_text().splitlines()]
    assert [k["host"] for k in kept] == ["evil.test", "other.test", "evil.test"]
    assert len({k["id"] for k in kept}) == 3
    copy = tmp_path / "copy.jsonl"
    shutil.copy(pending, copy)

    async def next_firewall() -> None:
        denials = DenialPublisher(load, pending, settle=0)
        denials.start()
        await asyncio.sleep(0)
        for _ in range(200):
            if not pending.exists():
                break
            await asyncio.sleep(0.025)
        await denials.close()

    asyncio.run(next_firewall())
    assert not pending.exists(), "published, nothing is pending"
    stored = asyncio.run(_stored(nats_server.url))
    assert [(e["id"], e["host"], e["agent"]) for e in stored] == [
        (k["id"], k["host"], "devbot") for k in kept if k["agent"] == "devbot"
    ]
    assert stored[0]["reason"] == "host evil.test:443 is not on the allowlist"
    assert str(stored[0]["time"]).startswith("2026-12-06T03:26:20.015"), "the denial's time, not the publication's"
    # Killed after publishing but before it could say so: the same events again are stored once.
    shutil.copy(copy, pending)
    asyncio.run(next_firewall())
    assert [e["id"] for e in asyncio.run(_stored(nats_server.url))] == [e["id"] for e in stored]


def test_denials_wait_for_the_agents_boot_and_a_stop_publishes_them(tmp_path: Path, nats_server: NatsServer) -> None:
    crew = _crew(tmp_path, nats_server.url)
    pending = FirewallState(tmp_path / "firewall").pending_denials_path

    async def run() -> tuple[list[dict[str, object]], list[dict[str, object]], list[dict[str, object]]]:
        denials = DenialPublisher(lambda: crew, pending, settle=0.3)
        denials(_denial(host="first.test"))
        await asyncio.sleep(0.1)
        during = await _stored(nats_server.url) if await _stream_exists(nats_server.url) else []
        for _ in range(200):
            if not pending.exists():
                break
            await asyncio.sleep(0.025)
        settled = await _stored(nats_server.url)
        # Once open, a denial is published as it comes; one the stop finds pending is published by it.
        denials(_denial(host="second.test"))
        await denials.close()
        return during, settled, await _stored(nats_server.url)

    during, settled, after = asyncio.run(run())
    assert during == []
    assert [e["host"] for e in settled] == ["first.test"]
    assert [e["host"] for e in after] == ["first.test", "second.test"]
    assert not pending.exists()


def test_denials_before_the_crew_s_event_log_runs_wait_for_it_and_reach_it(tmp_path: Path) -> None:
    """The crew's embedded event log starts once its agents booted, after their first denials: those
    wait for it (not in an outbox nobody flushes while this firewall runs), a stop keeps them on disk."""
    crew = Crew.model_validate(
        {
            "crew": {"name": "cc"},
            "agents": [{"name": "devbot"}],
            "runtime": {"state_dir": str(tmp_path / "state")},
            "events": {"stream": "DENIALS_TEST"},
        }
    )
    pending = FirewallState(tmp_path / "firewall").pending_denials_path
    server = EmbeddedNats(CrewPaths.of(crew).nats)

    async def stopped_before_it_runs() -> None:
        denials = DenialPublisher(lambda: crew, pending, settle=0.05)
        denials(_denial(host="early.test"))
        await asyncio.sleep(0.5)
        await denials.close()

    async def run() -> list[dict[str, object]]:
        denials = DenialPublisher(lambda: crew, pending, settle=0.05)
        denials.start()
        denials(_denial(host="first.test"))
        await asyncio.sleep(0.5)
        await asyncio.to_thread(server.start)
        try:
            for _ in range(200):
                # Through its outbox when taken before the client connected: in the stream soon after.
                if await _stream_exists(server.url) and len(stored := await _stored(server.url)) == 2:
                    return stored
                await asyncio.sleep(0.05)
            return await _stored(server.url) if await _stream_exists(server.url) else []
        finally:
            await denials.close()

    asyncio.run(stopped_before_it_runs())
    assert [k["host"] for k in kept(pending, _PENDING_KEYS)] == ["early.test"]
    try:
        stored = asyncio.run(run())
    finally:
        server.stop()
    assert [e["host"] for e in stored] == ["early.test", "first.test"]
    assert not pending.exists()


async def _stream_exists(url: str) -> bool:
    nc = await connect(url)
    try:
        js = nc.jetstream()
        try:
            await js.stream_info("DENIALS_TEST")
        except Exception:
            return False
        return True
    finally:
        await nc.close()


GOOD = {"id": "01M94R3K8P0YEH4FSFJZNJHB0X", **_denial().__dict__}


@pytest.mark.parametrize(
    ("bad", "logged"),
    [
        # Not what a firewall writes (edited by hand, say).
        ({**GOOD, "id": "not an event id", "host": ""}, "a pending denial is not one and is dropped"),
        # One NATS refuses as such: larger than its max_payload.
        (
            {**GOOD, "id": "01M94R3K8P0YEH4FSFJZNJHB0W", "path": "/" + "x" * (1 << 20)},
            "a pending denial is dropped: NATS refused event 01M94R3K8P0YEH4FSFJZNJHB0W: MaxPayloadError",
        ),
    ],
    ids=["no denial", "refused by NATS"],
)
def test_a_pending_record_that_cannot_be_published_holds_back_no_other(
    tmp_path: Path, nats_server: NatsServer, caplog: pytest.LogCaptureFixture, bad: dict[str, object], logged: str
) -> None:
    crew = _crew(tmp_path, nats_server.url)
    pending = FirewallState(tmp_path / "firewall").pending_denials_path
    pending.parent.mkdir(parents=True)
    pending.write_text(json.dumps(bad) + "\n" + json.dumps(GOOD) + "\n")

    async def next_firewall() -> None:
        denials = DenialPublisher(lambda: crew, pending, settle=0)
        denials.start()
        await asyncio.sleep(0)
        await denials.close()

    asyncio.run(next_firewall())
    assert not pending.exists()
    assert [e["id"] for e in asyncio.run(_stored(nats_server.url))] == [GOOD["id"]]
    assert logged in caplog.text


def test_a_denial_that_cannot_be_kept_on_disk_is_still_published(
    tmp_path: Path, nats_server: NatsServer, caplog: pytest.LogCaptureFixture
) -> None:
    crew = _crew(tmp_path, nats_server.url)
    blocked = tmp_path / "firewall"

    async def run() -> None:
        denials = DenialPublisher(lambda: crew, blocked / "denials.pending.jsonl", settle=60)
        blocked.write_text("")  # its directory is now a file: nothing can be written there
        denials(_denial())
        await denials.close()

    asyncio.run(run())
    assert "cannot keep a denial in" in caplog.text
    assert [e["host"] for e in asyncio.run(_stored(nats_server.url))] == ["evil.test"]


def test_what_follows_a_torn_line_is_not_lost(tmp_path: Path) -> None:
    pending = tmp_path / "denials.pending.jsonl"
    whole = json.dumps({"id": "01M94R3K8P0YEH4FSFJZNJHB0X", **_denial().__dict__})
    pending.write_text(whole + "\n" + whole[:40])

    async def next_firewall() -> None:
        denials = DenialPublisher(lambda: _crew(tmp_path, "nats://127.0.0.1:9"), pending, settle=60)
        denials(_denial(host="after.test"))
        await asyncio.sleep(0)

    asyncio.run(next_firewall())
    assert [p["host"] for p in kept(pending, _PENDING_KEYS)] == ["evil.test", "after.test"]
    assert oct(pending.stat().st_mode & 0o777) == "0o600"


def test_a_line_torn_by_a_crash_ends_what_is_pending(tmp_path: Path) -> None:
    pending = tmp_path / "denials.pending.jsonl"
    whole = json.dumps({"id": "01M94R3K8P0YEH4FSFJZNJHB0X", **_denial().__dict__})
    pending.write_text(whole + "\n" + whole[:40])
    assert [p["host"] for p in kept(pending, _PENDING_KEYS)] == ["evil.test"]
    pending.write_text('{"id": "x"}\n' + whole + "\n")
    assert kept(pending, _PENDING_KEYS) == [], "a record that is not a whole denial ends it too"
    assert kept(tmp_path / "absent.jsonl", _PENDING_KEYS) == []


def test_a_denial_repeated_within_a_minute_is_one_event_and_the_next_counts_the_rest(tmp_path: Path) -> None:
    pending = FirewallState(tmp_path / "firewall").pending_denials_path
    now = [0.0]

    async def denied() -> None:
        denials = DenialPublisher(
            lambda: _crew(tmp_path, "nats://127.0.0.1:1"), pending, settle=60, clock=lambda: now[0]
        )
        for at in (0.0, 5.0, 30.0, 59.9):  # a CLI's telemetry, retried
            now[0] = at
            denials(_denial(host="telemetry.test"))
        denials(_denial(host="other.test"))  # another host: its own
        now[0] = 61.0
        denials(_denial(host="telemetry.test"))
        denials(_denial(host="telemetry.test"))
        await asyncio.sleep(0.01)

    asyncio.run(denied())
    kept = [json.loads(line) for line in pending.read_text().splitlines()]
    assert [(k["host"], k["repeated"]) for k in kept] == [
        ("telemetry.test", 0),
        ("other.test", 0),
        ("telemetry.test", 3),
    ]


@given(st.lists(st.tuples(st.sampled_from("ab"), st.floats(0, 30)), max_size=40))
def test_every_denial_is_published_or_counted_in_the_next_published_one(steps: list[tuple[str, float]]) -> None:
    window = RepeatWindow(window=10.0)
    now, published, counted, reported = 0.0, {"a": 0, "b": 0}, {"a": 0, "b": 0}, 0
    last: dict[str, float] = {}
    for host, gap in steps:
        now += gap
        repeated = window.admit(("devbot", host, 443, "not allowed"), now)
        if repeated is None:
            assert now - last[host] < 10.0
            counted[host] += 1
        else:
            assert host not in last or now - last[host] >= 10.0
            assert repeated == counted[host]
            reported += repeated
            published[host] += 1
            counted[host] = 0
            last[host] = now
    # Each denial is an event, or counted in one, or counted for the next of its kind.
    assert sum(published.values()) + reported + sum(counted.values()) == len(steps)
