"""The typed team events and the registry that maps a type name to its class.

Every event is one flat JSON object on the wire: the envelope (`id`, `time`,
`type`, `schema_version`, `agent`), the key `action` (the type again, because
the original's dashboards read `action`), and the type's own fields. PR events
carry `repo`, `pr`, `title` and `url`, the other keys those dashboards read.

Adding an event type is one class: subclass `Event` (or `PrEvent`), give it a
`type: Literal["name"] = "name"` field and its own fields. Subclassing
registers it; `publish`, `query`, the CLI and the MCP tools then know it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Annotated, Any, ClassVar, Literal, get_args

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator
from pydantic_core import PydanticCustomError

from agent_smith.errors import UsageError
from agent_smith.events.ids import ID_PATTERN, new_id

AGENT_NAME = re.compile(r"^[a-z][a-z0-9-]{0,30}[a-z0-9]$")
TYPE_NAME = re.compile(r"^[a-z][a-z0-9_]{0,62}$")
REPO = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9-]{0,38})/[A-Za-z0-9._-]{1,100}$")


def _matches(pattern: re.Pattern[str], what: str) -> AfterValidator:
    def check(value: str) -> str:
        if not pattern.fullmatch(value):
            raise ValueError(f"{value!r} is not {what}")
        return value

    return AfterValidator(check)


AgentName = Annotated[str, _matches(AGENT_NAME, "an agent name (lower-case letters, digits, dashes)")]
RepoName = Annotated[str, _matches(REPO, "a repository as owner/name")]
EventId = Annotated[str, _matches(ID_PATTERN, "an event id (26 characters of Crockford base32)")]


def _utc(value: datetime) -> datetime:
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


UtcTime = Annotated[datetime, AfterValidator(_utc)]


def _now() -> datetime:
    return datetime.now(UTC)


def takes_bool(annotation: object) -> bool:
    """Whether a field's type admits true/false: `bool` itself, or a union or annotation holding it (pure)."""
    return _takes(annotation, (bool,))


def takes_number(annotation: object) -> bool:
    """Whether a field's type admits a number (true/false are no numbers here) (pure)."""
    return _takes(annotation, (int, float))


def _takes(annotation: object, kinds: tuple[type, ...]) -> bool:
    return annotation in kinds or any(_takes(arg, kinds) for arg in get_args(annotation))


class Event(BaseModel):
    """The envelope every event shares. Subclasses add a `type` literal and their fields."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    registry: ClassVar[dict[str, type[Event]]] = {}

    id: EventId = Field(default_factory=new_id, description="sortable unique id; the Nats-Msg-Id")
    time: UtcTime = Field(default_factory=_now, description="when the event happened (UTC)")
    agent: AgentName = Field(description="the agent the event is about and that published it")
    type: str
    schema_version: int = Field(default=1, ge=1)

    @field_validator("*", mode="before")
    @classmethod
    def _no_bool_for_a_number(cls, value: Any, info: ValidationInfo) -> Any:
        # pydantic takes true as 1 for an int, and 1 as true for a bool: an agent's `"pr": true`
        # would be PR 1. Every field, so that a type added later gets it too.
        field = cls.model_fields.get(info.field_name or "")
        if field is None:
            return value
        if isinstance(value, bool) and not takes_bool(field.annotation):
            raise PydanticCustomError("bool_type", "Input should not be true or false")
        number = isinstance(value, int | float) and not isinstance(value, bool)
        if number and takes_bool(field.annotation) and not takes_number(field.annotation):
            raise PydanticCustomError("bool_type", "Input should be true or false, not a number")
        return value

    @classmethod
    def __pydantic_init_subclass__(cls, **kwargs: Any) -> None:
        super().__pydantic_init_subclass__(**kwargs)
        name = cls.model_fields["type"].default
        if not isinstance(name, str):
            return
        if not TYPE_NAME.fullmatch(name):
            raise TypeError(f"event type {name!r} must be lower_snake_case")
        if name in Event.registry and Event.registry[name] is not cls:
            raise TypeError(f"event type {name!r} is defined twice")
        Event.registry[name] = cls

    def payload(self) -> dict[str, Any]:
        """The wire form: flat, with `action` beside `type` for the original's consumers."""
        return {"action": self.type, **self.model_dump(mode="json", exclude_none=True)}


class PrEvent(Event):
    """Something that happened to a pull request."""

    repo: RepoName
    pr: int = Field(ge=1, description="the pull request number")
    title: str = Field(min_length=1)
    url: str = Field(pattern=r"^https?://", description="the pull request's web address")


class PrOpened(PrEvent):
    type: Literal["pr_opened"] = "pr_opened"
    base: str | None = Field(default=None, description="the branch it merges into")
    head: str | None = Field(default=None, description="the branch it brings")


