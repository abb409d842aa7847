"""What a firewall runs with: worked out from a crew, or handed down by the process that loaded it.

`up`'s supervisor has the crew loaded when it starts the firewall beside the
agents' booting CLIs, which wait for some of their first requests through it
before they show their prompt. A firewall that loaded the crew again (pydantic,
the crew model, YAML: ~0.16 s of CPU on a 2-core machine) answered them that
much later, so the supervisor hands it its settings down a pipe instead
(`FirewallLaunch`), and this module imports neither the crew nor the proxy.

The settings travel as a pickle: parent and child are the same program at
the same version, and the unpickler accepts only the plain classes settings
are made of, never a callable that could run code.
"""

from __future__ import annotations

import asyncio
import io
import os
import pickle
import socket
import ssl
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path, PosixPath
from typing import Any

from agent_smith.egress.claude import TokenStore
from agent_smith.egress.policy import ClaudePolicy, Policy, Rule, Secret
from agent_smith.egress.state import FirewallState
from agent_smith.errors import UsageError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from agent_smith.crew import Crew
    from agent_smith.egress.audit import EgressDenied

__all__ = [
    "FirewallLaunch",
    "FirewallSettings",
    "Resolver",
    "claude_store_for",
    "launch_for",
    "read_launch",
    "settings_for",
    "system_resolver",
    "unpack_launch",
]

Resolver = Callable[[str, int], Awaitable[list[tuple[str, int]]]]


async def system_resolver(host: str, port: int) -> list[tuple[str, int]]:
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return [(str(info[4][0]), port) for info in infos]


@dataclass(frozen=True)
class FirewallSettings:
    policy: Policy
    secrets: tuple[Secret, ...]
    agents: frozenset[str]
    identity_key: bytes
    # Where the CA that signs the agents' leaf certificates is kept: made (if missing) as the
    # firewall starts, loaded at its first interception. Whoever works the settings out need
    # not load cryptography.
    ca_store: FirewallState
    listen: tuple[str, int]
    # Listening sockets already open for `listen` (handed down by the supervisor, or systemd):
    # served instead of binding it.
    listen_fds: tuple[int, ...] = ()
    transparent_listen: tuple[str, int] | None = None
    # One transparent listener per agent: a connection's local port names its agent, so the
    # audit log, per-agent rules and per-agent secrets apply as in explicit mode. Only sound
    # when the network lets nothing but that agent reach its listener (a per-agent Service
    # and a NetworkPolicy in Kubernetes).
    transparent_agents: Mapping[str, tuple[str, int]] = field(default_factory=dict)
    transparent_port: int = 443
    upstream_ca: Path | None = None
    audit_path: Path | None = None
    claude_store: TokenStore | None = None
    claude_refresh_before: float = 600.0
    metrics_listen: tuple[str, int] | None = None
    resolver: Resolver = system_resolver
    on_denied: Callable[[EgressDenied], None] | None = None
    http2: bool = True


def claude_store_for(crew: Crew) -> TokenStore:
    from agent_smith.crew import CrewPaths

    return TokenStore(FirewallState(CrewPaths.of(crew).firewall).secrets_dir / "claude-login.json")


