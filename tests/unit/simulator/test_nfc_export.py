"""Disk export (ExportVm, ExportSnapshot, HttpNfcLease) and attaching existing disks.

Through pyVmomi, as any client: the lease's states and faults, the disk
URLs and what they serve (checked with an independent stream-optimized VMDK
reader), and the simulator's own state behind it.
"""

from __future__ import annotations

import hashlib
import time

import pytest
import requests
from pyVmomi import vim, vmodl

from nova_vsphere_driver.simulator import vmdk_stream
from nova_vsphere_driver.simulator.objects import nfc_lease
from tests.unit.simulator import stream_vmdk
from tests.unit.simulator.helpers import GB, Dev, bind, create_vm, fault_of, run, wait_until

MB = 1024 * 1024
PATTERN = bytes(range(1, 256)) * 4096  # ~1 MiB without a zero grain


def _ready(lease) -> None:
    wait_until(lambda: lease.state == "ready")


def _lease_obj(sim, lease):
    return sim.registry.get(lease._moId)


def _fill_disk(sim, vm, data: bytes) -> str:
    """Give the VM's first disk content (the simulator does not model guest writes)."""
    path = sim.vm(vm.name).disk_files()[0]
    ds, rel = path[1:].split("] ")
    sim.files.get(ds, rel).data = data
    return path


def test_export_vm_serves_each_disk_as_a_stream_optimized_vmdk(si, sim):
    vm = create_vm(si, sim, "export-1", disk_gb=1)
    _fill_disk(sim, vm, PATTERN)
    lease = vm.ExportVm()
    assert lease.state in ("initializing", "ready")
    _ready(lease)
    info = lease.info
    assert info.entity == vm
    assert info.totalDiskCapacityInKB == 1024 * 1024
    assert info.leaseTimeout == nfc_lease.LEASE_TIMEOUT_SECONDS
    [url] = info.deviceUrl
    assert url.disk and url.targetId == "disk-0.vmdk"
    assert url.key == f"/{vm._moId}/VirtualLsiLogicController0:0"

    response = requests.get(url.url, timeout=10)
    assert response.status_code == 200
    assert response.headers["Transfer-Encoding"] == "chunked"
    disk = stream_vmdk.parse(response.content)
    assert disk.capacity_sectors == 2 * 1024 * 1024
    assert 'createType="streamOptimized"' in disk.descriptor
    assert f"RDONLY {2 * 1024 * 1024} SPARSE" in disk.descriptor
    assert disk.content(len(PATTERN) + MB) == PATTERN + bytes(MB)
    # The manifest describes exactly the bytes served.
    [entry] = lease.HttpNfcLeaseGetManifest()
    assert entry.key == url.key and entry.disk
    assert entry.size == len(response.content)
    assert entry.sha1 == hashlib.sha1(response.content).hexdigest()

    lease.HttpNfcLeaseProgress(100)
    lease.HttpNfcLeaseComplete()
    assert lease.state == "done"
    assert lease.info is None  # only valid while ready
    assert requests.get(url.url, timeout=10).status_code == 404
    with pytest.raises(vim.fault.InvalidState):
        lease.HttpNfcLeaseComplete()


def test_an_empty_disk_exports_as_a_few_sectors(si, sim):
    vm = create_vm(si, sim, "export-empty", disk_gb=10, thin=True)
    lease = vm.ExportVm()
    _ready(lease)
    body = requests.get(lease.info.deviceUrl[0].url, timeout=10).content
    disk = stream_vmdk.parse(body)
    assert disk.grains == {}
    assert disk.capacity_sectors == 10 * 2 * 1024 * 1024
    assert len(body) < 16 * 1024
    lease.HttpNfcLeaseAbort()


def test_export_vm_refuses_a_running_vm(si, sim):
    vm = create_vm(si, sim, "export-on", disk_gb=1, power_on=True)
    leases = len(list(sim.registry.find(nfc_lease.HttpNfcLease)))
    with pytest.raises(vim.fault.InvalidPowerState):
        vm.ExportVm()
    assert len(list(sim.registry.find(nfc_lease.HttpNfcLease))) == leases


