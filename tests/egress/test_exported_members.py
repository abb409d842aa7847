"""The public surface of `agent_smith.egress` is pinned: a refactor cannot leak internals."""

import agent_smith.egress as egress


def test_public_surface() -> None:
    assert sorted(egress.__all__) == [
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
    for name in egress.__all__:
        assert getattr(egress, name) is not None
