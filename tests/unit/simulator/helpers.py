"""Helpers for pyVmomi tests against the running simulator."""

from __future__ import annotations

import time
from collections.abc import Callable

from pyVim.task import WaitForTask
from pyVmomi import vim, vmodl

PC = vmodl.query.PropertyCollector
GB = 1024 ** 3
Dev = vim.vm.device


def bind(si, obj):
    """The pyVmomi stub, on ``si``'s connection, of a simulator object or a moref."""
    ref = obj.ref if hasattr(obj, "ref") else obj
    return type(ref)(ref._moId, si._stub)


def run(task, timeout: float = 10.0):
    """Wait for ``task`` (pyVim's filter-based wait); its result, or raise its fault."""
    WaitForTask(task, maxWaitTime=timeout)
    return task.info.result


def fault_of(task, timeout: float = 10.0) -> vmodl.MethodFault:
    """Wait for ``task`` to fail; its ``info.error``."""
    WaitForTask(task, raiseOnError=False, maxWaitTime=timeout)
    info = task.info
    assert info.state == "error", f"task {task._moId} ended {info.state}, not in error"
    return info.error


def wait_until(predicate: Callable[[], bool], timeout: float = 5.0,
               interval: float = 0.01, what: str = "condition not reached") -> None:
    """Poll ``predicate`` until true; AssertionError saying ``what`` after ``timeout``."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"after {timeout:.0f} s: {what}")
        time.sleep(interval)


def dc1(si):
    return si.content.rootFolder.childEntity[0]


def vm_spec(name: str, datastore: str = "shared-a", *, cpus: int = 1, memory_mb: int = 1024,
            disk_gb: int | None = None, network: str | None = None,
            thin: bool = False) -> vim.vm.ConfigSpec:
    """A ConfigSpec as clients write it: SCSI controller, optional disk and NIC."""
    changes = [Dev.VirtualDeviceSpec(operation="add", device=Dev.VirtualLsiLogicController(
        key=-100, busNumber=0, sharedBus="noSharing"))]
    if disk_gb:
        changes.append(Dev.VirtualDeviceSpec(
            operation="add", fileOperation="create",
            device=Dev.VirtualDisk(key=-101, controllerKey=-100, unitNumber=0,
                                   capacityInKB=disk_gb * 1024 * 1024,
                                   backing=Dev.VirtualDisk.FlatVer2BackingInfo(
                                       fileName=f"[{datastore}]", diskMode="persistent",
                                       thinProvisioned=thin))))
    if network:
        changes.append(Dev.VirtualDeviceSpec(operation="add", device=Dev.VirtualVmxnet3(
            key=-102, backing=Dev.VirtualEthernetCard.NetworkBackingInfo(deviceName=network),
            addressType="generated")))
    return vim.vm.ConfigSpec(name=name, numCPUs=cpus, memoryMB=memory_mb,
                             guestId="otherGuest64",
                             files=vim.vm.FileInfo(vmPathName=f"[{datastore}]"),
                             deviceChange=changes)


def create_vm(si, sim, name: str, host: str = "esx-a1", *, datastore: str | None = None,
              power_on: bool = False, **spec_kwargs):
    """Create a VM through CreateVM_Task on ``host``; the pyVmomi stub."""
    host_obj = sim.host(host)
    datastore = datastore or host_obj.datastores[0].name
    folder = bind(si, host_obj.datacenter().vm_folder)
    pool = bind(si, host_obj.cluster.resource_pool)
    vm = run(folder.CreateVM_Task(vm_spec(name, datastore, **spec_kwargs), pool,
                                  bind(si, host_obj)))
    if power_on:
        run(vm.PowerOnVM_Task())
    return vm


def create_volume_backing(si, esx, volume_id: str, size_gb: int, datastore: str,
                          controller=Dev.VirtualLsiLogicController):
    """A Cinder VMDK volume as Cinder's VMware driver makes it on the simulator host
    ``esx``: a powered-off "backing" VM named after the volume, whose instance
    UUID is the volume ID, with one thin disk; the pyVmomi stub."""
    spec = vim.vm.ConfigSpec(
        name=f"volume-{volume_id}", instanceUuid=volume_id, numCPUs=1, memoryMB=128,
        guestId="otherGuest", files=vim.vm.FileInfo(vmPathName=f"[{datastore}]"),
        deviceChange=[
            Dev.VirtualDeviceSpec(operation="add", device=controller(
                key=-100, busNumber=0, sharedBus="noSharing")),
            Dev.VirtualDeviceSpec(operation="add", fileOperation="create", device=Dev.VirtualDisk(
                key=-101, controllerKey=-100, unitNumber=0, capacityInKB=size_gb * 1024 * 1024,
                backing=Dev.VirtualDisk.FlatVer2BackingInfo(
                    fileName=f"[{datastore}]", diskMode="persistent", thinProvisioned=True)))])
    return run(bind(si, esx.datacenter().vm_folder).CreateVM_Task(
        spec, bind(si, esx.cluster.resource_pool), bind(si, esx)))


def props(content) -> dict:
    return {p.name: p.val for p in content.propSet}
