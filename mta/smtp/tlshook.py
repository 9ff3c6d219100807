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


class TlsPlan(Protocol):
    """One connection's TLS decisions."""

    ssl_context: ssl.SSLContext | None
    server_hostname: str | None  # SNI; Postfix sends none unless DANE or configured

    def before_starttls(self, offered: bool, peer: Peer) -> str | TlsRefusal: ...

    def after_handshake(self, facts: TlsFacts, peer: Peer) -> TlsRefusal | None: ...

    def after_failure(self, error: SmtpClientError, peer: Peer) -> str | TlsRefusal: ...

    def log_field(self) -> str | None: ...


class TlsPolicy(Protocol):
    """Makes plans; ``key`` names the policy for the connection cache (a cached
    connection is reused only under the policy that opened it)."""

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


class NoTlsPolicy:
    def plan(self, route: Route, mx_hostname: str, queued_for: float = 0.0) -> TlsPlan:
        return NoTlsPlan()


def default_policy(config: Config) -> TlsPolicy:
    """The daemon's policy: smtp_tls_security_level and smtp_tls_policy_maps
    (mta/tls/client_plan.py); raises ConfigError on a bad entry."""
    from mta.tls.client_plan import PolicyTls

    return PolicyTls.from_config(config)
