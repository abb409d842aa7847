"""Clients that leave in the middle of an answer, many at once: what the audit log says, and
that the firewall keeps no descriptor of theirs."""

from __future__ import annotations

import concurrent.futures
import os
import socket
import time

import pytest

from tests.egress.helpers import client
from tests.fixtures.egress import GITHUB_PLACEHOLDER, StartFirewall

_CLIENT_GONE = "the client's connection ended before the answer"


def _descriptors() -> int:
    # The firewall runs in this process (in a thread of its own).
    return len(os.listdir("/proc/self/fd"))


@pytest.mark.real
@pytest.mark.parametrize("http2", [False, True])
def test_a_client_that_leaves_mid_stream_is_audited_as_gone_not_as_an_upstream_failure(
    egress_firewall: StartFirewall, http2: bool
) -> None:
    fw = egress_firewall()
    with client(fw, http2=http2) as http, http.stream("GET", "https://api.github.test/sse?n=200&delay=0.02") as sse:
        for _ in sse.iter_bytes():
            break
    deadline = time.monotonic() + 10
    while not [a for a in fw.audit() if a["path"].startswith("/sse")]:
        assert time.monotonic() < deadline, "the cut exchange was never audited"
        time.sleep(0.05)
    [entry] = [a for a in fw.audit() if a["path"].startswith("/sse")]
    assert (entry["decision"], entry["status"], entry["reason"]) == ("error", 200, _CLIENT_GONE)


@pytest.mark.real
def test_many_clients_at_once_some_leaving_early_leave_no_descriptor_behind(egress_firewall: StartFirewall) -> None:
    fw = egress_firewall()
    with client(fw) as http:
        assert http.get("https://api.github.test/echo").status_code == 200
    before = _descriptors()

    def one(i: int) -> int:
        with client(fw, http2=bool(i % 2)) as http:
            if i % 3 == 0:
                with http.stream("GET", "https://api.github.test/sse?n=100&delay=0.02") as sse:
                    for _ in sse.iter_bytes():
                        return 0
            if i % 3 == 1:
                return http.get("https://api.github.test/bytes/2000000").status_code
            headers = {"Authorization": f"token {GITHUB_PLACEHOLDER}"}
            return http.get("https://api.github.test/echo", headers=headers).status_code

    with concurrent.futures.ThreadPoolExecutor(30) as pool:
        statuses = list(pool.map(one, range(120)))
    for _ in range(30):
        # A CONNECT cut off in its head, and a connection that says nothing at all.
        with socket.create_connection(("127.0.0.1", fw.port)) as raw:
            raw.sendall(b"CONNECT api.github.test:443 HTTP/1.1\r\n")
        socket.create_connection(("127.0.0.1", fw.port)).close()
    assert sorted(set(statuses)) == [0, 200]
    deadline = time.monotonic() + 10
    while _descriptors() > before or fw.firewall.metrics.open_connections:
        assert time.monotonic() < deadline, f"{_descriptors() - before} descriptors left open"
        time.sleep(0.1)
