"""The typed crew: what crew.yaml says, checked.

One configuration model feeds the demo, local mode, the container and the
Kubernetes manifests alike. Every model forbids unknown keys so a typo is an
error (with a "did you mean"), never a silently ignored setting.
"""

from __future__ import annotations

import ipaddress
import math
import re
from datetime import time
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Literal, Self
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PrivateAttr,
    Strict,
    ValidationInfo,
    WithJsonSchema,
    field_validator,
    model_validator,
)

from agent_smith.credentials import credential_kind, shown_url
from agent_smith.errors import UnknownAgentError

_NAME = r"^[a-z][a-z0-9-]{0,30}[a-z0-9]$"
_REPO = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9-]{0,38})/[A-Za-z0-9._-]{1,100}$")
_MATRIX_USER = re.compile(r"^@[a-z0-9._=\-/+]+:[A-Za-z0-9.\-]+(?::\d+)?$")
# Room ids of room version 12 (Synapse's default since 1.136) carry no ":server" part.
_MATRIX_ROOM = re.compile(r"^(?:![^:\s]+(?::[A-Za-z0-9.\-]+(?::\d+)?)?|#[^:\s]+:[A-Za-z0-9.\-]+(?::\d+)?)$")
_HOST_PATTERN = re.compile(r"^(\*\.)?[A-Za-z0-9](?:[A-Za-z0-9.\-]*[A-Za-z0-9])?$|^\[?[0-9a-fA-F:.]+\]?$")
_ENV_VAR = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_OCTET = r"(25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])"
# Dotted quad without leading zeros (Kubernetes refuses those in a clusterIP).
_IPV4 = rf"^{_OCTET}(\.{_OCTET}){{3}}$"

# A Kubernetes namespace: a DNS label, at most 63 characters.
NAMESPACE_PATTERN = r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$"

MAX_DURATION = 100 * 365.25 * 86400.0
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d|w)?\s*$")
_DURATION_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800, None: 1}
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(B|KB|MB|GB|TB|KiB|MiB|GiB|TiB)?\s*$", re.IGNORECASE)
_SIZE_UNITS = {
    "b": 1,
    "kb": 10**3,
    "mb": 10**6,
    "gb": 10**9,
    "tb": 10**12,
    "kib": 2**10,
    "mib": 2**20,
    "gib": 2**30,
    "tib": 2**40,
    None: 1,
}


def parse_duration(value: object) -> float:
    """Seconds from a number or a string like ``90s``, ``5m``, ``30d``."""
    if isinstance(value, bool):
        raise ValueError("expected a duration like 30s, 5m, 2h or 30d")
    if isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str) and (m := _DURATION.fullmatch(value)):
        seconds = float(m.group(1)) * _DURATION_UNITS[m.group(2)]
    else:
        raise ValueError("expected a duration like 30s, 5m, 2h or 30d")
    if not math.isfinite(seconds):
        raise ValueError("a duration must be a finite number of seconds")
    if seconds < 0:
        raise ValueError("a duration cannot be negative")
    return seconds


def _within_a_century(seconds: float) -> float:
    # NATS keeps the event log's max_age in int64 nanoseconds (~292 years): a longer one cannot be set.
    if seconds > MAX_DURATION:
        raise ValueError("a duration must be at most 100 years")
    return seconds


def parse_size(value: object) -> int:
    """Bytes from a number or a string like ``512MiB``, ``1GB``."""
    if isinstance(value, bool):
        raise ValueError("expected a size like 512MiB or 1GB")
    if isinstance(value, int):
        size = value
    elif isinstance(value, str) and (m := _SIZE.fullmatch(value)):
        unit = m.group(2).lower() if m.group(2) else None
        size = int(float(m.group(1)) * _SIZE_UNITS[unit])
    else:
        raise ValueError("expected a size like 512MiB or 1GB")
    if size < 0:
        raise ValueError("a size cannot be negative")
    return size


_QUANTITY = re.compile(r"^([+]?[0-9]+(\.[0-9]*)?|[+]?\.[0-9]+)(([KMGTPE]i)|[numkMGTPE]|([eE][-+]?[0-9]+))?$")
_SUFFIX = {
    "": 1,
    "n": 1e-9,
    "u": 1e-6,
    "m": 1e-3,
    "k": 1e3,
    "M": 1e6,
    "G": 1e9,
    "T": 1e12,
    "P": 1e15,
    "E": 1e18,
    "Ki": 2**10,
    "Mi": 2**20,
    "Gi": 2**30,
    "Ti": 2**40,
    "Pi": 2**50,
    "Ei": 2**60,
}


def parse_quantity(text: str) -> float:
    """The number a Kubernetes quantity string stands for (``500m`` → 0.5, ``1Gi`` → 2**30)."""
    match = _QUANTITY.fullmatch(text)
    if match is None:
        raise ValueError(f"{text!r} is not a Kubernetes quantity (like 500m, 2, 1Gi)")
    number = float(match.group(1))
    try:
        if exponent := match.group(5):  # 1e3; not "E" (exa) or "Ei" (exbi), which start alike
            value = number * 10.0 ** int(exponent[1:])
        else:
            value = number * float(_SUFFIX[match.group(3) or ""])
    except OverflowError:
        # `10.0 ** 999` raises where `1e999` would be inf: both are past any resource there is.
        value = math.inf
    if not math.isfinite(value):
        raise ValueError(f"{shown(text)} is too large a Kubernetes quantity")
    return value


