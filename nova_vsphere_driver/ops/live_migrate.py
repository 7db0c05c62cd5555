"""Live migration between clusters of one vCenter: vMotion, with storage vMotion when needed.

How nova 34 drives a live migration (conductor ``LiveMigrationTask`` and the
compute manager), and what this driver does at each step:

* Nova live-migrates between nova-compute *services*. The conductor never
  offers the source service as destination (``ignore_hosts``), and a forced
  destination equal to the source is refused (UnableToMigrateToSelf). So two
  clusters managed by one nova-compute are never source and target of each
  other; a cluster in another nova-compute's ``cluster_names`` is. Inside a
  cluster our DRS moves VMs between ESXi hosts by itself, so a request whose
  target node is the instance's own cluster is refused (MigrationPreCheckError).
* The destination service learns its target node from ``dst_compute_info``:
  the *first* compute node of the service, which is also the node that
  ``post_live_migration_at_destination`` records as ``instance.node``. The VM
  must land in that cluster. When the scheduler allocated the instance on
  another node of the same service, Nova's records would contradict each
  other: :meth:`LiveMigrations.check_source_migrate_data_at_dest` refuses
  that (the conductor then tries another host). Services that should receive
  live migrations therefore work best with one cluster each.
* ``migrate_data`` is Nova's ``VMwareLiveMigrateData``. ``cluster_name``
  carries the target *node name* ("<cluster moref>.<vCenter instance UUID>"):
  a cluster's name is unique only inside its folder and does not say which
  vCenter it is in. ``datastore_regex`` is the destination's
  ``[vsphere] datastore_regex`` ("" for any datastore).
* The source service runs the vMotion: RelocateVM_Task into the target
  cluster's root resource pool, on the ESXi host our DRS picks in the target
  cluster (capacity, server-group rules, host-group pins). The datastore stays
  when the target cluster mounts it (and it matches the destination's regex),
  otherwise the VM's files move with it to a matching datastore of the target
  cluster (storage vMotion). NICs go to the networks the port bindings name
  for the destination (Nova's ``migrate_data.vifs``, as ``ops/nics.py``
  reads bindings), which the chosen host must be connected to; those whose
  backing changes are edited by the same RelocateVM_Task.
* Pre-checks raise MigrationPreCheckError, which the conductor reports (or
  answers by trying another host). A vMotion that fails or is cancelled
  leaves the VM where it was (vCenter guarantees it): ``live_migration`` calls
  Nova's ``recover_method`` (with ``migration_status='cancelled'`` after an
  abort) and returns, so the instance stays ACTIVE on its source. Only when
  the VM's whereabouts are unknown does it raise: Nova then sets the instance
  to ERROR, which is the truth.
* For VMwareLiveMigrateData Nova calls neither ``cleanup`` on the source after
  success nor ``rollback_live_migration_at_destination`` after a failure
  (``ComputeManager._live_migration_cleanup_flags``): right for vCenter, where
  "source" and "destination" are the same VM.
"""

from __future__ import annotations

import dataclasses
import threading
from typing import Any

import nova.conf
from nova import exception
from nova.objects import migrate_data as migrate_data_obj
from oslo_log import log as logging
from oslo_utils import units
from oslo_vmware import exceptions as vexc
from oslo_vmware import vim_util

from nova_vsphere_driver import drs, policy
from nova_vsphere_driver.datastore_selection import matching_datastores
from nova_vsphere_driver.ops.instance_rules import InstanceRules, server_group
from nova_vsphere_driver.ops.instance_storage_policy import InstanceStoragePolicy
from nova_vsphere_driver.ops.nics import NicResolver, backing_edits
from nova_vsphere_driver.services import Services
from nova_vsphere_driver.vsphere import errors
from nova_vsphere_driver.vsphere.cluster_state import ClusterRef, ClusterState, EsxiHostState
from nova_vsphere_driver.vsphere.session import TaskTimeout
from nova_vsphere_driver.vsphere.suds_values import items
from nova_vsphere_driver.vsphere.vm import Nic

