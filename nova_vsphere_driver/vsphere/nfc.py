"""Reading one disk out of an export lease (ExportVm / ExportSnapshot -> HttpNfcLease).

vCenter's export protocol: the lease starts ``initializing`` and turns
``ready`` with one URL per virtual disk in ``info.deviceUrl`` (the disk
streamed as a stream-optimized VMDK). While the client reads, it reports
progress (``HttpNfcLeaseProgress``) or the lease times out; it ends the lease
with ``HttpNfcLeaseComplete`` after a full transfer, ``HttpNfcLeaseAbort``
otherwise. oslo.vmware's ``VmdkReadHandle`` only knows ``ExportVm`` (which
vCenter refuses for a running VM) and trusts the first disk it finds; this
reader takes any lease and the key of the disk wanted.
"""

from __future__ import annotations

import hashlib
import time
import urllib.parse
from typing import Any

import requests
from oslo_log import log as logging
from oslo_vmware import exceptions as vexc
from oslo_vmware import vim_util

from nova_vsphere_driver.vsphere import leases
from nova_vsphere_driver.vsphere.session import VSphereSession

LOG = logging.getLogger(__name__)
#: What Glance's client asks for per read.
CHUNK_BYTES = 64 * 1024
#: Progress is reported at least this often (and well within the lease timeout).
KEEPALIVE_SECONDS = 60.0


def device_key(controller_type: str, bus_number: int, unit_number: int) -> str:
    """The tail vCenter gives a disk's ``deviceUrl.key`` (``/vm-1/<this>``)."""
    return f"/{controller_type}{bus_number}:{unit_number}"


