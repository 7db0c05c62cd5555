"""block_device_info at spawn and destroy: boot from volume, volumes at boot, ephemeral
and swap disks -- asserted in the simulator's devices and datastore files."""

from __future__ import annotations

import pytest
from nova import exception, objects

from tests.driver.conftest import make_instance
from tests.driver.volume_support import backing_vm, make_volume, volume_path
from tests.fixtures import connect
from tests.unit.simulator.helpers import Dev

MB_KB = 1024
GB_KB = 1024 * 1024


@pytest.fixture
def si(vsphere):
    return connect(vsphere[1])


def _devices(sim, instance) -> list:
    return sim.vm(instance.uuid).config.hardware.device


def _disks(sim, instance) -> list:
    return [d for d in _devices(sim, instance) if isinstance(d, Dev.VirtualDisk)]


def _controller(sim, instance, disk):
    return next(d for d in _devices(sim, instance) if d.key == disk.controllerKey)


def _extra(sim, instance) -> dict:
    return {o.key: o.value for o in sim.vm(instance.uuid).config.extraConfig or []}


def _volume_bdm(info: dict, mount: str, boot_index=None, disk_bus=None) -> dict:
    return {"connection_info": info, "mount_device": mount, "boot_index": boot_index,
            "disk_bus": disk_bus, "delete_on_termination": False}


def _volume_image_meta() -> objects.ImageMeta:
    # What Nova passes for a server booted from a volume: the volume's image
    # metadata, without an image id.
    return objects.ImageMeta.from_dict({"properties": {}})


def _bfv_instance(node: str, **kw) -> objects.Instance:
    return make_instance(node, root_gb=0, image_ref="", task_state=None, **kw)


def _files(sim, ds: str, folder: str) -> list[str]:
    return sorted(e.path for e in sim.files.listdir(ds, folder, recursive=True))


def test_boot_from_volume_with_a_second_volume(vsphere, ctx, node_a, si):
    drv, server = vsphere
    sim = server.simulator
    root = make_volume(si, sim, size_gb=2)
    data = make_volume(si, sim, size_gb=1, controller=Dev.ParaVirtualSCSIController)
    root_path, data_path = volume_path(sim, root), volume_path(sim, data)
    instance = _bfv_instance(node_a)
    # The mapping lists the data volume first: the root volume still goes first.
    bdi = {"root_device_name": "/dev/sda", "block_device_mapping": [
        _volume_bdm(data, "/dev/sdb", disk_bus="paraVirtual"),
        _volume_bdm(root, "/dev/sda", boot_index=0)]}
    creates = sim.request_counts.get("CreateVM_Task", 0)

    drv.spawn(ctx, instance, _volume_image_meta(), [], None, {}, network_info=[],
              block_device_info=bdi)

    vm = sim.vm(instance.uuid)
    assert vm.power_state == "poweredOn"
    first, second = _disks(sim, instance)
    # The root volume is the boot disk (SCSI 0:0 of an LSI Logic controller), the
    # other volume on the bus it asked for; both files are the volumes' own.
    assert first.backing.fileName == root_path
    assert (_controller(sim, instance, first).busNumber, first.unitNumber) == (0, 0)
    assert isinstance(_controller(sim, instance, first), Dev.VirtualLsiLogicController)
    assert first.capacityInKB == 2 * GB_KB
    assert second.backing.fileName == data_path
    assert isinstance(_controller(sim, instance, second), Dev.ParaVirtualSCSIController)
    assert _controller(sim, instance, second).busNumber == 1
    extra = _extra(sim, instance)
    assert extra[f"volume-{root['data']['volume_id']}"] == first.backing.uuid
    assert extra[f"volume-{data['data']['volume_id']}"] == second.backing.uuid
    # Everything in one CreateVM_Task, before power-on; no local root disk.
    assert sim.request_counts["CreateVM_Task"] == creates + 1
    ds = vm.config.files.vmPathName[1:].split("]")[0]
    assert not [p for p in _files(sim, ds, instance.uuid) if p.endswith(".vmdk")]
    # The host reaches both volumes' datastore.
    assert "shared-a" in {d.name for d in vm.host.datastores}

    drv.destroy(ctx, instance, [], block_device_info=bdi)

    assert not drv.instance_exists(instance)
    for info, path in ((root, root_path), (data, data_path)):
        ds_name, rel = path[1:].split("] ")
        assert sim.files.exists(ds_name, rel)
        assert volume_path(sim, info) == path
    assert not sim.files.exists(ds, instance.uuid)


