"""What one smtpd listener needs for TLS and AUTH, built from its configuration.

Built at start and again on every reload (master.py); a session keeps the
``ListenerSecurity`` it started with, so new certificates and password files
apply to new sessions without dropping open ones. The metrics of inbound TLS
and AUTH are declared here (docs/metrics.md).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from prometheus_client import Counter

from mta.config import Config
from mta.errors import ConfigError
from mta.metrics import REGISTRY
from mta.sasl import FailureTracker, PasswordFile, SaslServer
from mta.tls.clientcert import relay_clientcerts_lookup
from mta.tls.inbound_policy import InboundTlsPolicy
from mta.tls.pemfiles import loose_mode
from mta.tls.server import ServerTls

HANDSHAKES = Counter(
    "mta_smtpd_tls_handshakes", "Inbound TLS handshakes by listener, protocol version, "
    "peer trust (anonymous/untrusted/trusted) and result (success/failure/timeout).",
    ["listener", "protocol", "trust", "result"], registry=REGISTRY)
CLIENT_CERTIFICATES = Counter(
    "mta_smtpd_tls_client_certificates", "Client certificates asked for, by outcome: "
    "trusted (chains to smtpd_tls_CAfile), pinned (fingerprint in relay_clientcerts), "
    "untrusted, absent.", ["listener", "outcome"], registry=REGISTRY)
AUTH = Counter(
    "mta_smtpd_auth", "AUTH attempts by mechanism and result (success, failure, aborted, "
    "malformed, unavailable).", ["listener", "mechanism", "result"], registry=REGISTRY)


@dataclass(frozen=True)
class ListenerSecurity:
    """The TLS contexts, level policy and AUTH checker of one listener."""

    policy: InboundTlsPolicy
    tls: ServerTls | None
    sasl: SaslServer | None
    ask_ccert: bool
    req_ccert: bool
    auth_only: bool
    loglevel: int
    received_header: bool
    authenticated_header: bool
    fingerprint_digest: str
    starttls_timeout: float
    pinned: Callable[[tuple[str, ...]], bool]


def build_security(config: Config, tracker: FailureTracker) -> tuple[ListenerSecurity,
                                                                      list[str]]:
    """The listener's security parts and warnings to log; ConfigError when unusable
    (a missing certificate where TLS is required, a key others can read)."""
    policy, warnings = InboundTlsPolicy.from_config(config)
    tls = None
    if policy.uses_tls:
        if config.smtpd_tls_cert_file or policy.mandatory:
            tls = ServerTls.from_config(config, required=policy.mandatory)
        else:
            warnings.append("No server certs available. TLS won't be enabled "
                            "(smtpd_tls_cert_file is empty)")
    if config.smtpd_tls_req_ccert and not policy.mandatory:
        warnings.append("Can't require client certs unless TLS is required")
    sasl = None
    if config.smtpd_sasl_auth_enable:
        if not config.smtpd_sasl_password_file:
            raise ConfigError(f"{config.where('smtpd_sasl_auth_enable')}: "
                              "smtpd_sasl_auth_enable = yes needs smtpd_sasl_password_file")
        path = config.path_of(config.smtpd_sasl_password_file)
        if not path.exists():
            warnings.append(f"{path}: no such file; AUTH fails until users are added "
                            "with: mta sasl add USER")
        elif (mode := loose_mode(path)) is not None:
            warnings.append(f"{path}: password file is accessible by group or others "
                            f"(mode {mode:04o}); run: chmod 600 {path}")
        sasl = SaslServer(PasswordFile(path), tracker, config.smtpd_sasl_failure_delay)
    security = ListenerSecurity(
        policy=policy, tls=tls, sasl=sasl,
        ask_ccert=tls is not None and tls.ask_ccert,
        req_ccert=bool(config.smtpd_tls_req_ccert and policy.mandatory),
        auth_only=bool(config.smtpd_tls_auth_only or policy.mandatory),
        loglevel=config.smtpd_tls_loglevel,
        received_header=config.smtpd_tls_received_header,
        authenticated_header=config.smtpd_sasl_authenticated_header,
        fingerprint_digest=config.smtpd_tls_fingerprint_digest,
        starttls_timeout=config.smtpd_starttls_timeout,
        pinned=relay_clientcerts_lookup(config))
    return security, warnings
