"""The outbound TLS policy at the SMTP client's three decision points (mta/smtp/tlshook.py).

``PolicyTls.plan()`` looks up the next hop's policy and returns a plan for
one server; the agent asks the plan after EHLO, after a failed STARTTLS or
handshake, and after the handshake, always before any MAIL. The plan logs
the TLS lines (the summary line is summary.py's, as smtpd's is; certificate
failures), counts the metrics and gives the delivery line its ``tls=`` field.
All judgement is decision.py's.
"""

from __future__ import annotations

import ssl

from cryptography import x509

from mta import log as maillog
from mta.config import Config
from mta.delivery import Route
from mta.smtp.client import (
    Peer,
    SmtpClientError,
    StartTlsRefused,
    TlsFacts,
    TlsHandshakeFailed,
)
from mta.smtp.tlshook import PLAINTEXT, STARTTLS, SessionTls, TlsRefusal
from mta.tls import client_metrics
from mta.tls.client_context import peer_chain
from mta.tls.decision import (
    Decision,
    Next,
    Outcome,
    after_ehlo,
    after_handshake,
    after_handshake_failure,
    after_starttls_refused,
    plaintext_fallback_ok,
    tls_field,
)
from mta.tls.evaluation import evaluate
from mta.tls.levels import TlsLevel
from mta.tls.names import MatchTarget, strip_nexthop
from mta.tls.outbound import OutboundTls
from mta.tls.policy_table import ClientPolicy
from mta.tls.summary import VERIFIED, from_client_session

PROGRAM = "smtp"


