"""The image cache as a real vCenter needs it, through VSphereDriver.

* Root disks bigger than their image: a linked clone's delta disk has its
  parent's capacity (the simulator refuses any other, as vCenter), so the
  cache keeps one copy of the image extended per root-disk size.
* The guest OS type comes from the image's vmware_ostype, and a snapshot
  boots with its source's.
* Rescue images go through the same typed cache as root disks.
* What a nova-compute that died mid-way left on a datastore is removed on
  the first use of that datastore's cache, and nothing else is.

Asserted in the simulator behind the API: files, disks, parents, capacities,
data, VMs, and the SOAP calls made.
"""

from __future__ import annotations

import datetime
import io
import threading
import time
import uuid

import pytest
from nova import exception, objects
from oslo_vmware import vim_util
from pyVmomi import vim

from nova_vsphere_driver.simulator import vmdk_stream
from nova_vsphere_driver.simulator.objects.nfc_lease import disk_content
from nova_vsphere_driver.vsphere.image_import import IMPORT_ANNOTATION, IMPORT_VM_PREFIX
from tests.driver.conftest import make_instance, vmdk_image
from tests.driver.guest_support import disks, power
from tests.fixtures import connect
from tests.unit.simulator import sparse_vmdk
from tests.unit.simulator.helpers import Dev, bind, run, wait_until

