"""NIC hot-plug, rescue, suspend/resume and unsupported guest operations through
VSphereDriver, asserted in the simulator behind SOAP."""

from __future__ import annotations

import pytest
from nova import exception
from nova.compute import power_state
from oslo_vmware import vim_util

from tests.driver.conftest import make_instance
from tests.driver.guest_support import (
    Dev,
    boot_order,
    disks,
    extra_config,
    nics,
    power,
    sim_vm,
    spawn,
    vif,
    vifs,
    vmdk_image,
)


def _slots(sim, instance) -> dict[str, str]:
    return {k: v for k, v in extra_config(sim, instance).items()
            if k.startswith("nvp.iface-id.")}


# -- attach / detach interface ------------------------------------------------------------


def test_attach_interface_hot_adds_a_vmxnet3_nic_and_records_its_port(vsphere, ctx, node_a):
    drv, server = vsphere
    sim = server.simulator
    instance = make_instance(node_a)
    first = vif("br-int", 0)
    spawn(drv, ctx, instance, network_info=[first])
    public = vif("public", 1)
    drv.attach_interface(ctx, instance, None, public)
    cards = nics(sim, instance)
    assert [type(c) for c in cards] == [Dev.VirtualVmxnet3, Dev.VirtualVmxnet3]
    added = next(c for c in cards if c.macAddress == public["address"])
    pg = next(n for n in sim.host(sim_vm(sim, instance).host.name).networks
              if n.name == "public")
    assert added.backing.port.portgroupKey == pg.key
    assert added.backing.port.switchUuid == pg.switch.uuid
    assert added.connectable.startConnected
    assert _slots(sim, instance) == {"nvp.iface-id.0": first["id"],
                                     "nvp.iface-id.1": public["id"]}
    assert {n.name for n in sim_vm(sim, instance).networks} == {"br-int", "public"}
    assert power(sim, instance) == "poweredOn"  # hot-plugged, not rebooted
    # A standard port group works as well.
    standard = vif("VM Network", 2)
    drv.attach_interface(ctx, instance, None, standard)
    card = next(c for c in nics(sim, instance) if c.macAddress == standard["address"])
    assert card.backing.deviceName == "VM Network"
    assert _slots(sim, instance)["nvp.iface-id.2"] == standard["id"]
    # A stale cached VM reference (the VM was re-registered) is looked up again.
    drv.services.vm_refs.remember(instance.uuid, vim_util.get_moref("vm-gone", "VirtualMachine"))
    # Attaching the same port again changes nothing.
    reconfigs = sim.request_counts.get("ReconfigVM_Task", 0)
    drv.attach_interface(ctx, instance, None, public)
    assert len(nics(sim, instance)) == 3
    assert sim.request_counts.get("ReconfigVM_Task", 0) == reconfigs


def test_detach_interface_removes_the_nic_and_frees_its_slot_for_reuse(vsphere, ctx, node_a):
    drv, server = vsphere
    sim = server.simulator
    instance = make_instance(node_a)
    network_info = vifs("br-int", "public")
    spawn(drv, ctx, instance, network_info=network_info)
    drv.detach_interface(ctx, instance, network_info[0])
    assert [c.macAddress for c in nics(sim, instance)] == [network_info[1]["address"]]
    assert _slots(sim, instance) == {"nvp.iface-id.0": "free",
                                     "nvp.iface-id.1": network_info[1]["id"]}
    assert {n.name for n in sim_vm(sim, instance).networks} == {"public"}
    # The next attach takes the freed slot.
    again = vif("br-int", 5)
    drv.attach_interface(ctx, instance, None, again)
    assert _slots(sim, instance) == {"nvp.iface-id.0": again["id"],
                                     "nvp.iface-id.1": network_info[1]["id"]}
    assert power(sim, instance) == "poweredOn"


def test_detach_of_an_unknown_port_is_not_found_and_changes_nothing(vsphere, ctx, node_a):
    drv, server = vsphere
    sim = server.simulator
    instance = make_instance(node_a)
    spawn(drv, ctx, instance, network_info=vifs("br-int"))
    before = (len(nics(sim, instance)), _slots(sim, instance))
    with pytest.raises(exception.NotFound) as err:
        drv.detach_interface(ctx, instance, vif("br-int", 9))
    assert "no network adapter for port" in str(err.value)
    assert (len(nics(sim, instance)), _slots(sim, instance)) == before


