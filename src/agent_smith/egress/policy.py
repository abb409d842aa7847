"""The firewall's decisions as pure functions over plain data.

No sockets, no clock, no files: the proxy shell (`proxy.py`) builds a view of
what it saw, asks here, and carries out the answer.

    authorize_tunnel(policy, agent, host, port)   -> TunnelAllowed | Denied
    check_address(rule_allows_private, address)    -> None | reason
    evaluate(policy, secrets, request)             -> Forward | AnswerRefresh | Denied
    Scrubber(replacements).feed(chunk) / .flush()  -> bytes with every secret replaced
"""

from __future__ import annotations

import base64
import binascii
import functools
import ipaddress
import posixpath
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal
from urllib.parse import quote, unquote, urlsplit

__all__ = [
    "AnswerRefresh",
    "ClaudePolicy",
    "Denied",
    "Forward",
    "Policy",
    "RequestView",
    "Rule",
    "Scrubber",
    "Secret",
    "TunnelAllowed",
    "authorize_tunnel",
    "check_address",
    "evaluate",
    "host_matches",
    "is_ip",
    "normalize_host",
    "redact_target",
    "split_authority",
    "visible_ascii",
]

Scheme = Literal["auto", "bearer", "token", "basic", "raw"]

_VISIBLE_ASCII = re.compile(r"^[\x21-\x7e]+$")


def visible_ascii(value: str) -> bool:
    """Whether `value` is one or more visible ASCII characters: no space, control character or
    anything else that could end or split a request line or a header (pure)."""
    return _VISIBLE_ASCII.fullmatch(value) is not None


# Metadata services that are not inside the private ranges Python already knows.
_METADATA = (
    ipaddress.ip_network("100.100.100.200/32"),  # Alibaba Cloud
    ipaddress.ip_network("fd00:ec2::254/128"),  # AWS IMDS over IPv6
)


@dataclass(frozen=True)
class Rule:
    """One allowlist entry; `origin` names where it came from (``egress.allow[2]``) for the audit log."""

    host: str
    ports: frozenset[int]
    methods: frozenset[str] | None = None
    paths: tuple[str, ...] | None = None
    allow_private: bool = False
    origin: str = ""


@dataclass(frozen=True)
class Secret:
    """A placeholder agents hold and the real value swapped in, toward `hosts`, in header `header` only."""

    name: str
    placeholder: str
    value: str
    hosts: tuple[str, ...]
    header: str = "authorization"
    scheme: Scheme = "auto"
    agents: frozenset[str] | None = None
    """Only these agents' requests get the secret (None: every agent's)."""

    def serves(self, agent: str) -> bool:
        return self.agents is None or agent in self.agents


@dataclass(frozen=True)
class ClaudePolicy:
    """The Claude subscription: stub tokens agents hold, the API hosts, and the token endpoint."""

    stub_access_token: str
    stub_refresh_token: str
    api_hosts: tuple[str, ...]
    token_host: str
    token_port: int
    token_path: str


@dataclass(frozen=True)
class Policy:
    rules: tuple[Rule, ...]
    agent_rules: Mapping[str, tuple[Rule, ...]] = field(default_factory=dict)
    claude: ClaudePolicy | None = None

    def rules_for(self, agent: str) -> tuple[Rule, ...]:
        return self.rules + self.agent_rules.get(agent, ())


@dataclass(frozen=True)
class TunnelAllowed:
    rule: Rule | None
    """None for the Claude token endpoint, which is answered locally and never reached."""


@dataclass(frozen=True)
class Denied:
    reason: str
    rule: str | None = None


@dataclass(frozen=True)
class RequestView:
    """What the shell saw of one request inside a tunnel; header names lower-case."""

    agent: str
    tunnel_host: str
    tunnel_port: int
    method: str
    target: str
    authority: str | None
    headers: tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class Forward:
    """Send upstream with these headers; `echoes` are (sent, original) pairs to scrub from the response."""

    rule: Rule
    headers: tuple[tuple[str, str], ...]
    swapped: tuple[str, ...]
    echoes: tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class AnswerRefresh:
    """The Claude CLI's own token refresh: answer it with stub tokens, never forward it."""


Verdict = Forward | AnswerRefresh | Denied


# Cached: every request normalizes the same few names several times, and the IP-literal test
# (`ipaddress`) was ~6% of the firewall's CPU per small request.
@functools.lru_cache(maxsize=4096)
def normalize_host(host: str) -> str:
    """Lower-case, no trailing dot, IPv6 without brackets and in canonical form."""
    host = host.strip().lower().rstrip(".")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    try:
        return str(ipaddress.ip_address(host))
    except ValueError:
        return host


