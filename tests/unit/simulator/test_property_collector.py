"""PropertyCollector and ViewManager semantics beyond the protocol smoke tests."""

from __future__ import annotations

import threading
import time

import pytest
from pyVmomi import vim, vmodl

from nova_vsphere_driver.simulator.objects import base
from tests.fixtures import connect
from tests.unit.simulator.helpers import PC, bind, create_vm, dc1, props, run

HOST_NAMES = {f"esx-{c}{i}" for c in "ab" for i in range(1, 5)}


def _view_spec(view, kind, paths=("name",), **pspec):
    return PC.FilterSpec(
        objectSet=[PC.ObjectSpec(obj=view, skip=True, selectSet=[
            PC.TraversalSpec(name="view", type=vim.view.ContainerView, path="view",
                             skip=False)])],
        propSet=[PC.PropertySpec(type=kind, pathSet=list(paths), **pspec)])


def _names(result):
    return {props(o)["name"] for o in result}


@pytest.fixture
def pc(si):
    return si.content.propertyCollector


# -- RetrieveProperties / RetrievePropertiesEx -----------------------------------------


def test_traversal_skip_flags(si, pc):
    """ObjectSpec.skip drops the start object; TraversalSpec.skip drops what it reaches
    but still traverses on from it."""
    dc = dc1(si)
    to_host_folder = PC.TraversalSpec(name="dcToHf", type=vim.Datacenter, path="hostFolder",
                                      skip=True, selectSet=[PC.SelectionSpec(name="down")])
    down = PC.TraversalSpec(name="down", type=vim.Folder, path="childEntity", skip=False)
    spec = PC.FilterSpec(
        objectSet=[PC.ObjectSpec(obj=dc, skip=True, selectSet=[to_host_folder, down])],
        propSet=[PC.PropertySpec(type=vim.ManagedEntity, pathSet=["name"])])
    result = pc.RetrieveProperties([spec])
    # The datacenter and its host folder are skipped: only the clusters remain.
    assert _names(result) == {"cluster-a", "cluster-b"}
    spec.objectSet[0].skip = False
    to_host_folder.skip = False
    assert _names(pc.RetrieveProperties([spec])) == {"dc1", "host", "cluster-a", "cluster-b"}


def test_traversal_spec_type_gates_the_path(si, pc):
    """A TraversalSpec applies only to objects of its type."""
    cluster = bind(si, si.content.searchIndex.FindByInventoryPath("dc1/host/cluster-a"))
    wrong = PC.TraversalSpec(name="wrong", type=vim.Datacenter, path="hostFolder")
    right = PC.TraversalSpec(name="right", type=vim.ComputeResource, path="host")
    spec = PC.FilterSpec(objectSet=[PC.ObjectSpec(obj=cluster, skip=True, selectSet=[wrong])],
                         propSet=[PC.PropertySpec(type=vim.HostSystem, pathSet=["name"])])
    assert pc.RetrieveProperties([spec]) == []
    spec.objectSet[0].selectSet = [wrong, right]
    assert _names(pc.RetrieveProperties([spec])) == {"esx-a1", "esx-a2", "esx-a3", "esx-a4"}


def test_selection_specs_refer_to_named_traversals(si, pc):
    """Recursive folder walk by name, as every SDK writes it."""
    visit = PC.TraversalSpec(name="visit", type=vim.Folder, path="childEntity", skip=False,
                             selectSet=[PC.SelectionSpec(name="visit"),
                                        PC.SelectionSpec(name="dcToHost"),
                                        PC.SelectionSpec(name="crToHost")])
    dc_to_host = PC.TraversalSpec(name="dcToHost", type=vim.Datacenter, path="hostFolder",
                                  skip=False, selectSet=[PC.SelectionSpec(name="visit")])
    cr_to_host = PC.TraversalSpec(name="crToHost", type=vim.ComputeResource, path="host",
                                  skip=False)
    spec = PC.FilterSpec(
        objectSet=[PC.ObjectSpec(obj=si.content.rootFolder,
                                 selectSet=[visit, dc_to_host, cr_to_host])],
        propSet=[PC.PropertySpec(type=vim.HostSystem, pathSet=["name"])])
    assert _names(pc.RetrieveProperties([spec])) == HOST_NAMES
    # A selection naming no traversal is an invalid argument.
    visit.selectSet.append(PC.SelectionSpec(name="nowhere"))
    with pytest.raises(vmodl.fault.InvalidArgument):
        pc.RetrieveProperties([spec])


