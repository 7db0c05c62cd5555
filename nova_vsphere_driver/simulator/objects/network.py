"""Networks: standard port groups, NSX opaque networks, distributed switches and their
port groups and ports.

A distributed port group with static binding (``earlyBinding``) has ports,
each with a key unique on its switch. A NIC names its port group and may
name a port (``backing.port.portKey``), as a Neutron backend does once it
has reserved that port for a Neutron port (``ReconfigureDVPort_Task`` to
name it, ``FetchDVPorts`` to find it); a NIC that names none is given the
lowest free port of its port group, and the group grows by one port when
all are taken (``autoExpand``, vCenter's default). Which NIC holds a port
is read from the VMs themselves, so a NIC removed, a VM destroyed or moved
frees its port with no bookkeeping here.
"""

from __future__ import annotations

import dataclasses
import datetime
import itertools
import uuid
from typing import TYPE_CHECKING, Any

from pyVmomi import vim, vmodl

from nova_vsphere_driver.simulator.objects.base import CallContext, ManagedEntity
from nova_vsphere_driver.simulator.vim_data import complete
from nova_vsphere_driver.simulator.vim_faults import invalid_argument

if TYPE_CHECKING:
    from nova_vsphere_driver.simulator.service import Simulator

Dev = vim.vm.device
#: Ports a new static port group starts with (vCenter's default).
DEFAULT_PORTS = 8


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

    def carries(self, backing) -> bool:
        """Whether a NIC with this backing is on this network."""
        return isinstance(backing, Dev.VirtualEthernetCard.NetworkBackingInfo) \
            and backing.deviceName == self.name

    def wire(self, nic, owner: str | None, devices: list) -> None:
        """Connect a NIC being configured (its backing names this network)."""
        nic.backing.network = self.ref


class OpaqueNetwork(Network):
    """A network another product manages (NSX): NICs name it by id and type."""

    vim_type = vim.OpaqueNetwork
    moid_prefix = "network-o"

    def __init__(self, sim: Simulator, name: str, parent: ManagedEntity, network_id: str,
                 network_type: str = "nsx.LogicalSwitch") -> None:
        super().__init__(sim, name, parent)
        self.network_id = network_id
        self.network_type = network_type

    def _get_summary(self):
        return vim.OpaqueNetwork.Summary(network=self.ref, name=self.name, accessible=True,
                                         opaqueNetworkId=self.network_id,
                                         opaqueNetworkType=self.network_type)

    def _get_extraConfig(self):  # noqa: N802
        return []

    def carries(self, backing) -> bool:
        return isinstance(backing, Dev.VirtualEthernetCard.OpaqueNetworkBackingInfo) \
            and backing.opaqueNetworkId == self.network_id \
            and backing.opaqueNetworkType == self.network_type

    def wire(self, nic, owner: str | None, devices: list) -> None:
        pass  # NSX attaches the NIC by its externalId


@dataclasses.dataclass
class DvPort:
    """One port of a distributed switch."""

    key: str
    portgroup: DistributedVirtualPortgroup
    name: str | None = None
    description: str | None = None
    config_version: int = 0
    changed: datetime.datetime = dataclasses.field(
        default_factory=lambda: datetime.datetime.now(datetime.timezone.utc))


