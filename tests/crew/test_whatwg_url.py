"""`parses_as_url`: what `new URL()` accepts, as Claude Code checks an http hook's url."""

from __future__ import annotations

import ipaddress

import pytest
from hypothesis import given
from hypothesis import strategies as st

from agent_smith.crew.whatwg_url import parses_as_url

# `new URL(...)` as the CLI's http hooks ran it: True when 2.1.331 loaded the hook, False when
# it said "url: Invalid URL".
HOOK_URLS = [
    ("http://127.0.0.1:9/h", True),
    ("audit.internal/hook", False),
    ("", False),
    ("ftp://x/y", True),
    ("mailto:a@b", True),
    ("localhost:8080/hook", True),  # the scheme is "localhost"
    ("http://", False),
    ("http://a b/", False),
    ("http://x:99999/", False),
    ("ws://x:65536/", False),
    ("http://x:8a/", False),
    ("https://[::1]:8080/", True),
    ("http://[::1/", False),
    ("http://1.2.3.256/", False),
    ("http://999999999999/", False),
    ("http://0x7f.1/", True),
    ("http://0177.0.0.1/", True),
    ("http://foo.09/", False),
    ("http://a..b/", True),
    ("  http://x/  ", True),
    ("\u00a0http://127.0.0.1:9/", True),
    ("\x85http://127.0.0.1:9/", False),
    ("http:x", True),
    ("http://user@/", False),
    ("http://a%20b/", False),
    ("http://a^b/", False),
    ("http://bücher.de/", True),
    ("http://xn--a/", False),
    ("http://a_b.internal/", True),
    ("http://x/a|b", True),
    ("http://x/a b", True),
    ("1http://x/", False),
    ("x:", True),
    ("foo://a b/", False),
    ("file://host:80/", False),
]


@pytest.mark.parametrize(("url", "accepted"), HOOK_URLS)
def test_hook_urls_as_the_cli_parses_them(url: str, accepted: bool) -> None:
    assert parses_as_url(url) is accepted


_label = st.from_regex(r"[a-z0-9]([a-z0-9-]{0,20}[a-z0-9])?", fullmatch=True)
# A last label that is a number would make the host an IPv4 address (or refused): "a.0" is.
_domain = st.tuples(st.lists(_label, max_size=3), st.from_regex(r"[a-z]{1,10}", fullmatch=True)).map(
    lambda parts: ".".join([*parts[0], parts[1]])
)


@given(
    st.sampled_from(["http", "https"]),
    _domain | st.ip_addresses(v=4).map(str),
    st.none() | st.integers(min_value=0, max_value=65535),
    st.text(alphabet="abc/-_.~%?=&#", max_size=20),
)
def test_any_http_url_with_a_host_and_port_parses(scheme: str, host: str, port: int | None, path: str) -> None:
    url = f"{scheme}://{host}{'' if port is None else f':{port}'}/{path}"
    assert parses_as_url(url), url


@given(st.ip_addresses(v=6))
def test_any_bracketed_ipv6_host_parses(address: ipaddress.IPv6Address) -> None:
    assert parses_as_url(f"http://[{address}]:8080/hook")


@given(st.text(alphabet=st.characters(blacklist_characters=":"), max_size=30))
def test_no_url_without_a_scheme_parses(text: str) -> None:
    assert not parses_as_url(text)
