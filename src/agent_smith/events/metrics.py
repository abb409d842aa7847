"""Prometheus metrics of the event log: publishes, outbox depth, failures."""

from __future__ import annotations

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge


class EventMetrics:
    def __init__(self, registry: CollectorRegistry = REGISTRY) -> None:
        self.published = Counter(
            "agent_smith_events_published",
            "Events accepted from callers, by type and where they were acknowledged (stream or outbox).",
            ["type", "via"],
            registry=registry,
        )
        self.flushed = Counter(
            "agent_smith_events_outbox_flushed",
            "Events moved from the outbox into the stream.",
            registry=registry,
        )
        self.failures = Counter(
            "agent_smith_events_failures",
            "Failed attempts to reach the stream (the events went to, or stayed in, the outbox).",
            ["reason"],
            registry=registry,
        )
        self.outbox_depth = Gauge(
            "agent_smith_events_outbox_depth",
            "Events waiting in the outbox of this process.",
            registry=registry,
        )


_default: EventMetrics | None = None


def default_metrics() -> EventMetrics:
    """The process-wide metrics on prometheus_client's default registry (registered once)."""
    global _default
    if _default is None:
        _default = EventMetrics()
    return _default
