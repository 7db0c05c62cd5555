"""An instance's VIFs as vSphere NICs: which network each port's binding names, as a host
sees it, and which adapter the image asks for.

Neutron's port binding says where a port goes (the VIF's ``type`` and
``details``), as Nova's in-tree driver reads it:

* ``dvs`` (Neutron's vSphere DVS backends): ``dvs_id`` (the switch's UUID)
  and ``pg_id`` (the port group's key), or ``dvs_port_group_name``, or else
  the network's bridge as a port group name (NSX-V virtual wires
  ``vxw-dvs-<n>-virtualwire-<n>-sid-<n>-<name>`` by their ``<name>``, and a
  name that only one port group's name contains). ``dvs_port_key`` names
  the distributed port the backend reserved for the Neutron port.
* ``ovs`` with NSX: ``nsx-logical-switch-id`` is an opaque network's id or an
  NSX segment port group's logical switch UUID (NSX on a vSphere
  Distributed Switch); the adapter's ``externalId`` is the Neutron port, by
  which NSX attaches it. Without that id (Neutron's OVS binding, as Nova's
  test fixtures make it) the port group named by the bridge, label or
  network id, then an NSX network of the network's id.
* Any other type: the port group named by the network's bridge, label or id.

The image's ``hw_vif_model`` picks the adapter (``[vsphere]
default_vif_model`` when it says nothing); a model vSphere has no adapter
for is refused before anything is created.
"""

from __future__ import annotations

import re
import threading

import nova.conf
from nova import exception
from nova.network import model as network_model
from oslo_log import log as logging
from oslo_vmware import exceptions as vexc
from oslo_vmware import vim_util

from nova_vsphere_driver.ops import vm_devices
from nova_vsphere_driver.vsphere.cluster_state import ClusterState, EsxiHostState, NetworkState
from nova_vsphere_driver.vsphere.session import VSphereSession
from nova_vsphere_driver.vsphere.vm import Nic, nic_backing

LOG = logging.getLogger(__name__)
CONF = nova.conf.CONF

#: Nova's VIF models (the image's hw_vif_model) -> vSphere's network adapters.
VIF_MODELS = {
    network_model.VIF_MODEL_E1000: "VirtualE1000",
    network_model.VIF_MODEL_E1000E: "VirtualE1000e",
    network_model.VIF_MODEL_PCNET: "VirtualPCNet32",
    network_model.VIF_MODEL_VMXNET: "VirtualVmxnet",
    network_model.VIF_MODEL_VMXNET3: "VirtualVmxnet3",
    network_model.VIF_MODEL_SRIOV: "VirtualSriovEthernetCard",
}
#: NSX-V names a logical switch's port group vxw-dvs-<n>-virtualwire-<n>-sid-<n>-<name>.
VIRTUAL_WIRE = re.compile(r"^vxw-dvs-\d+-virtualwire-\d+-sid-\d+-(?P<name>.*)$")
#: The binding detail naming the NSX logical switch (Neutron's NSX plugins).
NSX_LOGICAL_SWITCH = "nsx-logical-switch-id"


def nic_adapter(image_meta) -> str:
    """The adapter the image's ``hw_vif_model`` asks for (the configured default when it
    names none); ImageUnacceptable for a model vSphere has no adapter for."""
    props = None
    if image_meta is not None and image_meta.obj_attr_is_set("properties"):
        props = image_meta.properties
    model = props.get("hw_vif_model", None) if props is not None else None
    if model is None:
        return VIF_MODELS[CONF.vsphere.default_vif_model]
    try:
        return VIF_MODELS[model]
    except KeyError:
        image_id = image_meta.id if image_meta.obj_attr_is_set("id") else None
        raise exception.ImageUnacceptable(
            image_id=image_id, reason=f"hw_vif_model {model!r}: vSphere has no such network "
            f"adapter (use one of {', '.join(sorted(VIF_MODELS))})") from None


