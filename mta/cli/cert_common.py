"""Helpers shared by the ``mta cert`` subcommands: file names after the
subject, refusing to overwrite, passwords from files or the terminal, keys
read and written, and the CA loaded."""

from __future__ import annotations

import argparse
import datetime
import getpass
import sys
from collections.abc import Sequence
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes

from mta.errors import PosternError
from mta.tls import certinfo, keys
from mta.tls.pemfiles import write_private, write_public

CA_STEM = "ca"


class CertError(PosternError):
    """A refusal of ``mta cert`` (existing file, bad name, no password)."""


def note(text: str) -> None:
    print(f"mta cert: {text}", file=sys.stderr)


def file_stem(name: str) -> str:
    if not name or "/" in name or name.startswith("."):
        raise CertError(f"{name!r} cannot name a file; give the file names with --cert/--key")
    return name


def path_for(explicit: str | None, stem: str, suffix: str) -> Path:
    return Path(explicit) if explicit else Path.cwd() / f"{stem}{suffix}"


def refuse_overwrite(paths: Sequence[Path], force: bool) -> None:
    if force:
        return
    for path in paths:
        if path.exists():
            raise CertError(f"{path} exists; use --force to replace it")


def sans(values: Sequence[str]) -> list[str]:
    return [name for value in values for name in value.replace(",", " ").split() if name]


def prompt(text: str) -> bytes:
    if not sys.stdin.isatty():
        raise CertError(f"{text.rstrip(': ')}: no password file given and no terminal "
                        "to ask on (use --password-file)")
    return getpass.getpass(text).encode()


def prompt_new(what: str) -> bytes:
    first = prompt(f"New password for {what}: ")
    if not first:
        raise CertError("an empty password was given")
    if prompt(f"Again, for {what}: ") != first:
        raise CertError("the passwords do not match")
    return first


def new_password(args: argparse.Namespace, what: str) -> bytes | None:
    if getattr(args, "password_file", None):
        return keys.read_password_file(Path(args.password_file))
    if getattr(args, "encrypt", False):
        return prompt_new(what)
    return None


def read_key(path: Path, password_file: str | None) -> tuple[PrivateKeyTypes, bytes]:
    """The key in path and its PEM block as written, asking for a passphrase
    on the terminal when it is encrypted and no password file is given."""
    try:
        data = path.read_bytes()
    except OSError as error:
        raise CertError(f"{path}: cannot read the private key: {error.strerror}") from None
    block = keys.key_block(data)
    password = None
    source = "--password-file"
    if block is not None and keys.is_encrypted(block):
        if password_file:
            password = keys.read_password_file(Path(password_file))
            source = password_file
        else:
            password = prompt(f"Passphrase for {path}: ")
            source = "the terminal"
    key = keys.parse_private_key(data, str(path), password, source)
    return key, block or b""


def write_key_and_cert(cert_path: Path, key_path: Path, key_bytes: bytes,
                       cert_bytes: bytes) -> None:
    """Write the key (0600) and the certificate; one 0600 file when they share a name."""
    if cert_path.resolve() == key_path.resolve():
        write_private(cert_path, key_bytes + cert_bytes)
        return
    write_private(key_path, key_bytes)
    write_public(cert_path, cert_bytes)


def key_note(path: Path, key: PrivateKeyTypes, encrypted: bool) -> str:
    how = "encrypted, " if encrypted else ""
    return f"wrote {path} ({certinfo.key_description(key.public_key())} key, {how}mode 0600)"


def now_utc() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def load_ca(args: argparse.Namespace, defaults: bool = True
            ) -> tuple[x509.Certificate, PrivateKeyTypes]:
    """The CA certificate and its key (--ca-cert/--ca-key; ca.pem and ca.key
    by default, or the certificate's .key sibling when defaults is False)."""
    cert_path = Path(args.ca_cert) if args.ca_cert else Path.cwd() / f"{CA_STEM}.pem"
    key_path = Path(args.ca_key) if args.ca_key else (
        Path.cwd() / f"{CA_STEM}.key" if defaults else cert_path.with_suffix(".key"))
    ca_cert = certinfo.read_certificates(cert_path)[0]
    if not certinfo.is_ca(ca_cert):
        raise CertError(f"{cert_path}: {certinfo.name_text(ca_cert.subject)} is not a CA "
                        "certificate")
    ca_key, _ = read_key(key_path, args.ca_password_file)
    keys.check_key_matches(ca_key, ca_cert, str(key_path), str(cert_path))
    return ca_cert, ca_key


def p12_password(args: argparse.Namespace, what: str) -> bytes:
    if args.password_file:
        return keys.read_password_file(Path(args.password_file))
    return prompt_new(what)
