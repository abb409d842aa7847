"""The egress credential firewall: TLS interception, default-deny allowlist, placeholder → secret per host.

Other subsystems use only these names:

    proxy_url_for(crew, "devbot")  # what the agent's HTTPS_PROXY is set to
    ca_cert_for(crew)              # the CA certificate the agent trusts
    settings_for(crew, crew_dir, os.environ)  # then Firewall(settings)
    launch_for(crew, crew_dir, os.environ).pack()  # the same, for a firewall process to read
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from agent_smith.deferred import names_from_parts
from agent_smith.egress.state import FirewallState, derive_password

if TYPE_CHECKING:
    from agent_smith.crew import Crew
    from agent_smith.egress.audit import AuditEntry, EgressDenied, Metrics
    from agent_smith.egress.proxy import Firewall
    from agent_smith.egress.service import DenialPublisher, import_claude_login, run_firewall
    from agent_smith.egress.settings import (
        FirewallLaunch,
        FirewallSettings,
        Resolver,
        claude_store_for,
        launch_for,
        read_launch,
        settings_for,
        system_resolver,
    )

# The engine (h2, prometheus, the event log) loads only when one of its names is used, so a
# hook or `assemble` asking for proxy_url_for does not import the whole firewall; nor does this
# package import the crew model, which a firewall handed its settings never loads.
_WHERE = {
    "AuditEntry": "audit",
    "EgressDenied": "audit",
    "Metrics": "audit",
    "Firewall": "proxy",
    "FirewallLaunch": "settings",
    "FirewallSettings": "settings",
    "Resolver": "settings",
    "claude_store_for": "settings",
    "launch_for": "settings",
    "read_launch": "settings",
    "settings_for": "settings",
    "system_resolver": "settings",
    "DenialPublisher": "service",
    "import_claude_login": "service",
    "run_firewall": "service",
}


__getattr__ = names_from_parts(__name__, _WHERE)


__all__ = [
    "AuditEntry",
    "DenialPublisher",
    "EgressDenied",
    "Firewall",
    "FirewallLaunch",
    "FirewallSettings",
    "FirewallState",
    "Metrics",
    "Resolver",
    "ca_cert_for",
    "check_ca",
    "claude_store_for",
    "import_claude_login",
    "launch_for",
    "make_ca_ahead",
    "proxy_url_for",
    "read_launch",
    "run_firewall",
    "settings_for",
    "system_resolver",
]


def _state(crew: Crew) -> FirewallState:
    from agent_smith.crew import CrewPaths

    return FirewallState(CrewPaths.of(crew).firewall)


def proxy_url_for(crew: Crew, agent_name: str) -> str:
    """``http://<agent>:<password>@<listen>``: the proxy URL an agent authenticates to the firewall with."""
    agent = crew.agent(agent_name).name
    password = derive_password(_state(crew).identity_key(), agent)
    return f"http://{agent}:{password}@{crew.egress.listen}"


def ca_cert_for(crew: Crew) -> Path:
    """The CA certificate agents must trust: ``egress.ca_cert`` when set, else the firewall's own."""
    if crew.egress.ca_cert is not None:
        return Path(crew.egress.ca_cert).expanduser()
    return _state(crew).ca_cert()


def check_ca(crew: Crew) -> None:
    """Load the firewall's own CA (made if missing): UsageError, saying what to do, when its
    files are no certificate and key, or not a pair. A CA the crew names is its own affair."""
    if crew.egress.ca_cert is None:
        _state(crew).ca()


def make_ca_ahead(crew: Crew) -> int | None:
    """Start making the firewall's missing CA in a child process (its pid); None when there is
    nothing to make (it exists, or the crew names its own with ``egress.ca_cert``)."""
    return None if crew.egress.ca_cert is not None else _state(crew).make_ca_ahead()
