"""The outbound TLS policy decisions: attempt, require, accept or refuse, as Postfix does.

Pure functions over a level and what the server did, called by the SMTP client
at three points (smtp_proto.c smtp_helo / smtp_start_tls):

1. after EHLO: send STARTTLS, go on in plaintext, or defer (4.7.4);
2. after a refused STARTTLS or a failed handshake: plaintext, retry the same
   server in plaintext (may only), or defer (4.7.5);
3. after the handshake, before any MAIL: accept the server or refuse it
   (4.7.5); a refused server is quit and the next MX is tried.

Each failure carries the enhanced status and text Postfix logs, the reason
for metrics, and the ``tls=`` field of the delivery line.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from mta.tls.evaluation import Evaluation
from mta.tls.levels import TlsLevel
from mta.tls.summary import ANONYMOUS, TRUSTED, UNTRUSTED, VERIFIED  # the summary line's words


class Next(Enum):
    STARTTLS = "starttls"  # send STARTTLS now
    PLAINTEXT = "plaintext"  # carry on without TLS on this connection
    RETRY_PLAINTEXT = "retry_plaintext"  # reconnect to the same server, TLS off
    PROCEED = "proceed"  # TLS is up and good enough: EHLO again, then MAIL
    FAIL = "fail"  # this server will not do: quit, try the next MX, else defer


@dataclass(frozen=True, slots=True)
class PolicyFailure:
    """Why a server was not used: the deferral text and the metric reason."""

    dsn: str
    text: str
    reason: str  # not_offered | starttls_refused | handshake_failed | untrusted | not_verified
    code: int = 450  # the reply code a remote refusal carried; 450 for our own

    @property
    def permanent(self) -> bool:
        return self.code >= 500


@dataclass(frozen=True, slots=True)
class Decision:
    next: Next
    failure: PolicyFailure | None = None
    trust: str | None = None  # the summary line's label, after a handshake
    log: str | None = None  # a certificate problem worth a maillog line

    @property
    def ok(self) -> bool:
        return self.next is not Next.FAIL


def after_ehlo(level: TlsLevel, starttls_offered: bool, namaddr: str) -> Decision:
    """Point 1. namaddr is "host[ip]" as in Postfix's session->namaddr."""
    if level == TlsLevel.NONE:
        return Decision(Next.PLAINTEXT)
    if starttls_offered:
        return Decision(Next.STARTTLS)
    if level.requires_tls:
        # Also what a man in the middle who strips STARTTLS from the EHLO
        # reply gets: a deferral, never plaintext.
        return Decision(Next.FAIL, PolicyFailure(
            "4.7.4", f"TLS is required, but was not offered by host {namaddr}", "not_offered"))
    return Decision(Next.PLAINTEXT)


def after_starttls_refused(level: TlsLevel, reply_code: int, reply_dsn: str | None,
                           reply: str, namaddr: str) -> Decision:
    """Point 2a: the server offered STARTTLS but did not answer 220 to it; reply is
    the whole reply as logged ("454 4.7.0 TLS not available ...")."""
    if not level.requires_tls:
        return Decision(Next.PLAINTEXT)  # Postfix: "try to continue in plain-text mode"
    dsn = reply_dsn or ("5.7.0" if reply_code >= 500 else "4.7.0")
    return Decision(Next.FAIL, PolicyFailure(
        dsn, f"TLS is required, but host {namaddr} refused to start TLS: {reply}",
        "starttls_refused", reply_code))


def plaintext_fallback_ok(level: TlsLevel, queued_for: float, minimal_backoff_time: float,
                          has_sasl_credentials: bool = False) -> bool:
    """May a failed TLS handshake (or TLS session) be retried in plaintext?

    Postfix (smtp.h PLAINTEXT_FALLBACK_OK_AFTER_STARTTLS_FAILURE): only at may;
    only for mail that waited in the queue at least minimal_backoff_time
    before this attempt, so a fresh message is deferred once and a passing
    TLS fault does not send it in plaintext; never with SASL credentials,
    which must not cross in plaintext.
    """
    return (level == TlsLevel.MAY and queued_for >= minimal_backoff_time
            and not has_sasl_credentials)


