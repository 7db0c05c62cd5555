"""Per-datastore cache of Glance images as ready-to-use VMFS disks, whatever the VMDK type.

``[ds] <cache_dir>/<image_id>/<image_id>.vmdk`` is a disk vCenter can attach
or clone, made from the image once per datastore according to the image's
``vmware_disktype`` (as Nova's in-tree driver reads it):

* flat (``preallocated``, the default, ``thin``, ``thick``,
  ``eagerZeroedThick``): the image is the disk's data. vCenter creates the
  disk (CreateVirtualDisk_Task writes the descriptor), its ``-flat.vmdk``
  extent is replaced by the image, uploaded over the datastore HTTP
  interface.
* ``sparse`` (a hosted monolithic sparse VMDK): uploaded as a file, then
  converted to a thin VMFS disk with CopyVirtualDisk_Task.
* ``streamOptimized`` (what vCenter exports, and our snapshots): imported
  through ResourcePool.ImportVApp into a temporary VM whose disk then moves
  into the cache (vsphere/image_import.py).

Everything is built in a temporary folder next to the cache folder, which
is renamed into place when the disk is complete: a half-made image is never
taken for a cached one, and a failed one leaves nothing behind. Whether an
image is cached is one HTTP GET of its descriptor (no SOAP call), which also
gives its capacity. Concurrent requests for the same image on the same
datastore make it once.

vCenter creates a linked clone's delta disk only with its parent's capacity
(a disk with a parent cannot be expanded). A root disk bigger than the
image therefore hangs off a copy of the cached disk extended to that size,
``<id>/<id>.<GiB>.vmdk`` (as Nova's in-tree driver keeps them), made once
per datastore, image and size the same way (:meth:`ImageCache.sized`).

What a nova-compute that died mid-way left (temporary folders, import VMs)
is removed on the first use of each datastore's cache
(vsphere/image_leftovers.py); images nothing uses any more are aged out by
Nova's image cache manager pass (vsphere/image_aging.py).
"""

from __future__ import annotations

import dataclasses
import math
import threading
import time
import urllib.parse
import uuid
from collections.abc import Callable

import requests
from oslo_log import log as logging
from oslo_utils import units
from oslo_vmware import exceptions as vexc

from nova_vsphere_driver.vsphere import vmdk
from nova_vsphere_driver.vsphere.image_aging import AgingReport, ImageAging
from nova_vsphere_driver.vsphere.image_import import (
    DatastoreUpload,
    FirstSector,
    ImportTarget,
    InvalidImage,
    StreamImport,
)
from nova_vsphere_driver.vsphere.image_leftovers import LeftoverSweep
from nova_vsphere_driver.vsphere.session import VSphereSession
from nova_vsphere_driver.vsphere.vm import DEFAULT_ADAPTER_TYPE

LOG = logging.getLogger(__name__)

STREAM_OPTIMIZED = "streamOptimized"
SPARSE = "sparse"
#: Flat image types -> the VirtualDiskManager disk type the disk is created as.
FLAT_TYPES = {"preallocated": "preallocated", "thin": "thin", "thick": "thick",
              "eagerZeroedThick": "eagerZeroedThick"}
DISK_TYPES = (STREAM_OPTIMIZED, SPARSE, *FLAT_TYPES)
#: Nova's in-tree driver's default for images without vmware_disktype.
DEFAULT_DISK_TYPE = "preallocated"
#: How much of a cached image's descriptor is read (descriptors are < 1 KiB).
DESCRIPTOR_BYTES = 64 * 1024
#: Leftovers untouched for this many api_timeouts are no work in progress:
#: every transfer and task of a caching is bounded by one.
LEFTOVER_AGE_TIMEOUTS = 2

__all__ = ["DISK_TYPES", "CachedImage", "ImageCache", "ImageDisk", "ImportTarget",
           "InvalidImage"]

#: The first byte of an ISO 9660 primary volume descriptor: sector 16 of the image.
ISO9660_DESCRIPTOR_OFFSET = 16 * 2048


