"""The supervisor's files under ``<crew state>/runtime/``: lock, pid, status and requests.

One supervisor per crew holds ``supervisor.lock`` (an flock, released by the
kernel when the process dies however it dies), so "is it running?" never
trusts a stale pid file. It writes ``status.json`` atomically on every
change; `status` reads that file and never talks to tmux. Other commands
ask it to act by dropping one JSON file per request into ``requests/``, then
nudge it with a datagram on its wake socket (an abstract Unix socket, which
dies with the process, so a stale one cannot be reached), so a request is
taken at once rather than at its next look.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import math
import os
import socket
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from agent_smith.errors import OperationError, UsageError
from agent_smith.fsutil import write_atomic
from agent_smith.runtime.services import read_pid

LOCK = "supervisor.lock"
PID = "supervisor.pid"
STATUS = "status.json"
REQUESTS = "requests"
SUPERVISOR_LOG = "supervisor.log"
# Long enough to outlast another command's test of the lock, short enough not to be noticed.
_PROBE_GRACE = 0.2


def _wait_flock(fh: IO[str], grace: float) -> bool:
    """Take the exclusive flock on `fh`, trying again for `grace` seconds; whether it was taken."""
    deadline = time.monotonic() + grace
    while True:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        except BlockingIOError:
            if time.monotonic() >= deadline:
                return False
        time.sleep(0.005)


class UnreadableStatus(OperationError):
    """status.json is there but holds no status: it is written whole, so only damage does that."""


class SupervisorRunning(OperationError):
    """Another process holds the crew's supervisor lock."""

    def __init__(self, pid: int | None) -> None:
        super().__init__(f"a supervisor for this crew already runs (pid {pid})")
        self.pid = pid


@dataclass(frozen=True)
class HeldLock:
    """The supervisor lock a process holds: the file it opened, known by device and inode.

    The flock belongs to the open file, not to the process: a child forked while it is open
    holds the lock on, after its parent closed its copy (`up` takes the lock, then forks the
    supervisor, so two `up`s at once cannot both start one)."""

    path: Path
    identity: tuple[int, int]
    file: IO[str]

    def taken_away(self) -> bool:
        """Whether the lock's path no longer names the held file: the crew's state directory was
        removed (or replaced) under the running supervisor, and with it what it supervises."""
        try:
            st = os.stat(self.path)
        except OSError:
            return True
        return (st.st_dev, st.st_ino) != self.identity


def status_number(entry: object, key: str) -> float | None:
    """The number a status entry (an agent's) holds at `key`; None for anything else: absent,
    not a number, or no finite one (a damaged file's `1e400` reads as infinity, which no time
    is) (pure)."""
    value = entry.get(key) if isinstance(entry, dict) else None
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    try:
        number = float(value)
    except OverflowError:  # an integer beyond any float
        return None
    return number if math.isfinite(number) else None


