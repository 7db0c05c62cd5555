"""Instance consoles: VNC and WebMKS on the ESXi host, and the serial console log.

vCenter runs no console itself: graphical consoles are served by the ESXi
host running the VM, so the connection info names that host.

* VNC: ESXi's per-VM VNC server (extraConfig ``RemoteDisplay.vnc.*``) on a
  port unique among the VMs of the host. Nova's in-tree driver reads the
  port option of every VM in vCenter to find a free one; here one
  property-collector read of the VM's host covers exactly the VMs that could
  collide, and a VM keeps its port while no other VM on its host has it.
  VMware removed the VNC server in ESXi 7.0: such hosts need WebMKS.
* WebMKS: a one-time ticket from ``AcquireTicket("webmks")`` for Nova's MKS
  proxy.
* Console output: the guest's serial port writes to ``console.log`` in the
  VM's folder (spawn adds that port), read over the datastore HTTP interface.
"""

from __future__ import annotations

import contextlib
import re
import threading
from collections.abc import Iterator
from typing import Any

import nova.conf
import requests
from nova import exception
from nova.console import type as ctype
from oslo_concurrency import lockutils
from oslo_log import log as logging
from oslo_serialization import jsonutils
from oslo_utils import units
from oslo_vmware import vim_util

from nova_vsphere_driver.ops import vm_devices
from nova_vsphere_driver.services import Services
from nova_vsphere_driver.vsphere import errors
from nova_vsphere_driver.vsphere.cluster_state import retrieve

LOG = logging.getLogger(__name__)
CONF = nova.conf.CONF

VNC_PORT_KEY = "RemoteDisplay.vnc.port"
VNC_ENABLED_KEY = "RemoteDisplay.vnc.enabled"
#: Keyed property paths: vCenter returns just that option of each VM.
VNC_PROPS = [f'config.extraConfig["{VNC_PORT_KEY}"]', f'config.extraConfig["{VNC_ENABLED_KEY}"]']
#: How much of the console log Nova gets (libvirt's driver returns 100 KiB too).
MAX_CONSOLE_BYTES = 100 * units.Ki
_DS_PATH = re.compile(r"^\[(?P<ds>[^\]]+)\]\s?(?P<path>.*)$")
#: Hosts already warned about (ESXi >= 7 has no VNC server).
_warned_hosts: set[str] = set()
_warned_lock = threading.Lock()

SERIAL_UNSUPPORTED = (
    "The vSphere driver offers no interactive serial console: ESXi exposes a VM's serial "
    "port over the network only through a virtual serial port concentrator (vSPC), which "
    "this driver does not configure. Use the console log (os-getConsoleOutput) or the "
    "WebMKS console instead.")


@contextlib.contextmanager
def _host_lock(host_moref: str) -> Iterator[None]:
    """Port choices on one host are serialised (between this process's threads)."""
    with lockutils.lock(f"vsphere-vnc-{host_moref}"):
        yield


def _option_value(option: Any) -> str | None:
    value = getattr(option, "value", None)
    return str(value) if value is not None else None


