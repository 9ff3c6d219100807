"""Facts about a certificate as operators read them: names, validity, key,
and SHA-256 fingerprints in Postfix's relay_clientcerts format.

The fingerprints are fingerprints.py's, the ones smtpd compares: either may
be a key in relay_clientcerts; the public-key one survives a renewal that
keeps the key.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed448, ed25519, rsa

from mta.errors import ConfigError
from mta.tls.fingerprints import cert_fingerprint, pubkey_fingerprint

_CERT_BEGIN = b"-----BEGIN CERTIFICATE-----"
_CSR_BEGINS = (b"-----BEGIN CERTIFICATE REQUEST-----", b"-----BEGIN NEW CERTIFICATE REQUEST-----")
_CURVE_NAMES = {"secp256r1": "P-256", "secp384r1": "P-384", "secp521r1": "P-521"}


def read_certificates(path: Path) -> list[x509.Certificate]:
    """Every certificate in a PEM file (leaf first, as chain files are written)."""
    try:
        data = path.read_bytes()
    except OSError as error:
        raise ConfigError(f"{path}: cannot read: {error.strerror}") from None
    if _CERT_BEGIN not in data:
        raise ConfigError(f"{path}: no certificate found (expected a PEM \"CERTIFICATE\" "
                          "block)")
    try:
        return x509.load_pem_x509_certificates(data)
    except ValueError as error:
        raise ConfigError(f"{path}: cannot read the certificate: {error}") from None


def read_request(path: Path) -> x509.CertificateSigningRequest | None:
    """The PKCS#10 request in path, or None when the file holds none."""
    data = path.read_bytes()
    if not any(begin in data for begin in _CSR_BEGINS):
        return None
    try:
        return x509.load_pem_x509_csr(data)
    except ValueError as error:
        raise ConfigError(f"{path}: cannot read the certificate request: {error}") from None


def name_text(name: x509.Name) -> str:
    """A distinguished name as RFC 4514 text, most specific part first."""
    return name.rfc4514_string() or "(empty)"


def name_attribute(name: x509.Name,
                   oid: x509.ObjectIdentifier = x509.oid.NameOID.COMMON_NAME) -> str:
    """The first value of one attribute of a name (the CN by default), "" when absent."""
    values = name.get_attributes_for_oid(oid)
    if not values:
        return ""
    value = values[0].value
    return value if isinstance(value, str) else value.decode("utf-8", "replace")


def common_name(name: x509.Name) -> str:
    return name_attribute(name)


def alt_names(obj: x509.Certificate | x509.CertificateSigningRequest) -> list[str]:
    """The subjectAltName entries as ``DNS:name``, ``IP:addr``, ``email:addr``."""
    try:
        ext = obj.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return []
    names = []
    for entry in ext:
        if isinstance(entry, x509.DNSName):
            names.append(f"DNS:{entry.value}")
        elif isinstance(entry, x509.IPAddress):
            names.append(f"IP:{entry.value}")
        elif isinstance(entry, x509.RFC822Name):
            names.append(f"email:{entry.value}")
        elif isinstance(entry, x509.UniformResourceIdentifier):
            names.append(f"URI:{entry.value}")
        else:
            names.append(f"other:{entry.value!r}")
    return names


def plain_alt_names(obj: x509.Certificate | x509.CertificateSigningRequest) -> list[str]:
    """The SAN values without their type prefix (for renewing with the same names)."""
    return [name.partition(":")[2] for name in alt_names(obj)]


def key_description(public_key: object) -> str:
    """``ECDSA P-256 (256 bits)``, ``RSA (2048 bits)``, ``Ed25519 (256 bits)``."""
    if isinstance(public_key, rsa.RSAPublicKey):
        return f"RSA ({public_key.key_size} bits)"
    if isinstance(public_key, ec.EllipticCurvePublicKey):
        curve = _CURVE_NAMES.get(public_key.curve.name, public_key.curve.name)
        return f"ECDSA {curve} ({public_key.curve.key_size} bits)"
    if isinstance(public_key, ed25519.Ed25519PublicKey):
        return "Ed25519 (256 bits)"
    if isinstance(public_key, ed448.Ed448PublicKey):
        return "Ed448 (456 bits)"
    if isinstance(public_key, dsa.DSAPublicKey):
        return f"DSA ({public_key.key_size} bits)"
    return type(public_key).__name__


