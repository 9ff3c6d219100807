"""Parameters of one area, added to the one table in params.py (see its docstring).

This file: the SMTP client's TLS policy (outbound). Names and defaults are
Postfix's (postconf(5)) except where a comment says why not.
"""

from __future__ import annotations

from functools import partial

from mta.config import types as t  # noqa: F401
from mta.config.params import _bool, _int, _list, _p, _str, _time  # noqa: F401
from mta.tls.levels import parse_level
from mta.tls.protocols import OUTBOUND, parse_grade, parse_protocols, split_exclusions

_protocols = partial(parse_protocols, direction=OUTBOUND)
_grade = partial(parse_grade, direction=OUTBOUND)

# Postfix >= 3.11 (compatibility_level 3.11): may.
_p("smtp_tls_security_level", "may", parse_level,
   "The default SMTP client TLS security level: none, may, encrypt, fingerprint, verify "
   "or secure (Sun synonyms notls, maytls, musttls); smtp_tls_policy_maps overrides it per "
   "destination. dane and dane-only are reserved and refused.")
_str("smtp_tls_policy_maps", "",
     "Per-destination TLS policy tables (type:name), searched in order, keyed by the next "
     "hop as written ([host]:port included); bare domains fall back to .parent domains.")
_str("smtp_tls_CAfile", "",
     "Trusted CA certificates (PEM) for verifying servers; empty means the system store.")
_str("smtp_tls_CApath", "",
     "A directory of trusted CA certificates (c_rehash layout), added to smtp_tls_CAfile.")
_str("smtp_tls_cert_file", "",
     "The client certificate (PEM, chain after it) presented when a server asks for one.")
_str("smtp_tls_key_file", "$smtp_tls_cert_file", "The private key of smtp_tls_cert_file.")
_p("smtp_tls_protocols", ">=TLSv1", _protocols,
   "TLS versions for opportunistic (may) sessions.", kind="protocols")
# Postern: >=TLSv1.2 (Postfix: >=TLSv1). Mandatory TLS exists to protect the
# mail; versions that RFC 8996 deprecated do not.
_p("smtp_tls_mandatory_protocols", ">=TLSv1.2", _protocols,
   "TLS versions for mandatory levels (encrypt and above).", kind="protocols")
_p("smtp_tls_ciphers", "medium", _grade,
   "The cipher grade for opportunistic sessions: high, medium, low, export or null.")
_p("smtp_tls_mandatory_ciphers", "medium", _grade,
   "The cipher grade for mandatory levels (encrypt and above).")
_p("smtp_tls_exclude_ciphers", "", split_exclusions,
   "Ciphers or OpenSSL aliases excluded at every level.", kind="list")
_p("smtp_tls_mandatory_exclude_ciphers", "", split_exclusions,
   "Ciphers or OpenSSL aliases also excluded at mandatory levels.", kind="list")
_str("smtp_tls_verify_cert_match", "hostname",
     "Names a server certificate must match at the verify level: hostname (the MX name), "
     "nexthop, dot-nexthop, a domain, or .domain for its subdomains.")
_str("smtp_tls_secure_cert_match", "nexthop, dot-nexthop",
     "Names a server certificate must match at the secure level (same syntax).")
_str("smtp_tls_fingerprint_cert_match", "",
     "SHA-256 certificate or public-key fingerprints accepted at the fingerprint level.")
_str("smtp_tls_servername", "",
     "The SNI name sent: empty (none, Postfix's default), hostname, nexthop, or a name.")
_bool("tls_wildcard_matches_multiple_labels", "yes",
      "A wildcard certificate name *.example.com also matches a.b.example.com "
      "(Postfix's default); no restricts it to one label as RFC 6125 does.")
# Postern: 1 (Postfix: 0). The summary line is how operators see that
# outbound mail went encrypted; it is the point of this MTA.
_int("smtp_tls_loglevel", "1",
     "SMTP client TLS logging: 0 none, 1 the summary line and certificate failures where "
     "they decide the delivery, 2 also the certificate names checked.", 0, 4)
_bool("smtp_tls_note_starttls_offer", "no",
      "Log 'Host offered STARTTLS: [host]' when the level is none and the server offers it.")
