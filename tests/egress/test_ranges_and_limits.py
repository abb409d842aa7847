"""What a client can ask for to get past the scrub or wear the firewall down: byte ranges that cut a
secret in two, heads too large or too slow, more connections than it should hold."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import errno
import os
import shutil
import socket
import ssl
import subprocess
import time
from pathlib import Path
from typing import Any

import aiohttp
import httpx
import pytest
from aiohttp import WSMsgType

from agent_smith.egress import proxy
from tests.egress.helpers import _tunnel, assert_never_contains, client, files_under
from tests.fixtures.egress import GITHUB_PLACEHOLDER, WS_MASK, EgressUpstream, FirewallHarness, StartFirewall

AUTH = {"Authorization": f"token {GITHUB_PLACEHOLDER}"}
LOG_PREFIX = "step 1 ok\nAuthorization: token "


def _curl(fw_env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    curl = shutil.which("curl")
    if curl is None:
        pytest.fail("curl is needed: run scripts/install.sh")
    return subprocess.run([curl, "-sS", *args], env=fw_env, capture_output=True, text=True, timeout=60, check=False)


@pytest.mark.real
def test_byte_ranges_that_cut_a_secret_in_two_are_never_asked_of_a_guarded_host(
    egress_firewall: StartFirewall, egress_upstream: EgressUpstream, tmp_path: Path
) -> None:
    fw = egress_firewall()
    secret = egress_upstream.world.github_secret
    env = fw.client_env("devbot", tmp_path / "home")
    cut = len(LOG_PREFIX) + len(secret) // 2
    url = "https://api.github.test/ranged"
    first = _curl(env, "-H", f"Range: bytes=0-{cut - 1}", "-H", "If-Range: *", url)
    second = _curl(env, "-H", f"Range: bytes={cut}-", url)
    # Not asked for a part, the host answers the whole body, which the scrub sees whole.
    assert [s.headers.get("Range") for s in egress_upstream.world.seen] == [None, None]
    assert [s.headers.get("If-Range") for s in egress_upstream.world.seen] == [None, None]
    assert first.stdout == second.stdout == f"{LOG_PREFIX}{GITHUB_PLACEHOLDER}\nstep 2 ok\n"
    # Another host never gets a secret to hand back: ranges toward it go as asked.
    other = _curl(env, "-H", "Range: bytes=0-3", "https://other.test/ranged")
    assert (other.stdout, egress_upstream.world.seen[-1].headers.get("Range")) == ("step", "bytes=0-3")
    assert_never_contains([first.stdout, second.stdout, *files_under(fw.state.root)], secret)


@pytest.mark.real
@pytest.mark.parametrize("http2", [False, True], ids=["http1", "http2"])
def test_a_part_a_guarded_host_sends_unasked_is_refused(
    egress_firewall: StartFirewall, egress_upstream: EgressUpstream, http2: bool
) -> None:
    fw = egress_firewall()
    secret = egress_upstream.world.github_secret
    cut = len(LOG_PREFIX) + len(secret) // 2
    with client(fw, http2=http2) as http:
        parts = [
            http.get(f"https://api.github.test/ranged?always={span}", headers={**AUTH, "Range": f"bytes={span}"})
            for span in (f"0-{cut - 1}", f"{cut}-")
        ]
    assert [p.status_code for p in parts] == [502, 502]
    assert all("a part of a body, though asked for the whole" in p.text for p in parts)
    assert all(p.headers.get("content-range") is None for p in parts)
    assert [(e["status"], e["decision"]) for e in fw.audit()] == [(502, "error"), (502, "error")]
    joined = "".join(p.text for p in parts)
    assert_never_contains([joined, *files_under(fw.state.root)], secret)
    assert secret[: len(secret) // 2] not in joined


def _proxy_auth(fw: FirewallHarness, agent: str = "devbot") -> str:
    url = httpx.URL(fw.proxy_url(agent))
    return "Basic " + base64.b64encode(f"{url.username}:{url.password}".encode()).decode()


def _padding(kib: int) -> str:
    """About `kib` KiB of header lines."""
    return "".join(f"X-Pad-{i}: {'a' * 1000}\r\n" for i in range(kib))


def _ask(port: int, head: bytes, timeout: float = 20) -> bytes:
    """Send `head` in one write as a raw client; everything the firewall answers until it closes."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(head)
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
        return answer