@functools.lru_cache(maxsize=4096)
def is_ip(host: str) -> bool:
    """Whether a normalized host is an IP address rather than a name."""
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def host_matches(pattern: str, host: str) -> bool:
    """`pattern` is exact or ``*.suffix`` (any depth below suffix, not suffix itself); IPs only exactly."""
    pattern = normalize_host(pattern)
    host = normalize_host(host)
    if pattern.startswith("*."):
        return not is_ip(host) and host.endswith(pattern[1:]) and len(host) > len(pattern) - 1
    return pattern == host


def authorize_tunnel(policy: Policy, agent: str, host: str, port: int) -> TunnelAllowed | Denied:
    """May `agent` open a tunnel to host:port? Decided on the CONNECT target or SNI only."""
    host = normalize_host(host)
    if not host:
        return Denied("no target host")
    for rule in policy.rules_for(agent):
        if port in rule.ports and host_matches(rule.host, host):
            return TunnelAllowed(rule)
    claude = policy.claude
    if claude is not None and host == normalize_host(claude.token_host) and port == claude.token_port:
        return TunnelAllowed(None)
    what = "IP address" if is_ip(host) else "host"
    return Denied(f"{what} {host}:{port} is not on the allowlist")


def check_address(allow_private: bool, address: str) -> str | None:
    """Why connecting to resolved `address` is refused, or None when it is fine."""
    ip = ipaddress.ip_address(address)
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    if any(ip in net for net in _METADATA) or str(ip) == "169.254.169.254":
        return f"{address} is a cloud metadata address"
    if allow_private:
        return None
    if ip.is_loopback:
        return f"{address} is a loopback address"
    if ip.is_link_local:
        return f"{address} is a link-local address"
    if ip.is_private or ip.is_reserved or ip.is_multicast or ip.is_unspecified:
        return f"{address} is a private or reserved address"
    if isinstance(ip, ipaddress.IPv4Address) and ip in ipaddress.ip_network("100.64.0.0/10"):
        return f"{address} is a carrier-grade NAT address"
    return None


def split_authority(authority: str) -> tuple[str, int | None]:
    authority = authority.strip()
    if authority.startswith("["):
        end = authority.find("]")
        host, rest = authority[: end + 1], authority[end + 1 :]
        port = rest[1:] if rest.startswith(":") else None
    elif authority.count(":") == 1:
        host, port = authority.split(":")
    else:
        host, port = authority, None
    if port is not None and not port.isdigit():
        return normalize_host(host), -1
    return normalize_host(host), int(port) if port else None


def _path_of(target: str) -> str | None:
    """The decoded path of an origin-form target, or None when it is unsafe to compare prefixes on."""
    if not target.startswith("/"):
        return None
    # Not urlsplit: it reads "//host/public/x" as an authority and a path the server never sees.
    decoded = unquote(target.partition("?")[0])
    if "\\" in decoded or "\x00" in decoded:
        return None
    # "..;x" is ".." to servers that strip path parameters (Tomcat, Jetty).
    if any(segment.partition(";")[0] in (".", "..") for segment in decoded.split("/")):
        return None
    return decoded


def _rule_admits(rule: Rule, method: str, path: str | None) -> str | None:
    if rule.methods is not None and method not in rule.methods:
        return f"method {method} is not allowed"
    if rule.paths is not None:
        if path is None:
            return "the path is not a plain absolute path"
        if not any(path.startswith(prefix) for prefix in rule.paths):
            return f"path {path!r} is not under an allowed prefix"
    return None


