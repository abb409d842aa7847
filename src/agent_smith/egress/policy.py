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
import heapq
import ipaddress
import itertools
import posixpath
import re
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal
from urllib.parse import quote, quote_from_bytes, unquote, urlsplit

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
    # Out of repr: a Secret in a log line, an assertion or a traceback's locals shows no value.
    value: str = field(repr=False)
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


# A run of base64 in either alphabet (standard "+/", URL-safe "-_"), its padding included.
_BASE64_RUN = re.compile(r"[A-Za-z0-9+/_-]+=*")


def _from_base64(token: str) -> tuple[bytes, bool, bool] | None:
    """(bytes, URL-safe alphabet, padded) that `token` decodes to, or None when it is no base64.

    Padded unless it needed padding and had none (as in JWTs): a token whose length needed none
    tells nothing, and most encoders pad (Basic credentials do)."""
    urlsafe = "-" in token or "_" in token
    body = token.rstrip("=")
    if (urlsafe and ("+" in token or "/" in token)) or len(body) % 4 == 1:
        return None
    try:
        raw = base64.b64decode(body + "=" * (-len(body) % 4), altchars=b"-_" if urlsafe else None, validate=True)
    except binascii.Error:
        return None
    return raw, urlsafe, body != token or len(body) % 4 == 0


def _to_base64(raw: bytes, urlsafe: bool, padded: bool) -> str:
    encoded = (base64.urlsafe_b64encode if urlsafe else base64.b64encode)(raw).decode()
    return encoded if padded else encoded.rstrip("=")


