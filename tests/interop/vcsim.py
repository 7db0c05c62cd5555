"""VMware's vcsim (``tests/interop/go/vcsim``) as a child process on 127.0.0.1.

The inventory is govmomi's ``simulator.VPX()`` model sized by
:class:`VcsimInventory`: names follow vcsim's scheme (datacenter ``DC0``,
cluster ``DC0_C0``, hosts ``DC0_C0_H0``.., datastore ``LocalDS_0``, VMs
``DC0_C0_RP0_VM0``..). HTTPS uses a certificate from the simulator's own
generator (``ca_file`` verifies it).
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import subprocess
import tempfile
import threading
import urllib.parse

from nova_vsphere_driver.simulator import tls


@dataclasses.dataclass(frozen=True)
class VcsimInventory:
    """vcsim's model flags; the defaults are ``simulator.VPX()``'s."""

    datacenters: int = 1
    clusters: int = 1
    hosts_per_cluster: int = 3
    standalone_hosts: int = 1
    #: VMs per resource pool (one per cluster) and per standalone host.
    vms: int = 2
    datastores: int = 1
    portgroups: int = 1
    autostart: bool = True

    def flags(self) -> list[str]:
        return [f"-dc={self.datacenters}", f"-cluster={self.clusters}",
                f"-host={self.hosts_per_cluster}", f"-standalone-host={self.standalone_hosts}",
                f"-vm={self.vms}", f"-ds={self.datastores}", f"-pg={self.portgroups}",
                f"-autostart={str(self.autostart).lower()}"]


class VcsimError(Exception):
    """vcsim did not start; the message carries its log."""


class Vcsim:
    """One vcsim process: ``start()`` returns once it serves, ``stop()`` ends it."""

    def __init__(self, binary: str, inventory: VcsimInventory | None = None, *,
                 tls_enabled: bool = True, username: str = "user", password: str = "pass",
                 startup_timeout: float = 120.0) -> None:
        self.binary = binary
        self.inventory = inventory or VcsimInventory()
        self.tls_enabled = tls_enabled
        self.username = username
        self.password = password
        self.startup_timeout = startup_timeout
        self.ca_file: str | None = None
        self.port: int | None = None
        self.banner: dict = {}
        self._dir: str | None = None
        self._process: subprocess.Popen | None = None

    @property
    def pid(self) -> int:
        assert self._process is not None, "vcsim is not running"
        return self._process.pid

    @property
    def url(self) -> str:
        scheme = "https" if self.tls_enabled else "http"
        return f"{scheme}://127.0.0.1:{self.port}/sdk"

    def start(self) -> Vcsim:
        self._dir = tempfile.mkdtemp(prefix="vcsim-")
        args = [self.binary, "-l", "127.0.0.1:0", "-exit-on-eof",
                f"-username={self.username}", f"-password={self.password}",
                *self.inventory.flags()]
        if self.tls_enabled:
            self.ca_file, cert, key = tls.generate(self._dir)
            args += ["-cert", cert, "-key", key]
        log_path = os.path.join(self._dir, "vcsim.log")
        with open(log_path, "wb") as log:
            # stdin stays open while we run: vcsim exits when it closes, so
            # it never outlives this process, however this process ends.
            self._process = subprocess.Popen(args, stdin=subprocess.PIPE,
                                             stdout=subprocess.PIPE, stderr=log, cwd=self._dir)
        line = self._first_line()
        try:
            self.banner = json.loads(line)
        except ValueError:
            log = self._log(log_path)
            self.stop()
            raise VcsimError(f"vcsim did not start: {line!r}; log:\n{log}") from None
        self.port = urllib.parse.urlsplit(self.banner["url"]).port
        return self

    def _first_line(self) -> str:
        """vcsim's banner, or '' when it exits or the start-up timeout passes."""
        assert self._process is not None and self._process.stdout is not None
        lines: list[bytes] = []
        reader = threading.Thread(target=lambda: lines.append(self._process.stdout.readline()),
                                  daemon=True)
        reader.start()
        reader.join(self.startup_timeout)
        return lines[0].decode(errors="replace").strip() if lines else ""

    @staticmethod
    def _log(path: str) -> str:
        try:
            with open(path, errors="replace") as log:
                return log.read()[-4000:]
        except OSError:
            return ""

    def stop(self) -> None:
        process, self._process = self._process, None
        if process is not None:
            for stream in (process.stdin, process.stdout):
                if stream is not None:
                    stream.close()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        if self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)
            self._dir = None

    def __enter__(self) -> Vcsim:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