class Consoles:
    """Console operations of one driver (built once; holds no state)."""

    def __init__(self, services: Services) -> None:
        self._session = services.session
        self._vmops = services.vmops
        self._vm_refs = services.vm_refs
        self._states = services.states
        self._nodes = services.nodes
        self._images = services.images

    # -- VNC ------------------------------------------------------------------------------

    def _host_vnc_ports(self, host_ref) -> tuple[str, str, dict[str, tuple[int | None, bool]]]:
        """(host name, ESXi version, {VM moref: (VNC port, enabled)}) in one read."""
        factory = self._session.vim.client.factory
        to_vms = vim_util.build_traversal_spec(factory, "hostVms", "HostSystem", "vm", False, [])
        spec = vim_util.build_property_filter_spec(
            factory,
            [vim_util.build_property_spec(factory, "HostSystem",
                                          ["name", "summary.config.product.version"]),
             vim_util.build_property_spec(factory, "VirtualMachine", VNC_PROPS)],
            [vim_util.build_object_spec(factory, host_ref, [to_vms])])
        name, version, ports = "", "", {}
        for obj in retrieve(self._session, spec, self._states.page_size):
            values = {p.name: p.val for p in getattr(obj, "propSet", None) or []}
            if vim_util.get_moref_type(obj.obj) == "HostSystem":
                name = values.get("name", "")
                version = str(values.get("summary.config.product.version", ""))
                continue
            raw = _option_value(values.get(VNC_PROPS[0]))
            enabled = (_option_value(values.get(VNC_PROPS[1])) or "").lower() == "true"
            port = int(raw) if raw is not None and raw.isdigit() else None
            ports[vim_util.get_moref_value(obj.obj)] = (port, enabled)
        return name, version, ports

    @staticmethod
    def _warn_if_no_vnc_server(host_name: str, version: str) -> None:
        try:
            major = int(version.split(".")[0])
        except ValueError:
            return
        if major < 7:
            return
        with _warned_lock:
            if host_name in _warned_hosts:
                return
            _warned_hosts.add(host_name)
        LOG.warning("ESXi host %s runs ESXi %s, which has no VNC server: VNC consoles of its "
                    "VMs will not connect; use the WebMKS console ([mks] enabled = True)",
                    host_name, version)

    def vnc(self, context, instance) -> ctype.ConsoleVNC:
        low = CONF.vsphere.vnc_port
        high = low + CONF.vsphere.vnc_port_total  # exclusive
        # Two reads: where the VM runs, then that host's VMs. A vMotion in
        # between shows as the VM missing from the host's list: read again.
        for _attempt in range(3):
            vm_ref, host_ref = self._vm_refs.with_vm(instance, lambda ref: (
                ref, self._session.call("get_object_property", ref, "runtime.host")))
            vm_moref = vim_util.get_moref_value(vm_ref)
            host_moref = vim_util.get_moref_value(host_ref)
            with _host_lock(host_moref), errors.translated(instance):
                host_name, version, ports = self._host_vnc_ports(host_ref)
                if vm_moref not in ports:
                    continue
                self._warn_if_no_vnc_server(host_name, version)
                own_port, enabled = ports.pop(vm_moref)
                taken = {p for p, _ in ports.values() if p is not None}
                if own_port is not None and low <= own_port < high and own_port not in taken \
                        and enabled:
                    return ctype.ConsoleVNC(host=host_name, port=own_port)
                port = next((p for p in range(low, high) if p not in taken), None)
                if port is None:
                    raise exception.ConsolePortRangeExhausted(min_port=low, max_port=high - 1)
                spec = self._session.factory("VirtualMachineConfigSpec")
                spec.extraConfig = [self._option(VNC_ENABLED_KEY, "true"),
                                    self._option(VNC_PORT_KEY, str(port))]
                self._session.run_task("ReconfigVM_Task", vm_ref, spec=spec)
                LOG.info("VNC console of the instance on %s:%d (was %s)", host_name, port,
                         own_port if own_port is not None else "not set", instance=instance)
                return ctype.ConsoleVNC(host=host_name, port=port)
        raise exception.ConsoleNotAvailable()

    def _option(self, key: str, value: str):
        opt = self._session.factory("OptionValue")
        opt.key, opt.value = key, value
        return opt

    # -- WebMKS -----------------------------------------------------------------------------

    def mks(self, context, instance) -> ctype.ConsoleMKS:
        try:
            ticket = self._vm_refs.with_vm(instance, lambda ref: self._session.invoke(
                "AcquireTicket", ref, ticketType="webmks"))
        except exception.InstanceInvalidState:
            # Not running (or its host is not connected): no console to hand out yet.
            raise exception.InstanceNotReady(instance_id=instance.uuid) from None
        host = getattr(ticket, "host", None)
        if not host:
            # vCenter may leave the host out: it is the VM's host.
            host = self._vm_refs.with_vm(instance, lambda ref: self._session.call(
                "get_object_property", self._session.call(
                    "get_object_property", ref, "runtime.host"), "name"))
        auth = {"ticket": ticket.ticket, "cfgFile": getattr(ticket, "cfgFile", None),
                "thumbprint": (getattr(ticket, "sslThumbprint", None) or "")
                .replace(":", "").lower()}
        url = getattr(ticket, "url", None)
        if url:
            auth["url"] = url
        return ctype.ConsoleMKS(host=host, port=int(getattr(ticket, "port", None) or 443),
                                internal_access_path=jsonutils.dumps(auth))

    # -- console output ---------------------------------------------------------------------

    def _log_path(self, instance) -> tuple[str, str]:
        """(datastore, path) of the file the VM's serial port writes to."""
        props = self._vm_refs.with_vm(instance, lambda ref: self._vmops.properties(
            ref, ["config.hardware.device"]))
        for device in vm_devices.items(props.get("config.hardware.device")):
            backing = getattr(device, "backing", None)
            if vm_devices.type_name(device) != "VirtualSerialPort" \
                    or vm_devices.type_name(backing) != "VirtualSerialPortFileBackingInfo":
                continue
            match = _DS_PATH.match(getattr(backing, "fileName", None) or "")
            if match is not None:
                return match.group("ds"), match.group("path")
        raise exception.ConsoleNotAvailable()

    def _get(self, url: str) -> requests.Response:
        images = self._images
        resp = requests.get(url, headers={"Cookie": self._session.cookie_header},
                            verify=images.verify, timeout=60)
        if resp.status_code == 401:
            # The session expired: a SOAP call that needs a session logs in
            # again (currentSession would not: vCenter answers it unset
            # without a session); then ask again.
            self._session.call("get_object_property", self._session.content.rootFolder,
                               "name")
            resp = requests.get(url, headers={"Cookie": self._session.cookie_header},
                                verify=images.verify, timeout=60)
        return resp

    def output(self, context, instance) -> bytes:
        """The tail of the serial console log (bytes, as libvirt's driver returns it)."""
        ref = self._nodes.cluster(instance.node)
        ds_name, path = self._log_path(instance)
        url = self._images._url(ref.datacenter_path, ds_name, path)
        try:
            resp = self._get(url)
        except requests.RequestException as exc:
            raise exception.NovaException(
                message=f"cannot read [{ds_name}] {path} from vCenter: {exc}") from exc
        if resp.status_code == 404:
            raise exception.ConsoleNotAvailable()
        if resp.status_code != 200:
            raise exception.NovaException(
                message=f"cannot read [{ds_name}] {path} from vCenter: HTTP "
                f"{resp.status_code} {resp.reason}")
        return resp.content[-MAX_CONSOLE_BYTES:]
