"""The event log: typed team events on JetStream that are never lost.

Publish with `Publisher` (concurrent callers, pipelined acks, a durable
outbox while NATS is away); read with `query` and `tail`; run a local
JetStream with `EmbeddedNats`.

The package loads none of its parts: a name loads its module when first used,
and a part (`agent_smith.events.ids`) can be imported alone, so a process that
only keeps an event id (the firewall, while agents boot) does not load the
client, the model and the crew (~0.3 s of CPU).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from agent_smith.deferred import names_from_parts

if TYPE_CHECKING:
    from agent_smith.events.embedded import EmbeddedNats, running_server_url
    from agent_smith.events.ids import IdFactory, new_id
    from agent_smith.events.mcp import event_servers, event_tools, events_server
    from agent_smith.events.metrics import EventMetrics, default_metrics
    from agent_smith.events.model import (
        AgentCrashed,
        AgentStarted,
        AgentStopped,
        EgressDenied,
        Event,
        Incident,
        PrCommentAddressed,
        PrEvent,
        PrMerged,
        PrOpened,
        PrReviewed,
        TaskDone,
        build_event,
        caller_fields,
        check_agent_name,
        check_repo_name,
        decode,
        event_class,
        event_types,
    )
    from agent_smith.events.outbox import Outbox
    from agent_smith.events.publisher import Publisher, Receipt
    from agent_smith.events.reading import StoredEvent, connect, query, tail
    from agent_smith.events.stream import ensure_stream, stream_config
    from agent_smith.events.subjects import EventFilter, parse_time, subject_for
    from agent_smith.events.target import EventTarget, crew_target, standalone_target

_WHERE = {
    "EmbeddedNats": "embedded",
    "running_server_url": "embedded",
    "IdFactory": "ids",
    "new_id": "ids",
    "event_servers": "mcp",
    "event_tools": "mcp",
    "events_server": "mcp",
    "EventMetrics": "metrics",
    "default_metrics": "metrics",
    "AgentCrashed": "model",
    "AgentStarted": "model",
    "AgentStopped": "model",
    "EgressDenied": "model",
    "Event": "model",
    "Incident": "model",
    "PrCommentAddressed": "model",
    "PrEvent": "model",
    "PrMerged": "model",
    "PrOpened": "model",
    "PrReviewed": "model",
    "TaskDone": "model",
    "build_event": "model",
    "caller_fields": "model",
    "check_agent_name": "model",
    "check_repo_name": "model",
    "decode": "model",
    "event_class": "model",
    "event_types": "model",
    "Outbox": "outbox",
    "Publisher": "publisher",
    "Receipt": "publisher",
    "StoredEvent": "reading",
    "connect": "reading",
    "query": "reading",
    "tail": "reading",
    "ensure_stream": "stream",
    "stream_config": "stream",
    "EventFilter": "subjects",
    "parse_time": "subjects",
    "subject_for": "subjects",
    "EventTarget": "target",
    "crew_target": "target",
    "standalone_target": "target",
}


__getattr__ = names_from_parts(__name__, _WHERE)


__all__ = [
    "AgentCrashed",
    "AgentStarted",
    "AgentStopped",
    "EgressDenied",
    "EmbeddedNats",
    "Event",
    "EventFilter",
    "EventMetrics",
    "EventTarget",
    "IdFactory",
    "Incident",
    "Outbox",
    "PrCommentAddressed",
    "PrEvent",
    "PrMerged",
    "PrOpened",
    "PrReviewed",
    "Publisher",
    "Receipt",
    "StoredEvent",
    "TaskDone",
    "build_event",
    "caller_fields",
    "check_agent_name",
    "check_repo_name",
    "connect",
    "crew_target",
    "decode",
    "default_metrics",
    "ensure_stream",
    "event_class",
    "event_servers",
    "event_tools",
    "event_types",
    "events_server",
    "new_id",
    "parse_time",
    "query",
    "running_server_url",
    "standalone_target",
    "stream_config",
    "subject_for",
    "tail",
]
