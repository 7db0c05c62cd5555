"""Glance image bytes onto a datastore: plain HTTP uploads and stream-optimized imports.

A stream-optimized VMDK (what vCenter exports, and what our snapshots are)
cannot be uploaded as a file and used: vCenter only takes it through an
import. ``ResourcePool.ImportVApp`` creates a temporary VM whose empty disk
the stream fills through an HttpNfcLease (a PUT to the lease's disk URL);
``HttpNfcLeaseComplete`` ends the import. The VM is then unregistered and
its disk -- a thin VMFS disk of the stream's capacity -- moved where the
caller wants it. A failed import is aborted and its VM removed.

The transfers use oslo.vmware's handles (``rw_handles``: the NFC disk URL
and its certificate thumbprint, the streaming connection, progress reports
that keep a lease alive) with two additions oslo.vmware lacks: the HTTP
answer to an upload is checked before anything is declared done (oslo's
handles never read it, and ``VmdkWriteHandle`` swallows a failed
``HttpNfcLeaseComplete``), and the import lease is created with a target
host (oslo's omits it, which vCenter only accepts on DRS clusters) and
awaited with a bound.
"""

from __future__ import annotations

import dataclasses
import math
import uuid
from collections.abc import Callable
from typing import Any

from oslo_log import log as logging
from oslo_utils import units
from oslo_vmware import exceptions as vexc
from oslo_vmware import rw_handles

from nova_vsphere_driver.vsphere import leases, vmdk
from nova_vsphere_driver.vsphere.session import VSphereSession
from nova_vsphere_driver.vsphere.vm import (
    CONTROLLER_TYPES,
    IDE_CONTROLLER_KEY,
    new_thin_disk_change,
)

LOG = logging.getLogger(__name__)
#: Temporary VMs of imports are named so (with the image id and a random tail).
IMPORT_VM_PREFIX = "nova-image-import-"
#: ... and annotated so: together they tell a leftover import VM of ours
#: (vsphere/image_leftovers.py) from anything else.
IMPORT_ANNOTATION = "nova-vsphere-driver: temporary VM of the import of image"
#: HTTP answers of a datastore or NFC host that mean "stored".
STORED = (200, 201, 204)


class InvalidImage(ValueError):
    """The image's data is not what its properties say (or no VMDK vCenter can use)."""


@dataclasses.dataclass(frozen=True)
class ImportTarget:
    """Where an import's temporary VM is made: its resource pool, folder and ESXi host."""

    pool_ref: Any
    folder_ref: Any
    #: None: vCenter picks (only on a cluster with vCenter DRS enabled).
    host_ref: Any = None


def _bounded(conn: Any, timeout: float) -> None:
    """Bound every socket operation of an oslo.vmware handle's connection."""
    sock = getattr(conn, "sock", None)
    if sock is not None:
        sock.settimeout(timeout)


def _finish_upload(url: str, written: int, size: int, conn: Any,
                   close: Callable[[], None]) -> None:
    """An upload's end: every byte sent, and the server's answer says "stored".

    ``close`` runs however the answer goes (the connection is done with).
    """
    if written != size:
        raise vexc.VimException(f"upload to {url}: {written} of {size} bytes were sent")
    try:
        response = conn.getresponse()
    except Exception as exc:
        raise vexc.VimConnectionException(f"upload to {url}: no answer: {exc}", exc) from exc
    finally:
        close()
    if response.status not in STORED:
        raise vexc.VimException(f"upload to {url}: HTTP {response.status}")


class DatastoreUpload(rw_handles.FileWriteHandle):
    """oslo.vmware's datastore file upload (HTTP PUT), whose answer is checked."""

    def __init__(self, session: VSphereSession, dc_name: str, ds_name: str, rel_path: str,
                 size: int, *, scheme: str, verify: str | bool) -> None:
        self.size = size
        self.written = 0
        super().__init__(session.host, session.port, dc_name, ds_name, session.cookie_header,
                         rel_path, size, scheme=scheme, cacerts=verify)
        _bounded(self._conn, session.api_timeout)

    def write(self, data: bytes) -> None:
        super().write(data)
        self.written += len(data)

    def finish(self) -> None:
        """The whole file was sent: its upload must have been stored."""
        _finish_upload(self._url, self.written, self.size, self._conn,
                       lambda: rw_handles.FileHandle.close(self))

    def close(self) -> None:
        """Give the upload up (the connection is dropped; nothing is stored)."""
        rw_handles.FileHandle.close(self)


