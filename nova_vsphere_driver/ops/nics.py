"""An instance's VIFs as vSphere NICs: the port groups they name, as a host sees them."""

from __future__ import annotations

import threading

from nova import exception
from oslo_vmware import vim_util

from nova_vsphere_driver.vsphere.cluster_state import ClusterState, EsxiHostState
from nova_vsphere_driver.vsphere.session import VSphereSession
from nova_vsphere_driver.vsphere.vm import Nic


class NicResolver:
    """VIFs -> NICs on port groups; distributed switches' UUIDs cached (they never change)."""

    def __init__(self, session: VSphereSession) -> None:
        self._session = session
        self._switch_uuids: dict[str, str] = {}
        self._lock = threading.Lock()

    def nics(self, state: ClusterState, host: EsxiHostState | None,
             network_info) -> tuple[Nic, ...]:
        """NICs on the port groups the VIFs name, as seen from ``host`` (None: any host).

        NetworkNotFoundForBridge when a VIF's network is not there.
        """
        nics = []
        hosts = [host] if host is not None else state.usable_hosts()
        reachable = {n for h in hosts for n in h.networks}
        by_name = {n.name: n for n in state.networks if n.moref in reachable}
        for vif in network_info or []:
            network = vif.get("network") or {}
            names = [network.get("bridge"), network.get("label"), network.get("id")]
            match = next((by_name[n] for n in names if n and n in by_name), None)
            if match is None:
                raise exception.NetworkNotFoundForBridge(bridge=names[0] or names[1])
            switch_uuid = None
            if match.portgroup_key is not None:
                switch_uuid = self._switch_uuid(match.switch, match.switch_type)
            nics.append(Nic(network=match, mac_address=vif.get("address"),
                            iface_id=vif.get("id") or "", switch_uuid=switch_uuid))
        return tuple(nics)

    def _switch_uuid(self, switch_moref: str, switch_type: str) -> str:
        with self._lock:
            cached = self._switch_uuids.get(switch_moref)
        if cached is None:
            ref = vim_util.get_moref(switch_moref, switch_type)
            cached = self._session.call("get_object_property", ref, "uuid")
            with self._lock:
                self._switch_uuids[switch_moref] = cached
        return cached
