"""Spawn: a new instance as a VM on the ESXi host our DRS picks, on a datastore with room.

A spawn is planned first -- flavor settings, server group, a fresh read of
the cluster, the datastores with room for the root disk (and compatible
with the instance's storage policy, ``ops/instance_storage_policy.py``),
the host (claimed by our DRS until the VM exists; in ``[vsphere_drs] mode
= vcenter`` none, and vCenter's DRS decides) and the datastore -- and then
built in steps
(:attr:`SpawnOps.STEPS`), each a method taking the :class:`SpawnBuild`:

1. ``root_disk``: the image, cached per datastore, as the root disk (a
   VMDK image), or a blank root disk and the cached ISO for a CD-ROM drive
   (an ISO image); none when the root disk is a Cinder volume;
2. ``volumes``: Cinder volumes on a datastore the chosen host does not reach
   are moved where it does (as the in-tree driver moves a root volume);
3. ``config_drive``: Nova's metadata on an ISO image in the instance's
   folder, when Nova wants one (ops/config_drive.py);
4. ``create_vm``: CreateVM_Task with the flavor's size, the guest type,
   the NICs on the networks the VIFs' bindings name, the storage policy on
   the VM and the disks it creates, the notes that say who it is, and all
   its disks and drives in one go (ops/block_devices.py): root disk, the
   volumes of ``block_device_info`` in order on the bus each asks for,
   ephemeral and swap disks, the ISO image's and the config drive's CD-ROM
   drives -- so everything is there before power-on;
5. ``join_rules``: the server group's DRS rule and the host-group pin,
   before power-on so that vCenter's DRS and HA honour them too;
6. ``power_on``.

The host our DRS picks mounts every volume's datastore when one does. A
failing step leaves nothing behind: the claim is released, the volumes are
taken off the VM (they are Cinder's, and stay as they are), the VM and its
folder are removed and its rule entries dropped (:meth:`SpawnOps.undo`).
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any

import nova.conf
from nova import exception
from oslo_log import log as logging
from oslo_utils import units
from oslo_vmware import exceptions as vexc
from oslo_vmware import vim_util

from nova_vsphere_driver import extra_specs, policy
from nova_vsphere_driver.datastore_selection import datastores_with_room, pick_datastore
from nova_vsphere_driver.ops import block_devices
from nova_vsphere_driver.ops.config_drive import ConfigDrives
from nova_vsphere_driver.ops.guest_os import GuestTypes
from nova_vsphere_driver.ops.host_selection import HostSelection
from nova_vsphere_driver.ops.instance_rules import InstanceRules, server_group
from nova_vsphere_driver.ops.instance_storage_policy import InstanceStoragePolicy
from nova_vsphere_driver.ops.nics import NicResolver, nic_adapter
from nova_vsphere_driver.ops.root_disk import RootDisks, adapter_type, image_props, is_iso
from nova_vsphere_driver.ops.vm_folders import VmFolders
from nova_vsphere_driver.ops.volumes import VolumeDisk, Volumes
from nova_vsphere_driver.services import Services
from nova_vsphere_driver.vsphere import errors
from nova_vsphere_driver.vsphere.cluster_state import (
    ClusterRef,
    ClusterState,
    DatastoreState,
    EsxiHostState,
)
from nova_vsphere_driver.vsphere.device_layout import NoFreeSlot
from nova_vsphere_driver.vsphere.spbm import StoragePolicy
from nova_vsphere_driver.vsphere.vm import (
    DEFAULT_ADAPTER_TYPE,
    DEFAULT_NIC_ADAPTER,
    ExtraDisk,
    RootDisk,
    VmSpec,
    build_config_spec,
)

LOG = logging.getLogger(__name__)
CONF = nova.conf.CONF

#: Tries, and seconds between them (growing), to remove what a failed spawn made.
CLEANUP_ATTEMPTS = 3
CLEANUP_RETRY_SECONDS = 0.5


@dataclasses.dataclass
class SpawnBuild:
    """One spawn: what it was asked, what it planned, and what it has made so far."""

    context: Any
    instance: Any
    image_meta: Any
    network_info: Any
    block_device_info: Any
    power_on: bool
    settings: extra_specs.FlavorSettings
    group: Any
    ref: ClusterRef
    state: ClusterState
    #: None: vCenter's DRS picks the host ([vsphere_drs] mode = vcenter).
    host: EsxiHostState | None
    datastore: DatastoreState
    #: What block_device_info and the flavor ask for besides the image.
    devices: block_devices.BlockDevices = block_devices.BlockDevices()
    #: The volumes of ``devices``, as Cinder's backing VMs hold them (same order).
    volumes: tuple[VolumeDisk, ...] = ()
    injected_files: Any = None
    admin_password: str | None = None
    #: The network adapter type of the instance's NICs (the image's hw_vif_model).
    adapter: str = DEFAULT_NIC_ADAPTER
    #: The storage policy of the VM's home and disks (None: storage policies off).
    storage_policy: StoragePolicy | None = None
    root: RootDisk | None = None
    #: The cached ISO image the VM boots from ("[ds] path.iso"), for an ISO image.
    iso_image: str | None = None
    #: The config drive in the instance's folder ("[ds] path.iso"), once uploaded.
    config_drive: str | None = None
    #: The VM, once CreateVM_Task made it.
    vm_ref: Any = None
    #: The CreateVM_Task, once started (its VM may appear after a failed wait).
    create_task: Any = None

    @property
    def folder(self) -> str:
        """The instance's folder on its datastore."""
        return f"[{self.datastore.name}] {self.instance.uuid}"


