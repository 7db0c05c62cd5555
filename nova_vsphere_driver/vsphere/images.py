"""Per-datastore cache of Glance images, filled over the datastore HTTP interface."""

from __future__ import annotations

import threading
import urllib.parse
import uuid
from collections.abc import Callable

import requests
from oslo_log import log as logging
from oslo_vmware import rw_handles

from nova_vsphere_driver.vsphere.session import VSphereSession

LOG = logging.getLogger(__name__)


class ImageCache:
    """``[ds] <cache_dir>/<image_id>/<image_id>.vmdk``, one copy per datastore.

    A cached image is checked with an HTTP HEAD on the datastore (no SOAP
    call), so a warm spawn pays nothing here. Uploads go to a temporary
    name and are moved into place when complete: a half-uploaded image is
    never taken for a cached one. Concurrent spawns of the same image on the
    same datastore upload once.
    """

    def __init__(self, session: VSphereSession, cache_dir: str, *, scheme: str,
                 verify: str | bool) -> None:
        self.session = session
        self.cache_dir = cache_dir.strip("/")
        self.scheme = scheme
        self.verify = verify
        self._locks: dict[tuple[str, str], threading.Lock] = {}
        self._guard = threading.Lock()

    def path(self, image_id: str) -> str:
        return f"{self.cache_dir}/{image_id}/{image_id}.vmdk"

    def datastore_path(self, datastore: str, image_id: str) -> str:
        return f"[{datastore}] {self.path(image_id)}"

    def _url(self, dc_name: str, ds_name: str, rel: str) -> str:
        query = urllib.parse.urlencode({"dcPath": dc_name, "dsName": ds_name})
        host = f"[{self.session.host}]" if ":" in self.session.host else self.session.host
        return (f"{self.scheme}://{host}:{self.session.port}/folder/"
                f"{urllib.parse.quote(rel)}?{query}")

    def is_cached(self, dc_name: str, ds_name: str, image_id: str) -> bool:
        resp = requests.head(self._url(dc_name, ds_name, self.path(image_id)),
                             headers={"Cookie": self.session.cookie_header},
                             verify=self.verify, timeout=60)
        if resp.status_code == 401:
            # The session expired: any SOAP call re-logs in; then ask again.
            self.session.call("get_object_property", self.session.content.sessionManager,
                              "currentSession")
            resp = requests.head(self._url(dc_name, ds_name, self.path(image_id)),
                                 headers={"Cookie": self.session.cookie_header},
                                 verify=self.verify, timeout=60)
        return resp.status_code == 200

    def ensure(self, dc_ref, dc_name: str, ds_name: str, image_id: str, size: int,
               download: Callable[[object], None]) -> str:
        """The cached image's datastore path, uploading it first if needed.

        ``download(writer)`` writes the image bytes into ``writer``.
        """
        with self._guard:
            lock = self._locks.setdefault((ds_name, image_id), threading.Lock())
        with lock:
            if self.is_cached(dc_name, ds_name, image_id):
                return self.datastore_path(ds_name, image_id)
            tmp = f"{self.cache_dir}/{image_id}/{image_id}.vmdk.part-{uuid.uuid4().hex[:8]}"
            LOG.info("Caching image %s on datastore %s (%d bytes)", image_id, ds_name, size)
            writer = rw_handles.FileWriteHandle(
                self.session.host, self.session.port, dc_name, ds_name,
                self.session.cookie_header, tmp, size, scheme=self.scheme,
                cacerts=self.verify if isinstance(self.verify, str) else self.verify)
            try:
                download(writer)
            finally:
                writer.close()
            fm = self.session.content.fileManager
            try:
                self.session.run_task(
                    "MoveDatastoreFile_Task", fm, sourceName=f"[{ds_name}] {tmp}",
                    sourceDatacenter=dc_ref,
                    destinationName=self.datastore_path(ds_name, image_id),
                    destinationDatacenter=dc_ref, force=True)
            except Exception:
                self._delete_quietly(dc_ref, f"[{ds_name}] {tmp}")
                raise
            return self.datastore_path(ds_name, image_id)

    def _delete_quietly(self, dc_ref, ds_path: str) -> None:
        try:
            self.session.run_task("DeleteDatastoreFile_Task", self.session.content.fileManager,
                                  name=ds_path, datacenter=dc_ref)
        except Exception as exc:  # best effort: the original error matters more
            LOG.warning("Could not delete %s: %s", ds_path, exc)