class NfcDiskUpload(rw_handles.VmdkHandle):
    """The upload of one disk of an import lease (oslo.vmware's NFC handle)."""

    def __init__(self, session: VSphereSession, lease: Any, info: Any, size: int, *,
                 verify: str | bool) -> None:
        url, thumbprint = self._find_vmdk_url(info, session.host, session.port)
        # The lease names the host's certificate (it came over the verified
        # SOAP connection): pin it; without one, verify as for vCenter.
        cacerts: str | bool = False if thumbprint else verify
        try:
            conn = self._create_write_connection(
                "PUT", url, size, cookies=session.cookie_header, overwrite="t",
                content_type="binary/octet-stream", cacerts=cacerts,
                ssl_thumbprint=thumbprint or None)
        except vexc.VimException:
            raise
        except Exception as exc:  # urllib3/ssl errors on connecting
            raise vexc.VimConnectionException(f"cannot upload to {url}: {exc}", exc) from exc
        _bounded(conn, session.api_timeout)
        super().__init__(session._api, lease, url, conn)
        self.size = size
        self.written = 0

    def write(self, data: bytes) -> None:
        try:
            self._file_handle.send(data)
        except Exception as exc:
            raise vexc.VimConnectionException(
                f"upload to {self._url} failed after {self.written} bytes: {exc}", exc) from exc
        self.written += len(data)
        # oslo.vmware reports at most once a minute: well within the lease timeout.
        self.update_progress()

    def _get_progress(self) -> int:
        # 100 is for HttpNfcLeaseComplete to say.
        return min(99, self.written * 100 // max(self.size, 1))

    def finish(self) -> None:
        """All bytes sent: the host must have taken the disk."""
        _finish_upload(self._url, self.written, self.size, self._file_handle, self.close)


class FirstSector:
    """A writer that looks at an image's first sector before its bytes go anywhere.

    ``open(first_sector)`` checks it and returns the real writer (which has
    ``write``, ``finish`` and ``close``); nothing is created for an image
    that fails the check. ``head_bytes``: how much of the image the check
    sees (one VMDK sector unless told).
    """

    def __init__(self, open_writer: Callable[[bytes], Any],
                 head_bytes: int = vmdk.SECTOR) -> None:
        self._open_writer = open_writer
        self._head_bytes = head_bytes
        self._buffer = bytearray()
        self.target: Any = None

    def write(self, data: bytes) -> None:
        if self.target is not None:
            self.target.write(data)
            return
        self._buffer += data
        if len(self._buffer) >= self._head_bytes:
            self._open()

    def _open(self) -> None:
        data = bytes(self._buffer)
        self._buffer.clear()
        self.target = self._open_writer(data[:self._head_bytes])
        if data:
            self.target.write(data)

    def finish(self) -> None:
        if self.target is None:
            self._open()  # an image shorter than a sector
        self.target.finish()

    def close(self) -> None:
        if self.target is not None:
            self.target.close()


def import_spec(session: VSphereSession, name: str, ds_name: str, capacity_kb: int,
                adapter_type: str, image_id: str) -> Any:
    """A VirtualMachineImportSpec: a VM that only holds a thin disk, never powered on."""
    config = session.factory("VirtualMachineConfigSpec")
    config.name = name
    config.annotation = f"{IMPORT_ANNOTATION} {image_id}"
    config.guestId = "otherGuest64"
    config.numCPUs = 1
    config.memoryMB = 128
    files = session.factory("VirtualMachineFileInfo")
    files.vmPathName = f"[{ds_name}]"
    config.files = files
    changes = []
    controller_key = IDE_CONTROLLER_KEY
    controller_type = CONTROLLER_TYPES[adapter_type]
    if controller_type is not None:
        controller = session.factory(controller_type)
        controller.key = controller_key = -100
        controller.busNumber = 0
        controller.sharedBus = "noSharing"
        change = session.factory("VirtualDeviceConfigSpec")
        change.operation = "add"
        change.device = controller
        changes.append(change)
    changes.append(new_thin_disk_change(session, -101, controller_key, 0, max(capacity_kb, 1),
                                        f"[{ds_name}]"))
    config.deviceChange = changes
    spec = session.factory("VirtualMachineImportSpec")
    spec.configSpec = config
    return spec


class StreamImport:
    """One stream-optimized image imported through a temporary VM.

    Used as the writer of the image's bytes (``write``/``finish``/``close``
    through :class:`FirstSector`): the first sector says the capacity, then
    ImportVApp makes the VM and the rest streams to its disk.
    """

    def __init__(self, session: VSphereSession, ds_name: str, image_id: str, size: int,
                 adapter_type: str, target: Callable[[], ImportTarget], *,
                 verify: str | bool) -> None:
        self.session = session
        self.ds_name = ds_name
        self.size = size
        self.adapter_type = adapter_type
        self._target = target
        self.verify = verify
        self.image_id = image_id
        self.name = f"{IMPORT_VM_PREFIX}{image_id}-{uuid.uuid4().hex[:8]}"
        self.folder_ref: Any = None
        self.lease: Any = None
        self.vm_ref: Any = None
        self.upload: NfcDiskUpload | None = None
        self.completed = False
        self.unregistered = False

    @property
    def vm_folder(self) -> str:
        return f"[{self.ds_name}] {self.name}"

    def open(self, first_sector: bytes) -> NfcDiskUpload:
        header = vmdk.sparse_header(first_sector)
        if header is None or not header.stream_optimized:
            raise InvalidImage("the image data is not a stream-optimized VMDK")
        target = self._target()
        self.folder_ref = target.folder_ref
        spec = import_spec(self.session, self.name, self.ds_name, header.capacity_kb,
                           self.adapter_type, self.image_id)
        kwargs = {"host": target.host_ref} if target.host_ref is not None else {}
        LOG.info("Importing image as VM %s on datastore %s (%d KB disk)", self.name,
                 self.ds_name, header.capacity_kb)
        self.lease = self.session.invoke("ImportVApp", target.pool_ref, spec=spec,
                                         folder=target.folder_ref, **kwargs)
        info = leases.wait_ready(self.session, self.lease, self.session.api_timeout,
                                  "import")
        self.vm_ref = info.entity
        self.upload = NfcDiskUpload(self.session, self.lease, info, self.size,
                                    verify=self.verify)
        return self.upload

    def complete(self) -> tuple[str, int]:
        """End the import; the imported disk's path and capacity (KB), the VM unregistered."""
        self.session.invoke("HttpNfcLeaseComplete", self.lease)
        self.completed = True
        devices = self.session.call("get_object_property", self.vm_ref,
                                    "config.hardware.device")
        disks = [d for d in _items(devices) if type(d).__name__ == "VirtualDisk"]
        if len(disks) != 1:
            raise vexc.VimException(f"imported VM {self.name} has {len(disks)} disks, not 1")
        path = str(disks[0].backing.fileName)
        capacity_kb = int(getattr(disks[0], "capacityInKB", 0) or 0) or math.ceil(
            int(getattr(disks[0], "capacityInBytes", 0) or 0) / units.Ki)
        # Unregistered, the VM's files stay: its disk becomes the cached image.
        self.session.invoke("UnregisterVM", self.vm_ref)
        self.unregistered = True
        return path, capacity_kb

    def roll_back(self) -> None:
        """Abort the lease and remove the temporary VM (best effort: the error matters)."""
        if self.upload is not None:
            self.upload.close()
        if self.lease is not None and not self.completed:
            try:
                self.session.invoke("HttpNfcLeaseAbort", self.lease)
            except vexc.VimException as exc:  # ended already (timed out, aborted)
                LOG.debug("Aborting import lease of %s: %s", self.name, exc)
        if self.lease is None or self.unregistered:
            return
        vm_ref = self.vm_ref or self._find_vm()
        if vm_ref is None:
            return
        # vCenter removes the VM of an aborted import; if it is still there, do.
        try:
            self.session.run_task("Destroy_Task", vm_ref)
        except vexc.ManagedObjectNotFoundException:
            pass
        except Exception as exc:
            LOG.error("Could not remove the temporary VM %s of a failed image import: %s",
                      self.name, exc)

    def _find_vm(self) -> Any:
        if self.folder_ref is None:
            return None
        try:
            return self.session.invoke("FindChild", self.session.content.searchIndex,
                                       entity=self.folder_ref, name=self.name)
        except vexc.VimException as exc:
            LOG.warning("Could not look for the temporary VM %s: %s", self.name, exc)
            return None


def _items(value: Any) -> list:
    """The items of a suds ``ArrayOfX`` (or of a plain list)."""
    if value is None:
        return []
    if isinstance(value, list):
        return value
    for _name, inner in value:
        if isinstance(inner, list):
            return inner
        if inner is not None:
            return [inner]
    return []