def _quantity_text(value: object) -> object:
    """YAML reads `cpu_limit: 2` as a number, which Kubernetes takes as the quantity "2"."""
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() else repr(value)
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return value


def _quantity(value: str) -> str:
    parse_quantity(value)
    return value


# Kept as written (the manifests carry it), checked as Kubernetes reads it.
Quantity = Annotated[
    str,
    BeforeValidator(_quantity_text),
    AfterValidator(_quantity),
    WithJsonSchema({"anyOf": [{"type": "string", "pattern": _QUANTITY.pattern}, {"type": "number", "minimum": 0}]}),
]


def _some(value: str) -> str:
    if parse_quantity(value) <= 0:
        raise ValueError(f"{shown(value)}: a volume of no size (Kubernetes refuses the claim)")
    return value


# `_QUANTITY` with a digit other than 0 in its number, without lookaround (Helm reads the
# chart's copy of the schema with Go's regexp).
_NONZERO_QUANTITY = (
    r"^[+]?([0-9]*[1-9][0-9]*(\.[0-9]*)?|[0-9]+\.[0-9]*[1-9][0-9]*|\.[0-9]*[1-9][0-9]*)"
    r"(([KMGTPE]i)|[numkMGTPE]|([eE][-+]?[0-9]+))?$"
)
# A volume's size: Kubernetes refuses a claim for none. The schema's pattern wants a digit other
# than 0 before any suffix, so that an editor flags "0Gi" too.
Storage = Annotated[
    Quantity,
    AfterValidator(_some),
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "string", "pattern": _NONZERO_QUANTITY},
                {"type": "number", "exclusiveMinimum": 0},
            ]
        }
    ),
]


def _not_a_flag(value: object) -> object:
    # `true` equals 1 to Python, not to a reader of crew.yaml.
    if isinstance(value, bool):
        raise ValueError(f"expected the number 1, not {str(value).lower()}")
    return value


def _schema_pattern(pattern: re.Pattern[str]) -> WithJsonSchema:
    """The pattern `_check_pattern` checks, in the published schema (so an editor flags it too)."""
    return WithJsonSchema({"type": "string", "pattern": pattern.pattern})


def _check_pattern(pattern: re.Pattern[str], what: str) -> AfterValidator:
    def check(value: str) -> str:
        # fullmatch: `$` alone would take "name\n" for "name" (and write a directory so named).
        if not pattern.fullmatch(value):
            raise ValueError(f"{shown(value)} is not {what}")
        return value

    return AfterValidator(check)


def shown(value: str, limit: int = 80) -> str:
    """`value` as an error message quotes it: cut short, so that one bad value is one readable line."""
    return repr(value) if len(value) <= limit else f"{value[:limit]!r}… ({len(value)} characters)"


def _not_a_credential(value: str) -> str:
    if kind := credential_kind(value):
        raise ValueError(f"looks like {kind}; agents hold placeholders, never real secrets (value not shown)")
    return value


def _not_a_classic_token(value: str) -> str:
    # Only here: 40 hex digits elsewhere (a commit in an agent's env) are no credential, but a
    # placeholder of them is a classic GitHub token (GITHUB_TOKEN, exported in many a shell,
    # overrides forge.token_placeholder), which every agent would then hold.
    if len(value) == 40 and all(c in "0123456789abcdefABCDEF" for c in value):
        raise ValueError(
            "looks like a classic GitHub token (40 hex digits); agents hold placeholders, never real secrets "
            "(value not shown)"
        )
    return value


Placeholder = Annotated[
    str, Field(min_length=8), AfterValidator(_not_a_credential), AfterValidator(_not_a_classic_token)
]
# A count or a port: `true`, `"5"` or `5.0` is a mistake in crew.yaml, not the number pydantic would make of it.
Integer = Annotated[int, Strict()]
# `yes`, `"true"` or `1` is a mistake too, not the boolean pydantic would make of it.
Flag = Annotated[bool, Strict()]
NonSecret = Annotated[str, AfterValidator(_not_a_credential)]
Seconds = Annotated[
    float,
    BeforeValidator(parse_duration),
    AfterValidator(_within_a_century),
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "number", "minimum": 0, "maximum": MAX_DURATION},
                {"type": "string", "pattern": r"^\s*\d+(\.\d+)?\s*(ms|s|m|h|d|w)?\s*$"},
            ],
            "examples": ["30s", "5m", "30d"],
        }
    ),
]
Bytes = Annotated[
    int,
    BeforeValidator(parse_size),
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "integer", "minimum": 0},
                {"type": "string", "pattern": r"^\s*\d+(\.\d+)?\s*([KMGTkmgt][Ii]?[Bb]|[Bb])?\s*$"},
            ],
            "examples": ["512MiB", "1GB"],
        }
    ),
]
# host:port, or [IPv6]:port (an IPv4-mapped one, or with a zone: [fe80::1%eth0]).
_LISTEN = r"^[^\s:]+:\d{1,5}$|^\[[0-9A-Za-z:.%]+\]:\d{1,5}$"