@pytest.mark.real
@pytest.mark.parametrize("target", ["api.github.test:0", "api.github.test:99999", "api.github.test"])
def test_a_connect_without_a_usable_port_is_refused_and_audited(egress_firewall: StartFirewall, target: str) -> None:
    fw = egress_firewall()
    answer = _ask(
        fw.port,
        f"CONNECT {target} HTTP/1.1\r\nHost: {target}\r\nProxy-Authorization: {_proxy_auth(fw)}\r\n\r\n".encode(),
    )
    assert answer.startswith(b"HTTP/1.1 400 ")
    [entry] = fw.audit()
    assert (entry["agent"], entry["status"], entry["decision"]) == ("devbot", 400, "malformed")
    assert entry["reason"] == "CONNECT needs host:port"


@pytest.mark.real
def test_a_connect_head_too_large_is_refused_though_it_came_whole(egress_firewall: StartFirewall) -> None:
    fw = egress_firewall()
    padding = _padding(70)
    head = f"CONNECT api.github.test:443 HTTP/1.1\r\nHost: x\r\nProxy-Authorization: {_proxy_auth(fw)}\r\n{padding}\r\n"
    answer = _ask(fw.port, head.encode())
    assert answer.startswith(b"HTTP/1.1 431 ")
    [entry] = fw.audit()
    assert (entry["status"], entry["decision"], entry["reason"]) == (431, "malformed", "request head too large")
    # A head just under the limit still goes through.
    small = f"CONNECT api.github.test:443 HTTP/1.1\r\nHost: x\r\nProxy-Authorization: {_proxy_auth(fw)}\r\n{_padding(55)}\r\n"
    with socket.create_connection(("127.0.0.1", fw.port), timeout=20) as sock:
        sock.sendall(small.encode())
        assert sock.recv(4096).startswith(b"HTTP/1.1 200 ")


@pytest.mark.real
def test_a_request_head_too_large_inside_a_tunnel_is_refused_though_it_came_whole(
    egress_firewall: StartFirewall, egress_upstream: EgressUpstream
) -> None:
    fw = egress_firewall()
    padding = _padding(70)
    with _tunnel(fw, "api.github.test") as tls:
        tls.sendall(f"GET /echo HTTP/1.1\r\nHost: api.github.test\r\n{padding}\r\n".encode())
        tls.settimeout(10)
        answer = tls.recv(65536)
    assert answer.startswith(b"HTTP/1.1 431 ")
    assert egress_upstream.world.seen == []
    [entry] = fw.audit()
    assert (entry["host"], entry["status"], entry["decision"]) == ("api.github.test", 431, "malformed")


def _closed_within(sock: socket.socket, seconds: float, dribble: bytes = b"") -> bool:
    """Whether the firewall closes `sock` within `seconds` while the client sends `dribble`, a byte
    every 0.2 s (a head that never completes in time, though each read comes quickly)."""
    sock.settimeout(0.2)
    deadline = time.monotonic() + seconds
    for byte in [dribble[i : i + 1] for i in range(len(dribble))] or [b""] * int(seconds / 0.2):
        if time.monotonic() > deadline:
            return False
        with contextlib.suppress(OSError):
            sock.send(byte)
        try:
            if sock.recv(4096) == b"":
                return True
        except TimeoutError:
            continue
        except OSError:
            return True
    return False


