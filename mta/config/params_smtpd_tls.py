"""Parameters of inbound TLS and AUTH (smtpd), added to the one table in params.py.

Names and defaults are Postfix's except where the doc says "Postern"; the
differences are deliberate and listed in docs/inbound-tls.md.
"""

from __future__ import annotations

from functools import partial

from mta.config import types as t
from mta.config.params import _bool, _int, _p, _str, _time
from mta.tls.protocols import INBOUND, parse_grade, parse_protocols, split_exclusions

_protocols = partial(parse_protocols, direction=INBOUND)
_grade = partial(parse_grade, direction=INBOUND)

# smtpd_tls_security_level: Postfix accepts the client levels too and treats
# fingerprint/verify/secure as encrypt with a warning (smtpd.c).
_p("smtpd_tls_security_level", "none",
   t.choice("none", "may", "encrypt", "fingerprint", "verify", "secure"),
   "Inbound TLS: none (no STARTTLS), may (offer STARTTLS) or encrypt (require it: "
   "530 to mail commands before STARTTLS; never on a public MX).")
_bool("smtpd_tls_wrappermode", "no",
      "Implicit TLS: the handshake starts on connect (port 465, submissions); "
      "implies encrypt.")
_str("smtpd_tls_policy_maps", "",
     "Postern: per-client-network TLS requirement (Sun's musttlsserver): tables, usually "
     "cidr:, mapping the client address to none, may or encrypt (notls, maytls, musttls).")
_str("smtpd_tls_CAfile", "",
     "CA certificates (PEM) that client certificates must chain to, and whose names "
     "are sent in the certificate request.")
_bool("smtpd_tls_ask_ccert", "no",
      "Ask TLS clients for a certificate (the handshake succeeds without one).")
_bool("smtpd_tls_req_ccert", "no",
      "With encrypt: end the session with 421 unless the client certificate chains "
      "to smtpd_tls_CAfile.")
_int("smtpd_tls_ccert_verifydepth", "9", "The verification depth of client certificates.",
     1, 100)
_p("smtpd_tls_protocols", ">=TLSv1.2", _protocols,
   "TLS versions offered with opportunistic TLS (Postfix default: >=TLSv1).",
   kind="protocols")
_p("smtpd_tls_mandatory_protocols", ">=TLSv1.2", _protocols,
   "TLS versions offered when TLS is required (encrypt, wrapper mode).", kind="protocols")
_p("smtpd_tls_ciphers", "medium", _grade,
   "Cipher grade with opportunistic TLS: medium or high (both forward-secret only).")
_p("smtpd_tls_mandatory_ciphers", "medium", _grade,
   "Cipher grade when TLS is required.")
_p("smtpd_tls_exclude_ciphers", "", split_exclusions,
   "OpenSSL cipher names or types to exclude.", kind="list")
_p("smtpd_tls_mandatory_exclude_ciphers", "", split_exclusions,
   "Ciphers to exclude in addition when TLS is required.", kind="list")
_int("smtpd_tls_loglevel", "1",
     "0: no TLS logging; 1: the summary line (Postfix default: 0); 2: also the client "
     "certificate's names and fingerprints.", 0, 4)
_bool("smtpd_tls_auth_only", "yes",
      "Offer and accept AUTH only over TLS (Postfix default: no).")
_p("smtpd_tls_fingerprint_digest", "sha256", t.choice("sha256", "sha384", "sha512", "sha1",
                                                      "md5"),
   "Digest of client certificate and public-key fingerprints (relay_clientcerts).")
_str("relay_clientcerts", "",
     "Tables of client certificate or public-key fingerprints that permit_tls_clientcerts "
     "lets relay (the value is ignored).")
_str("tls_server_sni_maps", "",
     "Tables from server name (SNI) to PEM files holding a private key and its "
     "certificate chain; .domain keys match subdomains.")
_time("smtpd_starttls_timeout", "${stress?{10}:{300}}s",
      "The time limit of a TLS handshake (10s under stress).", minimum=1)

# --- AUTH -----------------------------------------------------------------------------
_bool("smtpd_sasl_auth_enable", "no", "Offer AUTH (PLAIN, LOGIN) on this listener.")
_str("smtpd_sasl_password_file", "",
     "Postern: the table of users and salted scrypt password hashes that AUTH checks "
     "(maintained with `mta sasl`).")
_bool("smtpd_sasl_authenticated_header", "no",
      "Show the SASL username in the Received header.")
_time("smtpd_sasl_failure_delay", "1s",
      "Postern: delay of a failed AUTH reply, times the number of recent failures from "
      "that client address minus one (the first failure is not delayed).")
