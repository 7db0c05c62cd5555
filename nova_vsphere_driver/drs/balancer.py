"""Load balancing: an ordered list of migrations that lowers the cluster imbalance.

A pass repeats rounds of three phases until a round plans nothing:

1. mandatory moves, in this order: evacuate hosts entering maintenance,
   repair violated must rules, relieve hosts over capacity;
2. repair violated should rules (migration threshold >= 2);
3. load moves (threshold >= 2 and a policy that spreads load): while the
   imbalance exceeds the threshold's tolerance, apply the migration with
   the most benefit per unit of cost among those whose benefit clears the
   threshold's minimum; when no single migration does, the best exchange
   of two VMs between a busy and an idle host that has no room for the
   busy VM until a lighter VM of its own leaves (a swap).  Load only ever
   moves to a less loaded host.

No move breaks a must rule, newly breaks a should rule, or puts a host over
capacity; each one is feasible right after the previous one.  The plan
carries its waves (:mod:`.waves`, under the per-host vMotion limit) and
their expected duration (:mod:`.costs`).

Benefit and cost.  The benefit ``B`` of a move is the drop in the sum of
squared deviations of host load from the mean (n times the drop in
variance).  Its cost is a fixed weight per migration plus the memory it
copies (:class:`~.costs.MoveCost`: by default one vMotion weighs like
256 GiB, so the planner prefers few moves with a high benefit, large busy
VMs from the hottest hosts first, and picks a smaller VM only when it does
nearly as well).  As in VMware's DRS (Gulati et al., "VMware Distributed
Resource Management: Design, Implementation, and Lessons Learned", VMware
Technical Journal, 2012), moves are taken greedily by goodness, and a move
whose benefit is too small is not worth a vMotion at all: moving load
``a`` from source ``s`` to target ``t`` on equal hosts gives
``B = 2 a (load_s - load_t - a)``, and a move qualifies only if
``B >= 2 a min_gap``: its *net gap* ``B / 2a`` (the load gap between the
two hosts minus the load moved; on unequal hosts ``a`` is the load it
leaves behind on the source) is at least ``min_gap``.  This minimum does
not depend on the VM's size, so a plan stops when the remaining gaps are
small, not when the VMs are.

Tolerance.  VMware derives the tolerance from the migration threshold and
the cluster size (KB 1007485: a recommendation's priority is
``6 - ceil(imbalance / 0.1 * sqrt(hosts))``, so threshold ``L`` acts while
``imbalance > 0.1 (5 - L) / sqrt(hosts)``): the tolerance bounds
``sqrt(sum of squared deviations)``, the load misplaced in the whole
cluster, rather than the standard deviation.  We keep that shape with a
quarter of VMware's constant: VMware's own (0.2 / sqrt(hosts) at the
default threshold, 0.071 on 8 hosts) would leave small clusters less
balanced than a greedy "max-min gap under 10 points" balancer leaves them.

=====  ==================  ========  ===================================
level  moves               min_gap   tolerance (stop at imbalance)
=====  ==================  ========  ===================================
1      mandatory only      -         -
2      + should rules,     0.10      0.075 / sqrt(hosts)
       large imbalance
3      default             0.05      0.05 / sqrt(hosts)  (0.018 on 8)
4                          0.025     0.025 / sqrt(hosts)
5      aggressive          0.01      0 (min_gap alone stops the pass)
=====  ==================  ========  ===================================

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
the cheap one would) only when that finds nothing.  Swaps are searched
among the busiest sources, the idlest targets and the best VMs of each
source that do not fit the target as is.
"""

from __future__ import annotations

import bisect
import dataclasses
import math
from collections.abc import Callable

from nova_vsphere_driver.drs.claims import Claims
from nova_vsphere_driver.drs.costs import (
    DEFAULT_MOVE_COST,
    DEFAULT_TIMING,
    GIB,
    MoveCost,
    VMotionTiming,
)
from nova_vsphere_driver.drs.explain import summarize_rejections
from nova_vsphere_driver.drs.model import DEFAULT_LIMITS, ClusterSnapshot, HostState, Limits
from nova_vsphere_driver.drs.moves import Move, MoveKind
from nova_vsphere_driver.drs.policies import Policy, resolve_policy
from nova_vsphere_driver.drs.room import movable_off, next_to_free
from nova_vsphere_driver.drs.rules import GroupRule
from nova_vsphere_driver.drs.state import State
from nova_vsphere_driver.drs.targets import Check, Target, best_target
from nova_vsphere_driver.drs.waves import schedule_waves

