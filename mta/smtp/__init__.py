"""smtp: the outbound delivery agent (client session, TLS hook, connection cache, agent)."""
