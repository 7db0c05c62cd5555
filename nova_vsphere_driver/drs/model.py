"""The cluster snapshot every DRS decision is a pure function of.

A :class:`ClusterSnapshot` is an immutable picture of one vSphere cluster:
hosts (capacity, reservations, state), VMs (host, size, demand, power
state), VM and host groups, and the cluster's rules.  ``vsphere/`` builds it
from property-collector reads; nothing here talks to vCenter.

Normalized load and imbalance
-----------------------------
VMware's published DRS design measures a host's load as the demand of its
VMs normalized by the host's capacity, per resource, and the cluster's
imbalance as the standard deviation of that normalized load over the hosts
that can run VMs.  We combine CPU and memory into one number per host::

    load_h = w_cpu * cpu_demand_h / cpu_capacity_h + w_mem * mem_demand_h / mem_capacity_h

where capacities are after the host's reservations, demands are sums over
the host's powered-on VMs (CPU demand in MHz; memory demand is the VM's
active memory, or its configured memory when active memory is unknown) and
the weights are the cluster-wide utilizations of the two resources,
normalized to sum to 1.  Why a weighted sum rather than ``max``:

* the more contended resource dominates, as in DRS: in a cluster at 80 %
  memory and 20 % CPU, memory imbalance matters four times more;
* it is linear in the VMs' demands, so the effect of one migration on the
  imbalance is an O(1) update, which keeps a balancing pass over 10,000 VMs
  well under a second (``max`` is not smooth: a move can leave one
  dimension's spread unchanged while the other gets worse);
* the weights depend only on the VMs' total demand and the usable hosts'
  capacity, which no migration changes, so a plan and a re-plan of its
  result are judged by the same yardstick (no oscillation from a shifting
  metric).

The cluster imbalance is the population standard deviation of ``load_h``
over usable (connected, not in or entering maintenance) hosts.

Capacity (hard limits) is a different question from load: a host takes a
VM only while the configured memory of its powered-on VMs stays within
``(memory - reserved) * memory_ratio`` and their vCPUs within
``threads * cpu_ratio`` (see :class:`Limits`).
"""

from __future__ import annotations

import dataclasses
import enum
import functools
import math
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pragma: no cover
    from nova_vsphere_driver.drs.moves import Move


class HostState(str, enum.Enum):
    CONNECTED = "connected"
    DISCONNECTED = "disconnected"
    MAINTENANCE = "maintenance"
    ENTERING_MAINTENANCE = "entering_maintenance"


class PowerState(str, enum.Enum):
    ON = "poweredOn"
    OFF = "poweredOff"
    SUSPENDED = "suspended"


def _coerce(obj: object, name: str, kind: type) -> None:
    """Accept plain strings/iterables in constructors of frozen dataclasses."""
    value = getattr(obj, name)
    if kind is frozenset:
        if value is not None and not isinstance(value, frozenset):
            object.__setattr__(obj, name, frozenset(value))
    elif kind is tuple:
        if not isinstance(value, tuple):
            object.__setattr__(obj, name, tuple(value))
    elif not isinstance(value, kind):
        object.__setattr__(obj, name, kind(value))


@dataclasses.dataclass(frozen=True)
class Limits:
    """Hard per-host capacity limits (overcommit ratios).

    Memory is not overcommitted by default: vSphere can page and balloon, but
    a cloud promises the flavor's memory.  vCPUs may be overcommitted up to
    ``cpu_ratio`` per hardware thread, and no VM may have more vCPUs than its
    host has threads.
    """

    memory_ratio: float = 1.0
    cpu_ratio: float = 16.0

    def __post_init__(self) -> None:
        if self.memory_ratio <= 0 or self.cpu_ratio <= 0:
            raise ValueError("overcommit ratios must be positive")


DEFAULT_LIMITS = Limits()


