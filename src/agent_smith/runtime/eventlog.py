"""The crew's embedded event log (nats-server with JetStream) as a service the supervisor keeps
alive beside the agents, as it keeps the firewall.

The agents, their hooks and the supervisor's own publisher know it by its
URL, and keep what they publish meanwhile in their outboxes: so it comes back
on the same port and the same store, and they deliver it all once it is back.

A server can also run on and store nothing: nats-server stops writing a stream
whose store once met a full disk, answering its publishers nothing, until it
restarts (freeing the disk is not enough). Its own health check says so; one
that says so for `unhealthy_for` is restarted like one that exited.
"""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path
from urllib.parse import urlsplit

from agent_smith.errors import AgentSmithError
from agent_smith.events.embedded import EmbeddedNats, health_problem, running_server
from agent_smith.runtime.services import ServiceBackoff, pid_alive, terminate

log = logging.getLogger(__name__)


class EventLogService:
    """The embedded nats-server `start` started, or adopted from a supervisor that left it running;
    started again, in a thread of its own (it waits until the server is healthy), whenever it exits."""

    name = "event log"

    def __init__(
        self,
        store_dir: Path,
        *,
        backoff_initial: float = 1.0,
        backoff_max: float = 30.0,
        health_every: float = 5.0,
        unhealthy_for: float = 15.0,
    ) -> None:
        self._store_dir = store_dir
        self._server: EmbeddedNats | None = None
        self._adopted: int | None = None
        self._adopted_monitor: int | None = None
        self._backoff = ServiceBackoff(backoff_initial, backoff_max)
        self._started_at = 0.0
        self._starting: threading.Thread | None = None
        self.url = ""
        self._health_every = health_every
        self._unhealthy_for = unhealthy_for
        self._probing: threading.Thread | None = None
        self._next_probe = 0.0
        # Since when the server's health check has said `_problem` without a break.
        self._unhealthy_since: float | None = None
        self._problem = ""

    def start(self) -> str:
        """Adopt the server an earlier supervisor left running on the store, or start one; its URL.

        Blocks until it is healthy. One that cannot start (its store unusable: a full disk, a
        read-only state directory) is a line in the log, and is tried again with backoff (`check`)
        on the same URL: the agents go on meanwhile, their events kept in the outboxes.
        """
        left = running_server(self._store_dir)
        if left is not None:
            self._adopted, self.url, self._adopted_monitor = left.pid, left.url, left.monitor_port
            self._started_at = time.time()
            return self.url
        server = self._server = EmbeddedNats(self._store_dir)
        try:
            server.start()
        except (AgentSmithError, OSError) as exc:
            # Its ports as picked, from now on for good: everyone is told this URL.
            self._server = EmbeddedNats(self._store_dir, port=server.port, monitor_port=server.monitor_port)
            log.error(
                "the event log (nats-server) did not start: %s; trying again in %.1fs",
                exc,
                self._backoff.exited(time.time()),
            )
        else:
            self._started_at = time.time()
        self.url = self._server.url
        return self.url

    @property
    def listening(self) -> bool:
        if self._adopted is not None:
            return pid_alive(self._adopted)
        return self._server is not None and self._server.running and self._starting is None

    def check(self, now: float) -> None:
        backoff = self._backoff
        if self._starting is not None:
            if self._starting.is_alive():
                return
            self._starting = None
        if self.listening:
            backoff.running(now, self._started_at)
            self._watch_health(now)
            return
        if backoff.retry_at is None:
            log.error("the event log (nats-server) exited; starting it again in %.1fs", backoff.exited(now))
            return
        if backoff.due(now):
            self._starting = threading.Thread(target=self._restart, args=(now,), name="event-log-restart")
            self._starting.start()

    def _watch_health(self, now: float) -> None:
        """Probe the server's health now and then (off the supervisor's loop: a hung server would
        hold it); restart one unhealthy for `unhealthy_for`."""
        if self._probing is not None and self._probing.is_alive():
            return
        since = self._unhealthy_since
        if since is not None and now - since >= self._unhealthy_for:
            log.error(
                "the event log (nats-server) has been unhealthy for %.0fs (%s); restarting it",
                now - since,
                self._problem,
            )
            self._unhealthy_since = None
            self._starting = threading.Thread(target=self._restart, args=(now,), name="event-log-restart")
            self._starting.start()
            return
        monitor = self._adopted_monitor if self._adopted is not None else (self._server and self._server.monitor_port)
        if monitor is None or now < self._next_probe:
            return
        self._next_probe = now + self._health_every
        self._probing = threading.Thread(target=self._probe, args=(monitor, now), name="event-log-health")
        self._probing.start()

    def _probe(self, monitor_port: int, now: float) -> None:
        problem = health_problem(monitor_port)
        if problem is None:
            if self._unhealthy_since is not None:
                log.warning("the event log (nats-server) is healthy again")
            self._unhealthy_since = None
            return
        if self._unhealthy_since is None:
            log.warning("the event log (nats-server) says it is unhealthy: %s", problem)
            self._unhealthy_since = now
        self._problem = problem

    def _restart(self, now: float) -> None:
        if self._server is None:
            # Adopted: its successor takes the port everyone knows it by, once it is gone (it may
            # run on unhealthy); a dead one's pid may be another process's by now.
            if self._adopted is not None and pid_alive(self._adopted):
                terminate(self._adopted, 10.0)
            self._adopted = None
            self._server = EmbeddedNats(self._store_dir, port=urlsplit(self.url).port)
        # Its log and state file closed first: the dead process left them open.
        self._server.stop()
        try:
            self._server.start()
        except (AgentSmithError, OSError) as exc:
            log.error("the event log did not start again: %s; trying again in %.1fs", exc, self._backoff.exited(now))
            return
        self._started_at = time.time()
        log.warning("the event log runs at %s", self.url)

    def stop(self, grace: float = 10.0) -> None:
        for thread in (self._starting, self._probing):
            if thread is not None:
                thread.join()
        self._starting = self._probing = None
        if self._adopted is not None:
            terminate(self._adopted, grace)
            self._adopted = None
        if self._server is not None:
            self._server.stop(grace)
