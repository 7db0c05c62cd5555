"""The driver's DRS: host placement, balancing and evacuation of managed clusters.

It turns cluster states read from vCenter into DRS snapshots, asks the pure
``drs`` module for decisions, and carries out the resulting moves as
vMotions. In-flight claims (one registry per cluster) make concurrent
spawns and moves see each other before vCenter does.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Callable

from oslo_log import log as logging

from nova_vsphere_driver import drs
from nova_vsphere_driver.drs_runtime.cluster_snapshot import to_cluster_snapshot
from nova_vsphere_driver.drs_runtime.vmotion_waves import MoveOutcome, WaveProgress, run_waves
from nova_vsphere_driver.vsphere.cluster_state import ClusterState
from nova_vsphere_driver.vsphere.session import VSphereSession

LOG = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class DrsSettings:
    policy: str = "balanced"
    migration_threshold: int = 3
    max_moves_per_pass: int = 8
    make_room: bool = True
    max_room_moves: int = 4
    #: Concurrent vMotions per host (source or target) in one wave.
    max_vmotions_per_host: int = drs.VMotionTiming.max_concurrent_per_host
    reserved_host_cpus: int = 0
    reserved_host_memory_mb: int = 0
    #: The operator's DRS VM group every instance joins; its must VM-Host rules
    #: bind every instance of the cluster ([vsphere_drs] instance_vm_group).
    instance_vm_group: str | None = None


@dataclasses.dataclass(frozen=True)
class PassReport:
    """What one DRS pass over a cluster planned and did."""

    cluster: str
    kind: str  # "balance" or "evacuation"
    moves: tuple[drs.Move, ...]
    imbalance_before: float
    imbalance_after: float
    applied: bool
    outcomes: tuple[MoveOutcome, ...] = ()
    unresolved: tuple[str, ...] = ()
    #: Host moref -> name, to show moves in operators' words.
    host_names: dict[str, str] = dataclasses.field(default_factory=dict)
    #: The moves as the waves they run in (at most ``max_vmotions_per_host``
    #: vMotions per host at once).
    waves: tuple[tuple[drs.Move, ...], ...] = ()
    #: The expected duration of running every wave (drs.VMotionTiming).
    expected_seconds: float = 0.0
    max_vmotions_per_host: int = drs.VMotionTiming.max_concurrent_per_host
    #: Seconds the vMotions took (0 unless applied).
    elapsed_seconds: float = 0.0
    #: Asked to stop: the waves after the one running then did not run.
    stopped: bool = False

    def describe(self, move: drs.Move) -> str:
        names = self.host_names
        return (f"{move.vm_name or move.vm}: {names.get(move.source, move.source)} -> "
                f"{names.get(move.target, move.target)} [{move.kind.value}] {move.reason}")

    @property
    def failed(self) -> tuple[MoveOutcome, ...]:
        return tuple(o for o in self.outcomes if not o.ok)

    @property
    def done(self) -> tuple[drs.Move, ...]:
        return tuple(o.move for o in self.outcomes if o.ok)

    @property
    def not_run(self) -> tuple[drs.Move, ...]:
        """Planned moves that did not run (a failure or a stop ended the pass first)."""
        if not self.applied:
            return ()
        ran = {id(o.move) for o in self.outcomes}
        return tuple(m for m in self.moves if id(m) not in ran)

    @property
    def memory_mb(self) -> int:
        """Memory the plan copies."""
        return sum(m.memory_mb for m in self.moves)

    def summary(self) -> str:
        """One line: moves, waves, memory and the expected duration."""
        return (f"{len(self.moves)} move(s) in {len(self.waves)} wave(s) of at most "
                f"{self.max_vmotions_per_host} vMotion(s) per host, "
                f"{self.memory_mb / 1024:.1f} GiB to copy, expected "
                f"{format_duration(self.expected_seconds)}")


def format_duration(seconds: float) -> str:
    """``seconds`` as h/min/s, for operators."""
    seconds = max(0, round(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes:02d}m{secs:02d}s"
    if minutes:
        return f"{minutes}m{secs:02d}s"
    return f"{secs}s"


#: Hears of a pass's progress while its vMotions run.
ProgressListener = Callable[[WaveProgress], None]


class ClusterDrs:
    """DRS for every cluster of one driver; thread-safe."""

    def __init__(self, session: VSphereSession, settings: DrsSettings) -> None:
        self.session = session
        self.settings = settings
        self.policy = drs.load_policy(settings.policy)
        #: The vMotion concurrency the plans' waves respect, and their duration model.
        self.timing = drs.VMotionTiming(max_concurrent_per_host=settings.max_vmotions_per_host)
        self._claims: dict[str, drs.Claims] = {}
        self._pass_locks: dict[str, threading.Lock] = {}
        #: cluster moref -> the last ClusterState converted and its snapshot. The
        #: cluster cache hands out one ClusterState object until something changes,
        #: so a resource update, a claim or a pass that finds the cluster unchanged
        #: reuses the snapshot (and the indexes it built) instead of converting
        #: every VM of the cluster again.
        self._snapshots: dict[str, tuple[ClusterState, drs.ClusterSnapshot]] = {}
        #: cluster moref -> (snapshot, what else max_unit depends on, its answer).
        self._max_units: dict[str, tuple[drs.ClusterSnapshot, tuple, drs.MaxUnit]] = {}
        self._guard = threading.Lock()

    # -- bookkeeping ----------------------------------------------------------------

    def claims(self, cluster_moref: str) -> drs.Claims:
        with self._guard:
            claims = self._claims.get(cluster_moref)
            if claims is None:
                claims = self._claims[cluster_moref] = drs.Claims()
            return claims

    def _pass_lock(self, cluster_moref: str) -> threading.Lock:
        with self._guard:
            return self._pass_locks.setdefault(cluster_moref, threading.Lock())

    def cluster_snapshot(self, state: ClusterState) -> drs.ClusterSnapshot:
        """The drs module's view of ``state``, with this driver's host reservations.

        Both are immutable: the same ``state`` object gives the same snapshot object.
        """
        moref = state.ref.moref
        with self._guard:
            known = self._snapshots.get(moref)
        if known is not None and known[0] is state:
            return known[1]
        snapshot = to_cluster_snapshot(
            state, reserved_host_cpus=self.settings.reserved_host_cpus,
            reserved_host_memory_mb=self.settings.reserved_host_memory_mb, previous=known)
        with self._guard:
            self._snapshots[moref] = (state, snapshot)
        return snapshot

    @staticmethod
    def limits(ratios: dict[str, float]) -> drs.Limits:
        """Per-host capacity limits matching placement's allocation ratios."""
        return drs.Limits(memory_ratio=ratios["MEMORY_MB"], cpu_ratio=ratios["VCPU"])

    # -- placement --------------------------------------------------------------------

    def instance_pins(self, state: ClusterState) -> tuple[drs.HostPin, ...]:
        """The host-group pins every instance of this cluster honours.

        The cluster's enabled must VM-Host rules on ``instance_vm_group``,
        which every instance joins (none when it is unset or the cluster has
        no such VM group).
        """
        name = self.settings.instance_vm_group
        if not name:
            return ()
        host_groups = {g.name for g in state.groups if g.kind == "host"}
        pins = []
        for rule in state.rules:
            if rule.kind != "vm-host" or rule.vm_group != name or not (
                    rule.enabled and rule.mandatory):
                continue
            for group, affine in ((rule.affine_host_group, True),
                                  (rule.anti_affine_host_group, False)):
                if group and group in host_groups:
                    pins.append(drs.HostPin(group, affine))
        return tuple(sorted(set(pins), key=lambda p: (p.host_group, not p.affine)))

    def with_instance_pins(self, state: ClusterState,
                           request: drs.PlacementRequest) -> drs.PlacementRequest:
        """``request`` bound by the pins every instance of the cluster honours."""
        pins = tuple(p for p in self.instance_pins(state) if p not in request.host_pins)
        if not pins:
            return request
        return dataclasses.replace(request, host_pins=request.host_pins + pins)

    def place(self, state: ClusterState, request: drs.PlacementRequest,
              limits: drs.Limits) -> drs.PlacementResult:
        """A host for ``request`` (claimed), making room first if needed and allowed.

        The instance honours the cluster's instance pins as well as its own.
        Prerequisite moves run here; if one fails the claim is dropped and
        the result says so (no host).
        """
        request = self.with_instance_pins(state, request)
        snapshot = self.cluster_snapshot(state)
        claims = self.claims(state.ref.moref)
        result = drs.place(snapshot, request, self.policy, claims, limits,
                           allow_migrations=self.settings.make_room,
                           max_moves=self.settings.max_room_moves)
        if not result.ok or not result.moves:
            return result
        LOG.info("Making room on %s for %s: %d vMotion(s)", result.host_name,
                 request.describe(), len(result.moves))
        outcomes = self.run_moves(state, snapshot, result.moves, limits)
        failed = [o for o in outcomes if not o.ok]
        if failed:
            claims.release(request.instance_id)
            return dataclasses.replace(
                result, host_id=None,
                reason=f"making room on {result.host_name} failed: vMotion of "
                f"{failed[0].move.vm_name or failed[0].move.vm}: {failed[0].error}")
        return result

    def release(self, cluster_moref: str, instance_uuid: str) -> None:
        self.claims(cluster_moref).release(instance_uuid)

    def max_unit(self, state: ClusterState, limits: drs.Limits,
                 make_room: bool = True) -> drs.MaxUnit:
        """The largest VM one host can take (after making room, when enabled).

        Only hosts the cluster's instance pins allow count: a flavor that fits
        only a host every instance must keep off is not advertised.
        """
        moves = self.settings.max_room_moves if make_room and self.settings.make_room else 0
        snapshot = self.cluster_snapshot(state)
        claims = self.claims(state.ref.moref)
        pins = self.instance_pins(state)
        with claims.lock:
            # The answer follows from the snapshot, the claims in flight and the
            # arguments alone: an unchanged cluster is not searched again.
            inputs = (claims.active_for(snapshot), limits, moves, pins)
            with self._guard:
                known = self._max_units.get(state.ref.moref)
            if known is not None and known[0] is snapshot and known[1] == inputs:
                return known[2]
            best = drs.max_unit(snapshot, self.policy, limits, claims, max_moves=moves,
                                pins=pins)
        with self._guard:
            self._max_units[state.ref.moref] = (snapshot, inputs, best)
        return best

    # -- moves --------------------------------------------------------------------------

    def run_moves(self, state: ClusterState, snapshot: drs.ClusterSnapshot,
                  moves: tuple[drs.Move, ...], limits: drs.Limits,
                  waves: tuple[tuple[drs.Move, ...], ...] | None = None,
                  progress: ProgressListener | None = None,
                  stop: threading.Event | None = None) -> list[MoveOutcome]:
        """Run ``moves`` (planned on ``snapshot``) as waves of vMotions; outcome per move.

        ``waves`` are the plan's (built under ``max_vmotions_per_host``);
        without them the moves are grouped here. The moves' targets are
        claimed while they run, so that placements made meanwhile do not
        count on the room they take. ``stop`` set: no wave starts after the
        running one.
        """
        if waves is None:
            waves = tuple(drs.schedule_waves(snapshot, moves, limits,
                                             self.timing.max_concurrent_per_host))
        claims = self.claims(state.ref.moref)
        # Spawns placed while the moves run see their targets as taken.
        claims.claim_moves(snapshot, moves)
        try:
            return run_waves(self.session, waves, state.ref.resource_pool,
                             timing=self.timing, progress=progress, stop=stop)
        finally:
            for move in moves:
                claims.release(move.vm)

    def _report(self, state: ClusterState, kind: str, plan, apply: bool,
                limits: drs.Limits, snapshot: drs.ClusterSnapshot,
                unresolved: tuple[str, ...] = (), progress: ProgressListener | None = None,
                stop: threading.Event | None = None) -> PassReport:
        names = {h.moref: h.name for h in state.hosts}
        for move in plan.moves:
            LOG.info("DRS %s %s: %s -> %s: %s", "apply" if apply else "plan", state.ref.name,
                     move.vm_name or move.vm, names.get(move.target, move.target), move.reason)
        outcomes = ()
        started = time.monotonic()
        if apply and plan.moves:
            outcomes = tuple(self.run_moves(state, snapshot, plan.moves, limits,
                                            tuple(plan.waves), progress, stop))
        report = PassReport(
            state.ref.name, kind, tuple(plan.moves), plan.imbalance_before,
            plan.imbalance_after, apply and bool(plan.moves), outcomes, unresolved, names,
            tuple(plan.waves), plan.expected_seconds, self.timing.max_concurrent_per_host,
            time.monotonic() - started if outcomes else 0.0,
            stop is not None and stop.is_set() and len(outcomes) < len(plan.moves))
        if report.applied:
            LOG.info("DRS %s of %s: %d of %d move(s) done, %d failed, %d not run, in %s "
                     "(expected %s)%s", kind, state.ref.name, len(report.done),
                     len(plan.moves), len(report.failed), len(report.not_run),
                     format_duration(report.elapsed_seconds),
                     format_duration(report.expected_seconds),
                     "; stopped as asked" if report.stopped else "")
        return report

    def balance(self, state: ClusterState, limits: drs.Limits, apply: bool,
                progress: ProgressListener | None = None,
                stop: threading.Event | None = None) -> PassReport:
        """One balancing pass: plan (and with ``apply``, run) the moves.

        ``progress`` hears of each wave and move as they end; ``stop`` set
        ends the pass after the running wave.
        """
        with self._pass_lock(state.ref.moref):
            snapshot = self.cluster_snapshot(state)
            plan = drs.balance(snapshot, self.settings.migration_threshold,
                               self.settings.max_moves_per_pass, self.policy, limits,
                               self.claims(state.ref.moref), timing=self.timing)
            LOG.info("DRS pass on %s: imbalance %.4f -> %.4f with %d move(s) in %d wave(s) "
                     "(at most %d vMotions per host), %.1f GiB, expected %s%s",
                     state.ref.name, plan.imbalance_before, plan.imbalance_after,
                     len(plan.moves), len(plan.waves), self.timing.max_concurrent_per_host,
                     plan.memory_mb / 1024, format_duration(plan.expected_seconds),
                     "" if apply else " (dry run)")
            unresolved = tuple(str(u) for u in plan.unresolved)
            return self._report(state, "balance", plan, apply, limits, snapshot, unresolved,
                                progress, stop)

    def evacuate(self, state: ClusterState, limits: drs.Limits, apply: bool = True,
                 progress: ProgressListener | None = None,
                 stop: threading.Event | None = None) -> PassReport | None:
        """Empty the hosts entering maintenance mode; None when there are none."""
        entering = [h.moref for h in state.hosts
                    if h.entering_maintenance and h.connected and not h.in_maintenance]
        if not entering:
            return None
        with self._pass_lock(state.ref.moref):
            snapshot = self.cluster_snapshot(state)
            on_them = [vm for vm in snapshot.vms if vm.host in entering]
            if not on_them:
                return None
            plan = drs.evacuate(snapshot, entering, self.policy, limits,
                                self.claims(state.ref.moref), timing=self.timing)
            LOG.info("DRS evacuation of %s: %d move(s) in %d wave(s), %.1f GiB, expected %s",
                     ", ".join(h.name for h in state.hosts if h.moref in entering),
                     len(plan.moves), len(plan.waves), plan.memory_mb / 1024,
                     format_duration(plan.expected_seconds))
            unresolved = tuple(f"{vm}: {why}" for vm, why in sorted(plan.unplaceable.items()))
            if unresolved:
                LOG.warning("Cluster %s: %d VM(s) cannot leave host(s) entering maintenance: "
                            "%s", state.ref.name, len(unresolved), "; ".join(unresolved))
            return self._report(state, "evacuation", plan, apply, limits, snapshot,
                                unresolved, progress, stop)


class PassSchedule:
    """When each cluster's next balancing pass is due."""

    def __init__(self, interval: float, clock=time.monotonic) -> None:
        self.interval = interval
        self._clock = clock
        self._last: dict[str, float] = {}
        self._lock = threading.Lock()

    def due(self, cluster_moref: str) -> bool:
        if self.interval <= 0:
            return False
        with self._lock:
            now = self._clock()
            last = self._last.get(cluster_moref)
            if last is not None and now - last < self.interval:
                return False
            self._last[cluster_moref] = now
            return True