def settings_for(crew: Crew, crew_dir: Path, environ: Mapping[str, str]) -> FirewallSettings:
    """Everything the firewall needs, read and checked before a socket opens."""
    from agent_smith.crew import CrewPaths
    from agent_smith.egress.config import (
        parse_address,
        policy_from_crew,
        secrets_from_crew,
        transparent_agents_from_crew,
    )

    state = FirewallState(CrewPaths.of(crew).firewall)
    egress = crew.egress
    upstream_ca = Path(egress.upstream_ca).expanduser() if egress.upstream_ca else None
    if upstream_ca is not None and not upstream_ca.is_absolute():
        upstream_ca = crew_dir / upstream_ca
    if upstream_ca is not None:
        _check_ca_bundle(upstream_ca)
    return FirewallSettings(
        policy=policy_from_crew(crew),
        secrets=secrets_from_crew(crew, environ, crew_dir),
        agents=frozenset(a.name for a in crew.agents),
        identity_key=state.identity_key(),
        ca_store=state,
        listen=parse_address(egress.listen, "egress.listen"),
        transparent_listen=(
            parse_address(egress.transparent_listen, "egress.transparent_listen") if egress.transparent_listen else None
        ),
        transparent_agents=transparent_agents_from_crew(crew),
        upstream_ca=upstream_ca,
        audit_path=state.audit_log_path,
        claude_store=claude_store_for(crew) if egress.claude_login.enabled else None,
        claude_refresh_before=egress.claude_login.refresh_before,
        metrics_listen=parse_address(egress.metrics_listen, "egress.metrics_listen") if egress.metrics_listen else None,
    )


@dataclass(frozen=True)
class FirewallLaunch:
    """A crew's firewall settings, and the crew as it was started (plain data) with its
    directory: the firewall makes the crew of them only when it first has a denial to publish
    to the event log, the crew's as it runs even if crew.yaml changed since."""

    settings: FirewallSettings
    crew_dir: Path
    crew: dict[str, Any]

    def pack(self) -> bytes:
        return pickle.dumps(self, protocol=pickle.HIGHEST_PROTOCOL)


def launch_for(crew: Crew, crew_dir: Path, environ: Mapping[str, str]) -> FirewallLaunch:
    settings = settings_for(crew, crew_dir, environ)
    # The CA is made now (in a child process) when missing. A firewall that made it raced the
    # agents' assembly for it on a crew's first `up`, and held their start back while it
    # loaded cryptography and minted the key under the lock.
    settings.ca_store.ca_cert()
    return FirewallLaunch(settings, crew_dir.absolute(), crew.model_dump(mode="json"))


# Everything a packed launch is made of; `system_resolver` is the default resolver.
_CLASSES: dict[tuple[str, str], object] = {
    (cls.__module__, cls.__qualname__): cls
    for cls in (FirewallLaunch, FirewallSettings, FirewallState, TokenStore, Policy, Rule, Secret, ClaudePolicy)
}
_CLASSES |= {("pathlib", "PosixPath"): PosixPath, ("builtins", "frozenset"): frozenset}
_CLASSES[__name__, "system_resolver"] = system_resolver


class _SettingsUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> object:
        try:
            return _CLASSES[module, name]
        except KeyError:
            raise pickle.UnpicklingError(f"{module}.{name} is not part of firewall settings") from None


def unpack_launch(data: bytes) -> FirewallLaunch:
    """The launch `FirewallLaunch.pack` made; UsageError for anything else."""
    try:
        launch = _SettingsUnpickler(io.BytesIO(data)).load()
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError) as exc:
        raise UsageError(f"the firewall settings handed down are unreadable: {exc}") from None
    if not isinstance(launch, FirewallLaunch):
        raise UsageError("the firewall settings handed down are unreadable: not a firewall launch")
    return launch


def read_launch(fd: int) -> FirewallLaunch:
    """The launch written to file descriptor `fd` (a pipe from the supervisor), read to its end."""
    try:
        with os.fdopen(fd, "rb") as pipe:
            data = pipe.read()
    except OSError as exc:
        raise UsageError(f"--settings-fd {fd}: cannot read the firewall settings: {exc.strerror}") from None
    return unpack_launch(data)


def _check_ca_bundle(path: Path) -> None:
    """Raise UsageError unless `path` holds certificates: the firewall reads it at its first
    upstream connection, where a bad one fails every request as an upstream's TLS failure."""
    if not path.is_file():
        raise UsageError(f"egress.upstream_ca: {path} is not a file")
    try:
        ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT).load_verify_locations(cafile=str(path))
    except (ssl.SSLError, OSError) as exc:
        raise UsageError(f"egress.upstream_ca: {path} holds no usable CA certificate ({exc.strerror or exc})") from None
