"""Mutable planning state: per-host sums and loads updated incrementally.

Planners copy a snapshot into a :class:`State` (hosts sorted by id, VMs by
id, so the result never depends on the order vCenter listed them) and then
try and apply migrations against it.  Usage sums are integers, so a state
reached by applying moves is bit-for-bit the state built from the resulting
snapshot: a re-plan sees exactly what the planner saw when it stopped.

:class:`HostTable` is the host-level half, cheap enough to rebuild for every
initial placement (it is cached per snapshot and copied); :class:`State`
adds the VMs and rules for balancing, evacuation and making room.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

from nova_vsphere_driver.drs.claims import Claim
from nova_vsphere_driver.drs.model import (
    DEFAULT_LIMITS,
    ClusterSnapshot,
    HostState,
    Limits,
    load_weights,
)
from nova_vsphere_driver.drs.rules import RuleBook

_STATE_TEXT = {
    HostState.DISCONNECTED: "disconnected",
    HostState.MAINTENANCE: "in maintenance mode",
    HostState.ENTERING_MAINTENANCE: "entering maintenance mode",
}


class HostTable:
    """Per-host capacity, usage and load, indexed by position in ``ids``."""

    def __init__(self, snapshot: ClusterSnapshot, limits: Limits = DEFAULT_LIMITS,
                 unusable: Iterable[str] = (), with_usage: bool = True) -> None:
        hosts = sorted(snapshot.hosts, key=lambda h: h.id)
        unusable = frozenset(unusable)
        self.snapshot = snapshot
        self.limits = limits
        self.hosts = hosts
        self.ids = [h.id for h in hosts]
        self.index = {hid: i for i, hid in enumerate(self.ids)}
        self.n = len(hosts)
        #: Why a host takes no VMs (None: it does).
        self.down: list[str | None] = []
        for h in hosts:
            if h.id in unusable:
                self.down.append("being evacuated")
            elif h.state is not HostState.CONNECTED:
                self.down.append(_STATE_TEXT[h.state])
            elif h.cpu_capacity_mhz <= 0 or h.memory_capacity_mb <= 0:
                self.down.append("no capacity left after reservations")
            else:
                self.down.append(None)
        self.usable = [d is None for d in self.down]
        self.usable_idx = [i for i in range(self.n) if self.usable[i]]
        self.threads = [h.threads for h in hosts]
        self.mem_cap = [h.memory_capacity_mb for h in hosts]
        self.cpu_cap = [h.cpu_capacity_mhz for h in hosts]
        self.mem_limit = [h.memory_limit_mb(limits) for h in hosts]
        self.vcpu_limit = [h.vcpu_limit(limits) for h in hosts]
        self.datastores = [h.datastores for h in hosts]
        w_cpu, w_mem = load_weights(snapshot)
        self.k_cpu = [w_cpu / c if c > 0 else 0.0 for c in self.cpu_cap]
        self.k_mem = [w_mem / m if m > 0 else 0.0 for m in self.mem_cap]
        self.mean_mem_cap = (sum(self.mem_cap[i] for i in self.usable_idx)
                             / len(self.usable_idx)) if self.usable_idx else 1.0
        if with_usage:
            usage = snapshot.usage
            self.mem_used = [usage[h].memory_committed_mb for h in self.ids]
            self.vcpu_used = [usage[h].vcpus_committed for h in self.ids]
            self.cpu_used = [usage[h].cpu_demand_mhz for h in self.ids]
            self.memd_used = [usage[h].memory_demand_mb for h in self.ids]
        else:
            self.mem_used = [0] * self.n
            self.vcpu_used = [0] * self.n
            self.cpu_used = [0] * self.n
            self.memd_used = [0] * self.n
        self.load = [0.0] * self.n
        self.mean = 0.0
        self.ssd = 0.0
        if with_usage:
            self.refresh()

    @classmethod
    def cached(cls, snapshot: ClusterSnapshot, limits: Limits = DEFAULT_LIMITS) -> HostTable:
        """A private copy of the snapshot's (memoized) host table."""
        key = ("hosttable", limits)
        table = snapshot._cache.get(key)
        if table is None:
            table = snapshot._cache[key] = cls(snapshot, limits)
        return table.copy()

    def copy(self) -> HostTable:
        new = object.__new__(type(self))
        new.__dict__.update(self.__dict__)
        for name in ("mem_used", "vcpu_used", "cpu_used", "memd_used", "load"):
            setattr(new, name, list(getattr(self, name)))
        return new

    # -- load statistics --
    def contribution(self, i: int, cpu: int, memd: int) -> float:
        """How much a VM with this demand adds to host ``i``'s normalized load."""
        return self.k_cpu[i] * cpu + self.k_mem[i] * memd

    def refresh(self, hosts: Iterable[int] | None = None) -> None:
        """Recompute loads (all, or of ``hosts``) and the imbalance statistics."""
        for i in range(self.n) if hosts is None else hosts:
            self.load[i] = self.k_cpu[i] * self.cpu_used[i] + self.k_mem[i] * self.memd_used[i]
        usable = self.usable_idx
        if not usable:
            self.mean = self.ssd = 0.0
            return
        # fsum is correctly rounded, hence independent of summation history.
        self.mean = math.fsum(self.load[i] for i in usable) / len(usable)
        self.ssd = math.fsum((self.load[i] - self.mean) ** 2 for i in usable)

    @property
    def imbalance(self) -> float:
        return math.sqrt(self.ssd / len(self.usable_idx)) if self.usable_idx else 0.0

    def imbalance_if_added(self, i: int, a: float) -> float:
        """Imbalance after adding ``a`` to the load of usable host ``i`` (O(1))."""
        n = len(self.usable_idx)
        ssd = self.ssd + 2 * a * (self.load[i] - self.mean) + a * a - a * a / n
        return math.sqrt(max(0.0, ssd) / n)

    def imbalance_if_moved(self, s: int, t: int, a_s: float, a_t: float) -> float:
        """Imbalance after moving load ``a_s`` off ``s`` that weighs ``a_t`` on ``t``."""
        n = len(self.usable_idx)
        if not n:
            return 0.0
        ssd = self.ssd
        if self.usable[s] and self.usable[t]:
            ssd -= benefit(self.load[s] - self.mean, self.mean - self.load[t], a_s, a_t, n)
        elif self.usable[t]:
            ssd += 2 * a_t * (self.load[t] - self.mean) + a_t * a_t - a_t * a_t / n
        elif self.usable[s]:
            ssd += -2 * a_s * (self.load[s] - self.mean) + a_s * a_s - a_s * a_s / n
        return math.sqrt(max(0.0, ssd) / n)

    # -- capacity --
    def size_conflict(self, i: int, memory_mb: int, vcpus: int, powered_on: bool = True,
                      datastores: frozenset[str] = frozenset(),
                      any_datastore: frozenset[str] = frozenset()) -> str | None:
        """Why host ``i`` cannot take a VM of this size now (None: it can)."""
        if self.down[i] is not None:
            return self.down[i]
        if vcpus > self.threads[i]:
            return f"{vcpus} vCPUs > {self.threads[i]} hardware threads"
        mounted = self.datastores[i]
        if mounted is not None:
            if datastores and not datastores <= mounted:
                return f"datastores not mounted: {', '.join(sorted(datastores - mounted))}"
            if any_datastore and not any_datastore & mounted:
                return "mounts none of the candidate datastores"
        if powered_on:
            free = self.mem_limit[i] - self.mem_used[i]
            if memory_mb > free:
                return f"memory: {max(free, 0)} MB free < {memory_mb} MB"
            if self.vcpu_used[i] + vcpus > self.vcpu_limit[i]:
                return (f"vCPUs: {self.vcpu_used[i]} committed + {vcpus} > limit "
                        f"{self.vcpu_limit[i]:g}")
        return None

    def over_capacity(self, i: int) -> str | None:
        if self.mem_used[i] > self.mem_limit[i]:
            return (f"over capacity: {self.mem_used[i]} MB committed > "
                    f"{self.mem_limit[i]} MB limit")
        if self.vcpu_used[i] > self.vcpu_limit[i]:
            return (f"over capacity: {self.vcpu_used[i]} vCPUs committed > "
                    f"{self.vcpu_limit[i]:g} limit")
        return None

    def memory_free(self, i: int) -> int:
        return self.mem_limit[i] - self.mem_used[i]

    def vcpus_free(self, i: int) -> float:
        return self.vcpu_limit[i] - self.vcpu_used[i]


