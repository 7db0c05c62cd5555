"""Resize and cold migration.

Nova's resize copies an instance from a source to a destination host. In
vCenter there is one VM: it is changed in place and, when the destination
node is another cluster, relocated there. Nova's steps map as follows:

* ``migrate_disk_and_power_off`` (source nova-compute): refuse what cannot
  be done -- a root disk that would shrink, a hardware version change --
  before anything changes, then power the VM off.
* ``finish_migration`` (destination nova-compute: it manages the target
  cluster, so its DRS can place the VM there): record on the VM where it is
  (:class:`~nova_vsphere_driver.ops.resize_vm.ResizeRecord`), move it to a
  host (and datastore) that fits the new size, keep a copy of the root disk
  if it grows, resize it, let its DRS rules follow it, power it on. Any
  failure puts the VM back as it was when the call started. A root disk
  that grows and is a linked clone of the cached image (a delta disk,
  which vCenter never grows) is first unlinked with PromoteDisks_Task: it
  becomes a standalone disk with the same contents, and stays one (a
  failure after that, or a revert, does not link it again). A root disk
  that keeps its size stays a linked clone.
* ``confirm_migration`` (source): delete what was kept for a revert.
* ``finish_revert_migration`` (source): put the VM back where the record
  says, at the old flavor's size, with its original root disk.

Nova's ``revert_resize`` calls ``destroy`` on the destination before the
source finishes the revert; that VM is the source's VM too, so ``destroy``
leaves it alone then (:func:`kept_for_revert`).

DRS rules live in vCenter per cluster. A VM leaving a cluster drops out of
its rules there (vCenter does so itself; we prune what is left, in clusters
this nova-compute manages) and joins its server group's rule and its
flavor's host-group pin in the cluster it arrives in.
"""

from __future__ import annotations

import dataclasses
import json
import posixpath

import nova.conf
from nova import exception
from nova.compute import task_states
from nova.virt import driver as virt_driver
from oslo_log import log as logging
from oslo_utils import excutils, units
from oslo_vmware import exceptions as vexc
from oslo_vmware import vim_util

from nova_vsphere_driver import policy
from nova_vsphere_driver.datastore_selection import datastores_with_room, pick_datastore
from nova_vsphere_driver.ops import block_devices, resize_vm
from nova_vsphere_driver.ops.host_selection import HostSelection
from nova_vsphere_driver.ops.instance_rules import InstanceRules, server_group
from nova_vsphere_driver.ops.instance_storage_policy import InstanceStoragePolicy
from nova_vsphere_driver.ops.power import PowerOps
from nova_vsphere_driver.ops.resize_vm import ResizeRecord, VmFacts
from nova_vsphere_driver.services import Services
from nova_vsphere_driver.vsphere import errors
from nova_vsphere_driver.vsphere.cluster_state import ClusterRef, ClusterState, EsxiHostState
from nova_vsphere_driver.vsphere.vm import POWERED_OFF, POWERED_ON
from nova_vsphere_driver.vsphere.vmotion import vmotion

LOG = logging.getLogger(__name__)
CONF = nova.conf.CONF


def kept_for_revert(instance) -> bool:
    """Whether ``destroy`` must leave the instance's VM alone: a revert is under way."""
    is_set = getattr(instance, "obj_attr_is_set", None)
    if is_set is not None and not is_set("task_state"):
        return False  # (an Instance built without it would try to lazy-load it)
    return getattr(instance, "task_state", None) == task_states.RESIZE_REVERTING


# -- helpers -------------------------------------------------------------------------------


def _refuse(reason: str) -> exception.InstanceFaultRollback:
    """Nova rolls the instance back to its previous state and reports ``reason``."""
    return exception.InstanceFaultRollback(inner_exception=exception.ResizeError(reason=reason))


def _grown_kb(flavor, facts: VmFacts) -> int | None:
    """The root disk's new capacity when ``flavor`` makes it grow, else None."""
    disk = facts.root_disk
    new_kb = int(flavor.root_gb or 0) * units.Mi
    if disk is None or new_kb <= disk.capacity_kb:
        return None
    return new_kb



