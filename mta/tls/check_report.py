"""What ``mta tls-check`` says about one server: its certificate, the names that
matched, and the verdict of every level, as text or JSON.

Pure: the probe (cli/tls_check.py) gathers what the server did; this module
runs the same decision functions delivery uses over it, so the verdicts are
what the SMTP client would do, never a second opinion.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from cryptography import x509

from mta.config import Config
from mta.tls import decision
from mta.tls.chain import TrustStore
from mta.tls.evaluation import CertSummary, Evaluation, evaluate
from mta.tls.fingerprints import parse_fingerprint_list
from mta.tls.levels import TlsLevel
from mta.tls.names import MatchTarget, match_certificate, parse_strategies, strip_nexthop
from mta.tls.policy_table import ClientPolicy
from mta.tls.summary import from_client_session

CHECKED_LEVELS = (TlsLevel.MAY, TlsLevel.ENCRYPT, TlsLevel.FINGERPRINT, TlsLevel.VERIFY,
                  TlsLevel.SECURE)


@dataclass
class Probe:
    """What one server did: the dialog, STARTTLS, the handshake and its chain."""

    nexthop: str  # the destination as delivery sees it (policy key)
    hostname: str  # the MX (or [host]) name
    address: str
    port: int
    transcript: list[str] = field(default_factory=list)  # "< 220 …", "> EHLO …"
    error: str | None = None  # the dialog broke off before TLS was settled
    starttls_offered: bool = False
    starttls_reply: tuple[int, str | None, str] | None = None  # refused: code, dsn, text
    handshake_error: str | None = None
    protocol: str = ""
    cipher: str = ""
    cipher_bits: int = 0
    chain: list[x509.Certificate] = field(default_factory=list)

    @property
    def namaddr(self) -> str:
        return f"{self.hostname}[{self.address}]"

    @property
    def namaddrport(self) -> str:
        return f"{self.namaddr}:{self.port}"

    @property
    def tls_up(self) -> bool:
        return bool(self.protocol)


@dataclass
class LevelVerdict:
    level: TlsLevel
    deliver: bool
    how: str  # "tls", "plaintext", "retry_plaintext", "defer"
    trust: str | None
    dsn: str | None
    text: str  # one line for people
    log: str | None = None


def strategies_for(level: TlsLevel, config: Config, policy: ClientPolicy) -> tuple[str, ...]:
    if policy.level == level and policy.match:
        return policy.match
    name = "smtp_tls_verify_cert_match" if level == TlsLevel.VERIFY \
        else "smtp_tls_secure_cert_match"
    return parse_strategies(config.get(name))


def fingerprints_for(config: Config, policy: ClientPolicy,
                     extra: frozenset[bytes] = frozenset()) -> frozenset[bytes]:
    pinned = set(extra)
    if policy.level == TlsLevel.FINGERPRINT:
        pinned |= policy.fingerprints
    if config.smtp_tls_fingerprint_cert_match:
        pinned |= parse_fingerprint_list(config.smtp_tls_fingerprint_cert_match)
    return frozenset(pinned)


def judge(probe: Probe, level: TlsLevel, store: TrustStore, config: Config,
          policy: ClientPolicy, pinned: frozenset[bytes] = frozenset()) -> LevelVerdict:
    """The SMTP client's decision at level for this server, step by step."""
    first = decision.after_ehlo(level, probe.starttls_offered, probe.namaddr)
    if first.failure is not None:
        return _defer(level, first)
    if first.next is decision.Next.PLAINTEXT:
        return LevelVerdict(level, True, "plaintext", None, None,
                            "deliver in plaintext (STARTTLS not offered)")
    if probe.starttls_reply is not None:
        code, dsn, text = probe.starttls_reply
        refused = decision.after_starttls_refused(level, code, dsn, text, probe.namaddr)
        if refused.failure is not None:
            return _defer(level, refused)
        return LevelVerdict(level, True, "plaintext", None, None,
                            "deliver in plaintext (STARTTLS refused)")
    if probe.handshake_error is not None or not probe.tls_up:
        # Judged for mail that has waited in the queue: the first attempt of a
        # fresh message is deferred instead (docs/tls-policy.md).
        failed = decision.after_handshake_failure(level, config.minimal_backoff_time,
                                                  config.minimal_backoff_time)
        if failed.failure is not None:
            return _defer(level, failed)
        return LevelVerdict(level, True, "retry_plaintext", None, None,
                            "deliver in plaintext after the failed handshake (mail queued "
                            "at least minimal_backoff_time; a fresh message is deferred once)")
    target = None
    if level in (TlsLevel.VERIFY, TlsLevel.SECURE):
        target = MatchTarget(strategies_for(level, config, policy), probe.hostname,
                             strip_nexthop(probe.nexthop))
    evaluation = evaluate(probe.chain, store, target=target,
                          fingerprints=pinned if level == TlsLevel.FINGERPRINT else frozenset(),
                          multi_label_wildcard=config.tls_wildcard_matches_multiple_labels)
    after = decision.after_handshake(level, evaluation, probe.namaddrport)
    if after.failure is not None:
        verdict = _defer(level, after)
        if level == TlsLevel.FINGERPRINT and not pinned:
            verdict.text += " (no fingerprint pinned for this destination)"
        return verdict
    return LevelVerdict(level, True, "tls", after.trust, None,
                        f"deliver over TLS ({after.trust})")


def _defer(level: TlsLevel, made: decision.Decision) -> LevelVerdict:
    assert made.failure is not None
    return LevelVerdict(level, False, "defer", made.trust, made.failure.dsn,
                        f"defer: {made.failure.dsn} {made.failure.text}", made.log)