class PolicyPlan:
    """One server's TLS decisions under one next hop's policy."""

    def __init__(self, outbound: OutboundTls, policy: ClientPolicy, nexthop: str,
                 mx_hostname: str, queued_for: float) -> None:
        self.outbound = outbound
        self.policy = policy
        self.level = policy.level
        self.nexthop = strip_nexthop(nexthop)
        self.hostname = mx_hostname
        self.queued_for = queued_for
        self.ssl_context: ssl.SSLContext | None = (
            outbound.contexts.for_policy(policy) if self.level >= TlsLevel.MAY else None)
        self.server_hostname = policy.server_name(mx_hostname, self.nexthop)
        self.outcome: Outcome | None = None
        self.trust: str | None = None

    @property
    def loglevel(self) -> int:
        return int(self.outbound.config.smtp_tls_loglevel)

    def _refuse(self, decision: Decision, trust: str | None, result: str) -> TlsRefusal:
        assert decision.failure is not None
        self.outcome = Outcome.VIOLATION
        client_metrics.session(self.level, trust, result)
        return TlsRefusal(decision.failure.dsn, decision.failure.text,
                          reason=decision.failure.reason, level=self.level.label)

    # 1. after EHLO
    def before_starttls(self, offered: bool, peer: Peer) -> str | TlsRefusal:
        if (offered and self.level == TlsLevel.NONE
                and self.outbound.config.smtp_tls_note_starttls_offer):
            maillog.info(PROGRAM, f"Host offered STARTTLS: [{peer.hostname}]")
        decision = after_ehlo(self.level, offered, peer.name)
        if decision.next is Next.FAIL:
            return self._refuse(decision, None, "not_offered")
        if decision.next is Next.PLAINTEXT:
            self.outcome = Outcome.PLAINTEXT
            client_metrics.session(self.level, None, "plaintext")
            return PLAINTEXT
        return STARTTLS

    # 2. STARTTLS refused, or the handshake failed
    def after_failure(self, error: SmtpClientError, peer: Peer) -> str | TlsRefusal:
        if isinstance(error, StartTlsRefused):
            reply = error.reply
            decision = after_starttls_refused(self.level, reply.code, reply.dsn, str(reply),
                                              peer.name)
            if decision.next is Next.FAIL:
                return self._refuse(decision, None, "starttls_refused")
            self.outcome = Outcome.PLAINTEXT
            client_metrics.session(self.level, None, "starttls_refused")
            return PLAINTEXT
        reason = error.reason if isinstance(error, TlsHandshakeFailed) else error.text
        if self.loglevel >= 1:
            maillog.info(PROGRAM, f"SSL_connect error to {peer.relay}: {reason}")
        decision = after_handshake_failure(self.level, self.queued_for,
                                           self.outbound.config.minimal_backoff_time)
        if decision.next is Next.FAIL:
            return self._refuse(decision, None, "handshake_failed")
        # may: the same server again, in plaintext (the agent reconnects).
        self.outcome = Outcome.PLAINTEXT
        self.ssl_context = None
        client_metrics.session(self.level, None, "handshake_failed")
        return PLAINTEXT

    # 3. after the handshake, before MAIL
    def after_handshake(self, facts: TlsFacts, peer: Peer) -> TlsRefusal | None:
        chain = self._chain(facts)
        target = None
        if self.level in (TlsLevel.VERIFY, TlsLevel.SECURE):
            target = MatchTarget(self.policy.match, self.hostname, self.nexthop)
        evaluation = evaluate(
            chain, self.outbound.store, target=target,
            fingerprints=self.policy.fingerprints,
            multi_label_wildcard=self.outbound.config.tls_wildcard_matches_multiple_labels)
        decision = after_handshake(self.level, evaluation, peer.relay)
        self.trust = decision.trust
        if self.loglevel >= 2 and evaluation.present:
            matched = evaluation.name_match.cert_name if evaluation.name_match else None
            for name in evaluation.names:
                label = "subjectAltName" if evaluation.name_source == "SAN" else "CommonName"
                word = "Matched " if name == matched else ""
                maillog.info(PROGRAM, f"{peer.relay}: {word}{label}: {name}")
        if decision.log and self.loglevel >= 1:
            maillog.info(PROGRAM, decision.log)
        if self.loglevel >= 1:
            summary = from_client_session(
                facts.protocol, facts.cipher, facts.secret_bits, evaluation.leaf,
                trusted=evaluation.trusted, matched=decision.trust == VERIFIED)
            maillog.info(PROGRAM, summary.log_text("client", peer.relay))
        if decision.next is Next.FAIL:
            return self._refuse(decision, decision.trust, "refused")
        self.outcome = Outcome.TLS
        client_metrics.session(self.level, decision.trust, "tls")
        return None

    @staticmethod
    def _chain(facts: TlsFacts) -> list[x509.Certificate]:
        if facts.ssl_object is not None:
            return peer_chain(facts.ssl_object)
        if facts.peer_certificate:
            return [x509.load_der_x509_certificate(facts.peer_certificate)]
        return []

    def log_field(self) -> str | None:
        if self.outcome is None:
            return None
        return tls_field(self.level, self.outcome)

    # A connection kept in the cache (mta/smtp/cache.py)
    def opened(self, encrypted: bool, fallback: bool) -> SessionTls:
        return SessionTls(self.level, encrypted, self.trust == VERIFIED, fallback,
                          policy=self.policy, source=self.outbound)

    def admits(self, session: SessionTls) -> bool:
        """May this message go on a cached connection? Postfix reuses a cached
        endpoint only for the same requested TLS level (smtp.h
        SMTP_KEY_MASK_SCACHE_ENDP_LABEL has SMTP_KEY_FLAG_TLS_LEVEL); Postern
        also lets a TLS session carry mail for a level that asks no more of it.
        Only comparisons: this runs before every reused transaction."""
        if session.source is not self.outbound:
            return False  # judged under a policy set a reload has replaced
        level = self.level
        same = session.policy is self.policy or session.policy == self.policy
        if session.encrypted:
            if same:
                ok = True  # this entry's own check accepted the certificate
            elif level == TlsLevel.MAY:
                ok = True  # may asks for nothing; TLS is more than it needs
            elif level == TlsLevel.ENCRYPT:
                # Negotiated under a mandatory level with the same protocols and
                # ciphers (a verified session satisfies encrypt).
                ok = (session.level.requires_tls and isinstance(session.policy, ClientPolicy)
                      and session.policy.settings == self.policy.settings)
            else:
                ok = False  # fingerprint, verify, secure: only this entry's check counts
            if ok:
                self.outcome = Outcome.TLS
            return ok
        # Plaintext: never at encrypt and above (TlsLevel.requires_tls); at none
        # always; at may only where a new connection would end in plaintext too.
        if level == TlsLevel.NONE:
            ok = True
        elif level == TlsLevel.MAY and session.level == TlsLevel.MAY:
            # Not offered, or STARTTLS refused: plaintext for any may message. A
            # failed handshake: the plaintext retry is for mail queued at least
            # minimal_backoff_time (Postfix's PLAINTEXT_FALLBACK_OK_AFTER_STARTTLS_FAILURE),
            # and under the settings that failed.
            ok = not session.fallback or (same and plaintext_fallback_ok(
                level, self.queued_for, self.outbound.config.minimal_backoff_time))
        else:
            ok = False
        if ok:
            self.outcome = Outcome.PLAINTEXT
        return ok


class PolicyTls:
    """The smtp agent's TlsPolicy: smtp_tls_policy_maps over smtp_tls_security_level."""

    def __init__(self, outbound: OutboundTls) -> None:
        self.outbound = outbound

    @classmethod
    def from_config(cls, config: Config) -> PolicyTls:
        return cls(OutboundTls.from_config(config))

    @property
    def warnings(self) -> list[str]:
        return self.outbound.warnings

    def plan(self, route: Route, mx_hostname: str, queued_for: float = 0.0) -> PolicyPlan:
        key = route.policy_key or route.nexthop
        policy = self.outbound.policy_for(key)
        return PolicyPlan(self.outbound, policy, route.nexthop, mx_hostname, queued_for)

    def deferred(self, level: str, reason: str) -> None:
        """A request ended deferred because no server met the policy (metrics)."""
        client_metrics.policy_deferral(TlsLevel[level.upper().replace("-", "_")], reason)
