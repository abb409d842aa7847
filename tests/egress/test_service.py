"""The firewall assembled from a crew: the agents' own transparent listeners come from crew.yaml."""

from __future__ import annotations

import asyncio
import json
import ssl
from dataclasses import replace
from pathlib import Path

import pytest

from agent_smith.crew import Crew, load_crew
from agent_smith.egress import EgressDenied, Firewall, FirewallState, settings_for
from agent_smith.egress.config import transparent_agents_from_crew
from agent_smith.errors import UsageError
from agent_smith.listeners import free_port
from tests.egress.helpers import assert_never_contains, transparent_get
from tests.fixtures.egress import GITHUB_PLACEHOLDER, EgressUpstream

AUTH = {"Authorization": f"token {GITHUB_PLACEHOLDER}"}


def _crew(transparent_listen: str | None, **blocks: int) -> Crew:
    return Crew.model_validate(
        {
            "crew": {"name": "cc"},
            "agents": [
                {"name": name, "kubernetes": {"firewall_cluster_ip": f"10.96.0.{60 + i}", "firewall_port": port}}
                for i, (name, port) in enumerate(blocks.items())
            ]
            + [{"name": "carol"}],
            "egress": {"transparent_listen": transparent_listen} if transparent_listen else {},
        }
    )


def test_each_agent_with_a_block_listens_on_its_port_at_the_transparent_host() -> None:
    crew = _crew("0.0.0.0:8443", alice=9001, bob=9002)
    # carol has no block: she keeps the shared listener, which names no agent.
    assert transparent_agents_from_crew(crew) == {"alice": ("0.0.0.0", 9001), "bob": ("0.0.0.0", 9002)}
    assert transparent_agents_from_crew(_crew("0.0.0.0:8443")) == {}
    with pytest.raises(UsageError, match=r"agents\[0\]\.kubernetes: needs egress\.transparent_listen"):
        transparent_agents_from_crew(_crew(None, alice=9001))


def test_the_firewall_settings_carry_the_agents_listeners(tmp_path: Path) -> None:
    crew = _crew("127.0.0.1:8443", alice=9001, bob=9002)
    crew = crew.model_copy(update={"runtime": crew.runtime.model_copy(update={"state_dir": str(tmp_path)})})
    settings = settings_for(crew, tmp_path, {})
    assert settings.transparent_listen == ("127.0.0.1", 8443)
    assert dict(settings.transparent_agents) == {"alice": ("127.0.0.1", 9001), "bob": ("127.0.0.1", 9002)}
    assert settings.agents == {"alice", "bob", "carol"}


def _crew_dir(root: Path, upstream: EgressUpstream, secret_file: Path, ports: dict[str, int]) -> Path:
    crew = root / "crew"
    for name in ("_shared", "alice", "bob"):
        (crew / "agents" / name).mkdir(parents=True)
    for name in ("alice", "bob"):
        (crew / "agents" / name / "CLAUDE.md").write_text(f"You are {name}.\n")
    (crew / "crew.yaml").write_text(
        f"""version: 1
crew: {{name: tp-test}}
agents:
  - name: alice
    kubernetes: {{firewall_cluster_ip: 10.96.0.61, firewall_port: {ports["alice"]}}}
  - name: bob
    kubernetes: {{firewall_cluster_ip: 10.96.0.62, firewall_port: {ports["bob"]}}}
    egress:
      allow: [{{host: localhost, allow_private: true}}]
runtime: {{state_dir: {root / "state"}}}
egress:
  listen: 127.0.0.1:{ports["proxy"]}
  transparent_listen: 127.0.0.1:{ports["shared"]}
  upstream_ca: {upstream.ca_path}
  allow:
    - {{host: api.github.test, allow_private: true}}
  secrets:
    - name: github-bob
      placeholder: {GITHUB_PLACEHOLDER}
      source: {{file: {secret_file}}}
      hosts: [api.github.test]
      agents: [bob]
"""
    )
    return crew


@pytest.mark.real
def test_a_connection_on_bob_s_port_is_bob_s_in_the_audit_his_rules_and_his_secret(
    tmp_path: Path, egress_upstream: EgressUpstream
) -> None:
    world = egress_upstream.world
    secret_file = tmp_path / "github-bob"
    secret_file.write_text(world.github_secret + "\n")
    ports = {name: free_port() for name in ("proxy", "shared", "alice", "bob")}
    crew_dir = _crew_dir(tmp_path, egress_upstream, secret_file, ports)
    crew = load_crew(crew_dir, env={}).crew
    denials: list[EgressDenied] = []

    async def resolve(host: str, port: int) -> list[tuple[str, int]]:
        # Every name is the stand-in upstream; crew.yaml, not the test, decides who may reach which.
        return [("127.0.0.1", egress_upstream.port)]

    settings = replace(settings_for(crew, crew_dir, {}), resolver=resolve, on_denied=denials.append)
    state = FirewallState(tmp_path / "state" / "tp-test" / "firewall")
    ca = str(state.ca_cert())

    async def run() -> list[tuple[str, int | None]]:
        firewall = Firewall(settings)
        await firewall.start()
        try:
            assert firewall.transparent_agent_addresses == {
                "alice": ("127.0.0.1", ports["alice"]),
                "bob": ("127.0.0.1", ports["bob"]),
            }
            results: list[tuple[str, int | None]] = []
            for label, port, host, headers in (
                ("bob secret", ports["bob"], "api.github.test", AUTH),
                ("bob own rule", ports["bob"], "localhost", {}),
                ("alice secret", ports["alice"], "api.github.test", AUTH),
                ("alice bob's rule", ports["alice"], "localhost", {}),
                ("shared bob's rule", ports["shared"], "localhost", {}),
            ):
                try:
                    status, _ = await asyncio.to_thread(transparent_get, port, ca, host, headers)
                except ssl.SSLError:
                    status = None
                results.append((label, status))
            return results
        finally:
            await firewall.stop()

    seen_before = len(world.seen)
    results = asyncio.run(run())
    assert results == [
        ("bob secret", 200),
        ("bob own rule", 200),
        ("alice secret", 200),
        ("alice bob's rule", None),
        ("shared bob's rule", None),
    ]
    seen = world.seen[seen_before:]
    # bob's listener swapped in bob's secret; alice's did not, since the rule is bob's only.
    assert seen[0].headers["Authorization"] == f"token {world.github_secret}"
    assert seen[2].headers["Authorization"] == f"token {GITHUB_PLACEHOLDER}"
    audit = [(e["agent"], e["host"], e["decision"], e["rule"], e["swapped"]) for e in _audit(state)]
    assert audit == [
        ("bob", "api.github.test", "allowed", "egress.allow[0]", ["github-bob"]),
        ("bob", "localhost", "allowed", "agents.bob.egress.allow[0]", []),
        ("alice", "api.github.test", "allowed", "egress.allow[0]", []),
        ("alice", "localhost", "denied", None, []),
        ("(transparent)", "localhost", "denied", None, []),
    ]
    assert [(d.agent, d.host) for d in denials] == [("alice", "localhost"), ("(transparent)", "localhost")]
    assert_never_contains([state.audit_log_path.read_bytes()], world.github_secret)


def _audit(state: FirewallState) -> list[dict[str, object]]:
    return [json.loads(line) for line in state.audit_log_path.read_text().splitlines() if line.strip()]
