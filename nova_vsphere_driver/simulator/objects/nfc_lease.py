"""HttpNfcLease: export leases of VMs and snapshots, and their disk downloads.

``VirtualMachine.ExportVm`` and ``VirtualMachineSnapshot.ExportSnapshot``
return a lease in state ``initializing``; it turns ``ready`` a moment later
and then lists one URL per virtual disk in ``info.deviceUrl``
(``key`` = ``/<vm moref>/<controller type><bus>:<unit>``, as vCenter names
devices). A GET of such a URL streams the disk as a stream-optimized VMDK
(see ``simulator/vmdk_stream.py``); the URL's token is the ticket, as on
ESXi. The client keeps the lease alive with ``HttpNfcLeaseProgress`` and
ends it with ``HttpNfcLeaseComplete`` or ``HttpNfcLeaseAbort``; a lease
idle for longer than its timeout falls into ``error`` (``Timedout``), and
its URLs stop working, as on vCenter.

The simulator does not model guest writes: a disk's content is the data of
the nearest file of its backing chain that has any (an uploaded image, the
parent of a linked clone), or nothing.
"""

from __future__ import annotations

import dataclasses
import hashlib
import ssl
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

from pyVmomi import vim, vmodl

from nova_vsphere_driver.simulator import vmdk_stream
from nova_vsphere_driver.simulator.datastore_files import parse_datastore_path
from nova_vsphere_driver.simulator.disk_files import disk_data
from nova_vsphere_driver.simulator.objects.base import CallContext, ManagedObject
from nova_vsphere_driver.simulator.vim_faults import invalid_argument, with_fault_message

if TYPE_CHECKING:
    from nova_vsphere_driver.simulator.objects.virtual_machine import VirtualMachine
    from nova_vsphere_driver.simulator.service import Simulator

State = vim.HttpNfcLease.State
Dev = vim.vm.device
#: vCenter's default: a lease without progress reports for this long expires.
LEASE_TIMEOUT_SECONDS = 300
#: How long a lease stays "initializing" before its URLs are ready.
INITIALIZE_SECONDS = 0.02
#: ``ddb.adapterType`` of the exported descriptor, by controller type.
_DESCRIPTOR_ADAPTERS = {"VirtualIDEController": "ide", "VirtualBusLogicController": "buslogic"}


@dataclasses.dataclass
class ExportDisk:
    key: str
    target_id: str
    capacity_kb: int
    content: bytes | None
    cid: int
    adapter: str
    #: (bytes, sha1) of the last complete download, for the manifest.
    served: tuple[int, str] | None = None


class LeaseGone(Exception):
    """The lease ended (completed, aborted, timed out) while a download ran."""


def disk_content(sim: Simulator, backing) -> bytes | None:
    """The data of the nearest file in ``backing``'s chain that has any."""
    while backing is not None:
        ds_name, rel = parse_datastore_path(backing.fileName)
        entry = sim.files.get(ds_name, rel)  # FileNotFound (a FileFault) when it is gone
        data = disk_data(entry)  # the extent of a VMFS disk, or an uploaded file
        if data is not None:
            return data
        backing = getattr(backing, "parent", None)
    return None


def _controller_name(controller) -> str:
    return type(controller).__name__.rsplit(".", 1)[-1]


