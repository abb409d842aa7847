"""The event log: typed team events on JetStream that are never lost.

Publish with `Publisher` (concurrent callers, pipelined acks, a durable
outbox while NATS is away); read with `query` and `tail`; run a local
JetStream with `EmbeddedNats`.
"""

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
    check_agent_name,
    decode,
    event_class,
    event_types,
)
from agent_smith.events.outbox import Outbox
from agent_smith.events.publisher import Publisher, Receipt
from agent_smith.events.query import StoredEvent, connect, query, tail
from agent_smith.events.stream import ensure_stream, stream_config
from agent_smith.events.subjects import EventFilter, parse_time, subject_for
from agent_smith.events.target import EventTarget, crew_target, standalone_target

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
    "check_agent_name",
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
