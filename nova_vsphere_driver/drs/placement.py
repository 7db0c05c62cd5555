"""Initial placement: which ESXi host of the cluster gets a new VM.

``place()`` is O(hosts + rule members) per call against a snapshot (the host
table is memoized on the snapshot and in-flight claims are kept as per-host
sums), so a burst of spawns against one snapshot stays cheap.  With a
:class:`~nova_vsphere_driver.drs.claims.Claims` object the decision and the
claim happen under its lock: concurrent placements never oversubscribe a
host.
"""

from __future__ import annotations

from collections.abc import Callable

from nova_vsphere_driver.drs.claims import Claims
from nova_vsphere_driver.drs.explain import summarize_rejections
from nova_vsphere_driver.drs.model import DEFAULT_LIMITS, ClusterSnapshot, Limits
from nova_vsphere_driver.drs.model import imbalance as snapshot_imbalance
from nova_vsphere_driver.drs.placement_request import (
    DEFAULT_ROOM_MOVES,
    PlacementRequest,
    PlacementResult,
)
from nova_vsphere_driver.drs.policies import Policy, resolve_policy
from nova_vsphere_driver.drs.policies.base import Candidate
from nova_vsphere_driver.drs.room import plan_room
from nova_vsphere_driver.drs.rules import HostRuleCheck, placement_rule_checks, unknown_pin
from nova_vsphere_driver.drs.state import HostTable


def estimate_cpu_demand(snapshot: ClusterSnapshot, vcpus: int) -> int:
    """vCPUs times the cluster's mean CPU demand per powered-on vCPU (0 if none run)."""
    key = ("mhz_per_vcpu",)
    per_vcpu = snapshot._cache.get(key)
    if per_vcpu is None:
        demand = sum(u.cpu_demand_mhz for u in snapshot.usage.values())
        committed = sum(u.vcpus_committed for u in snapshot.usage.values())
        per_vcpu = snapshot._cache[key] = demand / committed if committed else 0.0
    return int(round(per_vcpu * vcpus))


def request_cpu_demand(snapshot: ClusterSnapshot, request: PlacementRequest) -> int:
    if request.cpu_demand_mhz is not None:
        return int(round(request.cpu_demand_mhz))
    return estimate_cpu_demand(snapshot, request.vcpus)


def place(snapshot: ClusterSnapshot, request: PlacementRequest,
          policy: Policy | str | None = None, claims: Claims | None = None,
          limits: Limits = DEFAULT_LIMITS, allow_migrations: bool = False,
          max_moves: int = DEFAULT_ROOM_MOVES) -> PlacementResult:
    """Choose the host for ``request``; with ``claims``, also claim it atomically.

    With ``allow_migrations``, a VM that fits the cluster's free capacity but
    no single host gets a plan of up to ``max_moves`` prerequisite migrations
    (``result.moves``) and the host they free.
    """
    policy = resolve_policy(policy)
    missing = unknown_pin(snapshot, request.pins)
    if missing is not None:
        imbalance = snapshot_imbalance(snapshot)
        return PlacementResult(None, f"{request.describe()} is pinned to host group "
                               f"'{missing.host_group}', which cluster "
                               f"{snapshot.name or '(unnamed)'} does not have",
                               imbalance, imbalance)
    if claims is None:
        return _place(snapshot, request, policy, None, limits, allow_migrations, max_moves)
    with claims.lock:
        claims.sync(snapshot)
        claims.release(request.instance_id)  # a retry replaces its earlier claim
        result = _place(snapshot, request, policy, claims, limits, allow_migrations, max_moves)
        if result.ok:
            claims.claim_moves(snapshot, result.moves)
            claims.claim(request.instance_id, result.host_id, request.vcpus,
                         request.memory_mb, request_cpu_demand(snapshot, request))
        return result


def host_table(snapshot: ClusterSnapshot, claims: Claims | None,
               limits: Limits) -> HostTable:
    """The snapshot's host table with in-flight claims added (caller holds the lock)."""
    table = HostTable.cached(snapshot, limits)
    if claims is not None and len(claims):
        for hid, (mem, vcpus, cpu, memd) in claims.all_totals().items():
            i = table.index.get(hid)
            if i is not None:
                table.mem_used[i] += mem
                table.vcpu_used[i] += vcpus
                table.cpu_used[i] += cpu
                table.memd_used[i] += memd
        table.refresh()
    return table


def locator(snapshot: ClusterSnapshot, claims: Claims | None) -> Callable[[str], str | None]:
    """Where a VM (by id or instance UUID) is: in the snapshot, else its spawn claim."""
    def locate(ref: str) -> str | None:
        host = snapshot.locate(ref)
        if host is None and claims is not None:
            host = claims.location(ref)
        return host
    return locate


def rule_checks(snapshot: ClusterSnapshot, request: PlacementRequest,
                claims: Claims | None) -> dict[str, HostRuleCheck]:
    return placement_rule_checks(snapshot, request.instance_id, request.rules, request.pins,
                                 [h.id for h in snapshot.hosts], locator(snapshot, claims))