@dataclass
class Report:
    probe: Probe
    policy: ClientPolicy
    store: TrustStore
    verdicts: list[LevelVerdict]
    names: list[tuple[str, str, str | None]]  # strategy, wanted, matched certificate name
    evaluation: Evaluation | None

    @property
    def configured(self) -> LevelVerdict | None:
        return next((v for v in self.verdicts if v.level == self.policy.level), None)


def build(probe: Probe, store: TrustStore, config: Config, policy: ClientPolicy,
          levels: tuple[TlsLevel, ...] = CHECKED_LEVELS,
          extra_fingerprints: frozenset[bytes] = frozenset()) -> Report:
    pinned = fingerprints_for(config, policy, extra_fingerprints)
    if policy.level not in levels and policy.level != TlsLevel.NONE:
        levels = (*levels, policy.level)
    verdicts = [judge(probe, level, store, config, policy, pinned) for level in levels]
    names: list[tuple[str, str, str | None]] = []
    evaluation = None
    if probe.chain:
        evaluation = evaluate(probe.chain, store)
        nexthop = strip_nexthop(probe.nexthop)
        for strategy, wanted in (("hostname", probe.hostname), ("nexthop", nexthop),
                                 ("dot-nexthop", "." + nexthop)):
            target = MatchTarget((strategy,), probe.hostname, nexthop)
            found = match_certificate(evaluation.names, target,
                                      config.tls_wildcard_matches_multiple_labels)
            names.append((strategy, wanted, found.cert_name if found else None))
    return Report(probe, policy, store, verdicts, names, evaluation)


def _fmt_time(moment: Any) -> str:
    return moment.strftime("%Y-%m-%d %H:%M:%S UTC")


def render_text(report: Report) -> str:
    probe, lines = report.probe, []
    policy = report.policy
    lines.append(f"destination: {probe.nexthop}, policy {policy.level.label} ({policy.where})")
    lines.append(f"server: {probe.namaddrport}")
    lines.extend(probe.transcript)
    if probe.error:
        lines.append(f"error: {probe.error}")
    if probe.handshake_error:
        lines.append(f"SSL_connect error to {probe.namaddrport}: {probe.handshake_error}")
    if probe.tls_up:
        # What the SMTP client logs at may: at most Trusted (names are not checked).
        evaluation = report.evaluation
        summary = from_client_session(probe.protocol, probe.cipher, probe.cipher_bits,
                                      evaluation.leaf if evaluation else None,
                                      trusted=evaluation.trusted if evaluation else False)
        lines.append(summary.log_text("client", probe.namaddrport))
    if report.evaluation is not None:
        for depth, cert in enumerate(report.evaluation.summaries()):
            lines.extend(_cert_lines(depth, cert))
        trust = report.evaluation.trust
        assert trust is not None
        lines.append(f"chain ({report.store.description}): " + (
            "trusted" if trust.trusted else trust.reason(probe.namaddrport)))
        for strategy, wanted, matched in report.names:
            lines.append(f"name {strategy} {wanted}: "
                         + (f"matched {matched}" if matched else "no match"))
    lines.append("verdicts:")
    for verdict in report.verdicts:
        mark = "*" if verdict.level == policy.level else " "
        lines.append(f" {mark}{verdict.level.label:<12} {verdict.text}")
        if verdict.log and not verdict.deliver:
            lines.append(f"  {'':<12} {verdict.log}")
    return "\n".join(lines) + "\n"


def _cert_lines(depth: int, summary: CertSummary) -> list[str]:
    return [
        f"certificate {depth}: subject {summary.subject}",
        f"  issuer {summary.issuer}",
        "  names " + (", ".join(summary.dns_names) if summary.dns_names
                      else f"(no DNS SAN; CN {summary.common_name})"),
        f"  valid {_fmt_time(summary.not_before)} to {_fmt_time(summary.not_after)}",
        f"  sha256 certificate {summary.cert_fingerprint}",
        f"  sha256 public key {summary.pubkey_fingerprint}",
    ]


def render_json(report: Report) -> str:
    probe, policy = report.probe, report.policy
    chain = []
    for summary in (report.evaluation.summaries() if report.evaluation else []):
        chain.append({
            "subject": summary.subject, "issuer": summary.issuer,
            "common_name": summary.common_name, "dns_names": list(summary.dns_names),
            "not_before": summary.not_before.isoformat(),
            "not_after": summary.not_after.isoformat(),
            "sha256_cert": summary.cert_fingerprint,
            "sha256_pubkey": summary.pubkey_fingerprint,
        })
    trust = report.evaluation.trust if report.evaluation else None
    data = {
        "destination": probe.nexthop,
        "policy": {"level": policy.level.label, "source": policy.where, "key": policy.key},
        "server": {"hostname": probe.hostname, "address": probe.address, "port": probe.port},
        "transcript": probe.transcript,
        "error": probe.error,
        "starttls_offered": probe.starttls_offered,
        "handshake_error": probe.handshake_error,
        "tls": ({"protocol": probe.protocol, "cipher": probe.cipher, "bits": probe.cipher_bits}
                if probe.tls_up else None),
        "chain": chain,
        "chain_trusted": trust.trusted if trust else None,
        "chain_error": (trust.reason(probe.namaddrport) if trust and not trust.trusted
                        else None),
        "ca": report.store.description,
        "names": [{"strategy": s, "wanted": w, "matched": m} for s, w, m in report.names],
        "verdicts": {v.level.label: {"deliver": v.deliver, "how": v.how, "trust": v.trust,
                                     "dsn": v.dsn, "text": v.text, "log": v.log}
                     for v in report.verdicts},
    }
    return json.dumps(data, indent=2) + "\n"