@dataclasses.dataclass(frozen=True)
class ImageDisk:
    """A Glance image as the cache needs it."""

    image_id: str
    #: Bytes of image data in Glance.
    size: int
    disk_type: str = DEFAULT_DISK_TYPE
    #: As vsphere/vm.py CONTROLLER_TYPES names it ("lsiLogic", "ide", ...).
    adapter_type: str = DEFAULT_ADAPTER_TYPE


@dataclasses.dataclass(frozen=True)
class CachedImage:
    #: "[ds] <cache_dir>/<id>/<id>.vmdk"
    path: str
    capacity_kb: int


class _DeclaredSize:
    """The writer Glance's bytes go through: passes them on, counting them.

    A byte beyond the size the image declares is refused before it is sent
    on: the upload was opened for exactly that many.
    """

    def __init__(self, image_id: str, size: int, target) -> None:
        self._image_id = image_id
        self._size = size
        self._target = target
        self.received = 0

    def write(self, data: bytes) -> None:
        self.received += len(data)
        if self.received > self._size:
            raise InvalidImage(f"image {self._image_id} declares {self._size} bytes, but its "
                               f"data is longer (more than {self._size} bytes received)")
        self._target.write(data)


def held_to_declared_size(image_id: str, size: int,
                          download: Callable[[object], None]) -> Callable[[object], None]:
    """``download``, raising InvalidImage when the data is not the ``size`` bytes the
    image declares."""
    def checked(writer) -> None:
        counted = _DeclaredSize(image_id, size, writer)
        download(counted)
        if counted.received != size:
            raise InvalidImage(f"image {image_id} declares {size} bytes, but only "
                               f"{counted.received} bytes were received")
    return checked


class _Stale:
    """The cache folder holds something that is not a usable disk (an older layout)."""


STALE = _Stale()


def vdm_adapter_type(adapter_type: str) -> str:
    """The VirtualDiskManager adapter type of a disk for ``adapter_type``'s controller.

    Its specs know ide, busLogic and lsiLogic; the other SCSI controllers
    use lsiLogic disks (as Nova's in-tree driver does).
    """
    return adapter_type if adapter_type in ("ide", "busLogic") else "lsiLogic"