def _ephemeral_grows(flavor, facts: VmFacts) -> int | None:
    """The ephemeral disk's new capacity when ``flavor`` makes the only one grow.

    Several ephemeral disks come from a block device mapping, whose sizes a
    resize does not change (as in Nova's libvirt driver).
    """
    new_kb = int(flavor.ephemeral_gb or 0) * units.Mi
    if len(facts.ephemerals) == 1 and new_kb > facts.ephemerals[0].capacity_kb:
        return new_kb
    return None


def _volume_datastores(facts: VmFacts) -> frozenset[str]:
    """Morefs of the datastores the VM's volumes are on: its host must mount them all."""
    return frozenset(ds for _, ds in facts.volume_locators())


def _datacenter(ref: ClusterRef):
    return vim_util.get_moref(ref.datacenter, "Datacenter")


def _builtin_drs() -> bool:
    return CONF.vsphere_drs.mode == "builtin"



# -- migrate_disk_and_power_off (source) ---------------------------------------------------


def _ephemeral_gb(instance, block_device_info) -> int:
    """The instance's ephemeral storage now: its mapping's ephemerals, else its flavor's."""
    ephemerals = virt_driver.block_device_info_get_ephemerals(block_device_info)
    return sum(int(e.get("size") or 0) for e in ephemerals) or \
        int(instance.flavor.ephemeral_gb or 0)


def check_resizable(instance, flavor, settings, facts: VmFacts,
                    block_device_info=None) -> None:
    """Raise InstanceFaultRollback for a resize that cannot be done, before any change."""
    old_gb, new_gb = int(instance.flavor.root_gb or 0), int(flavor.root_gb or 0)
    disk = facts.root_disk
    eph_gb = _ephemeral_gb(instance, block_device_info)
    if int(flavor.ephemeral_gb or 0) < eph_gb:
        # As Nova's libvirt driver: ephemeral disks cannot shrink.
        raise _refuse(f"the ephemeral disks cannot shrink: flavor {flavor.name} has "
                      f"{int(flavor.ephemeral_gb or 0)} GB, the instance {eph_gb} GB")
    if facts.boot_from_volume:
        pass  # the root disk is a volume: its size is Cinder's, not the flavor's
    elif new_gb < old_gb:
        raise _refuse(f"the root disk cannot shrink: flavor {flavor.name} has {new_gb} GB, "
                      f"the instance's flavor {old_gb} GB")
    if disk is not None and new_gb and new_gb * units.Mi < disk.capacity_kb:
        raise _refuse(f"the root disk cannot shrink: flavor {flavor.name} has {new_gb} GB, "
                      f"the disk {disk.capacity_kb / units.Mi:g} GB")
    if (_grown_kb(flavor, facts) or _ephemeral_grows(flavor, facts)) and facts.has_snapshots:
        raise _refuse("a disk cannot grow while the VM has snapshots in vCenter; "
                      "delete them first")
    if settings.hw_version and facts.version and settings.hw_version != facts.version:
        raise _refuse(f"flavor {flavor.name} asks for virtual hardware {settings.hw_version}, "
                      f"the VM has {facts.version}: a resize does not change the hardware "
                      "version (it could not be reverted)")



# -- finish_migration (destination) -----------------------------------------------------------


