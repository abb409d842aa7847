"""Listening sockets bound here, and those inherited from the process that started us."""

from __future__ import annotations

import os
import socket

import pytest

from agent_smith.errors import UsageError
from agent_smith.listeners import inherited_sockets, listening_sockets


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
