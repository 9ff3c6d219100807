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
import sys
from typing import Any

from mta.cli import cert_inspect, cert_make, cert_renew
from mta.cli.cert_common import CA_STEM, CertError
from mta.errors import ConfigError
from mta.tls import ca, certs


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
    p.set_defaults(func=_guarded(cert_make.self_signed))

    p = sub.add_parser("request", parents=[common], help="a key and a PKCS#10 request "
                       "for a CA", description="Make a private key and a certificate "
                       "signing request (PEM) to send to a commercial or company CA.")
    _name_options(p, "HOST")
    p.add_argument("--csr", metavar="FILE", help="the request (default: HOST.csr)")
    _files(p, cert=False, key=True)
    _new_key_options(p)
    p.set_defaults(func=_guarded(cert_make.request))

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
    p.set_defaults(func=_guarded(cert_make.ca_init))

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
    p.set_defaults(func=_guarded(cert_make.issue_client))

    p = sub.add_parser("list", parents=[common], help="the certificates main.cf uses",
                       description="List every certificate the configuration uses (server, "
                                   "SNI, client CA, outbound client certificate). Exits 1 "
                                   "when one has expired or cannot be read.")
    _at(p)
    p.add_argument("--warn", metavar="TIME", help="warn when a certificate expires within "
                   "TIME (default: tls_cert_expiry_warning_time, 30d)")
    p.set_defaults(func=_guarded(cert_inspect.list_certificates))

    p = sub.add_parser("show", parents=[common], help="one certificate or request in full",
                       description="Show subject, names, issuer, validity, key and SHA-256 "
                                   "fingerprints (relay_clientcerts format).")
    p.add_argument("file", metavar="FILE", nargs="?", help="a PEM certificate or request")
    p.add_argument("--cert", metavar="FILE", help="the same as FILE")
    _at(p)
    p.set_defaults(func=_guarded(cert_inspect.show))

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
    p.add_argument("--legacy-p12", action="store_true",
                   help="3DES/SHA-1 PKCS#12 (see issue-client)")
    p.add_argument("--force", action="store_true", help="overwrite a new key or request")
    p.set_defaults(func=_guarded(cert_renew.renew))


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

