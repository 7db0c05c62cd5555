"""Maintenance evacuation: the migrations that empty one or more hosts.

Every VM registered on the hosts moves, powered-off ones included (they are
registered there and would otherwise block maintenance mode).  VMs are
placed hardest first (largest memory first, as in first-fit decreasing) on
the policy's favourite host that has room and keeps every rule.  A VM that
fits nowhere may get up to ``room_moves`` migrations among the remaining
hosts that make room for it.  What still cannot move is listed with the
reason in :attr:`EvacuationPlan.unplaceable`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping

from nova_vsphere_driver.drs.claims import Claims
from nova_vsphere_driver.drs.costs import DEFAULT_TIMING, VMotionTiming
from nova_vsphere_driver.drs.explain import summarize_rejections
from nova_vsphere_driver.drs.model import DEFAULT_LIMITS, ClusterSnapshot, HostState, Limits
from nova_vsphere_driver.drs.moves import Move, MoveKind
from nova_vsphere_driver.drs.policies import Policy, resolve_policy
from nova_vsphere_driver.drs.room import free_host
from nova_vsphere_driver.drs.state import State
from nova_vsphere_driver.drs.targets import best_target
from nova_vsphere_driver.drs.waves import schedule_waves


@dataclasses.dataclass(frozen=True)
class EvacuationPlan:
    hosts: tuple[str, ...]
    moves: tuple[Move, ...]
    #: VM id -> why it cannot leave (empty: the hosts can be emptied).
    unplaceable: Mapping[str, str]
    imbalance_before: float
    imbalance_after: float
    #: The moves grouped into waves that may run concurrently (:mod:`.waves`).
    waves: tuple[tuple[Move, ...], ...] = ()
    #: Expected wall-clock seconds to run the waves (:class:`~.costs.VMotionTiming`).
    expected_seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return not self.unplaceable

    @property
    def memory_mb(self) -> int:
        return sum(m.memory_mb for m in self.moves)

    def raise_if_incomplete(self) -> None:
        if self.unplaceable:
            raise EvacuationError(self)


class EvacuationError(Exception):
    """Some VMs cannot leave the hosts; ``plan.unplaceable`` says which and why."""

    def __init__(self, plan: EvacuationPlan) -> None:
        self.plan = plan
        detail = "; ".join(f"{vm}: {why}" for vm, why in sorted(plan.unplaceable.items()))
        super().__init__(f"cannot evacuate {', '.join(plan.hosts)}: "
                         f"{len(plan.unplaceable)} VM(s) have nowhere to go: {detail}")


def evacuate(snapshot: ClusterSnapshot, hosts: str | Iterable[str],
             policy: Policy | str | None = None, limits: Limits = DEFAULT_LIMITS,
             claims: Claims | None = None, room_moves: int = 2,
             timing: VMotionTiming = DEFAULT_TIMING) -> EvacuationPlan:
    """Plan the migrations that empty ``hosts`` (ids); nothing lands on any of them.

    ``timing`` gives the per-host vMotion limit of the plan's waves and the
    model of their duration.
    """
    hosts = (hosts,) if isinstance(hosts, str) else tuple(hosts)
    for h in hosts:
        if h not in snapshot.host_by_id:
            raise ValueError(f"unknown host {h}")
    policy = resolve_policy(policy)
    active = claims.active_for(snapshot) if claims is not None else ()
    state = State(snapshot, limits, active, unusable=hosts)
    before = state.imbalance
    moves: list[Move] = []
    unplaceable: dict[str, str] = {}

    def apply(v: int, t: int, kind: MoveKind, reason: str) -> None:
        s = state.vm_host[v]
        imb = state.imbalance
        state.move(v, t)
        moves.append(Move(state.vm_ids[v], state.ids[s], state.ids[t], reason, imb,
                          state.imbalance, state.vm_cfg_mem[v], kind, state.vm_names[v]))

    leaving = sorted((v for h in hosts for v in state.on_host[state.index[h]]
                      if v < state.n_real_vms),
                     key=lambda v: (-state.vm_mem[v], -state.vm_cfg_mem[v], state.vm_ids[v]))
    for v in leaving:
        h = state.vm_host[v]
        name = state.hosts[h].name
        if state.hosts[h].state is HostState.DISCONNECTED:
            unplaceable[state.vm_ids[v]] = f"{name} is disconnected: its VMs cannot migrate"
            continue
        if not state.vm_movable[v]:
            unplaceable[state.vm_ids[v]] = "already migrating"
            continue
        target = best_target(state, policy, v, state.usable_idx, soft_should=True)
        if target.host is not None:
            reason = f"evacuate {name} for maintenance"
            if target.breaks:
                reason += f"; no host keeps every should rule: {target.breaks}"
            apply(v, target.host, MoveKind.MAINTENANCE, reason)
            continue
        rejections = target.rejections
        room = _make_room_for(state, policy, v, room_moves)
        if room is None:
            unplaceable[state.vm_ids[v]] = (f"{state.vm_names[v]} ({state.vm_cfg_mem[v]} MB, "
                                            f"{state.vm_vcpus[v]} vCPUs) fits no host: "
                                            f"{summarize_rejections(rejections)}")
            continue
        t, plan = room
        for u, target in plan:
            apply(u, target, MoveKind.ROOM,
                  f"make room on {state.hosts[t].name} for {state.vm_names[v]} leaving {name}")
        apply(v, t, MoveKind.MAINTENANCE, f"evacuate {name} for maintenance")
    waves = tuple(schedule_waves(snapshot, moves, limits, timing.max_concurrent_per_host,
                                 active))
    return EvacuationPlan(hosts, tuple(moves), unplaceable, before, state.imbalance, waves,
                          timing.pass_seconds(waves))


def _make_room_for(state: State, policy: Policy, v: int,
                   max_moves: int) -> tuple[int, list[tuple[int, int]]] | None:
    """The cheapest (host, migrations) that lets VM ``v`` in, keeping rules."""
    if max_moves <= 0:
        return None
    best = None
    s = state.vm_host[v]
    # Its rule-mates stay put, so the rules judged below still hold afterwards.
    mates = {v}
    for ri in state.rules.by_vm.get(v, ()):
        mates.update(state.rules.group_rules[ri].members)
    for t in state.usable_idx:
        static = state.size_conflict(t, state.vm_mem[v], state.vm_vcpus[v], False,
                                     state.vm_ds[v])
        if static is not None or state.rules.conflict(v, s, t) is not None:
            continue
        plan = free_host(state, policy, t, state.vm_mem[v] - state.memory_free(t),
                         state.vm_vcpu_c[v] - state.vcpus_free(t), max_moves,
                         frozenset(mates))
        if plan is None:
            continue
        key = (sum(state.vm_cfg_mem[u] for u, _ in plan), len(plan), state.ids[t])
        if best is None or key < best[0]:
            best = (key, t, plan)
    return None if best is None else (best[1], best[2])