@pytest.mark.real
def test_a_connect_head_dribbled_byte_by_byte_gets_one_deadline_for_the_whole_head(
    egress_firewall: StartFirewall, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(proxy, "_HEAD_TIMEOUT", 1.0)
    fw = egress_firewall()
    head = f"CONNECT api.github.test:443 HTTP/1.1\r\nHost: api.github.test:443\r\n{_padding(1)}".encode()
    with socket.create_connection(("127.0.0.1", fw.port)) as sock:
        assert _closed_within(sock, 4.0, head)
    # A client that waits before its first request has the idle timeout, and then the head deadline.
    with _tunnel(fw, "api.github.test") as tls:
        tls.settimeout(0.2)
        time.sleep(1.5)
        assert _closed_within(tls, 4.0, b"GET /echo HTTP/1.1\r\nHost: api.github.test\r\n" + _padding(1).encode())


@pytest.mark.real
def test_connections_beyond_the_cap_are_closed_at_once_with_one_warning(
    egress_firewall: StartFirewall, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(proxy, "_MAX_CONNECTIONS", 3)
    fw = egress_firewall()
    held = [socket.create_connection(("127.0.0.1", fw.port)) for _ in range(3)]
    try:
        time.sleep(0.2)
        for _ in range(5):
            with socket.create_connection(("127.0.0.1", fw.port)) as extra:
                assert _closed_within(extra, 2.0)
        assert caplog.text.count("refused a connection: 3 are open") == 1
        held.pop().close()
        time.sleep(0.2)
        answer = _ask(fw.port, b"CONNECT api.github.test:443 HTTP/1.1\r\nHost: api.github.test:443\r\n\r\n")
        assert answer.startswith(b"HTTP/1.1 407 ")
    finally:
        for sock in held:
            sock.close()


@pytest.mark.real
def test_one_agent_holds_no_more_than_its_cap_and_another_is_still_served(
    egress_firewall: StartFirewall, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(proxy, "_MAX_PER_AGENT", 2)
    fw = egress_firewall()
    with _tunnel(fw, "api.github.test"), _tunnel(fw, "api.github.test"):
        connect = "CONNECT api.github.test:443 HTTP/1.1\r\nHost: api.github.test:443\r\nProxy-Authorization: {}\r\n\r\n"
        refused = _ask(fw.port, connect.format(_proxy_auth(fw)).encode())
        with socket.create_connection(("127.0.0.1", fw.port), timeout=10) as other:
            other.sendall(connect.format(_proxy_auth(fw, "reviewbot")).encode())
            assert other.recv(4096).startswith(b"HTTP/1.1 200 ")
    assert refused.startswith(b"HTTP/1.1 429 ")
    refusal = [e for e in fw.audit() if e["status"] == 429]
    assert [(e["agent"], e["decision"]) for e in refusal] == [("devbot", "denied")]
    assert refusal[0]["reason"] == "devbot holds 2 connections already, the most one agent may"
    # Closed tunnels free their places.
    time.sleep(0.2)
    with _tunnel(fw, "api.github.test"):
        pass


@pytest.mark.real
def test_out_of_descriptors_the_firewall_backs_off_and_warns_once(
    egress_firewall: StartFirewall, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    fw = egress_firewall()
    accept = socket.socket.accept

    def exhausted(sock: socket.socket) -> tuple[socket.socket, Any]:
        if sock.getsockname()[1] == fw.port:
            raise OSError(errno.EMFILE, os.strerror(errno.EMFILE))
        return accept(sock)

    monkeypatch.setattr(socket.socket, "accept", exhausted)
    with socket.create_connection(("127.0.0.1", fw.port)):
        time.sleep(2.0)
        attempts = caplog.text.count("accepting a connection failed: Too many open files")
    monkeypatch.setattr(socket.socket, "accept", accept)
    assert attempts == 1
    assert _ask(fw.port, b"CONNECT a:1 HTTP/1.1\r\nHost: a:1\r\n\r\n").startswith(b"HTTP/1.1 407 ")


@pytest.mark.real
def test_a_masked_frame_from_the_server_closes_the_websocket_and_never_reaches_the_client(
    egress_firewall: StartFirewall, egress_upstream: EgressUpstream, caplog: pytest.LogCaptureFixture
) -> None:
    fw = egress_firewall()
    secret = egress_upstream.world.github_secret

    async def talk() -> tuple[int | None, list[bytes]]:
        ctx = ssl.create_default_context(cafile=str(fw.ca_path))
        received: list[bytes] = []
        async with (
            aiohttp.ClientSession() as session,
            session.ws_connect("wss://api.github.test/raw/ws-masked", proxy=fw.proxy_url("devbot"), ssl=ctx) as ws,
        ):
            # Bounded: a firewall that passed the frame on and never closed would leave the client waiting.
            with contextlib.suppress(TimeoutError):
                while (message := await ws.receive(timeout=5)).type not in (WSMsgType.CLOSE, WSMsgType.CLOSED):
                    received.append(message.data if isinstance(message.data, bytes) else str(message.data).encode())
            return ws.close_code, received

    close_code, received = asyncio.run(talk())
    # Unmasked with the key the server chose, what the client got would be the secret.
    unmasked = [bytes(b ^ WS_MASK[i % 4] for i, b in enumerate(data)) for data in received]
    assert received == []
    # The firewall sends a close with 1002 right behind the 101; aiohttp reads it most of the time and
    # sometimes reports the connection lost (1006) instead (not investigated further): either way, closed.
    assert close_code in (1002, 1006)
    assert "a WebSocket was cut off: the server masked a frame" in caplog.text
    assert_never_contains([*unmasked, caplog.text, *files_under(fw.state.root)], secret)