def _basic_parts(value: str) -> tuple[str, str] | None:
    scheme, _, token = value.strip().partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(token.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return None
    return scheme, decoded


def _swap(secret: Secret, value: str) -> str | None:
    """`value` with the placeholder swapped for the secret in the rule's scheme, or None if it does not fit."""
    scheme, _, rest = value.strip().partition(" ")
    kind = secret.scheme
    basic = _basic_parts(value)
    if kind == "raw":
        return secret.value if value.strip() == secret.placeholder else None
    if kind in ("bearer", "token"):
        if scheme.lower() == kind and rest.strip() == secret.placeholder:
            return f"{scheme} {secret.value}"
        return None
    if basic is not None and secret.placeholder in basic[1]:
        swapped = basic[1].replace(secret.placeholder, secret.value)
        return f"{basic[0]} {base64.b64encode(swapped.encode()).decode()}"
    if kind == "basic":
        return None
    return value.replace(secret.placeholder, secret.value)


def _carries(value: str, placeholder: str) -> bool:
    if placeholder in value:
        return True
    basic = _basic_parts(value)
    return basic is not None and placeholder in basic[1]


def _lenient_path(target: str) -> str:
    """The path the most lenient server could read `target` as: decoded, path parameters, dot
    segments and repeated or back slashes resolved (pure)."""
    decoded = unquote(target.partition("?")[0].partition("#")[0]).replace("\\", "/")
    return posixpath.normpath("/" + "/".join(s.partition(";")[0] for s in decoded.split("/") if s))


def _refresh_request(claude: ClaudePolicy, request: RequestView) -> bool:
    # Compared as a server reads them: "%74oken" or "./token" is the token endpoint too, and a
    # refresh must never reach it with the agent's stub token.
    return (
        normalize_host(request.tunnel_host) == normalize_host(claude.token_host)
        and request.tunnel_port == claude.token_port
        and request.method == "POST"
        and _lenient_path(request.target) == _lenient_path(claude.token_path)
    )


def evaluate(policy: Policy, secrets: Sequence[Secret], request: RequestView) -> Verdict:
    """Decide one request inside an authorized tunnel: refuse it, answer it locally, or forward it swapped."""
    # A secret scoped to other agents is not this agent's: its placeholder is plain text here.
    secrets = [secret for secret in secrets if secret.serves(request.agent)]
    host = normalize_host(request.tunnel_host)
    if request.authority is None:
        return Denied("the request names no Host")
    named_host, named_port = split_authority(request.authority)
    if named_host != host or (named_port is not None and named_port != request.tunnel_port):
        return Denied(f"Host {request.authority!r} differs from the tunnel's {host}:{request.tunnel_port}")

    if not visible_ascii(request.target):
        return Denied("the request target is not printable ASCII")
    if not request.target.startswith("/") and not (request.method == "OPTIONS" and request.target == "*"):
        # An absolute URI would name its own host, which servers prefer over Host.
        return Denied("the request target must be a path inside the tunnel")

    claude = policy.claude
    if claude is not None and _refresh_request(claude, request):
        return AnswerRefresh()

    path = _path_of(request.target)
    rule: Rule | None = None
    refusal: Denied | None = None
    for candidate in policy.rules_for(request.agent):
        if request.tunnel_port not in candidate.ports or not host_matches(candidate.host, host):
            continue
        why = _rule_admits(candidate, request.method, path)
        if why is None:
            rule = candidate
            break
        refusal = refusal or Denied(f"{why} for {host}", candidate.origin)
    if rule is None:
        return refusal or Denied(f"host {host}:{request.tunnel_port} is not on the allowlist")

    for secret in secrets:
        if secret.placeholder in unquote(request.target) and not any(host_matches(h, host) for h in secret.hosts):
            return Denied(f"the placeholder of secret {secret.name} was sent toward {host}", rule.origin)

    headers: list[tuple[str, str]] = []
    swapped: list[str] = []
    echoes: list[tuple[str, str]] = []
    for name, value in request.headers:
        new_value = value
        for secret in secrets:
            if not _carries(new_value, secret.placeholder):
                continue
            if not any(host_matches(h, host) for h in secret.hosts):
                return Denied(f"the placeholder of secret {secret.name} was sent toward {host}", rule.origin)
            if name != secret.header:
                return Denied(
                    f"the placeholder of secret {secret.name} was sent in header {name}, not {secret.header}",
                    rule.origin,
                )
            replaced = _swap(secret, new_value)
            if replaced is None:
                return Denied(
                    f"the placeholder of secret {secret.name} in {name} is not in {secret.scheme} form",
                    rule.origin,
                )
            echoes.extend(_echo_pairs(new_value, replaced))
            new_value = replaced
            swapped.append(secret.name)
        headers.append((name, new_value))
    return Forward(rule, tuple(headers), tuple(swapped), tuple(echoes))


def _echo_pairs(original: str, sent: str) -> Iterable[tuple[str, str]]:
    """An upstream may echo the header it got; encoded forms of the secret must be scrubbed too."""
    _, _, sent_token = sent.strip().partition(" ")
    _, _, original_token = original.strip().partition(" ")
    if _basic_parts(sent) is not None and sent_token and original_token:
        yield sent_token, original_token


def redact_target(target: str, secrets: Sequence[Secret]) -> str:
    """The request target for the audit log: query values carrying a placeholder or secret are redacted."""
    parts = urlsplit(target)
    if not parts.query:
        path = parts.path
        return _redact_text(path, secrets)
    pairs = []
    for item in parts.query.split("&"):
        key, sep, value = item.partition("=")
        plain = unquote(value)
        if any(s.placeholder in plain or s.value in plain for s in secrets):
            value = "REDACTED"
        pairs.append(f"{key}{sep}{value}")
    return f"{_redact_text(parts.path, secrets)}?{'&'.join(pairs)}"


def _redact_text(text: str, secrets: Sequence[Secret]) -> str:
    for secret in secrets:
        for needle in secret_forms(secret.value, ""):
            if needle:
                text = text.replace(needle, "REDACTED")
    return text


def secret_forms(value: str, placeholder: str) -> dict[str, str]:
    """Each form a secret takes in what an upstream may send back, with the placeholder in the same
    form: as is, percent-encoded (all of it, or all but "/", as in a path), and JSON's "\\/"."""
    forms: dict[str, str] = {}
    for form in (str, functools.partial(quote, safe=""), quote, _json_slashes):
        forms[form(value)] = form(placeholder)
    return forms


def _json_slashes(text: str) -> str:
    return text.replace("/", "\\/")


@functools.lru_cache(maxsize=256)
def _compile(
    needles: frozenset[bytes],
) -> tuple[re.Pattern[bytes] | None, tuple[tuple[bytes, bytes], ...], frozenset[bytes], int]:
    """The matcher for a set of needles; the same secrets recur on every request, so it is cached.

    (pattern for the replacements, (first byte, needle) pairs for the quick no-match check,
    every proper prefix of a needle, the longest needle's length).
    """
    ordered = sorted(needles, key=len, reverse=True)
    pattern = re.compile(b"|".join(re.escape(n) for n in ordered)) if ordered else None
    prefixes = frozenset(n[:i] for n in ordered for i in range(1, len(n)))
    firsts = tuple((n[:1], n) for n in ordered)
    return pattern, firsts, prefixes, max((len(n) for n in ordered), default=0)


class Scrubber:
    """Replace every needle in a byte stream, however the stream is cut into chunks.

    A chunk's tail that could be the start of a needle is held back until the
    next chunk decides it; anything else goes out at once, so an SSE event
    (which ends in a blank line) is never delayed by the scrub.
    """

    def __init__(self, replacements: Mapping[bytes, bytes]) -> None:
        self._replacements = {k: v for k, v in replacements.items() if k}
        self._pattern, self._needles, self._prefixes, self._longest = _compile(frozenset(self._replacements))
        self._held = b""

    @property
    def replacements(self) -> dict[bytes, bytes]:
        return dict(self._replacements)

    @property
    def active(self) -> bool:
        return self._pattern is not None

    def _tail_to_hold(self, data: bytes) -> int:
        for size in range(min(len(data), self._longest - 1), 0, -1):
            if data[-size:] in self._prefixes:
                return size
        return 0

    def _pending_start(self, data: bytes, pos: int, before: int) -> int | None:
        for start in range(max(pos, len(data) - self._longest + 1), before):
            if data[start:] in self._prefixes:
                return start
        return None

    def _could_grow(self, rest: bytes) -> bool:
        return any(len(n) > len(rest) and n.startswith(rest) for n in self._replacements)

    def feed(self, chunk: bytes) -> bytes:
        if self._pattern is None:
            return chunk
        # h11 hands body data over as bytearray at times, which cannot be looked up in a set.
        chunk = bytes(chunk)
        data = self._held + chunk if self._held else chunk
        if not any(first in data and needle in data for first, needle in self._needles):
            # The common case, kept cheap for bulk bodies: no needle at all, at most a tail to hold.
            # One substring search per needle, not the alternation: CPython's regex engine has no
            # fast path for `a|b` and scans ~0.15 GB/s. `in` runs at 2-7 GB/s, except over a long
            # run of one byte whose value shares its low 6 bits with a needle byte (0.24 GB/s, a
            # quirk of its shift table); the memchr for the needle's first byte rules most of
            # those out first. This decides the throughput of a large download.
            hold = self._tail_to_hold(data)
            self._held = data[len(data) - hold :] if hold else b""
            return data[: len(data) - hold] if hold else data
        out: list[bytes] = []
        pos = 0
        for match in self._pattern.finditer(data):
            start = match.start()
            # A needle that may still complete with the next chunk, starting before this match
            # or at it and longer, would win in the whole stream: decide it once more data is in.
            pending = self._pending_start(data, pos, start)
            if pending is None and len(data) - start < self._longest and self._could_grow(data[start:]):
                pending = start
            if pending is not None:
                out.append(data[pos:pending])
                self._held = data[pending:]
                return b"".join(out)
            out.append(data[pos:start])
            out.append(self._replacements[match.group()])
            pos = match.end()
        rest = data[pos:]
        hold = self._tail_to_hold(rest)
        out.append(rest[: len(rest) - hold])
        self._held = rest[len(rest) - hold :]
        return b"".join(out)

    def flush(self) -> bytes:
        held, self._held = self._held, b""
        if self._pattern is None or not held:
            return held
        return self._pattern.sub(lambda m: self._replacements[m.group()], held)

    def scrub(self, data: bytes) -> bytes:
        """The whole of a short value at once (header values)."""
        if self._pattern is None:
            return data
        return self._pattern.sub(lambda m: self._replacements[m.group()], data)
