"""Sender address ownership: smtpd_sender_login_maps and the login-mismatch restrictions.

A submission user who may relay must not send as someone else: the table
names, for an envelope sender, the SASL login names that own it, and the
``reject_*_sender_login_mismatch`` restrictions (Postfix's smtpd_check.c)
compare it with the login of the session.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from mta import address as addr
from mta.maps import TableList
from mta.smtpd import replies

_SEPARATORS = re.compile(r"[,\s]+")  # Postfix's CHARS_COMMA_SP


class SenderLogins:
    """The owners of sender addresses, and the mismatch verdicts built on them."""

    def __init__(self, table: TableList, delimiter: str,
                 is_local_domain: Callable[[str], bool]) -> None:
        self.table = table
        self.delimiter = delimiter
        self.is_local_domain = is_local_domain

    def owners(self, sender: str) -> list[str] | None:
        """The login names that own sender, or None when it is not listed.

        The lookup order is Postfix's mail_addr_find() with MA_FIND_DEFAULT:
        user+ext@domain, user@domain, then the bare local part (with and
        without its extension) only for a local domain, then @domain."""
        local, domain = addr.split(sender)
        base = addr.strip_extension(local, self.delimiter)
        keys = [f"{local}@{domain}", f"{base}@{domain}"]
        if not domain or self.is_local_domain(domain):
            keys += [local, base]
        if domain:
            keys.append(f"@{domain}")
        for key in dict.fromkeys(keys):
            value = self.table.lookup(key)
            if value is not None:
                return [name for name in _SEPARATORS.split(value) if name]
        return None

    def authenticated_mismatch(self, login: str | None, sender: str,
                               shown: str) -> str | None:
        """reject_authenticated_sender_login_mismatch: a logged-in client
        must own the sender, and an unlisted sender is owned by nobody.
        Logins compare case-insensitively, as Postfix's strcasecmp_utf8."""
        if login is None:
            return None
        owners = self.owners(sender)
        if owners is not None and login.casefold() in (o.casefold() for o in owners):
            return None
        return replies.SENDER_NOT_OWNED.format(sender=shown, login=login)

    def unauthenticated_mismatch(self, login: str | None, sender: str,
                                 shown: str) -> str | None:
        """reject_unauthenticated_sender_login_mismatch: a client that did
        not log in may not use a sender that has an owner."""
        if login is not None or self.owners(sender) is None:
            return None
        return replies.SENDER_NOT_LOGGED_IN.format(sender=shown)
