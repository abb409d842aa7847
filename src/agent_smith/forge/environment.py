"""Proxy and CA settings for GitHub requests, from an agent's environment (HTTPS_PROXY, SSL_CERT_FILE)."""

from __future__ import annotations

import ssl
from collections.abc import Mapping
from urllib.parse import urlsplit

from agent_smith.errors import UsageError


def proxy_for(url: str, env: Mapping[str, str]) -> str | None:
    """The proxy ``env`` says to use for ``url`` (HTTPS_PROXY, honouring NO_PROXY)."""
    proxy = env.get("HTTPS_PROXY") or env.get("https_proxy") or None
    if proxy is None:
        return None
    host = (urlsplit(url).hostname or "").lower()
    for entry in (env.get("NO_PROXY") or env.get("no_proxy") or "").split(","):
        entry = entry.strip().lower().lstrip(".")
        if entry == "*" or (entry and (host == entry or host.endswith("." + entry))):
            return None
    return proxy


def ssl_context(env: Mapping[str, str]) -> ssl.SSLContext:
    cafile = env.get("SSL_CERT_FILE") or None
    capath = env.get("SSL_CERT_DIR") or None
    try:
        return ssl.create_default_context(cafile=cafile, capath=capath)
    except (OSError, ssl.SSLError) as exc:
        raise UsageError(f"SSL_CERT_FILE={cafile}: cannot load CA certificates: {exc}") from exc
