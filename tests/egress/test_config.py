"""From crew.yaml's egress section to the policy core's plain data."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from agent_smith.crew import Crew
from agent_smith.egress.config import parse_address, policy_from_crew, policy_warnings, secrets_from_crew
from agent_smith.errors import UsageError


def _crew(egress: dict[str, object], agents: list[dict[str, object]] | None = None) -> Crew:
    return Crew.model_validate({"crew": {"name": "cc"}, "agents": agents or [{"name": "devbot"}], "egress": egress})


def test_rules_carry_their_origin_and_claude_adds_its_api_hosts() -> None:
    crew = _crew(
        {
            "allow": [{"host": "api.github.com"}, {"host": "*.example.org", "ports": [443, 8443], "methods": ["get"]}],
            "claude_login": {"enabled": True},
        },
        [{"name": "devbot", "egress": {"allow": [{"host": "pypi.org"}]}}],
    )
    policy = policy_from_crew(crew)
    assert [r.origin for r in policy.rules] == [
        "egress.allow[0]",
        "egress.allow[1]",
        "egress.claude_login.api_hosts[0]",
    ]
    assert policy.rules[1].methods == frozenset({"GET"})
    assert policy.rules[1].ports == frozenset({443, 8443})
    assert [r.origin for r in policy.agent_rules["devbot"]] == ["agents.devbot.egress.allow[0]"]
    assert policy.claude is not None
    assert (policy.claude.token_host, policy.claude.token_port, policy.claude.token_path) == (
        "platform.claude.com",
        443,
        "/v1/oauth/token",
    )


def _secret_crew(source: dict[str, str]) -> Crew:
    return _crew(
        {
            "secrets": [
                {
                    "name": "github",
                    "placeholder": "agent-smith-placeholder-github-token",
                    "source": source,
                    "hosts": ["api.github.com"],
                }
            ]
        }
    )


def test_secrets_come_from_env_or_a_file_relative_to_the_crew(tmp_path: Path) -> None:
    (tmp_path / "token").write_text("ghp-real-value-0123456789\n")
    [from_file] = secrets_from_crew(_secret_crew({"file": "token"}), {}, tmp_path)
    [from_env] = secrets_from_crew(_secret_crew({"env": "GH"}), {"GH": "ghp-real-value-0123456789"}, tmp_path)
    assert from_file.value == from_env.value == "ghp-real-value-0123456789"
    assert from_file.header == "authorization"


@pytest.mark.parametrize(
    ("environ", "message"),
    [
        ({}, "environment variable GH is not set"),
        ({"GH": "has space inside-0123"}, "spaces, control or non-ASCII"),
        ({"GH": "x1y2z3"}, "shorter than 8"),
        ({"GH": "agent-smith-placeholder-github-token-x"}, "overlap"),
    ],
)
def test_bad_secret_values_are_refused_without_printing_them(
    environ: dict[str, str], message: str, tmp_path: Path
) -> None:
    with pytest.raises(UsageError) as exc:
        secrets_from_crew(_secret_crew({"env": "GH"}), environ, tmp_path)
    assert message in str(exc.value)
    for value in environ.values():
        assert value not in str(exc.value)


def test_a_missing_secret_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match=r"cannot read .*nope"):
        secrets_from_crew(_secret_crew({"file": "nope"}), {}, tmp_path)


@pytest.mark.parametrize(("text", "expected"), [("127.0.0.1:3128", ("127.0.0.1", 3128)), ("[::1]:80", ("::1", 80))])
def test_addresses(text: str, expected: tuple[str, int]) -> None:
    assert parse_address(text, "egress.listen") == expected


def test_a_bad_address_is_refused() -> None:
    with pytest.raises(UsageError, match=r"egress\.listen"):
        parse_address("nowhere", "egress.listen")


def test_what_can_never_take_effect_is_warned_about() -> None:
    secret = {
        "name": "github",
        "placeholder": "agent-smith-placeholder-github-token",
        "source": {"env": "AGENT_SMITH_SECRET_GITHUB"},
        "hosts": ["api.github.com", "*.githubusercontent.com", "uploads.github.com"],
    }
    crew = _crew(
        {
            "allow": [
                {"host": "api.github.com"},
                {"host": "*.githubusercontent.com"},
                {"host": "169.254.169.254", "allow_private": True},
            ],
            "secrets": [secret],
        },
        [{"name": "devbot", "egress": {"allow": [{"host": "[fd00:ec2::254]", "allow_private": True}]}}],
    )
    assert policy_warnings(crew) == [
        "egress.allow[2]: 169.254.169.254 is a cloud metadata address, refused even with allow_private: "
        "the rule allows nothing",
        "agents.devbot.egress.allow[0]: [fd00:ec2::254] is a cloud metadata address, refused even with "
        "allow_private: the rule allows nothing",
        "egress.secrets[0] (github): no allow rule covers uploads.github.com: it is never sent there",
    ]
    covered = _crew({"allow": [{"host": "*.github.com"}], "secrets": [{**secret, "hosts": ["uploads.github.com"]}]})
    assert policy_warnings(covered) == []


def test_an_allow_rule_without_ports_is_refused() -> None:
    with pytest.raises(ValidationError, match="at least 1 item"):
        _crew({"allow": [{"host": "pypi.org", "ports": []}]})