LOG = logging.getLogger(__name__)
CONF = nova.conf.CONF

#: How long a vMotion that outlived ``[vsphere] api_timeout`` may take to
#: honour CancelTask before its outcome counts as unknown.
CANCEL_GRACE_SECONDS = 60.0


def split_nodename(nodename: str) -> tuple[str, str]:
    """(cluster moref, vCenter instance UUID) of a node name of this driver."""
    moref, sep, vcenter = (nodename or "").partition(".")
    if not sep or not moref or not vcenter:
        raise exception.MigrationPreCheckError(
            reason=f"{nodename!r} is not a node of the vSphere driver "
            "('<cluster moref>.<vCenter UUID>')")
    return moref, vcenter


def _refs(value: Any) -> list:
    """suds arrays of managed object references arrive wrapped; plain lists pass."""
    if value is None:
        return []
    if isinstance(value, list):
        return value
    return list(getattr(value, "ManagedObjectReference", None) or [])


@dataclasses.dataclass(frozen=True)
class StoragePlan:
    """Where the VM's files go: stay (``keep``) or move to one of ``datastores``."""

    keep: bool
    datastores: frozenset[str]

    def request_fields(self) -> dict:
        # Staying: the host must mount every datastore the VM uses. Moving:
        # it must mount at least one candidate.
        return {"datastores": self.datastores} if self.keep else \
            {"any_datastore": self.datastores}


def storage_plans(state: ClusterState, vm_datastores: set[str], committed_bytes: int,
                  regex: str | None) -> list[StoragePlan]:
    """The ways the VM's storage can fit the target cluster, best (no copy) first."""
    usable = matching_datastores(state, regex or None)
    plans = []
    if vm_datastores and vm_datastores <= {d.moref for d in usable}:
        plans.append(StoragePlan(keep=True, datastores=frozenset(vm_datastores)))
    room = frozenset(d.moref for d in usable if d.free_bytes >= committed_bytes)
    if room:
        plans.append(StoragePlan(keep=False, datastores=room))
    return plans


@dataclasses.dataclass
class _InFlight:
    """A vMotion this nova-compute runs, for live_migration_abort."""

    instance_uuid: str
    cancel: threading.Event = dataclasses.field(default_factory=threading.Event)
    task: Any = None


class _Outcome:
    DONE = "done"
    FAILED = "failed"
    CANCELLED = "cancelled"