def test_failed_attach_and_detach_leave_the_vm_as_it_was(vsphere, ctx, node_a):
    drv, server = vsphere
    sim = server.simulator
    instance = make_instance(node_a)
    network_info = vifs("br-int")
    spawn(drv, ctx, instance, network_info=network_info)
    before = ([c.macAddress for c in nics(sim, instance)], _slots(sim, instance))
    sim.faults.fail_next("ReconfigVM_Task", "InvalidDeviceSpec")
    with pytest.raises(exception.InterfaceAttachFailed):
        drv.attach_interface(ctx, instance, None, vif("public", 1))
    assert ([c.macAddress for c in nics(sim, instance)], _slots(sim, instance)) == before
    sim.faults.fail_next("ReconfigVM_Task", "InvalidDeviceSpec")
    with pytest.raises(exception.InterfaceDetachFailed):
        drv.detach_interface(ctx, instance, network_info[0])
    assert ([c.macAddress for c in nics(sim, instance)], _slots(sim, instance)) == before


def test_attach_to_a_network_the_host_lacks_is_refused(vsphere, ctx, node_a):
    drv, server = vsphere
    sim = server.simulator
    instance = make_instance(node_a)
    spawn(drv, ctx, instance)
    with pytest.raises(exception.NetworkNotFoundForBridge):
        drv.attach_interface(ctx, instance, None, vif("no-such-portgroup", 0))
    assert nics(sim, instance) == []
    missing = make_instance(node_a)
    with pytest.raises(exception.InstanceNotFound):
        drv.attach_interface(ctx, missing, None, vif("br-int", 0))


# -- rescue / unrescue ----------------------------------------------------------------------


def _rescue_file(instance) -> str:
    return f"{instance.uuid}/{instance.uuid}-rescue.vmdk"


def _datastore(sim, instance) -> str:
    vmx = sim_vm(sim, instance).config.files.vmPathName
    return vmx[1:vmx.index("]")]


@pytest.mark.parametrize("linked_clone", [True, False])
def test_rescue_boots_the_rescue_disk_with_the_root_disk_second(vsphere, ctx, node_a, glance,
                                                                conf_overrides, linked_clone):
    conf_overrides("vsphere", use_linked_clone=linked_clone)
    drv, server = vsphere
    sim = server.simulator
    image = vmdk_image(ctx, glance)
    instance = make_instance(node_a, image_ref=image.id)
    spawn(drv, ctx, instance, image_meta=image)
    [root] = disks(sim, instance)
    ds = _datastore(sim, instance)
    drv.power_off(instance)  # Nova's compute manager stops the instance first
    drv.rescue(ctx, instance, [], image, "secret", {})
    assert drv.get_info(instance).state == power_state.RUNNING
    rescue = next(d for d in disks(sim, instance) if d.key != root.key)
    assert rescue.backing.fileName == f"[{ds}] {_rescue_file(instance)}"
    assert rescue.controllerKey == root.controllerKey
    assert rescue.unitNumber != root.unitNumber
    if linked_clone:
        assert image.id in rescue.backing.parent.fileName
    else:
        assert rescue.backing.parent is None
    assert boot_order(sim, instance) == [rescue.key, root.key]
    unchanged = next(d for d in disks(sim, instance) if d.key == root.key)
    assert unchanged.backing.fileName == root.backing.fileName
    assert sim.files.exists(ds, _rescue_file(instance))

    drv.unrescue(ctx, instance)
    assert [d.key for d in disks(sim, instance)] == [root.key]
    assert boot_order(sim, instance) == [root.key]
    assert not sim.files.exists(ds, _rescue_file(instance))
    assert sim.files.exists(ds, root.backing.fileName.split("] ", 1)[1])
    assert drv.get_info(instance).state == power_state.RUNNING


def test_failed_rescue_power_on_leaves_the_instance_as_it_was(vsphere, ctx, node_a, glance):
    drv, server = vsphere
    sim = server.simulator
    image = vmdk_image(ctx, glance)
    instance = make_instance(node_a, image_ref=image.id)
    spawn(drv, ctx, instance, image_meta=image)
    [root] = disks(sim, instance)
    drv.power_off(instance)
    sim.faults.fail_next("PowerOnVM_Task", "InsufficientResourcesFault")
    with pytest.raises(exception.ComputeResourcesUnavailable):
        drv.rescue(ctx, instance, [], image, None, {})
    assert [d.key for d in disks(sim, instance)] == [root.key]
    assert boot_order(sim, instance) in ([], [root.key])
    assert not sim.files.exists(_datastore(sim, instance), _rescue_file(instance))
    assert power(sim, instance) == "poweredOff"


