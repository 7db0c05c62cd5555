"""SearchIndex: find entities by inventory path, UUID or name."""

from __future__ import annotations

import urllib.parse
from typing import TYPE_CHECKING

from pyVmomi import vim

from nova_vsphere_driver.simulator.datastore_files import normalize, parse_datastore_path
from nova_vsphere_driver.simulator.objects.base import CallContext, ManagedEntity, ManagedObject

if TYPE_CHECKING:
    from nova_vsphere_driver.simulator.service import Simulator


class SearchIndex(ManagedObject):
    vim_type = vim.SearchIndex

    def __init__(self, sim: Simulator) -> None:
        super().__init__(sim, "SearchIndex")

    def FindByInventoryPath(self, ctx: CallContext, inventoryPath: str):  # noqa: N802,N803
        # Leading and trailing slashes are ignored; a '/' inside a name is
        # written %2f (URL syntax), as documented.
        parts = [urllib.parse.unquote(p) for p in inventoryPath.strip("/").split("/") if p]
        with self.sim.registry.lock:
            node: ManagedEntity = self.sim.root_folder
            for part in parts:
                nxt = next((c for c in node.child_entities() if c.name == part), None)
                if nxt is None:
                    return None
                node = nxt
            return node.ref

    def FindChild(self, ctx: CallContext, entity, name: str):  # noqa: N802
        with self.sim.registry.lock:
            parent = self.sim.registry.lookup(entity)
            child = next((c for c in parent.child_entities() if c.name == name), None)
            return child.ref if child is not None else None

    def _by_uuid(self, datacenter, uuid: str, vm_search: bool, instance_uuid: bool) -> list:
        dc = self.sim.registry.lookup(datacenter) if datacenter is not None else None
        found = []
        if vm_search:
            for vm in self.sim.vms():
                if dc is not None and vm.datacenter() is not dc:
                    continue
                key = vm.config.instanceUuid if instance_uuid else vm.config.uuid
                if key and key.lower() == uuid.lower():
                    found.append(vm.ref)
        else:
            for host in self.sim.registry.all("HostSystem"):
                if (dc is None or host.datacenter() is dc) and host.uuid.lower() == uuid.lower():
                    found.append(host.ref)
        return found

    def FindByUuid(self, ctx: CallContext, datacenter=None, uuid: str = "",  # noqa: N802
                   vmSearch: bool = False, instanceUuid: bool | None = None):  # noqa: N803
        with self.sim.registry.lock:
            found = self._by_uuid(datacenter, uuid, vmSearch, bool(instanceUuid))
            return found[0] if found else None

    def FindAllByUuid(self, ctx: CallContext, datacenter=None, uuid: str = "",  # noqa: N802
                      vmSearch: bool = False, instanceUuid: bool | None = None):  # noqa: N803
        with self.sim.registry.lock:
            return self._by_uuid(datacenter, uuid, vmSearch, bool(instanceUuid))

    def FindByDnsName(self, ctx: CallContext, datacenter=None, dnsName: str = "",  # noqa: N802,N803
                      vmSearch: bool = False):  # noqa: N803
        kind = "VirtualMachine" if vmSearch else "HostSystem"
        with self.sim.registry.lock:
            for obj in self.sim.registry.all(kind):
                if obj.name == dnsName and (vmSearch is False or obj.powered_on):
                    return obj.ref
        return None

    def FindByIp(self, ctx: CallContext, datacenter=None, ip: str = "",  # noqa: N802
                 vmSearch: bool = False):  # noqa: N803
        if not vmSearch:
            return None
        with self.sim.registry.lock:
            for vm in self.sim.registry.all("VirtualMachine"):
                if vm.ip_address == ip and vm.powered_on:
                    return vm.ref
        return None

    # -- by datastore path (image cache leftovers, vsphere/image_leftovers.py) ---------

    def FindByDatastorePath(self, ctx: CallContext, datacenter, path: str):  # noqa: N802
        """The VM of the datacenter whose configuration file is ``path`` ("[ds] dir/x.vmx").

        vCenter answers InvalidDatastore for a path on no datastore of the
        datacenter, and None when no registered VM has that .vmx.
        """
        with self.sim.registry.lock:
            dc = self.sim.registry.lookup(datacenter)
            try:
                ds_name, rel = parse_datastore_path(path)
            except vim.fault.InvalidDatastorePath:
                raise vim.fault.InvalidDatastore(
                    name=path, msg=f"Invalid datastore path '{path}'") from None
            ds = self.sim.datastore_by_name(ds_name)
            if ds is None or ds.datacenter() is not dc:
                raise vim.fault.InvalidDatastore(
                    name=ds_name, msg=f"Datastore '{ds_name}' is not in datacenter {dc.name}")
            wanted = f"[{ds_name}] {normalize(rel)}"
            for vm in self.sim.vms():
                if vm.datacenter() is not dc:
                    continue
                vm_ds, vm_rel = parse_datastore_path(vm.config.files.vmPathName)
                if f"[{vm_ds}] {vm_rel}" == wanted:
                    return vm.ref
            return None
