"""Making room: migrations that free one host for a VM that fits nowhere as is.

Memory fragments: a cluster can have 100 GB free in total and no host with
32 GB.  For such a VM we look, host by host, for the cheapest set of at most
``max_moves`` migrations off that host (to other hosts with room, keeping
every rule) after which it fits, and pick the host whose plan moves the
least memory.

Selection on one host ("cover, else largest"): if one VM is at least the
remaining deficit, move the smallest such VM that has somewhere to go;
otherwise move the largest VM that has somewhere to go, and repeat.  This
moves few VMs without overshooting much, and it never does worse than pure
largest-first, which is what :func:`max_unit` assumes: every size that
:func:`max_unit` reports is one :func:`make_room` can make room for (VMs
named by the new VM's own rules aside: those stay put).
"""

from __future__ import annotations

import dataclasses
import heapq
import math
from collections.abc import Callable, Iterable

from nova_vsphere_driver.drs.claims import Claims
from nova_vsphere_driver.drs.model import DEFAULT_LIMITS, ClusterSnapshot, Limits
from nova_vsphere_driver.drs.moves import Move, MoveKind
from nova_vsphere_driver.drs.placement_request import (
    DEFAULT_ROOM_MOVES,
    PlacementRequest,
    PlacementResult,
)
from nova_vsphere_driver.drs.policies import Policy, resolve_policy
from nova_vsphere_driver.drs.rules import HostPin, HostRuleCheck, unknown_pin
from nova_vsphere_driver.drs.state import State
from nova_vsphere_driver.drs.targets import best_target


@dataclasses.dataclass(frozen=True)
class MaxUnit:
    """The largest VM one host can take, with and without making room.

    Memory and vCPUs are maximized separately (placement's ``max_unit`` is
    per resource class); ``*_host`` names the host achieving each.
    """

    memory_mb: int
    vcpus: int
    memory_host: str | None
    vcpus_host: str | None
    memory_mb_without_moves: int
    vcpus_without_moves: int
    #: Which hosts counted, or why none did.
    reason: str = ""


def plan_room(snapshot: ClusterSnapshot, request: PlacementRequest, policy: Policy,
              claims: Claims | None, limits: Limits, max_moves: int,
              checks: dict[str, HostRuleCheck], cpu_demand: int) -> PlacementResult:
    """The migrations freeing one host for ``request`` (``place()`` calls this
    under the claims lock when no host fits as is)."""
    state = State(snapshot, limits, claims.active() if claims is not None else ())
    before = state.imbalance
    protected = _rule_members(snapshot, request, state)
    best = None
    for h in state.usable_idx:
        host = state.hosts[h]
        check = checks.get(host.id)
        if check is not None and check.must:
            continue
        if state.size_conflict(h, request.memory_mb, request.vcpus, False,
                               request.datastores, request.any_datastore) is not None:
            continue
        plan = free_host(state, policy, h, request.memory_mb - state.memory_free(h),
                         request.vcpus - state.vcpus_free(h), max_moves, protected)
        if plan is None:
            continue
        key = (len(check.should) if check else 0, sum(state.vm_cfg_mem[v] for v, _ in plan),
               len(plan), host.id)
        if best is None or key < best[0]:
            best = (key, h, plan)
    if best is None:
        return PlacementResult(
            None, f"no host can be freed for {request.describe()} with at most "
            f"{max_moves} migrations", before, before, fragmented=True)

    _, h, plan = best
    host = state.hosts[h]
    need = (f"for {request.name or request.instance_id} (needs {request.memory_mb} MB, "
            f"{state.memory_free(h)} MB free)")
    moves = []
    for v, t in plan:
        imb = state.imbalance
        s = state.vm_host[v]
        state.move(v, t)
        moves.append(Move(state.vm_ids[v], state.ids[s], state.ids[t],
                          f"make room on {host.name} {need}", imb, state.imbalance,
                          state.vm_cfg_mem[v], MoveKind.ROOM, state.vm_names[v]))
    after = state.imbalance_if_added(h, state.contribution(h, cpu_demand, request.memory_mb))
    check = checks.get(host.id)
    broken = check.should if check is not None else ()
    reason = (f"{host.name}: fits after {len(moves)} migration(s) moving "
              f"{sum(m.memory_mb for m in moves)} MB off it (cheapest host to free)")
    if broken:
        reason += f"; breaks: {'; '.join(broken)}"
    return PlacementResult(host.id, reason, before, after, host.name, moves=tuple(moves),
                           broken_should_rules=broken, fragmented=True)