def _port_in_range(value: str) -> str:
    port = value.rpartition(":")[2]
    if port.isdigit() and int(port) > 65535:
        raise ValueError(f"{shown(value)}: a port is at most 65535")
    return value


# 0 to 65535 (leading zeros as validate takes them), for the schema: editors flag what validate refuses.
_PORT = r"(?:0?[0-9]{1,4}|[1-5][0-9]{4}|6[0-4][0-9]{3}|65[0-4][0-9]{2}|655[0-2][0-9]|6553[0-5])"


def _listen_schema(pattern: str) -> WithJsonSchema:
    return WithJsonSchema({"type": "string", "pattern": pattern.replace(r"\d{1,5}", _PORT)})


Listen = Annotated[str, Field(pattern=_LISTEN), AfterValidator(_port_in_range), _listen_schema(_LISTEN)]
# The firewall's other listeners, as it reads them: an empty host is 127.0.0.1 (":8443").
_FIREWALL_LISTEN = r"^:\d{1,5}$|" + _LISTEN
FirewallListen = Annotated[
    str, Field(pattern=_FIREWALL_LISTEN), AfterValidator(_port_in_range), _listen_schema(_FIREWALL_LISTEN)
]


def nats_servers(value: str) -> list[str]:
    """The servers a NATS URL names: one, or each of a comma-separated list, as the client is
    given them (it takes a list, never a string with commas), each with its scheme: ``host:port``
    alone is ``nats://host:port``, as the client reads it (pure)."""
    return [url if "://" in url else f"nats://{url}" for url in (part.strip() for part in value.split(","))]


def _nats_url(value: str) -> str:
    """One server or a comma-separated list, each as the NATS client takes it: ``host:port`` alone
    is ``nats://host:port``, and a scheme is lower case."""
    for url in nats_servers(value):
        parts = urlsplit(url)
        try:
            port: int | None = parts.port
        except ValueError:  # not a number, or above 65535
            port = -1
        scheme = url.partition("://")[0]
        if (
            scheme not in ("nats", "tls", "ws", "wss")
            or not parts.hostname
            or port == -1
            or any(c.isspace() for c in url)
        ):
            raise ValueError(
                f"{shown(shown_url(value))} is no NATS server URL (nats://host:port, tls://, ws:// or wss://)"
            )
    return value


_SOCKET_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")


def _socket_name(value: str) -> str:
    # tmux -L names a file in its socket directory: a path or a dot name would be elsewhere, or none.
    if not _SOCKET_NAME.fullmatch(value) or not value.strip("."):
        raise ValueError(f"{shown(value)} is not a tmux socket name (1-64 letters, digits, '.', '_' or '-')")
    return value


def _network(value: str) -> str:
    # Kubernetes takes an ipBlock only with its prefix length, a single address too (…/32).
    try:
        ipaddress.ip_network(value, strict=False)
    except ValueError:
        raise ValueError(f"{shown(value)} is no IP block (e.g. 203.0.113.10/32)") from None
    if "/" not in value:
        raise ValueError(f"{shown(value)} needs its prefix length (e.g. {value}/32)")
    return value


AgentName = Annotated[
    str,
    _check_pattern(re.compile(_NAME), "a name of 2-32 lower-case letters, digits and dashes"),
    _schema_pattern(re.compile(_NAME)),
]
RepoName = Annotated[str, _check_pattern(_REPO, "a repository as owner/name"), _schema_pattern(_REPO)]
MatrixUserId = Annotated[
    str, _check_pattern(_MATRIX_USER, "a Matrix user id like @name:server"), _schema_pattern(_MATRIX_USER)
]
MatrixRoom = Annotated[
    str,
    _check_pattern(_MATRIX_ROOM, "a Matrix room id (!id:server) or alias (#name:server)"),
    _schema_pattern(_MATRIX_ROOM),
]
HostPattern = Annotated[
    str, _check_pattern(_HOST_PATTERN, "a host name, *.suffix, or IP literal"), _schema_pattern(_HOST_PATTERN)
]
EnvVarName = Annotated[str, _check_pattern(_ENV_VAR, "an environment variable name"), _schema_pattern(_ENV_VAR)]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class PermissionMode(StrEnum):
    """Claude Code's permission modes (`--permission-mode` of the pinned CLI; `default` is still accepted)."""

    default = "default"
    accept_edits = "acceptEdits"
    auto = "auto"
    manual = "manual"
    dont_ask = "dontAsk"
    plan = "plan"
    bypass_permissions = "bypassPermissions"


# No control character (see `GitIdentity._one_line`), in the schema's words.
_NO_CONTROL = "\\x00-\\x1f\\x7f"


