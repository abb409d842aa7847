"""Whether a URL parses as JavaScript's `new URL()` parses it (the WHATWG URL standard), without
a base. Claude Code checks an http hook's url so, and one it refuses under PreToolUse drops the
whole settings.json. Pure."""

from __future__ import annotations

import ipaddress
import re
import urllib.parse

# The WHATWG URL parser's refusals (Claude Code checks a hook's url with `new URL(url)`), for a
# URL without a base. Beyond the scheme, only special schemes (http, https, ws, wss, ftp, file)
# constrain much: their host must be a valid domain or IP address, their port a number.
_SPECIAL_SCHEMES = frozenset({"http", "https", "ws", "wss", "ftp", "file"})
_URL_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*:")
_FORBIDDEN_HOST = frozenset("\x00\t\n\r #/:<>?@[\\]^|")
_FORBIDDEN_DOMAIN = _FORBIDDEN_HOST | frozenset(map(chr, range(0x20))) | {"%", "\x7f"}
_DRIVE_LETTER = re.compile(r"[A-Za-z][:|]")
_JS_WHITESPACE = "\t\n\v\f\r \xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000\ufeff"
_JS_SPACE = re.compile(f"^[{_JS_WHITESPACE}]+|[{_JS_WHITESPACE}]+$")
_C0_OR_SPACE = "".join(map(chr, range(0x21)))


def parses_as_url(text: str) -> bool:
    """Whether `new URL(text)` in Claude Code's runtime accepts it."""
    # JavaScript's trim(), which zod applies before parsing, then the parser's own clean-up.
    url = re.sub(r"[\t\n\r]", "", _JS_SPACE.sub("", text).strip(_C0_OR_SPACE))
    scheme = _URL_SCHEME.match(url)
    if scheme is None:
        return False
    name, rest = scheme.group()[:-1].lower(), url[scheme.end() :]
    if name == "file":
        if not re.match(r"[/\\]{2}", rest):
            return True
        host = re.split(r"[/\\?#]", rest[2:], maxsplit=1)[0]
        return host == "" or bool(_DRIVE_LETTER.fullmatch(host)) or _domain_or_ip(host)
    if name in _SPECIAL_SCHEMES:
        return _authority(re.split(r"[/\\?#]", rest.lstrip("/\\"), maxsplit=1)[0], special=True)
    if rest.startswith("//"):
        return _authority(re.split(r"[/?#]", rest[2:], maxsplit=1)[0], special=False)
    return True


def _authority(authority: str, *, special: bool) -> bool:
    _, at_sign, host_port = authority.rpartition("@")
    host, port = _split_port(host_port)
    if port is not None and not (port == "" or (port.isascii() and port.isdigit() and int(port) <= 65535)):
        return False
    if host == "":
        # Without a host only a non-special URL with neither user nor port parses ("x:///p").
        return not special and not at_sign and port is None
    if host.startswith("["):
        return _ipv6(host)
    if special:
        return _domain_or_ip(host)
    return not any(c in _FORBIDDEN_HOST for c in host)


def _split_port(host_port: str) -> tuple[str, str | None]:
    inside = False
    for i, c in enumerate(host_port):
        if c == "[":
            inside = True
        elif c == "]":
            inside = False
        elif c == ":" and not inside:
            return host_port[:i], host_port[i + 1 :]
    return host_port, None


def _ipv6(host: str) -> bool:
    if not host.endswith("]") or "%" in host:
        return False
    try:
        ipaddress.IPv6Address(host[1:-1])
    except ValueError:
        return False
    return True


def _domain_or_ip(host: str) -> bool:
    if host.startswith("["):
        return _ipv6(host)
    try:
        domain = urllib.parse.unquote(host, errors="strict")
        labels = [_ascii_label(label) for label in domain.split(".")]
    except (UnicodeError, ValueError):
        return False
    if any(c in _FORBIDDEN_DOMAIN for label in labels for c in label):
        return False
    if labels[-1] == "" and len(labels) > 1:
        labels.pop()
    if not labels[-1] or (_ipv4_part(labels[-1]) is None and not labels[-1].isdigit()):
        return True
    return _ipv4(labels)


def _ascii_label(label: str) -> str:
    ascii_label = label.lower() if label.isascii() else label.encode("idna").decode("ascii").lower()
    # An "xn--" label must be the encoding of a valid non-ASCII label: decode it and encode back.
    if ascii_label.startswith("xn--"):
        decoded = ascii_label[4:].encode("ascii").decode("punycode")
        if decoded.isascii() or decoded.encode("idna").decode("ascii").lower() != ascii_label:
            raise UnicodeError(label)
    return ascii_label


def _ipv4_part(part: str) -> int | None:
    digits, base = part, 10
    if part[:2].lower() == "0x":
        digits, base = part[2:], 16
    elif len(part) > 1 and part.startswith("0"):
        digits, base = part[1:], 8
    if digits == "":
        return 0
    try:
        return int(digits, base) if digits.isascii() and digits.isalnum() else None
    except ValueError:
        return None


def _ipv4(labels: list[str]) -> bool:
    # A host whose last label is a number is an IPv4 address (in any of its legacy forms), or
    # refused.
    if len(labels) > 4:
        return False
    numbers = [_ipv4_part(label) if label else None for label in labels]
    if any(n is None for n in numbers[:-1]) or numbers[-1] is None:
        return False
    *front, last = (n for n in numbers if n is not None)
    return all(n <= 255 for n in front) and last < 256 ** (5 - len(numbers))