def _rule_members(snapshot: ClusterSnapshot, request: PlacementRequest,
                  state: State) -> frozenset[int]:
    """VMs sharing a rule with the new VM: moving them could break its rules."""
    refs: set[str] = set()
    for rule in request.rules:
        refs |= rule.vms
    for rule in snapshot.vm_vm_rules:
        if request.instance_id in rule.vms:
            refs |= rule.vms
    return frozenset(state.vm_index[r] for r in refs if r in state.vm_index)


def movable_off(state: State, h: int, protected: frozenset[int]) -> list[int]:
    """Powered-on VMs that may leave host ``h``, largest first."""
    return sorted((v for v in state.on_host[h]
                   if state.vm_movable[v] and state.vm_on[v] and v not in protected),
                  key=lambda v: (-state.vm_mem[v], -state.vm_vcpu_c[v], state.vm_ids[v]))


def _target(state: State, policy: Policy, v: int, others: list[int]) -> int | None:
    if state.vm_mem[v] > max((state.memory_free(t) for t in others), default=-1):
        return None  # cheap pre-check: no other host has that much free
    return best_target(state, policy, v, others).host


def next_to_free(state: State, policy: Policy, h: int, mem_deficit: float,
                 vcpu_deficit: float, cands: list[int],
                 others: list[int]) -> tuple[int, int] | None:
    """The next (vm, target) to move off host ``h``: cover the deficit, else largest.

    ``cands`` are the movable VMs of ``h``, largest first.  A deficit <= 0
    in both resources means "largest first" (nothing to cover).
    """
    if mem_deficit > 0 or vcpu_deficit > 0:
        covering = [v for v in cands if state.vm_mem[v] >= mem_deficit
                    and state.vm_vcpu_c[v] >= vcpu_deficit]
        for v in reversed(covering):  # smallest covering VM first
            t = _target(state, policy, v, others)
            if t is not None:
                return v, t
    for v in cands:
        t = _target(state, policy, v, others)
        if t is not None:
            return v, t
    return None


def free_host(state: State, policy: Policy, h: int, mem_deficit: float, vcpu_deficit: float,
              max_moves: int, protected: frozenset[int] = frozenset(),
              exhaust: bool = False) -> list[tuple[int, int]] | None:
    """Migrations (vm, target) off host ``h`` covering the deficits, or None.

    ``state`` is left as it was.  With ``exhaust`` it moves largest-first
    until ``max_moves`` (what :func:`max_unit` measures) and always returns
    the list.
    """
    others = [t for t in state.usable_idx if t != h]
    cands = movable_off(state, h, protected)
    applied: list[tuple[int, int, int]] = []
    try:
        while exhaust or mem_deficit > 0 or vcpu_deficit > 0:
            if len(applied) >= max_moves:
                break
            chosen = next_to_free(state, policy, h, 0 if exhaust else mem_deficit,
                                  0 if exhaust else vcpu_deficit, cands, others)
            if chosen is None:
                break
            v, t = chosen
            applied.append((v, state.vm_host[v], t))
            state.move(v, t)
            cands.remove(v)
            mem_deficit -= state.vm_mem[v]
            vcpu_deficit -= state.vm_vcpu_c[v]
        if not exhaust and (mem_deficit > 0 or vcpu_deficit > 0):
            return None
        return [(v, t) for v, _, t in applied]
    finally:
        for v, s, _ in reversed(applied):
            state.move(v, s)


