"""Values shaped like real credentials, recognised (so a placeholder file cannot hold one) and
kept out of messages; and URLs shown with their passwords masked. Pure.

An answer names the kind of credential, never the value: callers put it in
error messages as it is.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterator
from typing import Any

_SHAPES: tuple[tuple[str, re.Pattern[str]], ...] = (
    (
        "an Anthropic key or OAuth token (sk-ant-…)",
        re.compile(r"sk-ant-[A-Za-z0-9]{2,}-[A-Za-z0-9_\-]{16,}"),
    ),
    ("a GitHub token (gh?_…)", re.compile(r"\bgh[pousr]_[A-Za-z0-9]{30,}")),
    ("a GitHub fine-grained token (github_pat_…)", re.compile(r"\bgithub_pat_[A-Za-z0-9_]{30,}")),
    (
        "a JSON Web Token",
        re.compile(r"\beyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}"),
    ),
    (
        "a Matrix access token (syt_…)",
        re.compile(r"\bsyt_[A-Za-z0-9]+_[A-Za-z0-9]{10,}_[A-Za-z0-9]{4,}"),
    ),
    ("a Slack token (xox?-…)", re.compile(r"\bxox[abprs]-[A-Za-z0-9-]{10,}")),
    ("an OpenAI key (sk-…)", re.compile(r"\bsk-(?:proj-[A-Za-z0-9_-]{40,}|[A-Za-z0-9]{48}\b)")),
    ("a GitLab token (glpat-…)", re.compile(r"\bglpat-[A-Za-z0-9_-]{20,}")),
    ("a Google API key (AIza…)", re.compile(r"\bAIza[0-9A-Za-z_-]{35}")),
    ("an AWS access key id", re.compile(r"\b(?:AKIA|ASIA)[0-9A-Z]{16}\b")),
)


def credential_kind(value: str) -> str | None:
    """What kind of real credential `value` looks like, or None for anything else."""
    found = credential_in(value)
    return found[1] if found is not None else None


def credential_in(text: str) -> tuple[int, str] | None:
    """Where in `text` the first value shaped like a real credential starts, and its kind; None
    when there is none."""
    first: tuple[int, str] | None = None
    for kind, pattern in _SHAPES:
        found = next((m for m in pattern.finditer(text) if _real(m)), None)
        if found is not None and (first is None or found.start() < first[0]):
            first = (found.start(), kind)
    return first


def _real(found: re.Match[str]) -> bool:
    # A placeholder may keep the prefix of what it stands for (glpat-agent-smith-placeholder).
    return "placeholder" not in found.group(0).lower()


def without_credentials(text: str) -> str:
    """`text` with each value shaped like a real credential replaced by what kind it is."""
    for kind, pattern in _SHAPES:
        text = pattern.sub(functools.partial(_hidden, kind), text)
    return text


def _hidden(kind: str, found: re.Match[str]) -> str:
    return f"<{kind}, not shown>" if _real(found) else found.group(0)


def find_credentials(data: Any, path: tuple[str | int, ...] = ()) -> Iterator[tuple[tuple[str | int, ...], str]]:
    """Every (path, kind) in nested JSON data whose string value looks like a real credential."""
    if isinstance(data, dict):
        for key, value in data.items():
            yield from find_credentials(value, (*path, str(key)))
    elif isinstance(data, list):
        for index, value in enumerate(data):
            yield from find_credentials(value, (*path, index))
    elif isinstance(data, str) and (kind := credential_kind(data)):
        yield path, kind


def shown_url(url: str) -> str:
    """A NATS URL (or a comma-separated list of them) as a message may show it: the password of
    user:password, or a token alone, replaced by *** (pure)."""

    def hide(userinfo: re.Match[str]) -> str:
        user, colon, _ = userinfo.group(2).partition(":")
        return f"{userinfo.group(1)}{user + ':' if colon else ''}***@"

    return re.sub(r"(://)([^/@\s,]+)@", hide, url)
