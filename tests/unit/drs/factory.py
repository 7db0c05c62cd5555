"""Builders for DRS test clusters, and independent checkers of plan invariants.

The checkers recompute everything from the snapshot with plain loops; they
deliberately share no code with the planners they check.
"""

from __future__ import annotations

import random
from collections import Counter

from nova_vsphere_driver.drs import (
    VM,
    ClusterSnapshot,
    Host,
    HostGroup,
    HostState,
    Limits,
    PowerState,
    VMGroup,
    VMHostRule,
    VMVMRule,
)

GB = 1024


def host(hid: str, cores: int = 16, memory_gb: int = 64, mhz: int = 2000, **kw) -> Host:
    return Host(hid, cpu_mhz_per_core=mhz, cores=cores, threads=kw.pop("threads", cores * 2),
                memory_mb=memory_gb * GB, **kw)


def vm(vid: str, host_id: str | None, memory_gb: float = 4, vcpus: int = 2,
       cpu: float = 1000.0, **kw) -> VM:
    return VM(vid, host=host_id, vcpus=vcpus, memory_mb=int(memory_gb * GB),
              cpu_demand_mhz=cpu, **kw)


def random_cluster(seed: int, hosts: int | None = None, vms: int | None = None,
                   rules: bool = True, maintenance: bool = True,
                   fill: float = 0.7) -> ClusterSnapshot:
    """A heterogeneous, skewed cluster placed within capacity, with random rules."""
    r = random.Random(seed)
    n_hosts = hosts or r.randint(3, 10)
    host_list = [host(f"h{i:02d}", cores=r.choice([8, 16, 24]),
                      memory_gb=r.choice([64, 96, 128]),
                      reserved_memory_mb=r.choice([0, 0, 2048]))
                 for i in range(n_hosts)]
    if maintenance and n_hosts > 3 and r.random() < 0.3:
        h = host_list[-1]
        host_list[-1] = Host(h.id, h.name, h.cpu_mhz_per_core, h.cores, h.threads, h.memory_mb,
                             h.reserved_cpu_mhz, h.reserved_memory_mb,
                             HostState.ENTERING_MAINTENANCE)
    capacity = sum(h.memory_capacity_mb for h in host_list)
    free = {h.id: h.memory_capacity_mb for h in host_list}
    weights = [r.choice([1, 1, 3]) for _ in host_list]  # skew: some hosts attract VMs
    vm_list = []
    budget = capacity * fill
    i = 0
    while budget > 0 and (vms is None or i < vms):
        mem = r.choice([1, 2, 2, 4, 4, 8, 16]) * GB
        vcpus = r.choice([1, 2, 4])
        on = r.random() < 0.9
        hid = None
        for _ in range(10):
            cand = r.choices(host_list, weights)[0]
            if free[cand.id] >= mem:
                hid = cand.id
                break
        if hid is None:
            if vms is None:
                break
            i += 1
            continue
        if on:
            free[hid] -= mem
            budget -= mem
        else:
            budget -= mem / 4
        vm_list.append(VM(f"vm{i:04d}", host=hid, vcpus=vcpus, memory_mb=mem,
                          cpu_demand_mhz=r.uniform(0.05, 0.8) * vcpus * 2000,
                          active_memory_mb=int(mem * r.uniform(0.3, 1.0)),
                          power_state=PowerState.ON if on else PowerState.OFF,
                          instance_uuid=f"uuid-{i:04d}"))
        i += 1
    vm_vm_rules, vm_groups, host_groups, vm_host_rules = [], [], [], []
    if rules and len(vm_list) > 10:
        ids = [v.id for v in vm_list]
        for k in range(r.randint(1, 4)):
            members = r.sample(ids, r.randint(2, min(4, n_hosts)))
            vm_vm_rules.append(VMVMRule(f"anti{k}", frozenset(members), affinity=False,
                                        mandatory=r.random() < 0.6))
        for k in range(r.randint(0, 2)):
            members = r.sample(ids, 2)
            vm_vm_rules.append(VMVMRule(f"aff{k}", frozenset(members), affinity=True,
                                        mandatory=r.random() < 0.5))
        if r.random() < 0.6:
            hg = r.sample([h.id for h in host_list], max(1, n_hosts // 2))
            host_groups.append(HostGroup("hg0", frozenset(hg)))
            vm_groups.append(VMGroup("vg0", frozenset(r.sample(ids, min(5, len(ids))))))
            vm_host_rules.append(VMHostRule("pin0", "vg0", "hg0", affine=r.random() < 0.7,
                                            mandatory=r.random() < 0.5))
    return ClusterSnapshot(tuple(host_list), tuple(vm_list), tuple(vm_groups),
                           tuple(host_groups), tuple(vm_vm_rules), tuple(vm_host_rules))


# -- independent checkers --

def committed(snapshot: ClusterSnapshot) -> tuple[Counter, Counter]:
    mem, vcpus = Counter(), Counter()
    for v in snapshot.vms:
        if v.host is not None and v.power_state is PowerState.ON:
            mem[v.host] += v.memory_mb
            vcpus[v.host] += v.vcpus
    return mem, vcpus


def over_capacity_hosts(snapshot: ClusterSnapshot, limits: Limits = Limits()) -> set[str]:
    mem, vcpus = committed(snapshot)
    return {h.id for h in snapshot.hosts
            if mem[h.id] > int((h.memory_mb - h.reserved_memory_mb) * limits.memory_ratio)
            or vcpus[h.id] > h.threads * limits.cpu_ratio}


def rule_violations(snapshot: ClusterSnapshot, mandatory: bool | None = None) -> dict[str, int]:
    """Violation count per rule name (see drs/rules.py for the definition)."""
    where = {}
    for v in snapshot.vms:
        where[v.id] = v.host
        if v.instance_uuid:
            where.setdefault(v.instance_uuid, v.host)
    out = {}
    for rule in snapshot.vm_vm_rules:
        if mandatory is not None and rule.mandatory != mandatory:
            continue
        per_host = Counter(where[m] for m in rule.vms if where.get(m) is not None)
        if rule.affinity:
            n = sum(per_host.values()) - max(per_host.values(), default=0)
        else:
            n = sum(c - 1 for c in per_host.values() if c > 1)
        out[rule.name] = n
    groups = {g.name: g for g in snapshot.vm_groups}
    hgroups = {g.name: g for g in snapshot.host_groups}
    for rule in snapshot.vm_host_rules:
        if mandatory is not None and rule.mandatory != mandatory:
            continue
        hosts = hgroups[rule.host_group].hosts
        out[rule.name] = sum(1 for m in groups[rule.vm_group].vms
                             if where.get(m) is not None
                             and (where[m] in hosts) != rule.affine)
    return out


def check_waves(snapshot: ClusterSnapshot, waves, k: int, limits: Limits = Limits()) -> None:
    """Assert: <= k migrations per host per wave, and no host over its limits while a
    wave is in flight, counting each migrating VM on both its source and target."""
    vms = {v.id: v for v in snapshot.vms}
    hosts = {h.id: h for h in snapshot.hosts}
    where = {v.id: v.host for v in snapshot.vms}
    mem, vcpus = committed(snapshot)
    for wave in waves:
        busy = Counter()
        peak_mem, peak_vcpus = Counter(mem), Counter(vcpus)
        for m in wave:
            assert where[m.vm] == m.source, f"{m.vm} is not on {m.source}"
            busy[m.source] += 1
            busy[m.target] += 1
            if vms[m.vm].power_state is PowerState.ON:
                peak_mem[m.target] += vms[m.vm].memory_mb
                peak_vcpus[m.target] += vms[m.vm].vcpus
        assert max(busy.values(), default=0) <= k
        for hid in busy:
            h = hosts[hid]
            limit = int((h.memory_mb - h.reserved_memory_mb) * limits.memory_ratio)
            # A host already over its limit may only shed load.
            assert peak_mem[hid] <= max(limit, mem[hid]), f"{hid} memory in flight"
            assert peak_vcpus[hid] <= max(h.threads * limits.cpu_ratio, vcpus[hid])
        for m in wave:
            where[m.vm] = m.target
            if vms[m.vm].power_state is PowerState.ON:
                mem[m.source] -= vms[m.vm].memory_mb
                mem[m.target] += vms[m.vm].memory_mb
                vcpus[m.source] -= vms[m.vm].vcpus
                vcpus[m.target] += vms[m.vm].vcpus


def check_sequential(snapshot: ClusterSnapshot, moves, limits: Limits = Limits()) -> None:
    """Assert every move fits its target right after the previous moves."""
    check_waves(snapshot, [(m,) for m in moves], 1, limits)
