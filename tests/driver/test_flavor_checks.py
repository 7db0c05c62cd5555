"""Extra specs checked against the flavor and the cluster, with the same verdicts at
spawn and at resize: a reservation the flavor can hold, a hardware version a
usable host can create (read from vCenter's environment browser), a CPU
reservation the flavor's vCPUs can use on some host -- and hosts that cannot
are never chosen."""

from __future__ import annotations

import pytest
from nova import exception

from tests.driver.conftest import make_instance
from tests.driver.test_migrate import _finish, _flavor, _start


def _spawn(drv, ctx, instance) -> None:
    drv.spawn(ctx, instance, None, [], None, {}, network_info=[])


def _host_of(sim, instance) -> str:
    return sim.registry.get(sim.vm(instance.uuid).get_property("runtime.host")._moId).name


@pytest.fixture
def nodes(vsphere):
    drv, _ = vsphere
    return {ref.name: node for node, ref in drv.services.nodes.items()}


@pytest.mark.parametrize("key", ["vsphere:memory_reservation", "quota:memory_reservation"])
def test_a_memory_reservation_beyond_the_flavor_is_refused_before_anything(
        vsphere, ctx, node_a, key):
    drv, server = vsphere
    sim = server.simulator
    requests, vms = sim.request_count, len(sim.vms())
    instance = make_instance(node_a, memory_mb=4096, extra_specs={key: "4097"})
    # InvalidInput: Nova aborts the build instead of trying other hosts in vain.
    with pytest.raises(exception.InvalidInput) as err:
        _spawn(drv, ctx, instance)
    assert key in str(err.value) and "4096 MB" in str(err.value)
    assert sim.request_count == requests and len(sim.vms()) == vms
    # As much as the flavor has is fine.
    fits = make_instance(node_a, memory_mb=4096, extra_specs={key: "4096"})
    _spawn(drv, ctx, fits)
    assert sim.vm(fits.uuid).get_property("config.memoryAllocation.reservation") == 4096


def test_a_cpu_reservation_goes_only_where_the_vcpus_can_use_it(vsphere, ctx, node_a):
    drv, server = vsphere
    sim = server.simulator
    # cluster-a: 2600, 2600, 2200 and 3000 MHz per core; two vCPUs use at most 6000.
    for i in range(3):
        fast = make_instance(node_a, vcpus=2, memory_mb=1024, name=f"fast-{i}",
                             extra_specs={"vsphere:cpu_reservation": "5500"})
        _spawn(drv, ctx, fast)
        assert _host_of(sim, fast) == "esx-a4"
    vms = len(sim.vms())
    too_much = make_instance(node_a, vcpus=2, extra_specs={"quota:cpu_reservation": "6001"})
    with pytest.raises(exception.ComputeResourcesUnavailable) as err:
        _spawn(drv, ctx, too_much)
    assert "6001 MHz" in str(err.value) and "2 x 3000 MHz" in str(err.value)
    assert len(sim.vms()) == vms
    assert too_much.uuid not in drv.services.drs.claims(drv.services.nodes[node_a].moref)


def test_a_hardware_version_goes_only_to_hosts_that_create_it(vsphere, ctx, node_a):
    drv, server = vsphere
    sim = server.simulator
    # Every host runs ESXi 8.0.0 (vmx-04 to vmx-20) until esx-a2 is upgraded.
    instance = make_instance(node_a, extra_specs={"vsphere:hw_version": "vmx-21"})
    vms = len(sim.vms())
    with pytest.raises(exception.ComputeResourcesUnavailable) as err:
        _spawn(drv, ctx, instance)
    assert "vmx-21" in str(err.value) and "vmx-04 to vmx-20" in str(err.value)
    assert "cluster-a" in str(err.value)
    assert len(sim.vms()) == vms
    sim.host("esx-a2").esxi_version = "8.0.2"
    for i in range(3):
        new = make_instance(node_a, memory_mb=2048, name=f"hw21-{i}",
                            extra_specs={"vmware:hw_version": "vmx-21"})
        _spawn(drv, ctx, new)
        assert _host_of(sim, new) == "esx-a2"
        assert sim.vm(new.uuid).get_property("config.version") == "vmx-21"
    old = make_instance(node_a, extra_specs={"vsphere:hw_version": "vmx-13"})
    _spawn(drv, ctx, old)
    assert sim.vm(old.uuid).get_property("config.version") == "vmx-13"