class DistributedVirtualSwitch(ManagedEntity):
    """A distributed switch as vCenter types a third-party or NSX-managed one."""

    vim_type = vim.DistributedVirtualSwitch
    moid_prefix = "dvs"

    def __init__(self, sim: Simulator, name: str, parent: ManagedEntity) -> None:
        super().__init__(sim, name, parent)
        self.uuid = " ".join(uuid.uuid4().hex[i:i + 2] for i in range(0, 32, 2))
        self.portgroups: list[DistributedVirtualPortgroup] = []
        self.ports: dict[str, DvPort] = {}
        self._port_keys = itertools.count()
        #: config.createTime: when the switch was made (not the time of a read).
        self.created = datetime.datetime.now(datetime.timezone.utc)

    def restored(self) -> None:
        super().restored()
        # (A state saved before switches kept it: the time it is loaded at.)
        self.__dict__.setdefault("created", datetime.datetime.now(datetime.timezone.utc))

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
            name=self.name, uuid=self.uuid, numPorts=len(self.ports),
            portgroupName=[p.name for p in self.portgroups])

    def _config_class(self):
        return vim.DistributedVirtualSwitch.ConfigInfo

    def _get_config(self):
        return self._config_class()(
            name=self.name, uuid=self.uuid, numPorts=len(self.ports), maxPorts=8192,
            configVersion="1", createTime=self.created,
            extensionKey="", uplinkPortgroup=[], targetInfo=None,
            defaultPortConfig=vim.dvs.VmwareDistributedVirtualSwitch.VmwarePortConfigPolicy(),
            maxMtu=1500, networkResourceManagementEnabled=False, policy=None)

    # -- ports ----------------------------------------------------------------------

    def add_ports(self, portgroup: DistributedVirtualPortgroup, count: int) -> list[DvPort]:
        added = []
        for _ in range(count):
            port = DvPort(str(next(self._port_keys)), portgroup)
            self.ports[port.key] = port
            added.append(port)
        return added

    def port_users(self) -> dict[str, tuple[Any, Any]]:
        """Port key -> (VM, NIC) for every NIC connected to a port of this switch."""
        users = {}
        for vm in self.sim.vms():
            for device in vm.config.hardware.device:
                port = _port_connection(device)
                if port is not None and port.switchUuid == self.uuid and port.portKey:
                    users[str(port.portKey)] = (vm, device)
        return users

    def connect(self, portgroup: DistributedVirtualPortgroup, connection, owner: str | None,
                devices: list) -> None:
        """Give a NIC being configured its port (set ``connection.portKey``).

        ``owner`` is the instance UUID of the NIC's VM and ``devices`` that
        VM's other devices: a port held by another VM's NIC, or by another
        NIC of the same VM, is refused with ResourceInUse.
        """
        taken = {key for key, (vm, _) in self.port_users().items()
                 if vm.config.instanceUuid != owner}
        for device in devices:
            port = _port_connection(device)
            if port is not None and port is not connection and port.switchUuid == self.uuid \
                    and port.portKey:
                taken.add(str(port.portKey))
        key = connection.portKey
        if key:
            port = self.ports.get(str(key))
            if port is None or port.portgroup is not portgroup:
                raise vim.fault.NotFound(
                    msg=f"Port {key} is not a port of distributed port group "
                    f"'{portgroup.name}' on switch '{self.name}'")
            if port.key in taken:
                raise vim.fault.ResourceInUse(
                    type=vim.dvs.DistributedVirtualPort, name=port.key,
                    msg=f"Port {port.key} of distributed port group '{portgroup.name}' is "
                    "in use by another network adapter")
            return
        free = next((p for p in portgroup.ports() if p.key not in taken), None)
        if free is None:  # autoExpand
            free = self.add_ports(portgroup, 1)[0]
        connection.portKey = free.key

    def _port(self, port: DvPort, users: dict) -> vim.dvs.DistributedVirtualPort:
        user = users.get(port.key)
        connectee = None
        if user is not None:
            vm, nic = user
            connectee = vim.dvs.PortConnectee(connectedEntity=vm.ref, nicKey=str(nic.key),
                                              type="vmVnic")
        return complete(vim.dvs.DistributedVirtualPort(
            key=port.key, dvsUuid=self.uuid, portgroupKey=port.portgroup.key,
            connectee=connectee, conflict=False, lastStatusChange=port.changed,
            config=vim.dvs.DistributedVirtualPort.ConfigInfo(
                name=port.name, description=port.description,
                configVersion=str(port.config_version))))

    def FetchDVPorts(self, ctx: CallContext, criteria=None):  # noqa: N802
        """The switch's ports that ``criteria`` (a DistributedVirtualSwitchPortCriteria)
        selects: by key, by port group (``inside``), connected or not."""
        with self.sim.registry.lock:
            users = self.port_users()
            ports = list(self.ports.values())
            if criteria is not None:
                if criteria.portKey:
                    wanted = set(criteria.portKey)
                    ports = [p for p in ports if p.key in wanted]
                if criteria.portgroupKey:
                    groups = set(criteria.portgroupKey)
                    inside = criteria.inside is not False
                    ports = [p for p in ports if (p.portgroup.key in groups) == inside]
                if criteria.connected is not None:
                    ports = [p for p in ports if (p.key in users) == criteria.connected]
                if criteria.uplinkPort:
                    ports = []  # no uplink ports are modelled
            return [self._port(p, users) for p in ports]

    def ReconfigureDVPort_Task(self, ctx: CallContext, port):  # noqa: N802
        """Edit ports' names and descriptions (how a Neutron backend marks a port as
        reserved for one of its ports)."""
        def work():
            specs = list(port or [])
            for spec in specs:
                if spec.operation != "edit":
                    raise vmodl.fault.NotSupported(
                        msg=f"ReconfigureDVPort_Task: operation {spec.operation!r} is not "
                        "supported by the simulator (only edit)")
                if str(spec.key) not in self.ports:
                    raise vim.fault.NotFound(msg=f"Port {spec.key} does not exist on switch "
                                             f"'{self.name}'")
            for spec in specs:
                target = self.ports[str(spec.key)]
                if spec.name is not None:
                    target.name = spec.name or None
                if spec.description is not None:
                    target.description = spec.description or None
                target.config_version += 1
                target.changed = datetime.datetime.now(datetime.timezone.utc)
            self.sim.registry.touch()

        return self.sim.tasks.start(ctx, self, "ReconfigureDVPort_Task", work)


