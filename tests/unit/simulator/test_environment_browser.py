"""Hardware versions: which a host creates (by its ESXi release), as the cluster's
EnvironmentBrowser says, and CreateVM_Task refusing the others."""

from __future__ import annotations

import pytest
from pyVmomi import vim, vmodl

from nova_vsphere_driver.simulator import esxi_versions
from nova_vsphere_driver.simulator.inventory import InventoryError
from tests.fixtures import connect, running_simulator
from tests.unit.simulator.helpers import bind, create_vm, fault_of, run, vm_spec


@pytest.mark.parametrize("release, newest", [
    ("6.5.0", "vmx-13"), ("6.7.0", "vmx-14"), ("6.7.3", "vmx-15"), ("7.0.0", "vmx-17"),
    ("7.0.1", "vmx-18"), ("7.0.3", "vmx-19"), ("8.0", "vmx-20"), ("8.0.2", "vmx-21"),
    ("8.0.3", "vmx-21"),
])
def test_each_release_creates_up_to_its_newest_version(release, newest):
    versions = esxi_versions.hardware_versions(release)
    assert versions[0] == "vmx-04" and versions[-1] == newest
    assert esxi_versions.default_hardware_version(release) == newest


@pytest.mark.parametrize("release", ["6.0.0", "eight", "8"])
def test_releases_the_simulator_does_not_model_are_refused(release):
    with pytest.raises(ValueError):
        esxi_versions.newest_hardware_version(release)


def _inventory(versions: dict[str, str]) -> dict:
    return {"datacenters": [{"name": "dc1", "datastores": [{"name": "ds", "capacity_gb": 100}],
                             "clusters": [{"name": "c1", "hosts": [
                                 {"name": name, "cores": 4, "memory_mb": 16384,
                                  "esxi_version": version}
                                 for name, version in versions.items()]}]}]}


@pytest.fixture(scope="module")
def mixed():
    """One cluster mid-upgrade: ESXi 7.0.3, 8.0.0 and 8.0.2."""
    with running_simulator(_inventory({"old": "7.0.3", "mid": "8.0.0", "new": "8.0.2"})) \
            as server:
        yield server, connect(server)


def test_the_cluster_browser_lists_each_version_with_the_hosts_that_create_it(mixed):
    server, si = mixed
    sim = server.simulator
    cluster = bind(si, sim.cluster("c1"))
    assert cluster.environmentBrowser is not None
    found = {d.key: d for d in cluster.environmentBrowser.QueryConfigOptionDescriptor()}
    hosts = {key: sorted(sim.registry.get(h._moId).name for h in d.host)
             for key, d in found.items()}
    assert hosts["vmx-04"] == hosts["vmx-19"] == ["mid", "new", "old"]
    assert hosts["vmx-20"] == ["mid", "new"]
    assert hosts["vmx-21"] == ["new"]
    assert "vmx-22" not in found
    assert all(d.createSupported for d in found.values())
    assert sorted(k for k, d in found.items() if d.defaultConfigOption) == \
        ["vmx-19", "vmx-20", "vmx-21"]
    assert bind(si, sim.host("old")).config.product.version == "7.0.3"


def test_create_vm_refuses_a_version_its_host_cannot_create(mixed):
    server, si = mixed
    sim = server.simulator
    spec = vm_spec("too-new", "ds")
    spec.version = "vmx-21"
    host = sim.host("mid")
    fault = fault_of(bind(si, host.datacenter().vm_folder).CreateVM_Task(
        spec, bind(si, host.cluster.resource_pool), bind(si, host)))
    assert isinstance(fault, vmodl.fault.InvalidArgument)
    assert fault.invalidProperty == "configSpec.version"
    assert "vmx-21" in fault.msg and "8.0.0" in fault.msg
    with pytest.raises(KeyError):
        sim.vm("too-new")


def test_a_vm_gets_its_hosts_newest_version_unless_it_asks(mixed):
    server, si = mixed
    sim = server.simulator
    assert create_vm(si, sim, "on-old", "old", datastore="ds").config.version == "vmx-19"
    assert create_vm(si, sim, "on-new", "new", datastore="ds").config.version == "vmx-21"
    spec = vm_spec("asks-17", "ds")
    spec.version = "vmx-17"
    host = sim.host("new")
    vm = run(bind(si, host.datacenter().vm_folder).CreateVM_Task(
        spec, bind(si, host.cluster.resource_pool), bind(si, host)))
    assert vm.config.version == "vmx-17"


def test_an_unknown_esxi_version_in_an_inventory_is_refused():
    with pytest.raises(InventoryError, match="6.0"):
        with running_simulator(_inventory({"h": "6.0.0"})):
            pass


def test_a_memory_reservation_beyond_the_vms_memory_is_refused(si, sim):
    spec = vm_spec("greedy", "shared-a", memory_mb=1024)
    spec.memoryAllocation = vim.ResourceAllocationInfo(reservation=2048)
    host = sim.host("esx-a1")
    fault = fault_of(bind(si, host.datacenter().vm_folder).CreateVM_Task(
        spec, bind(si, host.cluster.resource_pool), bind(si, host)))
    assert isinstance(fault, vmodl.fault.InvalidArgument)
    assert fault.invalidProperty == "memoryAllocation.reservation"
    vm = create_vm(si, sim, "modest", "esx-a1", memory_mb=1024)
    fault = fault_of(vm.ReconfigVM_Task(vim.vm.ConfigSpec(
        memoryAllocation=vim.ResourceAllocationInfo(reservation=1025))))
    assert fault.invalidProperty == "memoryAllocation.reservation"
    run(vm.ReconfigVM_Task(vim.vm.ConfigSpec(
        memoryAllocation=vim.ResourceAllocationInfo(reservation=1024))))
    assert vm.config.memoryAllocation.reservation == 1024


def test_versions_browsers_and_datacenter_folders_survive_a_restart(tmp_path):
    from nova_vsphere_driver.simulator import Simulator, SimulatorServer

    inventory = _inventory({"old": "7.0.3", "new": "8.0.2"})
    inventory["datacenters"][0]["folder"] = "emea/west"
    with SimulatorServer(Simulator(inventory), state_file=str(tmp_path / "state.json"),
                         save_interval=3600) as server:
        si = connect(server)
        before = {d.key: sorted(h._moId for h in d.host) for d in
                  bind(si, server.simulator.cluster("c1")).environmentBrowser
                  .QueryConfigOptionDescriptor()}
        server.restart()
        si = connect(server)
        sim = server.simulator
        browser = bind(si, sim.cluster("c1")).environmentBrowser
        assert {d.key: sorted(h._moId for h in d.host)
                for d in browser.QueryConfigOptionDescriptor()} == before
        assert sim.host("old").esxi_version == "7.0.3"
        assert si.content.searchIndex.FindByInventoryPath("emea/west/dc1") is not None
