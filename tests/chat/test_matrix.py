"""The Matrix link against a real Synapse: room state, requests, errors, rate limits; and what it imports."""

from __future__ import annotations

import asyncio
import logging
import re
import secrets
import subprocess
import sys
import time
from typing import Any
from urllib.parse import quote

import pytest

from agent_smith.chat.matrix import RATE_LIMIT_RETRIES, RATE_LIMIT_WAIT_MAX, MatrixLink
from agent_smith.errors import OperationError
from agent_smith.listeners import free_port
from agent_smith.standins.synapse import MatrixUser, SynapseServer
from tests.chat.kit import FaultyDoor


def put_state(
    synapse: SynapseServer, user: MatrixUser, room: str, kind: str, content: dict[str, Any], key: str = ""
) -> None:
    synapse._call(
        "PUT",
        f"/_matrix/client/v3/rooms/{quote(room)}/state/{kind}/{quote(key)}",
        token=user.access_token,
        body=content,
    )


def test_room_names_members_and_encryption_follow_the_syncs(synapse: SynapseServer) -> None:
    tag = secrets.token_hex(3)
    alice, bob, carol, devbot = (synapse.register(f"{name}{tag}") for name in ("alice", "bob", "carol", "devbot"))
    named = synapse.create_room(alice, name=f"crew {tag}", invite=[devbot.user_id])
    unnamed = synapse.create_room(alice, invite=[devbot.user_id, bob.user_id, carol.user_id])
    synapse.join(bob, unnamed)
    aliased = synapse.create_room(alice)
    alias = f"#ops{tag}:{devbot.user_id.split(':', 1)[1]}"
    synapse._call(
        "PUT", f"/_matrix/client/v3/directory/room/{quote(alias)}", token=alice.access_token, body={"room_id": aliased}
    )
    put_state(synapse, alice, aliased, "m.room.canonical_alias", {"alias": alias})
    put_state(synapse, alice, aliased, "m.room.join_rules", {"join_rule": "public"})
    put_state(synapse, alice, named, "m.room.encryption", {"algorithm": "m.megolm.v1.aes-sha2"})

    async def scenario() -> None:
        link = MatrixLink(synapse.url, devbot.user_id, devbot.access_token, agent="devbot", request_timeout=10)
        try:
            assert await link.join(named) == named
            assert await link.join(unnamed) == unnamed
            assert await link.join(alias) == aliased, "a room is joined by its alias too"
            batch = await link.sync(None, timeout_ms=0, full_state=True)
            assert set(link.joined_rooms()) == {named, unnamed, aliased}
            assert link.room_name(named) == f"crew {tag}"
            assert link.room_name(aliased) == alias
            # Synapse sends no summary without lazy-loaded members: the members name the room.
            assert link.room_name(unnamed) == f"alice{tag}, bob{tag} and carol{tag}"
            assert link.member_name(unnamed, alice.user_id) == f"alice{tag}"
            assert link.member_name(unnamed, "@nobody:nowhere") == "@nobody:nowhere"
            assert link.room_name("!unknown:nowhere") == "!unknown:nowhere"
            assert link.is_encrypted(named)
            assert not link.is_encrypted(unnamed)

            for user in (alice, bob):
                put_state(
                    synapse, user, unnamed, "m.room.member", {"membership": "join", "displayname": "Twin"}, user.user_id
                )
            put_state(synapse, alice, named, "m.room.name", {"name": "renamed"})
            synapse._call(
                "POST", f"/_matrix/client/v3/rooms/{quote(aliased)}/leave", token=devbot.access_token, body={}
            )
            await link.sync(batch.next_batch, timeout_ms=0)
            assert link.member_name(unnamed, alice.user_id) == f"Twin ({alice.user_id})"
            assert link.room_name(unnamed) == f"Twin ({alice.user_id}), Twin ({bob.user_id}) and carol{tag}"
            assert link.room_name(named) == "renamed"
            assert set(link.joined_rooms()) == {named, unnamed}, "a room left is forgotten"
            assert link.room_name(aliased) == aliased
        finally:
            await link.close()

    asyncio.run(scenario())


