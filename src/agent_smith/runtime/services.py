"""Helper processes of `up`: the egress firewall, kept alive beside the agents."""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from agent_smith.errors import UsageError
from agent_smith.fsutil import write_atomic
from agent_smith.listeners import listening_sockets
from agent_smith.processes import runs_with

log = logging.getLogger(__name__)


def parse_listen(value: str, where: str) -> tuple[str, int]:
    host, _, port = value.rpartition(":")
    host = host.strip("[]")
    if not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise UsageError(f"{where}: {value!r} is not host:port")
    return host, int(port)


def bind_problem(host: str, port: int) -> tuple[int, str] | None:
    """Why nothing could listen on host:port now, as (errno, what to tell a person); None when it
    could. Port 0 is any free port: only its host can be wrong."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except socket.gaierror as exc:
            return exc.errno or 0, f"{host} is no host name this machine can resolve"
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                return exc.errno, f"port {port} on {host} is already in use"
            if exc.errno == errno.EADDRNOTAVAIL:
                return exc.errno, f"{host} is no address of this machine"
            return exc.errno or 0, f"cannot listen on {host}:{port}: {exc.strerror or exc}"
    return None


def read_pid(path: Path) -> int | None:
    """The pid a pid file holds; None when there is none (a parent that is no directory included)."""
    try:
        return int(path.read_text().strip())
    except (FileNotFoundError, NotADirectoryError, ValueError):
        return None


def pid_alive(pid: int) -> bool:
    """True while `pid` runs; a zombie counts as gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text(errors="replace")
    except (FileNotFoundError, ProcessLookupError):
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def terminate(pid: int, grace: float) -> None:
    """SIGTERM a process we did not start (so cannot wait for), SIGKILL it after `grace` seconds."""
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while pid_alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    if pid_alive(pid):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


@dataclass
class ServiceBackoff:
    """When to start a helper process again after it exited: a wait that doubles while it keeps
    exiting, up to `maximum`, and starts over once it stayed up that long (pure)."""

    initial: float
    maximum: float
    delay: float = 0.0
    retry_at: float | None = None

    def __post_init__(self) -> None:
        self.delay = self.initial

    def running(self, now: float, since: float) -> None:
        """It runs, started at `since`: a while up, and the next exit starts the backoff over."""
        if now - since >= self.maximum:
            self.delay = self.initial

    def exited(self, now: float) -> float:
        """It exited (or failed to start): wait the current delay before the next start."""
        self.retry_at = now + self.delay
        return self.delay

    def due(self, now: float) -> bool:
        """Whether a start waited for is due now; each start taken doubles the next wait.

        A start farther away than the wait it was put off by is due too: the clock was set back
        meanwhile, and would otherwise hold it back as far (an hour set back, an hour without it).
        """
        if self.retry_at is None or self.retry_at - self.delay <= now < self.retry_at:
            return False
        self.retry_at = None
        self.delay = min(self.maximum, self.delay * 2)
        return True


def _listening(host: str, port: int) -> bool:
    with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=0.2):
        return True
    return False


