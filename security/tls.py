"""A project-local certificate authority for the dev stack's TLS listeners.

:class:`LocalCA` keeps an ECDSA P-256 CA (10 years) and one server certificate (1 year,
``serverAuth``) under ``<state dir>/security/tls/``; keys are mode 0600. ``ensure`` is
idempotent: it creates what is missing and re-issues the server certificate when it names
other hosts, expires within 30 days, or was signed by another CA, and never touches the CA
once it exists (clients keep trusting ``ca.crt``).

Real certificates: put ``ca.crt`` (the chain clients should trust), ``server.crt`` and
``server.key`` into that folder and delete ``ca.key``. Without the CA's key, ``ensure`` treats
the three files as managed elsewhere and never rewrites them; the broker gets them at its
next start.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from security.errors import TlsError
from security.files import atomic_write, private_dir

__all__ = ["LocalCA", "TlsFiles"]

_CA_DAYS = 3650
_SERVER_DAYS = 365
_RENEW_BEFORE = dt.timedelta(days=30)


@dataclass(frozen=True, slots=True)
class TlsFiles:
    """PEM files: the CA clients trust, and the server's certificate and key."""

    ca_cert: Path
    server_cert: Path
    server_key: Path


def _name(common_name: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "iot-telemetry dev stack"),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


def _san(hosts: tuple[str, ...]) -> list[x509.GeneralName]:
    names: list[x509.GeneralName] = []
    for host in hosts:
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            names.append(x509.DNSName(host))
    return names


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


class LocalCA:
    """The CA and server certificate in ``directory`` (see the module docstring)."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.files = TlsFiles(
            directory / "ca.crt", directory / "server.crt", directory / "server.key"
        )
        self._ca_key = directory / "ca.key"

    @property
    def external(self) -> bool:
        """True when the certificates are managed elsewhere (no CA key, all three files)."""
        files = (self.files.ca_cert, self.files.server_cert, self.files.server_key)
        return not self._ca_key.exists() and all(path.is_file() for path in files)

    def ensure(self, hosts: tuple[str, ...] = ("127.0.0.1", "localhost")) -> TlsFiles:
        """Creates or renews what is needed for a server reachable as ``hosts``."""
        private_dir(self.directory)
        if self.external:
            return self.files
        try:
            ca_cert, ca_key = self._ca()
            if self._server_needs_renewal(ca_cert, hosts):
                self._issue_server(ca_cert, ca_key, hosts)
        except (OSError, ValueError) as exc:
            raise TlsError(f"cannot prepare the local CA in {self.directory}: {exc}") from exc
        return self.files

    def _ca(self) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
        if self.files.ca_cert.is_file() and self._ca_key.is_file():
            key = serialization.load_pem_private_key(self._ca_key.read_bytes(), password=None)
            if not isinstance(key, ec.EllipticCurvePrivateKey):
                raise TlsError(f"{self._ca_key} is not the EC key this CA writes")
            return x509.load_pem_x509_certificate(self.files.ca_cert.read_bytes()), key
        key = ec.generate_private_key(ec.SECP256R1())
        now = dt.datetime.now(dt.UTC)
        name = _name("iot-telemetry local development CA")
        cert = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=_CA_DAYS))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=False,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=True,
                    crl_sign=True,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
            .sign(key, hashes.SHA256())
        )
        atomic_write(self._ca_key, _key_pem(key))
        atomic_write(self.files.ca_cert, cert.public_bytes(serialization.Encoding.PEM), mode=0o644)
        self.files.server_cert.unlink(missing_ok=True)  # signed by a CA that is gone
        return cert, key

    def _server_needs_renewal(self, ca_cert: x509.Certificate, hosts: tuple[str, ...]) -> bool:
        if not (self.files.server_cert.is_file() and self.files.server_key.is_file()):
            return True
        cert = x509.load_pem_x509_certificate(self.files.server_cert.read_bytes())
        try:
            cert.verify_directly_issued_by(ca_cert)
        except (ValueError, TypeError, InvalidSignature):
            return True
        if cert.not_valid_after_utc - dt.datetime.now(dt.UTC) < _RENEW_BEFORE:
            return True
        try:
            names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        except x509.ExtensionNotFound:
            return True
        return set(names) != set(_san(hosts))

    def _issue_server(
        self, ca_cert: x509.Certificate, ca_key: ec.EllipticCurvePrivateKey, hosts: tuple[str, ...]
    ) -> None:
        key = ec.generate_private_key(ec.SECP256R1())
        now = dt.datetime.now(dt.UTC)
        cert = (
            x509.CertificateBuilder()
            .subject_name(_name(hosts[0]))
            .issuer_name(ca_cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=_SERVER_DAYS))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.SubjectAlternativeName(_san(hosts)), critical=False)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), False
            )
            .sign(ca_key, hashes.SHA256())
        )
        atomic_write(self.files.server_key, _key_pem(key))
        atomic_write(
            self.files.server_cert, cert.public_bytes(serialization.Encoding.PEM), mode=0o644
        )
