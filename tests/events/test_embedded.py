"""The embedded nats-server that `agent-smith up` runs when crew.yaml names no NATS."""

from __future__ import annotations

import asyncio
import json
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from agent_smith.errors import OperationError
from agent_smith.events import EmbeddedNats, Publisher, TaskDone, running_server_url
from agent_smith.events.embedded import running_server
from agent_smith.runtime.services import terminate
from tests.events.helpers import SETTINGS, stored
from tests.fixtures.processes import LeakCheck, pid_alive

pytestmark = pytest.mark.real


def test_it_serves_jetstream_keeps_its_store_across_restarts_and_says_where_it_is(
    tmp_path: Path, leak_check: LeakCheck
) -> None:
    server = EmbeddedNats(tmp_path / "nats")
    try:
        server.start()
        assert server.pid is not None
        leak_check.track(server.pid, "embedded nats-server")
        assert running_server_url(tmp_path / "nats") == server.url
        assert json.loads((tmp_path / "nats" / "server.json").read_text())["pid"] == server.pid

        async def publish() -> str:
            async with Publisher(SETTINGS, tmp_path / "outbox", server.url) as publisher:
                assert await publisher.wait_connected(10)
                receipt = await publisher.publish(TaskDone(agent="devbot", summary="kept"))
                assert receipt.stored
                return receipt.event_id

        event_id = asyncio.run(publish())
        first_pid = server.pid
        server.stop()
        assert not pid_alive(first_pid)
        assert running_server_url(tmp_path / "nats") is None

        server.start()
        assert server.pid is not None
        leak_check.track(server.pid, "embedded nats-server")
        assert [e.id for e in asyncio.run(stored(server.url))] == [event_id]
    finally:
        server.stop()


def test_a_stale_state_file_is_not_a_running_server(tmp_path: Path) -> None:
    (tmp_path / "server.json").write_text(json.dumps({"url": "nats://127.0.0.1:1", "pid": 2**22 + 7}))
    assert running_server_url(tmp_path) is None
    (tmp_path / "server.json").write_text("{not json")
    assert running_server_url(tmp_path) is None
    assert running_server_url(tmp_path / "absent") is None


def test_a_state_file_whose_pid_names_another_program_is_not_a_running_server(tmp_path: Path) -> None:
    # Kept across a reboot, its pid may be any process's now: `up` adopted it, `down` killed it.
    with subprocess.Popen(["sleep", "60"]) as other:
        try:
            (tmp_path / "server.json").write_text(json.dumps({"url": "nats://127.0.0.1:1", "pid": other.pid}))
            assert running_server(tmp_path) is None
        finally:
            other.kill()


def test_a_supervisor_killed_while_its_server_starts_leaves_it_findable(tmp_path: Path, leak_check: LeakCheck) -> None:
    # server.json was written once the server was healthy: killed before, the server ran on unknown.
    code = f"""
import os, signal
from pathlib import Path
from agent_smith.events.embedded import EmbeddedNats
EmbeddedNats._wait_healthy = lambda self, timeout: os.kill(os.getpid(), signal.SIGKILL)
EmbeddedNats(Path({str(tmp_path / "nats")!r})).start()
"""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, check=False)
    assert done.returncode == -signal.SIGKILL
    found = running_server(tmp_path / "nats")
    assert found is not None
    leak_check.track(found.pid, "embedded nats-server")
    try:
        assert found.url.startswith("nats://127.0.0.1:")
        assert found.monitor_port is not None
    finally:
        terminate(found.pid, 10.0)


def test_a_port_in_use_is_a_clear_error(tmp_path: Path, leak_check: LeakCheck) -> None:
    first = EmbeddedNats(tmp_path / "a")
    try:
        first.start()
        assert first.pid is not None
        leak_check.track(first.pid, "embedded nats-server")
        second = EmbeddedNats(tmp_path / "b", port=first.port)
        with pytest.raises(OperationError, match=rf"exited at start \(code 1\): port {first.port} .* is in use"):
            second.start()
        assert not second.running
    finally:
        first.stop()


def test_ports_it_picked_itself_and_lost_before_the_first_start_are_picked_again(
    tmp_path: Path, leak_check: LeakCheck
) -> None:
    server = EmbeddedNats(tmp_path / "nats")
    lost = server.port
    with socket.socket() as thief:
        thief.bind(("127.0.0.1", lost))
        try:
            server.start()
            assert server.pid is not None
            leak_check.track(server.pid, "embedded nats-server")
            assert server.port != lost
            assert running_server_url(tmp_path / "nats") == f"nats://127.0.0.1:{server.port}"
        finally:
            server.stop()


def test_the_server_gets_none_of_the_supervisor_s_environment(
    tmp_path: Path, leak_check: LeakCheck, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The supervisor's environment may hold the real secrets the firewall reads (an env source).
    monkeypatch.setenv("AGENT_SMITH_SECRET_GITHUB", "test-real-secret-not-for-nats")
    server = EmbeddedNats(tmp_path / "nats")
    try:
        server.start()
        assert server.pid is not None
        leak_check.track(server.pid, "embedded nats-server")
        environ = Path(f"/proc/{server.pid}/environ").read_bytes()
        assert b"test-real-secret-not-for-nats" not in environ
        assert b"AGENT_SMITH" not in environ
    finally:
        server.stop()