def test_property_specs_match_subtypes_and_merge(si, sim, pc):
    host = bind(si, sim.host("esx-b2"))
    spec = PC.FilterSpec(objectSet=[PC.ObjectSpec(obj=host)], propSet=[
        PC.PropertySpec(type=vim.ManagedEntity, pathSet=["name"]),
        PC.PropertySpec(type=vim.HostSystem, pathSet=["summary.hardware.numCpuCores",
                                                      "runtime.inMaintenanceMode"])])
    (content,) = pc.RetrieveProperties([spec])
    assert props(content) == {"name": "esx-b2", "summary.hardware.numCpuCores": 32,
                              "runtime.inMaintenanceMode": False}
    # all=True returns every property; unset ones are left out.
    vm = create_vm(si, sim, "props")
    (content,) = pc.RetrieveProperties([PC.FilterSpec(
        objectSet=[PC.ObjectSpec(obj=vm)], propSet=[PC.PropertySpec(type=vim.VirtualMachine,
                                                                    all=True)])])
    values = props(content)
    assert {"name", "config", "runtime", "summary", "resourcePool", "datastore"} <= set(values)
    assert "snapshot" not in values
    # No pathSet and all unset: the object alone.
    (content,) = pc.RetrieveProperties([PC.FilterSpec(
        objectSet=[PC.ObjectSpec(obj=vm)], propSet=[PC.PropertySpec(type=vim.VirtualMachine)])])
    assert content.obj == vm and not content.propSet
    with pytest.raises(vmodl.query.InvalidProperty):
        pc.RetrieveProperties([PC.FilterSpec(objectSet=[PC.ObjectSpec(obj=host)], propSet=[
            PC.PropertySpec(type=vim.HostSystem, pathSet=["summary.nope"])])])


def test_several_filter_specs_report_each_object_once(si, pc):
    view = si.content.viewManager.CreateContainerView(si.content.rootFolder,
                                                      [vim.HostSystem], True)
    spec = _view_spec(view, vim.HostSystem)
    other = _view_spec(view, vim.HostSystem, ("summary.hardware.cpuMhz",))
    result = pc.RetrieveProperties([spec, other])
    assert len(result) == 8
    assert all(set(props(o)) == {"name", "summary.hardware.cpuMhz"} for o in result)


def test_paging_walks_every_object_exactly_once(si, sim, pc):
    for i in range(5):
        create_vm(si, sim, f"page-{i}")
    view = si.content.viewManager.CreateContainerView(si.content.rootFolder,
                                                      [vim.ManagedEntity], True)
    spec = _view_spec(view, vim.ManagedEntity)
    total = len(pc.RetrievePropertiesEx([spec], PC.RetrieveOptions()).objects)
    assert total == len(view.view)
    for page in (1, 4, total - 1, total):
        result = pc.RetrievePropertiesEx([spec], PC.RetrieveOptions(maxObjects=page))
        seen = [o.obj._moId for o in result.objects]
        assert len(result.objects) == min(page, total)
        while result.token:
            result = pc.ContinueRetrievePropertiesEx(result.token)
            assert 0 < len(result.objects) <= page
            seen.extend(o.obj._moId for o in result.objects)
        assert sorted(seen) == sorted(v._moId for v in view.view), page
    assert pc.RetrievePropertiesEx([spec], PC.RetrieveOptions(maxObjects=total)).token is None


