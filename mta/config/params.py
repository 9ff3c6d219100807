"""The parameter table: every main.cf parameter with its default, type, bounds and doc.

Names, defaults and units follow Postfix wherever Postfix has the parameter
(postconf(5)); the few Postern-only parameters say so in their doc. Defaults
are raw main.cf text and may refer to other parameters with $name, exactly as
``postconf -d`` shows them.
"""

from __future__ import annotations

import os
import socket
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from mta.config import types as t


@dataclass(frozen=True, slots=True)
class Param:
    name: str
    default: str
    parse: Callable[[str], Any]
    doc: str
    minimum: float | None = None
    maximum: float | None = None
    kind: str = "string"
    origin: str = field(default="", compare=False)  # module:line of the definition

    def convert(self, text: str) -> Any:
        value = self.parse(text)
        if self.minimum is not None and value < self.minimum:
            raise t.BadValue(f"must be at least {_show(self.minimum)}")
        if self.maximum is not None and value > self.maximum:
            raise t.BadValue(f"must be at most {_show(self.maximum)}")
        return value


def _show(number: float) -> str:
    return str(int(number)) if float(number).is_integer() else str(number)


def _string(text: str) -> str:
    return text.strip()


def _default_hostname() -> str:
    name = socket.getfqdn()
    return name if "." in name else f"{name}.localdomain"


PARAMS: dict[str, Param] = {}


class DuplicateParameter(Exception):
    """Two definitions of one parameter name: a programming error, raised at import."""


def _definition_site() -> str:
    """module:line of the _p/_str/... call that is defining a parameter."""
    frame = sys._getframe(1)
    while frame.f_back is not None and frame.f_globals.get("__name__") == __name__ \
            and frame.f_code.co_name.startswith("_"):
        frame = frame.f_back
    return f"{frame.f_globals.get('__name__', '?')}:{frame.f_lineno}"


def _p(name: str, default: str, parse: Callable[[str], Any], doc: str, *, kind: str = "string",
       minimum: float | None = None, maximum: float | None = None) -> None:
    # Each area's file adds to this one table; a second definition of a name
    # would silently replace the first (its default, type and doc), so it
    # stops the import instead.
    origin = _definition_site()
    if name in PARAMS:
        raise DuplicateParameter(f"parameter {name} is defined twice: at {PARAMS[name].origin} "
                                 f"and at {origin}; keep one definition")
    PARAMS[name] = Param(name, default, parse, doc, minimum, maximum, kind, origin)


def _time(name: str, default: str, doc: str, unit: str = "s", minimum: float = 0) -> None:
    _p(name, default, partial(t.parse_time, unit=unit), doc, kind="time", minimum=minimum)


def _int(name: str, default: str, doc: str, minimum: float = 0,
         maximum: float | None = None) -> None:
    _p(name, default, t.parse_int, doc, kind="int", minimum=minimum, maximum=maximum)


def _bool(name: str, default: str, doc: str) -> None:
    _p(name, default, t.parse_bool, doc, kind="bool")


def _str(name: str, default: str, doc: str) -> None:
    _p(name, default, _string, doc)


def _list(name: str, default: str, doc: str) -> None:
    _p(name, default, t.parse_list, doc, kind="list")


# --- identity -------------------------------------------------------------------------
_str("myhostname", _default_hostname(), "The Internet hostname of this mail system.")
_str("mydomain", "", "The Internet domain name of this mail system "
     "(default: $myhostname minus its first label).")
_str("myorigin", "$myhostname", "The domain that locally-posted mail appears to come from.")
_list("mydestination", "$myhostname, localhost.$mydomain, localhost",
      "Domains delivered locally (to Maildirs) instead of forwarded.")
_p("mynetworks", "127.0.0.0/8 [::1]/128", t.parse_networks,
   "Trusted client networks that may relay (permit_mynetworks). As in Postfix, a "
   "block with host bits set (192.0.2.5/24) is refused, not widened.", kind="networks")
_list("relay_domains", "", "Destination domains (besides mydestination) this system relays to.")
_str("mail_name", "Postern", "The mail system name in the banner and Received headers.")
_str("syslog_name", "postern", "The program prefix of maillog lines (postern/smtpd[pid]).")
_str("config_directory", "", "The directory of main.cf (set automatically).")

# --- files and logging ----------------------------------------------------------------
_str("queue_directory", "/var/spool/postern",
     "The spool; relative paths are relative to config_directory.")