class ImageCache:
    """Glance images, one ready-to-use disk per image and datastore."""

    def __init__(self, session: VSphereSession, cache_dir: str, *, scheme: str,
                 verify: str | bool, page_size: int = 100) -> None:
        self.session = session
        self.cache_dir = cache_dir.strip("/")
        self.scheme = scheme
        self.verify = verify
        self._locks: dict[tuple[str, str], threading.Lock] = {}
        self._guard = threading.Lock()
        #: Datastores swept of leftovers by this process.
        self._swept: set[str] = set()
        #: Temporary folders and import VMs this process is working on.
        self._busy: set[str] = set()
        self._leftovers = LeftoverSweep(session, self.cache_dir,
                                        session.api_timeout * LEFTOVER_AGE_TIMEOUTS,
                                        self._busy_names)
        #: (datastore, image id) -> when this process last took the cached disk.
        self._taken: dict[tuple[str, str], float] = {}
        self._ageing = ImageAging(session, self.cache_dir, page_size, self._taken_lately,
                                  self._lock)

    def path(self, image_id: str) -> str:
        return f"{self.cache_dir}/{image_id}/{image_id}.vmdk"

    def iso_path(self, image_id: str) -> str:
        """Where an ISO image is cached (``disk_format = iso``), as the in-tree driver keeps it."""
        return f"{self.cache_dir}/{image_id}/{image_id}.iso"

    def sized_path(self, image_id: str, capacity_gb: int) -> str:
        """The cached disk of ``image_id`` extended to ``capacity_gb`` GiB."""
        return f"{self.cache_dir}/{image_id}/{image_id}.{capacity_gb}.vmdk"

    def datastore_path(self, datastore: str, image_id: str) -> str:
        return f"[{datastore}] {self.path(image_id)}"

    def _lock(self, ds_name: str, image_id: str) -> threading.Lock:
        with self._guard:
            return self._locks.setdefault((ds_name, image_id), threading.Lock())

    def _took(self, ds_name: str, image_id: str) -> None:
        with self._guard:
            self._taken[(ds_name, image_id)] = time.monotonic()

    def _taken_lately(self, ds_name: str, image_id: str) -> bool:
        """Taken by a spawn of this process that may not have made its VM yet.

        Every step from taking the cached disk to creating the VM is
        bounded by an api_timeout.
        """
        with self._guard:
            taken = self._taken.get((ds_name, image_id))
        return taken is not None and \
            time.monotonic() - taken < self.session.api_timeout * LEFTOVER_AGE_TIMEOUTS

    def age(self, dc_ref, ds_ref, ds_name: str, keep, min_age_seconds: float) -> AgingReport:
        """Age the cached images of ``ds_name`` out (vsphere/image_aging.py)."""
        return self._ageing.run(dc_ref, ds_ref, ds_name, keep, min_age_seconds)

    def _busy_names(self) -> list[str]:
        with self._guard:
            return list(self._busy)

    def _working_on(self, path: str, busy: bool) -> None:
        """Mark a temporary folder or import VM (by its name) in use by this process."""
        name = path.rsplit("/", 1)[-1]
        with self._guard:
            if busy:
                self._busy.add(name)
            else:
                self._busy.discard(name)

    def _url(self, dc_name: str, ds_name: str, rel: str) -> str:
        query = urllib.parse.urlencode({"dcPath": dc_name, "dsName": ds_name})
        host = f"[{self.session.host}]" if ":" in self.session.host else self.session.host
        return (f"{self.scheme}://{host}:{self.session.port}/folder/"
                f"{urllib.parse.quote(rel)}?{query}")

    # -- is it there? ----------------------------------------------------------------

    def _get(self, url: str) -> requests.Response:
        def get():
            return requests.get(url, headers={"Cookie": self.session.cookie_header},
                                verify=self.verify, timeout=60, stream=True)

        resp = get()
        if resp.status_code == 401:
            resp.close()
            # The session expired: a SOAP call that needs a session logs in
            # again (currentSession would not: vCenter answers it unset
            # without a session); then ask again.
            self.session.call("get_object_property", self.session.content.rootFolder,
                              "name")
            resp = get()
        return resp

    def lookup(self, dc_name: str, ds_name: str, image_id: str) -> CachedImage | _Stale | None:
        """The cached disk of ``image_id`` on ``ds_name``; None if absent; STALE if unusable."""
        return self._lookup(dc_name, ds_name, self.path(image_id))

    def _lookup(self, dc_name: str, ds_name: str, rel: str) -> CachedImage | _Stale | None:
        head = self._read_head(dc_name, ds_name, rel, DESCRIPTOR_BYTES)
        if head is None:
            return None
        capacity_kb = vmdk.descriptor_capacity_kb(head)
        if capacity_kb is None:
            return STALE
        return CachedImage(f"[{ds_name}] {rel}", capacity_kb)

    # -- making it --------------------------------------------------------------------

    def fetch(self, dc_ref, dc_name: str, ds_name: str, image: ImageDisk,
              download: Callable[[object], None],
              target: Callable[[], ImportTarget] | None = None, *,
              ds_ref=None) -> CachedImage:
        """The cached disk of ``image`` on ``ds_name``, made first if needed.

        ``download(writer)`` writes the image's bytes into ``writer``;
        ``target()`` says where a stream-optimized image's temporary VM goes
        (asked only when one is imported). Raises InvalidImage when the data
        does not match the image's disk type. The datastore (``ds_ref``) is
        swept of leftovers on its first use.
        """
        if image.disk_type not in DISK_TYPES:
            raise InvalidImage(f"disk type {image.disk_type!r} is not one of "
                               f"{', '.join(DISK_TYPES)}")
        if ds_ref is not None:
            self._sweep_once(dc_ref, ds_ref, ds_name)
        with self._lock(ds_name, image.image_id):
            self._took(ds_name, image.image_id)
            found = self.lookup(dc_name, ds_name, image.image_id)
            if isinstance(found, CachedImage):
                return found
            if found is STALE:
                LOG.warning("%s is not a usable disk (an older cache layout?); replacing it",
                            self.datastore_path(ds_name, image.image_id))
            return self._make(dc_ref, dc_name, ds_name, image, download, target,
                              replace=found is STALE)

    def iso_cached(self, dc_name: str, ds_name: str, image_id: str) -> bool:
        """Whether the ISO image ``image_id`` is in the cache of ``ds_name``."""
        return self._exists(dc_name, ds_name, self.iso_path(image_id))

    def fetch_iso(self, dc_ref, dc_name: str, ds_name: str, image_id: str, size: int,
                  download: Callable[[object], None], *, ds_ref=None) -> str:
        """The cached ISO file of ``image_id`` on ``ds_name`` ("[ds] path"), uploaded first
        if needed: into a temporary folder that is renamed into place when complete,
        as the disks are. Raises InvalidImage when the data is not an ISO 9660 image."""
        if ds_ref is not None:
            self._sweep_once(dc_ref, ds_ref, ds_name)
        rel = self.iso_path(image_id)
        with self._lock(ds_name, image_id):
            self._took(ds_name, image_id)
            if self._exists(dc_name, ds_name, rel):
                return f"[{ds_name}] {rel}"
            folder = f"{self.cache_dir}/{image_id}"
            work = f"{folder}.part-{uuid.uuid4().hex[:8]}"
            LOG.info("Caching ISO image %s (%d bytes) on datastore %s", image_id, size, ds_name)
            fm = self.session.content.fileManager
            self._working_on(work, True)
            made = False
            try:
                self.session.invoke("MakeDirectory", fm, name=f"[{ds_name}] {work}",
                                    datacenter=dc_ref, createParentDirectories=True)
                made = True
                self._upload_iso(dc_name, ds_name, f"{work}/{image_id}.iso", size,
                                 held_to_declared_size(image_id, size, download))
                if self._exists(dc_name, ds_name, folder):
                    # A folder without the ISO (an interrupted older attempt): replaced.
                    self._delete(dc_ref, f"[{ds_name}] {folder}")
                self._publish(dc_ref, ds_name, work, folder)
            except vexc.FileAlreadyExistsException:
                # Another nova-compute cached it meanwhile: use theirs.
                self._delete_quietly(dc_ref, f"[{ds_name}] {work}")
                if self._exists(dc_name, ds_name, rel):
                    return f"[{ds_name}] {rel}"
                raise
            except BaseException:
                if made:
                    self._delete_quietly(dc_ref, f"[{ds_name}] {work}")
                raise
            finally:
                self._working_on(work, False)
        return f"[{ds_name}] {rel}"

    def _upload_iso(self, dc_name: str, ds_name: str, rel: str, size: int,
                    download: Callable[[object], None]) -> None:
        def check(head: bytes) -> None:
            signature = head[ISO9660_DESCRIPTOR_OFFSET + 1:ISO9660_DESCRIPTOR_OFFSET + 6]
            if signature != b"CD001":
                raise InvalidImage("the image is no ISO 9660 file system (no CD001 volume "
                                   "descriptor at sector 16)")

        self._upload(dc_name, ds_name, rel, size, download, check,
                     head_bytes=ISO9660_DESCRIPTOR_OFFSET + 6)

    def _publish(self, dc_ref, ds_name: str, work: str, folder: str) -> None:
        """Rename the filled ``work`` folder to the cache ``folder``: the rename is what
        makes an image cached, all or nothing. FileAlreadyExists: another nova-compute
        published it first."""
        self.session.run_task("MoveDatastoreFile_Task", self.session.content.fileManager,
                              sourceName=f"[{ds_name}] {work}", sourceDatacenter=dc_ref,
                              destinationName=f"[{ds_name}] {folder}",
                              destinationDatacenter=dc_ref, force=False)

    def _exists(self, dc_name: str, ds_name: str, rel: str) -> bool:
        """Whether ``[ds_name] rel`` exists (one HTTP request, no SOAP call)."""
        return self._read_head(dc_name, ds_name, rel, 0) is not None

    def _read_head(self, dc_name: str, ds_name: str, rel: str, size: int) -> bytes | None:
        """The first ``size`` bytes of ``[ds_name] rel``; None if the file is absent."""
        url = self._url(dc_name, ds_name, rel)
        try:
            resp = self._get(url)
        except requests.RequestException as exc:
            raise vexc.VimConnectionException(f"cannot read the image cache: {exc}",
                                              exc) from exc
        try:
            if resp.status_code == 404:
                return None
            if resp.status_code != 200:
                raise vexc.VimException(f"cannot read [{ds_name}] {rel}: HTTP "
                                        f"{resp.status_code}")
            return resp.raw.read(size) if size else b""
        finally:
            resp.close()

    def _sweep_once(self, dc_ref, ds_ref, ds_name: str) -> None:
        with self._guard:
            if ds_name in self._swept:
                return
            self._swept.add(ds_name)
        try:
            removed = self._leftovers.sweep(dc_ref, ds_ref, ds_name)
        except Exception as exc:  # a cleanup must never fail the spawn that triggered it
            LOG.warning("Could not look for image cache leftovers on datastore %s: %s",
                        ds_name, exc)
            return
        if removed:
            LOG.info("Removed %d leftover(s) of unfinished image caching on datastore %s",
                     len(removed), ds_name)

    def sized(self, dc_ref, dc_name: str, ds_name: str, image: ImageDisk,
              base: CachedImage, capacity_gb: int) -> CachedImage:
        """A disk of ``capacity_gb`` GiB holding ``base`` (the image's cached disk).

        The parent a linked clone of that size needs: ``base`` itself when it
        has that capacity, else a copy of it extended to it, made once (built
        in a temporary folder, moved into place).
        """
        capacity_kb = capacity_gb * units.Mi
        if capacity_kb == base.capacity_kb:
            return base
        if capacity_kb < base.capacity_kb:
            raise ValueError(f"{base.path} holds {base.capacity_kb} KB: more than "
                             f"{capacity_gb} GiB")
        rel = self.sized_path(image.image_id, capacity_gb)
        with self._lock(ds_name, image.image_id):
            self._took(ds_name, image.image_id)
            found = self._lookup(dc_name, ds_name, rel)
            if isinstance(found, CachedImage):
                if found.capacity_kb != capacity_kb:
                    # Never replaced: it may be the parent of linked clones.
                    raise vexc.VimException(f"[{ds_name}] {rel} holds a disk of "
                                            f"{found.capacity_kb} KB, not {capacity_kb} KB")
                return found
            if found is STALE:
                # Not a disk, so nobody's parent: made again.
                LOG.warning("[%s] %s is not a usable disk; replacing it", ds_name, rel)
                self._delete(dc_ref, f"[{ds_name}] {rel}")
            return self._make_sized(dc_ref, dc_name, ds_name, image, base, capacity_kb, rel)

    def _make_sized(self, dc_ref, dc_name: str, ds_name: str, image: ImageDisk,
                    base: CachedImage, capacity_kb: int, rel: str) -> CachedImage:
        work = f"{self.cache_dir}/{image.image_id}.part-{uuid.uuid4().hex[:8]}"
        copy = f"[{ds_name}] {work}/{rel.rsplit('/', 1)[-1]}"
        LOG.info("Extending a copy of cached image %s to %d KB on datastore %s",
                 image.image_id, capacity_kb, ds_name)
        vdm = self.session.content.virtualDiskManager
        spec = self.session.factory("VirtualDiskSpec")
        # Thin: the extension is never written (the clones' deltas take the writes).
        spec.diskType = "thin"
        spec.adapterType = vdm_adapter_type(image.adapter_type)
        self._working_on(work, True)
        try:
            self.session.invoke("MakeDirectory", self.session.content.fileManager,
                                name=f"[{ds_name}] {work}", datacenter=dc_ref,
                                createParentDirectories=True)
            self.session.run_task("CopyVirtualDisk_Task", vdm, sourceName=base.path,
                                  sourceDatacenter=dc_ref, destName=copy,
                                  destDatacenter=dc_ref, destSpec=spec)
            self.session.run_task("ExtendVirtualDisk_Task", vdm, name=copy, datacenter=dc_ref,
                                  newCapacityKb=capacity_kb, eagerZero=False)
            # The move is what makes the size cached: all or nothing.
            self.session.run_task("MoveVirtualDisk_Task", vdm, sourceName=copy,
                                  sourceDatacenter=dc_ref, destName=f"[{ds_name}] {rel}",
                                  destDatacenter=dc_ref, force=False)
        except vexc.FileAlreadyExistsException:
            # Another nova-compute made it meanwhile: use theirs.
            found = self._lookup(dc_name, ds_name, rel)
            if isinstance(found, CachedImage) and found.capacity_kb == capacity_kb:
                return found
            raise
        finally:
            self._delete_quietly(dc_ref, f"[{ds_name}] {work}")
            self._working_on(work, False)
        return CachedImage(f"[{ds_name}] {rel}", capacity_kb)

    def _make(self, dc_ref, dc_name: str, ds_name: str, image: ImageDisk,
              download: Callable[[object], None], target: Callable[[], ImportTarget] | None,
              replace: bool) -> CachedImage:
        folder = f"{self.cache_dir}/{image.image_id}"
        work = f"{folder}.part-{uuid.uuid4().hex[:8]}"
        # Uploads are opened for the declared size: other data is refused by name.
        download = held_to_declared_size(image.image_id, image.size, download)
        LOG.info("Caching image %s (%s, %d bytes) on datastore %s", image.image_id,
                 image.disk_type, image.size, ds_name)
        fm = self.session.content.fileManager
        made: list[str] = []

        def make_work() -> None:
            self.session.invoke("MakeDirectory", fm, name=f"[{ds_name}] {work}",
                                datacenter=dc_ref, createParentDirectories=True)
            made.append(work)

        self._working_on(work, True)
        try:
            if image.disk_type == STREAM_OPTIMIZED:
                if target is None:
                    raise InvalidImage("a stream-optimized image needs an import target")
                capacity_kb = self._import(dc_ref, ds_name, work, image, download, target,
                                           make_work)
            else:
                make_work()
                if image.disk_type == SPARSE:
                    capacity_kb = self._convert_sparse(dc_ref, dc_name, ds_name, work, image,
                                                       download)
                else:
                    capacity_kb = self._fill_flat(dc_ref, dc_name, ds_name, work, image,
                                                  download)
            if replace:
                self._delete(dc_ref, f"[{ds_name}] {folder}")
            self._publish(dc_ref, ds_name, work, folder)
        except vexc.FileAlreadyExistsException:
            # Another nova-compute cached it meanwhile: use theirs.
            self._delete_quietly(dc_ref, f"[{ds_name}] {work}")
            found = self.lookup(dc_name, ds_name, image.image_id)
            if isinstance(found, CachedImage):
                return found
            raise
        except BaseException:
            if made:
                self._delete_quietly(dc_ref, f"[{ds_name}] {work}")
            raise
        finally:
            self._working_on(work, False)
        return CachedImage(self.datastore_path(ds_name, image.image_id), capacity_kb)

    def _upload(self, dc_name: str, ds_name: str, rel: str, size: int,
                download: Callable[[object], None], check: Callable[[bytes], None],
                head_bytes: int = vmdk.SECTOR) -> None:
        """Upload the image to ``rel`` once ``check`` has accepted its first bytes."""
        def open_upload(first_sector: bytes) -> DatastoreUpload:
            check(first_sector)
            return DatastoreUpload(self.session, dc_name, ds_name, rel, size,
                                   scheme=self.scheme, verify=self.verify)

        writer = FirstSector(open_upload, head_bytes)
        try:
            download(writer)
            writer.finish()
        except BaseException:
            writer.close()
            raise

    def _fill_flat(self, dc_ref, dc_name: str, ds_name: str, work: str, image: ImageDisk,
                   download: Callable[[object], None]) -> int:
        """A disk of the image's size whose extent is the image (as Nova's in-tree driver)."""
        capacity_kb = max(math.ceil(image.size / units.Ki), 1)
        spec = self.session.factory("FileBackedVirtualDiskSpec")
        spec.capacityKb = capacity_kb
        spec.adapterType = vdm_adapter_type(image.adapter_type)
        spec.diskType = FLAT_TYPES[image.disk_type]
        vdm = self.session.content.virtualDiskManager
        self.session.run_task("CreateVirtualDisk_Task", vdm,
                              name=f"[{ds_name}] {work}/{image.image_id}.vmdk",
                              datacenter=dc_ref, spec=spec)
        extent = f"{work}/{image.image_id}-flat.vmdk"
        # (No separate extent file on some datastores: the upload makes it.)
        self.session.delete_datastore_file(f"[{ds_name}] {extent}", dc_ref)

        def check(first_sector: bytes) -> None:
            header = vmdk.sparse_header(first_sector)
            if header is not None:
                kind = STREAM_OPTIMIZED if header.stream_optimized else SPARSE
                raise InvalidImage(f"the image is a {kind} VMDK, not the raw data of a "
                                   f"{image.disk_type} disk (set vmware_disktype={kind})")

        self._upload(dc_name, ds_name, extent, image.size, download, check)
        return capacity_kb

    def _convert_sparse(self, dc_ref, dc_name: str, ds_name: str, work: str,
                        image: ImageDisk, download: Callable[[object], None]) -> int:
        """Upload the sparse VMDK, then let vCenter copy it into a thin VMFS disk."""
        source = f"[{ds_name}] {work}/{image.image_id}-sparse.vmdk"
        headers: list[vmdk.SparseHeader] = []

        def check(first_sector: bytes) -> None:
            header = vmdk.sparse_header(first_sector)
            if header is None or header.stream_optimized:
                kind = "a stream-optimized VMDK (set vmware_disktype=streamOptimized)" \
                    if header is not None else "no sparse VMDK"
                raise InvalidImage(f"the image is {kind}, not a monolithic sparse VMDK")
            headers.append(header)

        self._upload(dc_name, ds_name, f"{work}/{image.image_id}-sparse.vmdk", image.size,
                     download, check)
        spec = self.session.factory("VirtualDiskSpec")
        spec.diskType = "thin"
        spec.adapterType = vdm_adapter_type(image.adapter_type)
        vdm = self.session.content.virtualDiskManager
        self.session.run_task("CopyVirtualDisk_Task", vdm, sourceName=source,
                              sourceDatacenter=dc_ref,
                              destName=f"[{ds_name}] {work}/{image.image_id}.vmdk",
                              destDatacenter=dc_ref, destSpec=spec)
        self._delete(dc_ref, source)
        return headers[0].capacity_kb

    def _import(self, dc_ref, ds_name: str, work: str, image: ImageDisk,
                download: Callable[[object], None], target: Callable[[], ImportTarget],
                make_work: Callable[[], None]) -> int:
        """Import the stream through a temporary VM; its disk moves into ``work``.

        ``work`` is made (``make_work``) only once the import is complete:
        during a long upload only the import VM's files change, which tells a
        leftover sweep (of another nova-compute too) that it is in use.
        """
        stream = StreamImport(self.session, ds_name, image.image_id, image.size,
                              image.adapter_type, target, verify=self.verify)
        writer = FirstSector(stream.open)
        self._working_on(stream.name, True)
        try:
            try:
                download(writer)
                writer.finish()
                disk, capacity_kb = stream.complete()
            except BaseException:
                writer.close()
                stream.roll_back()
                raise
            make_work()
            self.session.run_task("MoveVirtualDisk_Task",
                                  self.session.content.virtualDiskManager, sourceName=disk,
                                  sourceDatacenter=dc_ref,
                                  destName=f"[{ds_name}] {work}/{image.image_id}.vmdk",
                                  destDatacenter=dc_ref, force=False)
        finally:
            # The VM's own files (and its disk, if the move failed).
            if stream.lease is not None:
                self._delete_quietly(dc_ref, stream.vm_folder)
            self._working_on(stream.name, False)
        return capacity_kb

    def _delete(self, dc_ref, ds_path: str) -> None:
        self.session.delete_datastore_file(ds_path, dc_ref)

    def _delete_quietly(self, dc_ref, ds_path: str) -> None:
        try:
            self._delete(dc_ref, ds_path)
        except Exception as exc:  # best effort: the original error matters more
            LOG.warning("Could not delete %s: %s", ds_path, exc)
