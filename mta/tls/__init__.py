"""TLS: certificates, contexts, policy decisions and the summaries logs print."""