_str("maillog_file", "", "The maillog file; empty means standard error only.")
_bool("maillog_stderr", "yes", "Postern: also write the maillog to standard error.")
_str("metrics_listen", "127.0.0.1:9154",
     "Postern: host:port of the Prometheus /metrics listener; empty disables it.")
_str("debug_log_level", "warning", "Postern: level of the debug log (not the maillog).")

def _processes(text: str) -> int:
    """A process count, or auto: one per CPU (at most 4), none on one CPU."""
    if text.strip().lower() == "auto":
        # The CPUs this process may run on (a container or taskset may allow
        # fewer than the machine has).
        cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") \
            else os.cpu_count() or 1
        return 0 if cpus < 2 else min(cpus, 4)
    return t.parse_int(text)


_p("receiver_processes", "auto", _processes,
   "Postern: smtpd worker processes sharing the listening sockets, beside the master's "
   "qmgr and delivery agents, like Postfix's smtpd processes beside one qmgr; auto is one "
   "per CPU (at most 4; none on one CPU), 0 runs smtpd in the master process.",
   kind="int", minimum=0, maximum=64)

# --- smtpd ----------------------------------------------------------------------------
_str("smtpd_banner", "$myhostname ESMTP $mail_name", "The text after 220 in the greeting.")
_p("message_size_limit", "10240000", t.parse_int,
   "The maximal size in bytes of a message, including envelope information.",
   kind="size", minimum=0)
_p("queue_minfree", "0", t.parse_int,
   "Free bytes the queue file system must have to accept mail; MAIL is refused below "
   "this, or below 1.5 x message_size_limit, whichever is larger.", kind="size", minimum=0)
_int("smtpd_recipient_limit", "1000", "The maximal number of recipients per message.", 1)
_int("smtpd_recipient_overshoot_limit", "1000",
     "Recipients past smtpd_recipient_limit before each one counts as an error.", 0)
_int("smtpd_client_connection_count_limit", "50",
     "The maximal number of simultaneous connections from one client address.", 0)
_int("smtpd_client_connection_limit", "1000",
     "Postern: the maximal number of simultaneous connections to one listener.", 1)
_p("smtpd_client_event_limit_exceptions", "$mynetworks", t.parse_networks,
   "Clients exempt from the per-client connection limit and the smtpd_client_*_rate_limit "
   "limits (with receiver workers also greeted without waiting for the master's "
   "connection count).", kind="networks")
_int("smtpd_client_connection_rate_limit", "0",
     "The maximal number of connections one client address may make to one service per "
     "anvil_rate_time_unit (0: no limit); past it, 421 4.7.0 and the connection ends.")
_int("smtpd_client_message_rate_limit", "0",
     "The maximal number of MAIL commands one client address may send to one service per "
     "anvil_rate_time_unit, whether they succeed or not (0: no limit); past it, 450 4.7.1.")
_int("smtpd_client_recipient_rate_limit", "0",
     "The maximal number of RCPT commands one client address may send to one service per "
     "anvil_rate_time_unit, whether they succeed or not (0: no limit); past it, 450 4.7.1.")
_int("smtpd_client_new_tls_session_rate_limit", "0",
     "The maximal number of new TLS sessions (full handshakes) one client address may "
     "negotiate with one service per anvil_rate_time_unit (0: no limit); past it, STARTTLS "
     "gets 454 4.7.0, and the handshake that exceeds it is answered with 421 4.7.0.")
_int("smtpd_client_auth_rate_limit", "0",
     "The maximal number of AUTH commands one client address may send to one service per "
     "anvil_rate_time_unit (0: no limit); past it, 450 4.7.1.")
_time("anvil_status_update_time", "600s",
      "How often the master logs anvil's statistics: the highest connection count and "
      "rates of one client since the last report (only when there were any).",
      minimum=1)
_time("anvil_rate_time_unit", "60s",
      "The time unit of the smtpd_client_*_rate_limit limits: a client's counts start over "
      "at its first event after a whole unit has passed since the first of the last unit.",
      minimum=1)
_p("stress", "", str,
   "Set to yes by Postern, per listener, while the listener is overloaded (from the moment "
   "smtpd_client_connection_limit refuses a connection until its sessions are below three "
   "quarters of it), as Postfix's master sets it for a service at its process limit; the "
   "${stress?{…}:{…}} defaults read it. Set it (yes, or empty) in main.cf or per listener "
   "to force the stress values on or off.")