def is_self_signed(cert: x509.Certificate) -> bool:
    """Issued by its own key: same name and a signature its own key verifies."""
    if cert.issuer != cert.subject:
        return False
    try:
        cert.verify_directly_issued_by(cert)
    except (InvalidSignature, ValueError, TypeError, UnsupportedAlgorithm):
        return False
    return True


def is_ca(cert: x509.Certificate) -> bool:
    try:
        return bool(cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca)
    except x509.ExtensionNotFound:
        return False


def days_left(cert: x509.Certificate, now: datetime.datetime) -> int:
    """Whole days until expiry (negative: days since), rounded toward zero."""
    return int((cert.not_valid_after_utc - now) / datetime.timedelta(days=1))


def seconds_left(cert: x509.Certificate, now: datetime.datetime) -> float:
    return (cert.not_valid_after_utc - now).total_seconds()


def is_expired(cert: x509.Certificate, now: datetime.datetime) -> bool:
    return now > cert.not_valid_after_utc


def date_text(moment: datetime.datetime) -> str:
    return moment.astimezone(datetime.UTC).strftime("%Y-%m-%d")


def time_text(moment: datetime.datetime) -> str:
    return moment.astimezone(datetime.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


@dataclass(frozen=True)
class Summary:
    """One certificate as a row of ``mta cert list``."""

    subject: str
    issuer: str
    not_before: datetime.datetime
    not_after: datetime.datetime
    self_signed: bool

    @classmethod
    def of(cls, cert: x509.Certificate) -> Summary:
        return cls(name_text(cert.subject), name_text(cert.issuer), cert.not_valid_before_utc,
                   cert.not_valid_after_utc, is_self_signed(cert))


def describe(cert: x509.Certificate, now: datetime.datetime) -> list[tuple[str, str]]:
    """The fields of ``mta cert show`` as (label, value) pairs, in print order."""
    left = days_left(cert, now)
    if is_expired(cert, now):
        state = f"EXPIRED {-left} day{'s' if -left != 1 else ''} ago"
    elif now < cert.not_valid_before_utc:
        state = "NOT YET VALID"
    else:
        state = f"{left} day{'s' if left != 1 else ''} left"
    usages = extended_usages(cert)
    fields = [
        ("subject", name_text(cert.subject)),
        ("alt names", ", ".join(alt_names(cert)) or "(none)"),
        ("issuer", name_text(cert.issuer)),
        ("serial", f"{cert.serial_number:X}"),
        ("valid from", time_text(cert.not_valid_before_utc)),
        ("expires", f"{time_text(cert.not_valid_after_utc)} ({state})"),
        ("self-signed", "yes" if is_self_signed(cert) else "no"),
        ("CA", "yes" if is_ca(cert) else "no"),
        ("key", key_description(cert.public_key())),
    ]
    if usages:
        fields.append(("usage", ", ".join(usages)))
    fields += [
        ("SHA-256 certificate fingerprint", cert_fingerprint(cert)),
        ("SHA-256 public-key fingerprint", pubkey_fingerprint(cert)),
    ]
    return fields


def extended_usages(cert: x509.Certificate) -> list[str]:
    names = {x509.oid.ExtendedKeyUsageOID.SERVER_AUTH: "TLS server",
             x509.oid.ExtendedKeyUsageOID.CLIENT_AUTH: "TLS client",
             x509.oid.ExtendedKeyUsageOID.EMAIL_PROTECTION: "email protection"}
    try:
        ext = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    except x509.ExtensionNotFound:
        return []
    return [names.get(oid, oid.dotted_string) for oid in ext]


def label_for(cert: x509.Certificate | x509.CertificateSigningRequest) -> str:
    """The value part of a relay_clientcerts line: an email SAN, else the CN."""
    for name in alt_names(cert):
        if name.startswith("email:"):
            return name.partition(":")[2]
    return common_name(cert.subject) or "client"


def relay_clientcerts_line(cert: x509.Certificate, *, public_key: bool = False) -> str:
    """``FP value`` for relay_clientcerts (Postfix ignores the value; it names the user)."""
    fp = pubkey_fingerprint(cert) if public_key else cert_fingerprint(cert)
    return f"{fp} {label_for(cert)}"
