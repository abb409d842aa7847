"""The audit trail: one JSON line per request, Prometheus metrics, and denial notifications."""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO

TYPE_CHECKING = False
if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry

__all__ = ["AuditEntry", "AuditLog", "EgressDenied", "Metrics"]

log = logging.getLogger("agent_smith.egress")


@dataclass(frozen=True)
class AuditEntry:
    time: str
    agent: str
    method: str
    host: str
    port: int
    path: str
    status: int
    bytes_up: int
    bytes_down: int
    duration_ms: float
    decision: str
    rule: str | None
    reason: str | None = None
    swapped: tuple[str, ...] = ()


@dataclass(frozen=True)
class EgressDenied:
    """Handed to the denial callback (the event log publishes it as ``egress_denied``)."""

    time: str
    agent: str
    method: str
    host: str
    port: int
    path: str
    reason: str
    rule: str | None


def utc_now() -> str:
    now = time.time()
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now)) + f".{int(now * 1000) % 1000:03d}Z"


# Requests observed before prometheus_client loads are kept (as their entries) up to this many.
_KEPT = 256


class Metrics:
    """The firewall's Prometheus metrics, in a registry of its own.

    prometheus_client (~20 ms of imports) loads at the first scrape, or once
    `_KEPT` requests were observed, not at start: the firewall starts beside
    the agents' booting CLIs, which wait for its first answers. The requests
    observed before are counted then.
    """

    def __init__(self) -> None:
        self._instruments: _Instruments | None = None
        self._kept: list[AuditEntry] = []
        self.open_connections = 0

    @property
    def registry(self) -> CollectorRegistry:
        return self._instrumented().registry

    def exposition(self) -> bytes:
        """A scrape's body (Prometheus text format): the firewall's, and what the process keeps on
        prometheus_client's default registry (its denials' event publisher's, the process's own)."""
        from prometheus_client import REGISTRY, generate_latest

        return generate_latest(self.registry) + generate_latest(REGISTRY)

    def observe(self, entry: AuditEntry) -> None:
        if self._instruments is None and len(self._kept) < _KEPT:
            self._kept.append(entry)
        else:
            self._instrumented().observe(entry)

    def _instrumented(self) -> _Instruments:
        if self._instruments is None:
            self._instruments = _Instruments(lambda: self.open_connections)
            for entry in self._kept:
                self._instruments.observe(entry)
            self._kept.clear()
        return self._instruments


class _Instruments:
    def __init__(self, open_connections: Callable[[], int]) -> None:
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

        self.registry = CollectorRegistry()
        self.requests = Counter(
            "agent_smith_egress_requests",
            "Requests by agent, host and decision",
            ["agent", "host", "decision"],
            registry=self.registry,
        )
        self.bytes = Counter(
            "agent_smith_egress_bytes", "Bytes through the firewall", ["agent", "direction"], registry=self.registry
        )
        self.latency = Histogram(
            "agent_smith_egress_request_seconds",
            "Request duration, first byte in to last byte out",
            ["decision"],
            registry=self.registry,
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
        )
        Gauge(
            "agent_smith_egress_open_connections", "Client connections open now", registry=self.registry
        ).set_function(open_connections)

    def observe(self, entry: AuditEntry) -> None:
        # Refused hosts are chosen by the (possibly hostile) client: keep them out of label values.
        # A failed exchange with a host the allowlist admitted (its rule) names that host: which
        # upstream fails is what the operator needs to see.
        admitted = entry.decision in ("allowed", "answered") or (entry.decision == "error" and entry.rule is not None)
        host = entry.host if admitted else "(refused)"
        self.requests.labels(entry.agent, host, entry.decision).inc()
        self.bytes.labels(entry.agent, "up").inc(entry.bytes_up)
        self.bytes.labels(entry.agent, "down").inc(entry.bytes_down)
        self.latency.labels(entry.decision).observe(entry.duration_ms / 1000)


class AuditLog:
    """Appends entries to a JSON-lines file, updates metrics, and reports denials."""

    def __init__(
        self,
        path: Path | None,
        metrics: Metrics,
        on_denied: Callable[[EgressDenied], None] | None = None,
    ) -> None:
        self.path = path
        self.metrics = metrics
        self.on_denied = on_denied
        self._fh: IO[str] | None = None
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            # It says who went where: for the operator's eyes only, like the rest of the firewall's state
            # (one an older firewall made readable to all is made private too).
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
            os.fchmod(fd, 0o600)
            self._fh = open(fd, "a", encoding="utf-8", buffering=1)  # noqa: SIM115 - closed by `close`

    def record(self, entry: AuditEntry) -> None:
        if self._fh is not None:
            self._fh.write(json.dumps(vars(entry), ensure_ascii=False) + "\n")
        self.metrics.observe(entry)
        if entry.decision == "denied":
            # Said in the message too: the text log format shows no extra fields.
            log.warning(
                "egress denied: %s to %s:%s (%s)",
                entry.agent,
                entry.host,
                entry.port,
                entry.reason,
                extra={"agent": entry.agent, "host": entry.host, "port": entry.port, "reason": entry.reason},
            )
            if self.on_denied is not None:
                event = EgressDenied(
                    entry.time,
                    entry.agent,
                    entry.method,
                    entry.host,
                    entry.port,
                    entry.path,
                    entry.reason or "",
                    entry.rule,
                )
                try:
                    self.on_denied(event)
                except Exception:
                    # A failing subscriber must not take the firewall down; say so loudly instead.
                    log.exception("the egress_denied callback failed")

    def close(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None