_time("smtpd_timeout", "${stress?{10}:{300}}s",
      "How long the server waits for the client's next command line, or its next piece of "
      "DATA (each read, as in Postfix: a long message that keeps arriving is not cut off; "
      "see smtpd_per_request_deadline). 10s under stress.",
      minimum=1)
_bool("smtpd_per_request_deadline", "${stress?{yes}:{no}}",
      "Make smtpd_timeout a deadline for a whole command line or a whole message's DATA "
      "(extended by what arrives, at smtpd_min_data_rate), not for each read: a client "
      "that dribbles a byte now and then cannot hold its session. On under stress.")
_int("smtpd_min_data_rate", "500",
     "With smtpd_per_request_deadline: each byte of message content received extends the "
     "DATA deadline by 1/rate seconds.", 1)
_bool("smtpd_forbid_unauth_pipelining", "yes",
      "Disconnect a client that sends commands before the greeting, pipelines without "
      "EHLO (which announces PIPELINING), or sends more after a command it must wait for "
      "(HELO, EHLO, DATA, NOOP, VRFY; RFC 2920): 554 5.5.0 Error: SMTP protocol "
      "synchronization (Postfix 3.9 and later; no logs the violation only).")
_list("smtpd_forbidden_commands", "CONNECT GET POST",
      "Command names (any case) that end the session with 221 2.7.0 (an HTTP client, say); "
      "a line that starts like a header (Subject:) or not with a letter always does, as "
      "Postfix's is_header test and the regexp:{{/^[^A-Z]/ Bogus}} of its default.")
_int("smtpd_soft_error_limit", "10",
     "Errors after which every reply to the client is delayed by smtpd_error_sleep_time, "
     "until it delivers a message (the tarpit).", 1)
_time("smtpd_error_sleep_time", "1s",
      "The delay of each reply once smtpd_soft_error_limit errors were made; 0 turns the "
      "tarpit off.", minimum=0)
_int("smtpd_hard_error_limit", "${stress?{1}:{20}}",
     "Errors after which the server disconnects (1 under stress).", 1)
_int("smtpd_junk_command_limit", "${stress?{1}:{100}}",
     "Junk commands (HELO, EHLO, NOOP, RSET, VRFY) a client may send before each further one "
     "counts as an error toward smtpd_hard_error_limit; a queued message resets the count "
     "(1 under stress).", 1)
_bool("smtpd_helo_required", "no", "Require HELO or EHLO before MAIL.")
_list("smtpd_relay_restrictions",
      "permit_mynetworks, permit_sasl_authenticated, reject_unauth_destination",
      "Relay control, evaluated for every RCPT before smtpd_recipient_restrictions. As in "
      "Postfix, a configuration is refused unless this list or smtpd_recipient_restrictions "
      "holds reject_unauth_destination, defer_unauth_destination, reject or defer before any "
      "unconditional permit (no open relay by mistake).")
_list("smtpd_recipient_restrictions", "",
      "Further restrictions on RCPT TO: those of smtpd_relay_restrictions "
      "(permit_mynetworks, permit_sasl_authenticated, permit_tls_clientcerts, "
      "permit_tls_all_clientcerts, permit_auth_destination, reject_unauth_destination, "
      "defer_unauth_destination, reject_unlisted_recipient, reject_plaintext_session, "
      "permit, reject, defer), reject_non_fqdn_sender, reject_non_fqdn_recipient, "
      "reject_invalid_helo_hostname, reject_non_fqdn_helo_hostname, and "
      "check_client_access, check_helo_access, check_sender_access, "
      "check_recipient_access, check_ccert_access and check_sasl_access with a type:table "
      "each, or a bare type:table for the recipient. In every list, warn_if_reject "
      "before a restriction logs its refusal as reject_warning and goes on.")
_list("smtpd_client_restrictions", "",
      "Restrictions on the client's name and address: permit_mynetworks, "
      "permit_sasl_authenticated, permit_tls_clientcerts, permit_tls_all_clientcerts, "
      "permit, reject, defer, reject_plaintext_session, check_client_access type:table, "
      "check_ccert_access type:table, check_sasl_access type:table (warn_if_reject "
      "before one logs its refusal). Judged at RCPT TO and VRFY before "
      "smtpd_helo_restrictions, or with smtpd_delay_reject = no once at connect, where a "
      "refusal replaces the greeting and every later command but QUIT gets 503 5.7.0 "
      "Error: access denied for host[address].")
