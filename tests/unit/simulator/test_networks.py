"""Networks in the simulator, through pyVmomi: NSX opaque networks and segment port groups,
distributed ports (FetchDVPorts, ReconfigureDVPort_Task, a NIC on a named port), switches
typed as vCenter types them, and the inventory that describes them."""

from __future__ import annotations

import pytest
from pyVmomi import vim, vmodl

from nova_vsphere_driver.simulator import Simulator, SimulatorServer, inventory
from tests.fixtures import Disconnect, connect, running_simulator
from tests.unit.simulator.helpers import PC, Dev, bind, dc1, fault_of, run, vm_spec


def _inventory() -> dict:
    data = inventory.default_inventory()
    dc = data["datacenters"][0]
    dc["opaque_networks"] = [{"name": "nsx-web", "id": "ls-web"}]
    dc["distributed_switches"][0]["portgroups"] = [
        {"name": "br-int", "ports": 2},
        {"name": "seg-db", "nsx_logical_switch_id": "ls-db", "nsx_segment_id": "/infra/db"}]
    dc["distributed_switches"].append({"name": "nvds", "type": "DistributedVirtualSwitch",
                                       "portgroups": [{"name": "tenant", "vlan": 7}]})
    return data


@pytest.fixture
def net():
    """(pyVmomi service instance, simulator) with the networks above."""
    with running_simulator(_inventory()) as server:
        si = connect(server)
        yield si, server.simulator
        Disconnect(si)


def _switch(si, name: str):
    return si.content.searchIndex.FindByInventoryPath(f"dc1/network/{name}")


def _pg(sim, name: str):
    return sim.find_entity(name, "DistributedVirtualPortgroup")


def _dvs_nic(pg, port_key: str | None = None, key: int = -102):
    return Dev.VirtualVmxnet3(key=key, addressType="generated",
                              backing=Dev.VirtualEthernetCard.DistributedVirtualPortBackingInfo(
                                  port=vim.dvs.PortConnection(switchUuid=pg.switch.uuid,
                                                              portgroupKey=pg.key,
                                                              portKey=port_key)))


def _create(si, sim, name: str, *nics, host: str = "esx-a1"):
    spec = vm_spec(name, "shared-a")
    spec.deviceChange += [Dev.VirtualDeviceSpec(operation="add", device=n) for n in nics]
    host_obj = sim.host(host)
    return dc1(si).vmFolder.CreateVM_Task(spec, bind(si, host_obj.cluster.resource_pool),
                                          bind(si, host_obj))


def _cards(vm) -> list:
    return [d for d in vm.config.hardware.device if isinstance(d, Dev.VirtualEthernetCard)]


def test_opaque_networks_and_nsx_segments_read_as_vcenter_reports_them(net):
    si, sim = net
    opaque = next(n for n in dc1(si).network if n.name == "nsx-web")
    assert isinstance(opaque, vim.OpaqueNetwork)
    assert (opaque.summary.opaqueNetworkId, opaque.summary.opaqueNetworkType) == \
        ("ls-web", "nsx.LogicalSwitch")
    assert bind(si, sim.host("esx-b4")) in opaque.host
    segment = bind(si, _pg(sim, "seg-db"))
    assert (segment.config.backingType, segment.config.logicalSwitchUuid,
            segment.config.segmentId) == ("nsx", "ls-db", "/infra/db")
    assert bind(si, _pg(sim, "br-int")).config.backingType == "standard"
    assert bind(si, _pg(sim, "br-int")).config.logicalSwitchUuid is None


def test_a_switch_is_found_only_as_the_type_vcenter_gives_it(net):
    si, sim = net
    plain = _switch(si, "nvds")
    assert type(plain) is vim.DistributedVirtualSwitch
    assert bind(si, _pg(sim, "tenant")).config.distributedVirtualSwitch == plain
    assert isinstance(_switch(si, "dvs-01"), vim.dvs.VmwareDistributedVirtualSwitch)
    def contents(ref, path):
        return si.content.propertyCollector.RetrieveContents([PC.FilterSpec(
            objectSet=[PC.ObjectSpec(obj=ref)],
            propSet=[PC.PropertySpec(type=type(ref), pathSet=[path])])])

    def read(ref, path):
        [content] = contents(ref, path)
        return content.propSet[0].val

    # A reference rebuilt with the more specific type reads nothing of the switch
    # (the in-tree driver's switch reference: no uuid for the NIC's backing).
    wrong = vim.dvs.VmwareDistributedVirtualSwitch(plain._moId, si._stub)
    assert contents(wrong, "uuid") == []
    # Its own type, or a type it extends, finds it.
    assert read(plain, "uuid") == sim.find_entity("nvds", "DistributedVirtualSwitch").uuid
    assert read(vim.ManagedEntity(plain._moId, si._stub), "name") == "nvds"