class NicResolver:
    """VIFs -> NICs on the networks their bindings name; distributed switches' UUIDs and
    port groups' NSX logical switches cached (they never change)."""

    def __init__(self, session: VSphereSession) -> None:
        self._session = session
        self._switch_uuids: dict[str, str] = {}
        self._logical_switches: dict[str, str | None] = {}
        self._lock = threading.Lock()

    def nics(self, state: ClusterState, host: EsxiHostState | None, network_info,
             adapter: str | None = None) -> tuple[Nic, ...]:
        """NICs on the networks the VIFs' bindings name, as seen from ``host`` (None: any
        usable host of the cluster), each a ``adapter`` (default: the configured model).

        NetworkNotFoundForBridge when a VIF's network is not there.
        """
        adapter = adapter or VIF_MODELS[CONF.vsphere.default_vif_model]
        hosts = [host] if host is not None else state.usable_hosts()
        reachable = {n for h in hosts for n in h.networks}
        networks = [n for n in state.networks if n.moref in reachable]
        nics = []
        for vif in network_info or []:
            network, port_key, external = self._network(networks, vif)
            nics.append(Nic(
                network=network, mac_address=vif.get("address"), iface_id=vif.get("id") or "",
                switch_uuid=self._switch_uuid(network) if network.kind == "portgroup" else None,
                adapter=adapter, port_key=port_key,
                external_id=(vif.get("id") or None) if external else None))
        return tuple(nics)

    # -- one VIF ------------------------------------------------------------------------

    def _network(self, networks: list[NetworkState],
                 vif) -> tuple[NetworkState, str | None, bool]:
        """(network, reserved port key, whether NSX attaches it by the port id)."""
        details = vif.get("details") or {}
        network = vif.get("network") or {}
        vif_type = vif.get("type")
        if vif_type == network_model.VIF_TYPE_DVS:
            match = self._dvs_network(networks, vif, details)
            port_key = details.get("dvs_port_key") or None
            if port_key is not None and match.kind != "portgroup":
                raise exception.NetworkNotFoundForBridge(
                    bridge=f"{match.name} (dvs_port_key {port_key} needs a distributed port "
                    "group)")
            return match, port_key, False
        if vif_type == network_model.VIF_TYPE_OVS and details.get(NSX_LOGICAL_SWITCH):
            switch_id = details[NSX_LOGICAL_SWITCH]
            match = self._nsx_network(networks, switch_id)
            if match is None:
                raise exception.NetworkNotFoundForBridge(
                    bridge=f"NSX logical switch {switch_id}")
            return match, None, True
        names = [network.get("bridge"), network.get("label"), network.get("id")]
        match = _by_name(networks, names)
        if match is None and vif_type == network_model.VIF_TYPE_OVS and network.get("id"):
            # Neutron's NSX plugins without the logical switch in the binding:
            # the Neutron network's id is the NSX network's.
            match = self._nsx_network(networks, network["id"])
            if match is not None:
                return match, None, True
        if match is None:
            raise exception.NetworkNotFoundForBridge(bridge=names[0] or names[1])
        return match, None, False

    def _dvs_network(self, networks: list[NetworkState], vif, details) -> NetworkState:
        switch_uuid, pg_key = details.get("dvs_id"), details.get("pg_id")
        if switch_uuid and pg_key:
            match = next((n for n in networks if n.portgroup_key == pg_key
                          and self._switch_uuid(n) == switch_uuid), None)
            if match is None:
                raise exception.NetworkNotFoundForBridge(
                    bridge=f"port group {pg_key} of distributed switch {switch_uuid}")
            return match
        name = details.get("dvs_port_group_name") or (vif.get("network") or {}).get("bridge")
        match = _by_name(networks, [name]) if name else None
        if match is None and name:
            groups = [n for n in networks if n.kind == "portgroup"]
            wire = [n for n in groups if _wire_name(n.name) == name]
            # Nova's in-tree driver takes a port group whose name contains the
            # bridge; only an unambiguous one here.
            partial = [n for n in groups if name in _wire_name(n.name)]
            match = wire[0] if len(wire) == 1 else partial[0] if len(partial) == 1 else None
            if match is None and len(partial) > 1:
                raise exception.NetworkNotFoundForBridge(
                    bridge=f"{name} (ambiguous: {', '.join(sorted(n.name for n in partial))})")
        if match is None:
            raise exception.NetworkNotFoundForBridge(bridge=name)
        return match

    def _nsx_network(self, networks: list[NetworkState], switch_id: str) -> NetworkState | None:
        """The opaque network or NSX segment port group of an NSX logical switch."""
        opaque = next((n for n in networks if n.kind == "opaque" and n.opaque_id == switch_id),
                      None)
        if opaque is not None:
            return opaque
        groups = [n for n in networks if n.kind == "portgroup"]
        self._read_logical_switches(groups)
        with self._lock:
            return next((n for n in groups if self._logical_switches.get(n.moref) == switch_id),
                        None)

    # -- cached vCenter facts -----------------------------------------------------------

    def _switch_uuid(self, network: NetworkState) -> str:
        with self._lock:
            cached = self._switch_uuids.get(network.switch)
        if cached is None:
            # The reference as vCenter gave it: a DistributedVirtualSwitch is
            # not found as a VmwareDistributedVirtualSwitch.
            ref = vim_util.get_moref(network.switch, network.switch_type)
            cached = self._session.call("get_object_property", ref, "uuid")
            with self._lock:
                self._switch_uuids[network.switch] = cached
        return cached

    def _read_logical_switches(self, groups: list[NetworkState]) -> None:
        """Learn the NSX logical switch (if any) of port groups not seen before: one read.

        ``config.logicalSwitchUuid`` exists from vSphere 7.0; an older
        vCenter refuses the property, and then no port group is an NSX one.
        """
        with self._lock:
            unknown = [n for n in groups if n.moref not in self._logical_switches]
        if not unknown:
            return
        refs = [vim_util.get_moref(n.moref, "DistributedVirtualPortgroup") for n in unknown]
        found: dict[str, str | None] = {n.moref: None for n in unknown}
        try:
            result = self._session.call("get_properties_for_a_collection_of_objects",
                                        "DistributedVirtualPortgroup", refs,
                                        ["config.logicalSwitchUuid"])
            for obj in getattr(result, "objects", None) or []:
                for prop in getattr(obj, "propSet", None) or []:
                    found[vim_util.get_moref_value(obj.obj)] = prop.val
        except vexc.VimException as exc:  # InvalidProperty before vSphere 7.0
            LOG.info("Port groups carry no NSX logical switch here (%s)", exc)
        with self._lock:
            self._logical_switches.update(found)


