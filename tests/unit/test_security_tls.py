"""The local CA: a real TLS handshake trusts it, renewal rules, private keys stay private."""

from __future__ import annotations

import socket
import ssl
import stat
import threading
from pathlib import Path

import pytest
from cryptography import x509

from security import LocalCA


def _handshake(ca: LocalCA, server_hostname: str) -> str:
    """Serves one TLS handshake with the CA's server certificate; returns the client's
    negotiated version (raises what the client raises)."""
    files = ca.files
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_context.load_cert_chain(files.server_cert, files.server_key)
    client_context = ssl.create_default_context(cafile=str(files.ca_cert))
    with socket.create_server(("127.0.0.1", 0)) as listener:
        port = listener.getsockname()[1]

        def serve() -> None:
            connection, _ = listener.accept()
            try:
                with server_context.wrap_socket(connection, server_side=True):
                    pass
            except (ssl.SSLError, OSError):
                connection.close()

        thread = threading.Thread(target=serve)
        thread.start()
        try:
            with (
                socket.create_connection(("127.0.0.1", port), timeout=5) as raw,
                client_context.wrap_socket(raw, server_hostname=server_hostname) as tls,
            ):
                return str(tls.version())
        finally:
            thread.join(5)


def test_a_client_trusting_the_ca_completes_a_handshake(tmp_path: Path) -> None:
    ca = LocalCA(tmp_path / "tls")
    ca.ensure(("127.0.0.1", "localhost"))
    assert _handshake(ca, "127.0.0.1").startswith("TLSv1.")
    assert _handshake(ca, "localhost").startswith("TLSv1.")


def test_a_name_the_certificate_does_not_carry_is_refused(tmp_path: Path) -> None:
    ca = LocalCA(tmp_path / "tls")
    ca.ensure(("127.0.0.1",))
    with pytest.raises(ssl.SSLCertVerificationError):
        _handshake(ca, "example.org")


def test_ensure_is_idempotent_and_keys_are_private(tmp_path: Path) -> None:
    ca = LocalCA(tmp_path / "tls")
    files = ca.ensure()
    before = {path: path.read_bytes() for path in tmp_path.joinpath("tls").iterdir()}
    assert ca.ensure() == files
    assert {path: path.read_bytes() for path in tmp_path.joinpath("tls").iterdir()} == before
    for key in (files.server_key, tmp_path / "tls" / "ca.key"):
        assert stat.S_IMODE(key.stat().st_mode) == 0o600
    certificate = x509.load_pem_x509_certificate(files.ca_cert.read_bytes())
    assert certificate.extensions.get_extension_for_class(x509.BasicConstraints).value.ca


def test_other_hosts_renew_the_server_certificate_but_never_the_ca(tmp_path: Path) -> None:
    ca = LocalCA(tmp_path / "tls")
    files = ca.ensure(("127.0.0.1",))
    ca_before, server_before = files.ca_cert.read_bytes(), files.server_cert.read_bytes()
    ca.ensure(("10.0.0.7", "broker.local"))
    assert files.ca_cert.read_bytes() == ca_before
    assert files.server_cert.read_bytes() != server_before
    names = (
        x509.load_pem_x509_certificate(files.server_cert.read_bytes())
        .extensions.get_extension_for_class(x509.SubjectAlternativeName)
        .value
    )
    assert names.get_values_for_type(x509.DNSName) == ["broker.local"]


def test_a_lost_ca_certificate_makes_a_new_ca_and_reissues_the_server_certificate(
    tmp_path: Path,
) -> None:
    ca = LocalCA(tmp_path / "tls")
    files = ca.ensure()
    old_ca, old_server = files.ca_cert.read_bytes(), files.server_cert.read_bytes()
    files.ca_cert.unlink()
    ca.ensure()
    assert files.ca_cert.read_bytes() != old_ca
    assert files.server_cert.read_bytes() != old_server
    assert _handshake(ca, "127.0.0.1").startswith("TLSv1.")


def test_certificates_managed_elsewhere_are_never_rewritten(tmp_path: Path) -> None:
    real = LocalCA(tmp_path / "real").ensure(("127.0.0.1", "broker.example"))
    ours = LocalCA(tmp_path / "tls")
    for source, target in (
        (real.ca_cert, ours.files.ca_cert),
        (real.server_cert, ours.files.server_cert),
        (real.server_key, ours.files.server_key),
    ):
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(source.read_bytes())
    assert ours.external
    before = {path: path.read_bytes() for path in (tmp_path / "tls").iterdir()}
    ours.ensure(("10.9.9.9",))  # other hosts would renew a certificate of ours
    assert {path: path.read_bytes() for path in (tmp_path / "tls").iterdir()} == before
    assert not (tmp_path / "tls" / "ca.key").exists()
