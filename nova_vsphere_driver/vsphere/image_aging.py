"""Ageing out cached images nothing uses any more (Nova's image cache manager pass).

An image's cache folder ``[ds] <cache>/<image id>/`` holds its disk and the
copies of it extended for bigger root disks (vsphere/images.py). The folder
is *in use* while

* a disk of any VM in vCenter has one of its files in its backing chain (a
  linked clone's parent) -- VMs of other nova-computes and of other clusters
  mounting the datastore count, registered VMs only;
* the image is the image of an instance Nova holds on this nova-compute (a
  full-copy root disk does not point at the cache, but a rebuild or the next
  boot of the same image will want it); or
* this process used it lately (a spawn between taking the cached disk and
  creating its VM).

A pass marks an unused folder with a ``ts-<UTC time>`` folder inside it,
as Nova's in-tree vmwareapi driver does, removes the marker of a folder in
use again, and removes a folder whose marker is older than
``[image_cache] remove_unused_original_minimum_age_seconds``. Markers, not
modification times: reading a cached disk (cloning, copying) leaves its
modification time alone, so "unused since" must be written down. Times are
vCenter's clock (CurrentTime), the same for every nova-compute sharing the
datastore.
"""

from __future__ import annotations

import dataclasses
import datetime
import re
import threading
from collections.abc import Callable, Collection
from typing import Any

from oslo_log import log as logging
from oslo_vmware import exceptions as vexc
from oslo_vmware import vim_util

from nova_vsphere_driver.vsphere.cluster_state import retrieve
from nova_vsphere_driver.vsphere.image_leftovers import UUID_PATTERN, utc
from nova_vsphere_driver.vsphere.session import TaskTimeout, VSphereSession
from nova_vsphere_driver.vsphere.suds_values import items

LOG = logging.getLogger(__name__)

MARKER_PREFIX = "ts-"
MARKER_FORMAT = "%Y-%m-%d-%H-%M-%S"
_MARKER = re.compile(r"^ts-(\d{4}-\d{2}-\d{2}-\d{2}-\d{2}-\d{2})/?$")


def marker_name(when: datetime.datetime) -> str:
    return MARKER_PREFIX + utc(when).strftime(MARKER_FORMAT)


def marker_time(name: str) -> datetime.datetime | None:
    match = _MARKER.match(name)
    if match is None:
        return None
    return datetime.datetime.strptime(match.group(1), MARKER_FORMAT).replace(
        tzinfo=datetime.timezone.utc)


@dataclasses.dataclass
class AgingReport:
    """What one pass over one datastore did, as ``[ds] path`` of image folders."""

    removed: list[str] = dataclasses.field(default_factory=list)
    marked: list[str] = dataclasses.field(default_factory=list)
    unmarked: list[str] = dataclasses.field(default_factory=list)
    in_use: list[str] = dataclasses.field(default_factory=list)
    failed: list[str] = dataclasses.field(default_factory=list)


