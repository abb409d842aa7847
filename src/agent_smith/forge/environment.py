"""Proxy and CA settings for GitHub requests, from an agent's environment (HTTPS_PROXY, SSL_CERT_FILE)."""

from __future__ import annotations

import os
import ssl
import time
from collections.abc import Mapping
from pathlib import Path
from urllib.parse import urlsplit

# Below this size a CA file loads in about a millisecond; above it (the system's ~140 CAs
# plus the firewall's, as an agent's bundle is) parsing every certificate costs ~40 ms.
HASHED_DIR_FROM = 32 * 1024
# A build takes well under a second; one this old belongs to a hook that was killed.
BUILD_ABANDONED_AFTER = 600.0
_PEM_BEGIN = b"-----BEGIN "
_CERT_BEGIN = b"-----BEGIN CERTIFICATE-----"
_CERT_END = b"-----END CERTIFICATE-----"


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


def ssl_context(env: Mapping[str, str], ca_cache: Path | None = None) -> ssl.SSLContext:
    """A verifying client context trusting SSL_CERT_FILE / SSL_CERT_DIR (else the system's CAs).

    With `ca_cache`, a large SSL_CERT_FILE is trusted through a hashed copy of
    it there (see :func:`hashed_ca_dir`): the same certificates, loaded lazily.
    """
    cafile = env.get("SSL_CERT_FILE") or None
    capath = env.get("SSL_CERT_DIR") or None
    hashed = hashed_ca_dir(cafile, ca_cache) if cafile is not None and ca_cache is not None else None
    try:
        if hashed is None:
            return ssl.create_default_context(cafile=cafile, capath=capath)
        context = ssl.create_default_context(capath=hashed)
        if capath is not None:
            context.load_verify_locations(capath=capath)
        return context
    except (OSError, ssl.SSLError) as exc:
        from agent_smith.errors import UsageError  # here: errors imports dataclasses, the hooks avoid it

        raise UsageError(f"SSL_CERT_FILE={cafile}: cannot load CA certificates: {exc}") from exc


def hashed_ca_dir(cafile: str, cache: Path) -> str | None:
    """A directory holding `cafile`'s certificates under OpenSSL's subject-hash names, or None.

    OpenSSL reads such a directory (a ``capath``) lazily, one certificate per
    issuer it looks up, where a CA file is parsed whole on every load. The
    directory is built once per version of the file (keyed by its inode, size
    and mtime) with ``openssl rehash``. None when the file is small, holds
    anything but certificates, or the directory cannot be built: then the
    caller loads the file itself, with the same trust.
    """
    try:
        stat = os.stat(cafile)
    except OSError:
        return None  # loading it names the problem
    if stat.st_size < HASHED_DIR_FROM:
        return None
    target = cache / f"{stat.st_dev}-{stat.st_ino}-{stat.st_size}-{stat.st_mtime_ns}"
    if target.is_dir():
        return str(target)
    return _build_hashed_dir(Path(cafile), cache, target)


def split_certificates(pem: bytes) -> list[bytes] | None:
    """Each certificate of a PEM bundle; None when it holds any other PEM block (a CRL, a key)."""
    found = []
    start = pem.find(_CERT_BEGIN)
    while start != -1:
        end = pem.find(_CERT_END, start)
        if end == -1:
            return None
        found.append(pem[start : end + len(_CERT_END)] + b"\n")
        start = pem.find(_CERT_BEGIN, end)
    return found if found and pem.count(_PEM_BEGIN) == len(found) else None


def _build_hashed_dir(cafile: Path, cache: Path, target: Path) -> str | None:
    import shutil
    import subprocess

    try:
        certificates = split_certificates(cafile.read_bytes())
    except OSError:
        return None
    if certificates is None:
        return None
    building = cache / f".building-{os.getpid()}-{os.urandom(4).hex()}"
    try:
        building.mkdir(parents=True, mode=0o700)
        for n, certificate in enumerate(certificates):
            (building / f"ca-{n:04d}.pem").write_bytes(certificate)
        done = subprocess.run(["openssl", "rehash", str(building)], capture_output=True, timeout=60, check=False)
        if done.returncode != 0 or not any(p.is_symlink() for p in building.iterdir()):
            shutil.rmtree(building, ignore_errors=True)
            return None
        building.chmod(0o755)
        os.rename(building, target)
    except (OSError, subprocess.SubprocessError):
        shutil.rmtree(building, ignore_errors=True)
        if not target.is_dir():  # else another hook built it first
            return None
    for old in cache.iterdir():
        if old == target or not old.is_dir():
            continue
        # Another hook may be building right now; one left by a killed hook is long stale.
        if old.name.startswith(".building-") and not _stale(old):
            continue
        shutil.rmtree(old, ignore_errors=True)
    return str(target)


def _stale(building: Path) -> bool:
    try:
        return time.time() - building.stat().st_mtime > BUILD_ABANDONED_AFTER
    except OSError:
        return False
