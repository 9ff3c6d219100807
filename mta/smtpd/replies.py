"""smtpd's reply texts, Postfix's wording with RFC 3463 enhanced status codes.

These are an interface: clients, tests and operators' log searches depend on
them (docs/smtpd.md lists them).
"""

from __future__ import annotations

OK = "250 2.0.0 Ok"
MAIL_OK = "250 2.1.0 Ok"
RCPT_OK = "250 2.1.5 Ok"
START_DATA = "354 End data with <CR><LF>.<CR><LF>"
BYE = "221 2.0.0 Bye"
QUEUED = "250 2.0.0 Ok: queued as {qid}"

NOT_RECOGNIZED = "500 5.5.2 Error: command not recognized"  # Postfix 3.7, on the wire
# Postfix's smtpd_forbid_unauth_pipelining: a client that did not wait for a
# reply it must wait for (RFC 2920 §3.1, RFC 5321 §4.3.1: the greeting too).
PROTOCOL_SYNCHRONIZATION = "554 5.5.0 Error: SMTP protocol synchronization"
# Postfix's answer to smtpd_forbidden_commands, a header line or a line that
# does not start with a letter: an HTTP client, or message content sent as
# commands (a DATA the client thought accepted).
NON_SMTP_COMMAND = "221 2.7.0 Error: I can break rules, too. Goodbye."
BAD_SYNTAX = "500 5.5.2 Error: bad syntax"
LINE_TOO_LONG = "500 5.5.2 Error: command line too long"
NEED_HELO = "503 5.5.1 Error: send HELO/EHLO first"
NESTED_MAIL = "503 5.5.1 Error: nested MAIL command"
NEED_MAIL = "503 5.5.1 Error: need MAIL command"
NEED_RCPT = "503 5.5.1 Error: need RCPT command"
NO_VALID_RECIPIENTS = "554 5.5.1 Error: no valid recipients"
# RFC 2034: every reply carries an enhanced status code except the greeting
# and the replies to HELO and EHLO; Postfix's helo_cmd and ehlo_cmd send none.
HELO_SYNTAX = "501 Syntax: HELO hostname"
EHLO_SYNTAX = "501 Syntax: EHLO hostname"
MAIL_SYNTAX = "501 5.5.4 Syntax: MAIL FROM:<address>"
RCPT_SYNTAX = "501 5.5.4 Syntax: RCPT TO:<address>"
DATA_SYNTAX = "501 5.5.4 Syntax: DATA"
RSET_SYNTAX = "501 5.5.4 Syntax: RSET"
VRFY_SYNTAX = "501 5.5.4 Syntax: VRFY address"
BAD_SENDER_SYNTAX = "501 5.1.7 Bad sender address syntax"
BAD_RECIPIENT_SYNTAX = "501 5.1.3 Bad recipient address syntax"
BAD_PARAMETER = "555 5.5.4 Unsupported option: {name}"  # the parameter as sent
BAD_SIZE = "501 5.5.4 Bad message size syntax"
MULTIPLE_AUTH = "503 5.5.4 Error: multiple AUTH= options"
SMTPUTF8_NEEDED = "553 5.6.7 Must declare SMTPUTF8 to send unicode address"
VRFY_DISABLED = "502 5.5.1 VRFY command is disabled"
# RFC 5321 §3.5.3: will try, cannot verify; the argument as sent (Postfix).
VRFY_MAY_DELIVER = "252 2.0.0 {address}"

SIZE_EXCEEDS = "552 5.3.4 Message size exceeds fixed limit"
MESSAGE_TOO_BIG = "552 5.3.4 Error: message file too big"
TOO_MANY_HOPS = "554 5.4.0 Error: too many hops"
TOO_MANY_RECIPIENTS = "452 4.5.3 Error: too many recipients"
INSUFFICIENT_STORAGE = "452 4.3.1 Insufficient system storage"
QUEUE_FILE_ERROR = "451 4.3.0 Error: queue file write error"