@dataclass(frozen=True)
class RunDir:
    path: Path

    @property
    def lock(self) -> Path:
        return self.path / LOCK

    @property
    def pid_file(self) -> Path:
        return self.path / PID

    @property
    def status_file(self) -> Path:
        return self.path / STATUS

    @property
    def requests(self) -> Path:
        return self.path / REQUESTS

    @property
    def firewall_pid(self) -> Path:
        return self.path / "firewall.pid"

    @property
    def log(self) -> Path:
        return self.path / SUPERVISOR_LOG

    @property
    def wake_address(self) -> bytes:
        # Abstract (leading NUL): no file, no 108-byte path limit, gone when the supervisor is.
        digest = hashlib.sha256(str(self.path.absolute()).encode()).hexdigest()[:32]
        return b"\0agent-smith-supervisor-" + digest.encode()

    def wake_listener(self) -> socket.socket:
        """The supervisor's end of the wake socket (non-blocking); OSError when it cannot be bound."""
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        try:
            sock.bind(self.wake_address)
        except OSError:
            sock.close()
            raise
        sock.setblocking(False)
        return sock

    def wake(self) -> None:
        """Nudge the running supervisor, if any, to take its requests now."""
        with contextlib.suppress(OSError), socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
            sock.setblocking(False)
            sock.sendto(b"\n", self.wake_address)

    def ensure(self) -> None:
        try:
            self.requests.mkdir(parents=True, exist_ok=True, mode=0o700)
        except OSError as exc:
            raise OperationError(f"cannot keep the crew's state in {self.path}: {exc.strerror or exc}") from None

    def running_pid(self) -> int | None:
        """The live supervisor's pid, or None when no process holds the lock."""
        if not self.lock.is_file():
            return None
        # Read only: a lock is taken on any open file, and `status` or `down` must work where the
        # crew's state cannot be written (a read-only mount, a full disk, another user's crew).
        with self.lock.open("rb") as fh:
            try:
                fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return read_pid(self.pid_file)
            fcntl.flock(fh, fcntl.LOCK_UN)
        return None

    def acquire(self) -> HeldLock:
        """Take the supervisor lock and name this process in the pid file; SupervisorRunning when
        another process holds it."""
        self.ensure()
        fh: IO[str] = self.lock.open("a")
        try:
            # Briefly: `running_pid` of any command takes the lock for an instant to test it.
            if not _wait_flock(fh, _PROBE_GRACE):
                raise SupervisorRunning(read_pid(self.pid_file))
            try:
                write_atomic(self.pid_file, f"{os.getpid()}\n", durable=False)
            except OSError as exc:  # a full disk, say
                raise OperationError(f"cannot keep the crew's state in {self.path}: {exc.strerror or exc}") from None
            held = os.fstat(fh.fileno())
        except BaseException:
            fh.close()
            raise
        return HeldLock(self.lock, (held.st_dev, held.st_ino), fh)

    def release(self, lock: HeldLock) -> None:
        """Give the lock up, and the pid file with it."""
        try:
            # OSError: a read-only state directory; the lock, not the pid file, says who runs.
            with contextlib.suppress(OSError):
                self.pid_file.unlink()
        finally:
            lock.file.close()

    @contextlib.contextmanager
    def hold(self, taken: HeldLock | None = None) -> Iterator[HeldLock]:
        """Hold the supervisor lock for the life of the block: `taken` (acquired by the process
        that forked this one), else acquired here (SupervisorRunning when another holds it)."""
        if taken is None:
            lock = self.acquire()
        else:
            lock = taken
            write_atomic(self.pid_file, f"{os.getpid()}\n", durable=False)
        try:
            yield lock
        finally:
            self.release(lock)

    def supervisor_status(self, *, timeout: float) -> dict[str, Any] | None:
        """The running supervisor's own status, once it wrote one: until then status.json may be
        an earlier supervisor's. None when no supervisor runs (any more)."""
        deadline = time.monotonic() + timeout
        while True:
            pid = self.running_pid()
            if pid is None:
                return None
            status = self.read_status() or {}
            supervisor = status.get("supervisor")
            if isinstance(supervisor, dict) and supervisor.get("pid") == pid:
                return status
            if time.monotonic() >= deadline:
                raise OperationError(
                    f"the supervisor (pid {pid}) said nothing of its agents within {timeout:g}s: "
                    "see `agent-smith status` and its log"
                )
            time.sleep(0.02)

    def write_status(self, status: dict[str, Any]) -> None:
        write_atomic(self.status_file, json.dumps(status, indent=2) + "\n", durable=False)

    def read_status(self) -> dict[str, Any] | None:
        """The status the supervisor last wrote; None when there is none to use (not written, or damaged)."""
        try:
            return self.load_status()
        except UnreadableStatus:
            return None

    def load_status(self) -> dict[str, Any] | None:
        """The status the supervisor last wrote; None when it wrote none; UnreadableStatus when the
        file is there but holds no status (not UTF-8, not JSON, not a JSON object, unreadable)."""
        try:
            data = json.loads(self.status_file.read_bytes().decode())
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise UnreadableStatus(f"cannot read {self.status_file}: {exc.strerror or exc}") from None
        except UnicodeDecodeError:
            raise UnreadableStatus(f"{self.status_file} is damaged: not UTF-8") from None
        except (ValueError, RecursionError) as exc:
            # JSONDecodeError (a ValueError) says where; nesting too deep to parse is no status either.
            raise UnreadableStatus(f"{self.status_file} is damaged: not JSON ({exc})") from None
        if not isinstance(data, dict):
            raise UnreadableStatus(f"{self.status_file} is damaged: a JSON {type(data).__name__}, not an object")
        return data

    def supervised(self) -> set[str]:
        """The agents the running supervisor runs or waits to restart: none it stopped, none when
        no supervisor runs."""
        if self.running_pid() is None:
            return set()
        agents = (self.read_status() or {}).get("agents", {})
        if not isinstance(agents, dict):
            return set()
        return {
            name for name, entry in agents.items() if not (isinstance(entry, dict) and entry.get("state") == "stopped")
        }

    @staticmethod
    def check_managed(names: Sequence[str], status: Mapping[str, Any]) -> None:
        """Refuse, in one line, to ask the running supervisor (whose `status` this is) for agents
        it was not started with."""
        agents = status.get("agents")
        managed = set(agents) if isinstance(agents, dict) else set()
        unmanaged = [name for name in names if name not in managed]
        if unmanaged:
            raise UsageError(
                f"the running supervisor does not manage {', '.join(unmanaged)}: run `agent-smith down` first"
            )

    def request(self, op: str, agent: str) -> Path:
        """Ask the running supervisor to `op` (start, stop, restart) `agent`."""
        self.ensure()
        path = self.requests / f"{uuid.uuid4().hex}.json"
        try:
            write_atomic(path, json.dumps({"op": op, "agent": agent}) + "\n", durable=False)
        except OSError as exc:
            raise OperationError(
                f"cannot ask the supervisor to {op} {agent}: {self.requests}: {exc.strerror or exc}"
            ) from None
        self.wake()
        return path

    def take_requests(self) -> list[tuple[str, str, str]]:
        """Pending requests as (op, agent, id), oldest first; each is removed as it is taken."""
        if not self.requests.is_dir():
            return []
        files = sorted(self.requests.glob("*.json"), key=lambda p: p.stat().st_mtime_ns)
        taken: list[tuple[str, str, str]] = []
        for path in files:
            try:
                data = json.loads(path.read_text())
            except (FileNotFoundError, json.JSONDecodeError):
                continue
            finally:
                with contextlib.suppress(FileNotFoundError):
                    path.unlink()
            if isinstance(data, dict) and isinstance(data.get("op"), str) and isinstance(data.get("agent"), str):
                taken.append((data["op"], data["agent"], path.stem))
        return taken