@dataclasses.dataclass(frozen=True)
class Host:
    """One ESXi host.  ``id`` is the managed object id (moref)."""

    id: str
    name: str = ""
    cpu_mhz_per_core: int = 2000
    cores: int = 1
    threads: int = 0  # 0: same as cores (no hyper-threading)
    memory_mb: int = 0
    reserved_cpu_mhz: int = 0
    reserved_memory_mb: int = 0
    state: HostState = HostState.CONNECTED
    #: Datastores mounted on the host; None when unknown (then any will do).
    datastores: frozenset[str] | None = None

    def __post_init__(self) -> None:
        _coerce(self, "state", HostState)
        _coerce(self, "datastores", frozenset)
        if not self.name:
            object.__setattr__(self, "name", self.id)
        if not self.threads:
            object.__setattr__(self, "threads", self.cores)

    @property
    def cpu_capacity_mhz(self) -> int:
        return max(0, self.cpu_mhz_per_core * self.cores - self.reserved_cpu_mhz)

    @property
    def memory_capacity_mb(self) -> int:
        return max(0, self.memory_mb - self.reserved_memory_mb)

    @property
    def usable(self) -> bool:
        """Whether new VMs may land here (and its load counts in the imbalance)."""
        return (self.state is HostState.CONNECTED and self.cpu_capacity_mhz > 0
                and self.memory_capacity_mb > 0)

    def memory_limit_mb(self, limits: Limits = DEFAULT_LIMITS) -> int:
        return int(self.memory_capacity_mb * limits.memory_ratio)

    def vcpu_limit(self, limits: Limits = DEFAULT_LIMITS) -> float:
        return self.threads * limits.cpu_ratio


@dataclasses.dataclass(frozen=True)
class VM:
    """One virtual machine registered in the cluster (``host`` None: not placed)."""

    id: str
    name: str = ""
    host: str | None = None
    vcpus: int = 1
    memory_mb: int = 0
    cpu_demand_mhz: float = 0.0
    #: Guest-active memory; None when unknown (configured memory is assumed).
    active_memory_mb: int | None = None
    power_state: PowerState = PowerState.ON
    instance_uuid: str | None = None
    #: Datastores holding the VM's files: a target host must mount them all.
    datastores: frozenset[str] = frozenset()

    def __post_init__(self) -> None:
        _coerce(self, "power_state", PowerState)
        _coerce(self, "datastores", frozenset)
        if not self.name:
            object.__setattr__(self, "name", self.id)

    @property
    def powered_on(self) -> bool:
        return self.power_state is PowerState.ON

    @property
    def memory_demand_mb(self) -> int:
        if not self.powered_on:
            return 0
        if self.active_memory_mb is None:
            return self.memory_mb
        return min(self.memory_mb, self.active_memory_mb)


@dataclasses.dataclass(frozen=True)
class VMGroup:
    name: str
    vms: frozenset[str]

    def __post_init__(self) -> None:
        _coerce(self, "vms", frozenset)


@dataclasses.dataclass(frozen=True)
class HostGroup:
    name: str
    hosts: frozenset[str]

    def __post_init__(self) -> None:
        _coerce(self, "hosts", frozenset)


@dataclasses.dataclass(frozen=True)
class VMVMRule:
    """Keep ``vms`` together (affinity) or on pairwise different hosts (anti-affinity).

    ``vms`` holds VM ids or instance UUIDs.  A mandatory ("must") rule is
    never broken by a plan; a "should" rule may be broken by initial
    placement when nothing else fits, but never newly broken by balancing.
    """

    name: str
    vms: frozenset[str]
    affinity: bool
    mandatory: bool = True

    def __post_init__(self) -> None:
        _coerce(self, "vms", frozenset)

    @property
    def strength(self) -> str:
        return "must" if self.mandatory else "should"

    @property
    def kind(self) -> str:
        return "affinity" if self.affinity else "anti-affinity"

    def describe(self) -> str:
        return f"{self.kind} rule '{self.name}' ({self.strength})"