def test_paging_tokens_belong_to_their_session(sim_server, si, pc):
    view = si.content.viewManager.CreateContainerView(si.content.rootFolder,
                                                      [vim.HostSystem], True)
    first = pc.RetrievePropertiesEx([_view_spec(view, vim.HostSystem)],
                                    PC.RetrieveOptions(maxObjects=2))
    other = connect(sim_server)
    with pytest.raises(vmodl.fault.InvalidArgument):
        other.content.propertyCollector.ContinueRetrievePropertiesEx(first.token)
    with pytest.raises(vmodl.fault.InvalidArgument):
        other.content.propertyCollector.CancelRetrievePropertiesEx(first.token)
    assert len(pc.ContinueRetrievePropertiesEx(first.token).objects) == 2
    with pytest.raises(vmodl.fault.InvalidArgument):
        pc.CancelRetrievePropertiesEx("no-such-token")


# -- filters and WaitForUpdatesEx ------------------------------------------------------------


def _vm_filter(si, collector, paths=("name", "runtime.powerState")):
    view = si.content.viewManager.CreateContainerView(si.content.rootFolder,
                                                      [vim.VirtualMachine], True)
    return collector.CreateFilter(_view_spec(view, vim.VirtualMachine, paths), True)


def test_wait_for_updates_reports_enter_modify_leave(si, sim):
    collector = si.content.propertyCollector.CreatePropertyCollector()
    vm = create_vm(si, sim, "watched")
    flt = _vm_filter(si, collector)
    assert flt in collector.filter
    now = PC.WaitOptions(maxWaitSeconds=0)
    first = collector.WaitForUpdatesEx("", now)
    (update,) = first.filterSet[0].objectSet
    assert (update.kind, update.obj) == ("enter", vm)
    assert {c.name: c.val for c in update.changeSet} == {"name": "watched",
                                                         "runtime.powerState": "poweredOff"}
    assert collector.WaitForUpdatesEx(first.version, now) is None

    run(vm.PowerOnVM_Task())
    second = collector.WaitForUpdatesEx(first.version, now)
    (update,) = second.filterSet[0].objectSet
    assert update.kind == "modify"
    assert [(c.name, c.op, c.val) for c in update.changeSet] == [
        ("runtime.powerState", "assign", "poweredOn")]
    assert int(second.version) > int(first.version)

    run(vm.PowerOffVM_Task())
    run(vm.Destroy_Task())
    third = collector.WaitForUpdatesEx(second.version, now)
    (update,) = third.filterSet[0].objectSet
    assert update.kind == "leave"
    assert update.obj == vm and isinstance(update.obj, vim.VirtualMachine)

    # An empty version starts over with the full state.
    create_vm(si, sim, "later")
    again = collector.WaitForUpdatesEx("", now)
    assert [u.kind for u in again.filterSet[0].objectSet] == ["enter"]
    collector.DestroyPropertyCollector()
    assert collector._moId not in sim.registry


def test_wait_for_updates_blocks_until_a_change(si, sim):
    collector = si.content.propertyCollector.CreatePropertyCollector()
    vm = create_vm(si, sim, "sleeper")
    _vm_filter(si, collector)
    version = collector.WaitForUpdatesEx("", PC.WaitOptions(maxWaitSeconds=0)).version
    start = time.monotonic()
    assert collector.WaitForUpdatesEx(version, PC.WaitOptions(maxWaitSeconds=1)) is None
    assert time.monotonic() - start >= 0.9

    def later():
        time.sleep(0.2)
        with sim.registry.lock:
            sim.vm("sleeper").set_power("poweredOn")

    threading.Thread(target=later, daemon=True).start()
    start = time.monotonic()
    update = collector.WaitForUpdatesEx(version, PC.WaitOptions(maxWaitSeconds=30))
    assert time.monotonic() - start < 5
    assert update.filterSet[0].objectSet[0].obj == vm