def test_sends_history_and_one_line_errors(synapse: SynapseServer) -> None:
    tag = secrets.token_hex(3)
    alice, devbot = synapse.register(f"alice{tag}"), synapse.register(f"devbot{tag}")
    room = synapse.create_room(alice, invite=[devbot.user_id])
    synapse.join(devbot, room)
    domain = devbot.user_id.split(":", 1)[1]

    async def scenario() -> None:
        link = MatrixLink(synapse.url, devbot.user_id, devbot.access_token, agent="devbot", request_timeout=10)
        stranger = MatrixLink(synapse.url, devbot.user_id, "not-a-token", agent="devbot", request_timeout=10)
        dead = f"http://127.0.0.1:{free_port()}"
        nowhere = MatrixLink(dead, devbot.user_id, devbot.access_token, agent="devbot", request_timeout=10)
        try:
            content = {"msgtype": "m.notice", "body": "same words"}
            first = await link.send(room, "m.room.message", content)
            second = await link.send(room, "m.room.message", content)
            assert first != second, "each send is its own transaction"
            assert (await link.get_event(room, second))["content"] == content
            recent, _ = await link.recent(room, 3)
            assert [event["event_id"] for event in recent[-2:]] == [first, second], "oldest first"
            assert len(recent) == 2, "messages only: the room's creation and joins take no places"
            with pytest.raises(OperationError, match=rf"^join #nope:{re.escape(domain)}: 404 M_NOT_FOUND \S"):
                await link.join(f"#nope:{domain}")
            with pytest.raises(OperationError, match=rf"^get \$nope in {re.escape(room)}: 404 M_NOT_FOUND"):
                await link.get_event(room, "$nope")
            with pytest.raises(OperationError, match=r"^sync: 401 M_UNKNOWN_TOKEN"):
                await stranger.sync(None, timeout_ms=0)
            with pytest.raises(
                OperationError,
                match=rf"^history of {re.escape(room)}: homeserver {re.escape(dead)} unreachable \(ConnectError\)$",
            ):
                await nowhere.recent(room, 3)
        finally:
            for each in (link, stranger, nowhere):
                await each.close()

    asyncio.run(scenario())


def test_the_long_poll_may_outlast_the_request_timeout(synapse: SynapseServer) -> None:
    devbot = synapse.register(f"devbot{secrets.token_hex(3)}")

    async def scenario() -> float:
        link = MatrixLink(synapse.url, devbot.user_id, devbot.access_token, agent="devbot", request_timeout=1)
        try:
            batch = await link.sync(None, timeout_ms=0, full_state=True)
            started = time.monotonic()
            await link.sync(batch.next_batch, timeout_ms=2500)
            return time.monotonic() - started
        finally:
            await link.close()

    assert asyncio.run(scenario()) >= 2.4, "Synapse held the quiet sync for its whole timeout"


def test_a_429_is_waited_out_by_its_retry_after_header_and_given_up_after_the_retries(
    synapse: SynapseServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="agent_smith")
    tag = secrets.token_hex(3)
    alice, devbot = synapse.register(f"alice{tag}"), synapse.register(f"devbot{tag}")
    room = synapse.create_room(alice, invite=[devbot.user_id])
    synapse.join(devbot, room)

    async def scenario() -> FaultyDoor:
        door = FaultyDoor(synapse.url)
        await door.up()
        link = MatrixLink(door.url, devbot.user_id, devbot.access_token, agent="devbot", request_timeout=10)
        try:
            door.rate_limit(1, retry_after=1)
            await link.send(room, "m.room.message", {"msgtype": "m.text", "body": "after a 429"})
            door.rate_limit(RATE_LIMIT_RETRIES + 1, retry_after_ms=0)
            with pytest.raises(
                OperationError, match=r"^send m.room.message to \S+: 429 M_LIMIT_EXCEEDED Too Many Requests$"
            ):
                await link.send(room, "m.room.message", {"msgtype": "m.text", "body": "never"})
            # A wait longer than the cap is not waited: the call fails at once, in one line.
            door.rate_limit(1, retry_after_ms=int(RATE_LIMIT_WAIT_MAX * 1000) + 1)
            started = time.monotonic()
            with pytest.raises(OperationError, match=r"^send m.room.message to \S+: 429 M_LIMIT_EXCEEDED"):
                await link.send(room, "m.room.message", {"msgtype": "m.text", "body": "not after an hour"})
            assert time.monotonic() - started < 5
        finally:
            await link.close()
            await door.close()
        return door

    door = asyncio.run(scenario())
    sends = [(t, path, status) for t, method, path, status in door.seen if method == "PUT"]
    assert [status for _, _, status in sends] == [429, 200] + [429] * (RATE_LIMIT_RETRIES + 2)
    assert sends[1][0] - sends[0][0] >= 1.0, "the retry waited the Retry-After seconds"
    assert sends[0][1] == sends[1][1], "a retry is the same transaction"
    assert len({path for _, path, _ in sends[2:-1]}) == 1
    waits = [r for r in caplog.records if "rate limited" in r.getMessage()]
    assert len(waits) == 1 + RATE_LIMIT_RETRIES
    # The supervisor hosts every agent's link: each line says which agent it is about.
    assert all(r.getMessage().startswith("agent devbot: send m.room.message to ") for r in waits)
    assert all(getattr(r, "agent", None) == "devbot" for r in waits)


@pytest.mark.parametrize("module", ["agent_smith.chat.channel", "agent_smith.chat.server"])
def test_the_channel_loads_neither_nio_nor_aiohttp(module: str) -> None:
    """aiohttp (and matrix-nio) cost ~20 MB per process; the supervisor hosts a channel per agent."""
    code = f"import sys, {module}; print(sorted(m for m in sys.modules if m.split('.')[0] in ('nio', 'aiohttp')))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert done.stdout.strip() == "[]"
