"""Listening TCP sockets: bound here, or inherited from the process that started us.

The supervisor binds the firewall's port itself and hands the socket down
(socket activation, as systemd does), so a connection made before the
firewall runs, or while it restarts, waits in the backlog instead of being
refused.
"""

from __future__ import annotations

import random
import socket
from pathlib import Path

from agent_smith.errors import UsageError

__all__ = ["free_port", "inherited_sockets", "listening_sockets"]


# Ports below this are left to the machine's own services.
_LOWEST_PICKED = 10000
_PICKS = 64
_given: set[int] = set()


def ephemeral_low(range_file: Path = Path("/proc/sys/net/ipv4/ip_local_port_range")) -> int:
    """The first port of the kernel's ephemeral range (where outgoing connections get theirs)."""
    try:
        return int(range_file.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768  # Linux's default


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port free on `host` now, for a server that binds it later.

    Picked below the kernel's ephemeral range: outgoing connections take their
    ports from that range, and one of them took a port picked there before
    nats-server could bind it. Never the same port twice in one process. Whoever
    binds it later must still expect to lose a race for it.
    """
    low = ephemeral_low()
    candidates = range(_LOWEST_PICKED, low) if low > _LOWEST_PICKED else range(0)
    for port in random.sample(candidates, min(_PICKS, len(candidates))):
        if port in _given:
            continue
        with socket.socket() as sock:
            try:
                sock.bind((host, port))
            except OSError:
                continue
        _given.add(port)
        return port
    with socket.socket() as sock:
        sock.bind((host, 0))
        picked: int = sock.getsockname()[1]
        return picked


def listening_sockets(host: str, port: int) -> list[socket.socket]:
    """Non-blocking listening sockets on every address `host` names, as `asyncio.start_server` binds them."""
    infos = socket.getaddrinfo(host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    sockets: list[socket.socket] = []
    try:
        for family, kind, proto, _, address in dict.fromkeys(infos):
            sock = socket.socket(family, kind, proto)
            sockets.append(sock)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            # Port 0 asks for any free port: every address gets the one the first was given.
            sock.bind((address[0], port or (sockets[0].getsockname()[1] if len(sockets) > 1 else 0), *address[2:]))
            sock.listen(1024)
            sock.setblocking(False)
    except BaseException:
        for sock in sockets:
            sock.close()
        raise
    return sockets


def inherited_sockets(fds: tuple[int, ...]) -> list[socket.socket]:
    """The listening TCP sockets open on file descriptors `fds`, made non-blocking."""
    sockets: list[socket.socket] = []
    for fd in fds:
        if fd < 0:
            raise UsageError(f"--listen-fd {fd}: not a file descriptor")
        try:
            sock = socket.socket(fileno=fd)
        except OSError as exc:
            raise UsageError(f"--listen-fd {fd}: not an open socket ({exc.strerror})") from None
        if sock.type != socket.SOCK_STREAM or not sock.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN):
            sock.detach()
            raise UsageError(f"--listen-fd {fd}: not a listening TCP socket")
        sock.setblocking(False)
        sockets.append(sock)
    return sockets