@dataclasses.dataclass(frozen=True)
class VMHostRule:
    """VMs of ``vm_group`` run on (affine) or off (anti-affine) hosts of ``host_group``."""

    name: str
    vm_group: str
    host_group: str
    affine: bool = True
    mandatory: bool = True

    @property
    def strength(self) -> str:
        return "must" if self.mandatory else "should"

    def describe(self) -> str:
        where = "on" if self.affine else "off"
        return (f"VM-host rule '{self.name}' ({self.strength} run {where} "
                f"host group '{self.host_group}')")


@dataclasses.dataclass(frozen=True)
class HostUsage:
    """Sums over the VMs registered on one host."""

    memory_committed_mb: int = 0  # configured memory of powered-on VMs
    vcpus_committed: int = 0  # vCPUs of powered-on VMs
    cpu_demand_mhz: int = 0
    memory_demand_mb: int = 0
    vms: int = 0  # registered VMs, any power state
    powered_on: int = 0


@dataclasses.dataclass(frozen=True)
class ClusterSnapshot:
    """An immutable picture of a cluster.  Derived indexes are cached on first use."""

    hosts: tuple[Host, ...]
    vms: tuple[VM, ...] = ()
    vm_groups: tuple[VMGroup, ...] = ()
    host_groups: tuple[HostGroup, ...] = ()
    vm_vm_rules: tuple[VMVMRule, ...] = ()
    vm_host_rules: tuple[VMHostRule, ...] = ()
    name: str = ""

    def __post_init__(self) -> None:
        for field in ("hosts", "vms", "vm_groups", "host_groups", "vm_vm_rules",
                      "vm_host_rules"):
            _coerce(self, field, tuple)
        if len(self.host_by_id) != len(self.hosts):
            raise ValueError("duplicate host ids in snapshot")
        if len(self.vm_by_id) != len(self.vms):
            raise ValueError("duplicate VM ids in snapshot")
        for vm in self.vms:
            if vm.host is not None and vm.host not in self.host_by_id:
                raise ValueError(f"VM {vm.id} is on unknown host {vm.host}")
        vm_groups = {g.name for g in self.vm_groups}
        host_groups = {g.name for g in self.host_groups}
        for rule in self.vm_host_rules:
            if rule.vm_group not in vm_groups or rule.host_group not in host_groups:
                raise ValueError(f"{rule.describe()} names an unknown group")

    # -- indexes (cached_property writes the instance dict directly, which a
    # frozen dataclass allows) --
    @functools.cached_property
    def host_by_id(self) -> Mapping[str, Host]:
        return {h.id: h for h in self.hosts}

    @functools.cached_property
    def vm_by_id(self) -> Mapping[str, VM]:
        return {vm.id: vm for vm in self.vms}

    @functools.cached_property
    def vm_by_ref(self) -> Mapping[str, VM]:
        """VMs by id and by instance UUID (rules may name either)."""
        refs: dict[str, VM] = {}
        for vm in self.vms:
            if vm.instance_uuid:
                refs.setdefault(vm.instance_uuid, vm)
        for vm in self.vms:
            refs[vm.id] = vm
        return refs

    @functools.cached_property
    def vm_group_by_name(self) -> Mapping[str, VMGroup]:
        return {g.name: g for g in self.vm_groups}

    @functools.cached_property
    def host_group_by_name(self) -> Mapping[str, HostGroup]:
        return {g.name: g for g in self.host_groups}

    @functools.cached_property
    def usage(self) -> Mapping[str, HostUsage]:
        return _host_usage(self)

    @functools.cached_property
    def _cache(self) -> dict:
        """Per-snapshot memo for derived tables (keyed by their parameters)."""
        return {}

    def locate(self, ref: str) -> str | None:
        """The host of the VM with id or instance UUID ``ref`` (None: unknown/unplaced)."""
        vm = self.vm_by_ref.get(ref)
        return vm.host if vm is not None else None

    # -- derived snapshots --
    def with_moves(self, moves: Iterable[Move]) -> ClusterSnapshot:
        """The snapshot after applying ``moves`` in order (the plan's end state)."""
        where: dict[str, str] = {}
        for move in moves:
            if move.vm not in self.vm_by_id:
                raise ValueError(f"move of unknown VM {move.vm}")
            if move.target not in self.host_by_id:
                raise ValueError(f"move to unknown host {move.target}")
            where[move.vm] = move.target
        vms = tuple(dataclasses.replace(vm, host=where[vm.id]) if vm.id in where else vm
                    for vm in self.vms)
        return dataclasses.replace(self, vms=vms)

    def with_vms(self, vms: Iterable[VM]) -> ClusterSnapshot:
        """This snapshot with ``vms`` added (or replaced, by id)."""
        new = {vm.id: vm for vm in vms}
        kept = tuple(vm for vm in self.vms if vm.id not in new)
        return dataclasses.replace(self, vms=kept + tuple(new.values()))


