"""The property collector's update stream: from the registry's change log, never stale.

A client keeps a copy of the inventory from WaitForUpdatesEx alone; after
every kind of change the copy must equal a fresh RetrieveProperties of the
same spec. Updates cost what changed: a wait compares only changed objects.
"""

from __future__ import annotations

import pytest
from pyVmomi import VmomiSupport, vim, vmodl

from nova_vsphere_driver.simulator.objects import base
from tests.unit.simulator.helpers import PC, bind, create_vm, run

NOW = PC.WaitOptions(maxWaitSeconds=0)
Cluster = vim.cluster

#: Deterministic properties of each kind (no uptimes, no statistics counters).
PATHS = {
    vim.VirtualMachine: ["name", "config.hardware.numCPU", "config.hardware.memoryMB",
                         "runtime.host", "runtime.powerState", "runtime.connectionState",
                         "summary.quickStats.overallCpuUsage",
                         "summary.quickStats.guestMemoryUsage", "datastore", "network",
                         "resourcePool", "parent", "snapshot", "recentTask"],
    vim.HostSystem: ["name", "vm", "datastore", "network", "runtime.connectionState",
                     "runtime.inMaintenanceMode", "summary.quickStats.overallMemoryUsage",
                     "summary.quickStats.overallCpuUsage", "recentTask"],
    vim.Datastore: ["name", "summary.freeSpace", "summary.accessible", "vm"],
    vim.Network: ["name", "host"],
    vim.ClusterComputeResource: ["name", "host", "configurationEx",
                                 "summary.numEffectiveHosts", "summary.effectiveMemory"],
    vim.ResourcePool: ["vm", "runtime.memory.overallUsage"],
    vim.Folder: ["name", "childEntity"],
    vim.Task: ["info.state", "info.entity", "info.descriptionId"],
}


def _everything(si):
    """A filter spec over the whole inventory and the recent tasks."""
    content = si.content
    view = content.viewManager.CreateContainerView(content.rootFolder, [], True)
    return PC.FilterSpec(
        objectSet=[
            PC.ObjectSpec(obj=view, skip=True, selectSet=[
                PC.TraversalSpec(name="view", type=vim.view.ContainerView, path="view")]),
            PC.ObjectSpec(obj=content.taskManager, skip=True, selectSet=[
                PC.TraversalSpec(name="tasks", type=vim.TaskManager, path="recentTask")]),
        ],
        propSet=[PC.PropertySpec(type=kind, pathSet=paths) for kind, paths in PATHS.items()])


def _plain(value):
    """A wire value as comparable Python data."""
    if isinstance(value, VmomiSupport.ManagedObject):
        return ("@", value._moId)
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, VmomiSupport.DataObject):
        return {p.name: _plain(getattr(value, p.name)) for p in value._GetPropertyList()}
    return value


class Mirror:
    """A client's copy of what a filter selects, kept by the update stream only."""

    def __init__(self, si) -> None:
        self.spec = _everything(si)
        self.pc = si.content.propertyCollector
        self.collector = self.pc.CreatePropertyCollector()
        self.collector.CreateFilter(self.spec, True)
        self.version = ""
        self.objects: dict[str, dict] = {}
        self.sync()

    def sync(self, limit: int | None = None) -> int:
        """Apply every update waiting; the number of object updates applied."""
        options = PC.WaitOptions(maxWaitSeconds=0, maxObjectUpdates=limit)
        applied = 0
        while True:
            update = self.collector.WaitForUpdatesEx(self.version, options)
            if update is None:
                return applied
            self.version = update.version
            for filter_update in update.filterSet:
                for obj in filter_update.objectSet:
                    applied += 1
                    self._apply(obj)
            if not update.truncated:
                return applied

    def _apply(self, obj) -> None:
        moid = obj.obj._moId
        if obj.kind == "leave":
            assert moid in self.objects, f"{moid} leaves but never entered"
            del self.objects[moid]
            return
        if obj.kind == "enter":
            assert moid not in self.objects, f"{moid} enters twice"
            self.objects[moid] = {}
        else:
            assert moid in self.objects, f"{moid} modified before it entered"
        entry = self.objects[moid]
        for change in obj.changeSet:
            if change.op == "remove":
                entry.pop(change.name, None)
            else:
                entry[change.name] = _plain(change.val)

    def fresh(self) -> dict[str, dict]:
        return {o.obj._moId: {p.name: _plain(p.val) for p in o.propSet}
                for o in self.pc.RetrieveProperties([self.spec])}

    def check(self, what: str) -> None:
        self.sync()
        fresh = self.fresh()
        assert self.objects.keys() == fresh.keys(), what
        for moid, props in fresh.items():
            assert self.objects[moid] == props, f"{what}: {moid} differs"


