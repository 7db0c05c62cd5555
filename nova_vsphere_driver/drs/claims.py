"""In-flight claims: capacity promised to VMs that a snapshot does not show yet.

Between choosing a host and the next inventory read, a new VM is invisible
in snapshots.  A claim makes it count against its host (capacity, load and
rules) so that concurrent placements from many threads never oversubscribe
a host.  A claim ends when

* a later snapshot shows the VM (a new VM anywhere; a migrating VM on the
  claimed target host),
* it is released explicitly (spawn failed, instance deleted), or
* it expires after ``ttl`` seconds (a lost update must not leak capacity
  forever).

``place()`` holds :attr:`Claims.lock` across sync, decision and claim, so
the check-then-claim is atomic.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Callable, Iterable

from nova_vsphere_driver.drs.model import ClusterSnapshot


@dataclasses.dataclass(frozen=True)
class Claim:
    instance_id: str
    host_id: str
    vcpus: int
    memory_mb: int
    cpu_demand_mhz: int = 0
    #: True for the target side of a migration (the VM still counts on its
    #: source in snapshots until vMotion completes).
    moving: bool = False
    created: float = 0.0


class Claims:
    """Thread-safe registry of in-flight claims, keyed by instance id."""

    def __init__(self, ttl: float = 600.0, clock: Callable[[], float] = time.monotonic) -> None:
        if ttl <= 0:
            raise ValueError("claim ttl must be positive")
        self.ttl = ttl
        self._clock = clock
        #: Reentrant: place() holds it while calling helpers that take it too.
        self.lock = threading.RLock()
        self._claims: dict[str, Claim] = {}  # insertion order == creation order
        self._totals: dict[str, list[int]] = {}  # host -> [mem, vcpus, cpu, mem demand]
        self._synced: ClusterSnapshot | None = None

    # -- bookkeeping --
    def _add_totals(self, claim: Claim, sign: int) -> None:
        t = self._totals.setdefault(claim.host_id, [0, 0, 0, 0])
        t[0] += sign * claim.memory_mb
        t[1] += sign * claim.vcpus
        if not claim.moving:  # migration targets count for capacity only
            t[2] += sign * claim.cpu_demand_mhz
            t[3] += sign * claim.memory_mb
        if not any(t):
            del self._totals[claim.host_id]

    def claim(self, instance_id: str, host_id: str, vcpus: int, memory_mb: int,
              cpu_demand_mhz: int = 0, moving: bool = False) -> Claim:
        """Record a claim (replacing any earlier claim of the same instance)."""
        with self.lock:
            self.release(instance_id)
            claim = Claim(instance_id, host_id, int(vcpus), int(memory_mb),
                          int(round(cpu_demand_mhz)), moving, self._clock())
            self._claims[instance_id] = claim
            self._add_totals(claim, 1)
            return claim

    def release(self, instance_id: str) -> Claim | None:
        with self.lock:
            claim = self._claims.pop(instance_id, None)
            if claim is not None:
                self._add_totals(claim, -1)
            return claim

    def expire(self) -> int:
        """Drop claims older than the TTL; returns how many."""
        with self.lock:
            deadline = self._clock() - self.ttl
            dropped = 0
            # Oldest first: stop at the first claim still alive.
            while self._claims:
                claim = next(iter(self._claims.values()))
                if claim.created > deadline:
                    break
                self.release(claim.instance_id)
                dropped += 1
            return dropped

    def reconcile(self, snapshot: ClusterSnapshot) -> int:
        """Drop the claims ``snapshot`` makes redundant; returns how many."""
        with self.lock:
            done = []
            for claim in self._claims.values():
                vm = snapshot.vm_by_ref.get(claim.instance_id)
                if claim.moving:
                    if vm is None or vm.host == claim.host_id:
                        done.append(claim.instance_id)
                elif vm is not None and vm.host is not None:
                    done.append(claim.instance_id)
            for instance_id in done:
                self.release(instance_id)
            return len(done)

    def sync(self, snapshot: ClusterSnapshot) -> None:
        """Expire, and reconcile against ``snapshot`` unless already done for it.

        Reconciling is O(claims); doing it once per snapshot keeps a burst of
        placements against one snapshot linear overall.
        """
        with self.lock:
            self.expire()
            if self._synced is not snapshot:
                self.reconcile(snapshot)
                self._synced = snapshot

    # -- queries (callers wanting a consistent view hold ``lock``) --
    def active(self) -> tuple[Claim, ...]:
        with self.lock:
            return tuple(self._claims.values())

    def active_for(self, snapshot: ClusterSnapshot) -> tuple[Claim, ...]:
        """The claims still in flight once synced with ``snapshot`` (one atomic step)."""
        with self.lock:
            self.sync(snapshot)
            return self.active()

    def totals(self, host_id: str) -> tuple[int, int, int, int]:
        """(memory MB, vCPUs, CPU demand MHz, memory demand MB) claimed on a host."""
        with self.lock:
            t = self._totals.get(host_id)
            return (t[0], t[1], t[2], t[3]) if t else (0, 0, 0, 0)

    def all_totals(self) -> dict[str, tuple[int, int, int, int]]:
        """:meth:`totals` of every host with claims."""
        with self.lock:
            return {h: (t[0], t[1], t[2], t[3]) for h, t in self._totals.items()}

    def location(self, instance_id: str) -> str | None:
        """The claimed host of a new (not migrating) instance."""
        claim = self._claims.get(instance_id)
        return claim.host_id if claim is not None and not claim.moving else None

    def get(self, instance_id: str) -> Claim | None:
        return self._claims.get(instance_id)

    def __contains__(self, instance_id: object) -> bool:
        return instance_id in self._claims

    def __len__(self) -> int:
        return len(self._claims)

    def claim_moves(self, snapshot: ClusterSnapshot, moves: Iterable) -> None:
        """Claim the targets of migrations about to be issued.

        Until a snapshot shows a VM on its target, it counts on both hosts:
        nothing else may take the room it is moving into.
        """
        with self.lock:
            for move in moves:
                vm = snapshot.vm_by_id[move.vm]
                if vm.powered_on:
                    self.claim(vm.id, move.target, vm.vcpus, vm.memory_mb, moving=True)