def benefit(ds: float, dt: float, a_s: float, a_t: float, n: int) -> float:
    """Drop in the sum of squared load deviations when load moves between usable hosts.

    ``ds`` = load(source) - mean, ``dt`` = mean - load(target); the source
    loses ``a_s`` and the target gains ``a_t`` (the same VM weighs differently
    on hosts of different capacity, which also shifts the mean).
    """
    return 2 * a_s * ds + 2 * a_t * dt - a_s * a_s - a_t * a_t + (a_t - a_s) ** 2 / n


class State(HostTable):
    """A :class:`HostTable` plus the VMs, their hosts and the rules, for planning moves."""

    def __init__(self, snapshot: ClusterSnapshot, limits: Limits = DEFAULT_LIMITS,
                 claims: Iterable[Claim] = (), unusable: Iterable[str] = ()) -> None:
        super().__init__(snapshot, limits, unusable, with_usage=False)
        vms = sorted(snapshot.vms, key=lambda vm: vm.id)
        claims = sorted(claims, key=lambda c: c.instance_id)
        moving = {c.instance_id for c in claims if c.moving}
        self.vms = vms
        n_vms = len(vms)
        self.vm_ids = [vm.id for vm in vms]
        self.vm_names = [vm.name for vm in vms]
        self.vm_index: dict[str, int] = {}
        for i, vm in enumerate(vms):
            if vm.instance_uuid:
                self.vm_index.setdefault(vm.instance_uuid, i)
        for i, vm in enumerate(vms):
            self.vm_index[vm.id] = i
        index = self.index
        self.vm_host = [index[vm.host] if vm.host is not None else -1 for vm in vms]
        self.vm_cfg_mem = [vm.memory_mb for vm in vms]
        self.vm_vcpus = [vm.vcpus for vm in vms]
        self.vm_on = [vm.powered_on for vm in vms]
        self.vm_mem = [vm.memory_mb if vm.powered_on else 0 for vm in vms]
        self.vm_vcpu_c = [vm.vcpus if vm.powered_on else 0 for vm in vms]
        self.vm_cpu = [int(round(vm.cpu_demand_mhz)) if vm.powered_on else 0 for vm in vms]
        self.vm_memd = [vm.memory_demand_mb for vm in vms]
        self.vm_ds = [vm.datastores for vm in vms]
        # Movable: placed, not mid-migration, on a host vCenter can reach.
        self.vm_movable = [
            h >= 0 and vm.id not in moving
            and self.hosts[h].state is not HostState.DISCONNECTED
            for vm, h in zip(vms, self.vm_host, strict=True)]
        # Spawn claims become immovable pseudo-VMs (they count for rules by
        # instance id); migration claims only hold capacity on their target.
        for c in claims:
            h = index.get(c.host_id)
            if h is None or (not c.moving and c.instance_id in self.vm_index):
                continue
            i = len(self.vm_ids)
            if not c.moving:
                self.vm_index[c.instance_id] = i
            self.vm_ids.append(c.instance_id)
            self.vm_names.append(c.instance_id)
            self.vm_host.append(h)
            self.vm_cfg_mem.append(c.memory_mb)
            self.vm_vcpus.append(c.vcpus)
            self.vm_on.append(True)
            self.vm_mem.append(c.memory_mb)
            self.vm_vcpu_c.append(c.vcpus)
            self.vm_cpu.append(0 if c.moving else c.cpu_demand_mhz)
            self.vm_memd.append(0 if c.moving else c.memory_mb)
            self.vm_ds.append(frozenset())
            self.vm_movable.append(False)
        self.n_real_vms = n_vms
        self.on_host: list[set[int]] = [set() for _ in range(self.n)]
        for v, h in enumerate(self.vm_host):
            if h < 0:
                continue
            self.on_host[h].add(v)
            self.mem_used[h] += self.vm_mem[v]
            self.vcpu_used[h] += self.vm_vcpu_c[v]
            self.cpu_used[h] += self.vm_cpu[v]
            self.memd_used[h] += self.vm_memd[v]
        self.rules = RuleBook(snapshot, self.vm_index, index, self.vm_host)
        self.refresh()

    def vm_load(self, v: int, h: int) -> float:
        return self.k_cpu[h] * self.vm_cpu[v] + self.k_mem[h] * self.vm_memd[v]

    def vm_conflict(self, v: int, t: int, must_only: bool = False) -> str | None:
        """Why VM ``v`` cannot migrate to host ``t`` now (capacity, rules)."""
        s = self.vm_host[v]
        if t == s:
            return "already there"
        # Powered-off VMs need no free memory/vCPUs, but threads and datastores.
        reason = self.size_conflict(t, self.vm_mem[v], self.vm_vcpus[v], self.vm_on[v],
                                    self.vm_ds[v])
        if reason is None:
            reason = self.rules.conflict(v, s, t, must_only=must_only)
        return reason

    def move(self, v: int, t: int) -> None:
        """Apply a migration of VM ``v`` to host ``t``."""
        s = self.vm_host[v]
        mem, vc, cpu, memd = self.vm_mem[v], self.vm_vcpu_c[v], self.vm_cpu[v], self.vm_memd[v]
        self.on_host[s].discard(v)
        self.on_host[t].add(v)
        self.mem_used[s] -= mem
        self.vcpu_used[s] -= vc
        self.cpu_used[s] -= cpu
        self.memd_used[s] -= memd
        self.mem_used[t] += mem
        self.vcpu_used[t] += vc
        self.cpu_used[t] += cpu
        self.memd_used[t] += memd
        self.vm_host[v] = t
        self.rules.apply(v, s, t)
        self.refresh((s, t))

    def placed_real_vms(self) -> Iterable[int]:
        return (v for v in range(self.n_real_vms) if self.vm_host[v] >= 0)