def _wire_name(name: str) -> str:
    """A port group's name, an NSX-V virtual wire's by its logical switch's part."""
    wire = VIRTUAL_WIRE.match(name)
    return wire.group("name") if wire else name


def _by_name(networks: list[NetworkState], names: list[str | None]) -> NetworkState | None:
    """The first network (NSX opaque networks aside) called one of ``names``, in order."""
    by_name = {n.name: n for n in networks if n.kind != "opaque"}
    return next((by_name[n] for n in names if n and n in by_name), None)


def _same_backing(current, wanted) -> bool:
    if type(current).__name__ != type(wanted).__name__:
        return False
    port, want_port = getattr(current, "port", None), getattr(wanted, "port", None)
    if want_port is not None:
        return port is not None and port.switchUuid == want_port.switchUuid \
            and port.portgroupKey == want_port.portgroupKey \
            and (not getattr(want_port, "portKey", None) or port.portKey == want_port.portKey)
    if getattr(wanted, "opaqueNetworkId", None) is not None:
        return current.opaqueNetworkId == wanted.opaqueNetworkId \
            and current.opaqueNetworkType == wanted.opaqueNetworkType
    return getattr(current, "deviceName", None) == getattr(wanted, "deviceName", None)


def backing_edits(session: VSphereSession, devices: list, nics: tuple[Nic, ...]) -> list:
    """Device edits that put a VM's adapters (found by MAC) on ``nics``' networks, for those
    whose backing differs (a vMotion to a cluster on another switch, a new binding)."""
    edits = []
    for nic in nics:
        device = vm_devices.find_nic(devices, nic.mac_address)
        if device is None:
            continue
        wanted = nic_backing(session, nic)
        external = nic.external_id
        if _same_backing(device.backing, wanted) and \
                (not external or getattr(device, "externalId", None) == external):
            continue
        device.backing = wanted
        if external:
            device.externalId = external
        change = session.factory("VirtualDeviceConfigSpec")
        change.operation = "edit"
        change.device = device
        edits.append(change)
    return edits
