"""The policy interface: how to rank hosts, and whether balancing spreads load."""

from __future__ import annotations

import abc
from typing import ClassVar, NamedTuple


class Candidate(NamedTuple):
    """A host that can take a VM (capacity and must rules already checked)."""

    host_id: str
    host_name: str
    imbalance_after: float  # cluster imbalance with the VM there
    load_after: float  # the host's normalized load with the VM there
    memory_free_after_mb: int  # memory limit minus committed memory, VM included
    memory_limit_mb: int
    vcpus_free_after: float


class Policy(abc.ABC):
    """A stevedore plugin (namespace ``nova_vsphere_driver.drs.policies``).

    Policies are stateless: one instance may serve every thread.
    """

    #: The entry point name.
    name: ClassVar[str] = ""
    #: Whether balancing moves VMs to even out load (beyond the mandatory
    #: moves: rules, maintenance, overcommitted hosts).
    balances_load: ClassVar[bool] = True

    @abc.abstractmethod
    def rank_key(self, candidate: Candidate) -> tuple:
        """Sort key over candidate hosts: the smallest wins.

        Used for initial placement and for choosing where a VM that must move
        (maintenance, rules, capacity) goes.  End the key with the host id so
        that ties are deterministic.
        """

    @abc.abstractmethod
    def explain(self, candidate: Candidate) -> str:
        """Why ``candidate`` won, in a few words."""

    def choose(self, candidates: list[Candidate]) -> Candidate:
        return min(candidates, key=self.rank_key)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r}>"
