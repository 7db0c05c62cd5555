"""What a nova-compute that died while caching an image left on a datastore.

Caching an image (vsphere/images.py) works in places that are temporary by
design: a ``<cache>/<image id>.part-<8 hex>`` folder renamed (or emptied)
into place at the end, and for stream-optimized images an import VM
``nova-image-import-<image id>-<8 hex>`` (vsphere/image_import.py) whose
folder sits at the datastore's root. A process killed mid-way leaves them
behind, and nothing else ever removes them.

A sweep of one datastore removes exactly those, and only when nothing has
touched them for a safe age (by the datastore browser's modification times,
against vCenter's clock): an upload or copy in progress, by this
nova-compute or another one sharing the datastore, keeps writing its files.
An import VM still registered is destroyed only if it is powered off, is
named as ours and carries our annotation; anything else is left alone.
"""

from __future__ import annotations

import dataclasses
import datetime
import re
from collections.abc import Callable, Iterable
from typing import Any

from oslo_log import log as logging
from oslo_vmware import exceptions as vexc
from oslo_vmware import vim_util

from nova_vsphere_driver.vsphere.image_import import IMPORT_ANNOTATION, IMPORT_VM_PREFIX
from nova_vsphere_driver.vsphere.session import TaskTimeout, VSphereSession

LOG = logging.getLogger(__name__)

UUID_PATTERN = r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"
#: A temporary cache folder: "<image id>.part-<8 hex>" (ImageCache's work folders).
TEMP_FOLDER = re.compile(rf"^{UUID_PATTERN}\.part-[0-9a-f]{{8}}$")
#: An import VM's name, which is also its folder's.
IMPORT_FOLDER = re.compile(rf"^{re.escape(IMPORT_VM_PREFIX)}{UUID_PATTERN}-[0-9a-f]{{8}}$")


@dataclasses.dataclass(frozen=True)
class Leftover:
    #: "[ds] path" of the folder.
    path: str
    #: The folder's name (an import VM's name).
    name: str
    #: Newest modification of the folder and the files in it.
    modified: datetime.datetime
    #: Names of the .vmx files in it.
    vmx: tuple[str, ...] = ()


def utc(value: datetime.datetime) -> datetime.datetime:
    # suds gives the zone vCenter sent; a time without one is UTC (vCenter's own).
    if value.tzinfo is None:
        return value.replace(tzinfo=datetime.timezone.utc)
    return value.astimezone(datetime.timezone.utc)