def test_failed_rescue_attach_leaves_no_copied_disk(vsphere, ctx, node_a, glance,
                                                    conf_overrides):
    conf_overrides("vsphere", use_linked_clone=False)
    drv, server = vsphere
    sim = server.simulator
    image = vmdk_image(ctx, glance)
    instance = make_instance(node_a, image_ref=image.id)
    spawn(drv, ctx, instance, image_meta=image)
    drv.power_off(instance)
    sim.faults.fail_next("ReconfigVM_Task", "InvalidDeviceSpec")
    with pytest.raises(exception.NovaException):
        drv.rescue(ctx, instance, [], image, None, {})
    assert len(disks(sim, instance)) == 1
    assert not sim.files.exists(_datastore(sim, instance), _rescue_file(instance))
    # Nothing stuck: a second attempt works.
    drv.rescue(ctx, instance, [], image, None, {})
    assert len(disks(sim, instance)) == 2


def test_failed_unrescue_keeps_the_instance_rescued_and_running(vsphere, ctx, node_a, glance):
    drv, server = vsphere
    sim = server.simulator
    image = vmdk_image(ctx, glance)
    instance = make_instance(node_a, image_ref=image.id)
    spawn(drv, ctx, instance, image_meta=image)
    drv.power_off(instance)
    drv.rescue(ctx, instance, [], image, None, {})
    order = boot_order(sim, instance)
    sim.faults.fail_next("ReconfigVM_Task", "InvalidDeviceSpec")
    with pytest.raises(exception.NovaException):
        drv.unrescue(ctx, instance)
    assert len(disks(sim, instance)) == 2
    assert boot_order(sim, instance) == order
    assert power(sim, instance) == "poweredOn"
    with pytest.raises(exception.InstanceNotRescuable):  # already rescued
        drv.rescue(ctx, instance, [], image, None, {})


def test_rescue_refuses_a_non_vmdk_image_before_touching_the_vm(vsphere, ctx, node_a, glance):
    drv, server = vsphere
    sim = server.simulator
    instance = make_instance(node_a)
    spawn(drv, ctx, instance)
    from nova import objects

    qcow2 = objects.ImageMeta.from_dict(glance.show(ctx, "155d900f-4e14-4e4c-a73d-069cbf4541e6"))
    with pytest.raises(exception.ImageUnacceptable):
        drv.rescue(ctx, instance, [], qcow2, None, {})
    assert power(sim, instance) == "poweredOn"
    assert len(disks(sim, instance)) == 1


# -- suspend / resume -----------------------------------------------------------------------


def test_suspend_and_resume(vsphere, ctx, node_a):
    drv, server = vsphere
    sim = server.simulator
    instance = make_instance(node_a, memory_mb=4096)
    spawn(drv, ctx, instance)
    host = sim_vm(sim, instance).host
    used = host.get_property("summary.quickStats.overallMemoryUsage")
    drv.suspend(ctx, instance)
    assert power(sim, instance) == "suspended"
    assert drv.get_info(instance).state == power_state.SUSPENDED
    # A suspended VM's memory is on its datastore, not on the host.
    assert host.get_property("summary.quickStats.overallMemoryUsage") == used - 4096
    drv.suspend(ctx, instance)  # already suspended: nothing to do
    drv.resume(ctx, instance, [])
    assert drv.get_info(instance).state == power_state.RUNNING
    drv.resume(ctx, instance, [])  # already running: nothing to do
    assert power(sim, instance) == "poweredOn"
    drv.power_off(instance)
    with pytest.raises(exception.InstanceSuspendFailure):
        drv.suspend(ctx, instance)
    with pytest.raises(exception.InstanceResumeFailure):
        drv.resume(ctx, instance, [])
    assert power(sim, instance) == "poweredOff"


def test_failed_suspend_leaves_the_instance_running(vsphere, ctx, node_a):
    drv, server = vsphere
    sim = server.simulator
    instance = make_instance(node_a)
    spawn(drv, ctx, instance)
    sim.faults.fail_next("SuspendVM_Task", "InvalidState")
    with pytest.raises(exception.InstanceInvalidState):
        drv.suspend(ctx, instance)
    assert power(sim, instance) == "poweredOn"


# -- unsupported ------------------------------------------------------------------------------


def test_pause_and_admin_password_are_not_supported(vsphere, ctx, node_a):
    drv, server = vsphere
    instance = make_instance(node_a)
    spawn(drv, ctx, instance)
    before = server.simulator.request_count
    with pytest.raises(NotImplementedError, match="cannot pause.*use suspend"):
        drv.pause(instance)
    with pytest.raises(NotImplementedError, match="cannot pause"):
        drv.unpause(instance)
    with pytest.raises(NotImplementedError, match="cannot set the admin password"):
        drv.set_admin_password(instance, "s3cret")
    assert server.simulator.request_count == before  # nothing was asked of vCenter
    assert drv.capabilities["supports_attach_interface"] is True
    assert drv.capabilities["supports_bfv_rescue"] is False