@pytest.fixture
def mirror(si):
    return Mirror(si)


def test_the_stream_equals_a_fresh_read_after_every_kind_of_change(si, sim, mirror):
    cluster_a = bind(si, sim.cluster("cluster-a"))
    vm = create_vm(si, sim, "tracked", "esx-a1", datastore="shared-all", disk_gb=1,
                   network="VM Network")
    mirror.check("VM created")
    run(vm.ReconfigVM_Task(vim.vm.ConfigSpec(memoryMB=2048, numCPUs=2)))
    mirror.check("reconfigured")
    run(vm.PowerOnVM_Task())
    mirror.check("powered on")
    run(vm.RelocateVM_Task(vim.vm.RelocateSpec(host=bind(si, sim.host("esx-a2")))))
    mirror.check("vMotion inside the cluster")
    run(vm.MigrateVM_Task(pool=bind(si, sim.cluster("cluster-b").resource_pool),
                          host=bind(si, sim.host("esx-b1")), priority="defaultPriority"))
    mirror.check("vMotion to another cluster")
    run(vm.Rename_Task("renamed"))
    mirror.check("renamed")
    snapshot = run(vm.CreateSnapshot_Task("s1", "", False, False))
    mirror.check("snapshot taken")
    run(snapshot.RemoveSnapshot_Task(False))
    mirror.check("snapshot removed")
    run(cluster_a.ReconfigureComputeResource_Task(Cluster.ConfigSpecEx(
        rulesSpec=[Cluster.RuleSpec(operation="add", info=Cluster.AntiAffinityRuleSpec(
            name="apart", enabled=True,
            vm=[create_vm(si, sim, f"apart-{i}", "esx-a3") for i in range(2)]))]), True))
    mirror.check("rule added")
    disk = "[shared-a] loose/disk.vmdk"
    si.content.fileManager.MakeDirectory("[shared-a] loose")
    run(si.content.virtualDiskManager.CreateVirtualDisk_Task(
        disk, None, vim.VirtualDiskManager.FileBackedVirtualDiskSpec(
            capacityKb=1024 * 1024, diskType="thin", adapterType="lsiLogic")))
    mirror.check("datastore space used")
    host = bind(si, sim.host("esx-a4"))
    run(host.EnterMaintenanceMode_Task(0))
    mirror.check("host in maintenance")
    run(host.ExitMaintenanceMode_Task(0))
    sim.disconnect_host("esx-a4")
    mirror.check("host disconnected")
    sim.reconnect_host("esx-a4")
    run(vm.PowerOffVM_Task())
    run(vm.Destroy_Task())
    mirror.check("VM destroyed")


def test_a_change_that_names_no_object_is_still_reported(si, sim, mirror):
    vm = create_vm(si, sim, "busy", "esx-a1", power_on=True)
    mirror.check("created")
    with sim.registry.lock:
        sim.vm("busy").cpu_demand_fraction = 0.9
        sim.registry.touch()  # anything may have changed: every object is compared
    assert mirror.sync() >= 1
    mirror.check("demand changed")
    assert mirror.objects[vm._moId]["summary.quickStats.overallCpuUsage"] > 0


def test_an_update_compares_only_what_changed(si, sim, mirror, monkeypatch):
    """O(changes): with 40 VMs about, one power-on reads the properties of a few
    objects (the VM, its host, pool, cluster, datastore, the task), not of all."""
    for i in range(40):
        create_vm(si, sim, f"crowd-{i}", f"esx-a{1 + i % 4}")
    mirror.check("crowd created")
    target = create_vm(si, sim, "single", "esx-a2")
    mirror.sync()
    reads: dict[str, int] = {}
    original = base.ManagedObject.get_property

    def counting(self, path):
        reads[self.moid] = reads.get(self.moid, 0) + 1
        return original(self, path)

    run(target.PowerOnVM_Task())
    monkeypatch.setattr(base.ManagedObject, "get_property", counting)
    assert mirror.sync() >= 2  # the VM and its host at least
    monkeypatch.undo()
    crowd = {vm.moid for vm in sim.vms() if vm.name.startswith("crowd-")}
    assert not crowd & reads.keys(), "unchanged VMs were read"
    assert len(reads) <= 10
    mirror.check("powered on")
    # Nothing changed: nothing read at all.
    reads.clear()
    monkeypatch.setattr(base.ManagedObject, "get_property", counting)
    assert mirror.sync() == 0
    monkeypatch.undo()
    assert reads == {}