class GitIdentity(_Model):
    name: Annotated[str, WithJsonSchema({"type": "string", "pattern": f"^[^{_NO_CONTROL}]+$"})] = Field(
        min_length=1, description="git user.name for the agent's commits"
    )
    email: Annotated[
        str, WithJsonSchema({"type": "string", "pattern": f"^[^@\\s{_NO_CONTROL}]+@[^@\\s{_NO_CONTROL}]+$"})
    ] = Field(pattern=r"^[^@\s]+@[^@\s]+$", description="git user.email")

    @field_validator("name", "email")
    @classmethod
    def _one_line(cls, value: str) -> str:
        # They go into the home's gitconfig and every commit's author line, both line-based.
        if any(ord(c) < 0x20 or ord(c) == 0x7F for c in value):
            raise ValueError(f"{shown(value)} has a control character (a line break, a tab…)")
        return value


_CLOCK = re.compile(r"^ *([01]?[0-9]|2[0-3]):([0-5][0-9])(?::([0-5][0-9]))? *$")


def parse_clock(value: object) -> time:
    """A time of day from ``HH:MM`` (or ``HH:MM:SS``). pydantic would read ``22`` as 22 seconds past
    midnight, and take a time with its own zone, which the window's time zone cannot compare with."""
    if isinstance(value, time) and value.tzinfo is None:
        return value
    if not isinstance(value, str) or not (m := _CLOCK.fullmatch(value)):
        raise ValueError("expected a time of day like 22:00 (HH:MM, in the window's timezone)")
    return time(int(m.group(1)), int(m.group(2)), int(m.group(3) or 0))


Clock = Annotated[
    time,
    BeforeValidator(parse_clock),
    WithJsonSchema({"type": "string", "pattern": _CLOCK.pattern, "examples": ["22:00", "07:30"]}),
]


class QuietHours(_Model):
    """A daily window in which the agent neither replies nor reacts, except to incidents."""

    start: Clock = Field(description="local time the quiet window starts, e.g. 22:00")
    end: Clock = Field(description="local time it ends; before start means it crosses midnight")
    timezone: str = Field(default="UTC", min_length=1, description="IANA time zone, e.g. Europe/Berlin")
    incident_words: list[
        Annotated[
            str, _check_pattern(re.compile(r"(?s).*\S.*"), "a word (it is blank)"), _schema_pattern(re.compile(r"\S"))
        ]
    ] = Field(
        default_factory=lambda: ["incident", "outage", "sev1", "urgent"],
        description="a message with one of these words (whole word, any case) is an incident: it wakes the agent",
    )

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown time zone {shown(value)}") from exc
        return value

    @model_validator(mode="after")
    def _not_empty(self) -> Self:
        if self.start == self.end:
            raise ValueError(f"start and end are both {self.start:%H:%M}: the window would be empty")
        return self


class AgentMatrix(_Model):
    user_id: MatrixUserId = Field(description="the agent's Matrix account, e.g. @devbot:example.org")
    display_name: str | None = Field(
        default=None, description="the name people mention it by; the agent name when absent"
    )
    rooms: list[MatrixRoom] = Field(default_factory=list, description="rooms the agent joins and listens in")
    allowed_senders: list[MatrixUserId] = Field(
        default_factory=list,
        description="people heard besides the crew's operators and teammates",
    )
    quiet_hours: QuietHours | None = None


class RestartPolicy(_Model):
    """How the supervisor restarts a claude process that exited (Supervisor's semantics)."""

    min_uptime: Seconds = Field(default=10.0, description="a start counts only after staying up this long")
    backoff_initial: Seconds = Field(default=2.0, description="first wait before a restart; doubles per fast crash")
    backoff_max: Seconds = Field(default=300.0, description="the longest wait between restarts")
    crash_loop_after: Integer = Field(default=5, ge=1, description="fast crashes in a row before crash-looping")
    crash_loop_retry: Seconds = Field(default=900.0, description="retry interval while crash-looping")

    @model_validator(mode="after")
    def _ordered(self) -> Self:
        if self.backoff_max < self.backoff_initial:
            raise ValueError("backoff_max must not be smaller than backoff_initial")
        return self


class SetupCommand(_Model):
    """A per-agent command run after the clones (install a toolchain, warm a cache)."""

    command: str = Field(min_length=1, description="run with bash -c in the primary repository")
    timeout: Seconds = Field(default=600.0, description="the command is killed (with its process group) after this")


class Resources(_Model):
    """Kubernetes requests and limits for the agent's container."""

    cpu_request: Quantity = "500m"
    cpu_limit: Quantity = "2"
    memory_request: Quantity = "1Gi"
    memory_limit: Quantity = "4Gi"
    home_storage: Storage = "5Gi"
    workspace_storage: Storage = "20Gi"

    @model_validator(mode="after")
    def _requests_within_limits(self) -> Self:
        for kind in ("cpu", "memory"):
            if parse_quantity(getattr(self, f"{kind}_request")) > parse_quantity(getattr(self, f"{kind}_limit")):
                raise ValueError(f"{kind}_request is larger than {kind}_limit")
        return self


