"""The demo's crew: the scaffolded example crew, pointed at this run's local parts. Pure.

Only what must differ from `agent-smith init`'s crew changes: where the
homeserver, the forge and the model are, the firewall's allowlist and
secrets, the state directory, and the knobs that make a scripted run quick
(the Stop hook's poll interval, agents that act without permission prompts).
"""

from __future__ import annotations

from collections.abc import MutableMapping
from dataclasses import dataclass
from typing import Any

DEVELOPER = "devbot"
REVIEWER = "reviewbot"
FORGE_PLACEHOLDER = "agent-smith-placeholder-github-token"
"""What the reviewer names as its GitHub token; the firewall swaps in the reviewer's real one."""


@dataclass(frozen=True)
class Facts:
    """This run's addresses and files (all absolute)."""

    crew_name: str
    homeserver: str
    forge_host: str
    forge_ca: str
    model_urls: dict[str, str]
    egress_listen: str
    developer_secret_file: str
    reviewer_secret_file: str
    state_dir: str
    tmux_socket: str
    nats_url: str | None = None
    stop_poll: str = "1"
    max_agent_messages_in_a_row: int = 8


def demo_crew(crew: MutableMapping[str, Any], facts: Facts) -> MutableMapping[str, Any]:
    """`crew` (the scaffolded crew.yaml, parsed) changed in place for this run, and returned."""
    crew["crew"]["name"] = facts.crew_name
    for agent in crew["agents"]:
        agent.pop("first_run_prompt", None)
        # A scripted run cannot answer permission prompts; the agent is confined by its
        # own home and the egress firewall, as in the container.
        agent["permission_mode"] = "bypassPermissions"
        agent["env"] = {
            "ANTHROPIC_BASE_URL": facts.model_urls[agent["name"]],
            # The scripted model calls the chat tools by name, so they must not hide behind ToolSearch.
            "ENABLE_TOOL_SEARCH": "false",
            "AGENT_SMITH_STOP_POLL": facts.stop_poll,
        }
    matrix = crew["matrix"]
    matrix["homeserver"] = facts.homeserver
    # The story has up to five agent messages between the operator's; the default guard (3) would cut it.
    matrix["max_agent_messages_in_a_row"] = facts.max_agent_messages_in_a_row
    if facts.nats_url is not None:
        # The demo runs its own event log, so hooks and the firewall are told where it is.
        crew["events"]["nats_url"] = facts.nats_url
    crew["forge"] = {
        "kind": "github-enterprise",
        "base_url": f"https://{facts.forge_host}/api/v3",
        "token_placeholder": FORGE_PLACEHOLDER,
    }
    egress = crew["egress"]
    egress["listen"] = facts.egress_listen
    egress["allow"] = [{"host": facts.forge_host, "ports": [443], "allow_private": True}]
    # Both agents hold the same placeholder; the firewall swaps in each one's own token, so
    # each acts on the forge as itself (and cannot approve its own pull request).
    egress["secrets"] = [
        {
            "name": f"github-{agent}",
            "placeholder": crew["forge"]["token_placeholder"],
            "source": {"file": secret_file},
            "hosts": [facts.forge_host],
            "where": {"header": "Authorization"},
            "agents": [agent],
        }
        for agent, secret_file in (
            (DEVELOPER, facts.developer_secret_file),
            (REVIEWER, facts.reviewer_secret_file),
        )
    ]
    egress["upstream_ca"] = facts.forge_ca
    egress["claude_login"] = {"enabled": False}
    crew["runtime"] = {"state_dir": facts.state_dir, "tmux_socket": facts.tmux_socket}
    return crew
