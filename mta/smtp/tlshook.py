"""Where the outbound TLS policy plugs into the SMTP client: the policy decides,
the session executes.

The agent asks a ``TlsPolicy`` for a ``TlsPlan`` per server it connects to
and consults the plan at exactly three points, all before any MAIL is sent:

1. after EHLO, ``before_starttls(offered)``: STARTTLS, plaintext, or a refusal
   (``TlsRefusal``: e.g. 4.7.4 "TLS is required, but was not offered");
2. after the handshake, ``after_handshake(facts)``: accept the peer (None) or
   refuse it (e.g. 4.7.5 "Server certificate not verified");
3. when the handshake fails or STARTTLS is refused,
   ``after_failure(error)``: retry the same server in plaintext (Postfix's
   ``may``) or refuse.

``log_field()`` gives the Postfix 3.11 ``tls=`` field of the delivery line.

A connection kept in the connection cache (mta/smtp/cache.py) keeps a
``SessionTls`` (``plan.opened()``: the policy and level it was opened under,
whether TLS is up, verified, or a plaintext retry after a failed handshake).
Before a cached connection carries another message, the agent makes that
message's plan and asks ``plan.admits(session_tls)``; no means QUIT and a new
connection. Postfix gets the same effect by keying cached endpoints by the
requested TLS level (smtp.h SMTP_KEY_MASK_SCACHE_ENDP_LABEL).

The outbound TLS policy (mta/tls/client_plan.py, through ``default_policy``)
supplies every level; this module has only ``none``, the agent's default when
it is given no policy.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from mta.delivery import Route
from mta.smtp.client import Peer, SmtpClientError, TlsFacts
from mta.tls.levels import TlsLevel

if TYPE_CHECKING:
    from mta.config import Config

STARTTLS = "starttls"
PLAINTEXT = "plaintext"


@dataclass(frozen=True, slots=True)
class TlsRefusal:
    """The policy will not let this server have the mail (deferred, never plaintext)."""

    dsn: str
    text: str
    reason: str = ""  # for metrics: not_offered, handshake_failed, untrusted, ...
    level: str = ""  # the policy level that refused


@dataclass(frozen=True, slots=True, eq=False)
class SessionTls:
    """What an open connection's TLS is, kept with it in the connection cache so
    that reuse for another message is judged by that message's plan."""

    level: TlsLevel  # the level of the plan that opened the connection
    encrypted: bool  # TLS is up
    verified: bool  # the certificate passed the opening level's check (Verified)
    # Plaintext because the TLS handshake failed: Postfix allows that retry only
    # for mail queued at least minimal_backoff_time (PLAINTEXT_FALLBACK_OK_...).
    fallback: bool
    policy: object = None  # the policy entry that judged it (compared by the plan)
    source: object = None  # the policy set it came from (a reload makes a new one)


class TlsPlan(Protocol):
    """One connection's (or one cached connection reuse's) TLS decisions."""

    ssl_context: ssl.SSLContext | None
    server_hostname: str | None  # SNI; Postfix sends none unless DANE or configured

    def before_starttls(self, offered: bool, peer: Peer) -> str | TlsRefusal: ...

    def after_handshake(self, facts: TlsFacts, peer: Peer) -> TlsRefusal | None: ...

    def after_failure(self, error: SmtpClientError, peer: Peer) -> str | TlsRefusal: ...

    def log_field(self) -> str | None: ...

    def opened(self, encrypted: bool, fallback: bool) -> SessionTls:
        """Once the connection is ready for MAIL: what it is, for the cache."""
        ...

    def admits(self, session: SessionTls) -> bool:
        """May this plan's message go on a cached connection that is ``session``?
        Must be cheap (a few comparisons: it runs for every reused connection);
        True also settles what ``log_field()`` says."""
        ...


class TlsPolicy(Protocol):
    """Makes plans. A cached connection carries a message only when the plan
    made for that message admits it (``TlsPlan.admits``); the agent empties its
    connection cache when its policy is replaced (reload)."""

    def plan(self, route: Route, mx_hostname: str, queued_for: float = 0.0) -> TlsPlan: ...


class NoTlsPlan:
    """Level none: never STARTTLS."""

    ssl_context: ssl.SSLContext | None = None
    server_hostname: str | None = None

    def before_starttls(self, offered: bool, peer: Peer) -> str | TlsRefusal:
        return PLAINTEXT

    def after_handshake(self, facts: TlsFacts, peer: Peer) -> TlsRefusal | None:
        return None

    def after_failure(self, error: SmtpClientError, peer: Peer) -> str | TlsRefusal:
        return PLAINTEXT

    def log_field(self) -> str | None:
        return None

    def opened(self, encrypted: bool, fallback: bool) -> SessionTls:
        return SessionTls(TlsLevel.NONE, encrypted, False, fallback)

    def admits(self, session: SessionTls) -> bool:
        # Level none sends in plaintext; a TLS session was opened by a TLS
        # policy and stays with it.
        return not session.encrypted


class NoTlsPolicy:
    def plan(self, route: Route, mx_hostname: str, queued_for: float = 0.0) -> TlsPlan:
        return NoTlsPlan()


def default_policy(config: Config) -> TlsPolicy:
    """The daemon's policy: smtp_tls_security_level and smtp_tls_policy_maps
    (mta/tls/client_plan.py); raises ConfigError on a bad entry."""
    from mta.tls.client_plan import PolicyTls

    return PolicyTls.from_config(config)