def test_wait_for_updates_rejects_unknown_versions(si):
    collector = si.content.propertyCollector.CreatePropertyCollector()
    _vm_filter(si, collector)
    with pytest.raises(vmodl.query.InvalidCollectorVersion):
        collector.WaitForUpdatesEx("42", PC.WaitOptions(maxWaitSeconds=0))
    with pytest.raises(vmodl.query.InvalidCollectorVersion):
        collector.WaitForUpdatesEx("garbage", PC.WaitOptions(maxWaitSeconds=0))


def test_max_object_updates_truncates_and_continues(si, sim):
    for i in range(5):
        create_vm(si, sim, f"many-{i}")
    collector = si.content.propertyCollector.CreatePropertyCollector()
    _vm_filter(si, collector, ("name",))
    opts = PC.WaitOptions(maxWaitSeconds=0, maxObjectUpdates=2)
    seen, version, rounds = [], "", 0
    while True:
        update = collector.WaitForUpdatesEx(version, opts)
        if update is None:
            break
        rounds += 1
        objs = update.filterSet[0].objectSet
        assert len(objs) <= 2
        seen.extend(props_of(u) for u in objs)
        version = update.version
        if not update.truncated:
            break
    assert rounds == 3
    assert sorted(seen) == [f"many-{i}" for i in range(5)]


def props_of(update):
    return {c.name: c.val for c in update.changeSet}["name"]


def test_create_filter_validates_and_destroy_filter_removes(si, sim):
    collector = si.content.propertyCollector.CreatePropertyCollector()
    host = bind(si, sim.host("esx-a1"))
    with pytest.raises(vmodl.query.InvalidProperty):
        collector.CreateFilter(PC.FilterSpec(objectSet=[PC.ObjectSpec(obj=host)], propSet=[
            PC.PropertySpec(type=vim.HostSystem, pathSet=["bogus"])]), True)
    assert collector.filter == []
    flt = collector.CreateFilter(PC.FilterSpec(objectSet=[PC.ObjectSpec(obj=host)], propSet=[
        PC.PropertySpec(type=vim.HostSystem, pathSet=["name"])]), False)
    assert flt.spec.propSet[0].pathSet == ["name"]
    assert flt.partialUpdates is False
    flt.DestroyPropertyFilter()
    assert collector.filter == []
    assert collector.WaitForUpdatesEx("", PC.WaitOptions(maxWaitSeconds=0)) is None


def test_create_filter_checks_the_type_model_not_the_values(si, sim, monkeypatch):
    """CreateFilter faults as a read would but computes no values (its own
    registration is a change that would outdate them before the first update)."""
    collector = si.content.propertyCollector.CreatePropertyCollector()
    datastore = si.content.rootFolder.childEntity[0].datastore[0]
    computed = []
    real_compute = base.ManagedObject._compute
    monkeypatch.setattr(base.ManagedObject, "_compute",
                        lambda self, name: computed.append(name) or real_compute(self, name))
    view = si.content.viewManager.CreateContainerView(si.content.rootFolder,
                                                      [vim.VirtualMachine], True)
    create_vm(si, sim, "checked")
    computed.clear()
    collector.CreateFilter(_view_spec(view, vim.VirtualMachine, ["summary.runtime.host",
                                                                 "config.hardware.numCPU"]), True)
    assert computed == ["view"]  # the traversal, no property of any VM
    # A subtype's property (DatastoreInfo has no "nas"; NasDatastoreInfo has)
    # can only be checked on the value: it is, on every selected object.
    with pytest.raises(vmodl.query.InvalidProperty):
        collector.CreateFilter(PC.FilterSpec(objectSet=[PC.ObjectSpec(obj=datastore)], propSet=[
            PC.PropertySpec(type=vim.Datastore, pathSet=["info.nosuch"])]), True)
    assert len(collector.filter) == 1
    update = collector.WaitForUpdatesEx("", PC.WaitOptions(maxWaitSeconds=0))
    (vm_update,) = update.filterSet[0].objectSet
    assert {c.name for c in vm_update.changeSet} == {"summary.runtime.host",
                                                     "config.hardware.numCPU"}


