"""The Claude subscription login, owned by the firewall.

Agents hold a stub ``.credentials.json``. The firewall keeps the real OAuth
tokens in its secret store, swaps the stub access token for the real one
toward the API hosts, answers the CLI's own refresh with stubs (so the CLI can
never write a real token to the agent's disk), and refreshes the real token
itself before it expires.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import json
import os
import re
import time
from collections.abc import AsyncIterator, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agent_smith.egress.policy import visible_ascii
from agent_smith.errors import OperationError, UsageError
from agent_smith.fsutil import write_atomic

__all__ = [
    "CLIENT_ID",
    "ClaudeTokens",
    "TokenStore",
    "apply_token_response",
    "expired",
    "refresh_due",
    "refresh_refusal",
    "refresh_request_body",
    "stub_refresh_answer",
    "tokens_from_credentials",
    "unusable_login_answer",
]

# Claude Code's public OAuth client id (the CLI sends the same one).
CLIENT_ID = "9d1c250a-e61b-44d9-88ed-5944d1962f5e"
# What the stub answer promises the CLI: long enough that it rarely asks again.
STUB_LIFETIME_S = 8 * 3600


@dataclass(frozen=True)
class ClaudeTokens:
    access_token: str
    refresh_token: str
    expires_at_ms: int
    scopes: tuple[str, ...] = ()
    subscription_type: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "accessToken": self.access_token,
            "refreshToken": self.refresh_token,
            "expiresAt": self.expires_at_ms,
            "scopes": list(self.scopes),
            "subscriptionType": self.subscription_type,
        }

    def __repr__(self) -> str:
        # Never let a token reach a log line or a traceback by way of repr().
        return f"ClaudeTokens(expires_at_ms={self.expires_at_ms}, scopes={self.scopes!r})"


# 253402300800000 ms is the year 10000: a later expiry is no time the CLI wrote.
_YEAR_10000_MS = 253_402_300_800_000


def tokens_from_credentials(data: Any, where: str) -> ClaudeTokens:
    """The tokens of a ``.credentials.json`` payload (``{"claudeAiOauth": {...}}`` or the inner object)."""
    oauth = data.get("claudeAiOauth", data) if isinstance(data, dict) else None
    if not isinstance(oauth, dict):
        raise UsageError(f"{where}: not a Claude .credentials.json (no claudeAiOauth object)")
    access, refresh, expires = oauth.get("accessToken"), oauth.get("refreshToken"), oauth.get("expiresAt")
    if not isinstance(access, str) or not access:
        raise UsageError(f"{where}: claudeAiOauth.accessToken is missing")
    if not isinstance(refresh, str) or not refresh:
        raise UsageError(f"{where}: claudeAiOauth.refreshToken is missing")
    for key, token in (("accessToken", access), ("refreshToken", refresh)):
        if not visible_ascii(token):
            raise UsageError(
                f"{where}: claudeAiOauth.{key} has spaces, control or non-ASCII characters; "
                "it could not travel in a header"
            )
    if not isinstance(expires, int) or isinstance(expires, bool) or not 0 < expires < _YEAR_10000_MS:
        raise UsageError(f"{where}: claudeAiOauth.expiresAt must be milliseconds since the epoch")
    scopes = oauth.get("scopes") or []
    if not isinstance(scopes, list) or not all(isinstance(s, str) for s in scopes):
        raise UsageError(f"{where}: claudeAiOauth.scopes must be a list of strings")
    kind = oauth.get("subscriptionType")
    return ClaudeTokens(access, refresh, expires, tuple(scopes), kind if isinstance(kind, str) else None)


def refresh_due(tokens: ClaudeTokens, now_s: float, margin_s: float) -> bool:
    return tokens.expires_at_ms / 1000 - now_s <= margin_s


def expired(tokens: ClaudeTokens, now_s: float) -> bool:
    return tokens.expires_at_ms <= now_s * 1000


# An OAuth error code (RFC 6749 §5.2): safe to log, unlike a description, which may quote anything.
_OAUTH_ERROR = re.compile(r"[a-z_]{1,64}")


def refresh_refusal(status: int, body: bytes) -> str:
    """What a token endpoint that did not renew the login said, for a log line and the agents."""
    try:
        data = json.loads(body)
    except ValueError:
        data = None
    code = data.get("error") if isinstance(data, dict) else None
    said = f"the token endpoint answered HTTP {status}"
    if isinstance(code, str) and _OAUTH_ERROR.fullmatch(code):
        said += f" ({code})"
    if status in (400, 401, 403):
        # A refresh token is single-use and may be revoked: retrying it never helps, a new login does.
        said += "; it refuses this login: import a fresh one with `agent-smith firewall import-claude-login FILE`"
    return said


def unusable_login_answer(why: str) -> dict[str, Any]:
    """What a request to the model API gets while the real login is expired and cannot be renewed:
    the API's own error shape, so the CLI shows the message, rather than the API's 401 for an
    expired token, which would send a person to a `/login` the firewall refuses."""
    return {
        "type": "error",
        "error": {"type": "authentication_error", "message": f"agent-smith firewall: {why}"},
    }


def refresh_request_body(tokens: ClaudeTokens) -> dict[str, Any]:
    body: dict[str, Any] = {
        "grant_type": "refresh_token",
        "refresh_token": tokens.refresh_token,
        "client_id": CLIENT_ID,
    }
    if tokens.scopes:
        body["scope"] = " ".join(tokens.scopes)
    return body


def apply_token_response(tokens: ClaudeTokens, answer: Any, now_s: float) -> ClaudeTokens:
    """The tokens after a successful refresh answer; a token endpoint may or may not rotate the refresh token."""
    if not isinstance(answer, Mapping):
        raise OperationError("the token endpoint answered something other than a JSON object")
    access, expires_in = answer.get("access_token"), answer.get("expires_in")
    if not isinstance(access, str) or not access:
        raise OperationError("the token endpoint's answer has no access_token")
    if not isinstance(expires_in, int | float) or isinstance(expires_in, bool) or expires_in <= 0:
        raise OperationError("the token endpoint's answer has no positive expires_in")
    refresh = answer.get("refresh_token")
    scope = answer.get("scope")
    return ClaudeTokens(
        access_token=access,
        refresh_token=refresh if isinstance(refresh, str) and refresh else tokens.refresh_token,
        expires_at_ms=int((now_s + float(expires_in)) * 1000),
        scopes=tuple(scope.split()) if isinstance(scope, str) and scope else tokens.scopes,
        subscription_type=tokens.subscription_type,
    )


def stub_refresh_answer(stub_access: str, stub_refresh: str, scopes: tuple[str, ...]) -> dict[str, Any]:
    """What the CLI gets when it refreshes: the same stubs, a fresh expiry, never a real token."""
    return {
        "token_type": "Bearer",
        "access_token": stub_access,
        "refresh_token": stub_refresh,
        "expires_in": STUB_LIFETIME_S,
        "scope": " ".join(scopes or ("user:inference", "user:profile")),
    }


@dataclass(frozen=True)
class TokenStore:
    """The real tokens on disk: one JSON file, mode 600, replaced atomically."""

    path: Path

    @property
    def lock_path(self) -> Path:
        return self.path.with_name(f".{self.path.name}.lock")

    def _lock_fd(self) -> int:
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        return os.open(self.lock_path, os.O_RDWR | os.O_CREAT, 0o600)

    # Anthropic rotates the refresh token at every renewal and refuses the old one: two renewals
    # at once (an old and a new firewall, or a renewal beside an import) would leave the login
    # with a token the endpoint no longer takes. Whoever renews or replaces it holds this lock.
    @contextlib.asynccontextmanager
    async def renewing(self, patience: float) -> AsyncIterator[None]:
        """Hold the login's lock (polled, so the event loop goes on), or fail after `patience` seconds."""
        fd = self._lock_fd()
        try:
            deadline = time.monotonic() + patience
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() > deadline:
                        raise OperationError(f"{self.lock_path}: another process holds the Claude login") from None
                    await asyncio.sleep(0.05)
            yield
        finally:
            os.close(fd)

    @contextlib.contextmanager
    def replacing(self) -> Iterator[None]:
        """Hold the login's lock, waiting for a renewal under way (bounded by its own timeout)."""
        fd = self._lock_fd()
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    def load(self) -> ClaudeTokens | None:
        try:
            raw = self.path.read_bytes()
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise OperationError(f"{self.path}: cannot read the Claude login: {exc.strerror}") from exc
        try:
            data = json.loads(raw)
        except ValueError as exc:
            raise OperationError(f"{self.path}: the stored Claude login is not JSON") from exc
        return tokens_from_credentials(data, str(self.path))

    def save(self, tokens: ClaudeTokens) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        write_atomic(self.path, json.dumps({"claudeAiOauth": tokens.to_json()}, indent=2) + "\n", mode=0o600)
