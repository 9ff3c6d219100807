"""``mta cert``: server certificates, a private CA, and mobile users' client
certificates, without openssl recipes (the model: Sun Messaging Server's msgcert).

    mta cert self-signed --name HOST [--san NAME ...]   key + self-signed certificate
    mta cert request --name HOST [--org ORG] [--san …]  key + PKCS#10 request for a CA
    mta cert ca init --name "Example Mail CA"           a private CA for client certificates
    mta cert issue-client USER@DOMAIN [--days N]        client certificate + PKCS#12 file;
                                                        prints its relay_clientcerts line
    mta cert list                                       the certificates main.cf uses
    mta cert show FILE                                  one certificate (or request) in full
    mta cert renew FILE                                 same names, new validity (or a request)

Files default to names after the subject in the current directory
(HOST.pem, HOST.key, USER@DOMAIN.p12; the CA is ca.pem and ca.key), and every
password can come from a file (--password-file), so each step runs unattended.
Informational notes go to standard error; standard output carries only data
(tables, fields, the relay_clientcerts line), so it can be redirected.
"""

from __future__ import annotations

import argparse
import datetime
import getpass
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes

from mta import config as configuration
from mta.config.types import BadValue, parse_time
from mta.errors import ConfigError, PosternError
from mta.tls import ca, certinfo, certs, keys, pkcs12
from mta.tls.inventory import configured_certificates
from mta.tls.pemfiles import keep_old, write_private, write_public

CA_STEM = "ca"


class CertError(PosternError):
    """A refusal of ``mta cert`` (existing file, bad name, no password)."""