RELAY_DENIED = "554 5.7.1 <{address}>: Relay access denied"
RELAY_DEFERRED = "454 4.7.1 <{address}>: Relay access denied"
USER_UNKNOWN = ("550 5.1.1 <{address}>: Recipient address rejected: "
                "User unknown in local recipient table")
# what: Postfix's reply class, "Recipient address", "Sender address",
# "Helo command" or "Client host".
# reject (reject_code, 554) and defer (defer_code, 450) in any list; code_class
# is the code's first digit, which the enhanced code's class follows, as in
# Postfix's smtpd_check_reject.
ACCESS_DENIED = "{code} {code_class}.7.1 <{address}>: {what} rejected: Access denied"
TRY_AGAIN_LATER = "{code} {code_class}.3.2 <{address}>: {what} rejected: Try again later"
# smtpd_data_restrictions (address is "DATA", what "Data command"):
# reject_multi_recipient_bounce (multi_recipient_bounce_reject_code, 550)
# and reject_unauth_pipelining (always 503 in Postfix).
MULTI_RECIPIENT_BOUNCE = ("{code} {code_class}.5.3 <{address}>: {what} rejected: "
                          "Multi-recipient bounce")
UNAUTH_PIPELINING = ("503 5.5.0 <{address}>: {what} rejected: Improper use of SMTP command "
                     "pipelining")
# reject_non_fqdn_sender and reject_non_fqdn_recipient (non_fqdn_reject_code,
# 504): the address as the client sent it.
NOT_FQDN_ADDRESS = ("{code} {code_class}.5.2 <{address}>: {what} rejected: need "
                    "fully-qualified address")
# reject_plaintext_session (the code is plaintext_reject_code, Postfix's 450).
PLAINTEXT_SESSION = "{code} {code_class}.7.1 Session encryption is required"
# smtpd_client_restrictions refused the client at connect (smtpd_delay_reject
# = no): the answer to every later command but QUIT (Postfix's smtpd.c, "RFC
# 2821 Sec 3.1"); peer is host[address].
SESSION_ACCESS_DENIED = "503 5.7.0 Error: access denied for {peer}"
# reject_*_sender_login_mismatch (smtpd_check.c); sender as the client sent
# it, login the SASL login name of the session.
SENDER_NOT_OWNED = "553 5.7.1 <{sender}>: Sender address rejected: not owned by user {login}"
SENDER_NOT_LOGGED_IN = "553 5.7.1 <{sender}>: Sender address rejected: not logged in"
# check_client_access, check_helo_access, check_sender_access and
# check_recipient_access (smtpd_check.c check_table_result): code and
# enhanced code from the table's action (REJECT: access_map_reject_code 554
# and 5.7.1; DEFER: access_map_defer_code 450 and 4.7.1; or the action's own
# 4NN/5NN and X.Y.Z), name the client as host[address] or the HELO name,
# sender or recipient, what "Client host", "Helo command", "Sender address"
# or "Recipient address", text the action's text or ACCESS_MAP_TEXT.
ACCESS_MAP_REFUSED = "{code} {dsn} <{name}>: {what} rejected: {text}"
ACCESS_MAP_TEXT = "Access denied"
# Postfix's reject_server_error: a table action it cannot carry out.
SERVER_CONFIGURATION_ERROR = "451 4.3.5 Server configuration error"
# The HELO restrictions (smtpd_check.c), with invalid_hostname_reject_code
# (501) and non_fqdn_reject_code (504); name is the HELO name as it was judged.
HELO_INVALID = "{code} {code_class}.5.2 <{name}>: Helo command rejected: Invalid name"
HELO_INVALID_ADDRESS = ("{code} {code_class}.5.2 <{name}>: Helo command rejected: invalid ip "
                        "address")
