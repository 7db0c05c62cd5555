"""Cinder VMDK volumes through VSphereDriver: connector, attach, detach, extend.

Each volume is what Cinder's VMware driver makes: a powered-off backing VM
holding one disk, whose moref and the volume's ID make up connection_info.
"""

from __future__ import annotations

import uuid

import pytest
from nova import exception
from pyVmomi import vim

from nova_vsphere_driver.simulator.objects.nfc_lease import HttpNfcLease
from tests.driver.conftest import make_instance
from tests.driver.volume_support import make_volume
from tests.fixtures import connect
from tests.unit.simulator.helpers import Dev, bind, run

GB = 1024 ** 3
KB_PER_GB = 1024 * 1024



@pytest.fixture
def si(vsphere):
    return connect(vsphere[1])


def _backing(sim, info: dict):
    return sim.registry.get(info["data"]["volume"])


def _disks(vm) -> list:
    return [d for d in vm.get_property("config.hardware.device")
            if isinstance(d, Dev.VirtualDisk)]


def _extra(vm) -> dict:
    return {o.key: o.value for o in vm.get_property("config.extraConfig") or []}


def _spawn(drv, ctx, node, **kw):
    instance = make_instance(node, root_gb=1, task_state=None, **kw)
    drv.spawn(ctx, instance, None, [], None, {}, network_info=[])
    return instance


def test_connector_before_and_after_spawn(vsphere, ctx, node_a):
    drv, server = vsphere
    sim = server.simulator
    instance = make_instance(node_a)
    # Boot from volume asks before the VM exists: no "instance", Cinder places freely.
    connector = drv.get_volume_connector(instance)
    assert "instance" not in connector
    assert connector["ip"] == connector["host"] == "127.0.0.1"
    assert connector["connection_capabilities"] == [
        f"vmware_service_instance_uuid:{sim.instance_uuid}"]
    drv.spawn(ctx, instance, None, [], None, {}, network_info=[])
    assert drv.get_volume_connector(instance)["instance"] == sim.vm(instance.uuid).moid


def test_attach_and_detach_a_volume(vsphere, ctx, node_a, si):
    drv, server = vsphere
    sim = server.simulator
    instance = _spawn(drv, ctx, node_a)
    info = make_volume(si, sim)
    volume_id = info["data"]["volume_id"]
    [volume_disk] = _disks(_backing(sim, info))
    used = sim.files.used_bytes("shared-a")

    drv.attach_volume(ctx, info, instance, "/dev/sdb")

    vm = sim.vm(instance.uuid)
    root, attached = _disks(vm)
    assert attached.backing.fileName == volume_disk.backing.fileName
    assert attached.backing.uuid == volume_disk.backing.uuid
    assert attached.capacityInKB == KB_PER_GB
    # On the instance's SCSI controller, next to the root disk; nothing copied.
    assert (attached.controllerKey, attached.unitNumber) == (root.controllerKey, 1)
    assert _extra(vm)[f"volume-{volume_id}"] == volume_disk.backing.uuid
    assert sim.files.used_bytes("shared-a") == used
    assert vm.get_property("runtime.powerState") == "poweredOn"
    # Attaching it again changes nothing.
    reconfigs = sim.request_counts["ReconfigVM_Task"]
    drv.attach_volume(ctx, info, instance, "/dev/sdb")
    assert sim.request_counts["ReconfigVM_Task"] == reconfigs
    assert len(_disks(vm)) == 2

    drv.detach_volume(ctx, info, instance, "/dev/sdb")

    assert [d.backing.fileName for d in _disks(vm)] == [root.backing.fileName]
    assert f"volume-{volume_id}" not in _extra(vm)
    # The file is Cinder's: still there, still the backing VM's.
    ds, rel = volume_disk.backing.fileName[1:].split("] ")
    assert sim.files.exists(ds, rel)
    assert [d.backing.fileName for d in _disks(_backing(sim, info))] == \
        [volume_disk.backing.fileName]
    with pytest.raises(exception.DiskNotFound):
        drv.detach_volume(ctx, info, instance, "/dev/sdb")


