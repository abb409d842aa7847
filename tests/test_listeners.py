"""Listening sockets bound here, and those inherited from the process that started us."""

from __future__ import annotations

import contextlib
import os
import socket
from pathlib import Path

import pytest

from agent_smith import listeners
from agent_smith.errors import UsageError
from agent_smith.listeners import ephemeral_low, free_port, inherited_sockets, listening_sockets


def test_an_inherited_listening_socket_is_served_as_it_is() -> None:
    with socket.create_server(("127.0.0.1", 0)) as original:
        (sock,) = inherited_sockets((os.dup(original.fileno()),))
        with sock:
            assert sock.getsockname() == original.getsockname()
            assert not sock.getblocking()


@pytest.mark.parametrize("kind", ["connected", "datagram", "closed"])
def test_an_fd_that_is_no_listening_tcp_socket_is_refused_in_one_line(kind: str) -> None:
    with socket.create_server(("127.0.0.1", 0)) as server:
        if kind == "connected":
            other = socket.create_connection(server.getsockname())
        elif kind == "datagram":
            other = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        else:
            other = socket.socket()
            fd = other.detach()
            os.close(fd)
            with pytest.raises(UsageError, match=rf"^--listen-fd {fd}: not an open socket"):
                inherited_sockets((fd,))
            return
        with other:
            with pytest.raises(UsageError, match=rf"^--listen-fd {other.fileno()}: not a listening TCP socket$"):
                inherited_sockets((other.fileno(),))
            # Refused without closing what the caller still holds.
            assert other.fileno() != -1
            os.fstat(other.fileno())


def test_port_zero_gives_every_address_the_same_free_port() -> None:
    sockets = listening_sockets("localhost", 0)
    try:
        assert len({s.getsockname()[1] for s in sockets}) == 1
        assert all(not s.getblocking() for s in sockets)
    finally:
        for sock in sockets:
            sock.close()


def test_free_ports_are_distinct_bindable_and_below_the_ephemeral_range() -> None:
    ports = [free_port() for _ in range(200)]
    assert len(set(ports)) == len(ports)
    assert all(10000 <= port < ephemeral_low() for port in ports)
    for port in ports[:20]:
        with socket.create_server(("127.0.0.1", port)):
            pass


def test_a_port_something_listens_on_is_skipped(monkeypatch: pytest.MonkeyPatch) -> None:
    with contextlib.ExitStack() as stack:
        # Another process's listener (bound here, not handed out by free_port).
        taken = next(
            stack.enter_context(server)
            for port in range(20000, 30000)
            if (server := _listener_or_none(port)) is not None
        )
        port = taken.getsockname()[1]
        monkeypatch.setattr(listeners.random, "sample", lambda population, k: [port, port + 1])
        with socket.create_server(("127.0.0.1", port + 1)):
            pass
        assert free_port() == port + 1


def _listener_or_none(port: int) -> socket.socket | None:
    try:
        return socket.create_server(("127.0.0.1", port))
    except OSError:
        return None


def test_the_ephemeral_range_is_read_from_the_kernel_or_assumed(tmp_path: Path) -> None:
    ranges = tmp_path / "range"
    ranges.write_text("40000\t60999\n")
    assert ephemeral_low(ranges) == 40000
    ranges.write_text("")
    assert ephemeral_low(ranges) == 32768
    assert ephemeral_low(tmp_path / "missing") == 32768


def test_a_negative_fd_is_refused_in_one_line() -> None:
    with pytest.raises(UsageError, match=r"^--listen-fd -1: not a file descriptor$"):
        inherited_sockets((-1,))