def test_nics_get_ports_of_their_group_which_grows_when_full(net):
    si, sim = net
    br_int = _pg(sim, "br-int")
    first = run(_create(si, sim, "one", _dvs_nic(br_int), _dvs_nic(br_int, key=-103)))
    keys = [c.backing.port.portKey for c in _cards(first)]
    assert sorted(keys) == sorted(p.key for p in br_int.ports())  # both of its two ports
    second = run(_create(si, sim, "two", _dvs_nic(br_int)))
    assert len(br_int.ports()) == 3  # autoExpand
    assert bind(si, br_int).config.numPorts == 3
    dvs = _switch(si, "dvs-01")
    connected = dvs.FetchDVPorts(vim.dvs.PortCriteria(portgroupKey=[br_int.key], inside=True,
                                                      connected=True))
    assert {(p.key, p.connectee.connectedEntity) for p in connected} == \
        {(keys[0], first), (keys[1], first), (_cards(second)[0].backing.port.portKey, second)}
    run(first.Destroy_Task())
    free = dvs.FetchDVPorts(vim.dvs.PortCriteria(portgroupKey=[br_int.key], connected=False))
    assert sorted(p.key for p in free) == sorted(keys)


def test_a_reserved_port_is_used_once(net):
    si, sim = net
    br_int = _pg(sim, "br-int")
    dvs = _switch(si, "dvs-01")
    port = dvs.FetchDVPorts(vim.dvs.PortCriteria(portgroupKey=[br_int.key], inside=True))[-1]
    run(dvs.ReconfigureDVPort_Task([vim.dvs.DistributedVirtualPort.ConfigSpec(
        operation="edit", key=port.key, name="neutron-port-1", description="reserved")]))
    [named] = dvs.FetchDVPorts(vim.dvs.PortCriteria(portKey=[port.key]))
    assert (named.config.name, named.config.description) == ("neutron-port-1", "reserved")
    assert named.config.configVersion == "1" and named.connectee is None
    vm = run(_create(si, sim, "holder", _dvs_nic(br_int, port.key)))
    assert _cards(vm)[0].backing.port.portKey == port.key
    taken = fault_of(_create(si, sim, "thief", _dvs_nic(br_int, port.key)))
    assert isinstance(taken, vim.fault.ResourceInUse) and taken.name == port.key
    # A NIC on another port group cannot take a port of this one, nor a port that is not.
    for nic in (_dvs_nic(_pg(sim, "seg-db"), port.key), _dvs_nic(br_int, "999")):
        assert isinstance(fault_of(_create(si, sim, "stray", nic)), vim.fault.NotFound)
    assert [v.name for v in sim.vms()] == ["holder"]
    # A clone gets a port of its own.
    clone = run(vm.CloneVM_Task(dc1(si).vmFolder, "copy", vim.vm.CloneSpec(
        location=vim.vm.RelocateSpec())))
    assert _cards(clone)[0].backing.port.portKey not in (None, port.key)
    fault = fault_of(dvs.ReconfigureDVPort_Task([vim.dvs.DistributedVirtualPort.ConfigSpec(
        operation="remove", key=port.key)]))
    assert isinstance(fault, vmodl.fault.NotSupported)


def test_one_vm_cannot_put_two_nics_on_one_port(net):
    si, sim = net
    br_int = _pg(sim, "br-int")
    key = br_int.ports()[0].key
    fault = fault_of(_create(si, sim, "greedy", _dvs_nic(br_int, key),
                             _dvs_nic(br_int, key, key=-103)))
    assert isinstance(fault, vim.fault.ResourceInUse)
    vm = run(_create(si, sim, "ok", _dvs_nic(br_int, key)))
    # Editing the NIC (same port) is not a conflict with itself.
    nic = _cards(vm)[0]
    nic.connectable = Dev.VirtualDevice.ConnectInfo(startConnected=False, connected=False)
    run(vm.ReconfigVM_Task(vim.vm.ConfigSpec(deviceChange=[
        Dev.VirtualDeviceSpec(operation="edit", device=nic)])))
    assert _cards(vm)[0].backing.port.portKey == key