def export_disks(sim: Simulator, vm: VirtualMachine, devices: list) -> list[ExportDisk]:
    """One ExportDisk per virtual disk of ``devices`` (a VM's or a snapshot's)."""
    by_key = {d.key: d for d in devices}
    disks = []
    for device in devices:
        if not isinstance(device, Dev.VirtualDisk):
            continue
        controller = by_key.get(device.controllerKey)
        if controller is None:
            raise vim.fault.InvalidState(msg=f"disk {device.key} of {vm.name} has no controller")
        name = _controller_name(controller)
        uid = getattr(device.backing, "uuid", None) or device.backing.fileName
        disks.append(ExportDisk(
            key=f"/{vm.moid}/{name}{controller.busNumber}:{device.unitNumber}",
            target_id=f"disk-{len(disks)}.vmdk",
            capacity_kb=int(device.capacityInKB or (device.capacityInBytes or 0) // 1024),
            content=disk_content(sim, device.backing),
            cid=int(hashlib.sha1(uid.encode()).hexdigest()[:8], 16),
            adapter=_DESCRIPTOR_ADAPTERS.get(name, "lsilogic")))
    return disks


def thumbprint(cert_file: str | None) -> str | None:
    """The SHA-1 thumbprint of a PEM certificate, as vCenter writes it (AA:BB:...)."""
    if not cert_file:
        return None
    with open(cert_file, encoding="ascii") as pem:
        der = ssl.PEM_cert_to_DER_cert(pem.read())
    digest = hashlib.sha1(der).hexdigest().upper()
    return ":".join(digest[i:i + 2] for i in range(0, len(digest), 2))


class HttpNfcLease(ManagedObject):
    vim_type = vim.HttpNfcLease
    moid_prefix = "nfclease"
    #: "export" (disks are downloaded); import leases (objects/vapp_import.py) upload.
    direction = "export"
    # Leases expire with time, not with inventory changes.
    uncached = ("state", "info", "error", "initializeProgress", "transferProgress")

    def __init__(self, sim: Simulator, entity: VirtualMachine, disks: list[ExportDisk]) -> None:
        super().__init__(sim)
        self.entity = entity
        self.disks = disks
        self.token = str(uuid.uuid4())
        self.state = State.initializing
        self.error: vmodl.MethodFault | None = None
        self.initialize_progress = 0
        self.transfer_progress = 0
        self.timeout = LEASE_TIMEOUT_SECONDS
        self.last_activity = time.monotonic()

    def persists(self) -> bool:
        return False  # a transfer in flight ends with the service, as on vCenter

    @property
    def active(self) -> bool:
        self._expire()
        return self.state in (State.initializing, State.ready)

    def _expire(self) -> None:
        if self.state in (State.initializing, State.ready) and \
                time.monotonic() - self.last_activity > self.timeout:
            self.state = State.error
            self.error = vim.fault.Timedout(msg="The HTTP NFC lease timed out: no progress "
                                            f"was reported for {self.timeout} s")

    def _touch(self) -> None:
        self.last_activity = time.monotonic()

    def _initialize(self) -> None:
        time.sleep(INITIALIZE_SECONDS)
        with self.sim.registry.lock:
            if self.state == State.initializing:
                self.state = State.ready
                self.initialize_progress = 100
                self._touch()
                self.sim.registry.touch(self)

    def start(self) -> HttpNfcLease:
        """Turn ready in a moment (call once the lease is registered)."""
        threading.Thread(target=self._initialize, name=f"sim-{self.moid}", daemon=True).start()
        return self

    # -- properties -----------------------------------------------------------

    def url(self, disk: ExportDisk) -> str:
        base = getattr(self.sim, "nfc_base_url", None) or "https://*"
        return f"{base}/nfc/{self.token}/{disk.target_id}"

    def _get_state(self):
        self._expire()
        return self.state

    def _get_info(self):
        self._expire()
        if self.state != State.ready:
            return None  # only valid while ready
        cert = thumbprint(getattr(self.sim, "nfc_cert_file", None))
        urls = [vim.HttpNfcLease.DeviceUrl(key=d.key, importKey="", url=self.url(d),
                                           sslThumbprint=cert or "", disk=True,
                                           targetId=d.target_id)
                for d in self.disks]
        return vim.HttpNfcLease.Info(
            lease=self.ref, entity=self.entity.ref, deviceUrl=urls,
            totalDiskCapacityInKB=sum(d.capacity_kb for d in self.disks),
            leaseTimeout=int(self.timeout))

    def _get_error(self):
        self._expire()
        return with_fault_message(self.error) if self.error is not None else None

    def _get_initializeProgress(self):  # noqa: N802
        return self.initialize_progress

    def _get_transferProgress(self):  # noqa: N802
        return self.transfer_progress

    def _get_mode(self):
        return "pushOrGet"

    def _get_capabilities(self):
        return vim.HttpNfcLease.Capabilities(pullModeSupported=False, corsSupported=False)

    # -- methods --------------------------------------------------------------

    def _require_ready(self) -> None:
        self._expire()
        if isinstance(self.error, vim.fault.Timedout):
            raise vim.fault.Timedout(msg=self.error.msg)
        if self.state != State.ready:
            raise vim.fault.InvalidState(msg=f"The lease is {self.state}, not ready")

    def HttpNfcLeaseProgress(self, ctx: CallContext, percent: int) -> None:  # noqa: N802
        with self.sim.registry.lock:
            self._require_ready()
            if not 0 <= percent <= 100:
                raise invalid_argument("percent", "percent must be between 0 and 100")
            self.transfer_progress = percent
            self._touch()
            self.sim.registry.touch(self)

    def HttpNfcLeaseComplete(self, ctx: CallContext) -> None:  # noqa: N802
        with self.sim.registry.lock:
            self._require_ready()
            self.state = State.done
            self.transfer_progress = 100
            self.sim.registry.touch(self)

    def HttpNfcLeaseAbort(self, ctx: CallContext, fault=None) -> None:  # noqa: N802
        with self.sim.registry.lock:
            if not self.active:
                raise vim.fault.InvalidState(msg=f"The lease is {self.state}: nothing to abort")
            self.state = State.error
            self.error = fault or vmodl.fault.RequestCanceled(
                msg="The lease was aborted by the client")
            self.sim.registry.touch(self)

    def HttpNfcLeaseGetManifest(self, ctx: CallContext):  # noqa: N802
        with self.sim.registry.lock:
            self._require_ready()
            return [vim.HttpNfcLease.ManifestEntry(
                key=d.key, sha1=d.served[1], size=d.served[0], disk=True,
                capacity=d.capacity_kb * 1024)
                for d in self.disks if d.served is not None]

    # -- downloads ------------------------------------------------------------

    def stream(self, disk: ExportDisk) -> Iterator[bytes]:
        """The disk's bytes; stops (LeaseGone) as soon as the lease ends."""
        digest = hashlib.sha1()
        size = 0
        chunks = vmdk_stream.stream_optimized(disk.capacity_kb, disk.content,
                                              name=disk.target_id, cid=disk.cid,
                                              adapter=disk.adapter)
        for chunk in chunks:
            with self.sim.registry.lock:
                if not self.active or self.state != State.ready:
                    raise LeaseGone(f"lease {self.moid} is {self.state}")
                # A transfer in progress keeps the lease alive, as on ESXi.
                self._touch()
            digest.update(chunk)
            size += len(chunk)
            yield chunk
        with self.sim.registry.lock:
            disk.served = (size, digest.hexdigest())


def find_download(sim: Simulator, path: str) -> Callable[[], Iterator[bytes]] | None:
    """The download behind an NFC URL path (``/nfc/<token>/<disk>``), or None."""
    parts = path.strip("/").split("/")
    if len(parts) != 3 or parts[0] != "nfc":
        return None
    _, token, name = parts
    with sim.registry.lock:
        for lease in sim.registry.all(vim.HttpNfcLease):
            if lease.token != token or lease.direction != "export" or not lease.active \
                    or lease.state != State.ready:
                continue
            for disk in lease.disks:
                if disk.target_id == name:
                    return lambda lease=lease, disk=disk: lease.stream(disk)
    return None
