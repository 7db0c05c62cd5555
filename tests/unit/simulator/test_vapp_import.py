"""Disk import (ResourcePool.ImportVApp, HttpNfcLease uploads) and disk file conversions.

Through pyVmomi and plain HTTP, as any client, and through oslo.vmware's own
unmodified import handle: the lease and its upload URLs, what an upload does
to the VM's disk (checked by exporting it again with an independent reader),
rollback of aborted and timed-out imports, and the datastore-side pieces an
image cache uses (the ``-flat.vmdk`` extent of a disk, CopyVirtualDisk_Task
converting a hosted sparse image, MoveVirtualDisk_Task).
"""

from __future__ import annotations

import time

import pytest
import requests
from pyVmomi import vim, vmodl

from nova_vsphere_driver.simulator import vmdk_stream
from nova_vsphere_driver.simulator.objects import vapp_import
from tests.unit.simulator import sparse_vmdk, stream_vmdk
from tests.unit.simulator.helpers import Dev, bind, create_vm, dc1, fault_of, run, wait_until

MB = 1024 * 1024
PATTERN = bytes(range(1, 256)) * 4096  # ~1 MiB without a zero grain
DS = "shared-a"


def _spec(name: str, capacity_kb: int = 1024, adapter=Dev.VirtualLsiLogicController):
    changes = []
    controller_key = 200  # the VM's own first IDE controller
    if adapter is not None:
        controller_key = -100
        changes.append(Dev.VirtualDeviceSpec(operation="add", device=adapter(
            key=-100, busNumber=0, sharedBus="noSharing")))
    changes.append(Dev.VirtualDeviceSpec(
        operation="add", fileOperation="create",
        device=Dev.VirtualDisk(key=-101, controllerKey=controller_key, unitNumber=0,
                               capacityInKB=capacity_kb,
                               backing=Dev.VirtualDisk.FlatVer2BackingInfo(
                                   fileName=f"[{DS}]", diskMode="persistent",
                                   thinProvisioned=True))))
    config = vim.vm.ConfigSpec(name=name, numCPUs=1, memoryMB=128, guestId="otherGuest64",
                               files=vim.vm.FileInfo(vmPathName=f"[{DS}]"),
                               deviceChange=changes)
    return vim.vm.VmImportSpec(configSpec=config)


def _import(si, sim, name: str, host: str | None = "esx-a1", **kwargs):
    pool = bind(si, sim.cluster("cluster-a").resource_pool)
    host_ref = bind(si, sim.host(host)) if host else None
    lease = pool.ImportVApp(_spec(name, **kwargs), dc1(si).vmFolder, host_ref)
    wait_until(lambda: lease.state == "ready")
    return lease


def _stream(capacity_kb: int, content: bytes | None) -> bytes:
    return b"".join(vmdk_stream.stream_optimized(capacity_kb, content))


def _disk_entry(sim, vm_name: str):
    [path] = sim.vm(vm_name).disk_files()
    ds, rel = path[1:].split("] ")
    return sim.files.get(ds, rel)


def _export_content(vm, length: int) -> tuple[int, bytes]:
    lease = vm.ExportVm()
    wait_until(lambda: lease.state == "ready")
    [url] = lease.info.deviceUrl
    disk = stream_vmdk.parse(requests.get(url.url, timeout=10).content)
    lease.HttpNfcLeaseComplete()
    return disk.capacity_sectors, disk.content(length)