class LiveMigrations:
    """Live migration for one driver; thread-safe (built once per driver)."""

    def __init__(self, services: Services, rules: InstanceRules, nics: NicResolver,
                 storage: InstanceStoragePolicy) -> None:
        self._services = services
        self._session = services.session
        self._vmops = services.vmops
        self._vm_refs = services.vm_refs
        self._states = services.states
        self._nodes = services.nodes
        self._drs = services.drs
        self._rules = rules
        self._nics = nics
        self._storage = storage
        self._lock = threading.Lock()
        self._inflight: dict[str, _InFlight] = {}
        #: id(dest_check_data) -> (the data, cluster moref, instance uuid): the
        #: destination check's claim, released by the cleanup Nova always calls.
        self._checks: dict[int, tuple[object, str, str]] = {}
        self._clusters: dict[str, ClusterRef] = {}

    # -- helpers ---------------------------------------------------------------------

    def _cluster(self, nodename: str) -> ClusterRef:
        """The target cluster of ``nodename``: one of ours, or another of this vCenter."""
        moref, vcenter = split_nodename(nodename)
        if vcenter != self._nodes.vcenter_uuid:
            raise exception.MigrationPreCheckError(
                reason=f"the target node {nodename} is in another vCenter (this one is "
                f"{self._nodes.vcenter_uuid}); vMotion across vCenters is not supported")
        if nodename in self._nodes:
            return self._nodes[nodename]
        with self._lock:
            cached = self._clusters.get(moref)
        if cached is not None:
            return cached
        with errors.translated():
            found = {c.moref: c for c in self._states.find_clusters()}
        with self._lock:
            self._clusters.update(found)
        if moref not in found:
            raise exception.MigrationPreCheckError(
                reason=f"vCenter has no cluster {moref} (target node {nodename})")
        return found[moref]

    def _request(self, context, instance, plan: StoragePlan) -> drs.PlacementRequest:
        """What the target cluster's DRS must place: size, group rules, host-group pin."""
        settings = policy.flavor_settings(instance.flavor)
        return policy.placement_request(instance, server_group(context, instance),
                                        settings.host_group, **plan.request_fields())

    def _vm_storage(self, instance) -> tuple[Any, set[str], int]:
        """(VM reference, its datastores, bytes its files take)."""
        props = self._vm_refs.with_vm(instance, lambda ref: self._vmops.properties(
            ref, ["datastore", "summary.storage.committed"]))
        stores = {vim_util.get_moref_value(d) for d in _refs(props.get("datastore"))}
        committed = int(props.get("summary.storage.committed") or 0)
        return self._vm_refs.find(instance), stores, committed

    def _plan_placement(self, context, instance, state: ClusterState, regex: str | None,
                        try_place) -> tuple[StoragePlan, drs.PlacementResult]:
        """The first storage plan DRS finds a host for; MigrationPreCheckError if none."""
        _, stores, committed = self._vm_storage(instance)
        plans = self._policy_plans(instance, state, storage_plans(state, stores, committed,
                                                                  regex))
        if not plans:
            raise exception.MigrationPreCheckError(
                reason=f"cluster {state.ref.name}: no datastore matching "
                f"{regex or 'any name'!r} can take the instance's "
                f"{committed / units.Gi:.1f} GiB")
        reasons = []
        for plan in plans:
            # Bound by the target cluster's instance pins, as a spawn there is.
            result = try_place(self._drs.with_instance_pins(
                state, self._request(context, instance, plan)))
            if result.ok:
                return plan, result
            reasons.append(result.reason)
        raise exception.MigrationPreCheckError(
            reason=f"no ESXi host of cluster {state.ref.name} can take the instance: "
            f"{'; '.join(reasons)}")

    def _policy_plans(self, instance, state: ClusterState,
                      plans: list[StoragePlan]) -> list[StoragePlan]:
        """``plans`` whose storage vMotion targets honour the instance's storage policy (a
        VM staying on its datastores keeps its association)."""
        moving = [p for p in plans if not p.keep]
        if not moving:
            return plans
        storage_policy = self._storage.policy(instance.flavor,
                                              policy.flavor_settings(instance.flavor))
        if storage_policy is None:
            return plans
        candidates = [d for d in state.datastores if d.moref in moving[0].datastores]
        try:
            _, allowed = self._storage.datastores(state, candidates, storage_policy)
        except exception.ComputeResourcesUnavailable:
            allowed = []
        keep = {d.moref for d in allowed}
        return [p if p.keep else StoragePlan(keep=False, datastores=p.datastores & keep)
                for p in plans if p.keep or p.datastores & keep]

    # -- destination checks (run on the destination nova-compute) ----------------------

    def check_destination(self, context, instance, src_compute_info, dst_compute_info):
        nodename = (dst_compute_info or {}).get("hypervisor_hostname")
        if not nodename and len(self._nodes) == 1:
            nodename = next(iter(self._nodes))
        if nodename not in self._nodes:
            raise exception.MigrationPreCheckError(
                reason=f"target node {nodename!r} is not managed by this nova-compute")
        ref = self._nodes[nodename]
        if instance.node == nodename:
            raise exception.MigrationPreCheckError(
                reason=f"the instance already runs in cluster {ref.name}: inside a cluster "
                "this driver's DRS moves VMs between ESXi hosts; live migration moves "
                "instances between clusters")
        if split_nodename(instance.node)[1] != self._nodes.vcenter_uuid:
            raise exception.MigrationPreCheckError(
                reason=f"the instance runs in another vCenter ({instance.node}); vMotion "
                "across vCenters is not supported")
        state = self._states.read(nodename)
        claims = self._drs.claims(ref.moref)
        settings = self._drs.settings
        snapshot = self._drs.cluster_snapshot(state)
        limits = self._services.limits()

        def hold(request):
            # Against in-flight spawns, and claimed until the cleanup Nova
            # calls right after the source's check; prerequisite moves are
            # not run by a check, so their claims go at once.
            result = drs.place(snapshot, request, self._drs.policy, claims, limits,
                               allow_migrations=settings.make_room,
                               max_moves=settings.max_room_moves)
            for move in result.moves:
                claims.release(move.vm)
            return result

        plan, result = self._plan_placement(context, instance, state,
                                            CONF.vsphere.datastore_regex, hold)
        LOG.info("Live migration to cluster %s possible: ESXi host %s, %s", ref.name,
                 result.host_name, "datastore kept" if plan.keep else "storage vMotion",
                 instance=instance)
        data = migrate_data_obj.VMwareLiveMigrateData(
            cluster_name=nodename, datastore_regex=CONF.vsphere.datastore_regex or "")
        with self._lock:
            self._checks[id(data)] = (data, ref.moref, instance.uuid)
        return data

    def cleanup_destination_check(self, dest_check_data) -> None:
        """Release the capacity the destination check held for the instance."""
        with self._lock:
            entry = self._checks.pop(id(dest_check_data), None)
        if entry is None or entry[0] is not dest_check_data:
            return
        _, moref, instance_uuid = entry
        self._drs.release(moref, instance_uuid)

    def check_at_dest(self, instance, migrate_data, allocs):
        """Refuse a target node other than the one Nova will record for the instance."""
        target = getattr(migrate_data, "cluster_name", None)
        ours = self._nodes.by_uuid()
        allocated = {ours[rp] for rp in (allocs or {}) if rp in ours}
        if allocated and target not in allocated:
            raise exception.MigrationPreCheckError(
                reason=f"placement allocated the instance on node {', '.join(sorted(allocated))}"
                f" but nova 34 records the first node of this nova-compute ({target}) as the "
                "instance's node after a live migration; a service receiving live "
                "migrations should manage one cluster")
        return migrate_data

    def pre_live_migration(self, context, instance, network_info, migrate_data):
        """The target cluster has the instance's networks and room for it now."""
        nodename = migrate_data.cluster_name
        if nodename not in self._nodes:
            raise exception.MigrationPreCheckError(
                reason=f"target node {nodename!r} is not managed by this nova-compute")
        state = self._states.read(nodename)
        try:
            self._nics.nics(state, None,
                            self._dest_network_info(instance, migrate_data, network_info))
        except exception.NetworkNotFoundForBridge as exc:
            raise exception.MigrationPreCheckError(
                reason=f"cluster {state.ref.name}: {exc.format_message()}") from None
        claims = self._drs.claims(state.ref.moref)
        snapshot = self._drs.cluster_snapshot(state)
        limits = self._services.limits()

        def check(request):
            with claims.lock:
                result = drs.place(snapshot, request, self._drs.policy, claims, limits,
                                   allow_migrations=self._drs.settings.make_room,
                                   max_moves=self._drs.settings.max_room_moves)
                for move in result.moves:
                    claims.release(move.vm)
                claims.release(instance.uuid)
            return result

        self._plan_placement(context, instance, state, migrate_data.datastore_regex, check)
        return migrate_data

    # -- the vMotion (runs on the source nova-compute) ---------------------------------

    def check_source(self, instance, dest_check_data, block_device_info):
        target = self._cluster(dest_check_data.cluster_name)
        source = self._nodes.cluster(instance.node)
        if target.datacenter != source.datacenter:
            raise exception.MigrationPreCheckError(
                reason=f"cluster {target.name} is in datacenter {target.datacenter_name}, "
                f"the instance in {source.datacenter_name}: vMotion across datacenters "
                "(which needs a VM folder there) is not supported")
        self._vm_refs.find(instance)  # InstanceNotFound when the VM is gone
        volumes = (block_device_info or {}).get("block_device_mapping") or []
        if volumes:
            _, stores, _ = self._vm_storage(instance)
            with errors.translated(instance):
                state = self._states.read_cluster(target)
            plans = storage_plans(state, stores, 0, dest_check_data.datastore_regex)
            if not (plans and plans[0].keep):
                raise exception.MigrationPreCheckError(
                    reason=f"the instance has {len(volumes)} volume(s) attached and cluster "
                    f"{target.name} does not mount all of its datastores: a storage vMotion "
                    "would move the volumes' disks away from Cinder")
        return dest_check_data

    def live_migration(self, context, instance, dest, post_method, recover_method,
                       block_migration, migrate_data) -> None:
        entry = _InFlight(instance.uuid)
        with self._lock:
            if instance.uuid in self._inflight:
                raise exception.InstanceInvalidState(
                    attr="task_state", instance_uuid=instance.uuid, state="migrating",
                    method="live_migration")
            self._inflight[instance.uuid] = entry
        target: ClusterRef | None = None
        try:
            try:
                target = self._cluster(migrate_data.cluster_name)
                vm_ref, spec, where = self._relocate_spec(
                    context, instance, target, migrate_data.datastore_regex,
                    self._dest_network_info(instance, migrate_data))
            except Exception:
                # Nothing has moved: Nova's rollback is all there is to do.
                LOG.exception("Live migration to %s not started", dest, instance=instance)
                outcome = _Outcome.FAILED
            else:
                outcome = self._vmotion(instance, entry, vm_ref, spec, where, target)
        finally:
            with self._lock:
                self._inflight.pop(instance.uuid, None)
            if target is not None:
                self._drs.release(target.moref, instance.uuid)
        if outcome == _Outcome.DONE:
            post_method(context, instance, dest, block_migration, migrate_data)
        elif outcome == _Outcome.CANCELLED:
            recover_method(context, instance, dest, migrate_data,
                           migration_status="cancelled")
        else:
            recover_method(context, instance, dest, migrate_data)

    def _relocate_spec(self, context, instance, target: ClusterRef, regex: str | None,
                       network_info):
        """(VM ref, RelocateSpec, where to): the target cluster's DRS picks the host.

        ``[vsphere_drs] mode = vcenter``: as at spawn, no host is named and
        vCenter's DRS places the VM inside the target cluster. Adapters whose
        network the port bindings put elsewhere in the target cluster (another
        switch, another reserved port) are moved there by the same task.
        """
        with errors.translated(instance):
            state = self._states.read_cluster(target)
        if CONF.vsphere_drs.mode == "builtin":
            limits = self._services.limits()
            plan, result = self._plan_placement(
                context, instance, state, regex,
                lambda request: self._drs.place(state, request, limits))
            host = state.host(result.host_id)
            nics = self._check_networks(state, host, network_info)
            mounted = set(host.datastores)
            where = f"ESXi host {host.name} of cluster {target.name} ({result.reason})"
        else:
            _, stores, committed = self._vm_storage(instance)
            plans = self._policy_plans(instance, state,
                                       storage_plans(state, stores, committed, regex))
            if not plans:
                raise exception.MigrationPreCheckError(
                    reason=f"cluster {target.name}: no datastore matching {regex!r} has "
                    f"{committed / units.Gi:.1f} GiB free")
            plan, host = plans[0], None
            nics = self._check_networks(state, None, network_info)
            mounted = {d.moref for d in state.datastores}
            where = f"cluster {target.name} (vCenter's DRS picks the host)"
        spec = self._session.factory("VirtualMachineRelocateSpec")
        spec.pool = vim_util.get_moref(target.resource_pool, "ResourcePool")
        if host is not None:
            spec.host = vim_util.get_moref(host.moref, "HostSystem")
        if not plan.keep:
            store = max((d for d in state.datastores
                         if d.moref in plan.datastores and d.moref in mounted),
                        key=lambda d: (d.free_bytes, d.name))
            spec.datastore = vim_util.get_moref(store.moref, "Datastore")
            where += f", storage vMotion to datastore {store.name}"
        vm_ref = self._vm_refs.find(instance)
        with errors.translated(instance):
            devices = items(self._vmops.properties(vm_ref, ["config.hardware.device"]).get(
                "config.hardware.device"))
        edits = backing_edits(self._session, devices, nics)
        if edits:
            spec.deviceChange = edits
            where += f", {len(edits)} network adapter(s) to the target's networks"
        LOG.info("vMotion to %s", where, instance=instance)
        return vm_ref, spec, where

    @staticmethod
    def _network_info(instance):
        if instance.obj_attr_is_set("info_cache") and instance.info_cache is None:
            return []
        return instance.get_network_info()

    def _dest_network_info(self, instance, migrate_data, network_info=None):
        """The VIFs as bound on the destination: Nova's port bindings for the target host
        (``migrate_data.vifs``, where Neutron has them), else ``network_info`` (default:
        the instance's)."""
        vifs = migrate_data.vifs if migrate_data.obj_attr_is_set("vifs") else None
        if vifs and all(v.obj_attr_is_set(f) for v in vifs
                        for f in ("source_vif", "vif_type", "vnic_type")):
            return [v.get_dest_vif() for v in vifs]
        return network_info if network_info is not None else self._network_info(instance)

    def _check_networks(self, state: ClusterState, host: EsxiHostState | None,
                        network_info) -> tuple[Nic, ...]:
        """The NICs of the instance on the chosen host (None: any host of the cluster).

        The bindings name the networks (the same port group objects when the
        clusters share a switch); the question is whether the target host is
        connected to them. vCenter would fail the vMotion with
        CannotAccessNetwork; asking first keeps that off the VM.
        """
        try:
            return self._nics.nics(state, host, network_info)
        except exception.NetworkNotFoundForBridge as exc:
            where = f"ESXi host {host.name}" if host is not None else \
                f"cluster {state.ref.name}"
            raise exception.MigrationPreCheckError(
                reason=f"{where}: {exc.format_message()}") from None

    def _vmotion(self, instance, entry: _InFlight, vm_ref, spec, where: str,
                 target: ClusterRef) -> str:
        """Run RelocateVM_Task (cancelable); where the VM ended up decides the outcome."""
        session = self._session
        if entry.cancel.is_set():
            LOG.info("Live migration aborted before the vMotion started", instance=instance)
            return _Outcome.CANCELLED
        source = self._nodes.cluster(instance.node)
        try:
            with errors.translated(instance):
                task = session.invoke("RelocateVM_Task", vm_ref, spec=spec)
        except exception.NovaException as exc:
            LOG.error("vCenter refused the vMotion to %s: %s", where, exc,
                      instance=instance)
            return _Outcome.FAILED
        with self._lock:
            entry.task = task
            cancel_now = entry.cancel.is_set()
        if cancel_now:
            self._cancel(task, instance, quiet=True)
        try:
            session.wait_for_task(task, timeout=CONF.vsphere.api_timeout)
        except (TaskTimeout, vexc.VMwareDriverException) as exc:
            if not self._running(task, instance):
                return self._settle(instance, entry, vm_ref, source, target, exc)
            # Timed out, or polling failed while the vMotion goes on: stop it.
            LOG.error("vMotion not finished (%s); cancelling it", exc, instance=instance)
            self._cancel(task, instance, quiet=True)
            try:
                session.wait_for_task(task, timeout=CANCEL_GRACE_SECONDS)
            except (TaskTimeout, vexc.VMwareDriverException) as again:
                return self._settle(instance, entry, vm_ref, source, target, again)
        LOG.info("vMotion to %s done", where, instance=instance)
        return _Outcome.DONE

    def _running(self, task, instance) -> bool:
        with errors.translated(instance):
            info = self._session.call("get_object_property", task, "info")
        return str(info.state) in ("queued", "running")

    def _settle(self, instance, entry: _InFlight, vm_ref, source: ClusterRef,
                target: ClusterRef, exc: Exception) -> str:
        """After a vMotion error: where is the VM? The source: failed (cancelled if aborted)."""
        if self._running(entry.task, instance):
            # It may yet complete: saying "failed" now could leave Nova's
            # records behind the VM. Unknown is an error (Nova: ERROR state).
            raise exception.NovaException(
                message=f"vMotion of instance {instance.uuid} to cluster {target.name} "
                f"neither completed nor stopped: {exc}")
        # Cancelled by live_migration_abort; a cancel after a timeout is a failure.
        cancelled = entry.cancel.is_set() and "RequestCanceled" in errors.fault_names(exc)
        with errors.translated(instance):
            pool = self._vmops.properties(vm_ref, ["resourcePool"]).get("resourcePool")
        where = vim_util.get_moref_value(pool) if pool is not None else None
        if where == source.resource_pool:
            LOG.warning("vMotion %s; the VM stays in cluster %s: %s",
                        "cancelled" if cancelled else "failed", source.name, exc,
                        instance=instance)
            return _Outcome.CANCELLED if cancelled else _Outcome.FAILED
        if where == target.resource_pool:
            # The task ended in error after the switch-over: the VM runs at
            # the target, which is all a live migration promises.
            LOG.warning("vMotion reported %s but the VM is in cluster %s", exc, target.name,
                        instance=instance)
            return _Outcome.DONE
        raise exception.NovaException(
            message=f"vMotion of instance {instance.uuid} to cluster {target.name} ended "
            f"with {exc}; the VM is in resource pool {where}, neither source nor target")

    # -- abort and force-complete (source) ---------------------------------------------

    def _cancel(self, task, instance, quiet: bool = False) -> None:
        session = self._session
        with errors.translated(instance):
            info = session.call("get_object_property", task, "info")
        if str(info.state) in ("success", "error"):
            if quiet:
                return
            raise exception.NovaException(
                message=f"the vMotion of instance {instance.uuid} already ended "
                f"({info.state}); nothing to abort")
        if not getattr(info, "cancelable", False):
            if quiet:
                LOG.warning("vCenter cannot cancel the vMotion now", instance=instance)
                return
            raise exception.NovaException(
                message=f"vCenter reports the vMotion of instance {instance.uuid} as not "
                "cancelable (it is switching over to the target host)")
        try:
            session.invoke("CancelTask", task)
        except vexc.VMwareDriverException as exc:
            if quiet:
                LOG.warning("CancelTask of the vMotion failed: %s", exc, instance=instance)
                return
            raise errors.to_nova(exc, instance) from exc
        LOG.info("vMotion cancellation requested", instance=instance)

    def abort(self, instance) -> None:
        with self._lock:
            entry = self._inflight.get(instance.uuid)
            if entry is None:
                raise exception.NovaException(
                    message=f"no live migration of instance {instance.uuid} is in progress "
                    "on this nova-compute")
            entry.cancel.set()
            task = entry.task
        if task is None:
            LOG.info("Live migration aborted before its vMotion started; it will not start",
                     instance=instance)
            return
        self._cancel(task, instance)

    # -- after the move ----------------------------------------------------------------

    def post_at_source_cleanup(self, instance, migrate_data) -> None:
        """The source's bookkeeping for the instance ends: claims and cached reference."""
        source = self._nodes.get(instance.node)
        if source is not None:
            self._drs.release(source.moref, instance.uuid)
        target = (getattr(migrate_data, "cluster_name", None) or "").partition(".")[0]
        if target:
            self._drs.release(target, instance.uuid)
        self._vm_refs.forget(instance.uuid)

    def prune_source_rules(self, instance) -> None:
        """The VM left its source cluster: drop it from our DRS rules and groups there."""
        source = self._nodes.get(instance.node)
        vm_ref = self._vm_refs.find(instance, required=False)
        if source is None or vm_ref is None:
            return
        self._rules.prune(source, vim_util.get_moref_value(vm_ref))

    def _cluster_of_vm(self, instance) -> tuple[str, ClusterRef, Any] | None:
        """(nodename, cluster, VM ref) of ours that the VM is in now, or None."""
        self._vm_refs.forget(instance.uuid)
        vm_ref = self._vm_refs.find(instance, required=False)
        if vm_ref is None:
            return None
        with errors.translated(instance):
            pool = self._vmops.properties(vm_ref, ["resourcePool"]).get("resourcePool")
        pool_id = vim_util.get_moref_value(pool) if pool is not None else None
        for nodename, ref in self._nodes.items():
            if ref.resource_pool == pool_id:
                return nodename, ref, vm_ref
        return None

    def post_at_destination(self, context, instance) -> None:
        """Server-group rule and host-group pin follow the VM into its new cluster."""
        found = self._cluster_of_vm(instance)
        if found is None:
            raise exception.InstanceNotFound(instance_id=instance.uuid)
        nodename, ref, vm_ref = found
        self._drs.release(ref.moref, instance.uuid)
        LOG.info("Instance arrived in cluster %s (%s)", ref.name, nodename, instance=instance)
        group = server_group(context, instance)
        try:
            with errors.translated(instance):
                self._rules.sync_group(ref, instance, group)
        except exception.NovaException as exc:
            # The VM runs; failing now would only put a healthy instance
            # in ERROR. DRS placed it by the policy, and the rule is
            # rewritten with the next change of the group's members.
            LOG.error("Server group %s: DRS rule not updated in cluster %s: %s",
                      group.uuid, ref.name, exc, instance=instance)
        settings = policy.flavor_settings(instance.flavor)
        if settings.host_group:
            try:
                with errors.translated(instance):
                    self._rules.pin(ref, settings, vm_ref)
            except exception.NovaException as exc:
                LOG.error("Host group %s: VM-Host rule not updated in cluster %s: %s",
                          settings.host_group, ref.name, exc, instance=instance)
        try:
            with errors.translated(instance):
                self._rules.join_instance_group(ref, vm_ref)
        except exception.NovaException as exc:
            LOG.error("The VM did not join the instance VM group of cluster %s: %s", ref.name,
                      exc, instance=instance)

    def rollback_at_destination(self, instance, migrate_data) -> None:
        """No trace at the destination: no claim, no rule entry -- and never the VM.

        Source and destination are one VM in one vCenter: destroying "the
        destination copy" (as the in-tree driver does here) would delete the
        instance. A VM found in the target cluster is left alone and logged.
        """
        nodename = getattr(migrate_data, "cluster_name", None)
        targets = [self._nodes[nodename]] if nodename in self._nodes else list(self._nodes.values())
        for ref in targets:
            self._drs.release(ref.moref, instance.uuid)
        found = self._cluster_of_vm(instance)
        vm_ref = self._vm_refs.find(instance, required=False)
        for ref in targets:
            if found is not None and found[1] == ref:
                LOG.warning("Rolling back a live migration, yet the VM is in cluster %s; "
                            "leaving it there (it is the instance)", ref.name,
                            instance=instance)
            elif vm_ref is not None:
                self._rules.prune(ref, vim_util.get_moref_value(vm_ref))


#: Why live_migration_force_complete raises NotImplementedError: vMotion
#: switches over on its own; vSphere offers no call to force it.
FORCE_COMPLETE_UNSUPPORTED = (
    "vSphere has no way to force a vMotion to complete: vCenter pre-copies memory and "
    "switches over by itself (slowing the guest down when it cannot converge); there "
    "is no post-copy or pause to request. Use live_migration_abort to stop it instead.")


__all__ = ["CANCEL_GRACE_SECONDS", "LiveMigrations", "StoragePlan",
           "FORCE_COMPLETE_UNSUPPORTED", "split_nodename", "storage_plans"]
