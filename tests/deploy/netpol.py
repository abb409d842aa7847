"""What rendered NetworkPolicies allow between two pods of the render, as the API defines it.

A pod is isolated in a direction once any policy selecting it lists that
direction in ``policyTypes``; then a connection needs a rule allowing it in
some such policy, on both ends (the source's egress, the destination's
ingress). A rule without ``from``/``to`` admits every peer, one without
``ports`` every port. Pod-to-pod only, within the render's namespace: peers
with a ``namespaceSelector`` or an ``ipBlock`` never match here.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

Labels = Mapping[str, str]


def _selects(selector: Labels, labels: Labels) -> bool:
    return all(labels.get(key) == value for key, value in selector.items())


def pod_labels(manifests: Sequence[Mapping[str, Any]], kind: str, name: str) -> dict[str, str]:
    """The pod template labels of a rendered workload."""
    for obj in manifests:
        if obj["kind"] == kind and obj["metadata"]["name"] == name:
            return dict(obj["spec"]["template"]["metadata"]["labels"])
    raise AssertionError(f"{kind}/{name} is not rendered")


def _admits(rules: Sequence[Mapping[str, Any]], peers_key: str, peer: Labels, port: int) -> bool:
    for rule in rules:
        peers = rule.get(peers_key)
        peer_ok = not peers or any(
            "podSelector" in p
            and "namespaceSelector" not in p
            and _selects(p["podSelector"].get("matchLabels", {}), peer)
            for p in peers
        )
        ports = rule.get("ports")
        port_ok = not ports or any(p.get("protocol", "TCP") == "TCP" and p.get("port") == port for p in ports)
        if peer_ok and port_ok:
            return True
    return False


def _direction_allows(
    policies: Sequence[Mapping[str, Any]], pod: Labels, direction: str, peer: Labels, port: int
) -> bool:
    rules_key, peers_key = ("egress", "to") if direction == "Egress" else ("ingress", "from")
    isolating = [
        p["spec"]
        for p in policies
        if _selects(p["spec"]["podSelector"].get("matchLabels", {}), pod)
        and direction in p["spec"].get("policyTypes", [])
    ]
    if not isolating:
        return True
    return any(_admits(spec.get(rules_key) or [], peers_key, peer, port) for spec in isolating)


def allows(manifests: Sequence[Mapping[str, Any]], source: Labels, destination: Labels, port: int) -> bool:
    """Whether a TCP connection from a pod labelled `source` to `port` of one labelled `destination` is allowed."""
    policies = [m for m in manifests if m["kind"] == "NetworkPolicy"]
    return _direction_allows(policies, source, "Egress", destination, port) and _direction_allows(
        policies, destination, "Ingress", source, port
    )