def test_import_vapp_makes_the_vm_and_takes_its_disk_as_a_stream(si, sim):
    lease = _import(si, sim, "imported-1")
    vm = lease.info.entity
    assert vm.name == "imported-1" and vm.runtime.host == bind(si, sim.host("esx-a1"))
    assert vm.parent == dc1(si).vmFolder and vm.resourcePool is not None
    [url] = lease.info.deviceUrl
    assert url.disk and url.targetId == "disk-0.vmdk"
    assert url.importKey == "/imported-1/VirtualLsiLogicController0:0"
    assert url.key == f"/{vm._moId}/VirtualLsiLogicController0:0"
    assert "/nfc/" in url.url
    assert lease.info.totalDiskCapacityInKB == 1024
    # An import URL takes a disk; it serves nothing.
    assert requests.get(url.url, timeout=10).status_code == 404

    body = _stream(2 * MB // 1024, PATTERN)
    resp = requests.put(url.url, data=body, timeout=10,
                        headers={"Content-Type": "binary/octet-stream", "Overwrite": "t"})
    assert resp.status_code == 200
    lease.HttpNfcLeaseProgress(100)
    lease.HttpNfcLeaseComplete()
    assert lease.state == "done"
    # The disk took the stream's capacity and data; the VM stays.
    [disk] = [d for d in vm.config.hardware.device if isinstance(d, vim.vm.device.VirtualDisk)]
    assert disk.capacityInKB == 2048 and disk.backing.thinProvisioned
    entry = _disk_entry(sim, "imported-1")
    assert entry.disk_capacity_kb == 2048 and entry.extent == PATTERN
    assert _export_content(vm, len(PATTERN) + MB) == (4096, PATTERN + bytes(MB))


def test_a_chunked_post_upload_works_too(si, sim):
    lease = _import(si, sim, "imported-post")
    [url] = lease.info.deviceUrl
    body = _stream(1024, PATTERN[:300_000])
    pieces = (body[i:i + 7777] for i in range(0, len(body), 7777))  # requests sends chunked
    resp = requests.post(url.url, data=pieces, timeout=10,
                         headers={"Content-Type": "application/x-vnd.vmware-streamVmdk"})
    assert resp.status_code == 200
    lease.HttpNfcLeaseComplete()
    assert _disk_entry(sim, "imported-post").extent == PATTERN[:300_000]


@pytest.mark.parametrize("body", [
    b"not a vmdk at all" * 100,
    _stream(1024, PATTERN)[:-512],  # no end-of-stream marker
    sparse_vmdk.monolithic_sparse(MB, PATTERN[:4096]),  # sparse, but not a stream
], ids=["garbage", "truncated", "hosted-sparse"])
def test_a_bad_stream_is_refused_and_leaves_the_disk_as_it_was(si, sim, body):
    lease = _import(si, sim, "imported-bad")
    [url] = lease.info.deviceUrl
    assert requests.put(url.url, data=body, timeout=10).status_code == 400
    entry = _disk_entry(sim, "imported-bad")
    assert entry.extent is None and entry.disk_capacity_kb == 1024
    assert lease.state == "ready"  # the client decides: here it aborts
    lease.HttpNfcLeaseAbort()
    assert not any(v.name == "imported-bad" for v in sim.vms())


def test_an_aborted_import_is_rolled_back(si, sim):
    lease = _import(si, sim, "imported-abort")
    [url] = lease.info.deviceUrl
    assert sim.files.exists(DS, "imported-abort/imported-abort.vmdk")
    lease.HttpNfcLeaseAbort()
    assert lease.state == "error"
    assert isinstance(lease.error, vmodl.fault.RequestCanceled)
    # The VM and its files are gone, and so is the upload URL.
    assert not any(v.name == "imported-abort" for v in sim.vms())
    assert not sim.files.exists(DS, "imported-abort")
    assert requests.put(url.url, data=_stream(1024, None), timeout=10).status_code == 404
    with pytest.raises(vim.fault.InvalidState):
        lease.HttpNfcLeaseComplete()


def test_an_import_lease_without_progress_times_out_and_is_rolled_back(si, sim):
    lease = _import(si, sim, "imported-idle")
    sim.registry.get(lease._moId).timeout = 0.2
    time.sleep(0.3)
    assert lease.state == "error"
    assert isinstance(lease.error, vim.fault.Timedout)
    assert not any(v.name == "imported-idle" for v in sim.vms())
    assert not sim.files.exists(DS, "imported-idle")


def test_an_injected_upload_failure_answers_an_http_error(si, sim):
    lease = _import(si, sim, "imported-fault")
    [url] = lease.info.deviceUrl
    sim.faults.fail_next(vapp_import.UPLOAD_FAULT_KEY, "HostCommunication")
    resp = requests.put(url.url, data=_stream(1024, PATTERN), timeout=10)
    assert resp.status_code == 500 and b"HostCommunication" in resp.content
    assert _disk_entry(sim, "imported-fault").extent is None
    # The next upload goes through.
    assert requests.put(url.url, data=_stream(1024, PATTERN), timeout=10).status_code == 200


def test_an_upload_beyond_the_free_space_is_refused(si, sim):
    ds = sim.datastores[DS]
    lease = _import(si, sim, "imported-full")
    [url] = lease.info.deviceUrl
    ds.capacity = sim.files.used_bytes(DS) + MB
    resp = requests.put(url.url, data=_stream(4 * 1024, PATTERN), timeout=10)
    assert resp.status_code == 507
    assert _disk_entry(sim, "imported-full").disk_capacity_kb == 1024


def test_an_ide_disk_is_imported_on_the_vms_ide_controller(si, sim):
    lease = _import(si, sim, "imported-ide", adapter=None)
    [url] = lease.info.deviceUrl
    assert url.importKey == "/imported-ide/VirtualIDEController0:0"


def test_import_vapp_checks_its_spec_and_host(si, sim):
    pool = bind(si, sim.cluster("cluster-a").resource_pool)
    # Without DRS on the cluster, vCenter needs the host.
    with pytest.raises(vmodl.fault.InvalidArgument):
        pool.ImportVApp(_spec("no-host"), dc1(si).vmFolder, None)
    with pytest.raises(vmodl.fault.NotSupported):
        pool.ImportVApp(vim.vApp.VAppImportSpec(
            name="vapp", vAppConfigSpec=vim.vApp.VAppConfigSpec(),
            resourcePoolSpec=vim.ResourceConfigSpec(
                cpuAllocation=vim.ResourceAllocationInfo(),
                memoryAllocation=vim.ResourceAllocationInfo())), dc1(si).vmFolder, None)
    _import(si, sim, "dup")
    with pytest.raises(vim.fault.DuplicateName):
        pool.ImportVApp(_spec("dup"), dc1(si).vmFolder, bind(si, sim.host("esx-a1")))
    assert not any(v.name == "no-host" for v in sim.vms())


def test_oslo_vmware_imports_a_stream_with_its_own_unmodified_handle(sim_server, sim):
    """oslo.vmware completes the lease without reading the upload's answer: still whole."""
    from oslo_vmware import api as vmware_api
    from oslo_vmware import image_transfer, vim_util

    sim.cluster("cluster-a").drs_config.enabled = True  # oslo.vmware names no host
    session = vmware_api.VMwareAPISession("127.0.0.1", sim.username, sim.password, 2, 0.05,
                                          port=sim_server.port, scheme="http")
    try:
        factory = session.vim.client.factory
        spec = factory.create("ns0:VirtualMachineImportSpec")
        config = factory.create("ns0:VirtualMachineConfigSpec")
        config.name, config.guestId, config.numCPUs, config.memoryMB = \
            "oslo-import", "otherGuest64", 1, 128
        files = factory.create("ns0:VirtualMachineFileInfo")
        files.vmPathName = f"[{DS}]"
        config.files = files
        controller = factory.create("ns0:VirtualLsiLogicController")
        controller.key, controller.busNumber, controller.sharedBus = -100, 0, "noSharing"
        disk = factory.create("ns0:VirtualDisk")
        disk.key, disk.controllerKey, disk.unitNumber, disk.capacityInKB = -101, -100, 0, 1
        backing = factory.create("ns0:VirtualDiskFlatVer2BackingInfo")
        backing.fileName, backing.diskMode, backing.thinProvisioned = f"[{DS}]", \
            "persistent", True
        disk.backing = backing
        changes = []
        for device, file_op in ((controller, None), (disk, "create")):
            change = factory.create("ns0:VirtualDeviceConfigSpec")
            change.operation, change.device = "add", device
            if file_op:
                change.fileOperation = file_op
            changes.append(change)
        config.deviceChange = changes
        spec.configSpec = config
        body = _stream(3 * 1024, PATTERN * 2)
        pool = vim_util.get_moref(sim.cluster("cluster-a").resource_pool.moid, "ResourcePool")
        folder = vim_util.get_moref(sim.find_entity("dc1").vm_folder.moid, "Folder")

        class Source:
            def __init__(self) -> None:
                self.left = body

            def read(self, size: int) -> bytes:
                data, self.left = self.left[:size], self.left[size:]
                return data

            def close(self) -> None:
                self.left = b""

        vm_ref = image_transfer.download_stream_optimized_data(
            None, 60, Source(), session=session, host="127.0.0.1", port=sim_server.port,
            resource_pool=pool, vm_folder=folder, vm_import_spec=spec, image_size=len(body))
        assert vim_util.get_moref_value(vm_ref) == sim.vm("oslo-import").moid
        entry = _disk_entry(sim, "oslo-import")
        assert entry.disk_capacity_kb == 3 * 1024 and entry.extent == PATTERN * 2
        [lease] = [obj for obj in sim.registry.find(vapp_import.ImportLease)]
        assert lease.state == "done"
    finally:
        session.logout()


# -- the datastore side of an image cache ------------------------------------------------


def _put(sim_server, sim, path: str, body: bytes) -> requests.Response:
    return requests.put(f"http://127.0.0.1:{sim_server.port}/folder/{path}"
                        f"?dcPath=dc1&dsName={DS}", data=body,
                        auth=(sim.username, sim.password), timeout=10)


def test_a_flat_disk_takes_its_data_through_its_extent(si, sim, sim_server):
    vdm = si.content.virtualDiskManager
    fm = si.content.fileManager
    fm.MakeDirectory(f"[{DS}] img", dc1(si), True)
    spec = vim.VirtualDiskManager.FileBackedVirtualDiskSpec(
        capacityKb=1024, adapterType="lsiLogic", diskType="preallocated")
    run(vdm.CreateVirtualDisk_Task(f"[{DS}] img/a.vmdk", dc1(si), spec))
    run(fm.DeleteDatastoreFile_Task(f"[{DS}] img/a-flat.vmdk", dc1(si)))
    assert _put(sim_server, sim, "img/a-flat.vmdk", PATTERN).status_code in (200, 201)
    entry = sim.files.get(DS, "img/a.vmdk")
    assert entry.extent == PATTERN and not entry.thin
    # One disk for the datastore; its file is served as the descriptor.
    assert [e.path for e in sim.files.listdir(DS, "img")] == ["img/a.vmdk"]
    desc = requests.get(f"http://127.0.0.1:{sim_server.port}/folder/img/a.vmdk"
                        f"?dcPath=dc1&dsName={DS}", auth=(sim.username, sim.password),
                        timeout=10)
    assert desc.content.startswith(b"# Disk DescriptorFile") and b"RW 2048 " in desc.content
    # Deleting the extent drops the data; the descriptor stays.
    run(fm.DeleteDatastoreFile_Task(f"[{DS}] img/a-flat.vmdk", dc1(si)))
    assert sim.files.get(DS, "img/a.vmdk").extent is None


def test_copy_virtual_disk_converts_a_hosted_sparse_image(si, sim, sim_server):
    vdm = si.content.virtualDiskManager
    si.content.fileManager.MakeDirectory(f"[{DS}] sp", dc1(si), True)
    image = sparse_vmdk.monolithic_sparse(8 * MB, PATTERN + bytes(MB) + PATTERN[:1000])
    assert _put(sim_server, sim, "sp/src.vmdk", image).status_code in (200, 201)
    thin = vim.VirtualDiskManager.VirtualDiskSpec(diskType="thin", adapterType="lsiLogic")
    run(vdm.CopyVirtualDisk_Task(f"[{DS}] sp/src.vmdk", dc1(si), f"[{DS}] sp/thin.vmdk",
                                 dc1(si), thin))
    converted = sim.files.get(DS, "sp/thin.vmdk")
    assert converted.thin and converted.disk_capacity_kb == 8 * 1024
    assert converted.extent == PATTERN + bytes(MB) + PATTERN[:1000]
    # Without a spec vCenter makes it preallocated.
    run(vdm.CopyVirtualDisk_Task(f"[{DS}] sp/src.vmdk", dc1(si), f"[{DS}] sp/thick.vmdk",
                                 dc1(si)))
    thick = sim.files.get(DS, "sp/thick.vmdk")
    assert not thick.thin and thick.disk_capacity_kb == 8 * 1024
    # A copy of a disk keeps its data.
    run(vdm.CopyVirtualDisk_Task(f"[{DS}] sp/thin.vmdk", dc1(si), f"[{DS}] sp/again.vmdk",
                                 dc1(si)))
    again = sim.files.get(DS, "sp/again.vmdk")
    assert again.thin and again.extent == converted.extent


def test_copy_virtual_disk_refuses_a_stream_optimized_file(si, sim, sim_server):
    si.content.fileManager.MakeDirectory(f"[{DS}] so", dc1(si), True)
    assert _put(sim_server, sim, "so/s.vmdk", _stream(1024, PATTERN)).status_code in (200, 201)
    fault = fault_of(si.content.virtualDiskManager.CopyVirtualDisk_Task(
        f"[{DS}] so/s.vmdk", dc1(si), f"[{DS}] so/copy.vmdk", dc1(si)))
    assert isinstance(fault, vim.fault.InvalidDiskFormat)
    assert not sim.files.exists(DS, "so/copy.vmdk")


def test_move_virtual_disk_moves_the_disk_and_its_data(si, sim):
    vm = create_vm(si, sim, "mover", "esx-a1", datastore=DS, disk_gb=1)
    src = sim.vm("mover").disk_files()[0]
    _disk_entry(sim, "mover").extent = PATTERN
    vdm = si.content.virtualDiskManager
    run(vm.PowerOnVM_Task())
    fault = fault_of(vdm.MoveVirtualDisk_Task(src, dc1(si), f"[{DS}] moved.vmdk", dc1(si)))
    assert isinstance(fault, vim.fault.FileLocked)
    run(vm.PowerOffVM_Task())
    vm.UnregisterVM()
    run(vdm.MoveVirtualDisk_Task(src, dc1(si), f"[{DS}] moved.vmdk", dc1(si)))
    moved = sim.files.get(DS, "moved.vmdk")
    assert moved.extent == PATTERN and moved.disk_capacity_kb == 1024 * 1024
    assert not sim.files.exists(DS, "mover/mover.vmdk")
    fault = fault_of(vdm.MoveVirtualDisk_Task(f"[{DS}] moved.vmdk", dc1(si),
                                              f"[{DS}] nowhere/x.vmdk", dc1(si)))
    assert isinstance(fault, vim.fault.FileNotFound)