@functools.lru_cache(maxsize=256)
def _base64_cores(placeholder: str) -> tuple[str, ...]:
    """What the base64 (standard alphabet) of any bytes holding `placeholder` holds, whatever its
    offset in them: one string per offset modulo 3, without the characters at either end that
    share bits with the bytes around it (pure)."""
    raw = placeholder.encode()
    cores = []
    for shift in range(3):
        encoded = base64.b64encode(b"\0" * shift + raw).decode()
        # Character i holds bits 6i to 6i+5; the placeholder's are 8*shift to 8*(shift+len)-1.
        cores.append(encoded[-(-8 * shift // 6) : 8 * (shift + len(raw)) // 6])
    return tuple(cores)


def _carries_base64(text: str, placeholder: str) -> bool:
    """Whether `text` holds base64 (either alphabet) of anything holding `placeholder` (pure): a
    Basic credential, a bearer token some clients make of "user:token", a custom header, a JSON
    document in base64 (Docker's X-Registry-Auth), however the text around it is cut."""
    standard = text.translate(_URLSAFE_TO_STANDARD)
    return any(core in standard for core in _base64_cores(placeholder))


_URLSAFE_TO_STANDARD = str.maketrans("-_", "+/")


def _swap_base64(value: str, placeholder: str, secret: str) -> tuple[str, list[tuple[str, str]]]:
    """`value` with every base64 token that decodes to bytes holding the placeholder re-encoded
    (same alphabet, same padding) with the secret in its place, and the (sent, original) tokens."""
    echoes: list[tuple[str, str]] = []

    def swap(match: re.Match[str]) -> str:
        token = match.group()
        decoded = _from_base64(token)
        if decoded is None or placeholder.encode() not in decoded[0]:
            return token
        raw, urlsafe, padded = decoded
        sent = _to_base64(raw.replace(placeholder.encode(), secret.encode()), urlsafe, padded)
        echoes.append((sent, token))
        return sent

    return _BASE64_RUN.sub(swap, value), echoes


def _swap(secret: Secret, value: str) -> tuple[str, tuple[tuple[str, str], ...]] | None:
    """`value` with the placeholder swapped for the secret in the rule's scheme, and the (sent,
    original) base64 tokens swapped inside it (an upstream may echo one); None if it does not fit."""
    scheme, _, rest = value.strip().partition(" ")
    kind = secret.scheme
    if kind == "raw":
        return (secret.value, ()) if value.strip() == secret.placeholder else None
    if kind in ("bearer", "token"):
        if scheme.lower() == kind and rest.strip() == secret.placeholder:
            return f"{scheme} {secret.value}", ()
        return None
    if kind == "basic" and _basic_parts(value) is None:
        return None
    # "auto" swaps it wherever it is, as is or inside base64; "basic" only inside the credentials.
    swapped = value if kind == "basic" else value.replace(secret.placeholder, secret.value)
    swapped, echoes = _swap_base64(swapped, secret.placeholder, secret.value)
    if _carries(swapped, secret.placeholder):
        # Left as is (basic), or encoded where no base64 token decodes to it: it cannot be swapped.
        return None
    return swapped, tuple(echoes)


def _carries(value: str, placeholder: str) -> bool:
    return placeholder in value or _carries_base64(value, placeholder)


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

    readings = _decodings(request.target)
    if readings is None:
        return Denied(f"the request target is percent-encoded more than {_DECODE_ROUNDS} times over", rule.origin)
    for secret in secrets:
        if any(_carries(reading, secret.placeholder) for reading in readings) and not any(
            host_matches(h, host) for h in secret.hosts
        ):
            return Denied(f"the placeholder of secret {secret.name} was sent toward {host}", rule.origin)

    headers: list[tuple[str, str]] = []
    swapped: list[str] = []
    echoes: list[tuple[str, str]] = []
    for name, value in request.headers:
        for secret in secrets:
            # Names are never swapped: a placeholder in one is a confused agent's toward any host.
            if secret.placeholder.lower() in name:
                where = "toward" if not any(host_matches(h, host) for h in secret.hosts) else "in a header name to"
                return Denied(f"the placeholder of secret {secret.name} was sent {where} {host}", rule.origin)
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
            new_value, sent_tokens = replaced
            echoes.extend(sent_tokens)
            swapped.append(secret.name)
        headers.append((name, new_value))
    return Forward(rule, tuple(headers), tuple(swapped), tuple(echoes))


# Servers decode a target once, frameworks and proxies behind them once more; nobody decodes
# sixteen times, and a target that still changes then is refused rather than half read.
_DECODE_ROUNDS = 16
# IIS's non-standard "%u0061".
_PERCENT_U = re.compile(r"%[uU]([0-9A-Fa-f]{4})")


def _decodings(target: str) -> tuple[str, ...] | None:
    """`target` and each reading of it decoded once more (percent escapes, and IIS's ``%u0061``)
    until it stops changing, or None if it still changes after _DECODE_ROUNDS (pure).

    Every round that changes the text shortens it, so the rounds end on their own; the bound
    keeps a crafted target from costing a round per escape.
    """
    readings = [target]
    # One round more than the bound: the one that finds nothing left to decode.
    for _ in range(_DECODE_ROUNDS + 1):
        decoded = _PERCENT_U.sub(lambda m: chr(int(m.group(1), 16)), unquote(readings[-1]))
        if decoded == readings[-1]:
            return tuple(readings)
        readings.append(decoded)
    return None


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
    table = {found.encode(): b"REDACTED" for secret in secrets for found in secret_forms(secret.value, "")}
    # surrogatepass: a target is any str the shell decoded, and comes back unchanged but for the redactions.
    return Scrubber(table).scrub(text.encode("utf-8", "surrogatepass")).decode("utf-8", "surrogatepass")


def secret_forms(value: str, placeholder: str) -> dict[str, str]:
    """Each form a secret takes in what an upstream may send back, with the placeholder in the same
    form: as is, percent-encoded (all of it, or all but "/", as in a path), and JSON's "\\/".

    The Scrubber also finds every other percent-encoded spelling of each form (any subset of its
    bytes escaped, in either hex case), so the encoded forms here matter for their own
    replacement and for a second round of encoding only.
    """
    forms: dict[str, str] = {}
    for form in (str, functools.partial(quote, safe=""), quote, _json_slashes):
        forms[form(value)] = form(placeholder)
    return forms


def _json_slashes(text: str) -> str:
    return text.replace("/", "\\/")


def _hex_digit(digit: str) -> bytes:
    # Encoders differ in hex case: Python and Go write "%2F", .NET's HttpUtility.UrlEncode "%2f";
    # JSON's "\u002F" and "\u002f" are the same character.
    return f"[{digit}{digit.lower()}]".encode() if digit in "ABCDEF" else digit.encode()


# JSON's two-character escapes of the visible bytes a secret may hold ("\b", "\n" and the like
# spell control characters, which no secret holds).
_JSON_SHORT = frozenset(b'/"\\')
# The longest escape of one byte: JSON's "\u00XX".
_WIDEST = 6


def _escape_units(byte: int) -> list[list[bytes]]:
    """Each escape of `byte` as regex sources, one per byte of the escape: ``%XX`` in either hex
    case, JSON's ``\\u00XX`` (ASCII only: above it, a \\u escape spells a character, not a byte
    of its UTF-8) and JSON's ``\\/``, ``\\"`` or ``\\\\``."""
    high, low = (_hex_digit(d) for d in f"{byte:02X}")
    units = [[b"%", high, low]]
    if byte < 0x80:
        units.append([b"\\\\", b"u", b"0", b"0", high, low])
    if byte in _JSON_SHORT:
        units.append([b"\\\\", re.escape(bytes([byte]))])
    return units


def _escapes(byte: int) -> list[bytes]:
    """Regex sources, one per escape of `byte`, each starting with a literal byte."""
    return [b"".join(units) for units in _escape_units(byte)]


def _cuts(byte: int) -> list[bytes]:
    """Regex sources for a start of an escape of `byte` that the end of the data cut short ("%",
    "%2", "\\", "\\u00", "\\u002"), up to that end; each starts with a literal byte."""
    starts = []
    for units in _escape_units(byte):
        # Every proper start of the escape: its first unit, then each further one optional.
        nested = b""
        for unit in reversed(units[1:-1]):
            nested = b"(?:" + unit + nested + b")?"
        starts.append(units[0] + nested + b"\\Z")
    return list(dict.fromkeys(starts))


def _spelled(byte: int, *, to_end: bool = False) -> bytes:
    """Regex source for one byte as itself or escaped (`_escape_units`); `to_end` also admits the
    data ending there, or in a cut-off escape, as a chunk that stops inside a needle does.

    Any byte, unreserved ones too: encoders differ in what they escape (Go's PathEscape keeps "+"
    and "=", .NET's JSON writer escapes "+" as "\\u002B", some escape every byte), and whatever the
    spelling, a decoder reads the secret. The escapes of one spelling may mix, as layered encodings
    (a URL inside JSON) do.
    """
    # The escapes first: for "%" itself, "%25" must not be read as "%" and a stray "25".
    forms = [*_escapes(byte), re.escape(bytes([byte]))]
    if to_end:
        forms += [*_cuts(byte), b"\\Z"]
    return b"(?:" + b"|".join(forms) + b")"


def _alternatives(needle: bytes, *, to_end: bool) -> list[bytes]:
    """Regex sources, one per form of the needle's first byte, for a spelling of `needle` (the rest
    in a group) or, `to_end`, of a start of it running to the end of the data.

    Each starts with a literal byte, which lets the regex engine skip to the bytes that can start a
    match (a charset scan in C) instead of trying every alternative at every offset: 100 times
    faster on text full of escapes.
    """
    first, rest = needle[0], b"".join(_spelled(byte, to_end=to_end) for byte in needle[1:])
    forms = [*_escapes(first), re.escape(bytes([first]))]
    if to_end:
        return [form + rest + b"\\Z" for form in forms] + _cuts(first)
    return [form + b"(" + rest + b")" for form in forms]


def _hex_class(digits: Iterable[str]) -> bytes:
    """A regex class for hex digits (upper case) in either case."""
    return b"[" + "".join(sorted({c for d in digits for c in (d, d.lower())})).encode() + b"]"


def _hex_pairs(chosen: Iterable[int], context: Callable[[int], bytes]) -> bytes:
    """Regex source for the two hex digits of any byte of `chosen`, in either case, each followed
    by its `context`. One branch per first digit, then per second one: a few tests per escape."""
    by_high: dict[str, dict[str, bytes]] = {}
    for byte in chosen:
        digits = f"{byte:02X}"
        by_high.setdefault(digits[0], {})[digits[1]] = context(byte)
    branches = []
    for high, lows in sorted(by_high.items()):
        # The second digits that need no context share one class; the others get a branch each.
        bare = sorted(low for low, after in lows.items() if not after)
        inner = [_hex_class(bare)] if bare else []
        inner += [_hex_class(low) + after for low, after in sorted(lows.items()) if after]
        # A lookahead for all of them first: most escapes in text are of no needle byte, and one
        # class test rejects them where the branches would be tried one by one.
        guard = b"(?=" + _hex_class(lows) + b")" if len(inner) > 1 else b""
        branches.append(_hex_class(high) + guard + b"(?:" + b"|".join(inner) + b")")
    return b"(?:" + b"|".join(branches) + b")"


def _escapes_of(
    chosen: Iterable[int], before: Mapping[int, set[int]] | None = None, after: Mapping[int, set[int]] | None = None
) -> dict[bytes, bytes]:
    """Regex sources for an escape (`_escape_units`) of any byte of `chosen`, by the bytes every
    escape of the source starts with ("%", "\\u00", "\\/"). Each escape is followed by its context when it
    has one: the byte before the escape, as itself, is in before[byte] (a lookbehind over the
    escape's fixed width), or the byte after it, as itself or escaped, is in after[byte]."""
    chosen = sorted(chosen)

    def context(width: int) -> Callable[[int], bytes]:
        def of(byte: int) -> bytes:
            sides = []
            if before is not None and byte in before:
                # "." never meets a newline here: it stands for the escape's own bytes.
                sides.append(b"(?<=" + _literal_class(before[byte]) + b"." * width + b")")
            if after is not None and byte in after:
                escaped = b"|".join(_escapes_of(after[byte]).values())
                sides.append(b"(?=" + _literal_class(after[byte]) + b"|" + escaped + b")")
            return b"(?:" + b"|".join(sides) + b")" if sides else b""

        return of

    kinds = {b"%": b"%" + _hex_pairs(chosen, context(3))}
    if ascii_ := [byte for byte in chosen if byte < 0x80]:
        kinds[b"\\u00"] = b"\\\\u00" + _hex_pairs(ascii_, context(6))
    for byte in chosen:
        if byte in _JSON_SHORT:
            lead = b"\\" + bytes([byte])
            kinds[lead] = re.escape(lead) + context(2)(byte)
    return kinds


def _literal_class(chosen: Iterable[int]) -> bytes:
    return b"[" + b"".join(re.escape(bytes([byte])) for byte in sorted(chosen)) + b"]"


def _telltales(needles: Iterable[bytes]) -> dict[bytes, bytes]:
    """Regex sources, by their first byte, for the escapes that give away a spelling other than the needle itself (pure).

    Such a spelling escapes some byte b of its needle. In a needle of one byte, that escape is all
    of it: any escape of b is flagged. In a longer one, b has a neighbour in the needle, spelled
    next to it in the data: flag an escape of b only where the byte after it (as itself or escaped)
    follows b somewhere in a needle, or the byte before it, as itself, precedes b somewhere in one.
    An escaped byte before b needs no test of its own: it is an escape followed by b, flagged
    there. A random secret's neighbouring bytes are few, and seldom the ones around an escape in
    text: a form body dense with escapes has next to none flagged, where flagging every escape of a
    needle byte (all of "%2F", "%3D" and "%2B", for a base64 secret) would flag most of them; JSON
    full of '\\"' and "\\u00e9" has none, as no secret holds those bytes next to each other.

    The context is a lookaround: every match is one escape, so a flagged escape lies inside the
    spelling that has it. One source per kind of escape, by the bytes it starts with ("%",
    "\\u00", "\\/"), each searched only where those occur: a source that starts with literal
    bytes is scanned for them in C at GB/s, where one that starts with either of two bytes is
    tried byte by byte (ten times slower); and the many "\\n" and '\\"' of JSON start none.
    """
    after: dict[int, set[int]] = {}
    before: dict[int, set[int]] = {}
    alone: set[int] = set()
    for needle in needles:
        if len(needle) == 1:
            alone.add(needle[0])
        for first, second in itertools.pairwise(needle):
            after.setdefault(first, set()).add(second)
            before.setdefault(second, set()).add(first)
    for byte in alone:
        after.pop(byte, None)
        before.pop(byte, None)
    return _escapes_of(alone | after.keys() | before.keys(), before, after)


@dataclass(frozen=True)
class _Matcher:
    """What a Scrubber searches with, for one set of needles."""

    pattern: re.Pattern[bytes] | None
    """Every spelling of every needle, the longest needle first; each alternative (a form of the
    needle's first byte) holds the rest of the needle in a group of its own."""
    order: tuple[bytes, ...]
    """The needles in the order of `pattern`."""
    needle_of: tuple[int, ...]
    """The index in `order` of the needle of each group of `pattern` (by group number)."""
    literals: tuple[tuple[bytes, bytes], ...]
    """(first byte, needle): the quick check for the needles as they are."""
    escapes: tuple[tuple[bytes, re.Pattern[bytes]], ...]
    """(first byte, pattern): an escape of a needle byte next to a byte it is next to in a needle
    (`_telltales`): every spelling other than the needle itself has one."""
    partial: re.Pattern[bytes] | None
    """A spelling of a needle's start that runs to the end of the data: the tail to hold back."""
    grows: tuple[re.Pattern[bytes], ...]
    """`partial` for each needle of `order` alone."""
    longest: int
    """The longest spelling of a needle: every byte escaped."""
    breaks: bool = False
    """Whether no spelling of a needle holds a byte of `_BREAKS`: then none reaches across one."""


# Space and control bytes: no escape holds one, so a spelling holds one only where its needle
# does, and tokens hold none.
_BREAKS = bytes(range(0x21))
_BREAKS_TO_NEWLINE = bytes.maketrans(_BREAKS, b"\n" * len(_BREAKS))


@functools.lru_cache(maxsize=256)
def _compile(needles: frozenset[bytes]) -> _Matcher:
    """The matcher for a set of needles; the same secrets recur on every request, so it is cached."""
    order = tuple(sorted(needles, key=lambda n: (len(n), n), reverse=True))
    if not order:
        return _Matcher(None, (), (), (), (), None, (), 0)
    alternatives = [_alternatives(needle, to_end=False) for needle in order]
    # Group 0 is the whole match: no needle's.
    needle_of = (-1, *(i for i, forms in enumerate(alternatives) for _ in forms))
    starts = [b"|".join(_alternatives(needle, to_end=True)) for needle in order]
    return _Matcher(
        pattern=re.compile(b"|".join(a for forms in alternatives for a in forms)),
        order=order,
        needle_of=needle_of,
        literals=tuple((n[:1], n) for n in order),
        escapes=tuple((lead, re.compile(source)) for lead, source in _telltales(order).items()),
        partial=re.compile(b"|".join(starts)),
        grows=tuple(re.compile(start) for start in starts),
        longest=_WIDEST * len(order[0]),
        breaks=not any(byte in _BREAKS for needle in order for byte in needle),
    )


# A match ending in a literal "%" or "\" that the end of the data may have cut from an escape.
_CUT_ESCAPE = re.compile(rb"(?:%[0-9A-Fa-f]?|\\(?:u(?:0(?:0[0-9A-Fa-f]?)?)?)?)\Z")


def _escape_cut_short(data: bytes, match: re.Match[bytes]) -> bool:
    """Whether `match` ends in a literal "%" or "\\" that the end of `data` may have cut from an
    escape ("%", "%2" of "%25"; "\\", "\\u00" of "\\u005c"): the whole stream would hold the
    longer spelling, the escaped one (pure)."""
    return _CUT_ESCAPE.match(data, match.end() - 1) is not None


def _backslashes_before(data: bytes, end: int, carried: int) -> int:
    """How many "\\" end data[:end], with `carried` more before `data` if all of it is "\\" (pure)."""
    start = end
    while start and data[start - 1] == 0x5C:
        start -= 1
    return end - start + (carried if start == 0 else 0)


class Scrubber:
    """Replace every needle in a byte stream, in any percent- or JSON-escaped spelling, however the
    stream is cut into chunks.

    A spelling has each byte of the needle as itself, as ``%XX`` or, ASCII ones, as JSON's
    ``\\u00XX`` (either hex case), or as JSON's ``\\/``, ``\\"`` or ``\\\\``; the needle as it is gets
    its replacement as it is, any other spelling the replacement percent-encoded.
    A chunk's tail that could be the start of a spelling is held back until the next chunk
    decides it; anything else goes out at once, so an SSE event (which ends in a blank line) is
    never delayed by the scrub. Which tail that is depends on the data alone, never on the
    needles (`_cut`).
    """

    def __init__(self, replacements: Mapping[bytes, bytes]) -> None:
        self._replacements = {k: v for k, v in replacements.items() if k}
        self._m = _compile(frozenset(self._replacements))
        self._held = b""
        # How many "\" end what went out so far: JSON pairs them ("\\" is one "\").
        self._backslashes = 0

    @property
    def replacements(self) -> dict[bytes, bytes]:
        return dict(self._replacements)

    @property
    def active(self) -> bool:
        return self._m.pattern is not None

    def _may_match(self, data: bytes) -> bool:
        """Whether `data` may hold a whole spelling of a needle: False is certain, True is not.

        One substring search per needle, not the regex: CPython's regex engine has no fast path
        for `a|b` and scans ~0.15 GB/s. `in` runs at 2-7 GB/s, except over a long run of one byte
        whose value shares its low 6 bits with a needle byte (0.24 GB/s, a quirk of its shift
        table); the memchr for the needle's first byte rules most of those out first. Any other
        spelling holds an escape `_telltales` flags, and lies within a needle's longest spelling of
        it: the regex runs on those stretches only, which most data (text without "%" or "\\", or stray
        escapes in binary or a form body) has none or little of. This decides the throughput of a
        large download.
        """
        m = self._m
        if any(first in data and needle in data for first, needle in m.literals):
            return True
        if m.pattern is None:
            return False
        return any(m.pattern.search(data, low, high) for low, high in self._stretches(data))

    def _stretches(self, data: bytes) -> Iterator[tuple[int, int]]:
        """The stretches of `data` a spelling holding a flagged escape may lie in, merged."""
        reach = self._m.longest
        low = high = -1
        # Each kind of escape searched only where its first byte ("%", "\\") occurs, by one memchr:
        # `in` for all the bytes it starts with skips at most 5 bytes a step, slower than the
        # regex engine's own scan for them.
        found = [pattern.finditer(data) for lead, pattern in self._m.escapes if lead[:1] in data]
        for escape in heapq.merge(*found, key=lambda escape: escape.start()):
            # Wide enough for any escape that overlaps this one, which `finditer` skips ("\\u0067"
            # holds "\\" and "\u0067"): a spelling holding it lies within `reach` of it too.
            start, end = max(0, escape.start() - reach), escape.end() + reach
            if start > high >= 0:
                yield low, high
            if start > high:
                low = start
            high = end
        if high >= 0:
            yield low, high

    def _hold_from(self, data: bytes, pos: int = 0) -> int:
        """Where the tail of data[pos:] that may be the start of a spelling begins; len(data) if none.

        The earliest start is the longest tail: any later one lies inside it. A tail that starts
        with the second "\\" of a pair takes the first along, which the spelling's replacement may
        have to drop (`_replace`).
        """
        partial = self._m.partial
        found = partial.search(data, max(pos, len(data) - self._m.longest + 1)) if partial is not None else None
        if found is None:
            return len(data)
        start = found.start()
        if start > pos and data[start - 1 : start + 1] == b"\\\\":
            start -= 1
        return start

    def _cut(self, data: bytes, pos: int) -> int:
        """Where what goes out of data[pos:] now ends: before its last `longest` bytes, or (needles
        without a space or control byte) only those after the last such byte in them.

        Decided by the data alone. Where the held tail begins is visible to the agent (chunk and
        frame boundaries, timing): a hold that depended on whether the tail starts a secret's
        spelling (`_hold_from`) would answer an agent's guesses at a secret, one character at a
        time, through any upstream that sends back bytes it chose. The tail held is a superset of
        that one: a spelling's start lies within the last `longest` bytes, past any break.
        """
        cut = max(pos, len(data) - self._m.longest)
        if self._m.breaks:
            cut += data[cut:].translate(_BREAKS_TO_NEWLINE).rfind(b"\n") + 1
        if cut > pos and data[cut - 1 : cut + 1] == b"\\\\":
            # As `_hold_from`: a tail that starts with the second "\" of a pair takes the first along.
            cut -= 1
        return cut

    def _could_grow(self, data: bytes, match: re.Match[bytes]) -> bool:
        """Whether a needle tried before the one that matched may still match at its start."""
        earlier = self._m.grows[: self._needle(match)]
        return len(data) - match.start() < self._m.longest and any(g.match(data, match.start()) for g in earlier)

    def _needle(self, match: re.Match[bytes]) -> int:
        """The index in `order` of the needle `match` spells."""
        # Every alternative of the pattern holds a group of its own: a match always names one.
        if match.lastindex is None:
            raise AssertionError("a scrub pattern matched outside its groups")
        return self._m.needle_of[match.lastindex]

    def _replacement(self, match: re.Match[bytes]) -> bytes:
        needle = self._m.order[self._needle(match)]
        shown = self._replacements[needle]
        # An encoded spelling came from a URL, a form or JSON: the placeholder goes back
        # percent-encoded, which reads the same in all three (no "\" or '"' that JSON would read).
        return shown if match.group() == needle else quote_from_bytes(shown, safe="").encode()

    def _replace(self, data: bytes, match: re.Match[bytes], pos: int, out: list[bytes], sent: int) -> int:
        """Append data[pos:] up to `match`, then its replacement, to `out`; return where `match`
        ends. `sent` is how many "\\" ended what went out before `data`."""
        start = match.start()
        replacement = self._replacement(match)
        if data[start : start + 1] == b"\\" and _backslashes_before(data, start, sent) % 2:
            # The match's "\" closes a JSON "\\" begun before it: the secret was JSON-escaped and
            # then written into a JSON string ("\\u0067hp_…"). That "\" goes with the match, so the
            # outer and the inner JSON both still read; it was held back with the match's start if
            # a chunk ended between the two (`_hold_from`).
            if start > pos:
                start -= 1
            elif start == 0:
                # Sent already (a spelling that could not start there when it went): pair it, so
                # that it escapes no byte of the placeholder.
                replacement = b"\\" + replacement
        out.append(data[pos:start])
        out.append(replacement)
        return match.end()

    def _replace_all(self, data: bytes, sent: int) -> bytes:
        out: list[bytes] = []
        pos = 0
        assert self._m.pattern is not None
        for match in self._m.pattern.finditer(data):
            pos = self._replace(data, match, pos, out, sent)
        out.append(data[pos:])
        return b"".join(out)

    def _sent(self, out: bytes) -> bytes:
        """`out`, going out now: remembers the "\\" it ends in."""
        self._backslashes = _backslashes_before(out, len(out), self._backslashes)
        return out

    def feed(self, chunk: bytes) -> bytes:
        pattern = self._m.pattern
        if pattern is None:
            return chunk
        # h11 hands body data over as bytearray at times: what goes out and what is held are bytes.
        chunk = bytes(chunk)
        data = self._held + chunk if self._held else chunk
        if not self._may_match(data):
            # The common case, kept cheap for bulk bodies: no needle at all, at most a tail to hold.
            cut = self._cut(data, 0)
            self._held = data[cut:]
            return self._sent(data[:cut])
        out: list[bytes] = []
        pos = 0
        for match in pattern.finditer(data):
            start = match.start()
            # A needle that may still complete with the next chunk, starting before this match
            # or at it and tried first, would win in the whole stream: decide it once more data is in.
            pending = self._hold_from(data, pos)
            if pending < start or self._could_grow(data, match) or _escape_cut_short(data, match):
                pending = min(pending, start)
                out.append(data[pos:pending])
                self._held = data[pending:]
                return self._sent(b"".join(out))
            pos = self._replace(data, match, pos, out, self._backslashes)
        cut = self._cut(data, pos)
        out.append(data[pos:cut])
        self._held = data[cut:]
        return self._sent(b"".join(out))

    def flush(self) -> bytes:
        held, self._held = self._held, b""
        if self._m.pattern is None or not held:
            return self._sent(held)
        return self._sent(self._replace_all(held, self._backslashes))

    def scrub(self, data: bytes) -> bytes:
        """The whole of a short value at once (header values), apart from any stream."""
        if self._m.pattern is None or not self._may_match(data):
            return data
        return self._replace_all(data, 0)
