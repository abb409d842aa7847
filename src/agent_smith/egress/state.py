"""The firewall's state directory: its CA, the key agent proxy passwords derive from, the secret store.

Everything here is created on first use, with private files mode 600 and
written atomically, so two processes racing to create a file leave one
complete version, never a torn one.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import hmac
import os
import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from agent_smith.errors import OperationError, UsageError
from agent_smith.fsutil import write_atomic

TYPE_CHECKING = False
if TYPE_CHECKING:
    from agent_smith.certs import CertificateAuthority

__all__ = ["FirewallState", "derive_password"]

_IDENTITY_KEY = "identity.key"
_CA_CERT = "ca.pem"
_CA_KEY = "ca-key.pem"
_CA_LOCK = ".ca.lock"
_CA_NAME = "agent-smith egress firewall CA"


def derive_password(key: bytes, agent: str) -> str:
    """The proxy password of `agent`: HMAC-SHA256 of its name under the identity key, hex."""
    return hmac.new(key, agent.encode(), hashlib.sha256).hexdigest()


@dataclass(frozen=True)
class FirewallState:
    """Paths and lazily created contents of one firewall's state directory."""

    root: Path

    @property
    def identity_key_path(self) -> Path:
        return self.root / _IDENTITY_KEY

    @property
    def ca_cert_path(self) -> Path:
        return self.root / _CA_CERT

    @property
    def ca_key_path(self) -> Path:
        return self.root / _CA_KEY

    @property
    def secrets_dir(self) -> Path:
        return self.root / "secrets"

    @property
    def audit_log_path(self) -> Path:
        return self.root / "audit.jsonl"

    @property
    def pending_denials_path(self) -> Path:
        """Denials kept (with their event ids) until the event log has them."""
        return self.root / "denials.pending.jsonl"

    def _ensure_root(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True, mode=0o700)

    @contextlib.contextmanager
    def _writing(self) -> Iterator[None]:
        """Creating state: a place that cannot take it (a file in the way, another user's
        directory) is one line naming it."""
        try:
            yield
        except OSError as exc:
            raise OperationError(f"cannot write the firewall state in {self.root}: {exc.strerror or exc}") from None

    def identity_key(self) -> bytes:
        """The random key proxy passwords derive from, created (32 bytes, mode 600) on first use."""
        path = self.identity_key_path
        if not path.exists():
            with self._writing():
                self._ensure_root()
                self._create_once(path, secrets.token_bytes(32))
        key = _read(path)
        if len(key) < 32:
            raise OperationError(f"{path}: the firewall identity key is truncated; delete it to make a new one")
        return key

    def ca(self) -> CertificateAuthority:
        """The firewall's CA, generated (ECDSA P-256, key mode 600) on first use."""
        # cryptography loads here, not with this module: assembling an agent whose firewall
        # CA exists only needs its path (~9 MB resident and ~25 ms less for the supervisor).
        from agent_smith.certs import load_ca

        self._make_ca()
        try:
            return load_ca(_read(self.ca_cert_path), _read(self.ca_key_path))
        except UsageError as exc:
            raise UsageError(
                f"the firewall CA in {self.root} is unusable: {exc}; delete {self.ca_cert_path.name} and "
                f"{self.ca_key_path.name} there to make a new one, then `up` again (agents trust the new one)"
            ) from None

    def _make_ca(self) -> None:
        if self._has_ca():
            return
        # The supervisor's assembly, the firewall and `up` ahead of them (`make_ca_ahead`) may
        # all find no CA at once: one makes it under the lock, taken before cryptography loads,
        # and the others wait and then find it, so a key never meets another's cert.
        with self._writing():
            self._ensure_root()
            with open(self.root / _CA_LOCK, "a") as lock:
                fcntl.flock(lock, fcntl.LOCK_EX)
                if not self._has_ca():
                    from agent_smith.certs import mint_ca

                    fresh = mint_ca(_CA_NAME, days=3650)
                    # Key first: a certificate on disk always has its key beside it.
                    write_atomic(self.ca_key_path, fresh.key_pem, mode=0o600)
                    write_atomic(self.ca_cert_path, fresh.cert_pem, mode=0o644)

    def make_ca_ahead(self) -> int | None:
        """Start making a missing CA in a child process: its pid, for the caller to reap; None
        when the CA exists. Whoever needs it meanwhile waits for that child's CA.

        A child, so that its caller (the supervisor, assembling its agents, for as long as
        it runs) never maps cryptography (~12 MB resident), and so that `up` can make it
        while it starts the supervisor.
        """
        if self._has_ca():
            return None
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                self._make_ca()
                code = 0
            finally:
                os._exit(code)
        return pid

    def ca_cert(self) -> Path:
        """Path of the CA certificate agents trust, generating the CA (in a child) when missing.

        A child that fails leaves the work to this process, which says why.
        """
        maker = self.make_ca_ahead()
        if maker is not None:
            os.waitpid(maker, 0)
        if not self._has_ca():
            self.ca()
        return self.ca_cert_path

    def _has_ca(self) -> bool:
        return self.ca_cert_path.exists() and self.ca_key_path.exists()

    @staticmethod
    def _create_once(path: Path, data: bytes) -> None:
        # Two processes may start at once: the first link wins, the loser reads the winner's key.
        tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
        write_atomic(tmp, data, mode=0o600)
        try:
            os.link(tmp, path)
        except FileExistsError:
            pass
        finally:
            tmp.unlink(missing_ok=True)


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise OperationError(f"{path}: cannot read: {exc.strerror}") from exc