class HostRule(_Model):
    """One allowlist entry: a host (exact or ``*.suffix``), its ports, optional methods and paths."""

    host: HostPattern = Field(description="an exact host name, *.suffix, or an IP literal")
    ports: list[Annotated[Integer, Field(ge=1, le=65535)]] = Field(
        default_factory=lambda: [443], min_length=1, description="allowed ports"
    )
    methods: list[str] | None = Field(default=None, description="allowed HTTP methods; all when absent")
    paths: list[Annotated[str, WithJsonSchema({"type": "string", "pattern": "^/"})]] | None = Field(
        default=None, description="allowed path prefixes; all when absent"
    )
    allow_private: Flag = Field(
        default=False,
        description="allow this host although it resolves to a loopback, private or link-local address",
    )

    @field_validator("methods")
    @classmethod
    def _upper(cls, value: list[str] | None) -> list[str] | None:
        return [m.upper() for m in value] if value is not None else None

    @field_validator("paths")
    @classmethod
    def _absolute(cls, value: list[str] | None) -> list[str] | None:
        for path in value or []:
            if not path.startswith("/"):
                raise ValueError(f"path prefix {path!r} must start with /")
        return value


class SecretSource(_Model):
    """Where the firewall reads a real secret: exactly one of an env var or a file."""

    model_config = ConfigDict(json_schema_extra={"minProperties": 1, "maxProperties": 1})

    # The secret's name or path, never the secret: one pasted here would be quoted by every error about it.
    env: Annotated[EnvVarName, AfterValidator(_not_a_credential)] | None = Field(
        default=None, description="the firewall's environment variable holding the secret"
    )
    file: NonSecret | None = Field(default=None, description="a file holding the secret (read by the firewall only)")

    @model_validator(mode="after")
    def _exactly_one(self) -> Self:
        if (self.env is None) == (self.file is None):
            raise ValueError("give exactly one of env or file")
        return self


# The request headers the firewall never forwards upstream (hop-by-hop, or the proxy's own): the
# firewall's `_HOP_REQUEST`, which a test keeps equal (the firewall does not load this module).
UNFORWARDED_REQUEST_HEADERS = frozenset(
    {"connection", "keep-alive", "proxy-authorization", "proxy-connection", "te", "upgrade", "expect", "host"}
)


class HeaderPlacement(_Model):
    """Where in the request the placeholder is swapped for the secret."""

    header: str = Field(
        default="Authorization", pattern=r"^[A-Za-z0-9-]+$", description="the request header the placeholder travels in"
    )
    scheme: Literal["auto", "bearer", "token", "basic", "raw"] = Field(
        default="auto",
        description=(
            "auto: wherever the placeholder appears in the header, inside Basic credentials too; "
            "bearer/token/basic: only in that scheme; raw: the whole header value"
        ),
    )

    @field_validator("header")
    @classmethod
    def _forwarded(cls, value: str) -> str:
        if value.lower() in UNFORWARDED_REQUEST_HEADERS:
            raise ValueError(
                f"{value} never reaches the upstream (the firewall drops it, as a proxy does): "
                "a secret placed there would never be sent"
            )
        return value


class SecretRule(_Model):
    """A placeholder the agents carry, and the real secret the firewall swaps in toward `hosts` only."""

    name: AgentName = Field(description="names the rule in audit lines and errors")
    placeholder: Placeholder = Field(description="the literal token agents hold")
    source: SecretSource
    hosts: list[HostPattern] = Field(min_length=1, description="the only hosts that receive the real secret")
    where: HeaderPlacement = Field(default_factory=HeaderPlacement)
    agents: list[AgentName] | None = Field(
        default=None,
        description=(
            "only requests from these agents get this secret (all agents when absent); rules for different "
            "agents may share one placeholder, so each agent acts under its own identity"
        ),
    )


class ClaudeLogin(_Model):
    """The Claude subscription: the firewall holds the real OAuth tokens and answers refreshes."""

    enabled: Flag = Field(default=False, description="swap the stub OAuth token for the real one toward api_hosts")
    api_hosts: list[HostPattern] = Field(
        default_factory=lambda: ["api.anthropic.com"], description="the model API hosts"
    )
    token_url: str = Field(
        default="https://platform.claude.com/v1/oauth/token",
        pattern=r"^https://",
        description="where the CLI refreshes its token (answered by the firewall) and the firewall refreshes the real one",
    )
    # Placeholders: the agents hold them (and the firewall hands them out in its refresh answers).
    stub_access_token: Placeholder = Field(
        default="agent-smith-placeholder-claude-access-token",
        description="the access token in the agents' stub .credentials.json",
    )
    stub_refresh_token: Placeholder = Field(default="agent-smith-placeholder-claude-refresh-token")
    refresh_before: Seconds = Field(default=600.0, description="refresh the real token this long before it expires")


class AgentEgress(_Model):
    allow: list[HostRule] = Field(default_factory=list, description="hosts this agent may reach besides the crew's")


class AgentKubernetes(_Model):
    """This agent's own transparent listener on the firewall, behind a Service of its own (Kubernetes)."""

    firewall_cluster_ip: str = Field(
        pattern=_IPV4,
        description=(
            "a fixed ClusterIP for this agent's own firewall Service; with kubernetes.transparent_egress its "
            "allowlisted host names point there instead of at kubernetes.firewall_cluster_ip"
        ),
    )
    firewall_port: Integer = Field(
        ge=1024,
        le=65535,
        description=(
            "the firewall's port for this agent's transparent listener (on egress.transparent_listen's host): "
            "a connection there is this agent's, for the audit log, its allow rules and its secrets"
        ),
    )