def test_export_snapshot_of_a_running_vm_and_abort(si, sim):
    vm = create_vm(si, sim, "export-snap", disk_gb=1, power_on=True)
    _fill_disk(sim, vm, PATTERN)
    snapshot = run(vm.CreateSnapshot_Task(name="s1", memory=False, quiesce=True))
    lease = snapshot.ExportSnapshot()
    _ready(lease)
    [url] = lease.info.deviceUrl
    assert url.key == f"/{vm._moId}/VirtualLsiLogicController0:0"
    assert lease.info.entity == vm
    # One export at a time per VM.
    with pytest.raises(vim.fault.InvalidState):
        snapshot.ExportSnapshot()
    disk = stream_vmdk.parse(requests.get(url.url, timeout=10).content)
    assert disk.content(len(PATTERN)) == PATTERN
    lease.HttpNfcLeaseAbort()
    assert lease.state == "error"
    assert isinstance(lease.error, vmodl.fault.RequestCanceled)
    assert requests.get(url.url, timeout=10).status_code == 404
    with pytest.raises(vim.fault.InvalidState):
        lease.HttpNfcLeaseAbort()
    assert vm.runtime.powerState == "poweredOn"
    # The lease is over: the VM can be exported again.
    lease2 = snapshot.ExportSnapshot()
    _ready(lease2)
    lease2.HttpNfcLeaseComplete()


def test_a_lease_without_progress_times_out(si, sim):
    vm = create_vm(si, sim, "export-idle", disk_gb=1)
    lease = vm.ExportVm()
    _ready(lease)
    _lease_obj(sim, lease).timeout = 0.3
    time.sleep(0.2)
    lease.HttpNfcLeaseProgress(10)  # progress keeps it alive
    time.sleep(0.2)
    assert lease.state == "ready"
    url = lease.info.deviceUrl[0].url
    time.sleep(0.4)
    assert lease.state == "error"
    assert isinstance(lease.error, vim.fault.Timedout)
    with pytest.raises(vim.fault.Timedout):
        lease.HttpNfcLeaseProgress(20)
    with pytest.raises(vim.fault.Timedout):
        lease.HttpNfcLeaseComplete()
    assert requests.get(url, timeout=10).status_code == 404


def test_lease_methods_check_state_and_arguments(si, sim, monkeypatch):
    monkeypatch.setattr(nfc_lease, "INITIALIZE_SECONDS", 0.5)
    vm = create_vm(si, sim, "export-init", disk_gb=1)
    lease = vm.ExportVm()
    assert lease.state == "initializing"
    assert lease.info is None
    with pytest.raises(vim.fault.InvalidState):
        lease.HttpNfcLeaseComplete()
    _ready(lease)
    with pytest.raises(vmodl.fault.InvalidArgument):
        lease.HttpNfcLeaseProgress(101)
    assert lease.HttpNfcLeaseGetManifest() == []  # nothing downloaded yet
    lease.HttpNfcLeaseComplete()


def test_a_disk_of_a_linked_clone_exports_its_parents_data(si, sim):
    sim.files.write("shared-a", "images/base.vmdk", PATTERN)
    host = sim.host("esx-a1")
    spec = vim.vm.ConfigSpec(
        name="linked", numCPUs=1, memoryMB=256, guestId="otherGuest64",
        files=vim.vm.FileInfo(vmPathName="[shared-a]"),
        deviceChange=[
            Dev.VirtualDeviceSpec(operation="add", device=Dev.ParaVirtualSCSIController(
                key=-10, busNumber=1, sharedBus="noSharing")),
            # A delta disk has its parent's capacity (vCenter refuses any other).
            Dev.VirtualDeviceSpec(operation="add", fileOperation="create", device=Dev.VirtualDisk(
                key=-11, controllerKey=-10, unitNumber=3,
                capacityInKB=(len(PATTERN) + 1023) // 1024,
                backing=Dev.VirtualDisk.FlatVer2BackingInfo(
                    fileName="[shared-a]", diskMode="persistent", thinProvisioned=True,
                    parent=Dev.VirtualDisk.FlatVer2BackingInfo(
                        fileName="[shared-a] images/base.vmdk", diskMode="persistent"))))])
    vm = run(bind(si, host.datacenter().vm_folder).CreateVM_Task(
        spec, bind(si, host.cluster.resource_pool), bind(si, host)))
    lease = vm.ExportVm()
    _ready(lease)
    [url] = lease.info.deviceUrl
    # A new controller's temporary key is resolved: the disk sits on bus 1.
    assert url.key == f"/{vm._moId}/ParaVirtualSCSIController1:3"
    disk = stream_vmdk.parse(requests.get(url.url, timeout=10).content)
    assert disk.content(len(PATTERN)) == PATTERN
    lease.HttpNfcLeaseComplete()


