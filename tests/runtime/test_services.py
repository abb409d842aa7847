"""The supervisor's helper process (the firewall's shape): its port bound by the supervisor and
handed down, kept alive with backoff, adopted from a dead supervisor. A small real server stands
in for the firewall, so each case runs in a fraction of a second."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from agent_smith.errors import UsageError
from agent_smith.listeners import free_port
from agent_smith.runtime.services import ChildService, ServiceBackoff, bind_problem, pid_alive

# Greets every connection with its pid, after `--delay` seconds (a slow start), on the sockets
# named by --listen-fd, or on a port of its own with --port.
SERVER = """
import argparse, os, socket, time
parser = argparse.ArgumentParser()
parser.add_argument("--listen-fd", type=int, action="append", default=[])
parser.add_argument("--port", type=int)
parser.add_argument("--delay", type=float, default=0.0)
args = parser.parse_args()
if args.port:
    listener = socket.create_server(("127.0.0.1", args.port))
else:
    listener = socket.socket(fileno=args.listen_fd[0])
    listener.setblocking(True)
print("up", flush=True)
time.sleep(args.delay)
while True:
    conn, _ = listener.accept()
    conn.sendall(f"hello from {os.getpid()}\\n".encode())
    conn.close()
"""


def service(tmp_path: Path, port: int, *, delay: float = 0.0) -> ChildService:
    script = tmp_path / "server.py"
    script.write_text(SERVER)
    return ChildService(
        "greeter",
        [sys.executable, str(script), "--delay", str(delay)],
        env={"PATH": "/usr/bin:/bin"},
        log_file=tmp_path / "logs" / "greeter.log",
        pid_file=tmp_path / "greeter.pid",
        listen=("127.0.0.1", port),
        fd_option="--listen-fd",
        backoff_initial=0.5,
        backoff_max=4.0,
    )


def greeting(port: int, timeout: float = 10.0) -> str:
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as conn:
        return conn.makefile().readline().strip()


def pid_of(tmp_path: Path) -> int:
    return int((tmp_path / "greeter.pid").read_text())


def test_a_connection_made_while_the_child_boots_waits_for_it(tmp_path: Path) -> None:
    port = free_port()
    child = service(tmp_path, port, delay=0.5)
    try:
        child.launch()
        # Connected before the child accepts anything: queued on the supervisor's socket, then served.
        assert greeting(port) == f"hello from {pid_of(tmp_path)}"
        assert child.listening
        # The child was handed the socket: it never bound the port itself.
        assert "--listen-fd" in Path(f"/proc/{pid_of(tmp_path)}/cmdline").read_text()
    finally:
        child.stop()
    assert bind_problem("127.0.0.1", port) is None
    assert not (tmp_path / "greeter.pid").exists()


def test_a_connection_made_after_the_port_is_bound_waits_until_the_child_is_launched(tmp_path: Path) -> None:
    port = free_port()
    child = service(tmp_path, port)
    try:
        child.bind()
        assert not child.listening
        assert not (tmp_path / "greeter.pid").exists()
        # The supervisor starts its agents between the two: their first requests are queued, not refused.
        waiting = socket.create_connection(("127.0.0.1", port), timeout=10)
        child.launch()
        first = pid_of(tmp_path)
        assert waiting.makefile().readline().strip() == f"hello from {first}"
        waiting.close()
        child.launch()
        assert pid_of(tmp_path) == first, "a second launch started another child"
    finally:
        child.stop()
    assert bind_problem("127.0.0.1", port) is None


def test_a_crashed_child_is_restarted_with_backoff_and_nothing_is_refused_meanwhile(tmp_path: Path) -> None:
    port = free_port()
    child = service(tmp_path, port)
    try:
        child.launch()
        first = pid_of(tmp_path)
        assert greeting(port) == f"hello from {first}"
        subprocess.run(["kill", "-9", str(first)], check=True)
        deadline = time.monotonic() + 10
        while child.listening and time.monotonic() < deadline:
            time.sleep(0.02)
        assert not child.listening
        now = time.time()
        child.check(now)  # noticed: the restart waits for its backoff
        assert pid_of(tmp_path) == first
        # A connection while it is down is held in the backlog, not refused ...
        waiting = socket.create_connection(("127.0.0.1", port), timeout=10)
        child.check(now + 0.1)
        assert pid_of(tmp_path) == first
        child.check(now + 0.6)
        second = pid_of(tmp_path)
        assert second != first
        assert child.listening
        # ... and answered by the new child.
        assert waiting.makefile().readline().strip() == f"hello from {second}"
        waiting.close()
    finally:
        child.stop()
    assert not pid_alive(first)


def test_a_pid_file_that_cannot_be_written_starts_it_once_and_ends_no_supervisor(tmp_path: Path) -> None:
    # A full disk when it must be restarted: it runs (once), and `check` raises nothing.
    port = free_port()
    child = service(tmp_path, port)
    try:
        child.launch()
        first = pid_of(tmp_path)
        pid_file = tmp_path / "greeter.pid"
        pid_file.unlink()
        (pid_file / "blocked").mkdir(parents=True)  # every write of it fails
        subprocess.run(["kill", "-9", str(first)], check=True)
        deadline = time.monotonic() + 10
        while child.listening and time.monotonic() < deadline:
            time.sleep(0.02)
        now = time.time()
        child.check(now)
        child.check(now + 0.6)
        assert child.listening
        second = greeting(port)
        assert second != f"hello from {first}"
        child.check(now + 0.7)
        assert greeting(port) == second
    finally:
        child.stop()
    assert not pid_alive(first)


def test_the_backoff_doubles_while_it_keeps_crashing(tmp_path: Path) -> None:
    port = free_port()
    child = service(tmp_path, port)
    try:
        child.launch()
        now = time.time()
        spawned = []
        for wait in (0.5, 1.0, 2.0):
            pid = pid_of(tmp_path)
            subprocess.run(["kill", "-9", str(pid)], check=True)
            while pid_alive(pid):
                time.sleep(0.01)
            child.check(now)
            child.check(now + wait - 0.05)
            assert pid_of(tmp_path) == pid, f"restarted before its {wait}s backoff"
            now += wait
            child.check(now)
            spawned.append(pid_of(tmp_path))
            assert spawned[-1] != pid
        assert greeting(port) == f"hello from {spawned[-1]}"
    finally:
        child.stop()


def test_a_port_in_use_fails_the_launch_and_starts_nothing(tmp_path: Path) -> None:
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        child = service(tmp_path, port)
        for claim in (child.bind, child.launch):
            with pytest.raises(UsageError, match=rf"greeter cannot listen on 127\.0\.0\.1:{port}"):
                claim()
    assert not (tmp_path / "greeter.pid").exists()


def test_one_left_by_a_dead_supervisor_is_adopted_then_replaced_when_it_dies(tmp_path: Path) -> None:
    port = free_port()
    script = tmp_path / "server.py"
    script.write_text(SERVER)
    # As the dead supervisor started it (on a port of its own here: no socket to hand down).
    argv = [sys.executable, str(script), "--delay", "0.0", "--port", str(port)]
    left = subprocess.Popen(argv, stdout=subprocess.PIPE, text=True)
    assert left.stdout is not None
    assert left.stdout.readline() == "up\n"
    (tmp_path / "greeter.pid").write_text(f"{left.pid}\n")
    child = service(tmp_path, port)
    try:
        child.bind()
        child.launch()
        assert pid_of(tmp_path) == left.pid
        assert child.listening
        assert greeting(port) == f"hello from {left.pid}"
        left.kill()
        left.wait()
        child.check(time.time())
        # Its port went with it: bound again here and handed to a new child, at once.
        replacement = pid_of(tmp_path)
        assert replacement != left.pid
        assert greeting(port) == f"hello from {replacement}"
    finally:
        child.stop()
        left.stdout.close()
    assert not pid_alive(replacement)


def test_a_pid_file_naming_another_program_is_not_adopted(tmp_path: Path) -> None:
    # Kept across a reboot, the pid is another program's now, one that may even listen on the port.
    port = free_port()
    other = tmp_path / "other.py"
    other.write_text(SERVER)
    stranger = subprocess.Popen([sys.executable, str(other), "--port", str(port)], stdout=subprocess.PIPE, text=True)
    assert stranger.stdout is not None
    try:
        assert stranger.stdout.readline() == "up\n"
        (tmp_path / "greeter.pid").write_text(f"{stranger.pid}\n")
        child = service(tmp_path, port)
        with pytest.raises(UsageError, match=f"greeter cannot listen on 127.0.0.1:{port}"):
            child.bind()
        assert pid_alive(stranger.pid)
    finally:
        stranger.kill()
        stranger.wait()
        stranger.stdout.close()


def test_the_service_backoff_doubles_to_its_cap_and_starts_over_once_it_stayed_up() -> None:
    backoff = ServiceBackoff(1.0, 8.0)
    now, waits = 0.0, []
    for _ in range(5):
        waits.append(backoff.exited(now))
        assert not backoff.due(now + waits[-1] - 0.01)
        now += waits[-1]
        assert backoff.due(now)
        assert not backoff.due(now), "one start per exit"
    assert waits == [1.0, 2.0, 4.0, 8.0, 8.0]
    backoff.running(now + 7.9, since=now)
    assert backoff.exited(now + 7.9) == 8.0, "up less than its cap: the wait stays"
    backoff.due(now + 15.9)
    backoff.running(now + 30, since=now + 15.9)
    assert backoff.exited(now + 30) == 1.0


def test_a_service_backoff_is_not_held_back_by_a_clock_set_back() -> None:
    backoff = ServiceBackoff(1.0, 8.0)
    backoff.exited(1000.0)
    assert not backoff.due(1000.5)
    # The clock was set back an hour: the start waits no hour more.
    assert backoff.due(1000.5 - 3600)
    assert not backoff.due(1000.5 - 3600), "one start per exit"
