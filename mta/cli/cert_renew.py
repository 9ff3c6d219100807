"""``mta cert renew``: a new certificate with the same names, re-signed by its
own key or by our CA, or else a new request for the CA that signed it."""

from __future__ import annotations

import argparse
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes

from mta.cli.cert_common import (
    CertError,
    key_note,
    load_ca,
    new_password,
    note,
    now_utc,
    p12_password,
    read_key,
    refuse_overwrite,
    write_key_and_cert,
)
from mta.tls import certinfo, certs, keys, pkcs12
from mta.tls.pemfiles import keep_old, write_private, write_public


def _renew_key_path(args: argparse.Namespace, cert_path: Path, old: x509.Certificate) -> Path:
    if args.key:
        return Path(args.key)
    sibling = cert_path.with_suffix(".key")
    if sibling.exists():
        return sibling
    if keys.key_block(cert_path.read_bytes()) is not None:
        return cert_path
    cn = certinfo.common_name(old.subject)
    named = Path.cwd() / f"{cn}.key" if cn and "/" not in cn else sibling
    return named if named.exists() else sibling


def _same_kind_key(old_key: object) -> keys.PrivateKey:
    if isinstance(old_key, rsa.RSAPublicKey):
        return keys.generate_key("rsa", max(2048, old_key.key_size))
    return keys.generate_key("ecdsa")


def renew(args: argparse.Namespace) -> int:
    cert_path = Path(args.file)
    old = certinfo.read_certificates(cert_path)[0]
    key_path = _renew_key_path(args, cert_path, old)
    days = args.days or certs.lifetime_days(old)
    if args.new_key:
        key: PrivateKeyTypes = _same_kind_key(old.public_key())
        password = new_password(args, f"the new key for {cert_path}")
        key_bytes = keys.key_pem(key, password)
    else:
        key, key_bytes = read_key(key_path, args.password_file)
        keys.check_key_matches(key, old, str(key_path), str(cert_path))
    if certinfo.is_self_signed(old):
        new = certs.reissue(old, key.public_key(), old.subject, key,  # type: ignore[arg-type]
                            days)
        return _install_renewal(args, cert_path, key_path, key, key_bytes, old, new)
    if args.ca_cert or args.ca_key:
        ca_cert, ca_key = load_ca(args, defaults=False)
        if old.issuer != ca_cert.subject:
            raise CertError(f"{cert_path} was issued by {certinfo.name_text(old.issuer)}, "
                            f"not by {certinfo.name_text(ca_cert.subject)}")
        days = min(days, max(1, (ca_cert.not_valid_after_utc - now_utc()).days))
        new = certs.reissue(old, key.public_key(), ca_cert.subject, ca_key,  # type: ignore[arg-type]
                            days)
        return _install_renewal(args, cert_path, key_path, key, key_bytes, old, new)
    return _renewal_request(args, cert_path, key_path, key, key_bytes, old)


def _install_renewal(args: argparse.Namespace, cert_path: Path, key_path: Path,
                     key: PrivateKeyTypes, key_bytes: bytes, old: x509.Certificate,
                     new: x509.Certificate) -> int:
    out = Path(args.cert) if args.cert else cert_path
    combined = out.resolve() == key_path.resolve()
    # Intermediates after the leaf stay, so a chain file remains a chain file.
    rest = b"".join(certs.cert_pem(c) for c in certinfo.read_certificates(cert_path)[1:])
    cert_bytes = certs.cert_pem(new) + rest
    kept = keep_old(out)
    if args.new_key and not combined:
        note(f"kept the old key as {keep_old(key_path)}")
    if combined or args.new_key:
        write_key_and_cert(out, key_path, key_bytes, cert_bytes)
    else:
        write_public(out, cert_bytes)
    if args.new_key:
        note(key_note(key_path, key, keys.is_encrypted(key_bytes)))
    note(f"wrote {out} (renewed {certinfo.name_text(new.subject)}; expires "
         f"{certinfo.date_text(new.not_valid_after_utc)})"
         + (f"; the old one is {kept}" if kept else ""))
    if args.p12:
        password = p12_password(args, f"the PKCS#12 file {args.p12}")
        write_private(Path(args.p12), pkcs12.export(
            key, new, password, friendly_name=certinfo.label_for(new),  # type: ignore[arg-type]
            legacy=args.legacy_p12))
        note(f"wrote {args.p12} (PKCS#12 for the mail client, mode 0600)")
    if _is_client(new):
        note("its relay_clientcerts line changed" + (
            "" if args.new_key else " (its public-key fingerprint did not)") + ":")
        print(certinfo.relay_clientcerts_line(new))
    return 0


def _is_client(cert: x509.Certificate) -> bool:
    usages = certinfo.extended_usages(cert)
    return "TLS client" in usages and "TLS server" not in usages


def _renewal_request(args: argparse.Namespace, cert_path: Path, key_path: Path,
                     key: PrivateKeyTypes, key_bytes: bytes, old: x509.Certificate) -> int:
    csr_path = Path(args.csr) if args.csr else cert_path.with_suffix(".csr")
    new_key_path = key_path.with_suffix(".new.key") if args.new_key else key_path
    refuse_overwrite([csr_path, *([new_key_path] if args.new_key else [])], args.force)
    csr = certs.request_from(old, key)  # type: ignore[arg-type]
    if args.new_key:
        write_private(new_key_path, key_bytes)
        note(key_note(new_key_path, key, keys.is_encrypted(key_bytes)))
    write_public(csr_path, certs.request_pem(csr))
    note(f"{cert_path} was issued by {certinfo.name_text(old.issuer)}: wrote {csr_path}, a "
         f"request for {certinfo.name_text(old.subject)} with the same names; send it to that "
         f"CA and install the new certificate as {cert_path} with the key {new_key_path}")
    return 0
