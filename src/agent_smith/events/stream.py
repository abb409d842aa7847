"""The JetStream stream behind the event log, created or brought up to date idempotently."""

from __future__ import annotations

import logging

from nats.js import JetStreamContext
from nats.js.api import DiscardPolicy, RetentionPolicy, StorageType, StreamConfig
from nats.js.errors import NotFoundError

from agent_smith.crew import EventLog
from agent_smith.events.subjects import stream_subjects

log = logging.getLogger(__name__)


def stream_config(settings: EventLog) -> StreamConfig:
    return StreamConfig(
        name=settings.stream,
        description="agent-smith team events",
        subjects=stream_subjects(settings.subject_prefix),
        retention=RetentionPolicy.LIMITS,
        storage=StorageType.FILE,
        discard=DiscardPolicy.OLD,
        max_age=settings.max_age,
        max_bytes=settings.max_bytes,
        duplicate_window=settings.duplicate_window,
        num_replicas=1,
    )


def needs_update(current: StreamConfig, wanted: StreamConfig) -> bool:
    """Whether the settings crew.yaml controls, or the storage and retention that keep an event
    at all, differ from the stream's (pure). A stream made elsewhere in memory loses every event
    when the server restarts, and one with interest retention drops each as soon as it is stored
    (no consumer holds it): either is updated, or, where NATS cannot change it, refused aloud."""
    return (
        current.storage != wanted.storage
        or current.retention != wanted.retention
        or sorted(current.subjects or []) != sorted(wanted.subjects or [])
        or current.max_bytes != wanted.max_bytes
        or abs((current.max_age or 0) - (wanted.max_age or 0)) > 0.001
        or abs((current.duplicate_window or 0) - (wanted.duplicate_window or 0)) > 0.001
    )


async def ensure_stream(js: JetStreamContext, settings: EventLog) -> str:
    """Create the stream, or update it to match crew.yaml; returns "created", "updated" or "unchanged"."""
    wanted = stream_config(settings)
    try:
        info = await js.stream_info(settings.stream)
    except NotFoundError:
        await js.add_stream(wanted)
        log.info("created stream %s", settings.stream)
        return "created"
    if not needs_update(info.config, wanted):
        return "unchanged"
    await js.update_stream(wanted)
    log.info("updated stream %s", settings.stream)
    return "updated"
