"""``mta cert self-signed``, ``request``, ``ca init`` and ``issue-client``:
making keys, certificates, requests, the private CA and client certificates."""

from __future__ import annotations

import argparse
from pathlib import Path

from mta.cli.cert_common import (
    CA_STEM,
    CertError,
    file_stem,
    key_note,
    load_ca,
    new_password,
    note,
    p12_password,
    path_for,
    refuse_overwrite,
    sans,
    write_key_and_cert,
)
from mta.tls import ca, certinfo, certs, keys, pkcs12
from mta.tls.pemfiles import write_private, write_public


def _new_key(args: argparse.Namespace, paths: list[Path], what: str
             ) -> tuple[keys.PrivateKey, bytes | None]:
    """Refuse to overwrite paths (unless --force), take the key's passphrase
    (--password-file, --encrypt or none) and make the key --key-type asks for."""
    refuse_overwrite(paths, args.force)
    password = new_password(args, what)
    return keys.generate_key(args.key_type, args.bits), password


def self_signed(args: argparse.Namespace) -> int:
    stem = file_stem(args.name)
    cert_path = path_for(args.cert, stem, ".pem")
    key_path = path_for(args.key, stem, ".key")
    key, password = _new_key(args, [cert_path, key_path], f"the key {key_path}")
    cert = certs.self_signed(key, args.name, sans(args.san), args.days, organization=args.org)
    write_key_and_cert(cert_path, key_path, keys.key_pem(key, password), certs.cert_pem(cert))
    note(key_note(key_path, key, password is not None))
    note(f"wrote {cert_path} (self-signed for {', '.join(certinfo.plain_alt_names(cert))}; "
         f"expires {certinfo.date_text(cert.not_valid_after_utc)})")
    return 0


def request(args: argparse.Namespace) -> int:
    stem = file_stem(args.name)
    csr_path = path_for(args.csr, stem, ".csr")
    key_path = path_for(args.key, stem, ".key")
    key, password = _new_key(args, [csr_path, key_path], f"the key {key_path}")
    csr = certs.signing_request(key, args.name, sans(args.san), organization=args.org)
    write_private(key_path, keys.key_pem(key, password))
    write_public(csr_path, certs.request_pem(csr))
    note(key_note(key_path, key, password is not None))
    note(f"wrote {csr_path} (request for {', '.join(certinfo.plain_alt_names(csr))}); "
         "send it to your CA and install the certificate it returns with this key")
    return 0


def ca_init(args: argparse.Namespace) -> int:
    cert_path = path_for(args.ca_cert, CA_STEM, ".pem")
    key_path = path_for(args.ca_key, CA_STEM, ".key")
    key, password = _new_key(args, [cert_path, key_path], f"the CA key {key_path}")
    cert = ca.ca_certificate(key, args.name, args.days, organization=args.org)
    write_key_and_cert(cert_path, key_path, keys.key_pem(key, password), certs.cert_pem(cert))
    note(key_note(key_path, key, password is not None))
    note(f"wrote {cert_path} (CA {certinfo.name_text(cert.subject)}; expires "
         f"{certinfo.date_text(cert.not_valid_after_utc)}); set smtpd_tls_CAfile = "
         f"{cert_path} to trust the client certificates it issues")
    return 0


# --- issue-client -------------------------------------------------------------------
def _check_user(user: str) -> None:
    local, at, domain = user.rpartition("@")
    if not at or not local or not domain or "@" in local or any(c.isspace() for c in user):
        raise CertError(f"{user!r} is not an address of the form USER@DOMAIN")


def issue_client(args: argparse.Namespace) -> int:
    user = args.user
    _check_user(user)
    stem = file_stem(user)
    cert_path = path_for(args.cert, stem, ".pem")
    key_path = path_for(args.key, stem, ".key")
    p12_path = path_for(args.p12, stem, ".p12")
    refuse_overwrite([cert_path, key_path, p12_path], args.force)
    ca_cert, ca_key = load_ca(args)
    password = p12_password(args, f"the PKCS#12 file {p12_path}")
    key = keys.generate_key(args.key_type, args.bits)
    cert = ca.client_certificate(key.public_key(), user, ca_cert, ca_key,  # type: ignore[arg-type]
                                 args.days)
    # The user's key leaves in the PKCS#12 file; the copy kept here is
    # encrypted with the same password, so this directory holds no usable key.
    write_key_and_cert(cert_path, key_path, keys.key_pem(key, password), certs.cert_pem(cert))
    write_private(p12_path, pkcs12.export(key, cert, password, friendly_name=user,
                                          legacy=args.legacy_p12))
    note(key_note(key_path, key, True))
    note(f"wrote {cert_path} (client certificate for {user}, issued by "
         f"{certinfo.name_text(ca_cert.subject)}; expires "
         f"{certinfo.date_text(cert.not_valid_after_utc)})")
    note(f"wrote {p12_path} (PKCS#12 for the mail client, mode 0600)")
    note("add this line to relay_clientcerts to let it relay under permit_tls_clientcerts:")
    print(certinfo.relay_clientcerts_line(cert))
    return 0
