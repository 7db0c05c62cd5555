"""Where every managed object of the simulator is made and registered.

Objects never construct other objects and never import each other's
modules: they ask ``sim.factory`` for new ones (a VM's snapshot, a
collector's filter, a folder's VM) and find existing ones through the
registry by kind (``sim.registry.all("HostSystem")``), as objects of
govmomi's simulator use its ``Map``. This module is the one place that
knows every object class, so the object modules form no import circles.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pyVmomi import vim, vmodl

from nova_vsphere_driver.simulator.objects import options, vapp_import, virtual_machine
from nova_vsphere_driver.simulator.objects.alarms import Alarm, AlarmManager
from nova_vsphere_driver.simulator.objects.authorization import AuthorizationManager
from nova_vsphere_driver.simulator.objects.base import ManagedEntity, ManagedObject
from nova_vsphere_driver.simulator.objects.cluster import ClusterComputeResource, ResourcePool
from nova_vsphere_driver.simulator.objects.custom_fields import CustomFieldsManager
from nova_vsphere_driver.simulator.objects.datacenter import Datacenter
from nova_vsphere_driver.simulator.objects.datastore import Datastore, HostDatastoreBrowser
from nova_vsphere_driver.simulator.objects.environment_browser import EnvironmentBrowser
from nova_vsphere_driver.simulator.objects.events import EventHistoryCollector, EventManager
from nova_vsphere_driver.simulator.objects.extensions import ExtensionManager
from nova_vsphere_driver.simulator.objects.folder import Folder
from nova_vsphere_driver.simulator.objects.host import HostSystem
from nova_vsphere_driver.simulator.objects.licenses import (
    LicenseAssignmentManager,
    LicenseManager,
)
from nova_vsphere_driver.simulator.objects.managers import FileManager, VirtualDiskManager
from nova_vsphere_driver.simulator.objects.network import (
    DEFAULT_PORTS,
    DistributedVirtualPortgroup,
    DistributedVirtualSwitch,
    Network,
    OpaqueNetwork,
    VmwareDistributedVirtualSwitch,
)
from nova_vsphere_driver.simulator.objects.nfc_lease import HttpNfcLease, export_disks
from nova_vsphere_driver.simulator.objects.ovf import OvfManager
from nova_vsphere_driver.simulator.objects.pbm import (
    PbmCapabilityMetadataManager,
    PbmComplianceManager,
    PbmPlacementSolver,
    PbmProfileManager,
    PbmServiceInstance,
    PbmSessionManager,
)
from nova_vsphere_driver.simulator.objects.performance import PerformanceManager
from nova_vsphere_driver.simulator.objects.property_collector import (
    PropertyCollector,
    PropertyFilter,
)
from nova_vsphere_driver.simulator.objects.search_index import SearchIndex
from nova_vsphere_driver.simulator.objects.service_instance import (
    ServiceInstance,
    SessionManager,
)
from nova_vsphere_driver.simulator.objects.task import Task, TaskHistoryCollector, TaskManager
from nova_vsphere_driver.simulator.objects.user_directory import UserDirectory
from nova_vsphere_driver.simulator.objects.view import ContainerView, ListView, ViewManager
from nova_vsphere_driver.simulator.objects.virtual_machine import (
    VirtualMachine,
    VirtualMachineSnapshot,
)
from nova_vsphere_driver.simulator.vim_faults import invalid_argument

if TYPE_CHECKING:
    from nova_vsphere_driver.simulator.service import Simulator

#: The objects a vCenter has once, by kind (each class names its fixed moid).
_SINGLETONS: dict[str, type[ManagedObject]] = {
    cls.vim_type._wsdlName: cls
    for cls in (ServiceInstance, SessionManager, ViewManager, SearchIndex, TaskManager,
                FileManager, VirtualDiskManager, EventManager, PerformanceManager,
                CustomFieldsManager, ExtensionManager, LicenseManager, LicenseAssignmentManager,
                UserDirectory, AuthorizationManager, AlarmManager, OvfManager)
}


def _object_classes() -> dict[str, type[ManagedObject]]:
    """Every simulator object class by name (all are imported by this module)."""
    found: dict[str, type[ManagedObject]] = {}
    pending = [ManagedObject]
    while pending:
        cls = pending.pop()
        found[cls.__name__] = cls
        pending.extend(cls.__subclasses__())
    return found


class ObjectFactory:
    """Builds the managed objects of one simulated vCenter and registers them.

    Every method runs under the registry lock (taken here, re-entrant) and
    links the new object into its parent's lists, so that it is complete
    when other threads first see it.
    """

    def __init__(self, sim: Simulator) -> None:
        self.sim = sim
        self.registry = sim.registry

    def _add(self, obj: ManagedObject) -> Any:
        return self.registry.add(obj)

    # -- objects loaded from a saved state (simulator/persistence.py) -------------

    def blank(self, class_name: str, moid: str) -> ManagedObject:
        """An object of the simulator class ``class_name`` with only its moid set.

        Not registered: the loader sets its saved attributes first. Only
        classes of the simulator can be named.
        """
        cls = _object_classes().get(class_name)
        if cls is None:
            raise ValueError(f"no simulator object class {class_name!r}")
        obj = cls.__new__(cls)
        obj.sim = self.sim
        obj.moid = moid
        obj._cache = {}
        return obj

    # -- the service's own objects ------------------------------------------

    def singleton(self, kind: str) -> Any:
        """The one ``kind`` object of the service (ServiceInstance, SessionManager, ...)."""
        return self._add(_SINGLETONS[kind](self.sim))

    def storage_policy_service(self) -> None:
        """The storage policy API's (SPBM) objects, in its own table (their ids are
        SPBM's well-known ones, which vim25's clash with)."""
        add = self.sim.storage_policies.add_object
        add(PbmServiceInstance(self.sim, "ServiceInstance"))
        add(PbmSessionManager(self.sim, "SessionManager"))
        add(PbmCapabilityMetadataManager(self.sim, "CapabilityMetadataManager"))
        add(PbmProfileManager(self.sim, "ProfileManager"))
        add(PbmComplianceManager(self.sim, "complianceManager"))
        add(PbmPlacementSolver(self.sim, "placementSolver"))

    def option_manager(self, moid: str, settings: list, *,
                       accepts_new_keys: bool) -> options.OptionManager:
        return self._add(options.OptionManager(self.sim, moid, settings,
                                               accepts_new_keys=accepts_new_keys))

    def vcenter_settings(self) -> options.OptionManager:
        """vCenter's advanced settings (ServiceContent.setting)."""
        return self.option_manager("VpxSettings", options.vcenter_options(self.sim),
                                   accepts_new_keys=True)

    def alarm(self, entity: ManagedEntity, spec, user: str) -> Alarm:
        return self._add(Alarm(self.sim, entity, spec, user, 0))

    def property_collector(self, owner: str | None = None, moid: str | None = None):
        return self._add(PropertyCollector(self.sim, moid, owner))

    def property_filter(self, collector: PropertyCollector, state, spec,
                        partial: bool) -> PropertyFilter:
        with self.registry.lock:
            flt = PropertyFilter(self.sim, collector, state, spec, partial)
            state.filters[flt.moid] = flt
            return self._add(flt)

    def container_view(self, container: ManagedEntity, types: list, recursive: bool,
                       owner: str | None) -> ContainerView:
        return self._add(ContainerView(self.sim, container, types, recursive, owner))

    def event_collector(self, manager: EventManager, filter_spec,
                        owner: str | None) -> EventHistoryCollector:
        return self._add(EventHistoryCollector(self.sim, manager, filter_spec, owner))

    def list_view(self, owner: str | None) -> ListView:
        return self._add(ListView(self.sim, owner))

    def task_collector(self, filter_spec, owner: str | None) -> TaskHistoryCollector:
        return self._add(TaskHistoryCollector(self.sim, filter_spec, owner))

    def task(self, entity: ManagedObject | None, method: str, user: str | None) -> Task:
        return self._add(Task(self.sim, entity, method, user))

    # -- inventory ------------------------------------------------------------

    def folder(self, parent: Folder | None, name: str, *, moid: str | None = None,
               child_types: tuple[str, ...] = ("Folder",)) -> Folder:
        with self.registry.lock:
            folder = Folder(self.sim, name, parent, moid=moid, child_types=child_types)
            if parent is not None:
                parent.add_child(folder)
            return self._add(folder)

    def datacenter(self, parent: Folder, name: str) -> Datacenter:
        """A datacenter in ``parent`` with its vm, host, datastore and network folders."""
        with self.registry.lock:
            dc = Datacenter(self.sim, name, parent)
            new_id = self.registry.new_id
            dc.vm_folder = Folder(self.sim, "vm", dc, moid=new_id("group-v"),
                                  child_types=("Folder", "VirtualMachine", "VirtualApp"))
            dc.host_folder = Folder(self.sim, "host", dc, moid=new_id("group-h"),
                                    child_types=("Folder", "ComputeResource"))
            dc.datastore_folder = Folder(self.sim, "datastore", dc, moid=new_id("group-s"),
                                         child_types=("Folder", "Datastore", "StoragePod"))
            dc.network_folder = Folder(self.sim, "network", dc, moid=new_id("group-n"),
                                       child_types=("Folder", "Network",
                                                    "DistributedVirtualSwitch"))
            for folder in dc.folders():
                self._add(folder)
            parent.add_child(dc)
            return self._add(dc)

    def datastore(self, dc: Datacenter, name: str, *, capacity_gb: int,
                  ds_type: str = "VMFS") -> Datastore:
        with self.registry.lock:
            ds = Datastore(self.sim, name, dc.datastore_folder, capacity_gb=capacity_gb,
                           ds_type=ds_type)
            ds.browser = self._add(HostDatastoreBrowser(self.sim, ds))
            self.sim.files.add_datastore(name)
            self.sim.datastores[name] = ds
            dc.datastore_folder.add_child(ds)
            return self._add(ds)

    def network(self, dc: Datacenter, name: str) -> Network:
        with self.registry.lock:
            net = Network(self.sim, name, dc.network_folder)
            dc.network_folder.add_child(net)
            return self._add(net)

    def opaque_network(self, dc: Datacenter, name: str, network_id: str,
                       network_type: str = "nsx.LogicalSwitch") -> OpaqueNetwork:
        with self.registry.lock:
            net = OpaqueNetwork(self.sim, name, dc.network_folder, network_id, network_type)
            dc.network_folder.add_child(net)
            return self._add(net)

    def distributed_switch(self, dc: Datacenter, name: str,
                           vmware: bool = True) -> DistributedVirtualSwitch:
        """A distributed switch; ``vmware`` False: typed as vCenter types a switch it does
        not implement itself (``DistributedVirtualSwitch``: NSX's N-VDS, third parties)."""
        with self.registry.lock:
            kind = VmwareDistributedVirtualSwitch if vmware else DistributedVirtualSwitch
            dvs = kind(self.sim, name, dc.network_folder)
            dc.network_folder.add_child(dvs)
            return self._add(dvs)

    def portgroup(self, dc: Datacenter, switch: DistributedVirtualSwitch, name: str,
                  vlan: int = 0, *, ports: int = DEFAULT_PORTS,
                  nsx_logical_switch_id: str | None = None,
                  nsx_segment_id: str | None = None) -> DistributedVirtualPortgroup:
        """A static-binding port group with ``ports`` ports (more when they are all taken);
        with ``nsx_logical_switch_id``, an NSX segment's port group."""
        with self.registry.lock:
            pg = DistributedVirtualPortgroup(self.sim, name, dc.network_folder, switch, vlan,
                                             nsx_logical_switch_id=nsx_logical_switch_id,
                                             nsx_segment_id=nsx_segment_id)
            switch.portgroups.append(pg)
            switch.add_ports(pg, ports)
            dc.network_folder.add_child(pg)
            return self._add(pg)

    def cluster(self, dc: Datacenter, name: str, *, drs_enabled: bool = False,
                drs_behavior: str = "fullyAutomated") -> ClusterComputeResource:
        """A cluster in the datacenter's host folder, with its root resource pool."""
        with self.registry.lock:
            cluster = ClusterComputeResource(self.sim, name, dc.host_folder,
                                             drs_enabled=drs_enabled, drs_behavior=drs_behavior)
            cluster.resource_pool = self._add(ResourcePool(self.sim, "Resources", cluster,
                                                           cluster))
            cluster.environment_browser = self._add(EnvironmentBrowser(self.sim, cluster))
            dc.host_folder.add_child(cluster)
            return self._add(cluster)

    def host(self, cluster: ClusterComputeResource, name: str, **hardware: Any) -> HostSystem:
        """An ESXi host of ``cluster``; ``hardware`` as HostSystem takes it (cores, ...)."""
        with self.registry.lock:
            host = HostSystem(self.sim, name, cluster, **hardware)
            cluster.hosts.append(host)
            self._add(host)
            host.advanced_options = self.host_settings(host)
            return host

    def host_settings(self, host: HostSystem) -> options.OptionManager:
        """A host's advanced settings (its configManager.advancedOption), at their defaults."""
        return self.option_manager(f"EsxHostAdvSettings-{host.moid.rpartition('-')[2]}",
                                   options.host_options(host), accepts_new_keys=False)

    # -- virtual machines -------------------------------------------------------

    def vm(self, folder: Folder, spec: vim.vm.ConfigSpec, pool: ManagedObject,
           host: HostSystem | None) -> VirtualMachine:
        """CreateVM_Task's work: validate everything, then create files and register.

        On any failure the files it created are removed again, so a failed
        CreateVM leaves nothing behind (as vCenter).
        """
        if not issubclass(pool.vim_type, vim.ResourcePool):
            raise invalid_argument("pool", "pool must be a resource pool")
        sim = self.sim
        created: list[tuple[str, str]] = []
        profiles: dict[str, str] = {}
        with self.registry.lock:
            try:
                host, config = virtual_machine.new_vm_config(
                    sim, folder, spec, pool, host, created, profiles)
                vm = VirtualMachine(sim, spec.name, folder, pool, host, config)
                vm.storage_profiles = virtual_machine.storage_profiles_after(profiles, config)
            except Exception:
                for ds_name, path in reversed(created):
                    if sim.files.exists(ds_name, path):
                        sim.files.delete(ds_name, path)
                raise
            folder.add_child(vm)
            pool.vms.append(vm)
            host.vms.append(vm)
            return self._add(vm)

    def snapshot(self, vm: VirtualMachine, name: str, description: str) -> VirtualMachineSnapshot:
        """A snapshot of ``vm``'s current state, child of its current snapshot."""
        with self.registry.lock:
            snap = VirtualMachineSnapshot(self.sim, vm, name, description,
                                          vm.current_snapshot)
            if vm.current_snapshot is not None:
                vm.current_snapshot.children.append(snap)
            vm.snapshots.append(snap)
            vm.current_snapshot = snap
            return self._add(snap)

    # -- disk transfers (HttpNfcLease) ----------------------------------------------

    def export_lease(self, vm: VirtualMachine, devices: list) -> HttpNfcLease:
        """A new export lease over ``devices`` (a VM's or a snapshot's)."""
        with self.registry.lock:
            for lease in self.registry.all(vim.HttpNfcLease):
                if lease.entity is vm and lease.active:
                    raise vim.fault.InvalidState(
                        msg=f"{vm.name} is busy: an export lease ({lease.moid}) is in progress")
            lease = HttpNfcLease(self.sim, vm, export_disks(self.sim, vm, devices))
            self._add(lease)
            return lease.start()

    def import_vapp(self, pool: ResourcePool, spec, folder=None,
                    host=None) -> vapp_import.ImportLease:
        """ResourcePool.ImportVApp for one VM: the VM, and a lease to upload its disks."""
        if isinstance(spec, vim.vApp.VAppImportSpec):
            raise vmodl.fault.NotSupported(
                msg="The simulator imports single virtual machines "
                "(VirtualMachineImportSpec), not vApps")
        if not isinstance(spec, vim.vm.VmImportSpec) or spec.configSpec is None:
            raise invalid_argument("spec", "a VirtualMachineImportSpec with a configSpec is "
                                   "required")
        registry = self.registry
        with registry.lock:
            target = registry.lookup(folder) if folder is not None else \
                pool.owner.datacenter().vm_folder
            host_obj = registry.lookup(host) if host is not None else None
            vm = self.vm(target, spec.configSpec, pool, host_obj)
            lease = vapp_import.ImportLease(self.sim, vm, vapp_import.import_disks(vm))
            self._add(lease)
            return lease.start()