class Agent(_Model):
    name: AgentName = Field(description="the agent's name: its persona directory agents/<name>/ and tmux session")
    role: str = Field(default="engineer", description="shown to teammates in the generated team section")
    repos: list[RepoName] = Field(
        default_factory=list, description="repositories (owner/name) cloned into its workspace"
    )
    primary_repo: RepoName | None = Field(default=None, description="defaults to the first of repos")
    git: GitIdentity | None = Field(default=None, description="defaults to the agent's name and a noreply address")
    github_login: str | None = Field(
        default=None,
        pattern=r"^[A-Za-z0-9](?:[A-Za-z0-9-]{0,38})$",
        description="its account on the forge; the agent name when absent",
    )
    matrix: AgentMatrix | None = None
    permission_mode: PermissionMode = Field(default=PermissionMode.accept_edits, description="claude --permission-mode")
    first_run_prompt: str | None = Field(default=None, description="sent once, on the agent's very first start")
    restart: RestartPolicy = Field(default_factory=RestartPolicy)
    setup: SetupCommand | None = None
    remote_control: Flag = Field(default=False, description="start claude with --remote-control NAME")
    resources: Resources = Field(default_factory=Resources)
    egress: AgentEgress = Field(default_factory=AgentEgress)
    kubernetes: AgentKubernetes | None = Field(
        default=None,
        description="its own transparent listener on the firewall, so transparent mode knows which agent it serves",
    )
    env: dict[EnvVarName, NonSecret] = Field(
        default_factory=dict,
        description="extra, non-secret environment",
        # The names' pattern is a patternProperties: a name outside it is refused, not let through.
        json_schema_extra={"additionalProperties": False},
    )

    # On the field (repos is checked before it), so the problem is told at primary_repo, or at
    # the variable that set it.
    @field_validator("primary_repo")
    @classmethod
    def _primary_in_repos(cls, value: str | None, info: ValidationInfo) -> str | None:
        # repos missing from the data failed their own check, which said so.
        if value is None or "repos" not in info.data:
            return value
        repos = info.data["repos"]
        if value not in repos:
            # With none, claude would start in an empty directory named like the repository.
            raise ValueError(f"{value!r} is not one of repos" + ("" if repos else " (the agent has none)"))
        return value

    @property
    def primary(self) -> str | None:
        return self.primary_repo or (self.repos[0] if self.repos else None)

    @property
    def login(self) -> str:
        return self.github_login or self.name

    @property
    def git_identity(self) -> GitIdentity:
        return self.git or GitIdentity(name=self.name, email=f"{self.name}@users.noreply.agent-smith.local")


def _usable_url(url: str) -> str:
    try:
        parts = urlsplit(url)
        host, _ = parts.hostname, parts.port
    except ValueError as exc:
        raise ValueError(f"{shown(url)} is not a usable URL ({exc})") from None
    if not host or any(c.isspace() for c in url):
        raise ValueError(f"{shown(url)} is not a usable URL (no host name, or a space in it)")
    return url


# What `_usable_url` takes, for the schema: a host (a name, or an IPv6 address in brackets), a
# port that is a number up to 65535, no space anywhere.
_HOMESERVER_SCHEMA = WithJsonSchema(
    {
        "type": "string",
        "pattern": rf"^https?://(?:[^\s/?#@\[\]]*@)?(?:\[[0-9A-Fa-f.]*:[0-9A-Fa-f:.]*\]|[^\s/?#@:\[\]]+)(?::{_PORT}?)?(?:[/?#]\S*)?$",
    }
)


class MatrixSettings(_Model):
    homeserver: Annotated[str, AfterValidator(_usable_url), _HOMESERVER_SCHEMA] = Field(
        pattern=r"^https?://", description="client-server API base URL"
    )
    review_room: MatrixRoom | None = Field(default=None, description="where new PRs are announced to reviewers")
    operators: list[MatrixUserId] = Field(default_factory=list, description="people who may direct any agent")
    ack_reaction: str = Field(default="👀", description="the reaction that acknowledges a message that woke the agent")
    max_agent_messages_in_a_row: Integer = Field(
        default=3, ge=1, description="agent messages per room without a human before replies are refused"
    )
    reply_style: str = Field(
        default="Answer in the room you were asked in, briefly; put long output in a PR or a file.",
        description="added to every prompt as the crew's reply-style context",
    )


# What `_nats_url` takes, for the schema: servers separated by commas, each a host (and port),
# with one of the client's schemes or none (then no "://" at all: "NATS://h" is no host "NATS").
# No lookaround: Helm checks the chart's copy of this schema with Go's regexp (RE2). Without a
# scheme, a port has digits and a path no ":", so no "://" can hide in one ("NATS://h" is no host).
_USER_HOST = r"(?:[^\s,/@\[\]]*@)?(?:\[[0-9A-Fa-f.]*:[0-9A-Fa-f:.]*\]|[^\s,/?#@:\[\]]+)"
_NATS_SERVER = (
    rf"\s*(?:(?:nats|tls|ws|wss)://{_USER_HOST}(?::{_PORT}?)?(?:[/?#][^\s,]*)?"
    rf"|{_USER_HOST}(?::{_PORT})?(?:[/?#][^\s,:]*)?)\s*"
)
_NATS_URL_SCHEMA = WithJsonSchema({"type": "string", "pattern": f"^{_NATS_SERVER}(?:,{_NATS_SERVER})*$"})


