"""Metrics of outbound TLS: sessions by policy level, trust and result; policy deferrals.

Labels are a closed set (levels, trust labels, result and reason names), never
a host or an address.
"""

from __future__ import annotations

from prometheus_client import Counter

from mta.metrics import REGISTRY
from mta.tls.levels import TlsLevel

SESSIONS = Counter(
    "mta_smtp_tls_sessions",
    "Outbound SMTP connections by TLS policy level, the trust reached and the result "
    "(tls: mail may go over TLS; plaintext: no TLS, as the level allows; refused: the "
    "certificate was not enough; handshake_failed; not_offered; starttls_refused).",
    ["level", "trust", "result"], registry=REGISTRY)

POLICY_DEFERRALS = Counter(
    "mta_smtp_tls_policy_deferrals",
    "Delivery attempts (one message, one next hop) deferred because no server met the TLS "
    "policy, by level and reason (not_offered, starttls_refused, handshake_failed, "
    "untrusted, not_verified).",
    ["level", "reason"], registry=REGISTRY)

RESULTS = ("tls", "plaintext", "refused", "handshake_failed", "not_offered",
           "starttls_refused")
TRUST = ("none", "anonymous", "untrusted", "trusted", "verified")


def session(level: TlsLevel, trust: str | None, result: str) -> None:
    """Count one connection's TLS outcome; trust is the summary label or None."""
    assert result in RESULTS, result
    SESSIONS.labels(level.label, (trust or "none").lower(), result).inc()


def policy_deferral(level: TlsLevel, reason: str) -> None:
    POLICY_DEFERRALS.labels(level.label, reason).inc()
