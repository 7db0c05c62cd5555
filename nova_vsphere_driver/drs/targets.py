"""Choosing where a VM that has to move goes (maintenance, rules, capacity, room)."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import NamedTuple

from nova_vsphere_driver.drs.policies.base import Candidate, Policy
from nova_vsphere_driver.drs.state import State


def candidate(state: State, v: int, t: int) -> Candidate:
    s = state.vm_host[v]
    a_t = state.vm_load(v, t)
    a_s = state.vm_load(v, s) if s >= 0 else 0.0
    return Candidate(
        host_id=state.ids[t], host_name=state.hosts[t].name,
        imbalance_after=state.imbalance_if_moved(s, t, a_s, a_t) if s >= 0
        else state.imbalance_if_added(t, a_t),
        load_after=state.load[t] + a_t,
        memory_free_after_mb=state.mem_limit[t] - state.mem_used[t] - state.vm_mem[v],
        memory_limit_mb=state.mem_limit[t],
        vcpus_free_after=state.vcpu_limit[t] - state.vcpu_used[t] - state.vm_vcpu_c[v])


class Target(NamedTuple):
    host: int | None  # state index of the chosen host; None: no host fits
    rejections: dict[str, str]  # host name -> why not
    breaks: str | None = None  # the should rule the chosen host breaks, if any


Check = Callable[[int, int, bool], "str | None"]


def best_target(state: State, policy: Policy, v: int, hosts: Iterable[int] | None = None,
                check: Check | None = None, soft_should: bool = False) -> Target:
    """The policy's favourite feasible host for VM ``v``, and why the others failed.

    ``check(v, t, must_only)`` replaces the default feasibility test
    (capacity and rules), e.g. to let a fix move change the rule it repairs.
    With ``soft_should``, a VM that has to move (maintenance, capacity, must
    rules) may break a should rule when no host keeps them all.
    """
    hosts = list(range(state.n) if hosts is None else hosts)
    t, rejections = _best(state, policy, v, hosts, check, False)
    if t is None and soft_should:
        t, hard = _best(state, policy, v, hosts, check, True)
        if t is None:
            return Target(None, hard)  # the hard reasons are the real blockers
        return Target(t, rejections, (check or _default_check(state))(v, t, False))
    return Target(t, rejections)


def _default_check(state: State) -> Check:
    def check(v: int, t: int, must_only: bool) -> str | None:
        return state.vm_conflict(v, t, must_only)
    return check


def _best(state: State, policy: Policy, v: int, hosts: list[int], check: Check | None,
          must_only: bool) -> tuple[int | None, dict[str, str]]:
    check = check or _default_check(state)
    rejections: dict[str, str] = {}
    cands: list[tuple[Candidate, int]] = []
    for t in hosts:
        if t == state.vm_host[v]:
            continue
        reason = check(v, t, must_only)
        if reason is None:
            cands.append((candidate(state, v, t), t))
        else:
            rejections[state.hosts[t].name] = reason
    if not cands:
        return None, rejections
    return min(cands, key=lambda ct: policy.rank_key(ct[0]))[1], rejections
