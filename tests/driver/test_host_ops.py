"""Host operations through VSphereDriver: ESXi maintenance mode with our DRS
evacuating, uptime, and what enabling/disabling the service means here."""

from __future__ import annotations

import datetime
import re
import uuid

import pytest
from nova import exception, objects

from nova_vsphere_driver.ops.host import MaintenanceModeFailed
from tests.driver.conftest import make_instance, node_of

GB = 1024



def _spawn_many(drv, ctx, node, count, **kw):
    instances = []
    for i in range(count):
        inst = make_instance(node, name=f"vm-{i}", **kw)
        drv.spawn(ctx, inst, None, [], None, {}, network_info=[])
        instances.append(inst)
    return instances


def test_maintenance_mode_evacuates_the_esxi_host_and_exits(vsphere, ctx):
    drv, server = vsphere
    sim = server.simulator
    node = node_of(drv, "cluster-a")
    instances = _spawn_many(drv, ctx, node, 8, memory_mb=8 * GB, root_gb=1)
    busy = max(sim.cluster("cluster-a").hosts,
               key=lambda h: sum(sim.vm(i.uuid).host is h for i in instances))
    leaving = [i for i in instances if sim.vm(i.uuid).host is busy]
    assert leaving
    drv.power_off(leaving[0])  # a stopped instance must leave too
    assert drv.host_maintenance_mode(busy.name, True) == "on_maintenance"
    assert busy.in_maintenance and not busy.entering_maintenance
    assert busy.vms == []
    for inst in instances:
        vm = sim.vm(inst.uuid)
        assert vm.host is not busy and vm.host.cluster is sim.cluster("cluster-a")
        assert vm.power_state == ("poweredOff" if inst is leaving[0] else "poweredOn")
    # Already there: nothing to do.
    assert drv.host_maintenance_mode(busy.moid, True) == "on_maintenance"
    assert "(maintenance mode)" in next(line for line in drv.get_host_uptime().splitlines()
                                        if f"/{busy.name} " in line)
    assert drv.host_maintenance_mode(busy.name, False) == "off_maintenance"
    assert not busy.in_maintenance
    assert drv.host_maintenance_mode(busy.name, False) == "off_maintenance"


def test_maintenance_is_refused_when_a_vm_has_nowhere_to_go(vsphere, ctx):
    drv, server = vsphere
    sim = server.simulator
    node = node_of(drv, "cluster-a")
    members = [make_instance(node, memory_mb=2 * GB, name=f"db-{i}") for i in range(4)]
    objects.InstanceGroup(ctx, uuid=str(uuid.uuid4()), name="spread", policy="anti-affinity",
                          project_id="p1", user_id="u1",
                          members=[m.uuid for m in members]).create()
    for inst in members:
        drv.spawn(ctx, inst, None, [], None, {}, network_info=[])
    hosts = {sim.vm(m.uuid).host for m in members}
    assert len(hosts) == 4  # one member per host: none can move
    target = sim.vm(members[0].uuid).host
    with pytest.raises(MaintenanceModeFailed) as err:
        drv.host_maintenance_mode(target.name, True)
    assert members[0].uuid in str(err.value) or sim.vm(members[0].uuid).moid in str(err.value)
    assert not target.in_maintenance and not target.entering_maintenance
    assert {sim.vm(m.uuid).host for m in members} == hosts
    assert all(sim.vm(m.uuid).power_state == "poweredOn" for m in members)


def test_maintenance_of_the_whole_service_or_an_unknown_host_is_refused(vsphere,
                                                                        conf_overrides):
    drv, server = vsphere
    conf_overrides(None, host="compute-1")
    with pytest.raises(NotImplementedError, match="esx|ESXi"):
        drv.host_maintenance_mode("compute-1", True)
    with pytest.raises(exception.HostNotFound):
        drv.host_maintenance_mode("esx-z9", True)
    assert not any(h.in_maintenance for h in server.simulator.hosts())


def test_set_host_enabled_says_nova_already_handles_it(vsphere):
    drv, _ = vsphere
    with pytest.raises(NotImplementedError, match="COMPUTE_STATUS_DISABLED"):
        drv.set_host_enabled(False)


def test_uptime_lists_every_esxi_host_of_the_managed_clusters(vsphere):
    drv, server = vsphere
    sim = server.simulator
    now = datetime.datetime.now(datetime.timezone.utc)
    sim.host("esx-a1").booted_at(now - datetime.timedelta(days=3, hours=4, minutes=5,
                                                          seconds=10))
    sim.host("esx-b2").booted_at(now - datetime.timedelta(hours=1, minutes=2, seconds=10))
    sim.disconnect_host("esx-b4")
    lines = drv.get_host_uptime().splitlines()
    assert len(lines) == 8
    assert "cluster-a/esx-a1 up 3 days, 4:05" in lines
    assert "cluster-b/esx-b2 up 1:02" in lines
    assert "cluster-b/esx-b4 not responding" in lines
    pattern = re.compile(r"^cluster-[ab]/esx-[ab]\d (up (\d+ days?, )?\d+:\d\d|not responding)")
    assert all(pattern.match(line) for line in lines)
    assert sim.host("esx-a1").get_property("runtime.bootTime") <= now