class DiskExport:
    """One disk of an export lease as a file-like object (``read``), for Glance.

    ``open()`` waits for the lease to be ready and starts the download of the
    disk whose ``deviceUrl.key`` ends with ``key_suffix``. ``finish()``
    checks that everything was read (and matches the lease's manifest, when
    vCenter provides one) and completes the lease; ``abort()`` aborts it.
    """

    def __init__(self, session: VSphereSession, lease: Any, key_suffix: str, *,
                 capacity_bytes: int, verify: str | bool, timeout: float) -> None:
        self.session = session
        self.lease = lease
        self.key_suffix = key_suffix
        self.capacity_bytes = max(int(capacity_bytes), 1)
        self.verify = verify
        self.timeout = timeout
        self.bytes_read = 0
        self.eof = False
        self.key: str | None = None
        self._sha1 = hashlib.sha1()
        self._response: requests.Response | None = None
        self._keepalive = KEEPALIVE_SECONDS
        self._last_progress = time.monotonic()
        self._ended = False

    @property
    def lease_id(self) -> str:
        return vim_util.get_moref_value(self.lease)

    # -- setting up ---------------------------------------------------------------

    def _disk_url(self, info: Any) -> str:
        urls = [u for u in (getattr(info, "deviceUrl", None) or []) if getattr(u, "disk", False)]
        chosen = [u for u in urls if str(u.key).endswith(self.key_suffix)]
        if len(chosen) != 1:
            raise vexc.VimException(
                f"export lease {self.lease_id} has no single disk URL for device "
                f"{self.key_suffix} (disks: {', '.join(str(u.key) for u in urls) or 'none'})")
        self.key = str(chosen[0].key)
        parts = urllib.parse.urlsplit(chosen[0].url)
        if parts.hostname == "*":
            # ESXi's convention: "*" means "the host you are talking to".
            host = f"[{self.session.host}]" if ":" in self.session.host else self.session.host
            parts = parts._replace(netloc=f"{host}:{self.session.port}")
        return urllib.parse.urlunsplit(parts)

    def open(self) -> DiskExport:
        info = leases.wait_ready(self.session, self.lease, self.timeout, "export")
        lease_timeout = int(getattr(info, "leaseTimeout", 0) or 0)
        if lease_timeout > 0:
            self._keepalive = min(KEEPALIVE_SECONDS, lease_timeout / 3.0)
        url = self._disk_url(info)
        try:
            response = requests.get(url, stream=True, verify=self.verify,
                                    headers={"Cookie": self.session.cookie_header},
                                    timeout=self.session.api_timeout)
        except requests.RequestException as exc:
            raise vexc.VimConnectionException(f"cannot download {url}: {exc}", exc) from exc
        if response.status_code != 200:
            response.close()
            raise vexc.VimException(f"GET {url}: HTTP {response.status_code} "
                                    f"{response.text[:200]!r}")
        self._response = response
        self._last_progress = time.monotonic()
        LOG.debug("Export lease %s: reading %s", self.lease_id, url)
        return self

    # -- reading ----------------------------------------------------------------

    def _report_progress(self) -> None:
        now = time.monotonic()
        if now - self._last_progress < self._keepalive:
            return
        self._last_progress = now
        # A stream-optimized disk is smaller than its capacity: an estimate.
        percent = min(99, self.bytes_read * 100 // self.capacity_bytes)
        self.session.invoke("HttpNfcLeaseProgress", self.lease, percent=int(percent))

    def read(self, size: int = CHUNK_BYTES) -> bytes:
        """Up to ``size`` bytes; b"" at the end (``size`` < 0: the rest, in chunks)."""
        if self._response is None:
            raise ValueError("DiskExport.read before open()")
        if size is None or size < 0:
            return b"".join(iter(lambda: self.read(CHUNK_BYTES), b""))
        try:
            data = self._response.raw.read(size)
        except Exception as exc:  # urllib3/http.client: a transfer cut short
            raise vexc.VimConnectionException(
                f"export lease {self.lease_id}: download failed after {self.bytes_read} "
                f"bytes: {exc}", exc) from exc
        if not data:
            self.eof = True
            return b""
        self.bytes_read += len(data)
        self._sha1.update(data)
        self._report_progress()
        return data

    # -- ending -----------------------------------------------------------------

    def _check_manifest(self) -> None:
        """Compare what we read with the lease's manifest, if vCenter gives one."""
        try:
            entries = self.session.invoke("HttpNfcLeaseGetManifest", self.lease) or []
        except vexc.VimException as exc:
            LOG.debug("Export lease %s: no manifest (%s); not verified", self.lease_id, exc)
            return
        for entry in entries:
            if str(getattr(entry, "key", "")) != self.key:
                continue
            sha1 = str(getattr(entry, "sha1", "") or "").lower()
            size = int(getattr(entry, "size", -1) or -1)
            if (sha1 and sha1 != self._sha1.hexdigest()) or (size >= 0 and
                                                             size != self.bytes_read):
                raise vexc.VimException(
                    f"export lease {self.lease_id}: read {self.bytes_read} bytes with SHA-1 "
                    f"{self._sha1.hexdigest()}, vCenter sent {size} bytes with SHA-1 {sha1}")
            return

    def finish(self) -> None:
        """The whole disk was read: verify it and complete the lease."""
        if not self.eof:
            raise vexc.VimException(f"export lease {self.lease_id}: the reader stopped after "
                                    f"{self.bytes_read} bytes, before the end of the disk")
        self._check_manifest()
        self.session.invoke("HttpNfcLeaseComplete", self.lease)
        self._ended = True
        self._close_response()

    def abort(self) -> None:
        """Give the lease up (best effort: it times out on its own otherwise)."""
        self._close_response()
        if self._ended:
            return
        self._ended = True
        try:
            self.session.invoke("HttpNfcLeaseAbort", self.lease)
        except vexc.VimException as exc:
            LOG.debug("Export lease %s: abort: %s", self.lease_id, exc)

    def _close_response(self) -> None:
        if self._response is not None:
            self._response.close()
            self._response = None

    @property
    def sha1(self) -> str:
        return self._sha1.hexdigest()
