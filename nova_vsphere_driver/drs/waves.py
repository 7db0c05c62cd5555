"""Running a plan's migrations concurrently without ever overcommitting a host.

A plan is an ordered list of moves, each feasible right after the previous
one.  :func:`schedule_waves` groups them into waves that can run at the same
time.  While a VM migrates it counts against BOTH its source and its target
(vMotion holds memory on both until switch-over), so within a wave:

* each host has at most ``max_concurrent_per_host`` migrations in flight
  (as source or target; vSphere's limit is 8 per host on 10 GbE networks,
  4 on 1 GbE, see :mod:`.costs`);
* each target fits its committed memory/vCPUs plus every VM migrating into
  it in this wave, with the VMs leaving it still counted (and the capacity
  in-flight claims hold);
* no VM migrates onto a host that a member of one of its must
  anti-affinity rules is leaving or entering in the same wave (the pair
  would share the host while both are in flight).

Order is kept per host: once a move must wait, later moves touching either
of its hosts (or the same VM) wait too.  The moves that do run touch only
hosts no waiting move touches, so they commute with the waiting ones and
the state after each wave is one the sequential plan passes through (up to
such swaps).  Hence the first waiting move can always start in the next
wave, and scheduling never deadlocks on a sequentially feasible plan.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence

from nova_vsphere_driver.drs.claims import Claim
from nova_vsphere_driver.drs.costs import DEFAULT_MAX_CONCURRENT_PER_HOST
from nova_vsphere_driver.drs.model import DEFAULT_LIMITS, ClusterSnapshot, Limits
from nova_vsphere_driver.drs.moves import Move


class InfeasiblePlanError(ValueError):
    """A move cannot start even alone: the plan was not sequentially feasible."""


def schedule_waves(snapshot: ClusterSnapshot, moves: Sequence[Move],
                   limits: Limits = DEFAULT_LIMITS,
                   max_concurrent_per_host: int = DEFAULT_MAX_CONCURRENT_PER_HOST,
                   claims: Iterable[Claim] = ()) -> list[tuple[Move, ...]]:
    """Group ``moves`` (in plan order) into waves (see the module docstring).

    ``claims`` are in-flight claims (new VMs, migration targets) whose
    capacity the snapshot does not show yet.
    """
    if max_concurrent_per_host < 1:
        raise ValueError("max_concurrent_per_host must be >= 1")
    host_by_id = snapshot.host_by_id
    mem = {h: u.memory_committed_mb for h, u in snapshot.usage.items()}
    vcpus = {h: u.vcpus_committed for h, u in snapshot.usage.items()}
    for claim in claims:
        # As in planning: a spawn claim the snapshot already shows is spent.
        if claim.host_id in mem and (claim.moving or claim.instance_id not in
                                     snapshot.vm_by_ref):
            mem[claim.host_id] += claim.memory_mb
            vcpus[claim.host_id] += claim.vcpus
    mem_limit = {h.id: h.memory_limit_mb(limits) for h in snapshot.hosts}
    vcpu_limit = {h.id: h.vcpu_limit(limits) for h in snapshot.hosts}
    where = {vm.id: vm.host for vm in snapshot.vms}
    rivals: dict[str, set[str]] = {}  # vm -> other members of its must anti-affinity rules
    for rule in snapshot.vm_vm_rules:
        if rule.mandatory and not rule.affinity:
            ids = {snapshot.vm_by_ref[r].id for r in rule.vms if r in snapshot.vm_by_ref}
            for vm in ids:
                rivals.setdefault(vm, set()).update(ids - {vm})

    remaining = list(moves)
    waves: list[tuple[Move, ...]] = []
    while remaining:
        wave: list[Move] = []
        waiting: list[Move] = []
        busy: Counter[str] = Counter()
        in_mem: Counter[str] = Counter()
        in_vcpus: Counter[str] = Counter()
        arriving: dict[str, set[str]] = {}
        leaving: dict[str, set[str]] = {}
        blocked_hosts: set[str] = set()
        blocked_vms: set[str] = set()
        for m in remaining:
            why = _blocker(m, snapshot, where, busy, in_mem, in_vcpus, arriving, leaving,
                           blocked_hosts, blocked_vms, mem, vcpus, mem_limit, vcpu_limit,
                           rivals, max_concurrent_per_host, host_by_id)
            if why is None:
                vm = snapshot.vm_by_id[m.vm]
                wave.append(m)
                busy[m.source] += 1
                busy[m.target] += 1
                if vm.powered_on:
                    in_mem[m.target] += vm.memory_mb
                    in_vcpus[m.target] += vm.vcpus
                arriving.setdefault(m.target, set()).add(m.vm)
                leaving.setdefault(m.source, set()).add(m.vm)
            else:
                if not wave and not waiting:
                    raise InfeasiblePlanError(f"move {m} cannot start: {why}")
                waiting.append(m)
                blocked_hosts.update((m.source, m.target))
                blocked_vms.add(m.vm)
        for m in wave:  # the wave completes: VMs leave their sources
            vm = snapshot.vm_by_id[m.vm]
            where[m.vm] = m.target
            if vm.powered_on:
                mem[m.source] -= vm.memory_mb
                vcpus[m.source] -= vm.vcpus
                mem[m.target] += vm.memory_mb
                vcpus[m.target] += vm.vcpus
        waves.append(tuple(wave))
        remaining = waiting
    return waves


def _blocker(m, snapshot, where, busy, in_mem, in_vcpus, arriving, leaving, blocked_hosts,
             blocked_vms, mem, vcpus, mem_limit, vcpu_limit, rivals, k,
             host_by_id) -> str | None:
    """Why move ``m`` cannot join the current wave (None: it can)."""
    if m.vm not in snapshot.vm_by_id or m.target not in host_by_id:
        return "unknown VM or host"
    if where[m.vm] != m.source:
        return f"the VM is on {where[m.vm]}, not {m.source}"
    if m.vm in blocked_vms or m.source in blocked_hosts or m.target in blocked_hosts:
        return "an earlier move on the same host or VM is waiting"
    if busy[m.source] >= k or busy[m.target] >= k:
        return f"{k} migrations already in flight on a host"
    vm = snapshot.vm_by_id[m.vm]
    if vm.powered_on:
        if mem[m.target] + in_mem[m.target] + vm.memory_mb > mem_limit[m.target]:
            return f"{m.target} lacks memory while migrations are in flight"
        if vcpus[m.target] + in_vcpus[m.target] + vm.vcpus > vcpu_limit[m.target]:
            return f"{m.target} lacks vCPUs while migrations are in flight"
    for rival in rivals.get(m.vm, ()):
        if rival in arriving.get(m.target, ()) or rival in leaving.get(m.target, ()):
            return f"must anti-affinity: {rival} is migrating on {m.target}"
        if rival in arriving.get(m.source, ()):
            return f"must anti-affinity: {rival} is arriving on {m.source}"
    return None
