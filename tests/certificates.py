"""Certificates made at test time (``cryptography``): a test CA standing in for TradingView's issuer,
the service's own server certificate, and the client certificates a webhook may present."""

from __future__ import annotations

import dataclasses
import datetime
import ipaddress
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

# TradingView's client certificate's subject (TradingView's support pages), and its SAN.
TRADINGVIEW_SUBJECT = {
    "C": "US",
    "ST": "Ohio",
    "L": "Westerville",
    "O": "TradingView, Inc.",
    "CN": "TradingView Webhooks",
}
TRADINGVIEW_EMAIL = "webhook-server@tradingview.com"
_OIDS = {
    "C": NameOID.COUNTRY_NAME,
    "ST": NameOID.STATE_OR_PROVINCE_NAME,
    "L": NameOID.LOCALITY_NAME,
    "O": NameOID.ORGANIZATION_NAME,
    "CN": NameOID.COMMON_NAME,
}


def name(subject: dict[str, str]) -> x509.Name:
    return x509.Name([x509.NameAttribute(_OIDS[kind], value) for kind, value in subject.items()])


@dataclasses.dataclass
class Issued:
    """A certificate and its key, written as PEM files."""

    cert_file: Path
    key_file: Path

    @property
    def pair(self) -> tuple[str, str]:
        """As ``requests``' ``cert=`` takes it."""
        return str(self.cert_file), str(self.key_file)


class TestCa:
    """A certificate authority of a test's own, writing what it issues into ``folder``."""

    __test__ = False  # not a pytest class

    def __init__(self, folder: Path, common_name: str = "Test Root CA"):
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)
        self.key = ec.generate_private_key(ec.SECP256R1())
        self.name = name({"O": "Test CA Org", "CN": common_name})
        now = _now()
        self.cert = (
            x509.CertificateBuilder()
            .subject_name(self.name)
            .issuer_name(self.name)
            .public_key(self.key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=30))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(self.key.public_key()), critical=False)
            .sign(self.key, hashes.SHA256())
        )
        self.cert_file = folder / f"{_slug(common_name)}.pem"
        self.cert_file.write_bytes(self.cert.public_bytes(serialization.Encoding.PEM))

    def client(self, label: str, subject: dict[str, str], email: str | None = TRADINGVIEW_EMAIL) -> Issued:
        """A client certificate (clientAuth) for ``subject``."""
        extensions = [x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH])]
        if email:
            extensions.append(x509.SubjectAlternativeName([x509.RFC822Name(email)]))
        return self._issue(label, name(subject), extensions)

    def server(self, label: str = "server") -> Issued:
        """The service's own certificate, for 127.0.0.1 and localhost."""
        names = [x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]
        extensions = [
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]),
            x509.SubjectAlternativeName(names),
        ]
        return self._issue(label, name({"CN": "localhost"}), extensions)

    def _issue(self, label: str, subject: x509.Name, extensions: list) -> Issued:
        key = ec.generate_private_key(ec.SECP256R1())
        now = _now()
        builder = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(self.name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=30))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(self.key.public_key()), critical=False)
        )
        for extension in extensions:
            builder = builder.add_extension(extension, critical=False)
        cert = builder.sign(self.key, hashes.SHA256())
        issued = Issued(self.folder / f"{label}.pem", self.folder / f"{label}.key")
        issued.cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        issued.key_file.write_bytes(private_pem(key))
        issued.key_file.chmod(0o600)
        return issued


def private_pem(key, password: bytes | None = None) -> bytes:
    encryption = serialization.BestAvailableEncryption(password) if password else serialization.NoEncryption()
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption)


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def _slug(text: str) -> str:
    return "".join(c if c.isalnum() else "-" for c in text.lower())
