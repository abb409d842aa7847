"""agent_smith.certs: a CA and the server leaves it signs, checked by a real TLS handshake."""

from __future__ import annotations

import ipaddress
import socket
import ssl
import threading
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec

from agent_smith.certs import load_ca, mint_ca
from agent_smith.errors import UsageError


def test_leaf_is_signed_by_the_ca_for_the_names_asked() -> None:
    ca = mint_ca("test CA")
    cert_pem, key_pem = ca.issue(["api.example.test", "127.0.0.9"])
    leaf = x509.load_pem_x509_certificate(cert_pem)
    leaf.verify_directly_issued_by(ca.cert)
    san = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["api.example.test"]
    assert san.get_values_for_type(x509.IPAddress) == [ipaddress.ip_address("127.0.0.9")]
    assert isinstance(ca.key.curve, ec.SECP256R1)
    assert ca.cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    assert b"PRIVATE KEY" in key_pem


def test_round_trip_and_bad_input() -> None:
    ca = mint_ca("test CA")
    again = load_ca(ca.cert_pem, ca.key_pem)
    assert again.cert == ca.cert
    with pytest.raises(UsageError, match="at least one host name"):
        ca.issue([])
    with pytest.raises(UsageError, match="not a PEM"):
        load_ca(b"nonsense", b"nonsense")


def _serve(listener: socket.socket, ctx: ssl.SSLContext, times: int) -> None:
    for _ in range(times):
        conn, _ = listener.accept()
        try:
            with ctx.wrap_socket(conn, server_side=True) as tls:
                tls.sendall(b"hello")
        except (ssl.SSLError, OSError):
            conn.close()


def test_python_ssl_trusts_the_leaf_through_its_ca_only(tmp_path: Path) -> None:
    ca = mint_ca("test CA")
    cert_pem, key_pem = ca.issue(["localhost"])
    (tmp_path / "c.pem").write_bytes(cert_pem)
    (tmp_path / "k.pem").write_bytes(key_pem)
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_ctx.load_cert_chain(tmp_path / "c.pem", tmp_path / "k.pem")
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    thread = threading.Thread(target=_serve, args=(listener, server_ctx, 2))
    thread.start()
    try:
        trusting = ssl.create_default_context(cadata=ca.cert_pem.decode())
        with (
            socket.create_connection(("127.0.0.1", port)) as raw,
            trusting.wrap_socket(raw, server_hostname="localhost") as tls,
        ):
            assert tls.recv(5) == b"hello"
        stranger = ssl.create_default_context(cadata=mint_ca("other").cert_pem.decode())
        with (
            socket.create_connection(("127.0.0.1", port)) as raw,
            pytest.raises(ssl.SSLCertVerificationError),
        ):
            stranger.wrap_socket(raw, server_hostname="localhost")
    finally:
        thread.join(timeout=10)
        listener.close()