def crowded_rule(snapshot: ClusterSnapshot, request: PlacementRequest, table: HostTable,
                 locate: Callable[[str], str | None]) -> tuple[str, str] | None:
    """A must anti-affinity rule of the new VM that this cluster cannot satisfy.

    Returns (rule description, reason) when the rule's members already run
    on every usable host the VM may use (its pins considered), whatever the
    capacity: a group larger than the usable host count.  Members elsewhere
    (other clusters, not built yet) do not count.
    """
    allowed = [table.ids[i] for i in table.usable_idx
               if all(pin.allows(snapshot, table.ids[i]) for pin in request.pins)]
    if not allowed:
        return None  # "no usable host" says it better
    rules = [r.as_vm_vm_rule(request.instance_id) for r in request.rules]
    rules += [r for r in snapshot.vm_vm_rules if request.instance_id in r.vms]
    for rule in rules:
        if rule.affinity or not rule.mandatory:
            continue
        where = [locate(ref) for ref in sorted(rule.vms - {request.instance_id})]
        members = [h for h in where if h is not None]
        if set(allowed) <= set(members):
            return rule.describe(), (
                f"{request.describe()} cannot join {rule.describe()} in cluster "
                f"{snapshot.name or '(unnamed)'}: its {len(members)} other member(s) here "
                f"already run on all {len(allowed)} usable host(s) it may use; a group "
                f"larger than the usable host count cannot keep its members apart")
    return None


def _place(snapshot: ClusterSnapshot, request: PlacementRequest, policy: Policy,
           claims: Claims | None, limits: Limits, allow_migrations: bool,
           max_moves: int) -> PlacementResult:
    table = host_table(snapshot, claims, limits)
    before = table.imbalance
    crowded = crowded_rule(snapshot, request, table, locator(snapshot, claims))
    if crowded is not None:
        return PlacementResult(None, crowded[1], before, before, unsatisfiable_rule=crowded[0])
    checks = rule_checks(snapshot, request, claims)
    cpu = request_cpu_demand(snapshot, request)
    rejections: dict[str, str] = {}
    candidates: list[tuple[int, Candidate]] = []
    # Free capacity over every usable host: migrations can move room from
    # hosts the new VM may not use to one it may.
    cluster_mem = sum(max(0, table.memory_free(i)) for i in table.usable_idx)
    cluster_vcpus = sum(max(0.0, table.vcpus_free(i)) for i in table.usable_idx)
    biggest_mem = 0
    mem, vcpus = request.memory_mb, request.vcpus
    ds, any_ds = request.datastores, request.any_datastore
    mem_limit, mem_used = table.mem_limit, table.mem_used
    vcpu_limit, vcpu_used, threads = table.vcpu_limit, table.vcpu_used, table.threads
    for i, host in enumerate(table.hosts):
        # Cheap checks inline; size_conflict() only to word a rejection.
        check = checks.get(host.id)
        mounted = table.datastores[i]
        if (table.down[i] is not None or vcpus > threads[i]
                or (mounted is not None and ((ds and not ds <= mounted)
                                             or (any_ds and not any_ds & mounted)))):
            rejections[host.name] = table.size_conflict(i, mem, vcpus, False, ds, any_ds)
            continue
        if check is not None and check.must:
            rejections[host.name] = f"would break {check.must[0]}"
            continue
        free_mem = mem_limit[i] - mem_used[i]
        free_vcpus = vcpu_limit[i] - vcpu_used[i]
        if free_mem > biggest_mem:
            biggest_mem = free_mem
        if mem > free_mem or vcpus > free_vcpus:
            rejections[host.name] = table.size_conflict(i, mem, vcpus, True)
            continue
        a = table.contribution(i, cpu, mem)
        candidates.append((len(check.should) if check else 0, Candidate(
            host.id, host.name, table.imbalance_if_added(i, a), table.load[i] + a,
            free_mem - mem, mem_limit[i], free_vcpus - vcpus)))

    if candidates:
        fewest = min(n for n, _ in candidates)
        chosen = policy.choose([c for n, c in candidates if n == fewest])
        broken = checks[chosen.host_id].should if fewest else ()
        reason = (f"{chosen.host_name}: {policy.explain(chosen)} [{policy.name}]; "
                  f"{len(candidates)} of {table.n} hosts fit")
        if broken:
            reason += f"; no fitting host keeps every should rule, breaks: {'; '.join(broken)}"
        return PlacementResult(chosen.host_id, reason, before, chosen.imbalance_after,
                               chosen.host_name, rejections=rejections,
                               broken_should_rules=broken)

    fragmented = (cluster_mem >= request.memory_mb and cluster_vcpus >= request.vcpus
                  and cluster_mem > 0)
    room_reason = ""
    if allow_migrations and fragmented and max_moves > 0:
        room = plan_room(snapshot, request, policy, claims, limits, max_moves, checks, cpu)
        if room.ok:
            return room
        room_reason = room.reason
    if all(d is not None for d in table.down):
        reason = (f"no host can take {request.describe()}: all {table.n} hosts are "
                  f"disconnected or in maintenance")
    else:
        reason = f"no host can take {request.describe()}: {summarize_rejections(rejections)}"
    if fragmented:
        reason += (f". The cluster has {cluster_mem} MB free in total but at most "
                   f"{biggest_mem} MB on one host the VM may use (fragmented)")
        reason += (f"; {room_reason}" if room_reason
                   else "; making room by migration (allow_migrations) may fit it")
    return PlacementResult(None, reason, before, before, rejections=rejections,
                           fragmented=fragmented)


def make_room(snapshot: ClusterSnapshot, request: PlacementRequest,
              policy: Policy | str | None = None, claims: Claims | None = None,
              limits: Limits = DEFAULT_LIMITS,
              max_moves: int = DEFAULT_ROOM_MOVES) -> PlacementResult:
    """Place ``request``, planning prerequisite migrations if no host fits it as is.

    Same as ``place(..., allow_migrations=True)``: ``result.moves`` (empty
    when a host fits already) are in a feasible order (see :mod:`.waves`);
    with ``claims``, the new VM and the migration targets are claimed
    atomically.
    """
    return place(snapshot, request, policy, claims, limits, allow_migrations=True,
                 max_moves=max_moves)
