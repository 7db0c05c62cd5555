"""Networks: standard port groups and distributed virtual switches."""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING

from pyVmomi import vim

from nova_vsphere_driver.simulator.objects.base import CallContext, ManagedEntity
from nova_vsphere_driver.simulator.vim_faults import invalid_argument

if TYPE_CHECKING:
    from nova_vsphere_driver.simulator.service import Simulator


class Network(ManagedEntity):
    vim_type = vim.Network
    moid_prefix = "network"

    def __init__(self, sim: Simulator, name: str, parent: ManagedEntity) -> None:
        super().__init__(sim, name, parent)
        self.hosts: list = []

    def _get_host(self):
        return [h.ref for h in self.hosts]

    def _get_vm(self):
        return [vm.ref for vm in self.sim.vms() if self in vm.networks]

    def _get_summary(self):
        return vim.Network.Summary(network=self.ref, name=self.name, accessible=True)


class DistributedVirtualSwitch(ManagedEntity):
    vim_type = vim.dvs.VmwareDistributedVirtualSwitch
    moid_prefix = "dvs"

    def __init__(self, sim: Simulator, name: str, parent: ManagedEntity) -> None:
        super().__init__(sim, name, parent)
        self.uuid = " ".join(uuid.uuid4().hex[i:i + 2] for i in range(0, 32, 2))
        self.portgroups: list[DistributedVirtualPortgroup] = []

    def _get_uuid(self):
        return self.uuid

    def _get_portgroup(self):
        return [p.ref for p in self.portgroups]

    def CreateDVPortgroup_Task(self, ctx: CallContext, spec):  # noqa: N802
        def work():
            return self.add_portgroup(spec).ref

        return self.sim.tasks.start(ctx, self, "CreateDVPortgroup_Task", work)

    def AddDVPortgroup_Task(self, ctx: CallContext, spec):  # noqa: N802
        def work():
            for one in spec:
                self.add_portgroup(one)

        return self.sim.tasks.start(ctx, self, "AddDVPortgroup_Task", work)

    def add_portgroup(self, spec) -> DistributedVirtualPortgroup:
        """A new port group on every host that has one of this switch's (all the
        datacenter's hosts for a switch without port groups)."""
        name = getattr(spec, "name", None)
        if not name:
            raise invalid_argument("spec.name", "a port group needs a name")
        check = getattr(self.parent, "child_named", None)
        if check is not None and check(name) is not None:
            raise vim.fault.DuplicateName(name=name, object=check(name).ref,
                                          msg=f"The name '{name}' already exists.")
        vlan = getattr(getattr(getattr(spec, "defaultPortConfig", None), "vlan", None),
                       "vlanId", 0)
        hosts = {h.moid: h for pg in self.portgroups for h in pg.hosts}
        if not self.portgroups:
            hosts = {h.moid: h for h in self.sim.hosts() if h.datacenter() is self.datacenter()}
        pg = self.sim.factory.portgroup(self.datacenter(), self, name,
                                        int(vlan if isinstance(vlan, int) else 0))
        for host in hosts.values():
            host.networks.append(pg)
            pg.hosts.append(host)
        self.sim.registry.touch(self, pg, *hosts.values())
        return pg

    def _get_summary(self):
        return vim.DistributedVirtualSwitch.Summary(
            name=self.name, uuid=self.uuid, numPorts=1024,
            portgroupName=[p.name for p in self.portgroups])

    def _get_config(self):
        return vim.dvs.VmwareDistributedVirtualSwitch.ConfigInfo(
            name=self.name, uuid=self.uuid, numPorts=1024, maxPorts=8192,
            configVersion="1", createTime=self.sim.service_instance._get_serverClock(),
            extensionKey="", uplinkPortgroup=[], targetInfo=None,
            defaultPortConfig=vim.dvs.VmwareDistributedVirtualSwitch.VmwarePortConfigPolicy(),
            maxMtu=1500, networkResourceManagementEnabled=False, policy=None)


class DistributedVirtualPortgroup(Network):
    vim_type = vim.dvs.DistributedVirtualPortgroup
    moid_prefix = "dvportgroup"

    def __init__(self, sim: Simulator, name: str, parent: ManagedEntity,
                 switch: DistributedVirtualSwitch, vlan: int = 0) -> None:
        super().__init__(sim, name, parent)
        self.switch = switch
        self.vlan = vlan

    @property
    def key(self) -> str:
        return self.moid

    def destroy(self) -> None:
        """Destroy_Task: a port group no VM uses goes from its switch and hosts."""
        users = [vm for vm in self.sim.vms() if self in vm.networks]
        if users:
            raise vim.fault.ResourceInUse(
                msg=f"Port group {self.name} is in use by {len(users)} virtual machine(s)")
        registry = self.sim.registry
        registry.touch(self, self.switch, *self.hosts)
        for host in self.hosts:
            host.networks.remove(self)
        self.hosts = []
        self.switch.portgroups.remove(self)
        self.parent.remove_child(self)
        registry.remove(self.moid)

    def _get_key(self):
        return self.key

    def _get_config(self):
        vlan = vim.dvs.VmwareDistributedVirtualSwitch.VlanIdSpec(inherited=False, vlanId=self.vlan)
        return vim.dvs.DistributedVirtualPortgroup.ConfigInfo(
            key=self.key, name=self.name, numPorts=128, type="earlyBinding",
            distributedVirtualSwitch=self.switch.ref,
            defaultPortConfig=vim.dvs.VmwareDistributedVirtualSwitch.VmwarePortConfigPolicy(
                vlan=vlan))
