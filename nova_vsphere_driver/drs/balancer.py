"""Load balancing: an ordered list of migrations that lowers the cluster imbalance.

A pass repeats rounds of three phases until a round plans nothing:

1. mandatory moves, in this order: evacuate hosts entering maintenance,
   repair violated must rules, relieve hosts over capacity;
2. repair violated should rules (migration threshold >= 2);
3. load moves (threshold >= 2 and a policy that spreads load): while the
   imbalance exceeds the threshold's tolerance, apply the migration with
   the best benefit/cost ratio, provided the ratio clears the threshold's
   bar.  Load only ever moves to a less loaded host.

No move breaks a must rule, newly breaks a should rule, or puts a host over
capacity; each one is feasible right after the previous one (see
:mod:`.waves` for running them concurrently).

Cost/benefit.  The benefit of a move is the drop in the sum of squared
deviations of host load from the mean, ``B`` (n times the drop in variance);
its cost is the memory vMotion copies plus a fixed per-migration overhead
``MOVE_OVERHEAD_MB``, as a fraction of the mean host memory.  Moving a VM
that carries load ``a`` from a host ``g`` above the target's load gives
``B ~ 2 a g``, so requiring ``B / cost > 2 * min_gap`` reads: "a VM whose
share of load matches its share of memory moves only across a load gap of
at least ``min_gap``".  VMs carrying much load per GiB (CPU-heavy, small)
move first; big idle VMs almost never move.

Migration threshold (like vSphere's 1 = conservative ... 5 = aggressive):

=====  ==================  ==========  ============================
level  moves               min_gap     tolerance (stop at imbalance)
=====  ==================  ==========  ============================
1      mandatory only      -           -
2      + should rules,     0.20        0.10
       large imbalance
3      default             0.10        0.05
4                          0.05        0.02
5      aggressive          0.02        0.01
=====  ==================  ==========  ============================

Stability: the plan stops only when a complete round (every source and
target host considered) finds nothing to do, and every decision is a pure
function of the planning state (integer usage sums, hosts and VMs sorted by
id).  Re-planning the resulting snapshot therefore starts from the very
state the first pass stopped in and plans zero moves, unless the first pass
was cut short by ``max_moves`` (``plan.truncated``).

Speed: per-host sums are updated in O(1) per move and the effect of a
candidate move on the imbalance is an O(1) formula.  Each host keeps its
movable VMs sorted by load per unit of cost; scanning a (source, target)
pair stops as soon as the bound ``B / cost <= 2 * (load/cost) * gap`` says
no later VM can beat the best move found, and a source stops pairing with
targets once the same bound rules out every remaining target.  Each step
first searches only the busiest sources, idlest targets and best few VMs per
pair, and falls back to the exact search (a superset, so it finds whatever
the cheap one would) only when that finds nothing.
"""

from __future__ import annotations

import bisect
import dataclasses
import math
from collections.abc import Callable

from nova_vsphere_driver.drs.claims import Claims
from nova_vsphere_driver.drs.explain import summarize_rejections
from nova_vsphere_driver.drs.model import DEFAULT_LIMITS, ClusterSnapshot, HostState, Limits
from nova_vsphere_driver.drs.moves import Move, MoveKind
from nova_vsphere_driver.drs.policies import Policy, resolve_policy
from nova_vsphere_driver.drs.room import movable_off, next_to_free
from nova_vsphere_driver.drs.rules import GroupRule
from nova_vsphere_driver.drs.state import State
from nova_vsphere_driver.drs.targets import Check, Target, best_target

#: Fixed cost of one migration, as MB of memory copied: vMotion of even a tiny
#: VM costs setup, precopy rounds and a switch-over, about what copying a
#: couple of GiB takes on 10 GbE.  Keeps the planner from issuing many tiny
#: moves for crumbs of benefit.
MOVE_OVERHEAD_MB = 2048
#: Bounds of the cheap search tried before the exact one at every step.
FAST_SOURCES, FAST_TARGETS, FAST_VMS = 6, 12, 12


@dataclasses.dataclass(frozen=True)
class Threshold:
    level: int
    balance: bool  # load moves at all
    fix_should: bool
    min_gap: float
    tolerance: float