class VmwareDistributedVirtualSwitch(DistributedVirtualSwitch):
    """A vSphere Distributed Switch, as vCenter types its own."""

    vim_type = vim.dvs.VmwareDistributedVirtualSwitch

    def _config_class(self):
        return vim.dvs.VmwareDistributedVirtualSwitch.ConfigInfo


class DistributedVirtualPortgroup(Network):
    """A port group of a distributed switch; with ``nsx_logical_switch_id``, an NSX
    segment on a vSphere Distributed Switch (``config.backingType`` nsx)."""

    vim_type = vim.dvs.DistributedVirtualPortgroup
    moid_prefix = "dvportgroup"

    def __init__(self, sim: Simulator, name: str, parent: ManagedEntity,
                 switch: DistributedVirtualSwitch, vlan: int = 0, *,
                 nsx_logical_switch_id: str | None = None,
                 nsx_segment_id: str | None = None) -> None:
        super().__init__(sim, name, parent)
        self.switch = switch
        self.vlan = vlan
        self.nsx_logical_switch_id = nsx_logical_switch_id
        self.nsx_segment_id = nsx_segment_id

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
        for port in self.ports():
            del self.switch.ports[port.key]
        for host in self.hosts:
            host.networks.remove(self)
        self.hosts = []
        self.switch.portgroups.remove(self)
        self.parent.remove_child(self)
        registry.remove(self.moid)
    def ports(self) -> list[DvPort]:
        return [p for p in self.switch.ports.values() if p.portgroup is self]

    def _get_key(self):
        return self.key

    def carries(self, backing) -> bool:
        port = getattr(backing, "port", None)
        return isinstance(backing, Dev.VirtualEthernetCard.DistributedVirtualPortBackingInfo) \
            and port is not None and port.portgroupKey == self.key \
            and port.switchUuid == self.switch.uuid

    def wire(self, nic, owner: str | None, devices: list) -> None:
        self.switch.connect(self, nic.backing.port, owner, devices)

    def _get_config(self):
        vlan = vim.dvs.VmwareDistributedVirtualSwitch.VlanIdSpec(inherited=False, vlanId=self.vlan)
        nsx = self.nsx_logical_switch_id is not None
        return vim.dvs.DistributedVirtualPortgroup.ConfigInfo(
            key=self.key, name=self.name, numPorts=len(self.ports()), type="earlyBinding",
            autoExpand=True, distributedVirtualSwitch=self.switch.ref,
            backingType="nsx" if nsx else "standard",
            logicalSwitchUuid=self.nsx_logical_switch_id, segmentId=self.nsx_segment_id,
            defaultPortConfig=vim.dvs.VmwareDistributedVirtualSwitch.VmwarePortConfigPolicy(
                vlan=vlan))


def _port_connection(device) -> Any:
    backing = getattr(device, "backing", None)
    if isinstance(backing, Dev.VirtualEthernetCard.DistributedVirtualPortBackingInfo):
        return backing.port
    return None