def test_a_volume_of_another_adapter_type_gets_its_controller(vsphere, ctx, node_a, si):
    drv, server = vsphere
    sim = server.simulator
    instance = _spawn(drv, ctx, node_a)
    info = make_volume(si, sim, controller=Dev.ParaVirtualSCSIController)
    drv.attach_volume(ctx, info, instance, "/dev/sdb")
    devices = sim.vm(instance.uuid).get_property("config.hardware.device")
    [pvscsi] = [d for d in devices if isinstance(d, Dev.ParaVirtualSCSIController)]
    attached = _disks(sim.vm(instance.uuid))[1]
    assert pvscsi.busNumber == 1  # bus 0 is the root disk's LSI Logic controller
    assert (attached.controllerKey, attached.unitNumber) == (pvscsi.key, 0)
    assert pvscsi.device == [attached.key]


def test_an_unknown_volume_is_volume_not_found_and_the_vm_unchanged(vsphere, ctx, node_a):
    drv, server = vsphere
    sim = server.simulator
    instance = _spawn(drv, ctx, node_a)
    before = sim.vm(instance.uuid).get_property("config")
    info = {"driver_volume_type": "vmdk",
            "data": {"volume": "vm-999", "volume_id": str(uuid.uuid4())}}
    with pytest.raises(exception.VolumeNotFound):
        drv.attach_volume(ctx, info, instance, "/dev/sdb")
    assert sim.request_counts.get("ReconfigVM_Task", 0) == 0
    assert sim.vm(instance.uuid).get_property("config") == before


def test_a_re_registered_backing_is_found_by_volume_id(vsphere, ctx, node_a, si):
    drv, server = vsphere
    sim = server.simulator
    instance = _spawn(drv, ctx, node_a)
    info = make_volume(si, sim)
    stale = dict(info, data=dict(info["data"], volume="vm-999"))
    drv.attach_volume(ctx, stale, instance, "/dev/sdb")
    assert len(_disks(sim.vm(instance.uuid))) == 2


def test_a_failed_attach_leaves_the_vm_as_it_was(vsphere, ctx, node_a, si):
    drv, server = vsphere
    sim = server.simulator
    instance = _spawn(drv, ctx, node_a)
    info = make_volume(si, sim)
    before = sim.vm(instance.uuid).get_property("config")
    sim.faults.fail_next("ReconfigVM_Task", "InvalidDeviceSpec")
    with pytest.raises(exception.VolumeAttachFailed) as err:
        drv.attach_volume(ctx, info, instance, "/dev/sdb")
    assert info["data"]["volume_id"] in str(err.value)
    assert sim.vm(instance.uuid).get_property("config") == before


def test_only_vmdk_volumes_and_no_encryption(vsphere, ctx, node_a, si):
    drv, server = vsphere
    instance = _spawn(drv, ctx, node_a)
    iscsi = {"driver_volume_type": "iscsi", "data": {"target_iqn": "iqn.x", "volume_id": "v"}}
    with pytest.raises(exception.VolumeDriverNotFound):
        drv.attach_volume(ctx, iscsi, instance, "/dev/sdb")
    info = make_volume(si, server.simulator)
    with pytest.raises(exception.VolumeEncryptionNotSupported):
        drv.attach_volume(ctx, info, instance, "/dev/sdb",
                          encryption={"provider": "luks", "control_location": "front-end"})
    assert len(_disks(server.simulator.vm(instance.uuid))) == 1
    with pytest.raises(NotImplementedError):
        drv.swap_volume(ctx, info, info, instance, "/dev/sdb", 2)