#: Bounds of the cheap search tried before the exact one at every step.
FAST_SOURCES, FAST_TARGETS, FAST_VMS = 6, 12, 12
#: Bounds of the swap search: sources, targets, VMs per source.
SWAP_SOURCES, SWAP_TARGETS, SWAP_VMS = 4, 6, 8


@dataclasses.dataclass(frozen=True)
class Threshold:
    level: int
    balance: bool  # load moves at all
    fix_should: bool
    #: The least net gap (load gap minus load moved) a load move may have.
    min_gap: float
    #: Tolerance on sqrt(sum of squared load deviations) = imbalance * sqrt(hosts).
    deviation: float

    def tolerance(self, hosts: int) -> float:
        """The imbalance below which no load moves are planned on ``hosts`` hosts."""
        if not self.balance:
            return math.inf
        return self.deviation / math.sqrt(hosts) if hosts > 0 else 0.0


THRESHOLDS = {
    1: Threshold(1, False, False, math.inf, math.inf),
    2: Threshold(2, True, True, 0.10, 0.075),
    3: Threshold(3, True, True, 0.05, 0.05),
    4: Threshold(4, True, True, 0.025, 0.025),
    5: Threshold(5, True, True, 0.01, 0.0),
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
    #: The moves grouped into waves that may run concurrently (:mod:`.waves`).
    waves: tuple[tuple[Move, ...], ...] = ()
    #: Expected wall-clock seconds to run the waves (:class:`~.costs.VMotionTiming`).
    expected_seconds: float = 0.0
    #: The per-host concurrent vMotion limit the waves respect.
    max_concurrent_per_host: int = DEFAULT_TIMING.max_concurrent_per_host

    @property
    def memory_mb(self) -> int:
        return sum(m.memory_mb for m in self.moves)

    def __len__(self) -> int:
        return len(self.moves)


def balance(snapshot: ClusterSnapshot, threshold: int = 3, max_moves: int | None = 8,
            policy: Policy | str | None = None, limits: Limits = DEFAULT_LIMITS,
            claims: Claims | None = None, max_memory_mb: int | None = None,
            cost: MoveCost = DEFAULT_MOVE_COST,
            timing: VMotionTiming = DEFAULT_TIMING) -> BalancePlan:
    """Plan one balancing pass (see the module docstring).

    ``max_moves`` caps all moves (None: no cap); ``max_memory_mb`` caps the
    memory that load moves may copy.  In-flight ``claims`` count for
    capacity, load and rules; VMs with a migration claim stay put.
    ``cost`` weighs the load moves; ``timing`` gives the per-host vMotion
    limit of the plan's waves and the model of their duration.
    """
    if threshold not in THRESHOLDS:
        raise ValueError(f"migration threshold must be 1..5, not {threshold!r}")
    if max_moves is not None and max_moves < 0:
        raise ValueError("max_moves must be >= 0")
    policy = resolve_policy(policy)
    active = claims.active_for(snapshot) if claims is not None else ()
    state = State(snapshot, limits, active)
    settings = THRESHOLDS[threshold]
    planner = _Planner(state, policy, settings, max_moves, max_memory_mb, cost)
    before = state.imbalance
    planner.run()
    moves = tuple(planner.moves)
    waves = tuple(schedule_waves(snapshot, moves, limits, timing.max_concurrent_per_host,
                                 active))
    return BalancePlan(moves, before, state.imbalance, threshold, policy.name,
                       planner.tolerance, planner.truncated, tuple(planner.unresolved()),
                       waves, timing.pass_seconds(waves), timing.max_concurrent_per_host)


class _Planner:
    def __init__(self, state: State, policy: Policy, settings: Threshold,
                 max_moves: int | None, max_memory_mb: int | None, cost: MoveCost) -> None:
        self.state = state
        self.policy = policy
        self.settings = settings
        self.max_moves = max_moves
        self.memory_left = math.inf if max_memory_mb is None else max_memory_mb
        self.moves: list[Move] = []
        self.truncated = False
        self.load_moves = settings.balance and policy.balances_load
        self.tolerance = settings.tolerance(len(state.usable_idx))
        #: A load move qualifies when benefit >= gap_floor * (load it leaves behind).
        self.gap_floor = 2 * settings.min_gap
        #: Each VM's move weight, in GiB-equivalents.
        self.cost = [cost.weight(m) / GIB for m in state.vm_cfg_mem]
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
        """Apply the best qualifying load moves while the imbalance exceeds the tolerance.

        Each step first tries a cheap, bounded search (the busiest sources,
        the idlest targets, the best few VMs per pair); when that finds
        nothing, an exact scan of every pair decides, which is also what a
        re-plan does first, so "nothing left" means the same in both.  When
        no single move qualifies, a swap may.
        """
        st = self.state
        made = 0
        while st.imbalance > self.tolerance and self._budget_left():
            best = self._best_move(FAST_SOURCES, FAST_TARGETS, FAST_VMS) or self._best_move()
            if best is not None:
                ratio, v, s, t = best
                self._apply_load_move(v, s, t, ratio)
                made += 1
                continue
            swap = self._best_swap()
            if swap is None:
                break
            made += self._apply_swap(*swap)
        return made

    def _describe(self, s: int, t: int, ls: float, lt: float, imb: float) -> str:
        st = self.state
        return (f"{st.hosts[s].name} load {ls:.3f} -> {st.load[s]:.3f}, "
                f"{st.hosts[t].name} load {lt:.3f} -> {st.load[t]:.3f}; imbalance "
                f"{imb:.4f} -> {st.imbalance:.4f}")

    def _apply_load_move(self, v: int, s: int, t: int, ratio: float) -> None:
        st = self.state
        ls, lt = st.load[s], st.load[t]
        imb = st.imbalance
        a_s = st.vm_load(v, s)
        benefit = ratio * self.cost[v]
        self._apply(v, t, MoveKind.BALANCE, "")
        self.memory_left -= st.vm_cfg_mem[v]
        self.moves[-1] = dataclasses.replace(self.moves[-1], reason=(
            f"balance: {self._describe(s, t, ls, lt, imb)} for {st.vm_cfg_mem[v]} MB "
            f"(benefit/cost {benefit:.4f}/{self.cost[v]:.0f} GiB-eq; net gap "
            f"{benefit / (2 * a_s):.3f} >= {self.settings.min_gap:g})"))

    def _best_move(self, sources: int | None = None, targets: int | None = None,
                   vms: int | None = None) -> tuple[float, int, int, int] | None:
        """The best qualifying (ratio, vm, source, target), or None.

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
            found = self._scan(s, tgts, best[0] if best else 0.0, vms)
            if found is not None:
                best = (found[0], found[1], s, found[2])
        return best

    def _scan(self, s: int, tgts: list[int], floor: float,
              vms: int | None = None) -> tuple[float, int, int] | None:
        """The best qualifying (ratio, vm, target) from source ``s`` with ratio > ``floor``.

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
        gap_floor = self.gap_floor
        best = None
        best_ratio = floor
        min_gap = self.settings.min_gap
        for t in tgts:
            dt = mu - load[t]
            reach = ds_pos + kmax * max(dt, 0.0)
            # B <= 2 a_s (ds+ + kappa dt+): below min_gap nothing qualifies.
            if load[t] >= load[s] or reach < min_gap or 2 * e_max * reach <= best_ratio:
                break  # targets only get busier from here
            free_mem = st.mem_limit[t] - st.mem_used[t]
            if free_mem < self.min_vm_mem:
                continue
            kap = max(cpu_cap[s] / cpu_cap[t], mem_cap[s] / mem_cap[t])
            reach = ds_pos + kap * max(dt, 0.0)
            if reach < min_gap or 2 * e_max * reach <= best_ratio:
                continue  # this target cannot beat the best (or the minimum)
            bound = 2 * reach
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
                b = (2 * a_s * ds + 2 * a_t * dt - a_s * a_s - a_t * a_t
                     + (a_t - a_s) ** 2 / n)
                ratio = b / cost[v]
                if ratio <= best_ratio or b < gap_floor * a_s:
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

    # -- swaps --
    def _best_swap(self) -> tuple[int, int, int, int, tuple[int, int, int, int]] | None:
        """The best qualifying swap (vm, source, partner, target, order), or None.

        For when one move cannot help: ``vm`` would lower the imbalance on an
        idle ``target`` that has no room for it until ``partner`` (a VM of
        the target, lighter on the load) leaves for the busy ``source``.  A
        swap is two vMotions: its benefit must clear the minimum for the
        load of both VMs, and it is weighed by the sum of both moves' costs.
        """
        st = self.state
        if self.max_moves is not None and len(self.moves) + 2 > self.max_moves:
            self.truncated = True  # a swap might still help: the next pass may go on
            return None
        n = len(st.usable_idx)
        order = sorted(st.usable_idx, key=lambda i: (st.load[i], i))
        movable: dict[int, list[int]] = {}  # target -> its VMs that could go back
        cands = []
        for s in order[::-1][:SWAP_SOURCES]:
            for t in order[:SWAP_TARGETS]:
                if st.load[t] >= st.load[s]:
                    break
                if t not in movable:
                    movable[t] = [u for u in sorted(st.on_host[t]) if u < st.n_real_vms
                                  and st.vm_movable[u] and st.vm_on[u]]
                cands.extend(self._swaps(s, t, n, movable[t]))
        cands.sort(key=lambda c: (-c[0], c[1:]))
        for _, v, s, u, t in cands:
            order = self._swap_order(v, s, u, t)
            if order is not None:
                return v, s, u, t, order
        return None

    def _swaps(self, s: int, t: int, n: int,
               movable: list[int]) -> list[tuple[float, int, int, int, int]]:
        """Qualifying swaps between ``s`` and ``t`` as (ratio, v, s, u, t); capacity only.

        ``v`` does not fit ``t`` now; ``u`` (one of ``movable``, on ``t``) fits
        ``s`` now and frees enough of ``t`` for ``v`` (the partner moves first).
        """
        st = self.state
        if st.load[s] - st.load[t] < self.settings.min_gap:
            return []  # B <= 2 net (load_s - load_t): nothing can clear the minimum
        free_s = st.mem_limit[s] - st.mem_used[s]
        free_t = st.mem_limit[t] - st.mem_used[t]
        vfree_s = st.vcpu_limit[s] - st.vcpu_used[s]
        vfree_t = st.vcpu_limit[t] - st.vcpu_used[t]
        mem, vc, cfg = st.vm_mem, st.vm_vcpu_c, st.vm_cfg_mem
        budget = self.memory_left
        blocked = [v for _, v in self.cands[s][:SWAP_VMS]
                   if (mem[v] > free_t or vc[v] > vfree_t) and st.vm_vcpus[v] <= st.threads[t]
                   and cfg[v] <= budget]
        if not blocked:
            return []
        mu, cost, floor = st.mean, self.cost, self.gap_floor
        ds, dt = st.load[s] - mu, st.load[t] - mu
        kc_s, km_s, kc_t, km_t = st.k_cpu[s], st.k_mem[s], st.k_cpu[t], st.k_mem[t]
        cpu, memd = st.vm_cpu, st.vm_memd
        threads_s = st.threads[s]
        partners = [u for u in movable if mem[u] <= free_s and vc[u] <= vfree_s
                    and st.vm_vcpus[u] <= threads_s]
        out = []
        for v in blocked:
            av_s = kc_s * cpu[v] + km_s * memd[v]
            av_t = kc_t * cpu[v] + km_t * memd[v]
            need_mem, need_vc = mem[v] - free_t, vc[v] - vfree_t
            for u in partners:
                if mem[u] < need_mem or vc[u] < need_vc or cfg[v] + cfg[u] > budget:
                    continue
                au_s = kc_s * cpu[u] + km_s * memd[u]
                au_t = kc_t * cpu[u] + km_t * memd[u]
                if au_s >= av_s:
                    continue
                d_s, d_t = au_s - av_s, av_t - au_t
                b = -(2 * d_s * ds + 2 * d_t * dt + d_s * d_s + d_t * d_t
                      - (d_s + d_t) ** 2 / n)
                # Two vMotions: the load each one carries must earn its keep.
                if b < floor * (av_s + au_t):
                    continue
                out.append((b / (cost[v] + cost[u]), v, s, u, t))
        return out

    def _swap_order(self, v: int, s: int, u: int, t: int) -> tuple[int, int, int, int] | None:
        """(partner, source, vm, target) if the partner can go first and then the
        VM, keeping capacity and rules at each step; else None."""
        st = self.state
        if st.vm_conflict(u, s) is not None:
            return None
        st.move(u, s)
        ok = st.vm_conflict(v, t) is None
        st.move(u, t)
        return (u, s, v, t) if ok else None

    def _apply_swap(self, v: int, s: int, u: int, t: int,
                    order: tuple[int, int, int, int]) -> int:
        st = self.state
        ls, lt = st.load[s], st.load[t]
        imb = st.imbalance
        first, f_to, second, s_to = order
        for w, to in ((first, f_to), (second, s_to)):
            other = u if w == v else v
            self._apply(w, to, MoveKind.BALANCE, f"swap with {st.vm_names[other]}")
            self.memory_left -= st.vm_cfg_mem[w]
        why = (f"balance by swapping {st.vm_names[v]} ({st.vm_cfg_mem[v]} MB) for "
               f"{st.vm_names[u]} ({st.vm_cfg_mem[u]} MB): {self._describe(s, t, ls, lt, imb)}"
               f" (no single move qualifies)")
        for i in (-2, -1):
            self.moves[i] = dataclasses.replace(self.moves[i], reason=why)
        return 2

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


__all__ = ["BalancePlan", "Threshold", "THRESHOLDS", "balance"]