def _host_usage(snapshot: ClusterSnapshot) -> dict[str, HostUsage]:
    # Plain integer sums: the same sums computed in any order are equal, so
    # decisions never depend on float summation order.
    acc = {h.id: [0, 0, 0, 0, 0, 0] for h in snapshot.hosts}
    for vm in snapshot.vms:
        if vm.host is None:
            continue
        a = acc[vm.host]
        a[4] += 1
        if vm.powered_on:
            a[0] += vm.memory_mb
            a[1] += vm.vcpus
            a[2] += int(round(vm.cpu_demand_mhz))
            a[3] += vm.memory_demand_mb
            a[5] += 1
    return {hid: HostUsage(*a) for hid, a in acc.items()}


def host_usage(snapshot: ClusterSnapshot) -> Mapping[str, HostUsage]:
    """Per-host committed memory/vCPUs and demand (cached on the snapshot)."""
    return snapshot.usage


def load_weights(snapshot: ClusterSnapshot) -> tuple[float, float]:
    """(w_cpu, w_mem): cluster-wide utilizations normalized to sum to 1.

    Demand counts VMs on every host that is not disconnected (VMs on a host
    entering maintenance will land on the others); capacity counts usable
    hosts.  Migrations change neither, so the weights are fixed for a plan.
    """
    key = ("weights",)
    cached = snapshot._cache.get(key)
    if cached is not None:
        return cached
    usage = snapshot.usage
    cpu_d = mem_d = cpu_c = mem_c = 0
    for h in snapshot.hosts:
        if h.state is not HostState.DISCONNECTED:
            cpu_d += usage[h.id].cpu_demand_mhz
            mem_d += usage[h.id].memory_demand_mb
        if h.usable:
            cpu_c += h.cpu_capacity_mhz
            mem_c += h.memory_capacity_mb
    u_cpu = cpu_d / cpu_c if cpu_c else 0.0
    u_mem = mem_d / mem_c if mem_c else 0.0
    weights = (0.5, 0.5) if u_cpu + u_mem <= 0 else (u_cpu / (u_cpu + u_mem),
                                                     u_mem / (u_cpu + u_mem))
    snapshot._cache[key] = weights
    return weights


def normalized_loads(snapshot: ClusterSnapshot) -> dict[str, float]:
    """``load_h`` (see the module docstring) of every usable host, by host id."""
    w_cpu, w_mem = load_weights(snapshot)
    usage = snapshot.usage
    return {h.id: (w_cpu * usage[h.id].cpu_demand_mhz / h.cpu_capacity_mhz
                   + w_mem * usage[h.id].memory_demand_mb / h.memory_capacity_mb)
            for h in sorted(snapshot.hosts, key=lambda h: h.id) if h.usable}


def stdev(values: Iterable[float]) -> float:
    """Population standard deviation (two-pass, for accuracy)."""
    vals = list(values)
    if not vals:
        return 0.0
    mean = math.fsum(vals) / len(vals)
    return math.sqrt(math.fsum((v - mean) ** 2 for v in vals) / len(vals))


def imbalance(snapshot: ClusterSnapshot) -> float:
    """Standard deviation of normalized load over usable hosts."""
    return stdev(normalized_loads(snapshot).values())
