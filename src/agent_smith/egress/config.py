"""From the crew's ``egress`` section to the plain data the policy core decides on."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from urllib.parse import urlsplit

from agent_smith.crew import Crew, HostRule, SecretRule
from agent_smith.egress.policy import (
    ClaudePolicy,
    Policy,
    Rule,
    Secret,
    check_address,
    host_matches,
    is_ip,
    normalize_host,
    visible_ascii,
)
from agent_smith.errors import UsageError

__all__ = ["load_secret", "parse_address", "policy_from_crew", "secrets_from_crew", "transparent_agents_from_crew"]


def _rule(rule: HostRule, origin: str) -> Rule:
    return Rule(
        host=rule.host,
        ports=frozenset(rule.ports),
        methods=frozenset(rule.methods) if rule.methods is not None else None,
        paths=tuple(rule.paths) if rule.paths is not None else None,
        allow_private=rule.allow_private,
        origin=origin,
    )


def policy_from_crew(crew: Crew) -> Policy:
    egress = crew.egress
    rules = [_rule(r, f"egress.allow[{i}]") for i, r in enumerate(egress.allow)]
    claude: ClaudePolicy | None = None
    if egress.claude_login.enabled:
        login = egress.claude_login
        rules += [
            Rule(host=h, ports=frozenset({443}), origin=f"egress.claude_login.api_hosts[{i}]")
            for i, h in enumerate(login.api_hosts)
        ]
        url = urlsplit(login.token_url)
        claude = ClaudePolicy(
            stub_access_token=login.stub_access_token,
            stub_refresh_token=login.stub_refresh_token,
            api_hosts=tuple(login.api_hosts),
            token_host=url.hostname or "",
            token_port=url.port or 443,
            token_path=url.path or "/",
        )
    agent_rules = {
        agent.name: tuple(_rule(r, f"agents.{agent.name}.egress.allow[{i}]") for i, r in enumerate(agent.egress.allow))
        for agent in crew.agents
    }
    return Policy(rules=tuple(rules), agent_rules=agent_rules, claude=claude)


def policy_warnings(crew: Crew) -> list[str]:
    """What in the crew's egress settings can never take effect, for `validate` to say (pure):
    a rule for a cloud metadata address (refused even with allow_private), a secret toward a
    host no rule allows (never sent)."""
    policy = policy_from_crew(crew)
    every = [*policy.rules, *(rule for rules in policy.agent_rules.values() for rule in rules)]
    found = [
        f"{rule.origin}: {rule.host} is a cloud metadata address, refused even with allow_private: "
        "the rule allows nothing"
        for rule in every
        if is_ip(normalize_host(rule.host)) and check_address(True, normalize_host(rule.host)) is not None
    ]
    for i, secret in enumerate(crew.egress.secrets):
        for host in secret.hosts:
            if not any(rule.host == host or host_matches(rule.host, host) for rule in every):
                found.append(
                    f"egress.secrets[{i}] ({secret.name}): no allow rule covers {host}: it is never sent there"
                )
    return found


def load_secret(rule: SecretRule, environ: Mapping[str, str], base: Path) -> str:
    """The real value of one secret rule, from its env var or file; a one-line error naming the rule if absent."""
    source = rule.source
    if source.env is not None:
        value = environ.get(source.env)
        if not value:
            raise UsageError(f"egress secret {rule.name}: environment variable {source.env} is not set")
        return value.strip()
    path = Path(source.file or "").expanduser()
    if not path.is_absolute():
        path = base / path
    try:
        value = path.read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise UsageError(f"egress secret {rule.name}: cannot read {path}: {exc.strerror}") from exc
    except UnicodeDecodeError as exc:
        raise UsageError(f"egress secret {rule.name}: {path} is not UTF-8 text") from exc
    if not value:
        raise UsageError(f"egress secret {rule.name}: {path} is empty")
    return value


def secrets_from_crew(crew: Crew, environ: Mapping[str, str], base: Path) -> tuple[Secret, ...]:
    out: list[Secret] = []
    for rule in crew.egress.secrets:
        value = load_secret(rule, environ, base)
        if not visible_ascii(value):
            raise UsageError(
                f"egress secret {rule.name}: the value has spaces, control or non-ASCII characters; "
                "it could not travel in a header"
            )
        if len(value) < 8:
            raise UsageError(f"egress secret {rule.name}: the value is shorter than 8 characters")
        if rule.placeholder in value or value in rule.placeholder:
            raise UsageError(f"egress secret {rule.name}: the real value and the placeholder overlap")
        out.append(
            Secret(
                name=rule.name,
                placeholder=rule.placeholder,
                value=value,
                hosts=tuple(rule.hosts),
                header=rule.where.header.lower(),
                scheme=rule.where.scheme,
                agents=frozenset(rule.agents) if rule.agents is not None else None,
            )
        )
    return tuple(out)


def parse_address(text: str, what: str) -> tuple[str, int]:
    """``host:port`` or ``[v6]:port`` as (host, port)."""
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise UsageError(f"{what}: {text!r} is not host:port")
    return host.strip("[]") or "127.0.0.1", int(port)


def transparent_agents_from_crew(crew: Crew) -> dict[str, tuple[str, int]]:
    """Each agent with its own transparent listener (``agents[].kubernetes``) → the address it listens on.

    The host is `egress.transparent_listen`'s, the port the agent's own `firewall_port`.
    """
    blocks = [(i, agent) for i, agent in enumerate(crew.agents) if agent.kubernetes is not None]
    if not blocks:
        return {}
    listen = crew.egress.transparent_listen
    if listen is None:
        raise UsageError(f"agents[{blocks[0][0]}].kubernetes: needs egress.transparent_listen")
    host = parse_address(listen, "egress.transparent_listen")[0]
    return {agent.name: (host, agent.kubernetes.firewall_port) for _, agent in blocks if agent.kubernetes is not None}
