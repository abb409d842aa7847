"""A real Synapse homeserver on loopback, for the tests and the demo.

Not a stand-in for Matrix: the real server, configured for one machine
(SQLite, no federation, rate limits raised so chatty agents are not
throttled, cheap password hashing). Users are registered with the shared
secret, which returns an access token directly.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import importlib.util
import json
import secrets
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, Self
from urllib.parse import quote

import httpx

from agent_smith.errors import MissingPartError, OperationError
from agent_smith.fsutil import write_atomic
from agent_smith.listeners import free_port

_PORT_PICKS = 5
_GENEROUS = {"per_second": 1000, "burst_count": 1000}
_INSTALL_FIX = "install the dev dependencies: `uv pip sync --python .venv/bin/python requirements.lock`"


@dataclass(frozen=True)
class MatrixUser:
    user_id: str
    device_id: str
    access_token: str = field(repr=False)


def homeserver_config(
    *, server_name: str, port: int, data_dir: Path, registration_secret: str, macaroon_secret: str
) -> dict[str, Any]:
    """The homeserver.yaml for a loopback test server (written as JSON, which YAML reads)."""
    return {
        "server_name": server_name,
        "pid_file": str(data_dir / "homeserver.pid"),
        "report_stats": False,
        "listeners": [
            {
                "port": port,
                "bind_addresses": ["127.0.0.1"],
                "type": "http",
                "tls": False,
                "x_forwarded": False,
                "resources": [{"names": ["client"], "compress": False}],
            }
        ],
        "database": {"name": "sqlite3", "args": {"database": str(data_dir / "homeserver.db")}},
        "media_store_path": str(data_dir / "media_store"),
        "signing_key_path": str(data_dir / "signing.key"),
        "registration_shared_secret": registration_secret,
        "macaroon_secret_key": macaroon_secret,
        "enable_registration": False,
        "trusted_key_servers": [],
        "suppress_key_server_warning": True,
        "federation_domain_whitelist": [],
        "presence": {"enabled": False},
        "url_preview_enabled": False,
        "enable_metrics": False,
        "bcrypt_rounds": 4,
        "rc_message": _GENEROUS,
        "rc_registration": _GENEROUS,
        "rc_login": {"address": _GENEROUS, "account": _GENEROUS, "failed_attempts": _GENEROUS},
        "rc_joins": {"local": _GENEROUS, "remote": _GENEROUS},
        "rc_joins_per_room": _GENEROUS,
        "rc_invites": {"per_room": _GENEROUS, "per_user": _GENEROUS, "per_issuer": _GENEROUS},
        "rc_room_creation": _GENEROUS,
    }


def registration_mac(secret: str, nonce: str, user: str, password: str, admin: bool) -> str:
    """The HMAC-SHA1 Synapse's shared-secret registration expects."""
    message = b"\x00".join([nonce.encode(), user.encode(), password.encode(), b"admin" if admin else b"notadmin"])
    return hmac.new(secret.encode(), message, hashlib.sha1).hexdigest()