def test_nic_on_an_opaque_network(net):
    si, sim = net
    nic = Dev.VirtualVmxnet3(key=-102, addressType="generated", externalId="port-1",
                             backing=Dev.VirtualEthernetCard.OpaqueNetworkBackingInfo(
                                 opaqueNetworkId="ls-web", opaqueNetworkType="nsx.LogicalSwitch"))
    vm = run(_create(si, sim, "web", nic))
    [card] = _cards(vm)
    assert (card.backing.opaqueNetworkId, card.externalId) == ("ls-web", "port-1")
    assert [n.name for n in vm.network] == ["nsx-web"]
    nic.backing.opaqueNetworkId = "ls-unknown"
    fault = fault_of(_create(si, sim, "lost", nic))
    assert isinstance(fault, vim.fault.NotFound) and "ls-unknown" in fault.msg
    # A running VM does not move to a host without its opaque network.
    run(vm.PowerOnVM_Task())
    b1 = sim.host("esx-b1")
    b1.networks = [n for n in b1.networks if n.name != "nsx-web"]
    fault = fault_of(vm.RelocateVM_Task(vim.vm.RelocateSpec(
        host=bind(si, b1), pool=bind(si, sim.cluster("cluster-b").resource_pool),
        datastore=bind(si, sim.datastores["shared-b"]))))
    assert isinstance(fault, vim.fault.CannotAccessNetwork) and "ls-web" in fault.backing


@pytest.mark.parametrize("change,error", [
    ({"type": "OtherSwitch"}, "switch type 'OtherSwitch'"),
    ({"portgroups": [{"name": "x", "ports": -1}]}, "ports must be"),
    ({"portgroups": [{"name": "x", "ports": "many"}]}, "ports must be"),
])
def test_inventory_errors_name_the_mistake(change, error):
    data = inventory.default_inventory()
    data["datacenters"][0]["distributed_switches"][0].update(change)
    with pytest.raises(inventory.InventoryError, match=error):
        Simulator(data)
    data = inventory.default_inventory()
    data["datacenters"][0]["opaque_networks"] = [{"name": "no-id"}]
    with pytest.raises(inventory.InventoryError, match="opaque_networks.*'id'"):
        Simulator(data)


def test_default_inventory_port_groups_have_ports(sim):
    br_int = _pg(sim, "br-int")
    assert len(br_int.ports()) == 8
    assert type(br_int.switch.ref) is vim.dvs.VmwareDistributedVirtualSwitch


def test_networks_ports_and_reservations_survive_a_restart(tmp_path):
    server = SimulatorServer(Simulator(_inventory()), state_file=str(tmp_path / "state.json"),
                             save_interval=3600)
    with server:
        si, sim = connect(server), server.simulator
        br_int = _pg(sim, "br-int")
        dvs = _switch(si, "dvs-01")
        run(dvs.ReconfigureDVPort_Task([vim.dvs.DistributedVirtualPort.ConfigSpec(
            operation="edit", key=br_int.ports()[1].key, name="neutron-port-9")]))
        held = br_int.ports()[0].key
        vm = run(_create(si, sim, "held", _dvs_nic(br_int, held)))
        server.restart()
        si, sim = connect(server), server.simulator
        br_int = _pg(sim, "br-int")
        dvs = _switch(si, "dvs-01")
        ports = {p.key: p for p in dvs.FetchDVPorts(vim.dvs.PortCriteria(
            portgroupKey=[br_int.key], inside=True))}
        assert ports[br_int.ports()[1].key].config.name == "neutron-port-9"
        assert ports[held].connectee.connectedEntity._moId == vm._moId
        assert type(_switch(si, "nvds")) is vim.DistributedVirtualSwitch
        opaque = next(n for n in dc1(si).network if n.name == "nsx-web")
        assert opaque.summary.opaqueNetworkId == "ls-web"
        # The next port key is a new one, and the held port is still refused.
        assert isinstance(fault_of(_create(si, sim, "thief", _dvs_nic(br_int, held))),
                          vim.fault.ResourceInUse)
        run(_create(si, sim, "new", _dvs_nic(br_int), _dvs_nic(br_int, key=-103)))
        keys = [p.key for p in br_int.ports()]
        assert len(keys) == len(set(keys)) == 3