THRESHOLDS = {
    1: Threshold(1, False, False, math.inf, math.inf),
    2: Threshold(2, True, True, 0.20, 0.10),
    3: Threshold(3, True, True, 0.10, 0.05),
    4: Threshold(4, True, True, 0.05, 0.02),
    5: Threshold(5, True, True, 0.02, 0.01),
}


@dataclasses.dataclass(frozen=True)
class BalancePlan:
    """The outcome of one balancing pass."""

    moves: tuple[Move, ...]
    imbalance_before: float
    imbalance_after: float
    threshold: int
    policy: str
    #: The tolerance below which no load moves are planned.
    target_imbalance: float
    #: Stopped by ``max_moves`` (or the memory budget): the next pass may go on.
    truncated: bool = False
    #: Problems no move could fix (VMs stuck on a host entering maintenance,
    #: violated rules, hosts over capacity), with reasons.
    unresolved: tuple[str, ...] = ()

    @property
    def memory_mb(self) -> int:
        return sum(m.memory_mb for m in self.moves)

    def __len__(self) -> int:
        return len(self.moves)


def balance(snapshot: ClusterSnapshot, threshold: int = 3, max_moves: int | None = 8,
            policy: Policy | str | None = None, limits: Limits = DEFAULT_LIMITS,
            claims: Claims | None = None, max_memory_mb: int | None = None) -> BalancePlan:
    """Plan one balancing pass (see the module docstring).

    ``max_moves`` caps all moves (None: no cap); ``max_memory_mb`` caps the
    memory that load moves may copy.  In-flight ``claims`` count for
    capacity, load and rules; VMs with a migration claim stay put.
    """
    if threshold not in THRESHOLDS:
        raise ValueError(f"migration threshold must be 1..5, not {threshold!r}")
    if max_moves is not None and max_moves < 0:
        raise ValueError("max_moves must be >= 0")
    policy = resolve_policy(policy)
    active = claims.active_for(snapshot) if claims is not None else ()
    state = State(snapshot, limits, active)
    planner = _Planner(state, policy, THRESHOLDS[threshold], max_moves, max_memory_mb)
    before = state.imbalance
    planner.run()
    return BalancePlan(tuple(planner.moves), before, state.imbalance, threshold, policy.name,
                       THRESHOLDS[threshold].tolerance, planner.truncated,
                       tuple(planner.unresolved()))


