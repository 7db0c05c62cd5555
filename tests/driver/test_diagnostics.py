"""Instance diagnostics through VSphereDriver, from the simulator's VM statistics."""

from __future__ import annotations

import json
import time

import pytest
from nova import exception, objects
from nova.api.openstack.compute.views import server_diagnostics

from tests.driver.conftest import make_instance, node_of
from tests.driver.guest_support import sim_vm, spawn, vifs


@pytest.fixture
def booted(vsphere, ctx):
    """A running 4-vCPU, 8 GiB instance with two NICs, booted two minutes ago."""
    drv, server = vsphere
    instance = make_instance(node_of(drv, "cluster-a"), vcpus=4, memory_mb=8192)
    network_info = vifs("br-int", "public")
    spawn(drv, ctx, instance, network_info=network_info)
    vm = sim_vm(server.simulator, instance)
    vm._boot_monotonic = time.monotonic() - 120
    server.simulator.registry.touch()  # cached property values are stale now
    return drv, server.simulator, instance, network_info


def test_instance_diagnostics_come_from_the_vm_quick_stats(booted):
    drv, sim, instance, network_info = booted
    diags = drv.get_instance_diagnostics(instance)
    assert isinstance(diags, objects.Diagnostics)
    assert diags.state == "running"
    assert (diags.driver, diags.hypervisor, diags.hypervisor_os) == ("vmwareapi", "vmware",
                                                                      "esxi")
    assert diags.config_drive is False
    assert 120 <= diags.uptime < 180
    assert diags.memory_details.maximum == 8192
    assert diags.memory_details.used == int(8192 * 0.3)  # the simulator's active memory
    assert diags.num_cpus == 4
    assert [c.id for c in diags.cpu_details] == [0, 1, 2, 3]
    assert {c.utilisation for c in diags.cpu_details} == {50}
    assert sorted(n.mac_address for n in diags.nic_details) == \
        sorted(v["address"] for v in network_info)
    assert diags.num_nics == 2 and diags.num_disks == 1
    # The figures follow the VM: a quieter guest shows lower utilisation.
    sim_vm(sim, instance).cpu_demand_fraction = 0.25
    sim.registry.touch()
    assert {c.utilisation for c in drv.get_instance_diagnostics(instance).cpu_details} == {25}
    # What the API would show (microversion 2.48 view).
    view = server_diagnostics.ViewBuilder().instance_diagnostics(diags)
    assert view["driver"] == "vmwareapi" and view["num_cpus"] == 4
    assert view["memory_details"] == {"maximum": 8192, "used": int(8192 * 0.3)}


def test_legacy_diagnostics_are_plain_vmware_fields(booted):
    drv, sim, instance, _ = booted
    data = drv.get_diagnostics(instance)
    json.dumps(data)  # the API returns it as JSON
    assert all(key.startswith("vmware:") for key in data)
    assert data["vmware:numCpu"] == 4
    assert data["vmware:memorySizeMB"] == 8192
    assert data["vmware:powerState"] == "poweredOn"
    assert data["vmware:uptimeSeconds"] >= 120
    assert data["vmware:guestMemoryUsage"] == int(8192 * 0.3)
    assert data["vmware:host"] == sim_vm(sim, instance).host.moid
    assert data["vmware:instanceUuid"] == instance.uuid


def test_diagnostics_of_a_missing_vm(vsphere):
    drv, _ = vsphere
    missing = make_instance(node_of(drv, "cluster-a"))
    with pytest.raises(exception.InstanceNotFound):
        drv.get_instance_diagnostics(missing)
    with pytest.raises(exception.InstanceNotFound):
        drv.get_diagnostics(missing)