class ImageAging:
    """One datastore's pass (see the module doc)."""

    def __init__(self, session: VSphereSession, cache_dir: str, page_size: int,
                 used_here: Callable[[str, str], bool],
                 lock: Callable[[str, str], threading.Lock]) -> None:
        self.session = session
        self.cache_dir = cache_dir
        self.page_size = page_size
        #: (datastore name, image id) -> used by this process lately.
        self._used_here = used_here
        #: The image cache's lock of (datastore name, image id).
        self._lock = lock
        self._folder = re.compile(
            rf"^\[(?P<ds>[^\]]+)\] {re.escape(cache_dir)}/(?P<id>{UUID_PATTERN})/?$")

    def run(self, dc_ref: Any, ds_ref: Any, ds_name: str, keep: Collection[str],
            min_age_seconds: float) -> AgingReport:
        """Mark, unmark and remove the image folders of ``ds_name``; ``keep``: image ids."""
        report = AgingReport()
        folders = self._image_folders(ds_ref, ds_name)
        if not folders:
            return report
        referenced = self._referenced(ds_ref, ds_name)
        now = utc(self.session.invoke("CurrentTime", vim_util.get_moref(
            "ServiceInstance", "ServiceInstance")))
        min_age = datetime.timedelta(seconds=min_age_seconds)
        for image_id, markers in sorted(folders.items()):
            folder = f"[{ds_name}] {self.cache_dir}/{image_id}"
            try:
                self._age(dc_ref, ds_name, image_id, folder, markers,
                          image_id in referenced or image_id in keep, now, min_age, report)
            except (vexc.VimException, TaskTimeout) as exc:
                # One folder that cannot be handled does not stop the others.
                LOG.warning("Image cache ageing of %s failed: %s", folder, exc)
                report.failed.append(folder)
        return report

    def _age(self, dc_ref, ds_name: str, image_id: str, folder: str,
             markers: dict[str, datetime.datetime], used: bool, now: datetime.datetime,
             min_age: datetime.timedelta, report: AgingReport) -> None:
        with self._lock(ds_name, image_id):
            if used or self._used_here(ds_name, image_id):
                for name in markers:
                    self._delete(dc_ref, f"{folder}/{name}")
                (report.unmarked if markers else report.in_use).append(folder)
                return
            if not markers:
                self.session.invoke("MakeDirectory", self.session.content.fileManager,
                                    name=f"{folder}/{marker_name(now)}", datacenter=dc_ref,
                                    createParentDirectories=False)
                LOG.info("Cached image %s is used by no instance: removed if still unused "
                         "after %d s", folder, min_age.total_seconds())
                report.marked.append(folder)
                return
            unused_since = min(markers.values())
            if now - unused_since < min_age:
                return
            LOG.info("Removing cached image %s, unused since %s", folder,
                     unused_since.isoformat())
            self._delete(dc_ref, folder)
            report.removed.append(folder)

    # -- reading ------------------------------------------------------------------------

    def _image_folders(self, ds_ref, ds_name: str) -> dict[str, dict[str, datetime.datetime]]:
        """Image id -> its markers (name -> time), for every image folder in the cache."""
        browser = self.session.call("get_object_property", ds_ref, "browser")
        spec = self.session.factory("HostDatastoreBrowserSearchSpec")
        spec.matchPattern = [f"{MARKER_PREFIX}*"]
        spec.query = [self.session.factory("FolderFileQuery")]
        try:
            results = self.session.run_task(
                "SearchDatastoreSubFolders_Task", browser,
                datastorePath=f"[{ds_name}] {self.cache_dir}", searchSpec=spec)
        except vexc.FileNotFoundException:
            return {}
        folders: dict[str, dict[str, datetime.datetime]] = {}
        for result in items(results):
            match = self._folder.match(str(getattr(result, "folderPath", "") or ""))
            if match is None or match.group("ds") != ds_name:
                continue  # the cache folder itself, temporary folders, marker folders
            markers = folders.setdefault(match.group("id"), {})
            for info in items(getattr(result, "file", None)):
                name = str(info.path).rstrip("/")
                when = marker_time(name)
                if when is not None:
                    markers[name] = when
        return folders

    def _referenced(self, ds_ref, ds_name: str) -> set[str]:
        """Ids of the cached images in the disk chain of a VM with files on the datastore."""
        factory = self.session.vim.client.factory
        traverse = vim_util.build_traversal_spec(factory, "dsVm", "Datastore", "vm", False, [])
        spec = vim_util.build_property_filter_spec(
            factory,
            [vim_util.build_property_spec(factory, "VirtualMachine",
                                          ["config.hardware.device"])],
            [vim_util.build_object_spec(factory, ds_ref, [traverse])])
        prefix = f"[{ds_name}] {self.cache_dir}/"
        found = set()
        for obj in retrieve(self.session, spec, self.page_size):
            for prop in items(getattr(obj, "propSet", None)):
                for device in items(prop.val):
                    backing = getattr(device, "backing", None)
                    while backing is not None:
                        path = str(getattr(backing, "fileName", "") or "")
                        if path.startswith(prefix):
                            found.add(path[len(prefix):].split("/", 1)[0])
                        backing = getattr(backing, "parent", None)
        return found

    def _delete(self, dc_ref, path: str) -> None:
        # Gone meanwhile (another nova-compute's pass) is as good.
        self.session.delete_datastore_file(path, dc_ref)
