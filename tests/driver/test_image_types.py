"""Booting from every VMDK flavour Glance holds, through VSphereDriver.spawn.

Each image type becomes a usable disk in the datastore's image cache (a
stream-optimized one through ResourcePool.ImportVApp, a sparse one converted
by CopyVirtualDisk_Task, a flat one filled through its extent), made once
and reused; the root disk is a linked clone of it (or a grown thin copy).
Asserted in the simulator behind the API: the cached disk's file, type,
capacity and data, the root disk's parent chain, what was imported and
downloaded, and that failures leave no temporary VM, folder or cache entry.
"""

from __future__ import annotations

import threading
import uuid

import pytest
from nova import exception, objects

from nova_vsphere_driver.simulator import vmdk_stream
from nova_vsphere_driver.simulator.objects import vapp_import
from nova_vsphere_driver.simulator.objects.nfc_lease import disk_content
from nova_vsphere_driver.vsphere.image_import import IMPORT_VM_PREFIX
from tests.driver.conftest import make_instance, vmdk_image
from tests.unit.simulator import sparse_vmdk

MB = 1024 * 1024
GB_KB = 1024 * 1024
CACHE = "_nova_image_cache"
#: Image data without zero grains: every byte is checked on the way through.
DATA = bytes(range(1, 256)) * (3 * MB // 255)



def _stream(capacity_mb: int, data: bytes) -> bytes:
    return b"".join(vmdk_stream.stream_optimized(capacity_mb * 1024, data))


#: disk type -> (image bytes, capacity of the cached disk in KB, thin?)
IMAGES = {
    "streamOptimized": (lambda: _stream(64, DATA), 64 * 1024, True),
    "sparse": (lambda: sparse_vmdk.monolithic_sparse(32 * MB, DATA), 32 * 1024, True),
    "preallocated": (lambda: DATA, len(DATA) // 1024 + 1, False),
    "thin": (lambda: DATA, len(DATA) // 1024 + 1, True),
}


def _spawn(drv, ctx, instance, image_meta) -> None:
    drv.spawn(ctx, instance, image_meta, [], None, {}, network_info=[])


def _root(sim, instance):
    [disk] = sim.vm(instance.uuid).disks()
    return disk


def _cache_files(sim) -> list[tuple[str, str]]:
    found = []
    for ds in sim.datastores:
        if sim.files.exists(ds, CACHE):
            found += [(ds, e.path) for e in sim.files.listdir(ds, CACHE, recursive=True)]
    return sorted(found)


def _leftovers(sim) -> list[str]:
    """Temporary VMs, import folders and half-made cache folders, anywhere."""
    left = [vm.name for vm in sim.vms() if vm.name.startswith(IMPORT_VM_PREFIX)]
    for ds in sim.datastores:
        left += [f"[{ds}] {e.path}" for e in sim.files.listdir(ds, "")
                 if e.path.startswith(IMPORT_VM_PREFIX)]
        if sim.files.exists(ds, CACHE):
            left += [f"[{ds}] {e.path}" for e in sim.files.listdir(ds, CACHE)
                     if ".part-" in e.path]
    return left


def _ds_rel(path: str) -> tuple[str, str]:
    ds, rel = path[1:].split("] ", 1)
    return ds, rel


@pytest.mark.parametrize("disk_type", list(IMAGES))
def test_each_disk_type_boots_from_a_usable_cached_disk_made_once(
        vsphere, ctx, node_a, glance, downloads, disk_type):
    drv, server = vsphere
    sim = server.simulator
    make_bytes, capacity_kb, thin = IMAGES[disk_type]
    image = vmdk_image(glance, ctx, make_bytes(), vmware_disktype=disk_type)
    first = make_instance(node_a, image_ref=image.id, root_gb=1)
    _spawn(drv, ctx, first, image)

    # The cache holds one disk for the image, usable, of the image's virtual size, and
    # its copy extended to the flavor's 1 GiB: a delta disk has its parent's capacity.
    root = _root(sim, first)
    parent = root.backing.parent.fileName
    ds, rel = _ds_rel(parent)
    base = f"{CACHE}/{image.id}/{image.id}.vmdk"
    assert rel == f"{CACHE}/{image.id}/{image.id}.1.vmdk"
    assert _cache_files(sim) == [(ds, f"{CACHE}/{image.id}"), (ds, rel), (ds, base)]
    cached = sim.files.get(ds, base)
    assert cached.disk_capacity_kb == capacity_kb and cached.thin is thin
    assert cached.data is None  # a VMFS disk (descriptor + extent), not an uploaded file
    sized = sim.files.get(ds, rel)
    assert sized.disk_capacity_kb == GB_KB and sized.thin and sized.data is None
    assert sized.extent == cached.extent
    # The root disk is a linked clone of the sized copy, as big, holding the image's data.
    assert root.backing.parent.parent is None
    assert root.capacityInKB == GB_KB
    assert disk_content(sim, root.backing) == DATA
    assert _leftovers(sim) == []
    imports = 1 if disk_type == "streamOptimized" else 0
    assert sim.request_counts.get("ImportVApp", 0) == imports

    # A second spawn reuses both: nothing downloaded, imported, converted or copied again.
    before = dict(sim.request_counts)
    second = make_instance(node_a, image_ref=image.id, root_gb=1)
    _spawn(drv, ctx, second, image)
    assert downloads == [image.id]
    for method in ("ImportVApp", "MakeDirectory", "CreateVirtualDisk_Task",
                   "CopyVirtualDisk_Task", "ExtendVirtualDisk_Task", "MoveDatastoreFile_Task",
                   "MoveVirtualDisk_Task"):
        assert sim.request_counts.get(method, 0) == before.get(method, 0), method
    assert _root(sim, second).backing.parent.fileName == parent
    assert _cache_files(sim) == [(ds, f"{CACHE}/{image.id}"), (ds, rel), (ds, base)]


@pytest.mark.parametrize("disk_type", ["streamOptimized", "sparse"])
def test_a_full_copy_is_thin_and_grown_to_the_flavor(vsphere, ctx, node_a, glance,
                                                     conf_overrides, disk_type):
    conf_overrides("vsphere", use_linked_clone=False)
    drv, server = vsphere
    sim = server.simulator
    make_bytes, capacity_kb, _thin = IMAGES[disk_type]
    image = vmdk_image(glance, ctx, make_bytes(), vmware_disktype=disk_type)
    instance = make_instance(node_a, image_ref=image.id, root_gb=2)
    _spawn(drv, ctx, instance, image)
    root = _root(sim, instance)
    assert root.backing.parent is None
    ds, rel = _ds_rel(root.backing.fileName)
    assert rel == f"{instance.uuid}/{instance.uuid}.vmdk"
    copy = sim.files.get(ds, rel)
    assert copy.thin and copy.disk_capacity_kb == 2 * GB_KB == root.capacityInKB
    assert disk_content(sim, root.backing) == DATA
    assert sim.files.get(ds, f"{CACHE}/{image.id}/{image.id}.vmdk").disk_capacity_kb == \
        capacity_kb


@pytest.mark.parametrize(("adapter", "controller"), [
    ("paraVirtual", "ParaVirtualSCSIController"),
    ("ide", "VirtualIDEController"),
    ("lsiLogicsas", "VirtualLsiLogicSASController"),
])
def test_the_images_adapter_type_picks_the_root_disk_controller(vsphere, ctx, node_a, glance,
                                                                adapter, controller):
    drv, server = vsphere
    sim = server.simulator
    image = vmdk_image(glance, ctx, _stream(16, DATA), vmware_disktype="streamOptimized",
                   vmware_adaptertype=adapter)
    instance = make_instance(node_a, image_ref=image.id, root_gb=1)
    _spawn(drv, ctx, instance, image)
    vm = sim.vm(instance.uuid)
    root = _root(sim, instance)
    [ctrl] = [d for d in vm.config.hardware.device if d.key == root.controllerKey]
    assert type(ctrl).__name__.rsplit(".", 1)[-1] == controller
    assert disk_content(sim, root.backing) == DATA


@pytest.mark.parametrize("properties", [
    {"vmware_disktype": "qcow2ish"},
    {"vmware_disktype": "streamOptimized", "hw_disk_bus": "virtio"},
    {"vmware_disktype": "sparse", "hw_scsi_model": "virtio-scsi"},
], ids=["disk-type", "disk-bus", "scsi-model"])
def test_what_vsphere_cannot_boot_is_refused_before_anything_is_made(
        vsphere, ctx, node_a, glance, downloads, properties):
    drv, server = vsphere
    sim = server.simulator
    image = vmdk_image(glance, ctx, DATA, **properties)
    instance = make_instance(node_a, image_ref=image.id, root_gb=1)
    before = dict(sim.request_counts)
    with pytest.raises(exception.ImageUnacceptable):
        _spawn(drv, ctx, instance, image)
    assert downloads == []
    assert not drv.instance_exists(instance)
    for method in ("ImportVApp", "MakeDirectory", "CreateVM_Task", "CreateVirtualDisk_Task"):
        assert sim.request_counts.get(method, 0) == before.get(method, 0), method
    assert _cache_files(sim) == [] and _leftovers(sim) == []


@pytest.mark.parametrize(("data", "disk_type"), [
    (DATA, "streamOptimized"),
    (DATA, "sparse"),
    (sparse_vmdk.monolithic_sparse(8 * MB, DATA), "preallocated"),
    (_stream(8, DATA), "sparse"),
], ids=["raw-as-stream", "raw-as-sparse", "sparse-as-flat", "stream-as-sparse"])
def test_data_that_is_not_its_disk_type_is_refused_and_leaves_nothing(
        vsphere, ctx, node_a, glance, data, disk_type):
    drv, server = vsphere
    sim = server.simulator
    image = vmdk_image(glance, ctx, data, vmware_disktype=disk_type)
    instance = make_instance(node_a, image_ref=image.id, root_gb=1)
    with pytest.raises(exception.ImageUnacceptable):
        _spawn(drv, ctx, instance, image)
    assert not drv.instance_exists(instance)
    assert sim.request_counts.get("ImportVApp", 0) == 0
    assert _leftovers(sim) == []
    assert [p for _, p in _cache_files(sim) if p.endswith(".vmdk")] == []


def test_a_flavor_smaller_than_the_images_virtual_disk_is_refused(vsphere, ctx, node_a, glance):
    drv, server = vsphere
    sim = server.simulator
    # 2 GiB of virtual disk in a few MiB of stream: only the import tells.
    image = vmdk_image(glance, ctx, _stream(2048, DATA), vmware_disktype="streamOptimized")
    instance = make_instance(node_a, image_ref=image.id, root_gb=1)
    with pytest.raises(exception.FlavorDiskSmallerThanImage):
        _spawn(drv, ctx, instance, image)
    assert not drv.instance_exists(instance)
    assert _leftovers(sim) == []
    # The cached disk is fine for a bigger flavor.
    bigger = make_instance(node_a, image_ref=image.id, root_gb=3)
    _spawn(drv, ctx, bigger, image)
    assert sim.request_counts["ImportVApp"] == 1
    assert _root(sim, bigger).capacityInKB == 3 * GB_KB


@pytest.mark.parametrize("failure", ["HttpNfcLeaseComplete", vapp_import.UPLOAD_FAULT_KEY,
                                     "MoveVirtualDisk_Task"])
def test_a_failed_import_leaves_nothing_and_the_next_spawn_imports_cleanly(
        vsphere, ctx, node_a, glance, failure):
    drv, server = vsphere
    sim = server.simulator
    image = vmdk_image(glance, ctx, _stream(16, DATA), vmware_disktype="streamOptimized")
    instance = make_instance(node_a, image_ref=image.id, root_gb=1)
    sim.faults.fail_next(failure, "HostCommunication")
    with pytest.raises(exception.NovaException):
        _spawn(drv, ctx, instance, image)
    assert not drv.instance_exists(instance)
    assert sim.request_counts["ImportVApp"] == 1
    assert _leftovers(sim) == []
    # At most the (empty) cache folder itself.
    assert [path for _, path in _cache_files(sim) if path != CACHE] == []

    _spawn(drv, ctx, instance, image)
    assert sim.request_counts["ImportVApp"] == 2
    assert disk_content(sim, _root(sim, instance).backing) == DATA
    assert _leftovers(sim) == []


def test_concurrent_spawns_of_one_image_import_it_once(vsphere, ctx, node_a, glance, downloads,
                                                       conf_overrides):
    conf_overrides("vsphere", datastore_regex="^shared-all$")
    drv, server = vsphere
    sim = server.simulator
    sim.faults.add_latency("ImportVApp", 0.2)  # both spawns are in the cache at once
    image = vmdk_image(glance, ctx, _stream(16, DATA), vmware_disktype="streamOptimized")
    instances = [make_instance(node_a, image_ref=image.id, root_gb=1) for _ in range(3)]
    errors = []

    def spawn(instance):
        try:
            _spawn(drv, ctx, instance, image)
        except Exception as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=spawn, args=(i,)) for i in instances]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert errors == []
    assert sim.request_counts["ImportVApp"] == 1 and downloads == [image.id]
    # ... and extend one copy of it to the flavor's size, the parent of all three.
    assert sim.request_counts["CopyVirtualDisk_Task"] == 1
    assert sim.request_counts["ExtendVirtualDisk_Task"] == 1
    parents = {_root(sim, i).backing.parent.fileName for i in instances}
    assert parents == {f"[shared-all] {CACHE}/{image.id}/{image.id}.1.vmdk"}


def test_an_older_cache_entry_that_is_no_disk_is_replaced(vsphere, ctx, node_a, glance):
    drv, server = vsphere
    sim = server.simulator
    image = vmdk_image(glance, ctx, DATA, vmware_disktype="preallocated")
    # What earlier versions of the driver left: the image bytes as the .vmdk.
    for ds in ("shared-a", "shared-b", "shared-all"):
        sim.files.write(ds, f"{CACHE}/{image.id}/{image.id}.vmdk", DATA)
    instance = make_instance(node_a, image_ref=image.id, root_gb=1)
    _spawn(drv, ctx, instance, image)
    ds, _ = _ds_rel(_root(sim, instance).backing.parent.fileName)
    cached = sim.files.get(ds, f"{CACHE}/{image.id}/{image.id}.vmdk")
    assert cached.data is None and cached.extent == DATA
    assert cached.disk_capacity_kb == len(DATA) // 1024 + 1


def test_our_own_snapshot_boots(vsphere, ctx, node_a, glance):
    drv, server = vsphere
    sim = server.simulator
    base = vmdk_image(glance, ctx, DATA)
    source = make_instance(node_a, image_ref=base.id, root_gb=1)
    _spawn(drv, ctx, source, base)
    snap_id = str(uuid.uuid4())
    glance.create(ctx, {"id": snap_id, "name": "snap", "status": "queued",
                        "properties": {"image_type": "snapshot"}})
    drv.snapshot(ctx, source, snap_id, lambda task_state, expected_state=None: None)
    snap = objects.ImageMeta.from_dict(glance.show(ctx, snap_id))
    assert snap.properties.hw_disk_type == "streamOptimized"

    booted = make_instance(node_a, image_ref=snap_id, root_gb=1)
    _spawn(drv, ctx, booted, snap)
    root = _root(sim, booted)
    assert sim.request_counts["ImportVApp"] == 1
    # The imported disk is the source's root disk: its capacity and its data.
    ds, rel = _ds_rel(root.backing.parent.fileName)
    assert sim.files.get(ds, rel).disk_capacity_kb == GB_KB
    assert disk_content(sim, root.backing) == DATA
    assert _leftovers(sim) == []


@pytest.mark.parametrize("disk_type", ["thin", "streamOptimized"])
@pytest.mark.parametrize("surplus", [-4096, 4096])
def test_data_that_is_not_the_declared_size_is_refused_by_name(vsphere, ctx, node_a, glance,
                                                               disk_type, surplus):
    import io

    drv, server = vsphere
    sim = server.simulator
    data = IMAGES[disk_type][0]()
    image_id = str(uuid.uuid4())
    declared = len(data) - surplus
    glance.create(None, {"id": image_id, "name": "lying", "status": "active",
                         "disk_format": "vmdk", "container_format": "bare", "size": declared,
                         "properties": {"vmware_disktype": disk_type}}, data=io.BytesIO(data))
    image = objects.ImageMeta.from_dict(glance.show(ctx, image_id))
    instance = make_instance(node_a, image_ref=image.id, root_gb=1)
    with pytest.raises(exception.ImageUnacceptable) as err:
        _spawn(drv, ctx, instance, image)
    message = str(err.value)
    assert image_id in message and f"declares {declared} bytes" in message, message
    assert (f"only {len(data)} bytes were received" if surplus < 0
            else "its data is longer") in message, message
    assert not drv.instance_exists(instance)
    assert _leftovers(sim) == []
    assert [p for _, p in _cache_files(sim) if p.endswith(".vmdk")] == []


def test_an_ova_image_is_refused_before_anything_is_made(vsphere, ctx, node_a, glance,
                                                         downloads):
    """Nova's in-tree driver unpacked OVAs; read as a disk, the archive would boot garbage."""
    import io

    drv, server = vsphere
    sim = server.simulator
    image_id = str(uuid.uuid4())
    glance.create(None, {"id": image_id, "name": "appliance", "status": "active",
                         "disk_format": "vmdk", "container_format": "ova",
                         "size": len(DATA), "properties": {}}, data=io.BytesIO(DATA))
    image = objects.ImageMeta.from_dict(glance.show(ctx, image_id))
    instance = make_instance(node_a, image_ref=image.id, root_gb=1)
    with pytest.raises(exception.ImageUnacceptable, match="OVA"):
        _spawn(drv, ctx, instance, image)
    assert downloads == []
    assert not drv.instance_exists(instance)
    assert _cache_files(sim) == [] and _leftovers(sim) == []