def test_truncated_sets_carry_changes_over(si, sim, mirror):
    vms = [create_vm(si, sim, f"batch-{i}", "esx-b2") for i in range(6)]
    mirror.sync(limit=3)  # three by three, truncated in between
    mirror.check("created in batches")
    # Objects a truncated set left pending, changed again before the next call,
    # arrive once, current.
    options = PC.WaitOptions(maxWaitSeconds=0, maxObjectUpdates=2)
    for vm in vms:
        run(vm.PowerOnVM_Task())
    first = mirror.collector.WaitForUpdatesEx(mirror.version, options)
    assert first.truncated
    mirror.version = first.version
    for obj in first.filterSet[0].objectSet:
        mirror._apply(obj)
    for vm in vms:
        run(vm.PowerOffVM_Task())
    mirror.check("changed during a truncated read")


def test_a_vanished_start_object_is_reported_missing_once(si, sim):
    collector = si.content.propertyCollector.CreatePropertyCollector()
    vm = create_vm(si, sim, "doomed", "esx-a1")
    collector.CreateFilter(PC.FilterSpec(objectSet=[PC.ObjectSpec(obj=vm)], propSet=[
        PC.PropertySpec(type=vim.VirtualMachine, pathSet=["name"])]), True)
    first = collector.WaitForUpdatesEx("", NOW)
    assert first.filterSet[0].objectSet[0].kind == "enter"
    run(vm.Destroy_Task())
    gone = collector.WaitForUpdatesEx(first.version, NOW)
    (update,) = gone.filterSet
    assert [o.kind for o in update.objectSet] == ["leave"]
    assert [m.obj._moId for m in update.missingSet] == [vm._moId]
    assert isinstance(update.missingSet[0].fault, vmodl.fault.ManagedObjectNotFound)
    assert collector.WaitForUpdatesEx(gone.version, NOW) is None


def test_check_for_updates_reads_the_same_stream(si, sim):
    collector = si.content.propertyCollector.CreatePropertyCollector()
    view = si.content.viewManager.CreateContainerView(si.content.rootFolder,
                                                      [vim.VirtualMachine], True)
    collector.CreateFilter(PC.FilterSpec(
        objectSet=[PC.ObjectSpec(obj=view, skip=True, selectSet=[
            PC.TraversalSpec(type=vim.view.ContainerView, path="view")])],
        propSet=[PC.PropertySpec(type=vim.VirtualMachine, pathSet=["runtime.powerState"])]),
        True)
    assert collector.CheckForUpdates("") is None  # no VM yet: nothing to report
    create_vm(si, sim, "first", "esx-b3")
    version = collector.CheckForUpdates("").version
    vm = create_vm(si, sim, "checked", "esx-b3")
    entered = collector.CheckForUpdates(version)
    assert [(o.kind, o.obj) for o in entered.filterSet[0].objectSet] == [("enter", vm)]
    assert collector.CheckForUpdates(entered.version) is None


def test_the_stream_follows_hosts_networks_and_datastores_coming_and_going(si, sim, mirror):
    dvs = bind(si, next(iter(sim.registry.all("VmwareDistributedVirtualSwitch"))))
    portgroup = run(dvs.CreateDVPortgroup_Task(vim.dvs.DistributedVirtualPortgroup.ConfigSpec(
        name="added", type="earlyBinding", numPorts=8)))
    assert portgroup.name == "added"
    assert all(any(n.name == "added" for n in h.networks) for h in sim.hosts())
    mirror.check("port group added")
    run(portgroup.Rename_Task("renamed-pg"))
    mirror.check("port group renamed")
    run(portgroup.Destroy_Task())
    mirror.check("port group destroyed")

    sim.unmount_datastore("shared-all", "esx-a1")
    assert "shared-all" not in {d.name for d in sim.host("esx-a1").datastores}
    mirror.check("datastore unmounted")
    sim.mount_datastore("shared-all", "esx-a1")
    sim.set_datastore_accessible("shared-a", False)
    mirror.check("datastore inaccessible")
    sim.set_datastore_accessible("shared-a", True)

    host = bind(si, sim.host("esx-b4"))
    create_vm(si, sim, "parked", "esx-b4")
    with pytest.raises(vim.fault.InvalidState):
        run(host.Destroy_Task())  # connected and not in maintenance
    run(host.EnterMaintenanceMode_Task(0))
    with sim.registry.lock:  # a host in maintenance keeps its powered-off VMs here
        assert [vm.name for vm in sim.host("esx-b4").vms] == ["parked"]
    run(host.Destroy_Task())
    assert "esx-b4" not in {h.name for h in sim.hosts()}
    assert "parked" not in {vm.name for vm in sim.vms()}
    mirror.check("host removed")