def max_unit(snapshot: ClusterSnapshot, policy: Policy | str | None = None,
             limits: Limits = DEFAULT_LIMITS, claims: Claims | None = None,
             max_moves: int = DEFAULT_ROOM_MOVES, pins: Iterable[HostPin] = ()) -> MaxUnit:
    """The largest VM (memory MB, vCPUs) one host could take after making room.

    What the driver should report as placement ``max_unit``: never more than
    one host can really take, so placement does not pick a cluster where
    the flavor fits nowhere.  ``pins`` are the must VM-host rules every new
    VM of the cluster honours: only hosts they allow count (VMs moved aside
    to make room may still go anywhere their own rules allow), so a flavor
    whose only fitting host is pinned out is not advertised.  Every size
    reported is one :func:`~.placement.make_room` can make room for with a
    request carrying the same pins.

    Not every host is searched: a host's free capacity plus its largest
    movable VMs bounds what it can take, and hosts whose bound cannot beat
    the best found are skipped. The answer -- sizes and hosts, ties going to
    the first host in the snapshot -- is the one searching every host gives;
    in a large cluster with room to spare one search or a few settle it.
    """
    policy = resolve_policy(policy)
    pins = tuple(pins)
    state = State(snapshot, limits, claims.active_for(snapshot) if claims is not None else ())
    missing = unknown_pin(snapshot, pins)
    allowed = [] if missing is not None else [
        h for h in state.usable_idx if all(p.allows(snapshot, state.ids[h]) for p in pins)]
    bounds = {h: _host_bounds(state, h, max_moves) for h in allowed}
    base_mem = max([0, *(b.mem_low for b in bounds.values())])
    base_vcpus = max([0, *(b.vcpus_low for b in bounds.values())])
    known: dict[int, tuple[int, int]] = {}

    def exact(h: int) -> tuple[int, int]:
        """(memory, vCPUs) host ``h`` can take after the largest-first moves."""
        if h not in known:
            plan = free_host(state, policy, h, 0, 0, max_moves, exhaust=True)
            known[h] = (state.memory_free(h) + sum(state.vm_mem[v] for v, _ in plan),
                        min(state.threads[h], math.floor(
                            state.vcpus_free(h) + sum(state.vm_vcpu_c[v] for v, _ in plan))))
        return known[h]

    position = {h: i for i, h in enumerate(allowed)}
    mem_h = _best_host(allowed, position, lambda h: (bounds[h].mem_low, bounds[h].mem_high),
                       lambda h: exact(h)[0])
    vcpus_h = _best_host(allowed, position,
                         lambda h: (bounds[h].vcpus_low, bounds[h].vcpus_high),
                         lambda h: exact(h)[1])
    best_mem, mem_host = (mem_h[0], state.ids[mem_h[1]]) if mem_h else (0, None)
    best_vcpus, vcpus_host = (vcpus_h[0], state.ids[vcpus_h[1]]) if vcpus_h else (0, None)
    if missing is not None:
        reason = f"{missing.describe()}: cluster {snapshot.name or '(unnamed)'} has no such group"
    elif not state.usable_idx:
        reason = "no usable host (all disconnected, in maintenance or without capacity)"
    elif not allowed:
        reason = (f"none of the {len(state.usable_idx)} usable hosts is allowed by "
                  f"{'; '.join(p.describe() for p in pins)}")
    else:
        reason = (f"{len(allowed)} of {len(state.usable_idx)} usable hosts allowed"
                  + (f" by {'; '.join(p.describe() for p in pins)}" if pins else ""))
    return MaxUnit(best_mem, best_vcpus, mem_host, vcpus_host, base_mem, base_vcpus, reason)


@dataclasses.dataclass(frozen=True)
class _HostBounds:
    """What host ``h`` can take: without moves (low) and at most (high).

    The high bound assumes its ``max_moves`` largest movable VMs all find a
    target, which is the most largest-first moves can free; equal bounds
    need no search.
    """

    mem_low: int
    mem_high: int
    vcpus_low: int
    vcpus_high: int


def _host_bounds(state: State, h: int, max_moves: int) -> _HostBounds:
    free_mem, free_vcpus = state.memory_free(h), state.vcpus_free(h)
    mem = vcpus = 0
    if max_moves:
        movable = [v for v in state.on_host[h] if state.vm_movable[v] and state.vm_on[v]]
        mem = sum(heapq.nlargest(max_moves, (state.vm_mem[v] for v in movable)))
        vcpus = sum(heapq.nlargest(max_moves, (state.vm_vcpu_c[v] for v in movable)))
    threads = state.threads[h]
    return _HostBounds(free_mem, free_mem + mem, min(threads, math.floor(free_vcpus)),
                       min(threads, math.floor(free_vcpus + vcpus)))


def _best_host(hosts: list[int], position: dict[int, int],
               bounds: Callable[[int], tuple[int, int]],
               value: Callable[[int], int]) -> tuple[int, int] | None:
    """(value, host) of the first host in ``hosts`` order with the largest
    positive value, or None: what evaluating every host would give.

    Hosts are visited by decreasing upper bound, and the search stops at the
    first whose bound cannot beat the best so far (a tie goes to the host
    earlier in ``hosts``); a host whose bounds agree is not searched.
    """
    best: tuple[int, int] = (0, 1)  # (value, -position): only a positive value wins
    best_host = None
    for h in sorted(hosts, key=lambda h: (-bounds(h)[1], position[h])):
        low, high = bounds(h)
        if (high, -position[h]) < best:
            break
        found = low if low == high else value(h)
        if (found, -position[h]) > best:
            best, best_host = (found, -position[h]), h
    return (best[0], best_host) if best_host is not None else None
