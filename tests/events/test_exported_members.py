"""The public surface of `agent_smith.events`: what other subsystems may use, and nothing more."""

from __future__ import annotations

import agent_smith.events as events


def test_the_public_surface_is_pinned() -> None:
    assert sorted(events.__all__) == [
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
    for name in events.__all__:
        assert getattr(events, name) is not None
