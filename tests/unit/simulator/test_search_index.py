"""SearchIndex: FindByInventoryPath, FindChild, FindByUuid, FindAllByUuid."""

from __future__ import annotations

import uuid

import pytest
from pyVmomi import vim, vmodl

from tests.unit.simulator.helpers import bind, create_vm, dc1, run, vm_spec


@pytest.fixture
def index(si):
    return si.content.searchIndex


@pytest.mark.parametrize("path,kind,name", [
    ("dc1", vim.Datacenter, "dc1"),
    ("/dc1/", vim.Datacenter, "dc1"),
    ("dc1/vm", vim.Folder, "vm"),
    ("dc1/host/cluster-a", vim.ClusterComputeResource, "cluster-a"),
    ("dc1/host/cluster-a/esx-a3", vim.HostSystem, "esx-a3"),
    ("dc1/host/cluster-b/Resources", vim.ResourcePool, "Resources"),
    ("dc1/datastore/shared-all", vim.Datastore, "shared-all"),
    ("dc1/network/VM Network", vim.Network, "VM Network"),
    ("dc1/network/br-int", vim.dvs.DistributedVirtualPortgroup, "br-int"),
])
def test_find_by_inventory_path(index, path, kind, name):
    found = index.FindByInventoryPath(path)
    assert isinstance(found, kind) and found.name == name


def test_find_by_inventory_path_of_vms_and_misses(si, sim, index):
    folder = dc1(si).vmFolder.CreateFolder("team/a")  # '/' in a name is written %2f
    vm = run(folder.CreateVM_Task(vm_spec("app-1"),
                                  bind(si, sim.cluster("cluster-a").resource_pool),
                                  bind(si, sim.host("esx-a1"))))
    assert index.FindByInventoryPath("dc1/vm/team%2fa/app-1") == vm
    assert index.FindByInventoryPath("dc1/vm/team%2Fa") == folder
    assert index.FindByInventoryPath("dc1/vm/app-1") is None
    assert index.FindByInventoryPath("dc2") is None
    assert index.FindByInventoryPath("dc1/host/cluster-a/esx-b1") is None


def test_find_child(si, sim, index):
    dc = dc1(si)
    assert index.FindChild(si.content.rootFolder, "dc1") == dc
    # A datacenter's children are its four folders.
    assert index.FindChild(dc, "host") == dc.hostFolder
    assert index.FindChild(dc, "datastore") == dc.datastoreFolder
    cluster = index.FindChild(dc.hostFolder, "cluster-b")
    assert isinstance(cluster, vim.ClusterComputeResource)
    # A compute resource's children: its hosts and its root resource pool.
    assert index.FindChild(cluster, "esx-b2").name == "esx-b2"
    assert index.FindChild(cluster, "Resources") == cluster.resourcePool
    vm = create_vm(si, sim, "child-vm", "esx-b2", datastore="shared-b")
    assert index.FindChild(cluster.resourcePool, "child-vm") == vm
    assert index.FindChild(dc.vmFolder, "child-vm") == vm
    # Only immediate children, and misses are unset.
    assert index.FindChild(dc, "cluster-b") is None
    assert index.FindChild(dc.vmFolder, "nothing") is None
    assert index.FindChild(vm, "anything") is None
    with pytest.raises(vmodl.fault.ManagedObjectNotFound):
        index.FindChild(vim.Folder("group-v9999", si._stub), "x")


def test_find_by_uuid_for_vms(si, sim, index):
    vm = create_vm(si, sim, "uuid-vm")
    bios, instance = vm.config.uuid, vm.config.instanceUuid
    assert bios != instance
    dc = dc1(si)
    assert index.FindByUuid(dc, bios, True) == vm
    assert index.FindByUuid(None, bios.upper(), True, False) == vm
    assert index.FindByUuid(dc, instance, True, True) == vm
    # The kinds of UUID are not interchangeable.
    assert index.FindByUuid(dc, instance, True, False) is None
    assert index.FindByUuid(dc, bios, True, True) is None
    assert index.FindByUuid(dc, str(uuid.uuid4()), True) is None
    # vmSearch=False searches hosts.
    assert index.FindByUuid(dc, bios, False) is None
    assert sim.vm("uuid-vm").config.uuid == bios


def test_find_by_uuid_for_hosts(si, sim, index):
    host = sim.host("esx-b3")
    found = index.FindByUuid(dc1(si), host.uuid, False)
    assert found == bind(si, host)
    assert found.summary.hardware.uuid == host.uuid


def test_find_all_by_uuid_returns_every_match(si, sim, index):
    shared = str(uuid.uuid4())
    vms = []
    for name, host in (("twin-1", "esx-a1"), ("twin-2", "esx-a2")):
        spec = vm_spec(name)
        spec.uuid = shared
        vms.append(run(dc1(si).vmFolder.CreateVM_Task(
            spec, bind(si, sim.cluster("cluster-a").resource_pool), bind(si, sim.host(host)))))
    create_vm(si, sim, "other")
    found = index.FindAllByUuid(dc1(si), shared, True, False)
    assert sorted(v._moId for v in found) == sorted(v._moId for v in vms)
    assert index.FindByUuid(dc1(si), shared, True, False) in vms
    assert index.FindAllByUuid(dc1(si), str(uuid.uuid4()), True, False) == []
    instance = vms[0].config.instanceUuid
    assert index.FindAllByUuid(None, instance, True, True) == [vms[0]]