def test_extend_a_volume_the_running_vm_sees(vsphere, ctx, node_a, si):
    drv, server = vsphere
    sim = server.simulator
    instance = _spawn(drv, ctx, node_a)
    info = make_volume(si, sim)
    drv.attach_volume(ctx, info, instance, "/dev/sdb")
    assert drv.capabilities["supports_extend_volume"] is True

    drv.extend_volume(ctx, info, instance, 3 * GB)

    attached = _disks(sim.vm(instance.uuid))[1]
    assert attached.capacityInBytes == 3 * GB
    ds, rel = attached.backing.fileName[1:].split("] ")
    assert sim.files.get(ds, rel).disk_capacity_kb == 3 * KB_PER_GB
    # Not larger than now: nothing to do.
    reconfigs = sim.request_counts["ReconfigVM_Task"]
    drv.extend_volume(ctx, info, instance, 2 * GB)
    assert sim.request_counts["ReconfigVM_Task"] == reconfigs
    other = make_volume(si, sim)
    with pytest.raises(exception.DiskNotFound):
        drv.extend_volume(ctx, other, instance, 3 * GB)


def test_detach_after_storage_vmotion_moves_the_backing_along(vsphere, ctx, node_a, si):
    drv, server = vsphere
    sim = server.simulator
    instance = _spawn(drv, ctx, node_a)
    info = make_volume(si, sim)
    drv.attach_volume(ctx, info, instance, "/dev/sdb")
    # Storage vMotion of the instance moves every disk, the volume's too.
    vm = bind(si, sim.vm(instance.uuid))
    run(vm.RelocateVM_Task(vim.vm.RelocateSpec(datastore=bind(si, sim.datastores["shared-all"]))))
    moved = _disks(sim.vm(instance.uuid))[1].backing.fileName
    assert moved.startswith("[shared-all] ")

    drv.detach_volume(ctx, info, instance, "/dev/sdb")

    assert len(_disks(sim.vm(instance.uuid))) == 1
    [backing_disk] = _disks(_backing(sim, info))
    assert backing_disk.backing.fileName == moved
    assert sim.files.exists("shared-all", moved.split("] ")[1])


def test_snapshot_with_a_volume_attached_exports_only_the_root_disk(vsphere, ctx, node_a, si,
                                                                    glance, monkeypatch):
    drv, server = vsphere
    sim = server.simulator
    instance = _spawn(drv, ctx, node_a)
    info = make_volume(si, sim, controller=Dev.VirtualLsiLogicController)
    drv.attach_volume(ctx, info, instance, "/dev/sdb")
    image_id = str(uuid.uuid4())
    glance.create(ctx, {"id": image_id, "name": "snap", "status": "queued"})
    received = []

    def update(context, image_id, metadata, data=None, purge_props=False):
        received.append(b"".join(iter(lambda: data.read(65536), b"")))

    monkeypatch.setattr(glance, "update", update)
    drv.snapshot(ctx, instance, image_id, lambda task_state, expected_state=None: None)
    [lease] = sim.registry.find(HttpNfcLease)
    served = {d.key: d.served for d in lease.disks}
    vm = sim.vm(instance.uuid)
    assert served[f"/{vm.moid}/VirtualLsiLogicController0:0"][0] == len(received[0])
    assert served[f"/{vm.moid}/VirtualLsiLogicController0:1"] is None  # the volume


def test_detach_all_before_destroy_keeps_the_volume(vsphere, ctx, node_a, si):
    drv, server = vsphere
    sim = server.simulator
    instance = _spawn(drv, ctx, node_a)
    info = make_volume(si, sim)
    drv.attach_volume(ctx, info, instance, "/dev/sdb")
    path = _disks(sim.vm(instance.uuid))[1].backing.fileName
    bdi = {"block_device_mapping": [{"connection_info": info, "mount_device": "/dev/sdb"}]}

    drv.operations.volumes.detach_all(ctx, instance, bdi)
    drv.destroy(ctx, instance, [], block_device_info=bdi)

    assert not drv.instance_exists(instance)
    assert sim.files.exists("shared-a", path.split("] ")[1])
