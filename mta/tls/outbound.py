"""Everything outbound TLS needs from one configuration, built once at start.

The policy table (checked entry by entry), the client SSL contexts for every
policy in it, and the trusted CA set. A bad entry, certificate or CA file
raises ConfigError here, so the daemon does not start (or a reload keeps the
running configuration).
"""

from __future__ import annotations

from dataclasses import dataclass

from mta.config import Config
from mta.tls.chain import TrustStore
from mta.tls.client_context import ClientContexts, trust_store
from mta.tls.policy_table import ClientPolicy, PolicyTable


@dataclass
class OutboundTls:
    config: Config
    policies: PolicyTable
    contexts: ClientContexts
    store: TrustStore

    @classmethod
    def from_config(cls, config: Config) -> OutboundTls:
        policies = PolicyTable.from_config(config)
        contexts = ClientContexts.from_config(
            config, [p for p in policies.policies() if p.protocols is not None])
        return cls(config, policies, contexts, trust_store(config))

    def policy_for(self, nexthop: str) -> ClientPolicy:
        return self.policies.lookup(nexthop)

    @property
    def warnings(self) -> list[str]:
        return self.policies.warnings
