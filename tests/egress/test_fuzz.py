"""Thousands of malformed inputs at every stage of a connection; the firewall keeps serving afterwards."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
import random
import ssl
import time

import httpx
import pytest

from tests.egress.helpers import client
from tests.fixtures.egress import GITHUB_PLACEHOLDER, EgressUpstream, FirewallHarness, StartFirewall

SEEDS = [
    b"GET / HTTP/1.1\r\n\r\n",
    b"CONNECT api.github.test:443 HTTP/1.1\r\nHost: api.github.test:443\r\n\r\n",
    b"CONNECT :443 HTTP/1.1\r\n\r\n",
    b"CONNECT api.github.test:99999 HTTP/1.1\r\n\r\n",
    b"GET /echo HTTP/1.1\r\nHost: api.github.test\r\nContent-Length: -1\r\n\r\n",
    b"POST /upload HTTP/1.1\r\nHost: api.github.test\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
    b"GET /echo HTTP/1.1\r\nHost: api.github.test\r\nHost: evil.test\r\n\r\n",
    b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + b"\x00" * 40,
    b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x12\x04\x00\x00\x00\x00\x00",
]


def _mutate(rng: random.Random, seed: bytes) -> bytes:
    data = bytearray(seed)
    for _ in range(rng.randint(1, 8)):
        choice = rng.random()
        position = rng.randint(0, len(data))
        if choice < 0.3 and data:
            data[min(position, len(data) - 1)] = rng.randint(0, 255)
        elif choice < 0.6:
            data[position:position] = bytes(rng.randint(0, 255) for _ in range(rng.randint(1, 16)))
        elif choice < 0.8:
            del data[position : position + rng.randint(1, 8)]
        else:
            data[position:position] = rng.choice([b"\r\n", b":", b" ", b"\x00", b"A" * rng.randint(100, 70000)])
    return bytes(data)


async def _poke(port: int, prefix: bytes, tls: ssl.SSLContext | None, payload: bytes) -> None:
    try:
        async with asyncio.timeout(10):
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            try:
                if prefix:
                    writer.write(prefix)
                    await writer.drain()
                    head = await reader.readuntil(b"\r\n\r\n")
                    assert head.startswith(b"HTTP/1.1 200"), head
                if tls is not None:
                    await writer.start_tls(tls, server_hostname="api.github.test")
                writer.write(payload)
                await writer.drain()
                if writer.can_write_eof():
                    writer.write_eof()
                # An incomplete request waits for more bytes: hang up after a moment, as a client would.
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(0.15):
                        while await reader.read(65536):
                            pass
            finally:
                writer.close()
    except (OSError, ssl.SSLError, asyncio.IncompleteReadError, TimeoutError):
        pass


async def _fuzz(fw: FirewallHarness, count: int) -> None:
    rng = random.Random(7)
    url = httpx.URL(fw.proxy_url("devbot"))
    auth = base64.b64encode(f"{url.username}:{url.password}".encode()).decode()
    connect = f"CONNECT api.github.test:443 HTTP/1.1\r\nHost: api.github.test:443\r\nProxy-Authorization: Basic {auth}\r\n\r\n".encode()
    tls = ssl.create_default_context(cafile=str(fw.ca_path))
    tls.set_alpn_protocols(["http/1.1"])
    jobs = []
    for n in range(count):
        payload = _mutate(rng, rng.choice(SEEDS))
        stage = n % 4
        if stage in (0, 1):
            jobs.append(_poke(fw.port, b"", None, payload))
        elif stage == 2:
            jobs.append(_poke(fw.port, connect, None, payload))
        else:
            jobs.append(_poke(fw.port, connect, tls, payload))
    for start in range(0, len(jobs), 200):
        await asyncio.gather(*jobs[start : start + 200])


@pytest.mark.real
def test_malformed_inputs_at_every_stage_leave_the_firewall_serving(
    egress_firewall: StartFirewall, egress_upstream: EgressUpstream, caplog: pytest.LogCaptureFixture
) -> None:
    fw = egress_firewall()
    with caplog.at_level(logging.ERROR, logger="agent_smith.egress"):
        asyncio.run(_fuzz(fw, 3000))
    # Every malformed input was an expected outcome, none an unexpected failure.
    assert [r.getMessage() for r in caplog.records if r.name.startswith("agent_smith")] == []
    with client(fw) as http:
        response = http.get("https://api.github.test/echo", headers={"Authorization": f"token {GITHUB_PLACEHOLDER}"})
    assert response.status_code == 200
    assert egress_upstream.world.seen[-1].headers["Authorization"] == f"token {egress_upstream.world.github_secret}"
    metrics = fw.firewall.metrics
    deadline = time.monotonic() + 10
    while metrics.open_connections > 0 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert metrics.open_connections == 0
    assert b"agent_smith_egress_open_connections 0.0" in metrics.exposition()
    decisions = {e["decision"] for e in fw.audit()}
    assert "malformed" in decisions