MB = 1024 * 1024
GB_KB = 1024 * 1024
CACHE = "_nova_image_cache"
#: Image data without zero grains: every byte is checked on the way through.
DATA = bytes(range(1, 256)) * (2 * MB // 255)


@pytest.fixture
def one_datastore(conf_overrides):
    """Every spawn on cluster-a goes to shared-a."""
    conf_overrides("vsphere", datastore_regex="^shared-a$")
    return "shared-a"


def _stream(capacity_mb: int) -> bytes:
    return b"".join(vmdk_stream.stream_optimized(capacity_mb * 1024, DATA))


def _spawn(drv, ctx, instance, image_meta) -> None:
    drv.spawn(ctx, instance, image_meta, [], None, {}, network_info=[])


def _root(sim, instance):
    [disk] = disks(sim, instance)
    return disk


def _rel(path: str) -> str:
    return path.split("] ", 1)[1]


def _cache_disks(sim, ds: str = "shared-a") -> list[str]:
    if not sim.files.exists(ds, CACHE):
        return []
    return sorted(e.path for e in sim.files.listdir(ds, CACHE, recursive=True)
                  if e.path.endswith(".vmdk"))


def _temp_folders(sim, ds: str = "shared-a") -> list[str]:
    if not sim.files.exists(ds, CACHE):
        return []
    return [e.path for e in sim.files.listdir(ds, CACHE) if ".part-" in e.path]


def _count(sim, method: str) -> int:
    return sim.request_counts.get(method, 0)


# -- root disks bigger than their image -----------------------------------------------------


def test_a_root_disk_of_the_images_size_is_a_clone_of_the_cached_disk_itself(
        vsphere, ctx, node_a, glance, one_datastore):
    drv, server = vsphere
    sim = server.simulator
    image = vmdk_image(glance, ctx, _stream(1024), vmware_disktype="streamOptimized")
    base = f"{CACHE}/{image.id}/{image.id}.vmdk"
    # A 1 GiB flavor for a 1 GiB image, and a flavor without a root disk size.
    for root_gb in (1, 0):
        instance = make_instance(node_a, image_ref=image.id, root_gb=root_gb)
        _spawn(drv, ctx, instance, image)
        root = _root(sim, instance)
        assert root.backing.parent.fileName == f"[shared-a] {base}"
        assert root.capacityInKB == GB_KB
        assert disk_content(sim, root.backing) == DATA
    assert _cache_disks(sim) == [base]
    assert _count(sim, "CopyVirtualDisk_Task") == _count(sim, "ExtendVirtualDisk_Task") == 0


def test_bigger_root_disks_clone_a_copy_extended_once_per_size(vsphere, ctx, node_a, glance,
                                                               one_datastore):
    drv, server = vsphere
    sim = server.simulator
    image = vmdk_image(glance, ctx, sparse_vmdk.monolithic_sparse(32 * MB, DATA),
                   vmware_disktype="sparse")
    folder = f"{CACHE}/{image.id}"
    booted = {}
    for root_gb in (2, 3, 2):
        instance = make_instance(node_a, image_ref=image.id, root_gb=root_gb)
        _spawn(drv, ctx, instance, image)
        booted.setdefault(root_gb, []).append(instance)
    # One base disk plus one copy per size, each made by one copy and one extension.
    assert _cache_disks(sim) == [f"{folder}/{image.id}.2.vmdk", f"{folder}/{image.id}.3.vmdk",
                                 f"{folder}/{image.id}.vmdk"]
    assert _count(sim, "ExtendVirtualDisk_Task") == 2
    # (The sparse image's conversion is the first copy.)
    assert _count(sim, "CopyVirtualDisk_Task") == 3
    assert sim.files.get("shared-a", f"{folder}/{image.id}.vmdk").disk_capacity_kb == 32 * 1024
    for root_gb, instances in booted.items():
        parent = f"{folder}/{image.id}.{root_gb}.vmdk"
        copy = sim.files.get("shared-a", parent)
        assert copy.disk_capacity_kb == root_gb * GB_KB and copy.thin
        for instance in instances:
            root = _root(sim, instance)
            assert root.backing.parent.fileName == f"[shared-a] {parent}"
            # The delta disk has its parent's capacity: what the flavor asks for.
            assert root.capacityInKB == root_gb * GB_KB
            assert disk_content(sim, root.backing) == DATA
    assert _temp_folders(sim) == []


def test_a_failed_extension_leaves_no_partial_copy_and_the_next_spawn_makes_it(
        vsphere, ctx, node_a, glance, one_datastore):
    drv, server = vsphere
    sim = server.simulator
    image = vmdk_image(glance, ctx, DATA, vmware_disktype="thin")
    instance = make_instance(node_a, image_ref=image.id, root_gb=1)
    sim.faults.fail_next("ExtendVirtualDisk_Task", "NoDiskSpace")
    with pytest.raises(exception.ComputeResourcesUnavailable):
        _spawn(drv, ctx, instance, image)
    assert not drv.instance_exists(instance)
    assert _cache_disks(sim) == [f"{CACHE}/{image.id}/{image.id}.vmdk"]
    assert _temp_folders(sim) == []

    _spawn(drv, ctx, instance, image)
    assert _rel(_root(sim, instance).backing.parent.fileName) == \
        f"{CACHE}/{image.id}/{image.id}.1.vmdk"
    assert _count(sim, "ExtendVirtualDisk_Task") == 2
    assert _temp_folders(sim) == []


def test_a_copy_another_nova_compute_made_meanwhile_is_used(vsphere, ctx, node_a, glance,
                                                            one_datastore):
    drv, server = vsphere
    sim = server.simulator
    image = vmdk_image(glance, ctx, DATA, vmware_disktype="thin")
    sized = f"{CACHE}/{image.id}/{image.id}.1.vmdk"
    sim.faults.add_latency("ExtendVirtualDisk_Task", 0.5)
    instance = make_instance(node_a, image_ref=image.id, root_gb=1)
    failures = []

    def spawn():
        try:
            _spawn(drv, ctx, instance, image)
        except Exception as exc:  # asserted below
            failures.append(exc)

    thread = threading.Thread(target=spawn)
    thread.start()
    # While our copy is being extended, another nova-compute moves its own into place.
    wait_until(lambda: _count(sim, "ExtendVirtualDisk_Task") == 1, timeout=20)
    theirs = sim.files.write("shared-a", sized, None, size=GB_KB * 1024,
                             disk_capacity_kb=GB_KB, thin=True, overwrite=False)
    theirs.extent = DATA
    thread.join(timeout=30)
    assert failures == []
    assert _root(sim, instance).backing.parent.fileName == f"[shared-a] {sized}"
    assert sim.files.get("shared-a", sized) is theirs
    assert _temp_folders(sim) == []


def test_a_sized_copy_of_the_wrong_capacity_is_never_replaced(vsphere, ctx, node_a, glance,
                                                              one_datastore):
    drv, server = vsphere
    sim = server.simulator
    image = vmdk_image(glance, ctx, DATA, vmware_disktype="thin")
    _spawn(drv, ctx, make_instance(node_a, image_ref=image.id, root_gb=0), image)
    sized = f"{CACHE}/{image.id}/{image.id}.1.vmdk"
    # Not what this driver makes, but possibly the parent of linked clones: kept.
    odd = sim.files.write("shared-a", sized, None, size=MB, disk_capacity_kb=1024, thin=True)
    instance = make_instance(node_a, image_ref=image.id, root_gb=1)
    with pytest.raises(exception.NovaException, match="not 1048576 KB"):
        _spawn(drv, ctx, instance, image)
    assert sim.files.get("shared-a", sized) is odd
    assert not drv.instance_exists(instance)
    assert _temp_folders(sim) == []


# -- guest OS type ------------------------------------------------------------------------


@pytest.mark.parametrize(("properties", "guest_id"), [
    ({"vmware_ostype": "ubuntu64Guest"}, "ubuntu64Guest"),
    ({}, "otherGuest64"),
    # Glance's generic os_distro is no guest type ...
    ({"os_distro": "ubuntu"}, "otherGuest64"),
    # ... and hides vmware_ostype from Nova's image object; the driver finds it.
    ({"os_distro": "windows", "vmware_ostype": "windows2019srv_64Guest"},
     "windows2019srv_64Guest"),
], ids=["vmware_ostype", "none", "os_distro", "both"])
def test_the_images_vmware_ostype_is_the_guest_type(vsphere, ctx, node_a, glance, properties,
                                                   guest_id):
    drv, server = vsphere
    sim = server.simulator
    image = vmdk_image(glance, ctx, DATA, **properties)
    instance = make_instance(node_a, image_ref=image.id, root_gb=1)
    _spawn(drv, ctx, instance, image)
    config = sim.vm(instance.uuid).config
    assert config.guestId == guest_id


@pytest.mark.parametrize("properties", [
    {"vmware_ostype": "ubuntu64"},
    {"os_distro": "ubuntu", "vmware_ostype": "ubuntu64"},
], ids=["alone", "behind-os_distro"])
def test_an_unknown_vmware_ostype_is_refused_before_anything_is_made(
        vsphere, ctx, node_a, glance, downloads, properties):
    drv, server = vsphere
    sim = server.simulator
    image = vmdk_image(glance, ctx, DATA, **properties)
    instance = make_instance(node_a, image_ref=image.id, root_gb=1)
    before = dict(sim.request_counts)
    with pytest.raises(exception.ImageUnacceptable, match="ubuntu64Guest"):
        _spawn(drv, ctx, instance, image)
    assert downloads == []
    assert not drv.instance_exists(instance)
    for method in ("MakeDirectory", "CreateVM_Task", "CreateVirtualDisk_Task", "ImportVApp",
                   "SearchDatastore_Task"):
        assert _count(sim, method) == before.get(method, 0), method
    assert all(_cache_disks(sim, ds) == [] for ds in sim.datastores)


def test_a_snapshot_boots_with_the_guest_type_of_its_source(vsphere, ctx, node_a, glance):
    drv, server = vsphere
    sim = server.simulator
    base = vmdk_image(glance, ctx, DATA, vmware_ostype="rhel9_64Guest")
    source = make_instance(node_a, image_ref=base.id, root_gb=1)
    _spawn(drv, ctx, source, base)
    snap_id = str(uuid.uuid4())
    glance.create(ctx, {"id": snap_id, "name": "snap", "status": "queued",
                        "properties": {"image_type": "snapshot"}})
    drv.snapshot(ctx, source, snap_id, lambda task_state, expected_state=None: None)
    assert glance.show(ctx, snap_id)["properties"]["vmware_ostype"] == "rhel9_64Guest"

    snap = objects.ImageMeta.from_dict(glance.show(ctx, snap_id))
    booted = make_instance(node_a, image_ref=snap_id, root_gb=1)
    _spawn(drv, ctx, booted, snap)
    assert sim.vm(booted.uuid).config.guestId == "rhel9_64Guest"
    assert disk_content(sim, _root(sim, booted).backing) == DATA


# -- rescue images of every type ----------------------------------------------------------


@pytest.mark.parametrize(("disk_type", "linked_clone"), [
    ("streamOptimized", True), ("streamOptimized", False), ("sparse", True),
])
def test_a_rescue_image_of_any_vmdk_type_is_cached_and_booted(
        vsphere, ctx, node_a, glance, conf_overrides, one_datastore, disk_type, linked_clone):
    conf_overrides("vsphere", use_linked_clone=linked_clone)
    drv, server = vsphere
    sim = server.simulator
    base = vmdk_image(glance, ctx, b"\x07" * MB)
    instance = make_instance(node_a, image_ref=base.id, root_gb=1)
    _spawn(drv, ctx, instance, base)
    [root] = disks(sim, instance)
    data = _stream(64) if disk_type == "streamOptimized" else \
        sparse_vmdk.monolithic_sparse(64 * MB, DATA)
    rescue_image = vmdk_image(glance, ctx, data, vmware_disktype=disk_type)
    drv.power_off(instance)
    drv.rescue(ctx, instance, [], rescue_image, None, {})

    cached = f"[shared-a] {CACHE}/{rescue_image.id}/{rescue_image.id}.vmdk"
    rescue = next(d for d in disks(sim, instance) if d.key != root.key)
    assert rescue.backing.fileName == \
        f"[shared-a] {instance.uuid}/{instance.uuid}-rescue.vmdk"
    # The image's virtual disk: 64 MiB holding its data, not the bytes of the VMDK file.
    assert rescue.capacityInKB == 64 * 1024
    assert disk_content(sim, rescue.backing) == DATA
    if linked_clone:
        assert rescue.backing.parent.fileName == cached
    else:
        assert rescue.backing.parent is None
        assert sim.files.get("shared-a", _rel(rescue.backing.fileName)).thin
    assert sim.files.get("shared-a", _rel(cached)).disk_capacity_kb == 64 * 1024
    assert _count(sim, "ImportVApp") == (1 if disk_type == "streamOptimized" else 0)
    assert [vm.name for vm in sim.vms() if vm.name.startswith(IMPORT_VM_PREFIX)] == []
    assert _temp_folders(sim) == []
    assert power(sim, instance) == "poweredOn"

    drv.unrescue(ctx, instance)
    assert [d.key for d in disks(sim, instance)] == [root.key]
    assert sim.files.exists("shared-a", _rel(cached))  # the cache keeps the image


def test_a_rescue_image_that_is_not_its_disk_type_leaves_the_instance_alone(
        vsphere, ctx, node_a, glance, one_datastore):
    drv, server = vsphere
    sim = server.simulator
    base = vmdk_image(glance, ctx, b"\x07" * MB)
    instance = make_instance(node_a, image_ref=base.id, root_gb=1)
    _spawn(drv, ctx, instance, base)
    raw = vmdk_image(glance, ctx, DATA, vmware_disktype="streamOptimized")
    with pytest.raises(exception.ImageUnacceptable):
        drv.rescue(ctx, instance, [], raw, None, {})
    assert power(sim, instance) == "poweredOn"
    assert len(disks(sim, instance)) == 1
    assert _count(sim, "ImportVApp") == 0
    # Nothing of the rescue image was cached or left behind.
    assert _temp_folders(sim) == []
    assert _cache_disks(sim) == [f"{CACHE}/{base.id}/{base.id}.1.vmdk",
                                 f"{CACHE}/{base.id}/{base.id}.vmdk"]


# -- leftovers of a nova-compute that died mid-way ----------------------------------------

HOUR = 3600


def _age(sim, ds: str, path: str, seconds: float) -> None:
    """Make ``path`` and everything in it look last modified ``seconds`` ago."""
    when = datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(seconds=seconds)
    entry = sim.files.get(ds, path)
    for item in [entry, *(sim.files.listdir(ds, path, recursive=True) if entry.is_dir else [])]:
        item.modified = when


def _temp_folder(sim, image_id: str, tail: str, age: float) -> str:
    folder = f"{CACHE}/{image_id}.part-{tail}"
    sim.files.write("shared-a", f"{folder}/{image_id}.vmdk", None, size=MB,
                    disk_capacity_kb=1024, thin=True)
    _age(sim, "shared-a", folder, age)
    return folder


def _import_vm(si, sim, name: str, annotation: str, age: float):
    """A VM as an import leaves it: a thin disk, powered off, in its own folder."""
    host = sim.host("esx-a1")
    spec = vim.vm.ConfigSpec(
        name=name, annotation=annotation, numCPUs=1, memoryMB=128, guestId="otherGuest64",
        files=vim.vm.FileInfo(vmPathName="[shared-a]"),
        deviceChange=[
            Dev.VirtualDeviceSpec(operation="add", device=Dev.VirtualLsiLogicController(
                key=-100, busNumber=0, sharedBus="noSharing")),
            Dev.VirtualDeviceSpec(operation="add", fileOperation="create", device=Dev.VirtualDisk(
                key=-101, controllerKey=-100, unitNumber=0, capacityInKB=1024,
                backing=Dev.VirtualDisk.FlatVer2BackingInfo(
                    fileName="[shared-a]", diskMode="persistent", thinProvisioned=True)))])
    vm = run(bind(si, host.datacenter().vm_folder).CreateVM_Task(
        spec, bind(si, host.cluster.resource_pool), bind(si, host)))
    _age(sim, "shared-a", name, age)
    return vm


def _import_name(image_id: str, tail: str) -> str:
    return f"{IMPORT_VM_PREFIX}{image_id}-{tail}"


def test_leftovers_of_an_unfinished_caching_are_removed_on_the_datastores_first_use(
        vsphere, ctx, node_a, glance, one_datastore):
    drv, server = vsphere
    sim = server.simulator
    si = connect(server)
    ids = [str(uuid.uuid4()) for _ in range(8)]
    ours = f"{IMPORT_ANNOTATION} {ids[0]}"
    # What a crash leaves, untouched for an hour: removed.
    old_temp = _temp_folder(sim, ids[0], "0badcafe", HOUR)
    old_import_files = _import_name(ids[1], "00c0ffee")
    sim.files.write("shared-a", f"{old_import_files}/{ids[1]}.vmdk", None, size=MB,
                    disk_capacity_kb=1024, thin=True)
    _age(sim, "shared-a", old_import_files, HOUR)
    old_import_vm = _import_name(ids[0], "0000dead")
    _import_vm(si, sim, old_import_vm, ours, HOUR)
    # Work possibly in progress (modified a minute ago): kept.
    fresh_temp = _temp_folder(sim, ids[2], "1badcafe", 60)
    fresh_import_vm = _import_name(ids[3], "1000dead")
    _import_vm(si, sim, fresh_import_vm, f"{IMPORT_ANNOTATION} {ids[3]}", 60)
    # Not ours, whatever their age: kept.
    lookalike_vm = _import_name(ids[4], "2000dead")
    _import_vm(si, sim, lookalike_vm, "somebody else's VM", HOUR)
    cached = f"{CACHE}/{ids[5]}"
    sim.files.write("shared-a", f"{cached}/{ids[5]}.vmdk", None, size=MB,
                    disk_capacity_kb=1024, thin=True)
    _age(sim, "shared-a", cached, HOUR)
    odd_names = [f"{CACHE}/not-an-image.part-2badcafe", f"{ids[6]}.part-3badcafe",
                 f"{IMPORT_VM_PREFIX}{ids[7]}", f"{CACHE}/{ids[7]}.part-XYZ"]
    for name in odd_names:
        sim.files.mkdir("shared-a", name, create_parents=True)
        _age(sim, "shared-a", name, HOUR)

    image = vmdk_image(glance, ctx, DATA, vmware_disktype="thin")
    instance = make_instance(node_a, image_ref=image.id, root_gb=1)
    _spawn(drv, ctx, instance, image)

    exists = {p: sim.files.exists("shared-a", p) for p in [
        old_temp, old_import_files, old_import_vm, fresh_temp, fresh_import_vm, lookalike_vm,
        cached, *odd_names]}
    assert [p for p, there in exists.items() if not there] == [
        old_temp, old_import_files, old_import_vm]
    vms = {vm.name for vm in sim.vms()}
    assert old_import_vm not in vms
    assert {fresh_import_vm, lookalike_vm, instance.uuid} <= vms
    assert _count(sim, "Destroy_Task") == 1
    # The spawn itself was not disturbed.
    assert disk_content(sim, _root(sim, instance).backing) == DATA

    # Once per datastore: the next spawn does not look again.
    searches = _count(sim, "SearchDatastore_Task")
    second = make_instance(node_a, image_ref=image.id, root_gb=1)
    _spawn(drv, ctx, second, image)
    assert _count(sim, "SearchDatastore_Task") == searches


def test_a_failing_leftover_search_never_fails_the_spawn(vsphere, ctx, node_a, glance,
                                                         one_datastore):
    drv, server = vsphere
    sim = server.simulator
    leftover = _temp_folder(sim, str(uuid.uuid4()), "0badcafe", HOUR)
    sim.faults.fail_next("SearchDatastore_Task", "HostCommunication")
    image = vmdk_image(glance, ctx, DATA, vmware_disktype="thin")
    instance = make_instance(node_a, image_ref=image.id, root_gb=1)
    _spawn(drv, ctx, instance, image)
    assert drv.instance_exists(instance)
    assert sim.files.exists("shared-a", leftover)  # left for the next nova-compute start


def test_a_leftover_this_process_is_working_on_is_never_removed(vsphere, one_datastore):
    drv, server = vsphere
    sim = server.simulator
    image_id = str(uuid.uuid4())
    folder = _temp_folder(sim, image_id, "0badcafe", HOUR)
    ref = drv.services.nodes[next(iter(drv.services.nodes))]
    dc_ref = vim_util.get_moref(ref.datacenter, "Datacenter")
    ds_ref = vim_util.get_moref(sim.datastore_by_name("shared-a").moid, "Datastore")
    cache = drv.services.images
    # Old as it looks, a caching of this process uses it (a long upload, say): kept.
    cache._working_on(folder, True)
    assert cache._leftovers.sweep(dc_ref, ds_ref, "shared-a") == []
    assert sim.files.exists("shared-a", folder)
    cache._working_on(folder, False)
    assert cache._leftovers.sweep(dc_ref, ds_ref, "shared-a") == [f"[shared-a] {folder}"]
    assert not sim.files.exists("shared-a", folder)


# -- pre-caching (Nova's aggregate image cache API) ----------------------------------------


# Its round trips count the clusters' full reads (with the cluster cache a read is
# a WaitForUpdatesEx).
@pytest.mark.vsphere_conf(cluster_cache=False)
def test_cache_image_fills_every_datastore_a_spawn_may_use_once(vsphere, ctx, node_a, glance,
                                                                downloads):
    drv, server = vsphere
    sim = server.simulator
    image = vmdk_image(glance, ctx, DATA, vmware_disktype="thin")
    base = f"{CACHE}/{image.id}/{image.id}.vmdk"
    # Both clusters' stores, shared-all (mounted by both) once.
    stores = ["shared-a", "shared-all", "shared-b"]

    assert drv.cache_image(ctx, image.id) is True

    assert [ds for ds in sorted(sim.datastores) if _cache_disks(sim, ds) == [base]] == stores
    assert downloads == [image.id] * len(stores)
    for ds in stores:
        cached = sim.files.get(ds, base)
        assert cached.disk_capacity_kb == -(-len(DATA) // 1024) and cached.thin
        assert _temp_folders(sim, ds) == []
    # Again: nothing to do, nothing read from Glance, nothing made in vCenter (the
    # clusters are read, the cache looked up over the datastores' HTTP interface).
    before = dict(sim.request_counts)
    assert drv.cache_image(ctx, image.id) is False
    assert downloads == [image.id] * len(stores)
    assert {m for m, n in sim.request_counts.items() if n != before.get(m, 0)} == \
        {"RetrievePropertiesEx"}
    # A spawn then takes the cached disk, whichever datastore it lands on.
    instance = make_instance(node_a, image_ref=image.id, root_gb=0)
    _spawn(drv, ctx, instance, image)
    assert len(downloads) == len(stores)
    root = _root(sim, instance)
    assert _rel(root.backing.parent.fileName) == base
    assert disk_content(sim, root.backing) == DATA


def test_cache_image_refuses_an_image_vsphere_cannot_boot_and_copies_nothing(
        vsphere, ctx, glance, downloads):
    drv, server = vsphere
    sim = server.simulator
    image_id = str(uuid.uuid4())
    glance.create(None, {"id": image_id, "name": "qcow", "status": "active",
                         "disk_format": "qcow2", "container_format": "bare",
                         "size": len(DATA), "properties": {}}, data=io.BytesIO(DATA))
    with pytest.raises(exception.ImageUnacceptable, match="disk format 'qcow2'"):
        drv.cache_image(ctx, image_id)
    assert downloads == []
    assert all(_cache_disks(sim, ds) == [] for ds in sim.datastores)


def test_cache_image_of_a_missing_image_is_image_not_found(vsphere, ctx, glance):
    drv, _ = vsphere
    with pytest.raises(exception.ImageNotFound):
        drv.cache_image(ctx, str(uuid.uuid4()))


def test_precache_honours_the_datastore_regex_and_a_failure_keeps_the_copies_made(
        vsphere, ctx, glance, downloads, conf_overrides):
    drv, server = vsphere
    sim = server.simulator
    image = vmdk_image(glance, ctx, DATA, vmware_disktype="thin")
    base = f"{CACHE}/{image.id}/{image.id}.vmdk"

    def cached() -> list[str]:
        return [ds for ds in sorted(sim.datastores) if _cache_disks(sim, ds) == [base]]

    conf_overrides("vsphere", datastore_regex="^shared-a$")
    assert drv.cache_image(ctx, image.id) is True
    assert cached() == ["shared-a"]
    # All datastores now; the next one's (shared-all's) rename fails.
    conf_overrides("vsphere", datastore_regex=None)
    sim.faults.fail_next("MoveDatastoreFile_Task", "NoDiskSpace")
    with pytest.raises(exception.ComputeResourcesUnavailable, match="NoDiskSpace"):
        drv.cache_image(ctx, image.id)
    assert cached() == ["shared-a"]
    assert all(_temp_folders(sim, ds) == [] for ds in sim.datastores)
    # Asked again, it makes only what is missing.
    assert drv.cache_image(ctx, image.id) is True
    assert cached() == ["shared-a", "shared-all", "shared-b"]
    assert len(downloads) == 1 + 1 + 2


# -- ageing (Nova's image cache manager pass) --------------------------------------------------


def _markers(sim, ds: str, image_id: str) -> list[str]:
    folder = f"{CACHE}/{image_id}"
    if not sim.files.exists(ds, folder):
        return []
    return [e.path.rsplit("/", 1)[-1] for e in sim.files.listdir(ds, folder) if e.is_dir]


def test_unused_cached_images_are_marked_then_removed_and_used_ones_kept(
        vsphere, ctx, node_a, glance, one_datastore, conf_overrides):
    drv, server = vsphere
    sim = server.simulator
    conf_overrides("image_cache", remove_unused_base_images=True,
                   remove_unused_original_minimum_age_seconds=2)
    linked, idle, kept = (vmdk_image(glance, ctx, DATA, vmware_disktype="thin") for _ in range(3))
    # linked: the parent of a VM's root disk; idle: cached, used by nothing;
    # kept: the image of an instance Nova holds here (a full copy, say).
    clone = make_instance(node_a, image_ref=linked.id, root_gb=0)
    _spawn(drv, ctx, clone, linked)
    for image in (idle, kept):
        drv.cache_image(ctx, image.id)
    holder = make_instance(node_a, image_ref=kept.id)
    folder = {i.id: f"[shared-a] {CACHE}/{i.id}" for i in (linked, idle, kept)}

    def cached() -> set[str]:
        return {i.id for i in (linked, idle, kept) if _cache_disks(sim, "shared-a") and
                sim.files.exists("shared-a", f"{CACHE}/{i.id}/{i.id}.vmdk")}

    # Right after a spawn took them, nothing is touched: a VM may be on its way.
    assert drv.manage_image_cache(ctx, [holder]) is None
    assert all(_markers(sim, "shared-a", i) == [] for i in folder)

    drv.services.images._taken.clear()  # a later pass: no spawn of this process is in flight
    done = drv.operations.image_cache.age_images(ctx, [holder])
    assert done["marked"] == [folder[idle.id]]
    assert sorted(done["in_use"]) == sorted([folder[linked.id], folder[kept.id]])
    [marker] = _markers(sim, "shared-a", idle.id)
    assert marker.startswith("ts-")
    # Marked, but not unused for long enough: kept. (The minimum age is raised for
    # this pass alone: the marker's time has whole seconds, and a slow machine
    # could otherwise pass 2 s before this pass runs.)
    conf_overrides("image_cache", remove_unused_original_minimum_age_seconds=3600)
    done = drv.operations.image_cache.age_images(ctx, [holder])
    assert done["removed"] == [] and cached() == {linked.id, idle.id, kept.id}
    assert _markers(sim, "shared-a", idle.id) == [marker]

    conf_overrides("image_cache", remove_unused_original_minimum_age_seconds=2)
    time.sleep(2.2)
    done = drv.operations.image_cache.age_images(ctx, [holder])
    assert done["removed"] == [folder[idle.id]]
    assert cached() == {linked.id, kept.id}
    assert not sim.files.exists("shared-a", f"{CACHE}/{idle.id}")
    assert disk_content(sim, _root(sim, clone).backing) == DATA  # the clone is intact

    # The clone goes: its image is marked; a new spawn of it before the
    # minimum age has passed takes the marker away again.
    drv.destroy(ctx, clone, [])
    done = drv.operations.image_cache.age_images(ctx, [holder])
    assert done["marked"] == [folder[linked.id]]
    again = make_instance(node_a, image_ref=linked.id, root_gb=0)
    _spawn(drv, ctx, again, linked)
    drv.services.images._taken.clear()
    done = drv.operations.image_cache.age_images(ctx, [holder])
    assert done["unmarked"] == [folder[linked.id]]
    assert _markers(sim, "shared-a", linked.id) == []
    time.sleep(2.2)
    assert drv.operations.image_cache.age_images(ctx, [holder])["removed"] == []
    assert cached() == {linked.id, kept.id}


def test_no_ageing_unless_nova_says_remove_unused_base_images(vsphere, ctx, node_a, glance,
                                                               one_datastore, conf_overrides):
    drv, server = vsphere
    sim = server.simulator
    conf_overrides("image_cache", remove_unused_base_images=False,
                   remove_unused_original_minimum_age_seconds=0)
    image = vmdk_image(glance, ctx, DATA, vmware_disktype="thin")
    drv.cache_image(ctx, image.id)
    drv.services.images._taken.clear()
    before = dict(sim.request_counts)
    drv.manage_image_cache(ctx, [])
    assert sim.request_counts == before  # not even looked at
    assert _cache_disks(sim, "shared-a") == [f"{CACHE}/{image.id}/{image.id}.vmdk"]
    assert drv.capabilities["has_imagecache"] is True


def test_a_datastore_that_fails_its_pass_does_not_stop_the_others(vsphere, ctx, glance,
                                                                    conf_overrides):
    drv, server = vsphere
    sim = server.simulator
    conf_overrides("image_cache", remove_unused_base_images=True,
                   remove_unused_original_minimum_age_seconds=3600)
    image = vmdk_image(glance, ctx, DATA, vmware_disktype="thin")
    drv.cache_image(ctx, image.id)  # shared-a, shared-all, shared-b
    drv.services.images._taken.clear()
    sim.faults.fail_next("SearchDatastoreSubFolders_Task", "InvalidState")
    done = drv.operations.image_cache.age_images(ctx, [])
    # cluster-a's stores come first: shared-a failed, the others were marked.
    assert done["failed"] == ["[shared-a]"]
    assert done["marked"] == [f"[{ds}] {CACHE}/{image.id}" for ds in ("shared-all", "shared-b")]
    assert _markers(sim, "shared-a", image.id) == []
