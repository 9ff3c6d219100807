"""``mta cert list`` and ``show``: the certificates a configuration uses as a
table, and one certificate or request in full."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from cryptography import x509

from mta import config as configuration
from mta.cli.cert_common import CertError, note, now_utc
from mta.config.types import BadValue, parse_time
from mta.errors import ConfigError
from mta.tls import certinfo
from mta.tls.fingerprints import pubkey_fingerprint
from mta.tls.inventory import configured_certificates

# --- list ---------------------------------------------------------------------------
LIST_HEADER = ("USED BY", "FILE", "SUBJECT", "ISSUER", "VALID FROM", "EXPIRES",
               "SELF-SIGNED", "DAYS LEFT")


def list_certificates(args: argparse.Namespace) -> int:
    config = configuration.load(configuration.find_config(args.config))
    now = args.at or now_utc()
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
    now = args.at or now_utc()
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
        ("SHA-256 public-key fingerprint", pubkey_fingerprint(csr)),
    ]


def _fields(fields: Sequence[tuple[str, str]]) -> str:
    width = max(len(label) for label, _ in fields) + 1
    return "\n".join(f"{label + ':':<{width}} {value}" for label, value in fields)