def test_destroy_keeps_a_volume_nova_no_longer_lists(vsphere, ctx, node_a, si):
    """A volume the VM records but block_device_info lacks is detached all the same."""
    drv, server = vsphere
    sim = server.simulator
    root = make_volume(si, sim)
    instance = _bfv_instance(node_a)
    bdi = {"block_device_mapping": [_volume_bdm(root, "/dev/sda", boot_index=0)]}
    drv.spawn(ctx, instance, _volume_image_meta(), [], None, {}, network_info=[],
              block_device_info=bdi)
    path = volume_path(sim, root)

    drv.destroy(ctx, instance, [], block_device_info=None)

    assert not drv.instance_exists(instance)
    assert sim.files.exists(*path[1:].split("] "))
    assert [d.backing.fileName for d in backing_vm(sim, root).config.hardware.device
            if isinstance(d, Dev.VirtualDisk)] == [path]


def test_a_volume_the_cluster_does_not_reach_moves_to_the_instance(vsphere, ctx, node_a, si):
    drv, server = vsphere
    sim = server.simulator
    # shared-b is mounted by cluster-b's hosts only.
    root = make_volume(si, sim, datastore="shared-b", host="esx-b1")
    instance = _bfv_instance(node_a)
    bdi = {"block_device_mapping": [_volume_bdm(root, "/dev/sda", boot_index=0)]}

    drv.spawn(ctx, instance, _volume_image_meta(), [], None, {}, network_info=[],
              block_device_info=bdi)

    vm = sim.vm(instance.uuid)
    ds = vm.config.files.vmPathName[1:].split("]")[0]
    moved = volume_path(sim, root)
    assert moved.startswith(f"[{ds}] ")
    [disk] = _disks(sim, instance)
    assert disk.backing.fileName == moved
    assert vm.power_state == "poweredOn"


@pytest.mark.parametrize("failing", ["CreateVM_Task", "PowerOnVM_Task"])
def test_a_failed_boot_from_volume_leaves_no_vm_and_the_volumes_intact(
        vsphere, ctx, node_a, si, failing):
    drv, server = vsphere
    sim = server.simulator
    root = make_volume(si, sim)
    data = make_volume(si, sim)
    paths = [volume_path(sim, root), volume_path(sim, data)]
    vms = len(sim.vms())
    instance = _bfv_instance(node_a, swap=0)
    instance.flavor.ephemeral_gb = 1
    bdi = {"block_device_mapping": [_volume_bdm(root, "/dev/sda", boot_index=0),
                                    _volume_bdm(data, "/dev/sdb")]}
    sim.faults.fail_next(failing, "InsufficientResourcesFault")

    with pytest.raises(exception.ComputeResourcesUnavailable):
        drv.spawn(ctx, instance, _volume_image_meta(), [], None, {}, network_info=[],
                  block_device_info=bdi)

    assert len(sim.vms()) == vms
    assert not drv.instance_exists(instance)
    for info, path in zip((root, data), paths, strict=True):
        assert sim.files.exists(*path[1:].split("] "))
        assert volume_path(sim, info) == path
    for ds in ("shared-a", "shared-all"):
        assert not sim.files.exists(ds, instance.uuid)


