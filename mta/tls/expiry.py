"""The daemon's watch over its own certificates: keys that must open at start,
maillog warnings as a certificate nears expiry, and its seconds to expiry as a
metric.

Postfix serves an expired certificate without a word; opportunistic peers do
not check, so nobody notices until a verifying peer (a submission client, a
DANE or MTA-STS sender) refuses. Hence the warning, repeated daily from
tls_cert_expiry_warning_time before expiry, and the metric to alert on.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import logging
import time
from collections.abc import Callable

from cryptography import x509
from prometheus_client import Gauge

from mta import log as maillog
from mta.config import Config
from mta.errors import ConfigError
from mta.metrics import REGISTRY
from mta.tls import certinfo
from mta.tls.inventory import CertFile, configured_certificates
from mta.tls.keys import (
    check_key_matches,
    configured_password_file,
    load_private_key,
    password_file_warning,
)

log = logging.getLogger(__name__)

EXPIRY = Gauge("mta_tls_certificate_expiry_seconds",
               "Seconds until the soonest-expiring certificate of each role expires "
               "(negative once expired). Roles: smtpd, smtpd_sni, smtpd_client_ca, "
               "smtp_client.", ["role"], registry=REGISTRY)

CHECK_INTERVAL = 86400.0  # the warning repeats daily, like a cron job would


def check_keys(config: Config) -> list[str]:
    """Open every private key the configuration serves with, as the TLS
    contexts will; ConfigError (naming the key file) when one cannot be opened
    or does not match its certificate. Returns warnings to log."""
    warnings = []
    password_file = configured_password_file(config)
    if password_file is not None:
        warning = password_file_warning(password_file)
        if warning:
            warnings.append(warning)
    for item in configured_certificates(config):
        if item.key is None or not item.key.exists():
            continue  # a missing file is reported by the expiry check
        key = load_private_key(item.key, config)
        if item.path.exists():
            chain = certinfo.read_certificates(item.path)
            check_key_matches(key, chain[0], str(item.key), str(item.path))
    return warnings


def expiry_warnings(item: CertFile, certs: list[x509.Certificate], now: datetime.datetime,
                    window: float) -> list[str]:
    """The maillog warnings for one file's certificates at now."""
    warnings = []
    for cert in certs:
        where = f"certificate {item.shown} ({item.parameter}) for " \
                f"{certinfo.name_text(cert.subject)}"
        left = certinfo.seconds_left(cert, now)
        days = certinfo.days_left(cert, now)
        on = certinfo.time_text(cert.not_valid_after_utc)
        if left < 0:
            warnings.append(f"{where} expired {-days} day{_s(-days)} ago, on {on}")
        elif left <= window:
            warnings.append(f"{where} expires in {days} day{_s(days)}, on {on}")
        if now < cert.not_valid_before_utc:
            warnings.append(f"{where} is not valid until "
                            f"{certinfo.time_text(cert.not_valid_before_utc)}")
    return warnings


def _s(count: int) -> str:
    return "" if count == 1 else "s"


class CertificateWatch:
    """Checks the configured certificates at start, on reload and daily."""

    def __init__(self, config: Config, clock: Callable[[], float] = time.time,
                 interval: float = CHECK_INTERVAL) -> None:
        self.config = config
        self.clock = clock
        self.interval = interval
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        """At daemon start: keys must open (else ConfigError stops the start),
        then the expiry check, then the daily re-check."""
        try:
            warnings = check_keys(self.config)
        except ConfigError as error:
            maillog.fatal("master", str(error))
            raise
        for warning in warnings:
            maillog.warning("master", warning)
        self.check()
        self._task = asyncio.get_running_loop().create_task(self._daily())

    def reload(self, config: Config) -> None:
        """SIGHUP: the new configuration's keys were checked by the caller."""
        self.config = config
        self.check()

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _daily(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(self.interval)
            try:
                await loop.run_in_executor(None, self.check)
            except Exception:  # a bad day must not end the watch
                log.exception("certificate expiry check failed")

    def check(self) -> None:
        """Read every configured certificate, log what nears expiry, and set
        the metric to the soonest expiry per role."""
        config = self.config
        now = datetime.datetime.fromtimestamp(self.clock(), datetime.UTC)
        window = config.tls_cert_expiry_warning_time
        soonest: dict[str, float] = {}
        for item in configured_certificates(config):
            try:
                certs = certinfo.read_certificates(item.path)
            except ConfigError as error:
                maillog.warning("master", f"{item.parameter}: {error}")
                continue
            for warning in expiry_warnings(item, certs, now, window):
                maillog.warning("master", warning)
            not_after = min(cert.not_valid_after_utc.timestamp() for cert in certs)
            soonest[item.role] = min(not_after, soonest.get(item.role, not_after))
        EXPIRY.clear()
        for role, not_after in soonest.items():
            EXPIRY.labels(role).set_function(self._seconds_until(not_after))

    def _seconds_until(self, not_after: float) -> Callable[[], float]:
        # Computed at scrape time, so the value is right between daily checks.
        return lambda: not_after - self.clock()
