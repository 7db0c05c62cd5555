"""Consolidate VMs onto as few hosts as possible (e.g. to power hosts down)."""

from __future__ import annotations

from nova_vsphere_driver.drs.policies.base import Candidate, Policy


class PackedPolicy(Policy):
    """Best fit: the host that memory fits most tightly; balancing never spreads.

    Memory is the resource that fragments (vCPUs are overcommitted), so the
    key is the memory left after placing, then vCPUs left, then the busier
    host.  Balancing with this policy only repairs rule violations,
    maintenance and overcommitted hosts.
    """

    name = "packed"
    balances_load = False

    def rank_key(self, candidate: Candidate) -> tuple:
        return (candidate.memory_free_after_mb, candidate.vcpus_free_after,
                -candidate.load_after, candidate.host_id)

    def explain(self, candidate: Candidate) -> str:
        return f"best fit: leaves {candidate.memory_free_after_mb} MB free"