def test_ephemeral_and_swap_disks_of_the_flavor(vsphere, ctx, node_a):
    drv, server = vsphere
    sim = server.simulator
    instance = make_instance(node_a, root_gb=1, task_state=None)
    instance.flavor.ephemeral_gb = 2
    instance.flavor.swap = 512

    drv.spawn(ctx, instance, None, [], None, {}, network_info=[])

    root, ephemeral, swap = _disks(sim, instance)
    ds, folder = root.backing.fileName[1:].split("] ")
    folder = folder.rsplit("/", 1)[0]
    assert folder == instance.uuid
    assert ephemeral.backing.fileName == f"[{ds}] {instance.uuid}/ephemeral_0.vmdk"
    assert ephemeral.capacityInKB == 2 * GB_KB
    assert swap.backing.fileName == f"[{ds}] {instance.uuid}/swap.vmdk"
    assert swap.capacityInKB == 512 * MB_KB
    for disk in (ephemeral, swap):
        assert disk.backing.thinProvisioned is True
        assert disk.controllerKey == root.controllerKey
        assert sim.files.get(ds, disk.backing.fileName.split("] ")[1]).thin
    assert [d.unitNumber for d in (root, ephemeral, swap)] == [0, 1, 2]

    drv.destroy(ctx, instance, [])

    assert not sim.files.exists(ds, instance.uuid)


def test_several_ephemerals_and_swap_of_the_mapping(vsphere, ctx, node_a):
    drv, server = vsphere
    sim = server.simulator
    instance = make_instance(node_a, root_gb=1, task_state=None)
    instance.flavor.ephemeral_gb = 4
    bdi = {"ephemerals": [{"device_name": "/dev/sdb", "size": 1, "num": 0},
                          {"device_name": "/dev/hdb", "size": 3, "num": 1, "disk_bus": "ide"}],
           "swap": {"device_name": "/dev/sdd", "swap_size": 256}}

    drv.spawn(ctx, instance, None, [], None, {}, network_info=[], block_device_info=bdi)

    by_name = {d.backing.fileName.rsplit("/", 1)[1]: d for d in _disks(sim, instance)}
    root, eph0, eph1, swap = (by_name[n] for n in (
        f"{instance.uuid}.vmdk", "ephemeral_0.vmdk", "ephemeral_1.vmdk", "swap.vmdk"))
    assert (eph0.capacityInKB, eph1.capacityInKB, swap.capacityInKB) == \
        (1 * GB_KB, 3 * GB_KB, 256 * MB_KB)
    assert isinstance(_controller(sim, instance, eph1), Dev.VirtualIDEController)
    assert _controller(sim, instance, eph0) is _controller(sim, instance, root)
    assert _controller(sim, instance, swap) is _controller(sim, instance, root)


def test_a_bus_vsphere_lacks_is_refused_before_any_call(vsphere, ctx, node_a, si):
    drv, server = vsphere
    sim = server.simulator
    info = make_volume(si, sim)
    instance = make_instance(node_a, task_state=None)
    requests = sim.request_count
    bdi = {"block_device_mapping": [_volume_bdm(info, "/dev/vdb", disk_bus="virtio")]}
    with pytest.raises(exception.UnsupportedHardware) as err:
        drv.spawn(ctx, instance, None, [], None, {}, network_info=[], block_device_info=bdi)
    assert "virtio" in str(err.value)
    assert sim.request_count == requests
    assert not drv.instance_exists(instance)


def test_too_many_ide_devices_create_nothing(vsphere, ctx, node_a):
    drv, server = vsphere
    sim = server.simulator
    instance = make_instance(node_a, root_gb=1, task_state=None)
    bdi = {"ephemerals": [{"device_name": f"/dev/hd{c}", "size": 1, "disk_bus": "ide"}
                          for c in "bcdef"]}
    vms = len(sim.vms())
    with pytest.raises(exception.TooManyDiskDevices):
        drv.spawn(ctx, instance, None, [], None, {}, network_info=[], block_device_info=bdi)
    assert len(sim.vms()) == vms
    assert sim.request_counts.get("CreateVM_Task", 0) == 0