class PrReviewed(PrEvent):
    """A review submitted: its `state`, and how many inline comments its request carried
    (`comments`), when the command or tool that posted it showed them.

    Schema 2: `comments` is absent when unknown (a review body gh read from a file, a pending
    review submitted). In schema 1 it was 0 unless the publisher set it, so a 0 there says nothing.
    """

    type: Literal["pr_reviewed"] = "pr_reviewed"
    schema_version: int = Field(default=2, ge=1)
    state: Literal["approved", "changes_requested", "commented"] = "commented"
    comments: int | None = Field(
        default=None, ge=0, description="inline comments the review's request carried, when known"
    )


class PrCommentAddressed(PrEvent):
    type: Literal["pr_comment_addressed"] = "pr_comment_addressed"
    comment_url: str | None = Field(default=None, pattern=r"^https?://")
    summary: str | None = None


class PrMerged(PrEvent):
    type: Literal["pr_merged"] = "pr_merged"
    merged_by: str | None = None
    sha: str | None = Field(default=None, pattern=r"^[0-9a-f]{7,64}$")


class Incident(Event):
    type: Literal["incident"] = "incident"
    severity: Literal["low", "medium", "high", "critical"] = "medium"
    summary: str = Field(min_length=1)
    repo: RepoName | None = None
    url: str | None = Field(default=None, pattern=r"^https?://")


class TaskDone(Event):
    type: Literal["task_done"] = "task_done"
    summary: str = Field(min_length=1)
    repo: RepoName | None = None
    pr: int | None = Field(default=None, ge=1)


class AgentStarted(Event):
    type: Literal["agent_started"] = "agent_started"
    resumed: bool = Field(default=False, description="the session was resumed rather than new")


class AgentStopped(Event):
    type: Literal["agent_stopped"] = "agent_stopped"
    reason: str | None = None


class AgentCrashed(Event):
    type: Literal["agent_crashed"] = "agent_crashed"
    exit_code: int | None = None
    restarts: int = Field(default=0, ge=0)
    reason: str | None = None


class EgressDenied(Event):
    type: Literal["egress_denied"] = "egress_denied"
    host: str = Field(min_length=1)
    port: int = Field(default=443, ge=1, le=65535)
    method: str | None = None
    path: str | None = None
    reason: str = Field(min_length=1)
    # Denials like this one (same agent, host, port and reason) not published since the last that
    # was: the firewall publishes one of a kind a minute (its audit log has every one).
    repeated: int = Field(default=0, ge=0)


def check_agent_name(name: str) -> str:
    """`name` if it can be an event's agent; otherwise a one-line `UsageError`."""
    if not AGENT_NAME.fullmatch(name):
        raise UsageError(
            f"agent: {name!r} is not an agent name (2-32 lower-case letters, digits and dashes, "
            "starting with a letter and not ending with a dash)"
        )
    return name


def check_repo_name(repo: str) -> str:
    """`repo` if an event can be about it (owner/name); otherwise a one-line `UsageError`."""
    if not REPO.fullmatch(repo):
        raise UsageError(f"repo: {repo!r} is not a repository as owner/name")
    return repo


def event_types() -> list[str]:
    return sorted(Event.registry)


def event_class(type_name: str) -> type[Event]:
    try:
        return Event.registry[type_name]
    except KeyError:
        raise UsageError(f"unknown event type {type_name!r} (known: {', '.join(event_types())})") from None


def _describe(exc: ValidationError, type_name: str) -> str:
    first = exc.errors()[0]
    field = ".".join(str(part) for part in first["loc"]) or "(event)"
    if first["type"] == "missing":
        return f"{type_name}: missing field {field!r}"
    if first["type"] == "extra_forbidden":
        # The fields a caller gives: the envelope's (id, time, agent, type, version) are agent-smith's.
        known = ", ".join(sorted(set(Event.registry[type_name].model_fields) - set(Event.model_fields)))
        return f"{type_name}: unknown field {field!r} (fields: {known})"
    return f"{type_name}: field {field!r}: {first['msg']}"


def caller_fields(type_name: str, fields: Mapping[str, Any]) -> Mapping[str, Any]:
    """`fields` as an agent or a person may give them: the envelope's `id` and `time` are
    agent-smith's (a reused id would be dropped by the stream as a duplicate, silently)."""
    for reserved in ("id", "time"):
        if reserved in fields:
            raise UsageError(f"{type_name}: field {reserved!r} is set by agent-smith, not by the caller")
    return fields


def build_event(type_name: str, agent: str, fields: Mapping[str, Any]) -> Event:
    """A new event from user input; a bad type or field is a one-line `UsageError` naming it."""
    cls = event_class(type_name)
    for reserved in ("type", "action", "agent", "schema_version"):
        if reserved in fields:
            raise UsageError(f"{type_name}: field {reserved!r} is set by agent-smith, not by the caller")
    try:
        return cls.model_validate({**fields, "agent": agent})
    except ValidationError as exc:
        raise UsageError(_describe(exc, type_name)) from None


def decode(payload: Mapping[str, Any]) -> Event:
    """An event from its wire form; raises `ValueError` when it is not one agent-smith knows."""
    data = {k: v for k, v in payload.items() if k != "action"}
    cls = Event.registry.get(str(data.get("type")))
    if cls is None:
        raise ValueError(f"unknown event type {data.get('type')!r}")
    return cls.model_validate(data)