class _Finish:
    """One finish_migration: its steps, and what to undo when one fails."""

    def __init__(self, ops: Migrations, services: Services, rules: InstanceRules, context,
                 instance, migration, target: ClusterRef, source: ClusterRef, facts: VmFacts,
                 record: ResizeRecord, settings) -> None:
        self.ops = ops
        self.services = services
        self.rules = rules
        self.session = services.session
        self.context = context
        self.instance = instance
        self.migration = migration
        self.target = target
        self.source = source
        self.facts = facts
        self.record = record
        self.settings = settings
        self.recorded = False
        #: A disk copy made but not yet in the record (deleted if the resize fails).
        self.stray_backup: str | None = None
        self.stray_ephemeral: str | None = None
        #: The VM's host-group pin changes within its cluster.
        self.repin = False
        #: The root disk was a linked clone and is standalone now (for good:
        #: vCenter does not link a disk again; its contents are the same).
        self.unlinked = False

    def run(self, power_on: bool) -> None:
        session, instance, facts = self.session, self.instance, self.facts
        vm_ref = facts.ref
        # 1. Where the VM is now, on the VM: a revert (or the rollback
        # below) needs it, whichever nova-compute runs it, whenever.
        session.run_task("ReconfigVM_Task", vm_ref,
                         spec=resize_vm.options_spec(session, self.record.options()))
        self.recorded = True
        group = server_group(self.context, instance)
        state = self.services.states.read(self.migration.dest_node)
        grow_kb = _grown_kb(instance.flavor, facts)
        # 2. A host (and datastore) that fits the new size; move there.
        if facts.cluster == self.target.moref:
            moved = self._within_cluster(state, group)
        else:
            moved = self._across_clusters(state, group, grow_kb)
        if moved:
            facts = resize_vm.read_facts(session, vm_ref)
        # 3. Keep the root disk as it is before it grows: a disk cannot shrink,
        # so a revert puts this copy back.
        record = self.record
        grow = None
        if grow_kb is not None and facts.root_disk is not None:
            disk = facts.root_disk
            backup = self._copy_for_revert(disk, f"{instance.uuid}-pre-resize", "root disk")
            self.stray_backup = backup
            record = dataclasses.replace(record, disk_backup=backup)
            if disk.parent is not None:
                # A linked clone of the image cache: vCenter never grows a disk
                # with a parent. Unlinked after the copy, so that a failed
                # promotion changes nothing; a revert puts the copy back, a
                # standalone disk (nothing is linked again).
                LOG.info("Unlinking the root disk from %s so that it can grow", disk.parent,
                         instance=instance)
                disk = resize_vm.unlink(session, vm_ref, disk)
                self.unlinked = True
            grow = (disk.device, grow_kb)
        # 3b. The ephemeral and swap disks of the new flavor (a grown
        # ephemeral disk kept as it was, like the root disk).
        record, local_changes = self._local_disks(facts, record)
        # 4. The new size, the flavor's limits/reservations/shares and the
        # grown disks in one reconfiguration (all or nothing in vCenter).
        flavor = instance.flavor
        spec = resize_vm.size_spec(session, int(flavor.vcpus), int(flavor.memory_mb),
                                   policy.resource_settings(self.settings),
                                   policy.annotation(instance, flavor),
                                   record.options() if grow or local_changes else {}, grow,
                                   local_changes)
        session.run_task("ReconfigVM_Task", vm_ref, spec=spec)
        self.record, self.stray_backup, self.stray_ephemeral = record, None, None
        # 5. DRS rules follow the VM.
        if facts.cluster != self.source.moref:
            self.rules.join(self.target, instance, vm_ref, self.settings, group)
            self.rules.prune_managed(self.source.moref, facts.moref)
        elif self.repin:
            self.rules.join(self.target, instance, vm_ref, self.settings, group)
        if power_on:
            self.services.vmops.power_on(vm_ref)

    def _copy_for_revert(self, disk, stem: str, what: str) -> str:
        """Copy ``disk`` beside itself as ``<stem>-<migration>.vmdk``; the copy's path."""
        folder = posixpath.dirname(resize_vm.split_path(disk.path)[1])
        backup = f"[{disk.datastore_name}] {folder}/{stem}-{self.migration.uuid[:8]}.vmdk"
        LOG.info("Keeping a copy of the %s for a revert: %s", what, backup,
                 instance=self.instance)
        session = self.session
        session.run_task("CopyVirtualDisk_Task", session.content.virtualDiskManager,
                         sourceName=disk.path, sourceDatacenter=_datacenter(self.target),
                         destName=backup, destDatacenter=_datacenter(self.target),
                         # Only an earlier attempt of this migration left one there.
                         force=True)
        return backup

    def _local_disks(self, facts: VmFacts, record: ResizeRecord) -> tuple[ResizeRecord, list]:
        """(record, deviceChanges) for the new flavor's ephemeral and swap disks.

        The only ephemeral disk grows to the flavor's ``ephemeral_gb`` (a copy
        of it as it was kept for a revert); a flavor with ephemeral storage
        adds one to a VM without; the swap disk is made anew at the flavor's
        ``swap`` (its contents are the guest's scratch space), or removed.
        """
        session, flavor = self.session, self.instance.flavor
        changes: list = []
        home_ds, vmx = resize_vm.split_path(facts.vmx_path)
        home_dir = posixpath.dirname(vmx)
        all_devices = list(facts.devices)
        near = facts.root_disk or (facts.volumes[0] if facts.volumes else None)
        # New disks get the instance's storage policy, as at spawn.
        storage_policy = self.ops.storage.policy(flavor, self.settings)
        profile_id = storage_policy.profile_id if storage_policy else None
        eph_kb = _ephemeral_grows(flavor, facts)
        if eph_kb is not None:
            eph = facts.ephemerals[0]
            backup = self._copy_for_revert(eph, "ephemeral_0-pre-resize", "ephemeral disk")
            self.stray_ephemeral = backup
            record = dataclasses.replace(record, ephemeral_kb=eph.capacity_kb,
                                         ephemeral_backup=backup)
            changes.append(resize_vm.grow_change(session, eph, eph_kb))
        elif not facts.ephemerals and int(flavor.ephemeral_gb or 0):
            path = f"[{home_ds}] {home_dir}/{block_devices.EPHEMERAL_NAME.format(0)}"
            changes.append(resize_vm.new_disk_change(
                session, all_devices, near, path, int(flavor.ephemeral_gb) * units.Mi,
                resize_vm.NEW_EPHEMERAL_KEY, profile_id))
            all_devices.append(changes[-1].device)  # its unit is taken now
            record = dataclasses.replace(record, ephemeral_kb=0)
        swap_kb = int(flavor.swap or 0) * units.Ki
        current = facts.swap.capacity_kb if facts.swap is not None else 0
        if swap_kb != current:
            if facts.swap is not None:
                changes.append(resize_vm.remove_change(session, facts.swap))
                all_devices = [d for d in all_devices if d.key != facts.swap.device.key]
            if swap_kb:
                path = f"[{home_ds}] {home_dir}/{block_devices.SWAP_NAME}"
                changes.append(resize_vm.new_disk_change(
                    session, all_devices, near, path, swap_kb, resize_vm.NEW_SWAP_KEY,
                    profile_id))
            record = dataclasses.replace(record, swap_kb=current)
        return record, changes

    def _within_cluster(self, state: ClusterState, group) -> bool:
        """Stay on the VM's host if the new size fits there, else let our DRS move it."""
        facts = self.facts
        self.repin = self.rules.pin_changes(self.target, facts.moref, self.settings)
        if self.repin:
            # Out of its old pin first: vCenter refuses to move a VM against
            # a "must" VM-Host rule.
            self.rules.unpin(self.target, facts.moref)
        if not _builtin_drs():
            return False  # vCenter's DRS places the VM when it powers on
        current = state.datastore(facts.datastore) if facts.datastore else None
        host = self.ops.choose_host(state, self.instance, group, self.settings, facts.moref,
                                    [current] if current else [], keep=facts.host,
                                    required=_volume_datastores(facts),
                                    hw_version=facts.version)
        if host.moref == facts.host:
            return False
        LOG.info("Moving the instance to ESXi host %s for its new size", host.name,
                 instance=self.instance)
        vmotion(self.session, facts.moref, host.moref)
        return True

    def _across_clusters(self, state: ClusterState, group, grow_kb: int | None) -> bool:
        """Relocate the VM into the target cluster: its root pool, a host, a datastore."""
        facts, instance = self.facts, self.instance
        disk_kb = facts.root_disk.capacity_kb if facts.root_disk else 0
        # On the datastore it ends on: the disk at its new size, plus the copy
        # kept for a revert when it grows.
        final_kb = (grow_kb or disk_kb) + (disk_kb if grow_kb else 0)
        host = datastore = None
        current = state.datastore(facts.datastore) if facts.datastore else None
        if current is not None and current.accessible and \
                current.free_bytes >= (final_kb - disk_kb) * units.Ki:
            # The VM's datastore is mounted there too: keep its files where they are.
            if _builtin_drs():
                try:
                    host = self.ops.choose_host(state, instance, group, self.settings,
                                                facts.moref, [current],
                                                required=_volume_datastores(facts),
                                                hw_version=facts.version)
                except exception.ComputeResourcesUnavailable as exc:
                    LOG.info("No host that mounts %s fits (%s); moving storage too",
                             current.name, exc, instance=instance)
                    current = None
        else:
            current = None
        if current is None:
            # Where the instance's storage policy allows (its association moves with it).
            storage = self.ops.storage
            _, stores = storage.datastores(
                state, datastores_with_room(state, CONF.vsphere.datastore_regex,
                                            final_kb * units.Ki),
                storage.policy(instance.flavor, self.settings), final_kb * units.Ki)
            if _builtin_drs():
                host = self.ops.choose_host(state, instance, group, self.settings, facts.moref,
                                            stores, required=_volume_datastores(facts),
                                            hw_version=facts.version)
            datastore = pick_datastore(stores, host)
        LOG.info("Relocating the instance to cluster %s (host %s, datastore %s)",
                 self.target.name, host.name if host else "chosen by vCenter DRS",
                 datastore.name if datastore else facts.datastore_name, instance=instance)
        self.ops.relocate(facts.ref, host.moref if host else None, self.target.resource_pool,
                  datastore.moref if datastore else None, keep=facts.volume_locators())
        return True

    def rollback(self) -> None:
        """Put the VM back as it was when finish_migration started (powered off)."""
        if not self.recorded:
            return  # nothing changed
        instance = self.instance
        old_flavor = (instance.old_flavor if instance.obj_attr_is_set("old_flavor") else None) \
            or instance.flavor
        if self.unlinked:
            LOG.info("The root disk stays unlinked from the image: same size and contents, "
                     "its own copy of the image's data", instance=instance)
        try:
            with errors.translated(instance):
                for stray in (self.stray_backup, self.stray_ephemeral):
                    if not stray:
                        continue
                    try:
                        self.ops.delete_disk(stray, self.target)
                    except Exception as exc:
                        LOG.warning("Could not delete %s: %s", stray, exc, instance=instance)
                now = resize_vm.read_facts(self.session, self.facts.ref)
                # Back to the recorded host as is: the VM was there a moment ago.
                self.ops.restore(self.context, instance, now, self.record,
                        (self.facts.vcpus, self.facts.memory_mb), policy.flavor_settings(
                            old_flavor), policy.annotation(instance, old_flavor), use_drs=False)
        except Exception as exc:
            LOG.error("Could not undo the failed resize; the VM needs an operator's look "
                      "(resize record: %s): %s", self.record, exc, instance=instance)


