"""The crew's embedded event log (nats-server with JetStream) as a service the supervisor keeps
alive beside the agents, as it keeps the firewall.

The agents, their hooks and the supervisor's own publisher know it by its
URL, and keep what they publish meanwhile in their outboxes: so it comes back
on the same port and the same store, and they deliver it all once it is back.
"""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path
from urllib.parse import urlsplit

from agent_smith.errors import AgentSmithError
from agent_smith.events.embedded import EmbeddedNats, running_server
from agent_smith.runtime.services import ServiceBackoff, pid_alive, terminate

log = logging.getLogger(__name__)


class EventLogService:
    """The embedded nats-server `start` started, or adopted from a supervisor that left it running;
    started again, in a thread of its own (it waits until the server is healthy), whenever it exits."""

    name = "event log"

    def __init__(self, store_dir: Path, *, backoff_initial: float = 1.0, backoff_max: float = 30.0) -> None:
        self._store_dir = store_dir
        self._server: EmbeddedNats | None = None
        self._adopted: int | None = None
        self._backoff = ServiceBackoff(backoff_initial, backoff_max)
        self._started_at = 0.0
        self._starting: threading.Thread | None = None
        self.url = ""

    def start(self) -> str:
        """Adopt the server an earlier supervisor left running on the store, or start one; its URL.

        Blocks until it is healthy. One that cannot start (its store unusable: a full disk, a
        read-only state directory) is a line in the log, and is tried again with backoff (`check`)
        on the same URL: the agents go on meanwhile, their events kept in the outboxes.
        """
        left = running_server(self._store_dir)
        if left is not None:
            self._adopted, self.url = left
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
            return
        if backoff.retry_at is None:
            log.error("the event log (nats-server) exited; starting it again in %.1fs", backoff.exited(now))
            return
        if backoff.due(now):
            self._starting = threading.Thread(target=self._restart, args=(now,), name="event-log-restart")
            self._starting.start()

    def _restart(self, now: float) -> None:
        if self._server is None:
            # Adopted: its successor takes the port everyone knows it by.
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
        if self._starting is not None:
            self._starting.join()
            self._starting = None
        if self._adopted is not None:
            terminate(self._adopted, grace)
            self._adopted = None
        if self._server is not None:
            self._server.stop(grace)