class SpawnOps:
    """ComputeDriver.spawn for one driver (built once; thread-safe)."""

    #: The steps of a spawn, in order (method names; each takes the SpawnBuild).
    STEPS = ("root_disk", "volumes", "config_drive", "create_vm", "join_rules", "power_on")

    def __init__(self, services: Services, hosts: HostSelection, rules: InstanceRules,
                 nics: NicResolver, folders: VmFolders, root_disks: RootDisks,
                 guest_types: GuestTypes, volumes: Volumes,
                 config_drives: ConfigDrives, storage: InstanceStoragePolicy) -> None:
        self._services = services
        self._storage = storage
        self._hosts = hosts
        self._rules = rules
        self._nics = nics
        self._folders = folders
        self._root_disks = root_disks
        self._guest_types = guest_types
        self._volumes = volumes
        self._config_drives = config_drives

    def spawn(self, context, instance, image_meta, network_info=None, block_device_info=None,
              power_on: bool = True, injected_files=None, admin_password=None) -> None:
        build = self.plan(context, instance, image_meta, network_info, block_device_info,
                          power_on)
        build.injected_files, build.admin_password = injected_files, admin_password
        try:
            for step in self.STEPS:
                getattr(self, step)(build)
        except Exception:
            self.undo(build)
            raise

    # -- the plan -------------------------------------------------------------------------

    def plan(self, context, instance, image_meta, network_info, block_device_info,
             power_on: bool) -> SpawnBuild:
        """Where the instance goes: a host claimed for it (builtin DRS) and a datastore."""
        services = self._services
        nodename = instance.node
        ref = services.nodes.cluster(nodename)
        flavor = instance.flavor
        settings = policy.flavor_settings(flavor)
        # What the mapping asks for, checked before anything is read or made.
        devices = block_devices.requested(instance, block_device_info)
        volumes = tuple(self._volumes.volume_disk(v.connection_info) for v in devices.volumes)
        group = server_group(context, instance)
        state = services.states.read(nodename)
        # The hosts the flavor's extra specs allow (hardware version, CPU
        # reservation): none in this cluster is an error before anything is made.
        versions = services.states.hardware_versions(ref) if settings.hw_version else None
        eligible = policy.eligible_hosts(flavor, settings, state, versions)
        root_bytes = 0 if devices.boot_from_volume else int(flavor.root_gb or 0) * units.Gi
        need_bytes = root_bytes + devices.local_bytes
        # Image properties vSphere cannot honour are refused before anything is made.
        adapter = nic_adapter(image_meta)
        storage_policy = self._storage.policy(flavor, settings)
        storage_policy, stores = self._storage.datastores(
            state, datastores_with_room(state, CONF.vsphere.datastore_regex, need_bytes),
            storage_policy, need_bytes)
        # builtin: our DRS picks the host; vcenter: CreateVM_Task gets none and
        # vCenter's DRS decides.
        host = self._place(state, instance, group, stores, settings, volumes, eligible) \
            if CONF.vsphere_drs.mode == "builtin" else None
        return SpawnBuild(context=context, instance=instance, image_meta=image_meta,
                          network_info=network_info, block_device_info=block_device_info,
                          power_on=power_on, settings=settings, group=group, ref=ref,
                          state=state, host=host, datastore=pick_datastore(stores, host),
                          devices=devices, volumes=volumes, adapter=adapter,
                          storage_policy=storage_policy)

    def _place(self, state: ClusterState, instance, group, stores, settings,
               volumes: tuple[VolumeDisk, ...],
               eligible: frozenset[str] | None) -> EsxiHostState:
        """A host that mounts every volume's datastore; any host when none does (the
        volumes it does not reach are then moved: :meth:`volumes`); only ``eligible``
        hosts (None: any)."""
        by_name = {d.name: d.moref for d in state.datastores}
        required = frozenset(by_name[v.datastore_name] for v in volumes
                             if v.datastore_name in by_name)
        if required:
            try:
                return self._hosts.place_new(state, instance, group, stores,
                                             settings.host_group, required, eligible)
            except exception.ComputeResourcesUnavailable as exc:
                LOG.info("No host reaches every volume's datastore (%s); volumes will be "
                         "moved to the instance's", exc, instance=instance)
        return self._hosts.place_new(state, instance, group, stores, settings.host_group,
                                     eligible=eligible)

    # -- the steps ------------------------------------------------------------------------

    def root_disk(self, build: SpawnBuild) -> None:
        """The image (cached per datastore, whatever its VMDK type) as the root disk; an
        ISO image cached for a CD-ROM drive with a blank root disk; none for a root volume."""
        if build.devices.boot_from_volume:
            # Checked here as for an image: an unknown guest type creates nothing.
            self._guest_types.guest_id(build.context, build.image_meta)
            return
        if is_iso(build.image_meta) and build.instance.image_ref:
            self._guest_types.guest_id(build.context, build.image_meta)
            build.iso_image = self._root_disks.iso_image(build.context, build.instance,
                                                         build.image_meta, build.ref,
                                                         build.datastore)
            build.root = self._root_disks.blank_root_disk(build.instance, build.image_meta)
            return
        build.root = self._root_disks.root_disk(build.context, build.instance, build.image_meta,
                                                build.ref, build.datastore)

    def volumes(self, build: SpawnBuild) -> None:
        """Volumes on datastores the VM's host does not mount move to the VM's datastore."""
        if not build.volumes:
            return
        if build.host is not None:
            hosts = [build.host]
        else:  # vCenter's DRS picks any usable host
            hosts = build.state.usable_hosts()
        reach = set.intersection(*(set(h.datastores) for h in hosts)) if hosts else set()
        by_name = {d.name: d.moref for d in build.state.datastores}
        moved = []
        for volume in build.volumes:
            if by_name.get(volume.datastore_name) in reach:
                moved.append(volume)
                continue
            host = build.host or next((h for h in hosts
                                       if build.datastore.moref in h.datastores), None)
            moved.append(self._volumes.relocate_backing(
                volume, build.datastore.moref, build.ref.resource_pool,
                host.moref if host is not None else None))
        build.volumes = tuple(moved)

    def config_drive(self, build: SpawnBuild) -> None:
        """Nova's metadata on an ISO image in the instance's folder, if Nova wants one."""
        instance = build.instance
        if not self._config_drives.required(instance, build.image_meta):
            return
        data = self._config_drives.build(instance, build.network_info, build.injected_files,
                                         build.admin_password)
        build.config_drive = self._config_drives.upload(instance, build.ref,
                                                        build.datastore.name, data)

    def _root_adapter(self, build: SpawnBuild) -> str:
        """The adapter type ephemeral and swap disks go on unless they ask for another."""
        if build.root is not None:
            return build.root.adapter_type
        for request, volume in zip(build.devices.volumes, build.volumes, strict=True):
            if request.is_root:
                return block_devices.adapter_for_bus(request.disk_bus, volume.disk.adapter_type)
        meta = build.image_meta
        if meta is not None and meta.obj_attr_is_set("id"):
            return adapter_type(meta.id, image_props(meta))
        return DEFAULT_ADAPTER_TYPE

    def _disks(self, build: SpawnBuild) -> tuple[tuple[ExtraDisk, ...], tuple]:
        """The VM's disks after the root disk, and the extraConfig recording its volumes."""
        disks, records = [], []
        for request, volume in zip(build.devices.volumes, build.volumes, strict=True):
            disks.append(volume.extra_disk(
                block_devices.adapter_for_bus(request.disk_bus, volume.disk.adapter_type)))
            records.append(volume.record())
        root_adapter = self._root_adapter(build)
        for local in build.devices.local_disks:
            disks.append(ExtraDisk(
                adapter_type=block_devices.adapter_for_bus(local.disk_bus, root_adapter),
                path=f"{build.folder}/{local.name}", capacity_kb=local.capacity_kb,
                create=True))
        return tuple(disks), tuple(records)

    def create_vm(self, build: SpawnBuild) -> None:
        instance, flavor = build.instance, build.instance.flavor
        services = self._services
        disks, records = self._disks(build)
        spec = VmSpec(
            name=instance.uuid, instance_uuid=instance.uuid, vcpus=int(flavor.vcpus),
            memory_mb=int(flavor.memory_mb),
            # The image's vmware_ostype (ops/guest_os.py; root_disk checked it).
            guest_id=self._guest_types.guest_id(build.context, build.image_meta),
            datastore_name=build.datastore.name,
            annotation=policy.annotation(instance, flavor),
            resources=policy.resource_settings(build.settings), root_disk=build.root,
            nics=self._nics.nics(build.state, build.host, build.network_info, build.adapter),
            hw_version=build.settings.hw_version, disks=disks,
            # The ISO image's drive first: it is the one the firmware boots from.
            cdroms=tuple(p for p in (build.iso_image, build.config_drive) if p),
            extra_config=records,
            storage_profile=build.storage_policy.profile_id if build.storage_policy else None)
        try:
            config = build_config_spec(services.session, spec)
        except NoFreeSlot as exc:
            raise exception.TooManyDiskDevices(maximum=exc.maximum) from exc
        with errors.translated(instance):
            host_ref = vim_util.get_moref(build.host.moref, "HostSystem") \
                if build.host else None
            pool_ref = vim_util.get_moref(build.ref.resource_pool, "ResourcePool")
            build.vm_ref = services.vmops.create(
                self._folders.folder(build.ref), pool_ref, host_ref, config,
                on_start=lambda task: setattr(build, "create_task", task))
            services.vm_refs.remember(instance.uuid, build.vm_ref)

    def join_rules(self, build: SpawnBuild) -> None:
        # Before power-on, so that vCenter's DRS and HA honour them too.
        with errors.translated(build.instance):
            self._rules.join(build.ref, build.instance, build.vm_ref, build.settings,
                             build.group)

    def power_on(self, build: SpawnBuild) -> None:
        if build.power_on:
            with errors.translated(build.instance):
                self._services.vmops.power_on(build.vm_ref)

    # -- failure --------------------------------------------------------------------------

    def undo(self, build: SpawnBuild) -> None:
        """No orphans: release the claim, take the volumes off, remove whatever the spawn
        created (VM, disks, config drive, rule entries)."""
        services, instance, ref = self._services, build.instance, build.ref
        services.drs.release(ref.moref, instance.uuid)
        services.vm_refs.forget(instance.uuid)
        vm_ref = build.vm_ref
        if vm_ref is None and build.create_task is not None:
            self._let_creation_end(build)
        for attempt in range(1, CLEANUP_ATTEMPTS + 1):
            # vCenter may refuse for a moment (a task still running on the VM,
            # a dropped connection): try again rather than leave an orphan.
            try:
                if vm_ref is None:
                    vm_ref = services.vmops.find_by_uuid(instance.uuid)
                if vm_ref is not None:
                    self._remove_vm(build, vm_ref)
                    self._rules.prune(ref, vim_util.get_moref_value(vm_ref))
                break
            except vexc.ManagedObjectNotFoundException:
                break
            except Exception as exc:
                if attempt == CLEANUP_ATTEMPTS:
                    LOG.error("Could not remove the VM of failed spawn (%d attempts): %s; "
                              "deleting the instance will", attempt, exc, instance=instance)
                else:
                    LOG.warning("Removing the VM of failed spawn failed (%s); retrying", exc,
                                instance=instance)
                    time.sleep(CLEANUP_RETRY_SECONDS * attempt)
        # What the spawn wrote into the instance's folder before (or besides)
        # the VM: a full copy of the image, the config drive.
        try:
            services.session.delete_datastore_file(
                build.folder, vim_util.get_moref(ref.datacenter, "Datacenter"))
        except Exception as exc:
            LOG.warning("Could not remove %s: %s", build.folder, exc, instance=instance)

    def _let_creation_end(self, build: SpawnBuild) -> None:
        """Wait until the CreateVM_Task whose wait failed has ended: a VM it makes
        after the lookup below would be an orphan."""
        try:
            self._services.session.wait_for_task(build.create_task)
        except Exception as exc:  # its fault, or still unreadable: look for the VM anyway
            LOG.debug("CreateVM_Task of failed spawn: %s", exc, instance=build.instance)

    def _remove_vm(self, build: SpawnBuild, vm_ref) -> None:
        """Destroy the VM, its volumes taken off first (Destroy_Task deletes every disk)."""
        services = self._services
        if build.volumes:
            try:
                services.vm_refs.remember(build.instance.uuid, vm_ref)
                self._volumes.detach_all(build.context, build.instance,
                                         build.block_device_info)
            except Exception as exc:
                # Unregistered, the VM deletes nothing; its own files are in its
                # folder, which undo deletes; the volumes are elsewhere.
                LOG.warning("Could not take the volumes off the VM of failed spawn (%s); "
                            "unregistering it instead", exc, instance=build.instance)
                services.vmops.unregister(vm_ref)
                return
            finally:
                services.vm_refs.forget(build.instance.uuid)
        services.vmops.destroy(vm_ref)