class LeftoverSweep:
    """Finds and removes image-cache leftovers on one datastore (see the module doc)."""

    def __init__(self, session: VSphereSession, cache_dir: str, min_age_seconds: float,
                 busy: Callable[[], Iterable[str]]) -> None:
        self.session = session
        self.cache_dir = cache_dir
        self.min_age = datetime.timedelta(seconds=min_age_seconds)
        #: Names (folders, import VMs) this process is working on right now.
        self._busy = busy

    def sweep(self, dc_ref: Any, ds_ref: Any, ds_name: str) -> list[str]:
        """Remove what is stale on ``ds_name``; the paths removed."""
        browser = self.session.call("get_object_property", ds_ref, "browser")
        temp = self._candidates(browser, f"[{ds_name}] {self.cache_dir}", "*.part-*",
                                TEMP_FOLDER)
        imports = self._candidates(browser, f"[{ds_name}]", f"{IMPORT_VM_PREFIX}*",
                                   IMPORT_FOLDER)
        if not temp and not imports:
            return []
        now = utc(self.session.invoke("CurrentTime", vim_util.get_moref(
            "ServiceInstance", "ServiceInstance")))
        removed = []
        for leftover, remove in [*((t, self._delete_temp) for t in temp),
                                 *((i, self._remove_import) for i in imports)]:
            if not self._stale(leftover, now):
                continue
            try:
                if remove(dc_ref, leftover):
                    removed.append(leftover.path)
            except (vexc.VimException, TaskTimeout) as exc:
                # One leftover that cannot go does not keep the others.
                LOG.warning("Could not remove %s: %s", leftover.path, exc)
        return removed

    # -- finding ------------------------------------------------------------------------

    def _search(self, browser: Any, path: str, pattern: str | None, folders: bool) -> Any:
        spec = self.session.factory("HostDatastoreBrowserSearchSpec")
        if pattern:
            spec.matchPattern = [pattern]
        spec.query = [self.session.factory("FolderFileQuery" if folders else "FileQuery")]
        details = self.session.factory("FileQueryFlags")
        details.fileType = True
        details.fileSize = False
        details.modification = True
        details.fileOwner = False
        spec.details = details
        try:
            return self.session.run_task("SearchDatastore_Task", browser, datastorePath=path,
                                         searchSpec=spec)
        except vexc.FileNotFoundException:
            return None

    def _candidates(self, browser: Any, folder: str, pattern: str,
                    name_re: re.Pattern) -> list[Leftover]:
        """Folders in ``folder`` named as ours, with their newest modification."""
        results = self._search(browser, folder, pattern, folders=True)
        busy = set(self._busy())
        found = []
        for info in getattr(results, "file", None) or []:
            name = str(info.path).rstrip("/")
            if not name_re.match(name) or name in busy:
                continue
            path = f"{folder.rstrip()} {name}" if folder.endswith("]") else f"{folder}/{name}"
            inside = self._search(browser, path, None, folders=False)
            files = list(getattr(inside, "file", None) or [])
            times = [utc(t) for t in [info.modification, *(f.modification for f in files)]
                     if t is not None]
            if not times:
                continue  # no times to judge its age by: leave it
            vmx = tuple(str(f.path) for f in files if str(f.path).endswith(".vmx"))
            found.append(Leftover(path=path, name=name, modified=max(times), vmx=vmx))
        return found

    def _stale(self, leftover: Leftover, now: datetime.datetime) -> bool:
        if now - leftover.modified >= self.min_age:
            return True
        LOG.debug("%s was modified at %s: possibly in use, kept", leftover.path,
                  leftover.modified.isoformat())
        return False

    # -- removing -----------------------------------------------------------------------

    def _delete_temp(self, dc_ref: Any, leftover: Leftover) -> bool:
        return self._delete(dc_ref, leftover.path)

    def _delete(self, dc_ref: Any, path: str) -> bool:
        LOG.info("Removing %s, left by an image caching that did not finish", path)
        # False: someone else removed it meanwhile.
        return self.session.delete_datastore_file(path, dc_ref)

    def _remove_import(self, dc_ref: Any, leftover: Leftover) -> bool:
        """An import VM's folder: its VM destroyed if registered and ours, else the folder."""
        index = self.session.content.searchIndex
        destroyed = False
        for vmx in leftover.vmx:
            vm_ref = self.session.invoke("FindByDatastorePath", index, datacenter=dc_ref,
                                         path=f"{leftover.path}/{vmx}")
            if vm_ref is None:
                continue
            props = self.session.call("get_object_properties_dict", vm_ref,
                                      ["name", "config.annotation", "runtime.powerState"]) or {}
            ours = (IMPORT_FOLDER.match(str(props.get("name", "")))
                    and str(props.get("config.annotation") or "").startswith(IMPORT_ANNOTATION)
                    and str(props.get("runtime.powerState")) == "poweredOff")
            if not ours:
                LOG.warning("%s holds VM %s, which is not an image import VM of ours (or "
                            "not powered off): left alone", leftover.path,
                            props.get("name", vim_util.get_moref_value(vm_ref)))
                return False
            LOG.info("Destroying VM %s, left by an image import that did not finish",
                     props["name"])
            try:
                self.session.run_task("Destroy_Task", vm_ref)
            except vexc.ManagedObjectNotFoundException:
                continue  # gone meanwhile
            destroyed = True
        # Destroy_Task removes the VM's files, not always the folder.
        return self._delete(dc_ref, leftover.path) or destroyed