class SynapseServer:
    """``with SynapseServer(data_dir) as hs: hs.register("alice")``; stopped on exit, even on error."""

    def __init__(
        self,
        data_dir: Path,
        *,
        server_name: str = "localhost",
        port: int | None = None,
        python: str | None = None,
    ) -> None:
        self.data_dir = data_dir
        self.server_name = server_name
        self.port = port or free_port()
        # See EmbeddedNats: a port picked here may be taken before Synapse binds it.
        self._may_repick = port is None
        self._python = python or sys.executable
        self._secret = secrets.token_hex(32)
        self._process: subprocess.Popen[bytes] | None = None
        self._http = httpx.Client(base_url=self.url, trust_env=False, timeout=30)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    @property
    def log_path(self) -> Path:
        return self.data_dir / "homeserver.log"

    def start(self, timeout: float = 60.0) -> None:
        if importlib.util.find_spec("synapse") is None:
            raise MissingPartError(f"Synapse (matrix-synapse) is not installed: {_INSTALL_FIX}")
        self.data_dir.mkdir(parents=True, exist_ok=True)
        for _ in range(_PORT_PICKS):
            log_start = self.log_path.stat().st_size if self.log_path.exists() else 0
            try:
                self._launch(timeout)
            except OperationError:
                if not (self._may_repick and "Address already in use" in self._log_since(log_start)):
                    raise
                self.port = free_port()
                self._http.base_url = httpx.URL(self.url)
            else:
                self._may_repick = False
                return
        raise OperationError(f"Synapse found no free port on 127.0.0.1 in {_PORT_PICKS} tries")

    def _launch(self, timeout: float) -> None:
        config_path = self.data_dir / "homeserver.yaml"
        config = homeserver_config(
            server_name=self.server_name,
            port=self.port,
            data_dir=self.data_dir,
            registration_secret=self._secret,
            macaroon_secret=secrets.token_hex(32),
        )
        write_atomic(config_path, json.dumps(config, indent=2), mode=0o600)
        env = {"PATH": str(Path(self._python).parent) + ":/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8"}
        with self.log_path.open("ab") as log:
            self._process = subprocess.Popen(
                [self._python, "-m", "synapse.app.homeserver", "-c", str(config_path)],
                cwd=self.data_dir,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        self._wait_ready(timeout)

    def _log_since(self, offset: int) -> str:
        with self.log_path.open("rb") as log:
            log.seek(offset)
            return log.read().decode(errors="replace")

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._process is None or self._process.poll() is not None:
                raise OperationError(f"Synapse exited during start-up; see {self.log_path}:\n{self._log_tail()}")
            with contextlib.suppress(httpx.TransportError):
                if self._http.get("/health").status_code == 200:
                    return
            time.sleep(0.05)
        raise OperationError(f"Synapse did not become ready within {timeout:g}s; see {self.log_path}")

    def _log_tail(self, lines: int = 10) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def stop(self, grace: float = 10.0) -> None:
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            process.terminate()
            try:
                process.wait(grace)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        self._http.close()

    def __enter__(self) -> Self:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def _call(
        self, method: str, path: str, *, token: str | None = None, body: Mapping[str, Any] | None = None
    ) -> dict[str, Any]:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        try:
            response = self._http.request(method, path, headers=headers, json=body)
        except httpx.TransportError as exc:
            raise OperationError(f"Synapse at {self.url} unreachable: {exc}") from exc
        try:
            data: Any = response.json() if response.content else {}
        except ValueError:
            data = {}
        if response.status_code != 200:
            reason = data.get("error", response.reason_phrase) if isinstance(data, dict) else response.reason_phrase
            raise OperationError(f"Synapse {method} {path.split('?')[0]}: {response.status_code} {reason}")
        return data if isinstance(data, dict) else {}

    def register(self, localpart: str, *, password: str | None = None, admin: bool = False) -> MatrixUser:
        """A new user by shared secret, logged in: the response carries its access token."""
        nonce = self._call("GET", "/_synapse/admin/v1/register")["nonce"]
        password = password or secrets.token_urlsafe(16)
        data = self._call(
            "POST",
            "/_synapse/admin/v1/register",
            body={
                "nonce": nonce,
                "username": localpart,
                "password": password,
                "admin": admin,
                "mac": registration_mac(self._secret, nonce, localpart, password, admin),
            },
        )
        return MatrixUser(data["user_id"], data["device_id"], data["access_token"])

    def create_room(self, owner: MatrixUser, *, name: str | None = None, invite: Sequence[str] = ()) -> str:
        body: dict[str, Any] = {"preset": "private_chat", "invite": list(invite)}
        if name:
            body["name"] = name
        room_id: str = self._call("POST", "/_matrix/client/v3/createRoom", token=owner.access_token, body=body)[
            "room_id"
        ]
        return room_id

    def invite(self, inviter: MatrixUser, room_id: str, user_id: str) -> None:
        self._call(
            "POST",
            f"/_matrix/client/v3/rooms/{quote(room_id)}/invite",
            token=inviter.access_token,
            body={"user_id": user_id},
        )

    def join(self, user: MatrixUser, room_id: str) -> None:
        self._call("POST", f"/_matrix/client/v3/join/{quote(room_id)}", token=user.access_token, body={})

    def send_text(self, user: MatrixUser, room_id: str, body: str, *, msgtype: str = "m.text") -> str:
        txn = secrets.token_hex(8)
        event_id: str = self._call(
            "PUT",
            f"/_matrix/client/v3/rooms/{quote(room_id)}/send/m.room.message/{txn}",
            token=user.access_token,
            body={"msgtype": msgtype, "body": body},
        )["event_id"]
        return event_id

    def redact(self, user: MatrixUser, room_id: str, event_id: str) -> None:
        self._call(
            "PUT",
            f"/_matrix/client/v3/rooms/{quote(room_id)}/redact/{quote(event_id)}/{secrets.token_hex(8)}",
            token=user.access_token,
            body={},
        )

    def sync(self, user: MatrixUser, *, since: str | None = None, timeout_ms: int = 0) -> dict[str, Any]:
        query = f"?timeout={timeout_ms}" + (f"&since={quote(since)}" if since else "")
        return self._call("GET", f"/_matrix/client/v3/sync{query}", token=user.access_token)
