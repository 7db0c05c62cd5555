"""The anti-affinity filter that takes the place of Nova's for vSphere nodes."""

from __future__ import annotations

from nova import objects
from nova.scheduler.filters import affinity_filter
from nova.tests.unit.scheduler import fakes

from nova_vsphere_driver import HYPERVISOR_TYPE
from nova_vsphere_driver.scheduler_filters import ServerGroupAntiAffinityFilter


def _spec(members: list[str]) -> objects.RequestSpec:
    group = objects.InstanceGroup(policy="anti-affinity", members=members, hosts=["compute-1"],
                                  rules={})
    return objects.RequestSpec(instance_uuid="new", instance_group=group)


def _host(hypervisor_type: str, instances: list[str]):
    host = fakes.FakeHostState("compute-1", "node-1", {"hypervisor_type": hypervisor_type})
    host.instances = {uuid: objects.Instance(uuid=uuid) for uuid in instances}
    return host


def test_replaces_novas_filter_by_class_name():
    # Nova's scheduler keys filters by class name and Nova's API looks for
    # this name in enabled_filters: ours must carry the same name.
    assert ServerGroupAntiAffinityFilter.__name__ == \
        affinity_filter.ServerGroupAntiAffinityFilter.__name__
    assert issubclass(ServerGroupAntiAffinityFilter, affinity_filter.ServerGroupAntiAffinityFilter)


def test_vsphere_cluster_nodes_are_left_to_the_drivers_drs():
    spec = _spec(["a", "b"])
    vsphere = _host(HYPERVISOR_TYPE, ["a", "b"])
    ours, novas = ServerGroupAntiAffinityFilter(), affinity_filter.ServerGroupAntiAffinityFilter()
    assert novas.host_passes(vsphere, spec) is False  # one member per service
    assert ours.host_passes(vsphere, spec) is True  # the DRS rule spreads ESXi hosts


def test_other_hypervisors_keep_novas_behaviour():
    spec = _spec(["a"])
    ours = ServerGroupAntiAffinityFilter()
    assert ours.host_passes(_host("QEMU", ["a"]), spec) is False
    assert ours.host_passes(_host("QEMU", ["x"]), spec) is True
