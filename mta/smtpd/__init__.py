"""smtpd: the SMTP receiver (listeners, protocol, restrictions, DATA reading)."""