class EventLog(_Model):
    nats_url: Annotated[str, AfterValidator(_nats_url), _NATS_URL_SCHEMA] | None = Field(
        default=None, description="an existing NATS server; embedded when absent"
    )
    stream: str = Field(
        default="SWARM_EVENTS",
        pattern=r"^[A-Za-z0-9_-]+$",
        description="the JetStream stream, created or updated at start",
    )
    subject_prefix: str = Field(
        default="swarm.events",
        pattern=r"^[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*$",
        description="events go to <prefix>.<type>.<agent>",
    )
    max_age: Seconds = Field(default=30 * 86400.0, description="drop events older than this")
    max_bytes: Bytes = Field(default=1 << 30, description="cap the stream's size")
    duplicate_window: Seconds = Field(default=120.0, description="a re-sent event id within this is stored once")

    @model_validator(mode="after")
    def _window_within_age(self) -> Self:
        # NATS refuses such a stream; said here, it is a located error instead of an outbox that never drains.
        if self.max_age and self.duplicate_window > self.max_age:
            raise ValueError("duplicate_window must not be longer than max_age (NATS refuses such a stream)")
        return self


class Forge(_Model):
    kind: Literal["github", "github-enterprise"] = Field(
        default="github", description="github.com, or GitHub Enterprise at base_url"
    )
    base_url: str = Field(
        default="https://api.github.com",
        pattern=r"^https?://",
        description="REST base: https://api.github.com, or https://HOST/api/v3 for GitHub Enterprise",
    )
    token_placeholder: Placeholder = Field(
        default="agent-smith-placeholder-github-token",
        description="what agents hold as GITHUB_TOKEN; the firewall swaps in the real token",
    )
    git_base_url: str | None = Field(
        default=None,
        pattern=r"^(https?|file)://",
        description=(
            "where repositories are cloned from as <git_base_url>/<owner>/<name>.git: "
            "https://github.com for github, the host of base_url for github-enterprise; set it for a mirror"
        ),
    )

    @property
    def graphql_url(self) -> str:
        base = self.base_url.rstrip("/")
        if self.kind == "github-enterprise" and base.endswith("/api/v3"):
            return base[: -len("/v3")] + "/graphql"
        return base + "/graphql"

    @property
    def host(self) -> str:
        return self.base_url.split("://", 1)[1].split("/", 1)[0]


class Egress(_Model):
    listen: Listen = Field(default="127.0.0.1:3128", description="the explicit proxy agents' HTTPS_PROXY points at")
    transparent_listen: FirewallListen | None = Field(
        default=None, description="address for transparent (SNI-routed) mode; off when absent"
    )
    allow: list[HostRule] = Field(default_factory=list)
    secrets: list[SecretRule] = Field(default_factory=list)
    claude_login: ClaudeLogin = Field(default_factory=ClaudeLogin)

    ca_cert: str | None = Field(
        default=None,
        description="the firewall CA certificate agents trust; the firewall's own when absent",
    )
    upstream_ca: str | None = Field(
        default=None,
        description="CA bundle upstream servers are verified against; the system bundle when absent",
    )
    metrics_listen: FirewallListen | None = Field(
        default=None, description="address of the Prometheus metrics endpoint (host:port); off when absent"
    )


class Runtime(_Model):
    state_dir: str = Field(
        default="~/.local/state/agent-smith",
        min_length=1,
        description=(
            "homes, workspaces, logs and runtime state live under STATE_DIR/<crew>/ (a relative one is "
            "taken from the crew directory)"
        ),
    )
    tmux_socket: Annotated[str, AfterValidator(_socket_name), _schema_pattern(_SOCKET_NAME)] | None = Field(
        default=None,
        description=(
            "agent-smith's own tmux server (-L); agent-smith-<crew name> when absent, so that crews of "
            "one machine, whose sessions are named by agent, never share one"
        ),
    )
    metrics_listen: Listen = Field(
        default="127.0.0.1:0",
        description=(
            "the supervisor's /metrics, /healthz and the agents' MCP tools at /mcp "
            "(host:port; port 0 picks a free one, shown by status)"
        ),
    )


# An IPv4 block, or what may be an IPv6 one, each with its prefix length (`_network` checks the rest).
_CIDR_SCHEMA = WithJsonSchema(
    {
        "type": "string",
        "pattern": rf"{_IPV4[:-1]}/(?:3[0-2]|[12]?[0-9])$|^[0-9A-Fa-f:.]*:[0-9A-Fa-f:.]*/(?:12[0-8]|1[01][0-9]|[1-9]?[0-9])$",
    }
)


