"""Private keys: writing them 0600, reading them with the configured passphrase,
and the error messages that name the key file."""

from __future__ import annotations

import os
import ssl
import stat
from pathlib import Path

import pytest

from mta import config as configuration
from mta.errors import ConfigError
from mta.tls import certs, keys
from mta.tls.pemfiles import write_private, write_public
from tests.fakes.certs import self_signed


def config_in(directory: Path, text: str = "") -> configuration.Config:
    path = directory / "main.cf"
    path.write_text(text)
    return configuration.load(str(path))


@pytest.fixture
def encrypted(tmp_path: Path) -> tuple[Path, Path]:
    server = self_signed("mx.example.test").write(tmp_path, "server", password=b"correct horse")
    (tmp_path / "keypass").write_text("correct horse\n")
    (tmp_path / "keypass").chmod(0o600)
    return server.cert_file, server.key_file


def test_key_files_are_0600_whatever_the_umask(tmp_path: Path) -> None:
    old = os.umask(0)
    try:
        write_private(tmp_path / "a.key", b"secret")
        write_public(tmp_path / "a.pem", b"public")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "a.key").stat().st_mode) == 0o600
    assert stat.S_IMODE((tmp_path / "a.pem").stat().st_mode) == 0o644
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.key", "a.pem"]  # no temporaries


def test_encrypted_key_opens_with_the_password_file(tmp_path: Path,
                                                    encrypted: tuple[Path, Path]) -> None:
    _, key_path = encrypted
    assert key_path.read_bytes().startswith(b"-----BEGIN ENCRYPTED PRIVATE KEY-----")
    config = config_in(tmp_path, "tls_key_password_file = keypass\n")
    key = keys.load_private_key(key_path, config)
    # An ECDSA key; PrivateKeyTypes also covers keys without public_numbers().
    assert key.public_key().public_numbers() is not None  # type: ignore[union-attr]


def test_wrong_passphrase_names_the_key_file(tmp_path: Path,
                                             encrypted: tuple[Path, Path]) -> None:
    _, key_path = encrypted
    (tmp_path / "keypass").write_text("battery staple\n")
    config = config_in(tmp_path, "tls_key_password_file = keypass\n")
    with pytest.raises(ConfigError) as error:
        keys.load_private_key(key_path, config)
    assert str(error.value) == (
        f"{key_path}: cannot decrypt the private key with the passphrase from "
        f"tls_key_password_file = {tmp_path / 'keypass'}: wrong passphrase?")


def test_missing_passphrase_names_the_key_file_and_the_parameter(
        tmp_path: Path, encrypted: tuple[Path, Path]) -> None:
    _, key_path = encrypted
    config = config_in(tmp_path)
    with pytest.raises(ConfigError) as error:
        keys.load_private_key(key_path, config)
    assert str(error.value) == (
        f"{key_path}: the private key is encrypted, but no passphrase was given "
        f"(tls_key_password_file is not set in {tmp_path / 'main.cf'})")


def test_unreadable_password_file(tmp_path: Path, encrypted: tuple[Path, Path]) -> None:
    _, key_path = encrypted
    config = config_in(tmp_path, "tls_key_password_file = nowhere\n")
    with pytest.raises(ConfigError, match=r"nowhere: cannot read the key password file: "
                                          r"No such file or directory"):
        keys.load_private_key(key_path, config)


def test_empty_password_file(tmp_path: Path, encrypted: tuple[Path, Path]) -> None:
    _, key_path = encrypted
    (tmp_path / "keypass").write_text("\n")
    config = config_in(tmp_path, "tls_key_password_file = keypass\n")
    with pytest.raises(ConfigError, match="the key password file is empty"):
        keys.load_private_key(key_path, config)


def test_password_file_line_endings_are_not_part_of_the_passphrase(tmp_path: Path) -> None:
    (tmp_path / "pw").write_bytes(b"s3cret\r\nignored second line\n")
    assert keys.read_password_file(tmp_path / "pw") == b"s3cret"


def test_password_file_readable_by_others_is_warned(tmp_path: Path) -> None:
    (tmp_path / "pw").write_text("x\n")
    (tmp_path / "pw").chmod(0o644)
    assert keys.password_file_warning(tmp_path / "pw") == (
        f"{tmp_path / 'pw'}: the key password file is accessible by group or others "
        "(mode 0644); chmod 600 it")
    (tmp_path / "pw").chmod(0o600)
    assert keys.password_file_warning(tmp_path / "pw") is None


def test_unencrypted_key_needs_no_password_file(tmp_path: Path) -> None:
    key_path = tmp_path / "plain.key"
    write_private(key_path, keys.key_pem(keys.generate_key("rsa")))
    keys.load_private_key(key_path, config_in(tmp_path))


def test_key_and_certificate_in_one_file(tmp_path: Path) -> None:
    """Postfix's smtpd_tls_key_file defaults to $smtpd_tls_cert_file."""
    cert, key = tmp_path / "both.pem", tmp_path / "both.pem"
    assert certs.ensure_self_signed(cert, key, "mx.example.test")
    data = cert.read_bytes()
    assert b"PRIVATE KEY" in data and b"BEGIN CERTIFICATE" in data
    assert stat.S_IMODE(cert.stat().st_mode) == 0o600
    keys.load_private_key(key, config_in(tmp_path))


def test_not_a_key(tmp_path: Path) -> None:
    (tmp_path / "x.key").write_text("hello\n")
    with pytest.raises(ConfigError, match=r"x.key: no private key found"):
        keys.load_private_key(tmp_path / "x.key", config_in(tmp_path))


def test_load_cert_chain_into_an_ssl_context(tmp_path: Path,
                                             encrypted: tuple[Path, Path]) -> None:
    cert_path, key_path = encrypted
    config = config_in(tmp_path, "tls_key_password_file = keypass\n")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    keys.load_cert_chain(context, cert_path, key_path, config)


def test_load_cert_chain_refuses_a_key_of_another_certificate(
        tmp_path: Path, encrypted: tuple[Path, Path]) -> None:
    cert_path, _ = encrypted
    other = tmp_path / "other.key"
    write_private(other, keys.key_pem(keys.generate_key()))
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    with pytest.raises(ConfigError) as error:
        keys.load_cert_chain(context, cert_path, other, config_in(tmp_path))
    assert str(error.value) == (f"{other}: the private key does not match the certificate "
                                f"in {cert_path}")


def test_weak_rsa_is_refused() -> None:
    with pytest.raises(ValueError, match="too weak"):
        keys.generate_key("rsa", 1024)
