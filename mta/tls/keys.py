"""Private keys: generating, writing (0600, optionally encrypted) and loading them
with the passphrase from tls_key_password_file.

Keys are PKCS#8 PEM. An encrypted key (``ENCRYPTED PRIVATE KEY``, or the
traditional ``Proc-Type: 4,ENCRYPTED`` form) is opened with the passphrase in
the file that ``tls_key_password_file`` names, so the daemon restarts
unattended (the idea of Sun Messaging Server's sslpassword.conf). Every failure
is a ConfigError naming the key file, so a wrong or missing passphrase stops
the start with a message an operator can act on.
"""

from __future__ import annotations

import re
import ssl
from pathlib import Path
from typing import TYPE_CHECKING

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes

from mta.errors import ConfigError
from mta.tls.certinfo import read_certificates
from mta.tls.fingerprints import spki_der
from mta.tls.pemfiles import loose_mode, write_private

__all__ = ["PrivateKey", "check_key_matches", "generate_key", "key_password", "key_pem",
           "load_cert_chain", "load_private_key", "parse_private_key", "read_password_file",
           "write_private"]

if TYPE_CHECKING:
    from mta.config import Config

PrivateKey = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey
PASSWORD_PARAMETER = "tls_key_password_file"

_KEY_BLOCK = re.compile(
    rb"-----BEGIN ((?:ENCRYPTED |RSA |EC )?PRIVATE KEY)-----.*?"
    rb"-----END \1-----\r?\n?", re.S)


def generate_key(kind: str = "ecdsa", bits: int = 2048) -> PrivateKey:
    """An ECDSA P-256 key by default, or RSA of the given size."""
    if kind == "rsa":
        if bits < 2048:
            raise ValueError(f"RSA keys of {bits} bits are too weak: use 2048 or more")
        return rsa.generate_private_key(public_exponent=65537, key_size=bits)
    if kind == "ecdsa":
        return ec.generate_private_key(ec.SECP256R1())
    raise ValueError(f"unknown key type {kind!r}: expected ecdsa or rsa")


def key_pem(key: PrivateKeyTypes, password: bytes | None = None) -> bytes:
    """PKCS#8 PEM, encrypted with the best available scheme when password is given."""
    encryption: serialization.KeySerializationEncryption = (
        serialization.BestAvailableEncryption(password) if password
        else serialization.NoEncryption())
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             encryption)


# --- reading ------------------------------------------------------------------------
def read_password_file(path: Path) -> bytes:
    """The passphrase: the file's first line, without its line ending."""
    try:
        data = path.read_bytes()
    except OSError as error:
        raise ConfigError(f"{path}: cannot read the key password file: "
                          f"{error.strerror}") from None
    password = data.split(b"\n", 1)[0].rstrip(b"\r")
    if not password:
        raise ConfigError(f"{path}: the key password file is empty")
    return password


def password_file_warning(path: Path) -> str | None:
    """A warning when the password file can be read by group or others."""
    try:
        mode = loose_mode(path)
    except OSError:
        return None
    if mode is not None:
        return (f"{path}: the key password file is accessible by group or others "
                f"(mode {mode:04o}); chmod 600 it")
    return None


def configured_password_file(config: Config) -> Path | None:
    value = config.get(PASSWORD_PARAMETER)
    return config.path_of(value) if value else None


def key_password(config: Config) -> bytes | None:
    """The configured passphrase for encrypted keys, or None when none is set.

    For ``ssl.SSLContext.load_cert_chain(cert, key, password=...)``.
    """
    path = configured_password_file(config)
    return read_password_file(path) if path is not None else None


def key_block(data: bytes) -> bytes | None:
    """The first private key PEM block in data (a key file, or a combined
    key-and-certificate file, as tls_server_sni_maps entries are)."""
    match = _KEY_BLOCK.search(data)
    return match.group(0) if match else None


def is_encrypted(block: bytes) -> bool:
    return block.startswith(b"-----BEGIN ENCRYPTED") or b"Proc-Type: 4,ENCRYPTED" in block


def parse_private_key(data: bytes, where: str, password: bytes | None,
                      password_source: str) -> PrivateKeyTypes:
    """The private key in data; ConfigError naming where (and password_source,
    the place the passphrase came from) on any failure."""
    block = key_block(data)
    if block is None:
        raise ConfigError(f"{where}: no private key found (expected a PEM "
                          "\"PRIVATE KEY\" block)")
    encrypted = is_encrypted(block)
    if encrypted and password is None:
        raise ConfigError(f"{where}: the private key is encrypted, but no passphrase was "
                          f"given ({password_source})")
    try:
        key = serialization.load_pem_private_key(block, password if encrypted else None)
    except (ValueError, TypeError) as error:
        if encrypted:
            raise ConfigError(f"{where}: cannot decrypt the private key with the passphrase "
                              f"from {password_source}: wrong passphrase?") from None
        raise ConfigError(f"{where}: cannot read the private key: {error}") from None
    if not isinstance(key, (rsa.RSAPrivateKey, ec.EllipticCurvePrivateKey,
                            ed25519.Ed25519PrivateKey, ed448.Ed448PrivateKey)):
        raise ConfigError(f"{where}: unsupported private key type {type(key).__name__}")
    return key


def load_private_key(path: Path, config: Config) -> PrivateKeyTypes:
    """Load the key in path, decrypting it with the passphrase in
    tls_key_password_file when it is encrypted; ConfigError names the file."""
    try:
        data = path.read_bytes()
    except OSError as error:
        raise ConfigError(f"{path}: cannot read the private key: {error.strerror}") from None
    password_file = configured_password_file(config)
    if password_file is None:
        return parse_private_key(data, str(path), None,
                                 f"{PASSWORD_PARAMETER} is not set in {config.path}")
    block = key_block(data)
    password = read_password_file(password_file) if block and is_encrypted(block) else None
    return parse_private_key(data, str(path), password,
                             f"{PASSWORD_PARAMETER} = {password_file}")


def is_key_of(key: PrivateKeyTypes, cert: x509.Certificate) -> bool:
    """Is key the private half of cert's public key?"""
    return spki_der(key.public_key()) == spki_der(cert.public_key())


def check_key_matches(key: PrivateKeyTypes, cert: x509.Certificate, key_where: str,
                      cert_where: str) -> None:
    """ConfigError unless key is the private half of cert's public key."""
    if not is_key_of(key, cert):
        raise ConfigError(f"{key_where}: the private key does not match the certificate "
                          f"in {cert_where}")


def load_cert_chain(context: ssl.SSLContext, cert_path: Path, key_path: Path,
                    config: Config) -> None:
    """context.load_cert_chain with the configured passphrase, after checking
    the key ourselves so that a bad passphrase or a mismatched key is a clear
    ConfigError naming the file rather than an OpenSSL error code."""
    key = load_private_key(key_path, config)
    chain = read_certificates(cert_path)
    check_key_matches(key, chain[0], str(key_path), str(cert_path))
    password = key_password(config) if is_encrypted(key_block(key_path.read_bytes()) or b"") \
        else None
    try:
        context.load_cert_chain(str(cert_path), str(key_path), password=password)
    except ssl.SSLError as error:
        raise ConfigError(f"{cert_path}: cannot load the certificate chain with key "
                          f"{key_path}: {error.reason or error}") from None