_list("smtpd_helo_restrictions", "",
      "Restrictions on the HELO/EHLO name: permit_mynetworks, permit_sasl_authenticated, "
      "permit_tls_clientcerts, permit_tls_all_clientcerts, permit, reject, defer, "
      "reject_invalid_helo_hostname, reject_non_fqdn_helo_hostname, check_client_access "
      "type:table, check_helo_access type:table, check_ccert_access type:table, "
      "check_sasl_access type:table, reject_plaintext_session (and warn_if_reject). "
      "Skipped for a client that sent no HELO/EHLO.")
_list("smtpd_sender_restrictions", "",
      "Restrictions on the MAIL FROM address: permit_mynetworks, permit_sasl_authenticated, "
      "permit_tls_clientcerts, permit_tls_all_clientcerts, permit, reject, defer, "
      "reject_non_fqdn_sender, "
      "reject_sender_login_mismatch, reject_authenticated_sender_login_mismatch, "
      "reject_unauthenticated_sender_login_mismatch (the last three judge "
      "smtpd_sender_login_maps, and are ignored with a warning where "
      "smtpd_sasl_auth_enable = no), check_client_access type:table, check_sender_access "
      "type:table, check_ccert_access type:table, check_sasl_access type:table, "
      "reject_plaintext_session (and warn_if_reject). The null sender "
      "skips the login checks.")
_list("smtpd_data_restrictions", "",
      "Restrictions on DATA, judged before its 354: permit_mynetworks, "
      "permit_sasl_authenticated, permit_tls_clientcerts, permit_tls_all_clientcerts, "
      "permit, reject, defer, reject_plaintext_session, reject_non_fqdn_sender, "
      "reject_invalid_helo_hostname, reject_non_fqdn_helo_hostname, "
      "reject_multi_recipient_bounce (the null sender with more than one recipient), "
      "reject_unauth_pipelining (a client that pipelined without PIPELINING; with "
      "smtpd_forbid_unauth_pipelining = yes, the default, such a session has already "
      "ended), check_client_access, check_helo_access, check_sender_access, "
      "check_recipient_access (for a single recipient only, as in Postfix), "
      "check_ccert_access and check_sasl_access type:table (and warn_if_reject).")
_int("multi_recipient_bounce_reject_code", "550",
     "The SMTP reply code of reject_multi_recipient_bounce.", 400, 599)
_int("plaintext_reject_code", "450",
     "The SMTP reply code of reject_plaintext_session (a restriction that refuses a "
     "session without TLS: \"Session encryption is required\").", 400, 599)
_bool("allow_untrusted_routing", "no",
      "Let a client that is not permitted to relay send to a relay_domains address that "
      "carries a route (user%elsewhere@, \"user@elsewhere\"@ or elsewhere!user@): no, as "
      "in Postfix, because the next hop may honour the route and relay for anyone.")
_int("reject_code", "554",
     "The SMTP reply code of the reject restriction (\"Access denied\").", 400, 599)
_int("defer_code", "450",
     "The SMTP reply code of the defer restriction (\"Try again later\").", 400, 599)
_int("non_fqdn_reject_code", "504",
     "The SMTP reply code of reject_non_fqdn_helo_hostname, reject_non_fqdn_sender and "
     "reject_non_fqdn_recipient.", 400, 599)
_int("invalid_hostname_reject_code", "501",
     "The SMTP reply code of reject_invalid_helo_hostname, and of either HELO restriction "
     "for an invalid address literal.", 400, 599)
_int("access_map_reject_code", "554",
     "The SMTP reply code of an access map's REJECT (the enhanced code's class follows "
     "it).", 400, 599)
_int("access_map_defer_code", "450",
     "The SMTP reply code of an access map's DEFER (do not change it unless you know RFC "
     "5321 well, as Postfix says).", 400, 599)
_str("smtpd_null_access_lookup_key", "<>",
     "The key check_sender_access looks up for the null sender (MAIL FROM:<>).")
_str("smtpd_sender_login_maps", "",
     "Tables from envelope sender to the SASL login names that own it (separated by commas "
     "or spaces), looked up as user+ext@domain, user@domain, user+ext and user (local "
     "domains only), then @domain.")
