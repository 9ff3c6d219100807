"""Parameters of outbound delivery: routing, the SMTP client, scheduling and bounces.

Names, defaults and units are Postfix's (postconf(5)); docs/outbound.md lists
them with the few places where Postern differs and why.
"""

from __future__ import annotations

from mta.config import types as t
from mta.config.params import _bool, _int, _list, _p, _str, _time

# --- routing (trivial-rewrite) ----------------------------------------------------------
_str("relayhost", "",
     "The next hop for mail to non-local domains: [host]:port skips the MX lookup, "
     "host or host:port looks up MX records; empty delivers directly.")
_str("transport_maps", "",
     "Tables of recipient or domain -> transport:nexthop (smtp:[host]:port, local, "
     "error:text, retry:text); .domain keys match subdomains.")
_str("default_transport", "smtp", "The transport for mail to non-local domains.")

# --- DNS and addresses ------------------------------------------------------------------
_list("smtp_host_lookup", "dns, native",
      "How the SMTP client finds hosts: dns (MX, A, AAAA records), native (the system "
      "resolver: /etc/hosts, nsswitch); 'dns, native' uses native for hosts DNS does not "
      "know (Postfix default: dns).")
_p("smtp_address_preference", "any", t.choice("any", "ipv4", "ipv6"),
   "Which address family to try first when a host has both.")
_time("smtp_dns_timeout", "10s",
      "Postern: the time limit of one DNS query (the resolver's lifetime).", minimum=0.01)
_int("smtp_mx_address_limit", "5",
     "The maximal number of server addresses tried per delivery (0: no limit).", 0)
_int("smtp_mx_session_limit", "2",
     "The maximal number of SMTP sessions (greeting received) per delivery (0: no limit).",
     0)

# --- the SMTP client --------------------------------------------------------------------
_str("smtp_helo_name", "$myhostname", "The name sent in EHLO and HELO.")
_bool("smtp_never_send_ehlo", "no", "Send HELO instead of EHLO.")
_bool("smtp_skip_5xx_greeting", "yes",
      "Try the next server after a 5xx greeting instead of bouncing the mail.")
_p("smtp_bind_address", "", t.address_of_family(4, "smtp_bind_address6"),
   "The local address of outbound IPv4 connections (a numerical IPv4 address); IPv6 "
   "connections use smtp_bind_address6. Empty: the system chooses.", kind="address")
_p("smtp_bind_address6", "", t.address_of_family(6, "smtp_bind_address"),
   "The local address of outbound IPv6 connections (a numerical IPv6 address); IPv4 "
   "connections use smtp_bind_address. Empty: the system chooses.", kind="address")
_time("smtp_connect_timeout", "30s", "The time limit of a TCP connection attempt.",
      minimum=0.001)
_time("smtp_helo_timeout", "300s",
      "The time limit for the server greeting and the EHLO/HELO reply.", minimum=0.001)
_time("smtp_starttls_timeout", "300s",
      "The time limit for the STARTTLS reply and the TLS handshake.", minimum=0.001)
_time("smtp_mail_timeout", "300s", "The time limit for the MAIL FROM reply.",
      minimum=0.001)
_time("smtp_rcpt_timeout", "300s", "The time limit for each RCPT TO reply.",
      minimum=0.001)
_time("smtp_data_init_timeout", "120s", "The time limit for the DATA reply.",
      minimum=0.001)
_time("smtp_data_xfer_timeout", "180s",
      "The time limit for sending each block of message content.", minimum=0.001)
_time("smtp_data_done_timeout", "600s",
      "The time limit for the reply to the final dot.", minimum=0.001)
_time("smtp_rset_timeout", "20s", "The time limit for the RSET reply.", minimum=0.001)
_time("smtp_quit_timeout", "300s", "The time limit for the QUIT reply.", minimum=0.001)
_bool("smtp_connection_cache_on_demand", "yes",
      "Keep a connection open after a delivery, for the next message to the same "
      "destination.")
_time("smtp_connection_cache_time_limit", "2s",
      "How long an unused cached connection stays open.", minimum=0)
_time("smtp_connection_reuse_time_limit", "300s",
      "How long a connection may be reused after it was opened.", minimum=0)

# --- scheduling -----------------------------------------------------------------------
_int("default_destination_concurrency_limit", "20",
     "The maximal number of parallel deliveries to one destination.", 1)
_int("initial_destination_concurrency", "5",
     "The concurrency a destination starts with (slow start).", 1)
_int("default_destination_recipient_limit", "50",
     "The maximal number of recipients per delivery (per SMTP transaction).", 1)
_int("destination_concurrency_failed_cohort_limit", "1",
     "How many failed connection cohorts make a destination dead (suspended for "
     "$minimal_backoff_time).", 1)

# --- bounces --------------------------------------------------------------------------
_int("bounce_size_limit", "50000",
     "The maximal size of the original message returned in a bounce; larger ones return "
     "only their headers.", 0)
_list("notify_classes", "resource, software",
      "Which problems the postmaster is told about; 2bounce sends undeliverable bounces "
      "to $2bounce_notice_recipient.")
_str("2bounce_notice_recipient", "postmaster",
     "Who gets undeliverable bounces (with notify_classes = 2bounce).")
_str("double_bounce_sender", "double-bounce",
     "The sender of postmaster notices; mail to it is discarded, never bounced again.")