class NetworkPeer(_Model):
    """A server outside the render the agents may reach directly: an IP block, or pods by namespace and labels."""

    cidr: Annotated[str, AfterValidator(_network), _CIDR_SCHEMA] | None = Field(
        default=None, description="e.g. 203.0.113.10/32"
    )
    namespace: str | None = Field(default=None, pattern=NAMESPACE_PATTERN)
    pod_labels: dict[str, str] = Field(default_factory=dict)
    port: Integer | None = Field(
        default=None,
        ge=1,
        le=65535,
        description=(
            "the port its pods listen on, where a Service in front of them maps another (a NetworkPolicy "
            "matches the pod's port: a homeserver Service on 80 in front of pods on 8008 needs 8008); the "
            "URL's port, or the API server's 443 and 6443, when absent"
        ),
    )

    @model_validator(mode="after")
    def _one_kind(self) -> Self:
        if (self.cidr is None) == (self.namespace is None and not self.pod_labels):
            raise ValueError("give either cidr, or namespace and/or pod_labels")
        return self


class Kubernetes(_Model):
    namespace: str = Field(
        default="agent-smith",
        pattern=NAMESPACE_PATTERN,
        description="the namespace everything is rendered into",
    )
    image: str = Field(
        default="ghcr.io/agent-smith/agent-smith:latest",
        min_length=1,
        description="the agent-smith image (agents and firewall)",
    )
    storage_class: str | None = Field(
        default=None, description="for the home, workspace and NATS volumes; the cluster default when absent"
    )
    transparent_egress: Flag = Field(
        default=False, description="point allowlisted host names at the firewall (SNI mode) besides HTTPS_PROXY"
    )
    external_secrets: Flag = Field(default=False, description="take the firewall's secrets from an ExternalSecret")
    secret_store: str = Field(
        default="agent-smith",
        pattern=r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$",
        description="the ClusterSecretStore the ExternalSecret reads from (with external_secrets)",
    )
    agent_role: Flag = Field(
        default=False,
        description="give each agent a namespaced Role and mount its API token; off: no token in the pod",
    )
    agent_role_access: Literal["read-only", "read-write"] = Field(
        default="read-only", description="what that Role may do to workloads; it never reaches Secrets"
    )
    firewall_cluster_ip: str | None = Field(
        default=None,
        pattern=_IPV4,
        description="a fixed ClusterIP for the firewall Service; transparent_egress points agents' host names at it",
    )
    matrix_peer: NetworkPeer | None = Field(
        default=None,
        description="where the homeserver is, when it is not in-cluster (*.svc): the channel reaches it directly",
    )
    nats_peer: NetworkPeer | None = Field(default=None, description="where an external events.nats_url server is")
    dns_peer: NetworkPeer | None = Field(
        default=None,
        description=(
            "where the cluster's DNS servers are (UDP and TCP, on its port or 53), when they are not the "
            "kube-dns pods of kube-system: OpenShift's dns-default, a NodeLocal DNS cache"
        ),
    )
    api_server: NetworkPeer | None = Field(
        default=None, description="where the Kubernetes API server is, so agents with a role can reach it"
    )
    nats_image: str = Field(
        default="docker.io/library/nats:2.15.1-alpine",
        min_length=1,
        description="the NATS server image, pinned to the version the tests run against",
    )
    nats_storage: Storage = Field(default="2Gi", description="the NATS volume; keep it above events.max_bytes")


class CrewInfo(_Model):
    name: AgentName = Field(description="the crew's name; its state lives under runtime.state_dir/<name>/")
    description: str = Field(default="", description="free text")


class Crew(_Model):
    """The whole of crew.yaml."""

    schema_ref: str | None = Field(default=None, alias="$schema", description="editor hint; ignored")
    version: Annotated[Literal[1], BeforeValidator(_not_a_flag)] = Field(
        default=1, description="the crew.yaml format version"
    )
    crew: CrewInfo
    agents: list[Agent] = Field(min_length=1)
    matrix: MatrixSettings | None = None
    events: EventLog = Field(default_factory=EventLog)
    forge: Forge = Field(default_factory=Forge)
    egress: Egress = Field(default_factory=Egress)
    runtime: Runtime = Field(default_factory=Runtime)
    kubernetes: Kubernetes = Field(default_factory=Kubernetes)
    # The crew directory, as `load_crew` found it: not a setting (never dumped into values), but
    # what a relative runtime.state_dir is taken from.
    _directory: Path | None = PrivateAttr(default=None)

    def located_in(self, directory: Path) -> Self:
        """This crew, read from `directory`."""
        located = self.model_copy()
        located._directory = directory.absolute()
        return located

    @property
    def directory(self) -> Path | None:
        """The crew directory this crew was read from (`located_in`), if it was."""
        return self._directory

    @property
    def state_root(self) -> Path:
        """runtime.state_dir; a relative one is the crew directory's, wherever a command runs (`up`,
        `status` and `down` would each find other state)."""
        state = Path(self.runtime.state_dir).expanduser()
        if state.is_absolute() or self._directory is None:
            return state
        return self._directory / state

    @property
    def tmux_socket(self) -> str:
        """The tmux server (-L) of the crew's sessions: runtime.tmux_socket, else the crew's own."""
        return self.runtime.tmux_socket or f"agent-smith-{self.crew.name}"

    def agent(self, name: str) -> Agent:
        for agent in self.agents:
            if agent.name == name:
                return agent
        raise UnknownAgentError(name, [a.name for a in self.agents])

    def teammates(self, name: str) -> list[Agent]:
        return [a for a in self.agents if a.name != name]
