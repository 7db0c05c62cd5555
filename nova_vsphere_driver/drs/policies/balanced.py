"""The default policy: spread load evenly over the cluster's hosts."""

from __future__ import annotations

from nova_vsphere_driver.drs.policies.base import Candidate, Policy


class BalancedPolicy(Policy):
    """Place where the cluster imbalance ends lowest; balancing spreads load.

    Ties (e.g. identical empty hosts) go to the host with the most memory
    headroom left, relative to its size, then to the lowest host id.
    """

    name = "balanced"
    balances_load = True

    def rank_key(self, candidate: Candidate) -> tuple:
        headroom = candidate.memory_free_after_mb / max(candidate.memory_limit_mb, 1)
        return (round(candidate.imbalance_after, 12), -headroom, candidate.host_id)

    def explain(self, candidate: Candidate) -> str:
        return (f"lowest resulting imbalance ({candidate.imbalance_after:.4f}); host load "
                f"{candidate.load_after:.3f}, {candidate.memory_free_after_mb} MB left")