def after_handshake_failure(level: TlsLevel, queued_for: float, minimal_backoff_time: float,
                            has_sasl_credentials: bool = False) -> Decision:
    """Point 2b: the TLS handshake failed; the connection is unusable either way."""
    if plaintext_fallback_ok(level, queued_for, minimal_backoff_time, has_sasl_credentials):
        return Decision(Next.RETRY_PLAINTEXT)
    return Decision(Next.FAIL, PolicyFailure(
        "4.7.5", "Cannot start TLS: handshake failure", "handshake_failed"))


def trust_label(level: TlsLevel, evaluation: Evaluation) -> str:
    """Anonymous, Untrusted, Trusted or Verified, as the summary line says it.

    Postfix checks names only where the level asks for them (verify,
    secure) and fingerprints only at fingerprint, so a good certificate on a
    may or encrypt session is at most Trusted.
    """
    if not evaluation.present:
        return ANONYMOUS
    if _verified(level, evaluation):
        return VERIFIED
    return TRUSTED if evaluation.trusted else UNTRUSTED


def _verified(level: TlsLevel, evaluation: Evaluation) -> bool:
    if level == TlsLevel.FINGERPRINT:
        return evaluation.fingerprint_match is not None
    if level in (TlsLevel.VERIFY, TlsLevel.SECURE):
        return evaluation.trusted and evaluation.name_match is not None
    return False


def after_handshake(level: TlsLevel, evaluation: Evaluation, namaddrport: str) -> Decision:
    """Point 3: is this server's certificate enough for the level? Before any MAIL.

    namaddrport is "host[ip]:port" (Postfix's TLScontext->namaddr). The log
    line explains a refusal the way Postfix's tls_log_verify_error() does.
    """
    label = trust_label(level, evaluation)
    if not level.must_match:
        return Decision(Next.PROCEED, trust=label)
    if level == TlsLevel.FINGERPRINT:
        if evaluation.fingerprint_match is not None:
            return Decision(Next.PROCEED, trust=label)
        return Decision(Next.FAIL, _not_verified(), label,
                        f"certificate verification failed for {namaddrport}: "
                        "not trusted by local or TLSA policy")
    # verify, secure: trust first (smtp_proto.c TLS_MUST_TRUST), then the name.
    if not evaluation.present:
        return Decision(Next.FAIL, _not_verified(), label,
                        f"certificate verification failed for {namaddrport}: "
                        "no server certificate")
    if not evaluation.trusted:
        assert evaluation.trust is not None
        return Decision(Next.FAIL, PolicyFailure(
            "4.7.5", "Server certificate not trusted", "untrusted"), label,
            evaluation.trust.reason(namaddrport))
    if evaluation.name_match is None:
        # OpenSSL's X509_V_ERR_HOSTNAME_MISMATCH, worded as Postfix's default case.
        return Decision(Next.FAIL, _not_verified(), label,
                        f"server certificate verification failed for {namaddrport}: "
                        "num=62:hostname mismatch")
    return Decision(Next.PROCEED, trust=label)


def _not_verified() -> PolicyFailure:
    return PolicyFailure("4.7.5", "Server certificate not verified", "not_verified")


class Outcome(Enum):
    """How a connection ended up, for the tls= field."""

    TLS = "tls"  # mail went over TLS at the policy level
    PLAINTEXT = "plaintext"  # no TLS on this connection (none, or may without it)
    VIOLATION = "violation"  # the policy refused this server; connection not used


def tls_field(level: TlsLevel, outcome: Outcome) -> str:
    """The delivery line's tls= value, Postfix 3.11 style.

    ``tls=encrypt``: the level was met; ``tls=may:none``: may, and the mail
    went in plaintext (``:x`` = downgraded to x); ``tls=!verify``: the level
    was not met, the server was not used (a leading ``!`` is a violation).
    """
    if outcome is Outcome.VIOLATION:
        return f"!{level.label}"
    if outcome is Outcome.PLAINTEXT and level != TlsLevel.NONE:
        return f"{level.label}:none"
    return level.label