_bool("smtpd_delay_reject", "yes",
      "Evaluate smtpd_client_restrictions, smtpd_helo_restrictions and "
      "smtpd_sender_restrictions at RCPT TO (the client and HELO ones at VRFY too), so that "
      "the refusal is the reply to RCPT and is logged with the sender and recipient, rather "
      "than at connect, HELO/EHLO and MAIL FROM.")
_p("smtpd_forbid_bare_newline", "normalize", t.choice("normalize", "reject", "no"),
   "Bare LF (or CR) line endings: normalize them to CRLF, or reject the session.")
_int("line_length_limit", "2048",
     "The maximal length of an SMTP command line (DATA lines may be longer).", 512)
_int("header_size_limit", "102400",
     "The maximal size of a message header section held in memory. From the first line "
     "that does not fit, the rest goes on as it came, without a Date or Message-ID "
     "added (one may be past the cut).", 1024)
_int("hopcount_limit", "50",
     "The hop count at which a message is refused: one with this many Received headers or "
     "more (ours included, as Postfix counts them) is refused at the end of DATA (554 5.4.0 "
     "Error: too many hops), which stops a mail "
     "loop that the SMTP client's own-hostname check cannot see. Mail from mta sendmail is "
     "bounced to its sender instead (5.4.0 too many hops), as Postfix's cleanup does.", 1)
_bool("smtpd_peername_lookup", "yes", "Look up the client hostname in the DNS.")
_bool("disable_vrfy_command", "no", "Disable the VRFY command.")
_bool("always_add_missing_headers", "no",
      "Add Date and Message-ID to mail from every client when they are missing.")
_list("local_header_rewrite_clients", "permit_inet_interfaces",
      "Clients whose mail gets missing Date and Message-ID headers added.")
_bool("smtpd_tls_received_header", "yes",
      "Put the TLS protocol and cipher in the Received header (Postfix default: no).")

# --- local delivery -------------------------------------------------------------------
_str("local_recipient_maps", "",
     "Map of local recipients (user or user@domain) to Maildir paths; empty accepts none.")
_str("mail_spool_directory", "/var/mail/",
     "Where local Maildirs live; relative paths are relative to config_directory.")
_str("recipient_delimiter", "", "Separator of address extensions (alice+tag).")
# Postfix's default is 2, but its local destination is one recipient
# (local_destination_recipient_limit = 1): 2 at once per mailbox. Ours is the
# local domain (up to 50 recipients per delivery), so 2 would serialise
# every mailbox behind one another; 20 matches the other destinations.
_int("local_destination_concurrency_limit", "20",
     "The maximal number of parallel deliveries to the Maildirs of one local "
     "domain (Postfix: 2 per recipient).", 1)

# --- queue manager --------------------------------------------------------------------
_time("maximal_queue_lifetime", "5d", "How long undeliverable mail stays queued.", unit="d")
_time("bounce_queue_lifetime", "5d", "How long an undeliverable bounce stays queued.",
      unit="d")
_time("minimal_backoff_time", "300s", "The minimal time between delivery attempts.",
      minimum=1)
_time("maximal_backoff_time", "4000s", "The maximal time between delivery attempts.",
      minimum=1)
_time("queue_run_delay", "300s", "How often the deferred queue is scanned.", minimum=1)
_list("defer_transports", "",
      "Transports that deliver nothing until mta queue flush (e.g. local, smtp).")
_int("qmgr_message_active_limit", "20000", "The maximal number of messages in active/.", 1)
_time("delay_warning_time", "0h", "When to warn the sender of delayed mail; 0 disables.",
      unit="h")
_int("delay_logging_resolution_limit", "2",
     "Significant digits after the decimal point of delay= and delays=.", 0, 6)

# --- TLS (server side; the inbound TLS work adds the rest) ----------------------------
_str("smtpd_tls_cert_file", "", "The server certificate (PEM, chain after it).")
_str("smtpd_tls_key_file", "$smtpd_tls_cert_file", "The server private key (PEM).")
_bool("tls_self_signed_on_first_start", "no",
      "Postern: when smtpd_tls_cert_file and its key do not exist, make a self-signed "
      "certificate for $myhostname at start.")

# Each area's parameters live next to each other in their own file, all in
# this one PARAMS table (imported last: they use the helpers above).
from mta.config import (  # noqa: E402
    params_certs,  # noqa: F401
    params_smtp,  # noqa: F401
    params_smtp_tls,  # noqa: F401
    params_smtpd_tls,  # noqa: F401
)