class Migrations:
    """Resize and cold migration of one driver's instances (built once; holds no state)."""

    def __init__(self, services: Services, hosts: HostSelection, rules: InstanceRules,
                 power: PowerOps, storage: InstanceStoragePolicy) -> None:
        self._services = services
        #: The instances' storage policies (the datastores a move may choose).
        self.storage = storage
        self._session = services.session
        self._vmops = services.vmops
        self._vm_refs = services.vm_refs
        self._states = services.states
        self._nodes = services.nodes
        self._drs = services.drs
        self._hosts = hosts
        self._rules = rules
        self._power = power

    def _cluster_ref(self, moref: str) -> ClusterRef | None:
        """The cluster ``moref``: a node of this driver, or found in vCenter."""
        managed = self._nodes.managed(moref)
        if managed is not None:
            return managed
        return next((c for c in self._states.find_clusters() if c.moref == moref), None)

    def choose_host(self, state: ClusterState, instance, group, settings,
                    vm_moref: str, stores: list, keep: str | None = None,
                    required: frozenset[str] = frozenset(),
                    hw_version: str | None = None) -> EsxiHostState:
        """A host of ``state`` for the instance at its flavor's size (claimed by our DRS).

        The VM's own footprint is taken out of the cluster first: a VM that is
        already there must not compete with itself for room. ``keep`` (the host
        it is on) wins whenever it still fits, so a resize moves nothing it
        need not; otherwise our DRS picks the host as for a new instance. Only
        hosts the flavor's extra specs allow qualify, as at spawn, and only
        hosts that run the VM's hardware version ``hw_version``.
        """
        without = dataclasses.replace(state, vms=tuple(v for v in state.vms if v.moref != vm_moref))
        version = settings.hw_version or hw_version
        versions = self._states.hardware_versions(state.ref) if version else None
        eligible = policy.eligible_hosts(instance.flavor,
                                         dataclasses.replace(settings, hw_version=version),
                                         without, versions)
        current = without.host(keep) if keep is not None else None
        if current is not None and current.usable:
            # The same placement, with every other host out of the question.
            only_here = dataclasses.replace(without, hosts=tuple(
                h if h.moref == keep else dataclasses.replace(h, in_maintenance=True)
                for h in without.hosts))
            try:
                return self._hosts.place(only_here, instance, group, stores, settings.host_group,
                                         required, eligible)
            except exception.ComputeResourcesUnavailable as exc:
                LOG.info("Host %s no longer fits the instance (%s); asking DRS for another",
                         current.name, exc, instance=instance)
        return self._hosts.place(without, instance, group, stores, settings.host_group,
                                 required, eligible)

    def relocate(self, vm_ref, host: str | None, pool: str | None = None,
                  datastore: str | None = None, keep=()) -> None:
        session = self._session
        session.run_task("RelocateVM_Task", vm_ref,
                         spec=resize_vm.relocate_spec(session, host, pool, datastore, keep))

    def delete_disk(self, path: str, ref: ClusterRef) -> None:
        """Delete a virtual disk file; one that is already gone is fine."""
        try:
            self._session.run_task("DeleteVirtualDisk_Task",
                                     self._session.content.virtualDiskManager, name=path,
                                     datacenter=_datacenter(ref))
        except vexc.FileNotFoundException:
            LOG.debug("Disk %s is already gone", path)

    def migrate_disk_and_power_off(self, context, instance, dest: str, flavor,
                                   network_info, block_device_info=None, timeout: int = 0,
                                   retry_interval: int = 0) -> str:
        """Check the resize, power the VM off; returns its root disk as JSON.

        The VM is not moved or resized here: the destination nova-compute does
        that in finish_migration, where the target cluster is known.
        """
        try:
            settings = policy.flavor_settings(flavor)
        except exception.Invalid as exc:
            raise _refuse(exc.format_message()) from None
        vm_ref = self._vm_refs.find(instance)
        with errors.translated(instance):
            facts = resize_vm.read_facts(self._session, vm_ref)
        check_resizable(instance, flavor, settings, facts, block_device_info)
        if facts.power_state != POWERED_OFF:
            try:
                self._power.power_off(instance, timeout, retry_interval)
            except Exception as exc:
                LOG.warning("Could not power off for the resize: %s", exc, instance=instance)
                self._power_back_on(instance, vm_ref, facts)
                raise exception.InstanceFaultRollback(inner_exception=exc) from exc
        disk = facts.root_disk
        return json.dumps([] if disk is None else [
            {"type": "root", "path": disk.path, "datastore": disk.datastore_name,
             "capacity_kb": disk.capacity_kb}])

    def _power_back_on(self, instance, vm_ref, before: VmFacts) -> None:
        if before.power_state != POWERED_ON:
            return
        try:
            state = self._vmops.properties(vm_ref, ["runtime.powerState"]).get("runtime.powerState")
            if str(state) != POWERED_ON:
                self._vmops.power_on(vm_ref)
        except Exception as exc:  # the original failure is what Nova must see
            LOG.error("Could not power the VM back on: %s", exc, instance=instance)

    def _drop_stale(self, instance, facts: VmFacts, stale: ResizeRecord,
                    ref: ClusterRef) -> None:
        """A record of an earlier migration that was never confirmed or reverted.

        Nova starts no resize while one awaits confirmation, so that migration
        was abandoned (e.g. its instance was reset); the new record replaces
        it, and the disk copy it kept would otherwise be left behind.
        """
        LOG.warning("The VM still carries the resize record of migration %s; replacing it",
                    stale.migration, instance=instance)
        in_use = {d.path for d in (facts.root_disk, *facts.ephemerals) if d is not None}
        for backup in (stale.disk_backup, stale.ephemeral_backup):
            if not backup or backup in in_use:
                continue
            try:
                with errors.translated(instance):
                    self.delete_disk(backup, ref)
            except Exception as exc:  # a leftover file, not a reason to fail the resize
                LOG.warning("Could not delete %s: %s", backup, exc, instance=instance)

    def finish_migration(self, context, migration, instance, disk_info,
                         network_info, image_meta, resize_instance: bool, allocations,
                         block_device_info=None, power_on: bool = True) -> None:
        """Place, move and resize the VM on this node; power it on if asked.

        ``disk_info`` and ``resize_instance`` are not needed: the VM's state is
        read from vCenter, and the disk grows when the flavor's root_gb exceeds
        its capacity. On failure the VM is put back (place, size, root disk,
        rules) and stays powered off, as it was when the call started.
        """
        target = self._nodes.cluster(migration.dest_node)
        settings = policy.flavor_settings(instance.flavor)
        vm_ref = self._vm_refs.find(instance)
        with errors.translated(instance):
            facts = resize_vm.read_facts(self._session, vm_ref)
            source = self._cluster_ref(facts.cluster)
        if source is None or source.datacenter != target.datacenter:
            raise exception.MigrationError(
                reason=f"the VM is in cluster {source.name if source else facts.cluster} of "
                f"another datacenter than cluster {target.name}; cold migration moves VMs "
                "between clusters of one datacenter")
        existing = facts.record
        if existing is not None and existing.migration != migration.uuid:
            self._drop_stale(instance, facts, existing, source)
        record = existing if existing is not None and existing.migration == migration.uuid else \
            ResizeRecord(migration=migration.uuid, cluster=facts.cluster, pool=facts.pool,
                         host=facts.host, datastore=facts.datastore,
                         disk_kb=facts.root_disk.capacity_kb if facts.root_disk else None)
        work = _Finish(self, self._services, self._rules, context, instance, migration,
                       target, source, facts, record, settings)
        try:
            with errors.translated(instance):
                work.run(power_on)
        except Exception:
            with excutils.save_and_reraise_exception():
                LOG.error("Resize/migration to %s failed; putting the VM back", target.name,
                          instance=instance)
                work.rollback()
        finally:
            self._drs.release(target.moref, instance.uuid)

    def restore(self, context, instance, facts: VmFacts,
                record: ResizeRecord | None, size: tuple[int, int], settings, annotation: str,
                use_drs: bool) -> None:
        """Bring the VM back to ``record``'s place at ``size`` with ``settings`` (powered off).

        Every step looks at the VM as it is, so a restore that failed half-way
        can run again. ``use_drs``: a host other than the recorded one when
        that no longer fits (a revert comes hours later); without it the VM
        goes back to the recorded host as is.
        """
        session, vm_ref = self._session, facts.ref
        if facts.power_state != POWERED_OFF:
            self._vmops.power_off(vm_ref)
        disk = facts.root_disk
        if record is not None and record.disk_backup and disk is not None \
                and disk.path != record.disk_backup:
            # The grown disk goes; the copy of the disk as it was takes its place.
            LOG.info("Restoring the root disk from %s", record.disk_backup, instance=instance)
            session.run_task("ReconfigVM_Task", vm_ref, spec=resize_vm.swap_disk_spec(
                session, disk, record.disk_backup, record.disk_kb))
        if record is not None:
            self._restore_local_disks(instance, facts, record)
        here = self._cluster_ref(facts.cluster)
        home = self._cluster_ref(record.cluster) if record is not None else here
        if home is None:
            raise exception.NovaException(
                message=f"the VM's cluster {record.cluster if record else facts.cluster} is not in "
                "vCenter any more")
        group = server_group(context, instance)
        moved = home.moref != facts.cluster
        repin = not moved and here is not None and \
            self._rules.pin_changes(here, facts.moref, settings)
        if repin:
            self._rules.unpin(here, facts.moref)
        if record is not None and (moved or facts.host != record.host
                                   or (record.datastore and facts.datastore != record.datastore)):
            host = record.host
            home_node = self._nodes.managed(home.moref)
            if use_drs and home_node is not None and _builtin_drs():
                state = self._states.read(self._nodes.nodename(home_node))
                current = state.datastore(record.datastore) if record.datastore else None
                host = self.choose_host(state, instance, group, settings, facts.moref,
                                   [current] if current else [], keep=record.host,
                                   required=_volume_datastores(facts)).moref
            LOG.info("Moving the instance back to cluster %s, host %s", home.name, host,
                     instance=instance)
            self.relocate(vm_ref, host, record.pool if facts.pool != record.pool else None,
                      record.datastore if record.datastore != facts.datastore else None,
                      keep=facts.volume_locators())
        vcpus, memory_mb = size
        session.run_task("ReconfigVM_Task", vm_ref, spec=resize_vm.size_spec(
            session, vcpus, memory_mb, policy.resource_settings(settings), annotation,
            resize_vm.cleared_options()))
        if moved:
            self._rules.join(home, instance, vm_ref, settings, group)
            self._rules.prune_managed(facts.cluster, facts.moref)
        elif repin:
            self._rules.join(home, instance, vm_ref, settings, group)
        else:
            self._rules.sync_group(home, instance, group)

    def _restore_local_disks(self, instance, facts: VmFacts, record: ResizeRecord) -> None:
        """The ephemeral and swap disks as ``record`` says they were before the resize."""
        session, changes = self._session, []
        spec = None
        eph = facts.ephemerals[0] if len(facts.ephemerals) == 1 else None
        if record.ephemeral_backup and eph is not None and eph.path != record.ephemeral_backup:
            LOG.info("Restoring the ephemeral disk from %s", record.ephemeral_backup,
                     instance=instance)
            spec = resize_vm.swap_disk_spec(session, eph, record.ephemeral_backup,
                                            record.ephemeral_kb)
        elif record.ephemeral_kb == 0 and eph is not None:
            changes.append(resize_vm.remove_change(session, eph))  # the resize added it
        swap = facts.swap
        if record.swap_kb is not None and (swap.capacity_kb if swap else 0) != record.swap_kb:
            devices = list(facts.devices)
            if swap is not None:
                changes.append(resize_vm.remove_change(session, swap))
                devices = [d for d in devices if d.key != swap.device.key]
            if record.swap_kb:
                home_ds, vmx = resize_vm.split_path(facts.vmx_path)
                path = f"[{home_ds}] {posixpath.dirname(vmx)}/{block_devices.SWAP_NAME}"
                storage_policy = self.storage.policy(
                    instance.flavor, policy.flavor_settings(instance.flavor))
                changes.append(resize_vm.new_disk_change(
                    session, devices, facts.root_disk, path, record.swap_kb,
                    resize_vm.NEW_SWAP_KEY,
                    storage_policy.profile_id if storage_policy else None))
        if spec is None and not changes:
            return
        spec = spec or session.factory("VirtualMachineConfigSpec")
        spec.deviceChange = list(spec.deviceChange or []) + changes
        session.run_task("ReconfigVM_Task", facts.ref, spec=spec)

    def finish_revert_migration(self, context, instance, network_info,
                                migration, block_device_info=None, power_on: bool = True) -> None:
        """Put the VM back where it was before the resize, at the old flavor, and power it on.

        Nova has already restored the old flavor, host and node on the instance.
        Also called by Nova after a crash in migrate_disk_and_power_off (no
        record then: the VM did not move; it gets its flavor's size back).
        """
        vm_ref = self._vm_refs.find(instance)
        flavor = instance.flavor
        settings = policy.flavor_settings(flavor)
        with errors.translated(instance):
            facts = resize_vm.read_facts(self._session, vm_ref)
            record = facts.record
            if record is not None and migration is not None and record.migration != migration.uuid:
                LOG.warning("The VM's resize record belongs to migration %s, not %s; restoring "
                            "what it records", record.migration, migration.uuid, instance=instance)
            try:
                self.restore(context, instance, facts, record,
                        (int(flavor.vcpus), int(flavor.memory_mb)), settings,
                        policy.annotation(instance, flavor), use_drs=True)
            finally:
                for ref in self._nodes.values():
                    self._drs.release(ref.moref, instance.uuid)
            if power_on:
                self._vmops.power_on(vm_ref)

    def confirm_migration(self, context, migration, instance,
                          network_info) -> None:
        """The resize stays: delete the copy of the old root disk and the resize record."""
        vm_ref = self._vm_refs.find(instance, required=False)
        if vm_ref is None:
            LOG.info("Instance has no VM in vCenter; nothing to confirm", instance=instance)
            return
        with errors.translated(instance):
            facts = resize_vm.read_facts(self._session, vm_ref)
            record = facts.record
            if record is None:
                return
            if migration is not None and record.migration != migration.uuid:
                LOG.warning("The VM's resize record belongs to migration %s, not %s; it is "
                            "cleared all the same", record.migration, migration.uuid,
                            instance=instance)
            disk = facts.root_disk
            if record.disk_backup and (disk is None or disk.path != record.disk_backup):
                here = self._cluster_ref(facts.cluster)
                LOG.info("Deleting the copy of the old root disk %s", record.disk_backup,
                         instance=instance)
                self.delete_disk(record.disk_backup, here)
            if record.ephemeral_backup and all(e.path != record.ephemeral_backup
                                               for e in facts.ephemerals):
                self.delete_disk(record.ephemeral_backup, self._cluster_ref(facts.cluster))
            session = self._session
            session.run_task("ReconfigVM_Task", vm_ref,
                             spec=resize_vm.options_spec(session, resize_vm.cleared_options()))
        if facts.cluster != record.cluster:
            self._rules.prune_managed(record.cluster, facts.moref)
