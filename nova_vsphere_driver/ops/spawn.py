"""Spawn: a new instance as a VM on the ESXi host our DRS picks, on a datastore with room.

A spawn is planned first -- flavor settings, server group, a fresh read of
the cluster, the datastores with room for the root disk, the host (claimed
by our DRS until the VM exists; in ``[vsphere_drs] mode = vcenter`` none, and
vCenter's DRS decides) and the datastore -- and then built in steps
(:attr:`SpawnOps.STEPS`), each a method taking the :class:`SpawnBuild`:

1. ``root_disk``: the image, cached per datastore, as the root disk;
2. ``create_vm``: CreateVM_Task with the flavor's size, the guest type,
   the NICs on the VIFs' port groups, the notes that say who it is;
3. ``join_rules``: the server group's DRS rule and the host-group pin,
   before power-on so that vCenter's DRS and HA honour them too;
4. ``power_on``.

A failing step leaves nothing behind: the claim is released, the VM and its
files are removed and its rule entries dropped (:meth:`SpawnOps.undo`).
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any

import nova.conf
from oslo_log import log as logging
from oslo_utils import units
from oslo_vmware import exceptions as vexc
from oslo_vmware import vim_util

from nova_vsphere_driver import extra_specs, policy
from nova_vsphere_driver.datastore_selection import datastores_with_room, pick_datastore
from nova_vsphere_driver.ops.guest_os import GuestTypes
from nova_vsphere_driver.ops.host_selection import HostSelection
from nova_vsphere_driver.ops.instance_rules import InstanceRules, server_group
from nova_vsphere_driver.ops.nics import NicResolver
from nova_vsphere_driver.ops.root_disk import RootDisks
from nova_vsphere_driver.ops.vm_folders import VmFolders
from nova_vsphere_driver.services import Services
from nova_vsphere_driver.vsphere import errors
from nova_vsphere_driver.vsphere.cluster_state import (
    ClusterRef,
    ClusterState,
    DatastoreState,
    EsxiHostState,
)
from nova_vsphere_driver.vsphere.vm import RootDisk, VmSpec, build_config_spec

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
    root: RootDisk | None = None
    #: The VM, once CreateVM_Task made it.
    vm_ref: Any = None


class SpawnOps:
    """ComputeDriver.spawn for one driver (built once; thread-safe)."""

    #: The steps of a spawn, in order (method names; each takes the SpawnBuild).
    STEPS = ("root_disk", "create_vm", "join_rules", "power_on")

    def __init__(self, services: Services, hosts: HostSelection, rules: InstanceRules,
                 nics: NicResolver, folders: VmFolders, root_disks: RootDisks,
                 guest_types: GuestTypes) -> None:
        self._services = services
        self._hosts = hosts
        self._rules = rules
        self._nics = nics
        self._folders = folders
        self._root_disks = root_disks
        self._guest_types = guest_types

    def spawn(self, context, instance, image_meta, network_info=None, block_device_info=None,
              power_on: bool = True) -> None:
        build = self.plan(context, instance, image_meta, network_info, block_device_info,
                          power_on)
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
        group = server_group(context, instance)
        state = services.states.read(nodename)
        need_bytes = int(flavor.root_gb or 0) * units.Gi
        stores = datastores_with_room(state, CONF.vsphere.datastore_regex, need_bytes)
        # builtin: our DRS picks the host; vcenter: CreateVM_Task gets none and
        # vCenter's DRS decides.
        host = self._hosts.place_new(state, instance, group, stores, settings.host_group) \
            if CONF.vsphere_drs.mode == "builtin" else None
        return SpawnBuild(context=context, instance=instance, image_meta=image_meta,
                          network_info=network_info, block_device_info=block_device_info,
                          power_on=power_on, settings=settings, group=group, ref=ref,
                          state=state, host=host, datastore=pick_datastore(stores, host))

    # -- the steps ------------------------------------------------------------------------

    def root_disk(self, build: SpawnBuild) -> None:
        """The image (cached per datastore, whatever its VMDK type) as the root disk."""
        build.root = self._root_disks.root_disk(build.context, build.instance, build.image_meta,
                                                build.ref, build.datastore)

    def create_vm(self, build: SpawnBuild) -> None:
        instance, flavor = build.instance, build.instance.flavor
        services = self._services
        spec = VmSpec(
            name=instance.uuid, instance_uuid=instance.uuid, vcpus=int(flavor.vcpus),
            memory_mb=int(flavor.memory_mb),
            # The image's vmware_ostype (ops/guest_os.py; root_disk checked it).
            guest_id=self._guest_types.guest_id(build.context, build.image_meta),
            datastore_name=build.datastore.name,
            annotation=policy.annotation(instance, flavor),
            resources=policy.resource_settings(build.settings), root_disk=build.root,
            nics=self._nics.nics(build.state, build.host, build.network_info),
            hw_version=build.settings.hw_version)
        with errors.translated(instance):
            config = build_config_spec(services.session, spec)
            host_ref = vim_util.get_moref(build.host.moref, "HostSystem") \
                if build.host else None
            pool_ref = vim_util.get_moref(build.ref.resource_pool, "ResourcePool")
            build.vm_ref = services.vmops.create(self._folders.folder(build.ref), pool_ref,
                                                 host_ref, config)
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
        """No orphans: release the claim, remove whatever the spawn created (VM, disks,
        rule entries)."""
        services, instance, ref = self._services, build.instance, build.ref
        services.drs.release(ref.moref, instance.uuid)
        services.vm_refs.forget(instance.uuid)
        vm_ref = build.vm_ref
        for attempt in range(1, CLEANUP_ATTEMPTS + 1):
            # vCenter may refuse for a moment (a task still running on the VM,
            # a dropped connection): try again rather than leave an orphan.
            try:
                if vm_ref is None:
                    vm_ref = services.vmops.find_by_uuid(instance.uuid)
                if vm_ref is not None:
                    services.vmops.destroy(vm_ref)
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
        if not CONF.vsphere.use_linked_clone:
            # A full copy of the image may have been made before CreateVM.
            datastore = build.datastore
            try:
                services.session.delete_datastore_file(
                    f"[{datastore.name}] {instance.uuid}",
                    vim_util.get_moref(ref.datacenter, "Datacenter"))
            except Exception as exc:
                LOG.warning("Could not remove [%s] %s: %s", datastore.name, instance.uuid, exc)