# --- arguments ----------------------------------------------------------------------
def register(subparsers: Any, common: argparse.ArgumentParser) -> None:
    parser = subparsers.add_parser(
        "cert", parents=[common], help="make and inspect certificates (like msgcert)",
        description="Server certificates, a private CA and client certificates for mobile "
                    "users. Files default to names after the subject in the current "
                    "directory; --password-file makes every step unattended.")
    sub = parser.add_subparsers(dest="cert_command", metavar="SUBCOMMAND", required=True)

    p = sub.add_parser("self-signed", parents=[common], help="a key and a self-signed "
                       "server certificate",
                       description="Make a private key (written 0600) and a self-signed "
                                   "server certificate for HOST and the --san names.")
    _name_options(p, "HOST")
    _days(p, certs.DEFAULT_SERVER_DAYS)
    _files(p, cert=True, key=True)
    _new_key_options(p)
    p.set_defaults(func=_guarded(self_signed))

    p = sub.add_parser("request", parents=[common], help="a key and a PKCS#10 request "
                       "for a CA", description="Make a private key and a certificate "
                       "signing request (PEM) to send to a commercial or company CA.")
    _name_options(p, "HOST")
    p.add_argument("--csr", metavar="FILE", help="the request (default: HOST.csr)")
    _files(p, cert=False, key=True)
    _new_key_options(p)
    p.set_defaults(func=_guarded(request))

    ca_parser = sub.add_parser("ca", parents=[common], help="a private CA for client "
                               "certificates", description="Manage the private CA that "
                               "signs client certificates (smtpd_tls_CAfile trusts it).")
    ca_sub = ca_parser.add_subparsers(dest="ca_command", metavar="SUBCOMMAND", required=True)
    p = ca_sub.add_parser("init", parents=[common], help="make the CA key and certificate",
                          description="Make a CA key and self-signed CA certificate that "
                                      "signs client certificates.")
    p.add_argument("--name", required=True, help='the CA name, e.g. "Example Mail CA"')
    p.add_argument("--org", help="an organization name (O=) in the subject")
    _days(p, ca.DEFAULT_CA_DAYS)
    _ca_files(p)
    _new_key_options(p)
    p.set_defaults(func=_guarded(ca_init))

    p = sub.add_parser("issue-client", parents=[common], help="a client certificate for "
                       "a mobile user, as PKCS#12",
                       description="Make a key and a client certificate for USER@DOMAIN "
                                   "signed by the CA, export both as PKCS#12 for the mail "
                                   "client, and print the relay_clientcerts line.")
    p.add_argument("user", metavar="USER@DOMAIN")
    _days(p, ca.DEFAULT_CLIENT_DAYS)
    p.add_argument("--p12", metavar="FILE", help="the PKCS#12 file (default: USER@DOMAIN.p12)")
    p.add_argument("--legacy-p12", action="store_true",
                   help="3DES/SHA-1 PKCS#12 for old mail clients (iOS before 16)")
    _files(p, cert=True, key=True)
    _ca_files(p, aliases=False)
    p.add_argument("--password-file", metavar="FILE",
                   help="the PKCS#12 password (also encrypts the key file); else prompted")
    p.add_argument("--ca-password-file", metavar="FILE",
                   help="the passphrase of an encrypted CA key; else prompted")
    _key_type(p)
    p.add_argument("--force", action="store_true", help="overwrite existing files")
    p.set_defaults(func=_guarded(issue_client))

    p = sub.add_parser("list", parents=[common], help="the certificates main.cf uses",
                       description="List every certificate the configuration uses (server, "
                                   "SNI, client CA, outbound client certificate). Exits 1 "
                                   "when one has expired or cannot be read.")
    _at(p)
    p.add_argument("--warn", metavar="TIME", help="warn when a certificate expires within "
                   "TIME (default: tls_cert_expiry_warning_time, 30d)")
    p.set_defaults(func=_guarded(list_certificates))

    p = sub.add_parser("show", parents=[common], help="one certificate or request in full",
                       description="Show subject, names, issuer, validity, key and SHA-256 "
                                   "fingerprints (relay_clientcerts format).")
    p.add_argument("file", metavar="FILE", nargs="?", help="a PEM certificate or request")
    p.add_argument("--cert", metavar="FILE", help="the same as FILE")
    _at(p)
    p.set_defaults(func=_guarded(show))

    p = sub.add_parser("renew", parents=[common], help="a new certificate with the same "
                       "names (or a new request)",
                       description="Renew FILE in place (the old one is kept as FILE.old): "
                                   "re-sign a self-signed certificate, re-issue one signed "
                                   "by the CA given with --ca-cert/--ca-key, or else write a "
                                   "new request for the CA that signed it. The key is kept "
                                   "unless --new-key, so pinned public-key fingerprints and "
                                   "DANE 3 1 1 records stay valid.")
    p.add_argument("file", metavar="FILE", help="the certificate to renew")
    p.add_argument("--cert", metavar="FILE", help="write the new certificate here instead")
    p.add_argument("--key", metavar="FILE", help="its private key (default: FILE's .key "
                   "sibling, or FILE itself when it holds the key)")
    p.add_argument("--csr", metavar="FILE", help="where a request goes (default: FILE's "
                   ".csr sibling)")
    p.add_argument("--days", type=_positive, help="validity (default: the old lifetime)")
    p.add_argument("--new-key", action="store_true", help="make a new key of the same type")
    _ca_files(p, aliases=False, defaults=False)
    p.add_argument("--password-file", metavar="FILE",
                   help="the key's passphrase (read, and used for a new key); with --p12 "
                        "also the PKCS#12 password")
    p.add_argument("--ca-password-file", metavar="FILE",
                   help="the passphrase of an encrypted CA key; else prompted")
    p.add_argument("--p12", metavar="FILE", help="also export a re-issued client "
                   "certificate as PKCS#12")
    p.add_argument("--legacy-p12", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--force", action="store_true", help="overwrite a new key or request")
    p.set_defaults(func=_guarded(renew))


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def _name_options(p: argparse.ArgumentParser, metavar: str) -> None:
    p.add_argument("--name", required=True, metavar=metavar,
                   help="the hostname (CN and first subjectAltName)")
    p.add_argument("--san", action="append", default=[], metavar="NAME",
                   help="another DNS name or IP address (repeat, or separate with commas)")
    p.add_argument("--org", help="an organization name (O=) in the subject")


def _days(p: argparse.ArgumentParser, default: int) -> None:
    p.add_argument("--days", type=_positive, default=default,
                   help=f"validity in days (default: {default})")


def _files(p: argparse.ArgumentParser, *, cert: bool, key: bool) -> None:
    if cert:
        p.add_argument("--cert", metavar="FILE", help="the certificate (default: NAME.pem)")
    if key:
        p.add_argument("--key", metavar="FILE", help="the private key (default: NAME.key)")


def _ca_files(p: argparse.ArgumentParser, aliases: bool = True, defaults: bool = True) -> None:
    names = ("--ca-cert", "--cert") if aliases else ("--ca-cert",)
    default = f" (default: {CA_STEM}.pem)" if defaults else ""
    p.add_argument(*names, dest="ca_cert", metavar="FILE", help=f"the CA certificate{default}")
    names = ("--ca-key", "--key") if aliases else ("--ca-key",)
    default = f" (default: {CA_STEM}.key)" if defaults else ""
    p.add_argument(*names, dest="ca_key", metavar="FILE", help=f"the CA private key{default}")


def _key_type(p: argparse.ArgumentParser) -> None:
    p.add_argument("--key-type", choices=("ecdsa", "rsa"), default="ecdsa",
                   help="ECDSA P-256 (default) or RSA")
    p.add_argument("--bits", type=int, default=2048, help="RSA key size (default: 2048)")


def _new_key_options(p: argparse.ArgumentParser) -> None:
    _key_type(p)
    group = p.add_mutually_exclusive_group()
    group.add_argument("--password-file", metavar="FILE",
                       help="encrypt the key with the passphrase in FILE (PKCS#8); name the "
                            "same file in tls_key_password_file")
    group.add_argument("--encrypt", action="store_true",
                       help="encrypt the key with a passphrase asked for on the terminal")
    p.add_argument("--force", action="store_true", help="overwrite existing files")


def _at(p: argparse.ArgumentParser) -> None:
    p.add_argument("--at", metavar="DATE", type=_parse_at,
                   help="judge validity as of DATE (YYYY-MM-DD or ISO time, UTC) "
                        "instead of now")


def _parse_at(text: str) -> datetime.datetime:
    try:
        moment = datetime.datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a date (YYYY-MM-DD)") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=datetime.UTC)


def _guarded(function: Any) -> Any:
    def run(args: argparse.Namespace) -> int:
        try:
            return int(function(args) or 0)
        except (CertError, ConfigError, ValueError) as error:
            print(f"mta cert: fatal: {error}", file=sys.stderr)
            return 1
    return run


# --- small helpers ------------------------------------------------------------------
def note(text: str) -> None:
    print(f"mta cert: {text}", file=sys.stderr)


def _stem(name: str) -> str:
    if not name or "/" in name or name.startswith("."):
        raise CertError(f"{name!r} cannot name a file; give the file names with --cert/--key")
    return name


def _path(explicit: str | None, stem: str, suffix: str) -> Path:
    return Path(explicit) if explicit else Path.cwd() / f"{stem}{suffix}"


def _refuse_overwrite(paths: Sequence[Path], force: bool) -> None:
    if force:
        return
    for path in paths:
        if path.exists():
            raise CertError(f"{path} exists; use --force to replace it")


def _sans(values: Sequence[str]) -> list[str]:
    return [name for value in values for name in value.replace(",", " ").split() if name]


def _prompt(prompt: str) -> bytes:
    if not sys.stdin.isatty():
        raise CertError(f"{prompt.rstrip(': ')}: no password file given and no terminal "
                        "to ask on (use --password-file)")
    return getpass.getpass(prompt).encode()


def _prompt_new(what: str) -> bytes:
    first = _prompt(f"New password for {what}: ")
    if not first:
        raise CertError("an empty password was given")
    if _prompt(f"Again, for {what}: ") != first:
        raise CertError("the passwords do not match")
    return first


def _new_password(args: argparse.Namespace, what: str) -> bytes | None:
    if getattr(args, "password_file", None):
        return keys.read_password_file(Path(args.password_file))
    if getattr(args, "encrypt", False):
        return _prompt_new(what)
    return None


def _read_key(path: Path, password_file: str | None) -> tuple[PrivateKeyTypes, bytes]:
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
            password = _prompt(f"Passphrase for {path}: ")
            source = "the terminal"
    key = keys.parse_private_key(data, str(path), password, source)
    return key, block or b""


def _key_and_cert(cert_path: Path, key_path: Path, key_bytes: bytes,
                  cert_bytes: bytes) -> None:
    """Write the key (0600) and the certificate; one 0600 file when they share a name."""
    if cert_path.resolve() == key_path.resolve():
        write_private(cert_path, key_bytes + cert_bytes)
        return
    write_private(key_path, key_bytes)
    write_public(cert_path, cert_bytes)


def _key_note(path: Path, key: PrivateKeyTypes, encrypted: bool) -> str:
    how = "encrypted, " if encrypted else ""
    return f"wrote {path} ({certinfo.key_description(key.public_key())} key, {how}mode 0600)"


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


# --- self-signed, request, ca init ----------------------------------------------------
def self_signed(args: argparse.Namespace) -> int:
    stem = _stem(args.name)
    cert_path = _path(args.cert, stem, ".pem")
    key_path = _path(args.key, stem, ".key")
    _refuse_overwrite([cert_path, key_path], args.force)
    password = _new_password(args, f"the key {key_path}")
    key = keys.generate_key(args.key_type, args.bits)
    cert = certs.self_signed(key, args.name, _sans(args.san), args.days, organization=args.org)
    _key_and_cert(cert_path, key_path, keys.key_pem(key, password), certs.cert_pem(cert))
    note(_key_note(key_path, key, password is not None))
    note(f"wrote {cert_path} (self-signed for {', '.join(certinfo.plain_alt_names(cert))}; "
         f"expires {certinfo.date_text(cert.not_valid_after_utc)})")
    return 0


def request(args: argparse.Namespace) -> int:
    stem = _stem(args.name)
    csr_path = _path(args.csr, stem, ".csr")
    key_path = _path(args.key, stem, ".key")
    _refuse_overwrite([csr_path, key_path], args.force)
    password = _new_password(args, f"the key {key_path}")
    key = keys.generate_key(args.key_type, args.bits)
    csr = certs.signing_request(key, args.name, _sans(args.san), organization=args.org)
    write_private(key_path, keys.key_pem(key, password))
    write_public(csr_path, certs.request_pem(csr))
    note(_key_note(key_path, key, password is not None))
    note(f"wrote {csr_path} (request for {', '.join(certinfo.plain_alt_names(csr))}); "
         "send it to your CA and install the certificate it returns with this key")
    return 0


def ca_init(args: argparse.Namespace) -> int:
    cert_path = _path(args.ca_cert, CA_STEM, ".pem")
    key_path = _path(args.ca_key, CA_STEM, ".key")
    _refuse_overwrite([cert_path, key_path], args.force)
    password = _new_password(args, f"the CA key {key_path}")
    key = keys.generate_key(args.key_type, args.bits)
    cert = ca.ca_certificate(key, args.name, args.days, organization=args.org)
    _key_and_cert(cert_path, key_path, keys.key_pem(key, password), certs.cert_pem(cert))
    note(_key_note(key_path, key, password is not None))
    note(f"wrote {cert_path} (CA {certinfo.name_text(cert.subject)}; expires "
         f"{certinfo.date_text(cert.not_valid_after_utc)}); set smtpd_tls_CAfile = "
         f"{cert_path} to trust the client certificates it issues")
    return 0


# --- issue-client -------------------------------------------------------------------
def _check_user(user: str) -> None:
    local, at, domain = user.rpartition("@")
    if not at or not local or not domain or "@" in local or any(c.isspace() for c in user):
        raise CertError(f"{user!r} is not an address of the form USER@DOMAIN")


def _load_ca(args: argparse.Namespace, defaults: bool = True
             ) -> tuple[x509.Certificate, PrivateKeyTypes]:
    cert_path = Path(args.ca_cert) if args.ca_cert else Path.cwd() / f"{CA_STEM}.pem"
    key_path = Path(args.ca_key) if args.ca_key else (
        Path.cwd() / f"{CA_STEM}.key" if defaults else cert_path.with_suffix(".key"))
    ca_cert = certinfo.read_certificates(cert_path)[0]
    if not certinfo.is_ca(ca_cert):
        raise CertError(f"{cert_path}: {certinfo.name_text(ca_cert.subject)} is not a CA "
                        "certificate")
    ca_key, _ = _read_key(key_path, args.ca_password_file)
    keys.check_key_matches(ca_key, ca_cert, str(key_path), str(cert_path))
    return ca_cert, ca_key


def _p12_password(args: argparse.Namespace, what: str) -> bytes:
    if args.password_file:
        return keys.read_password_file(Path(args.password_file))
    return _prompt_new(what)


def issue_client(args: argparse.Namespace) -> int:
    user = args.user
    _check_user(user)
    stem = _stem(user)
    cert_path = _path(args.cert, stem, ".pem")
    key_path = _path(args.key, stem, ".key")
    p12_path = _path(args.p12, stem, ".p12")
    _refuse_overwrite([cert_path, key_path, p12_path], args.force)
    ca_cert, ca_key = _load_ca(args)
    password = _p12_password(args, f"the PKCS#12 file {p12_path}")
    key = keys.generate_key(args.key_type, args.bits)
    cert = ca.client_certificate(key.public_key(), user, ca_cert, ca_key,  # type: ignore[arg-type]
                                 args.days)
    # The user's key leaves in the PKCS#12 file; the copy kept here is
    # encrypted with the same password, so this directory holds no usable key.
    _key_and_cert(cert_path, key_path, keys.key_pem(key, password), certs.cert_pem(cert))
    write_private(p12_path, pkcs12.export(key, cert, password, friendly_name=user,
                                          legacy=args.legacy_p12))
    note(_key_note(key_path, key, True))
    note(f"wrote {cert_path} (client certificate for {user}, issued by "
         f"{certinfo.name_text(ca_cert.subject)}; expires "
         f"{certinfo.date_text(cert.not_valid_after_utc)})")
    note(f"wrote {p12_path} (PKCS#12 for the mail client, mode 0600)")
    note("add this line to relay_clientcerts to let it relay under permit_tls_clientcerts:")
    print(certinfo.relay_clientcerts_line(cert))
    return 0


# --- list ---------------------------------------------------------------------------
LIST_HEADER = ("USED BY", "FILE", "SUBJECT", "ISSUER", "VALID FROM", "EXPIRES",
               "SELF-SIGNED", "DAYS LEFT")


def list_certificates(args: argparse.Namespace) -> int:
    config = configuration.load(configuration.find_config(args.config))
    now = args.at or _now()
    try:
        window = parse_time(args.warn, unit="d") if args.warn else \
            config.tls_cert_expiry_warning_time
    except BadValue as error:
        raise CertError(f"--warn {args.warn}: {error}") from None
    rows: list[tuple[str, ...]] = []
    problems: list[str] = []
    warnings: list[str] = []
    first_start = config.tls_self_signed_on_first_start
    for item in configured_certificates(config):
        if not item.path.exists() and first_start and item.parameter == "smtpd_tls_cert_file":
            warnings.append(f"{item.shown}: not made yet; mta start makes a self-signed "
                            "certificate there (tls_self_signed_on_first_start = yes)")
            continue
        try:
            chain = certinfo.read_certificates(item.path)
        except ConfigError as error:
            problems.append(f"{item.parameter}: {error}")
            continue
        for cert in chain:
            summary = certinfo.Summary.of(cert)
            left = certinfo.days_left(cert, now)
            rows.append((item.parameter, item.shown, summary.subject, summary.issuer,
                         certinfo.date_text(summary.not_before),
                         certinfo.date_text(summary.not_after),
                         "yes" if summary.self_signed else "no", str(left)))
            what = f"{item.shown}: {summary.subject}"
            if certinfo.is_expired(cert, now):
                problems.append(f"{what}: expired {-left} day{'s' if -left != 1 else ''} ago, "
                                f"on {certinfo.time_text(summary.not_after)}")
            elif certinfo.seconds_left(cert, now) <= window:
                warnings.append(f"{what}: expires in {left} day{'s' if left != 1 else ''}, "
                                f"on {certinfo.time_text(summary.not_after)}")
            if now < summary.not_before:
                problems.append(f"{what}: not valid until "
                                f"{certinfo.time_text(summary.not_before)}")
    if rows:
        print(_table([LIST_HEADER, *rows]))
    else:
        note(f"no certificates are configured in {config.path}")
    for warning in warnings:
        print(f"mta cert: warning: {warning}", file=sys.stderr)
    for problem in problems:
        print(f"mta cert: error: {problem}", file=sys.stderr)
    return 1 if problems else 0


def _table(rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = []
    for row in rows:
        cells = [cell.ljust(width) for cell, width in zip(row, widths, strict=True)]
        lines.append("  ".join(cells).rstrip())
    return "\n".join(lines)


# --- show ---------------------------------------------------------------------------
def show(args: argparse.Namespace) -> int:
    name = args.file or args.cert
    if not name:
        raise CertError("name the file to show (mta cert show FILE)")
    path = Path(name)
    if not path.exists():
        raise CertError(f"{path}: no such file")
    now = args.at or _now()
    csr = certinfo.read_request(path)
    if csr is not None:
        print(_fields(_request_fields(csr)))
        return 0
    chain = certinfo.read_certificates(path)
    blocks = []
    for number, cert in enumerate(chain, start=1):
        fields = certinfo.describe(cert, now)
        if not certinfo.is_ca(cert):  # a CA is trusted via smtpd_tls_CAfile, not pinned
            fields.append(("relay_clientcerts", certinfo.relay_clientcerts_line(cert)))
        text = _fields(fields)
        if len(chain) > 1:
            text = f"certificate {number} of {len(chain)} in {name}:\n{text}"
        blocks.append(text)
    print("\n\n".join(blocks))
    return 0


def _request_fields(csr: x509.CertificateSigningRequest) -> list[tuple[str, str]]:
    return [
        ("request for", certinfo.name_text(csr.subject)),
        ("alt names", ", ".join(certinfo.alt_names(csr)) or "(none)"),
        ("key", certinfo.key_description(csr.public_key())),
        ("signature", "valid" if csr.is_signature_valid else "INVALID"),
        ("SHA-256 public-key fingerprint", certinfo.pubkey_fingerprint(csr)),
    ]


def _fields(fields: Sequence[tuple[str, str]]) -> str:
    width = max(len(label) for label, _ in fields) + 1
    return "\n".join(f"{label + ':':<{width}} {value}" for label, value in fields)


# --- renew --------------------------------------------------------------------------
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
        password = _new_password(args, f"the new key for {cert_path}")
        key_bytes = keys.key_pem(key, password)
    else:
        key, key_bytes = _read_key(key_path, args.password_file)
        keys.check_key_matches(key, old, str(key_path), str(cert_path))
    if certinfo.is_self_signed(old):
        new = certs.reissue(old, key.public_key(), old.subject, key,  # type: ignore[arg-type]
                            days)
        return _install_renewal(args, cert_path, key_path, key, key_bytes, old, new)
    if args.ca_cert or args.ca_key:
        ca_cert, ca_key = _load_ca(args, defaults=False)
        if old.issuer != ca_cert.subject:
            raise CertError(f"{cert_path} was issued by {certinfo.name_text(old.issuer)}, "
                            f"not by {certinfo.name_text(ca_cert.subject)}")
        days = min(days, max(1, (ca_cert.not_valid_after_utc - _now()).days))
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
        _key_and_cert(out, key_path, key_bytes, cert_bytes)
    else:
        write_public(out, cert_bytes)
    if args.new_key:
        note(_key_note(key_path, key, keys.is_encrypted(key_bytes)))
    note(f"wrote {out} (renewed {certinfo.name_text(new.subject)}; expires "
         f"{certinfo.date_text(new.not_valid_after_utc)})"
         + (f"; the old one is {kept}" if kept else ""))
    if args.p12:
        password = _p12_password(args, f"the PKCS#12 file {args.p12}")
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
    _refuse_overwrite([csr_path, *([new_key_path] if args.new_key else [])], args.force)
    csr = certs.request_from(old, key)  # type: ignore[arg-type]
    if args.new_key:
        write_private(new_key_path, key_bytes)
        note(_key_note(new_key_path, key, keys.is_encrypted(key_bytes)))
    write_public(csr_path, certs.request_pem(csr))
    note(f"{cert_path} was issued by {certinfo.name_text(old.issuer)}: wrote {csr_path}, a "
         f"request for {certinfo.name_text(old.subject)} with the same names; send it to that "
         f"CA and install the new certificate as {cert_path} with the key {new_key_path}")
    return 0