HELO_NOT_FQDN = ("{code} {code_class}.5.2 <{name}>: Helo command rejected: need "
                 "fully-qualified hostname")

TOO_MANY_CONNECTIONS = "421 4.7.0 {host} Error: too many connections from {address}"
# The smtpd_client_*_rate_limit refusals (smtpd.c, smtpd_sasl_proto.c): the
# client's address, and for TLS its name[address], as Postfix words them.
TOO_MUCH_MAIL = "450 4.7.1 Error: too much mail from {address}"
TOO_MANY_RECIPIENTS_RATE = "450 4.7.1 Error: too many recipients from {address}"
TOO_MANY_AUTH = "450 4.7.1 Error: too many AUTH commands from {address}"
TLS_RATE_REFUSED = "454 4.7.0 Error: too many new TLS sessions from {peer}"
TOO_MANY_NEW_TLS = "421 4.7.0 {host} Error: too many new TLS sessions from {peer}"
SERVER_BUSY = "421 4.7.0 {host} Error: too many connections"
TIMEOUT = "421 4.4.2 {host} Error: timeout exceeded"
# The daemon stops (mta stop): RFC 5321 §3.8's 421; 4.3.2, system not
# accepting network messages (RFC 3463). Postfix's smtpd just exits.
SHUTTING_DOWN = "421 4.3.2 {host} Service shutting down, closing transmission channel"
TOO_MANY_ERRORS = "421 4.7.0 {host} Error: too many errors"
BARE_NEWLINE = "521 5.5.2 {host} Error: bare <LF> received"
# Ours: Postfix has no reply for a bare CR, which it does not see as a line end.
BARE_CR = "521 5.5.2 {host} Error: bare <CR> received"

# STARTTLS (RFC 3207) and the TLS requirement, Postfix's texts (smtpd.c).
STARTTLS_READY = "220 2.0.0 Ready to start TLS"
STARTTLS_SYNTAX = "501 5.5.4 Syntax: STARTTLS"
TLS_ALREADY_ACTIVE = "554 5.5.1 Error: TLS already active"
NOT_IMPLEMENTED = "502 5.5.1 Error: command not implemented"
TLS_NOT_AVAILABLE = "454 4.7.0 TLS not available due to local problem"
MUST_STARTTLS = "530 5.7.0 Must issue a STARTTLS command first"
CCERT_REFUSED = "421 4.7.1 {host} Error: {reason}"
NO_CCERT = "No client certificate presented"
CCERT_NOT_TRUSTED = "Client certificate not trusted"

# AUTH (RFC 4954), Postfix's texts (smtpd_sasl_proto.c, smtpd_sasl_glue.c).
AUTH_OK = "235 2.7.0 Authentication successful"
AUTH_NOT_ENABLED = "503 5.5.1 Error: authentication not enabled"
AUTH_IN_TRANSACTION = "503 5.5.1 Error: MAIL transaction in progress"
# RFC 4954 §4 and §6 (Postfix 3.7 answers "503 5.5.1 Error: authentication not
# enabled" there: docs/inbound-tls.md, Differences from Postfix).
AUTH_ENCRYPTION_REQUIRED = "538 5.7.11 Encryption required for requested authentication " \
                           "mechanism"
AUTH_ALREADY = "503 5.5.1 Error: already authenticated"
AUTH_SYNTAX = "501 5.5.4 Syntax: AUTH mechanism"
AUTH_UNKNOWN_MECHANISM = "504 5.5.4 Unrecognized authentication type"
AUTH_ABORTED = "501 5.7.0 Authentication aborted"
AUTH_TOO_LONG = "500 5.5.6 Authentication Exchange line is too long"  # RFC 4954 §6
# reason: "authentication failure" (a wrong password), or what was malformed.
AUTH_FAILED = "535 5.7.8 Error: authentication failed: {reason}"
AUTH_UNAVAILABLE = "454 4.7.0 Temporary authentication failure"
