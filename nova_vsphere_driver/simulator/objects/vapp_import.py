"""ResourcePool.ImportVApp: a VM made from an import spec, its disks uploaded through a lease.

vCenter's import protocol, the reverse of an export (objects/nfc_lease.py):
``ImportVApp(spec=VirtualMachineImportSpec, folder, host)`` creates the VM
(its disks empty) and returns an HttpNfcLease, ``initializing`` and then
``ready`` with one ``info.deviceUrl`` per disk (``importKey`` names the disk
as an OVF import does: ``/<vm name>/<controller><bus>:<unit>``). The client
PUTs (or POSTs) each disk to its URL as a stream-optimized VMDK -- the URL's
token is the ticket -- reports progress and completes the lease; the disk
takes the capacity and data of the uploaded stream. An aborted or timed-out
import is rolled back: the VM and its files are removed, as vCenter does.

Fault injection: ``sim.faults.fail_next(UPLOAD_FAULT_KEY, fault)`` makes the
next disk upload fail (HTTP 500 naming the fault), as a transfer to an ESXi
host can.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Iterable
from typing import TYPE_CHECKING

from pyVmomi import vim

from nova_vsphere_driver.simulator import vmdk_stream
from nova_vsphere_driver.simulator.datastore_files import parse_datastore_path
from nova_vsphere_driver.simulator.objects.base import CallContext
from nova_vsphere_driver.simulator.objects.nfc_lease import (
    HttpNfcLease,
    LeaseGone,
    State,
    thumbprint,
)

if TYPE_CHECKING:
    from nova_vsphere_driver.simulator.objects.virtual_machine import VirtualMachine
    from nova_vsphere_driver.simulator.service import Simulator

Dev = vim.vm.device
#: Pseudo method name under which a disk upload failure is injected.
UPLOAD_FAULT_KEY = "HttpNfcLease.upload"
#: How long HttpNfcLeaseComplete waits for uploads still being received (a
#: client may complete the lease as soon as it has sent the last byte).
UPLOAD_DRAIN_SECONDS = 30.0


@dataclasses.dataclass
class ImportDisk:
    key: str
    import_key: str
    target_id: str
    device_key: int
    uploaded: bool = False


def _controller_name(controller) -> str:
    return type(controller).__name__.rsplit(".", 1)[-1]


def import_disks(vm: VirtualMachine) -> list[ImportDisk]:
    devices = vm.config.hardware.device
    by_key = {d.key: d for d in devices}
    disks = []
    for device in devices:
        if not isinstance(device, Dev.VirtualDisk):
            continue
        controller = by_key[device.controllerKey]
        slot = f"{_controller_name(controller)}{controller.busNumber}:{device.unitNumber}"
        disks.append(ImportDisk(key=f"/{vm.moid}/{slot}", import_key=f"/{vm.name}/{slot}",
                                target_id=f"disk-{len(disks)}.vmdk", device_key=device.key))
    return disks


class ImportLease(HttpNfcLease):
    """A lease on a VM being imported; its disks are written, not read."""

    direction = "import"

    def __init__(self, sim: Simulator, vm: VirtualMachine, disks: list[ImportDisk]) -> None:
        super().__init__(sim, vm, [])
        self.import_disks = disks
        self.uploads_in_flight = 0
        self.rolled_back = False

    # -- properties -----------------------------------------------------------

    def _get_info(self):
        self._expire()
        if self.state != State.ready:
            return None
        cert = thumbprint(getattr(self.sim, "nfc_cert_file", None))
        urls = [vim.HttpNfcLease.DeviceUrl(key=d.key, importKey=d.import_key, url=self.url(d),
                                           sslThumbprint=cert or "", disk=True,
                                           targetId=d.target_id)
                for d in self.import_disks]
        capacity = sum(int(self._device(d).capacityInKB or 0) for d in self.import_disks)
        return vim.HttpNfcLease.Info(lease=self.ref, entity=self.entity.ref, deviceUrl=urls,
                                     totalDiskCapacityInKB=capacity,
                                     leaseTimeout=int(self.timeout))

    # -- ending: completion keeps the VM, anything else rolls the import back ----

    def _expire(self) -> None:
        super()._expire()
        if self.state == State.error:
            self._roll_back()

    def _roll_back(self) -> None:
        with self.sim.registry.lock:
            if self.rolled_back:
                return
            self.rolled_back = True
            vm = self.entity
            if vm.moid in self.sim.registry:
                if vm.powered_on:  # vCenter would have refused the power-on under a lease
                    vm.set_power("poweredOff")
                vm.destroy()
            self.sim.registry.touch(self)

    def HttpNfcLeaseComplete(self, ctx: CallContext) -> None:  # noqa: N802
        deadline = time.monotonic() + UPLOAD_DRAIN_SECONDS
        with self.sim.registry.lock:
            while self.uploads_in_flight and time.monotonic() < deadline:
                self.sim.registry.changed.wait(deadline - time.monotonic())
        super().HttpNfcLeaseComplete(ctx)

    def HttpNfcLeaseAbort(self, ctx: CallContext, fault=None) -> None:  # noqa: N802
        super().HttpNfcLeaseAbort(ctx, fault)
        self._roll_back()

    # -- uploads ----------------------------------------------------------------

    def _device(self, disk: ImportDisk):
        return next(d for d in self.entity.config.hardware.device if d.key == disk.device_key)

    def _check_ready(self) -> None:
        if not self.active or self.state != State.ready:
            raise LeaseGone(f"lease {self.moid} is {self.state}")

    def receive(self, disk: ImportDisk, chunks: Iterable[bytes]) -> int:
        """Read one disk's stream-optimized VMDK from ``chunks`` into the VM's disk.

        Returns the bytes read. Raises ``InvalidVmdk`` for a bad or truncated
        stream, ``LeaseGone`` when the lease ends meanwhile, vim faults
        (NoDiskSpace, an injected fault) otherwise; the disk is then unchanged.
        """
        injected = self.sim.faults.take_call_fault(UPLOAD_FAULT_KEY)
        if injected is not None:
            raise injected
        registry = self.sim.registry
        with registry.lock:
            self._check_ready()
            self.uploads_in_flight += 1
        try:
            reader = vmdk_stream.StreamReader()
            for chunk in chunks:
                with registry.lock:
                    self._check_ready()
                    self._touch()  # a transfer in progress keeps the lease alive
                reader.feed(chunk)
            header, data = reader.finish()
            with registry.lock:
                self._check_ready()
                self._store(disk, header.capacity_kb, data)
            return reader.bytes_read
        finally:
            with registry.lock:
                self.uploads_in_flight -= 1
                registry.touch(self)

    def _store(self, disk: ImportDisk, capacity_kb: int, data: bytes) -> None:
        """The disk now holds the stream: its capacity and its data (call under the lock)."""
        device = self._device(disk)
        ds_name, rel = parse_datastore_path(device.backing.fileName)
        entry = self.sim.files.get(ds_name, rel)
        growth = (capacity_kb - int(entry.disk_capacity_kb or 0)) * 1024
        if growth > 0:
            self.sim.datastore_by_name(ds_name).ensure_space(growth)
        self.sim.files.grow(ds_name, rel, growth, capacity_kb)
        entry.extent = data or None
        device.capacityInKB = capacity_kb
        device.capacityInBytes = capacity_kb * 1024
        disk.uploaded = True
        self._touch()
        self.sim.registry.touch(self, self.entity)


def find_upload(sim: Simulator, path: str) -> tuple[ImportLease, ImportDisk] | None:
    """The import lease and disk behind an NFC URL path (``/nfc/<token>/<disk>``), or None."""
    parts = path.strip("/").split("/")
    if len(parts) != 3 or parts[0] != "nfc":
        return None
    _, token, name = parts
    with sim.registry.lock:
        for lease in sim.registry.all(vim.HttpNfcLease):
            if lease.direction != "import" or lease.token != token or not lease.active \
                    or lease.state != State.ready:
                continue
            for disk in lease.import_disks:
                if disk.target_id == name:
                    return lease, disk
    return None


__all__ = ["UPLOAD_FAULT_KEY", "ImportLease", "find_upload", "import_disks"]