def test_stream_optimized_round_trip_across_grain_tables():
    # Data in the first grain table and, past 32 MiB, in the second; zeros between.
    content = b"A" * 1000 + bytes(40 * MB) + b"B" * 70000
    stream = b"".join(vmdk_stream.stream_optimized(64 * 1024, content, cid=7))
    disk = stream_vmdk.parse(stream)
    # Grains 0, 640 and 641 (64 KiB each); 640 is past the first table's 512.
    assert sorted(disk.grains) == [0, 640 * 65536, 641 * 65536]
    assert disk.content(len(content)) == content
    assert "CID=00000007" in disk.descriptor
    # Beyond the capacity is not part of the disk.
    small = stream_vmdk.parse(b"".join(vmdk_stream.stream_optimized(64, b"C" * 100000)))
    assert small.capacity_sectors == 128
    assert small.content(65536) == b"C" * 65536 and max(small.grains) == 0


def test_reconfigure_attaches_an_existing_disk_and_removes_it_keeping_the_file(si, sim):
    owner = create_vm(si, sim, "volume-owner", disk_gb=1)
    [owner_disk] = [d for d in owner.config.hardware.device if isinstance(d, Dev.VirtualDisk)]
    path = owner_disk.backing.fileName
    user = create_vm(si, sim, "volume-user", disk_gb=1, power_on=True)
    free = bind(si, sim.datastores["shared-a"]).summary.freeSpace
    add = vim.vm.ConfigSpec(deviceChange=[
        Dev.VirtualDeviceSpec(operation="add", device=Dev.VirtualLsiLogicSASController(
            key=-5, busNumber=2, sharedBus="noSharing")),
        Dev.VirtualDeviceSpec(operation="add", device=Dev.VirtualDisk(
            key=-6, controllerKey=-5, unitNumber=0,
            backing=Dev.VirtualDisk.FlatVer2BackingInfo(fileName=path, diskMode="persistent")))])
    run(user.ReconfigVM_Task(add))
    devices = user.config.hardware.device
    controller = next(d for d in devices if isinstance(d, Dev.VirtualLsiLogicSASController))
    attached = next(d for d in devices
                    if isinstance(d, Dev.VirtualDisk) and d.backing.fileName == path)
    assert attached.controllerKey == controller.key and controller.device == [attached.key]
    # The disk keeps the UUID in its descriptor and its capacity; nothing was copied.
    assert attached.backing.uuid == owner_disk.backing.uuid
    assert attached.capacityInKB == owner_disk.capacityInKB
    assert bind(si, sim.datastores["shared-a"]).summary.freeSpace == free

    run(user.ReconfigVM_Task(vim.vm.ConfigSpec(deviceChange=[
        Dev.VirtualDeviceSpec(operation="remove", device=attached)])))
    assert path not in sim.vm("volume-user").disk_files()
    assert sim.files.exists("shared-a", path.split("] ")[1])
    assert path in sim.vm("volume-owner").disk_files()


def test_extend_virtual_disk_and_hot_extend(si, sim):
    vm = create_vm(si, sim, "grow", disk_gb=1, power_on=True)
    [disk] = [d for d in vm.config.hardware.device if isinstance(d, Dev.VirtualDisk)]
    vdm = si.content.virtualDiskManager
    # The disk of a running VM is locked: ExtendVirtualDisk cannot touch it ...
    fault = fault_of(vdm.ExtendVirtualDisk_Task(name=disk.backing.fileName,
                                                newCapacityKb=2 * 1024 * 1024))
    assert isinstance(fault, vim.fault.FileLocked)
    # ... a reconfiguration can (hot extend).
    disk.capacityInKB = 2 * 1024 * 1024
    disk.capacityInBytes = 2 * GB
    run(vm.ReconfigVM_Task(vim.vm.ConfigSpec(deviceChange=[
        Dev.VirtualDeviceSpec(operation="edit", device=disk)])))
    [grown] = [d for d in vm.config.hardware.device if isinstance(d, Dev.VirtualDisk)]
    assert grown.capacityInBytes == 2 * GB
    run(vm.PowerOffVM_Task())
    run(vdm.ExtendVirtualDisk_Task(name=disk.backing.fileName, newCapacityKb=3 * 1024 * 1024))
    [grown] = [d for d in vm.config.hardware.device if isinstance(d, Dev.VirtualDisk)]
    assert grown.capacityInKB == 3 * 1024 * 1024