class ChildService:
    """A long-running child command that serves one port, restarted with capped backoff whenever it exits.

    The supervisor binds the port itself and hands the socket down (`fd_option`
    FD, socket activation): a port in use fails `up` before any agent starts,
    and a connection made while the child boots or restarts waits in the
    backlog instead of being refused (claude's first requests at boot would
    otherwise fail and be retried). `stdin` is written to each child it starts
    (the firewall's settings, which the supervisor has worked out).
    """

    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        *,
        env: Mapping[str, str],
        log_file: Path,
        pid_file: Path,
        listen: tuple[str, int],
        fd_option: str,
        stdin: bytes = b"",
        backoff_initial: float = 1.0,
        backoff_max: float = 30.0,
        is_ours: Callable[[int], bool] | None = None,
    ) -> None:
        self.name = name
        self._argv = list(argv)
        # Whether the pid a dead supervisor left names one to adopt (the pid file may have outlived
        # it: the pid is another program's after a reboot); by default, one run with `argv`.
        self._is_ours = is_ours or (lambda pid: runs_with(pid, self._argv))
        self._env = dict(env)
        self._log_file = log_file
        self._pid_file = pid_file
        self._adopted: int | None = None
        self.listen = listen
        self._fd_option = fd_option
        self._stdin = stdin
        self._sockets: list[socket.socket] = []
        self._backoff = ServiceBackoff(backoff_initial, backoff_max)
        self._spawned_at = 0.0
        self._process: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    def bind(self) -> None:
        """Claim its port, starting nothing yet; one a supervisor that died left running is adopted instead.

        Raises UsageError when the port cannot be bound: called before any agent
        starts, a port in use then leaves nothing half-started."""
        left = read_pid(self._pid_file)
        if left is not None and self._is_ours(left) and _listening(*self.listen):
            self._adopted = left
            self._spawned_at = time.time()
            return
        self._bind()

    def launch(self) -> None:
        """Start it without waiting (binding its port first, unless `bind` did); an adopted one is left be."""
        if self._adopted is None and self._process is None:
            self._spawn()

    @property
    def listening(self) -> bool:
        """It runs, so a connection to its port is served (its socket may be the supervisor's)."""
        if self._adopted is not None:
            return pid_alive(self._adopted)
        return self._process is not None and self._process.poll() is None

    def _bind(self) -> None:
        try:
            self._sockets = listening_sockets(*self.listen)
        except OSError as exc:
            host, port = self.listen
            raise UsageError(f"{self.name} cannot listen on {host}:{port}: {exc.strerror}") from None

    def _spawn(self) -> None:
        if not self._sockets:
            # The one adopted from a dead supervisor is gone, and its port with it.
            self._bind()
        self._log_file.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        if self._log is None:
            self._log = self._log_file.open("ab")
        fds = [sock.fileno() for sock in self._sockets]
        self._process = subprocess.Popen(
            [*self._argv, *(arg for fd in fds for arg in (self._fd_option, str(fd)))],
            env=self._env,
            stdin=subprocess.PIPE if self._stdin else subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            pass_fds=fds,
        )
        if self._process.stdin is not None:
            # A child that dies before reading it all is seen by `check` and started again.
            with contextlib.suppress(BrokenPipeError), self._process.stdin:
                self._process.stdin.write(self._stdin)
        self._spawned_at = time.time()
        self._adopted = None
        try:
            write_atomic(self._pid_file, f"{self._process.pid}\n", durable=False)
        except OSError as exc:
            # It runs all the same (raised, it would be started twice); only a `down` after this
            # supervisor is killed would miss it.
            log.error("cannot keep %s's pid in %s: %s", self.name, self._pid_file, exc.strerror or exc)

    def check(self, now: float) -> None:
        backoff = self._backoff
        if self._adopted is not None and not pid_alive(self._adopted):
            log.error("%s (pid %s) is gone; starting it again", self.name, self._adopted)
            self._adopted = None
            backoff.retry_at = now
        process = self._process
        if backoff.retry_at is None:
            if process is None or (code := process.poll()) is None:
                if process is not None:
                    backoff.running(now, self._spawned_at)
                return
            log.error("%s exited (code %s); restarting in %.1fs", self.name, code, backoff.exited(now))
            return
        if backoff.due(now):
            try:
                self._spawn()
            except UsageError as exc:
                log.error("%s; trying again in %.1fs", exc, backoff.exited(now))
            except OSError as exc:
                # Its log could not be opened (a full disk, a read-only state directory).
                log.error("%s could not be started: %s; trying again in %.1fs", self.name, exc, backoff.exited(now))

    def stop(self, grace: float = 10.0) -> None:
        if self._adopted is not None:
            terminate(self._adopted, grace)
            self._adopted = None
        process = self._process
        if process is not None and process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(grace)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)
                process.wait()
        if self._log is not None:
            self._log.close()
            self._log = None
        for sock in self._sockets:
            sock.close()
        self._sockets.clear()
        # OSError: a read-only state directory, which must not keep the next service from stopping.
        with contextlib.suppress(OSError):
            self._pid_file.unlink()