def test_when_the_eligible_hosts_are_full_the_reason_says_so(vsphere, ctx, node_a):
    drv, server = vsphere
    sim = server.simulator
    sim.host("esx-a4").esxi_version = "8.0.2"  # 128 GB
    big = make_instance(node_a, memory_mb=200 * 1024,
                        extra_specs={"vsphere:hw_version": "vmx-21"})
    with pytest.raises(exception.ComputeResourcesUnavailable) as err:
        _spawn(drv, ctx, big)
    assert "hosts flavor" in str(err.value) and "can use" in str(err.value)


def test_resize_gives_the_same_verdicts(vsphere, ctx, nodes):
    drv, server = vsphere
    sim = server.simulator
    instance = make_instance(nodes["cluster-a"], vcpus=2, memory_mb=4096, root_gb=10)
    _spawn(drv, ctx, instance)
    # A flavor whose reservation exceeds its memory: refused before anything changes.
    bad = _flavor(2, 4096, 10, extra_specs={"vsphere:memory_reservation": "8192"})
    with pytest.raises(exception.InstanceFaultRollback) as err:
        _start(drv, ctx, instance, bad, nodes["cluster-a"])
    assert "vsphere:memory_reservation" in str(err.value.inner_exception)
    assert sim.vm(instance.uuid).get_property("runtime.powerState") == "poweredOn"
    # A CPU reservation only esx-b3/esx-b4 (2900 MHz) can give 4 vCPUs in cluster-b.
    instance.node = nodes["cluster-a"]
    flavor = _flavor(4, 4096, 10, extra_specs={"vsphere:cpu_reservation": "11000"})
    migration, disk_info = _start(drv, ctx, instance, flavor, nodes["cluster-b"])
    _finish(drv, ctx, instance, migration, disk_info)
    assert _host_of(sim, instance) in ("esx-b3", "esx-b4")
    assert sim.vm(instance.uuid).get_property("config.cpuAllocation.reservation") == 11000


def test_resize_keeps_the_vm_on_hosts_that_run_its_hardware_version(vsphere, ctx, nodes):
    drv, server = vsphere
    sim = server.simulator
    sim.host("esx-a1").esxi_version = "8.0.2"
    instance = make_instance(nodes["cluster-a"], memory_mb=2048,
                             extra_specs={"vsphere:hw_version": "vmx-21"})
    _spawn(drv, ctx, instance)
    assert _host_of(sim, instance) == "esx-a1"
    # No host of cluster-b runs vmx-21: the migration is refused there and undone.
    flavor = _flavor(2, 2048, 10, flavorid="1",
                     extra_specs={"vsphere:hw_version": "vmx-21"})
    migration, disk_info = _start(drv, ctx, instance, flavor, nodes["cluster-b"])
    with pytest.raises(exception.ComputeResourcesUnavailable, match="vmx-21"):
        _finish(drv, ctx, instance, migration, disk_info)
    assert _host_of(sim, instance) == "esx-a1"
    # cluster-b gets an upgraded host: the VM goes there, and only there.
    sim.host("esx-b2").esxi_version = "8.0.2"
    instance.node = nodes["cluster-a"]
    migration, disk_info = _start(drv, ctx, instance, flavor, nodes["cluster-b"])
    _finish(drv, ctx, instance, migration, disk_info)
    assert _host_of(sim, instance) == "esx-b2"