def test_collectors_and_sessions_are_isolated(sim_server, si, sim):
    mine = si.content.propertyCollector.CreatePropertyCollector()
    _vm_filter(si, mine)
    other_si = connect(sim_server)
    # The default collector of another session sees none of my filters.
    assert other_si.content.propertyCollector.filter == []
    assert si.content.propertyCollector.filter == []
    create_vm(si, sim, "iso")
    assert mine.WaitForUpdatesEx("", PC.WaitOptions(maxWaitSeconds=0)) is not None
    assert other_si.content.propertyCollector.WaitForUpdatesEx(
        "", PC.WaitOptions(maxWaitSeconds=0)) is None
    with pytest.raises(vim.fault.InvalidState):
        si.content.propertyCollector.DestroyPropertyCollector()


# -- ViewManager ------------------------------------------------------------------------


def test_container_views_filter_by_type_and_depth(si, sim):
    vm = create_vm(si, sim, "viewed", "esx-b1", datastore="shared-b")
    vmgr = si.content.viewManager
    dc = dc1(si)
    flat = vmgr.CreateContainerView(dc.hostFolder, [], False)
    assert {e.name for e in flat.view} == {"cluster-a", "cluster-b"}
    hosts = vmgr.CreateContainerView(dc, [vim.HostSystem], True)
    assert {e.name for e in hosts.view} == HOST_NAMES
    assert hosts.container == dc and hosts.recursive is True
    assert list(hosts.type) == ["HostSystem"]
    mixed = vmgr.CreateContainerView(si.content.rootFolder,
                                     [vim.VirtualMachine, vim.ClusterComputeResource], True)
    assert {e.name for e in mixed.view} == {"viewed", "cluster-a", "cluster-b"}
    # Views are live.
    vm2 = create_vm(si, sim, "viewed-2", "esx-b2", datastore="shared-b")
    assert vm2 in mixed.view and vm in mixed.view
    pool = vmgr.CreateContainerView(bind(si, sim.cluster("cluster-b").resource_pool),
                                    [vim.VirtualMachine], False)
    assert set(pool.view) == {vm, vm2}
    assert {v._moId for v in vmgr.viewList} >= {flat._moId, hosts._moId, mixed._moId}
    mixed.DestroyView()
    with pytest.raises(vmodl.fault.ManagedObjectNotFound):
        mixed.view  # noqa: B018
    with pytest.raises(vmodl.fault.InvalidArgument):
        vmgr.CreateContainerView(vm, [], True)


# -- every property of every object is readable -------------------------------------------


def test_every_property_of_every_object_serializes(si, sim):
    vm = create_vm(si, sim, "full", "esx-a1", disk_gb=1, network="VM Network", power_on=True)
    run(vm.CreateSnapshot_Task("snap", "", False, False))
    si.content.viewManager.CreateContainerView(si.content.rootFolder, [], True)
    si.content.propertyCollector.CreatePropertyCollector()
    pc = si.content.propertyCollector
    kinds = {}
    for obj in list(sim.registry._objects.values()):
        kinds.setdefault(obj.vim_type, []).append(obj)
    failures = {}
    for kind, objs in kinds.items():
        spec = PC.FilterSpec(objectSet=[PC.ObjectSpec(obj=o.ref) for o in objs],
                             propSet=[PC.PropertySpec(type=kind, all=True)])
        try:
            assert len(pc.RetrieveProperties([spec])) == len(objs)
        except vmodl.MethodFault as exc:
            failures[kind.__name__] = exc.msg
    assert failures == {}
    assert len(kinds) >= 15