class _Planner:
    def __init__(self, state: State, policy: Policy, settings: Threshold,
                 max_moves: int | None, max_memory_mb: int | None) -> None:
        self.state = state
        self.policy = policy
        self.settings = settings
        self.max_moves = max_moves
        self.memory_left = math.inf if max_memory_mb is None else max_memory_mb
        self.moves: list[Move] = []
        self.truncated = False
        self.load_moves = settings.balance and policy.balances_load
        self.min_ratio = 2 * settings.min_gap
        mean_mem = state.mean_mem_cap
        self.cost = [(m + MOVE_OVERHEAD_MB) / mean_mem for m in state.vm_cfg_mem]
        # Per-host movable VMs as (-load/cost, vm), ascending: best first.
        self.cands: list[list[tuple[float, int]]] = [[] for _ in range(state.n)]
        self.key: dict[int, tuple[float, int]] = {}
        usable = state.usable_idx
        min_cpu = min((state.cpu_cap[i] for i in usable), default=1)
        min_mem = min((state.mem_cap[i] for i in usable), default=1)
        #: Upper bound of how much more a VM weighs on another host than on h.
        self.kappa_max = [max(state.cpu_cap[h] / min_cpu, state.mem_cap[h] / min_mem)
                          for h in range(state.n)]
        self.min_vm_mem = min((m for m in state.vm_mem if m > 0), default=0)
        if self.load_moves:
            for v in state.placed_real_vms():
                self._index(v)
            for lst in self.cands:
                lst.sort()

    # -- candidate index --
    def _index(self, v: int, insort: bool = False) -> None:
        st = self.state
        h = st.vm_host[v]
        if not (st.usable[h] and st.vm_movable[v] and st.vm_on[v]):
            return
        a = st.vm_load(v, h)
        if a <= 0:
            return
        key = (-a / self.cost[v], v)
        self.key[v] = key
        if insort:
            bisect.insort(self.cands[h], key)
        else:
            self.cands[h].append(key)

    def _unindex(self, v: int, h: int) -> None:
        key = self.key.pop(v, None)
        if key is not None:
            lst = self.cands[h]
            del lst[bisect.bisect_left(lst, key)]

    # -- applying --
    def _budget_left(self) -> bool:
        if self.max_moves is not None and len(self.moves) >= self.max_moves:
            self.truncated = True
            return False
        return True

    def _apply(self, v: int, t: int, kind: MoveKind, reason: str) -> None:
        st = self.state
        s = st.vm_host[v]
        before = st.imbalance
        self._unindex(v, s)
        st.move(v, t)
        if self.load_moves:
            self._index(v, insort=True)
        self.moves.append(Move(st.vm_ids[v], st.ids[s], st.ids[t], reason, before,
                               st.imbalance, st.vm_cfg_mem[v], kind, st.vm_names[v]))

    # -- the pass --
    def run(self) -> None:
        while self._budget_left():
            made = self._mandatory()
            if self.settings.fix_should and self._budget_left():
                made += self._fix_rules(mandatory=False)
            if self.load_moves and self._budget_left():
                made += self._balance_load()
            if not made:
                break

    def _mandatory(self) -> int:
        total = 0
        while self._budget_left():
            made = self._evacuate() + self._fix_rules(mandatory=True) + self._relieve()
            total += made
            if not made:
                break
        return total

    def _evacuating_vms(self) -> list[int]:
        st = self.state
        vms = [v for h in range(st.n) if st.down[h] is not None
               and st.hosts[h].state is not HostState.DISCONNECTED
               for v in st.on_host[h] if v < st.n_real_vms]
        return sorted(vms, key=lambda v: (-st.vm_mem[v], -st.vm_cfg_mem[v], st.vm_ids[v]))

    def _evacuate(self) -> int:
        st = self.state
        made = 0
        for v in self._evacuating_vms():
            if not st.vm_movable[v] or not self._budget_left():
                continue
            target = best_target(st, self.policy, v, st.usable_idx, soft_should=True)
            if target.host is not None:
                h = st.vm_host[v]
                self._apply(v, target.host, MoveKind.MAINTENANCE,
                            f"evacuate {st.hosts[h].name} ({st.down[h]})" + _breaks(target))
                made += 1
        return made

    def _fix_check(self, rule: object, fixes: Callable[[int, int], bool]) -> Check:
        st = self.state

        def check(v: int, t: int, must_only: bool) -> str | None:
            if not fixes(v, t):
                return "does not repair the rule"
            s = st.vm_host[v]
            return (st.size_conflict(t, st.vm_mem[v], st.vm_vcpus[v], st.vm_on[v], st.vm_ds[v])
                    or st.rules.conflict(v, s, t, ignore=rule, must_only=must_only))
        return check

    def _fix_rules(self, mandatory: bool) -> int:
        st = self.state
        made = 0
        kind = MoveKind.MUST_RULE if mandatory else MoveKind.SHOULD_RULE
        for g in st.rules.group_rules:
            if g.rule.mandatory != mandatory:
                continue
            while g.violations() > 0 and self._budget_left():
                fix = self._group_fix(g)
                if fix is None:
                    break
                v, target = fix
                self._apply(v, target.host, kind, f"repair {g.rule.describe()}: "
                            f"{self._where(g)}" + _breaks(target))
                made += 1
        for hr, members in st.rules.host_rules:
            if hr.rule.mandatory != mandatory:
                continue
            for v in sorted(members, key=lambda v: (st.vm_mem[v], st.vm_ids[v])):
                h = st.vm_host[v]
                if (h < 0 or not hr.violated(h) or not st.vm_movable[v]
                        or st.down[h] is not None or not self._budget_left()):
                    continue
                target = best_target(st, self.policy, v, st.usable_idx, self._fix_check(
                    hr.rule, lambda _v, t, hr=hr: not hr.violated(t)), soft_should=mandatory)
                if target.host is not None:
                    self._apply(v, target.host, kind, f"repair {hr.rule.describe()}: "
                                f"{st.vm_names[v]} was on {st.hosts[h].name}"
                                + _breaks(target))
                    made += 1
        return made

    def _where(self, g: GroupRule) -> str:
        st = self.state
        return ", ".join(f"{st.hosts[h].name} had {c}" for h, c in sorted(g.counts.items()))

    def _group_fix(self, g: GroupRule) -> tuple[int, Target] | None:
        """The smallest member move that lowers ``g``'s violations (keeping should
        rules if any such move exists; a must rule may break them otherwise)."""
        st = self.state
        movers = [v for v in g.members if st.vm_host[v] >= 0 and st.vm_movable[v]
                  and st.down[st.vm_host[v]] is None]
        movers.sort(key=lambda v: (st.vm_mem[v], st.vm_ids[v]))
        check = self._fix_check(g.rule, lambda v, t: g.delta(st.vm_host[v], t) < 0)
        for soft in (False, True) if g.rule.mandatory else (False,):
            for v in movers:
                target = best_target(st, self.policy, v, st.usable_idx, check, soft)
                if target.host is not None:
                    return v, target
        return None

    def _relieve(self) -> int:
        st = self.state
        made = 0
        for h in st.usable_idx:
            cands = None
            while st.over_capacity(h) and self._budget_left():
                why = st.over_capacity(h)
                if cands is None:
                    cands = movable_off(st, h, frozenset())
                others = [t for t in st.usable_idx if t != h]
                pick = next_to_free(st, self.policy, h, st.mem_used[h] - st.mem_limit[h],
                                    st.vcpu_used[h] - st.vcpu_limit[h], cands, others)
                if pick is None:
                    break
                v, t = pick
                cands.remove(v)
                self._apply(v, t, MoveKind.CAPACITY, f"{st.hosts[h].name} {why}")
                made += 1
        return made

    # -- load moves --
    def _balance_load(self) -> int:
        """Apply best-ratio load moves while the imbalance exceeds the tolerance.

        Each step first tries a cheap, bounded search (the busiest sources,
        the idlest targets, the best few VMs per pair); when that finds
        nothing, an exact scan of every pair decides, which is also what a
        re-plan does first, so "nothing left" means the same in both.
        """
        st = self.state
        made = 0
        while st.imbalance > self.settings.tolerance and self._budget_left():
            best = self._best_move(FAST_SOURCES, FAST_TARGETS, FAST_VMS) or self._best_move()
            if best is None:
                break
            ratio, v, s, t = best
            self._apply_load_move(v, s, t, ratio)
            made += 1
        return made

    def _apply_load_move(self, v: int, s: int, t: int, ratio: float) -> None:
        st = self.state
        ls, lt = st.load[s], st.load[t]
        imb = st.imbalance
        self._apply(v, t, MoveKind.BALANCE, "")
        self.memory_left -= st.vm_cfg_mem[v]
        self.moves[-1] = dataclasses.replace(self.moves[-1], reason=(
            f"balance: {st.hosts[s].name} load {ls:.3f} -> {st.load[s]:.3f}, "
            f"{st.hosts[t].name} load {lt:.3f} -> {st.load[t]:.3f}; imbalance "
            f"{imb:.4f} -> {st.imbalance:.4f} for {st.vm_cfg_mem[v]} MB "
            f"(benefit/cost {ratio:.3f} > {self.min_ratio:.3f})"))

    def _best_move(self, sources: int | None = None, targets: int | None = None,
                   vms: int | None = None) -> tuple[float, int, int, int] | None:
        """The best (ratio, vm, source, target), or None.

        Exact over every pair unless limited to the ``sources`` busiest and
        ``targets`` idlest hosts and the ``vms`` best candidates per pair.
        """
        st = self.state
        tgts = sorted(st.usable_idx, key=lambda i: (st.load[i], i))
        srcs = tgts[::-1]
        if sources is not None:
            srcs, tgts = srcs[:sources], tgts[:targets]
        best = None
        for s in srcs:
            found = self._scan(s, tgts, best[0] if best else self.min_ratio, vms)
            if found is not None:
                best = (found[0], found[1], s, found[2])
        return best

    def _scan(self, s: int, tgts: list[int], floor: float,
              vms: int | None = None) -> tuple[float, int, int] | None:
        """The best (ratio, vm, target) from source ``s`` with ratio > ``floor``.

        ``tgts`` in ascending load order.  Pruned by upper bounds: the
        benefit of moving load ``a`` is at most ``2 a (gap_s + kappa gap_t)``,
        so a VM's ratio is at most ``2 e (gap_s + kappa gap_t)`` with ``e``
        its load per cost (VMs are sorted by ``e``), and the source stops
        pairing once ``kappa_max`` and its best ``e`` rule out the remaining
        (busier) targets.
        """
        st = self.state
        lst = self.cands[s]
        n = len(st.usable_idx)
        if not lst or n < 2:
            return None
        load, mu = st.load, st.mean
        ds = load[s] - mu
        ds_pos = max(ds, 0.0)
        e_max = -lst[0][0]
        kmax = self.kappa_max[s]
        kc_s, km_s = st.k_cpu[s], st.k_mem[s]
        vm_mem, vm_vc, vm_vcpus = st.vm_mem, st.vm_vcpu_c, st.vm_vcpus
        cpu, memd, cost, cfg = st.vm_cpu, st.vm_memd, self.cost, st.vm_cfg_mem
        cpu_cap, mem_cap = st.cpu_cap, st.mem_cap
        rules = st.rules
        budget = self.memory_left
        best = None
        best_ratio = floor
        for t in tgts:
            dt = mu - load[t]
            if load[t] >= load[s] or 2 * e_max * (ds_pos + kmax * max(dt, 0.0)) <= best_ratio:
                break  # targets only get busier from here
            free_mem = st.mem_limit[t] - st.mem_used[t]
            if free_mem < self.min_vm_mem:
                continue
            kap = max(cpu_cap[s] / cpu_cap[t], mem_cap[s] / mem_cap[t])
            bound = 2 * (ds_pos + kap * max(dt, 0.0))
            cut = best_ratio / bound
            free_vc = st.vcpu_limit[t] - st.vcpu_used[t]
            threads, mounted = st.threads[t], st.datastores[t]
            kc_t, km_t = st.k_cpu[t], st.k_mem[t]
            for neg_e, v in (lst if vms is None else lst[:vms]):
                if -neg_e <= cut:
                    break
                if vm_mem[v] > free_mem or vm_vc[v] > free_vc or vm_vcpus[v] > threads:
                    continue
                a_s = kc_s * cpu[v] + km_s * memd[v]
                a_t = kc_t * cpu[v] + km_t * memd[v]
                ratio = (2 * a_s * ds + 2 * a_t * dt - a_s * a_s - a_t * a_t
                         + (a_t - a_s) ** 2 / n) / cost[v]
                if ratio <= best_ratio:
                    continue
                if cfg[v] > budget:
                    self.truncated = True
                    continue
                if mounted is not None and st.vm_ds[v] and not st.vm_ds[v] <= mounted:
                    continue
                if rules.constrained(v) and rules.conflict(v, s, t) is not None:
                    continue
                best_ratio, best = ratio, (ratio, v, t)
                cut = best_ratio / bound
        return best

    # -- what is left --
    def unresolved(self) -> list[str]:
        st = self.state
        out = []
        for v in self._evacuating_vms():
            h = st.vm_host[v]
            if not st.vm_movable[v]:
                out.append(f"{st.vm_names[v]} cannot leave {st.hosts[h].name}: "
                           f"{'migrating' if h >= 0 else 'not movable'}")
                continue
            rejections = best_target(st, self.policy, v, st.usable_idx).rejections
            out.append(f"{st.vm_names[v]} cannot leave {st.hosts[h].name} "
                       f"({st.down[h]}): {summarize_rejections(rejections)}")
        for g in st.rules.group_rules:
            if g.violations() and (g.rule.mandatory or self.settings.fix_should):
                out.append(f"{g.rule.describe()} still violated: {self._where(g)}")
        for hr, bad in st.rules.host_rule_violators(st.vm_host):
            if hr.rule.mandatory or self.settings.fix_should:
                out.append(f"{hr.rule.describe()} still violated by "
                           f"{', '.join(st.vm_names[v] for v in bad)}")
        for h in st.usable_idx:
            why = st.over_capacity(h)
            if why:
                out.append(f"{st.hosts[h].name} {why}")
        return out


def _breaks(target: Target) -> str:
    return f"; no host keeps every should rule: {target.breaks}" if target.breaks else ""


__all__ = ["BalancePlan", "Threshold", "THRESHOLDS", "MOVE_OVERHEAD_MB", "balance"]
