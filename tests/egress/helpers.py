"""Small helpers shared by the egress tests."""

from __future__ import annotations

import ssl
from collections.abc import Iterable
from pathlib import Path

import httpx

from tests.fixtures.egress import FirewallHarness


def client(
    fw: FirewallHarness, agent: str = "devbot", *, http2: bool = False, password: str | None = None
) -> httpx.Client:
    ctx = ssl.create_default_context(cafile=str(fw.ca_path))
    return httpx.Client(proxy=fw.proxy_url(agent, password), verify=ctx, http2=http2, timeout=20, trust_env=False)


def assert_never_contains(texts: Iterable[str | bytes], *secrets: str) -> None:
    """No secret appears in any of `texts` (logs, panes, responses, events)."""
    for text in texts:
        blob = text.decode("utf-8", "replace") if isinstance(text, bytes) else text
        for secret in secrets:
            assert secret not in blob, "a real secret leaked"


def files_under(root: Path) -> list[bytes]:
    """Every regular file's bytes below `root` (symlinks are not followed)."""
    return [p.read_bytes() for p in root.rglob("*") if p.is_file() and not p.is_symlink()]
