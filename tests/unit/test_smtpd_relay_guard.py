"""No open relay by configuration: like Postfix, a configuration whose relay
and recipient restrictions cannot refuse mail for other domains is refused
at start and at reload (ConfigError), not run."""

from __future__ import annotations

import pytest

from mta.config import from_text
from mta.errors import ConfigError
from mta.master import build_parts

BASE = "myhostname = mx.example.test\nmydestination = example.test\n"


@pytest.mark.parametrize("lines", [
    "smtpd_relay_restrictions =\n",
    "smtpd_relay_restrictions = permit_mynetworks\n",
    "smtpd_relay_restrictions = permit_mynetworks, permit\n",
    # After an unconditional permit nothing is reached (Postfix's has_required).
    "smtpd_relay_restrictions = permit, reject_unauth_destination\n",
    "smtpd_relay_restrictions = permit_mynetworks\n"
    "smtpd_recipient_restrictions = permit, reject\n",
])
def test_restrictions_that_cannot_refuse_relaying_are_refused(lines: str) -> None:
    with pytest.raises(ConfigError, match="specify at least one working instance of: "
                                          "reject_unauth_destination"):
        build_parts(from_text(BASE + lines))


@pytest.mark.parametrize("lines", [
    "",  # the default: permit_mynetworks, permit_sasl_authenticated, reject_unauth_destination
    "smtpd_relay_restrictions = permit_mynetworks, defer_unauth_destination\n",
    "smtpd_relay_restrictions =\n"
    "smtpd_recipient_restrictions = permit_mynetworks, reject_unauth_destination\n",
    "smtpd_relay_restrictions = permit_mynetworks, reject\n",
])
def test_restrictions_that_can_refuse_relaying_are_taken(lines: str) -> None:
    build_parts(from_text(BASE + lines))
