"""Neutron's vSphere port bindings and the image's adapter model, through VSphereDriver,
asserted in the simulator behind SOAP: distributed port groups by name or by switch UUID
and key, ports a Neutron backend reserved, NSX opaque networks and segment port groups,
switches vCenter types as ``DistributedVirtualSwitch``."""

from __future__ import annotations

import uuid

import pytest
from nova import exception, objects
from nova.network import model as network_model
from pyVim.task import WaitForTask
from pyVmomi import vim

from nova_vsphere_driver import driver as vsphere_driver
from nova_vsphere_driver.simulator import inventory
from tests.driver.conftest import configure, make_instance, node_of, vmdk_image
from tests.driver.guest_support import Dev, nics, sim_vm, spawn
from tests.fixtures import Disconnect, connect, running_simulator

#: An NSX-T logical switch seen as an opaque network, one seen as a segment port group of
#: dvs-01 (NSX on a vSphere Distributed Switch), and a second switch that vCenter types
#: as a plain DistributedVirtualSwitch (NSX's N-VDS, third-party switches).
LS_WEB = "7f3c0c4e-web0-4b1a-9c55-000000000001"
LS_DB = "7f3c0c4e-db00-4b1a-9c55-000000000002"


def _inventory() -> dict:
    data = inventory.default_inventory()
    dc = data["datacenters"][0]
    dc["opaque_networks"] = [{"name": "nsx-web", "id": LS_WEB, "type": "nsx.LogicalSwitch"}]
    dc["distributed_switches"][0]["portgroups"].append(
        {"name": "seg-db", "nsx_logical_switch_id": LS_DB,
         "nsx_segment_id": "/infra/segments/db"})
    dc["distributed_switches"].append(
        {"name": "nvds-01", "type": "DistributedVirtualSwitch",
         "portgroups": [{"name": "tenant-7", "vlan": 7, "ports": 2},
                        {"name": "vxw-dvs-22-virtualwire-89-sid-5008-app-net"}]})
    return data


@pytest.fixture
def net_sim():
    with running_simulator(_inventory(), tls=True) as server:
        yield server


@pytest.fixture
def drv(net_sim, conf_overrides, nova_db):
    configure(conf_overrides, net_sim, clusters=("cluster-a",))
    conf_overrides("vsphere_drs", poll_interval=3600, balance_interval=0)
    driver = vsphere_driver.VSphereDriver(None)
    driver.init_host("compute-1")
    yield driver
    driver.cleanup_host("compute-1")


@pytest.fixture
def node(drv) -> str:
    return node_of(drv, "cluster-a")


def _vif(index: int, vif_type: str | None = None, details: dict | None = None,
         bridge: str | None = None, network_id: str | None = None) -> network_model.VIF:
    return network_model.VIF(
        id=str(uuid.uuid4()), address=f"fa:16:3e:00:02:{index:02x}", type=vif_type,
        details=details or {},
        network=network_model.Network(id=network_id or f"net-{index}", bridge=bridge,
                                      label=f"net-{index}"))


def _portgroup(sim, name: str):
    return sim.find_entity(name, "DistributedVirtualPortgroup")


def _card(sim, instance, vif):
    return next(c for c in nics(sim, instance) if c.macAddress == vif["address"])


def _image(**properties) -> objects.ImageMeta:
    return objects.ImageMeta.from_dict({"id": str(uuid.uuid4()), "properties": properties})


class Neutron:
    """What a Neutron vSphere backend does on the switch, through pyVmomi."""

    def __init__(self, server) -> None:
        self.si = connect(server)
        self.sim = server.simulator

    def close(self) -> None:
        Disconnect(self.si)

    def switch(self, name: str):
        obj = self.sim.find_entity(name, "DistributedVirtualSwitch")
        return self.si.content.searchIndex.FindByInventoryPath(
            f"{obj.datacenter().name}/network/{name}")

    def reserve_port(self, switch: str, portgroup: str, neutron_port: str) -> str:
        """Book a free port of the port group for a Neutron port (its name): its key."""
        dvs = self.switch(switch)
        key = _portgroup(self.sim, portgroup).key
        free = [p for p in dvs.FetchDVPorts(vim.dvs.PortCriteria(
            portgroupKey=[key], inside=True, connected=False)) if not p.config.name]
        port = free[-1]  # not the first: the driver must use this one, not any free one
        WaitForTask(dvs.ReconfigureDVPort_Task([vim.dvs.DistributedVirtualPort.ConfigSpec(
            operation="edit", key=port.key, name=neutron_port)]))
        return port.key

    def port(self, switch: str, key: str):
        [port] = self.switch(switch).FetchDVPorts(vim.dvs.PortCriteria(portKey=[key]))
        return port


@pytest.fixture
def neutron(net_sim):
    client = Neutron(net_sim)
    yield client
    client.close()


# -- vif type dvs ----------------------------------------------------------------------------


def test_dvs_binding_by_port_group_name_gets_a_port_of_that_group(drv, ctx, node, net_sim):
    sim = net_sim.simulator
    vif = _vif(0, "dvs", {"dvs_port_group_name": "public"}, bridge="ignored-bridge")
    instance = make_instance(node)
    spawn(drv, ctx, instance, network_info=[vif])
    card = _card(sim, instance, vif)
    public = _portgroup(sim, "public")
    assert isinstance(card, Dev.VirtualVmxnet3)
    assert (card.backing.port.portgroupKey, card.backing.port.switchUuid) == \
        (public.key, public.switch.uuid)
    # The switch gave the NIC one of the group's ports.
    assert card.backing.port.portKey in {p.key for p in public.ports()}
    assert [n.name for n in sim_vm(sim, instance).networks] == ["public"]


def test_dvs_binding_by_switch_uuid_and_key_uses_the_port_neutron_reserved(
        drv, ctx, node, net_sim, neutron):
    sim = net_sim.simulator
    br_int = _portgroup(sim, "br-int")
    vif = _vif(0, "dvs", bridge="br-int")
    key = neutron.reserve_port("dvs-01", "br-int", vif["id"])
    vif["details"] = {"dvs_id": br_int.switch.uuid, "pg_id": br_int.key, "dvs_port_key": key}
    instance = make_instance(node)
    spawn(drv, ctx, instance, network_info=[vif])
    card = _card(sim, instance, vif)
    assert (card.backing.port.switchUuid, card.backing.port.portgroupKey,
            card.backing.port.portKey) == (br_int.switch.uuid, br_int.key, key)
    # As Neutron sees the port on the switch: connected to the VM's NIC.
    port = neutron.port("dvs-01", key)
    assert port.config.name == vif["id"]
    assert (port.connectee.connectedEntity._moId, port.connectee.nicKey) == \
        (sim_vm(sim, instance).moid, str(card.key))
    drv.destroy(ctx, instance, [vif])
    assert neutron.port("dvs-01", key).connectee is None  # free for the next user


def test_a_reserved_port_held_by_another_vm_fails_the_spawn_and_leaves_nothing(
        drv, ctx, node, net_sim, neutron):
    sim = net_sim.simulator
    br_int = _portgroup(sim, "br-int")
    first = _vif(0, "dvs", bridge="br-int")
    key = neutron.reserve_port("dvs-01", "br-int", first["id"])
    first["details"] = {"dvs_port_group_name": "br-int", "dvs_port_key": key}
    holder = make_instance(node)
    spawn(drv, ctx, holder, network_info=[first])
    second = _vif(1, "dvs", {"dvs_id": br_int.switch.uuid, "pg_id": br_int.key,
                             "dvs_port_key": key})
    instance = make_instance(node)
    vms = len(sim.vms())
    with pytest.raises(exception.NovaException, match="in use"):
        spawn(drv, ctx, instance, network_info=[second])
    assert len(sim.vms()) == vms
    assert not drv.instance_exists(instance)
    assert not sim.files.exists("shared-a", instance.uuid) and \
        not sim.files.exists("shared-all", instance.uuid)
    assert instance.uuid not in drv.services.drs.claims(drv.services.nodes[node].moref)
    assert neutron.port("dvs-01", key).connectee.connectedEntity._moId == \
        sim_vm(sim, holder).moid


def test_dvs_binding_to_a_group_or_switch_the_cluster_lacks_is_network_not_found(
        drv, ctx, node, net_sim):
    sim = net_sim.simulator
    br_int = _portgroup(sim, "br-int")
    for details in ({"dvs_port_group_name": "no-such-group"},
                    {"dvs_id": "00 11 22", "pg_id": br_int.key},
                    {"dvs_id": br_int.switch.uuid, "pg_id": "dvportgroup-404"}):
        with pytest.raises(exception.NetworkNotFoundForBridge):
            spawn(drv, ctx, make_instance(node), network_info=[_vif(0, "dvs", details)])
    assert not [vm for vm in sim.vms() if vm.config.managedBy]


def test_dvs_binding_by_bridge_finds_nsx_v_virtual_wires(drv, ctx, node, net_sim):
    sim = net_sim.simulator
    vif = _vif(0, "dvs", bridge="app-net")
    instance = make_instance(node)
    spawn(drv, ctx, instance, network_info=[vif])
    wire = _portgroup(sim, "vxw-dvs-22-virtualwire-89-sid-5008-app-net")
    assert _card(sim, instance, vif).backing.port.portgroupKey == wire.key


def test_port_group_of_a_switch_vcenter_types_as_distributed_virtual_switch(
        drv, ctx, node, net_sim):
    """vCenter reports NSX's N-VDS and third-party switches as DistributedVirtualSwitch; a
    reference rebuilt as VmwareDistributedVirtualSwitch is not found."""
    sim = net_sim.simulator
    tenant = _portgroup(sim, "tenant-7")
    assert tenant.switch.ref._wsdlName == "DistributedVirtualSwitch"
    by_name = _vif(0, "dvs", {"dvs_port_group_name": "tenant-7"})
    by_bridge = _vif(1, bridge="tenant-7")  # any binding type: the bridge names the group
    instance = make_instance(node)
    spawn(drv, ctx, instance, network_info=[by_name, by_bridge])
    for vif in (by_name, by_bridge):
        port = _card(sim, instance, vif).backing.port
        assert (port.switchUuid, port.portgroupKey) == (tenant.switch.uuid, tenant.key)
    # Two ports, one each; the group grew a port for the next NIC (autoExpand).
    assert len({_card(sim, instance, v).backing.port.portKey for v in (by_name, by_bridge)}) == 2
    third = _vif(2, "dvs", {"dvs_port_group_name": "tenant-7"})
    drv.attach_interface(ctx, instance, None, third)
    assert len(tenant.ports()) == 3


# -- vif type ovs with NSX --------------------------------------------------------------------


def test_nsx_logical_switch_as_an_opaque_network(drv, ctx, node, net_sim):
    sim = net_sim.simulator
    vif = _vif(0, "ovs", {network_model.VIF_DETAILS_OVS_HYBRID_PLUG: False,
                          "nsx-logical-switch-id": LS_WEB}, bridge="nsx-managed")
    instance = make_instance(node)
    spawn(drv, ctx, instance, network_info=[vif])
    card = _card(sim, instance, vif)
    assert isinstance(card.backing, Dev.VirtualEthernetCard.OpaqueNetworkBackingInfo)
    assert (card.backing.opaqueNetworkId, card.backing.opaqueNetworkType) == \
        (LS_WEB, "nsx.LogicalSwitch")
    assert card.externalId == vif["id"]  # NSX attaches the NIC to the port by it
    assert [n.name for n in sim_vm(sim, instance).networks] == ["nsx-web"]


def test_nsx_logical_switch_as_a_segment_port_group(drv, ctx, node, net_sim):
    sim = net_sim.simulator
    vif = _vif(0, "ovs", {"nsx-logical-switch-id": LS_DB})
    # Without the id in the binding, the Neutron network's id is the logical switch's.
    by_network = _vif(1, "ovs", network_id=LS_WEB)
    instance = make_instance(node)
    spawn(drv, ctx, instance, network_info=[vif, by_network])
    card = _card(sim, instance, vif)
    segment = _portgroup(sim, "seg-db")
    assert (card.backing.port.portgroupKey, card.backing.port.switchUuid) == \
        (segment.key, segment.switch.uuid)
    assert card.externalId == vif["id"]
    other = _card(sim, instance, by_network)
    assert other.backing.opaqueNetworkId == LS_WEB and other.externalId == by_network["id"]
    with pytest.raises(exception.NetworkNotFoundForBridge, match="no-such-switch"):
        drv.attach_interface(ctx, instance, None,
                             _vif(2, "ovs", {"nsx-logical-switch-id": "no-such-switch"}))


# -- the image's hw_vif_model -----------------------------------------------------------------


@pytest.mark.parametrize("model,device", [
    ("e1000", Dev.VirtualE1000), ("e1000e", Dev.VirtualE1000e),
    ("pcnet", Dev.VirtualPCNet32), ("vmxnet3", Dev.VirtualVmxnet3)])
def test_hw_vif_model_chooses_the_adapter_at_spawn_and_attach(drv, ctx, node, net_sim, model,
                                                              device, glance):
    sim = net_sim.simulator
    image = vmdk_image(glance, ctx, b"KDMV" + b"\0" * 1024, hw_vif_model=model)
    instance = make_instance(node, image_ref=image.id)
    first = _vif(0, bridge="br-int")
    spawn(drv, ctx, instance, image_meta=image, network_info=[first])
    second = _vif(1, "dvs", {"dvs_port_group_name": "public"})
    drv.attach_interface(ctx, instance, image, second)
    assert [type(_card(sim, instance, v)) for v in (first, second)] == [device, device]


def test_default_vif_model_option(drv, ctx, node, net_sim, conf_overrides):
    sim = net_sim.simulator
    conf_overrides("vsphere", default_vif_model="e1000")
    instance = make_instance(node)
    vif = _vif(0, bridge="br-int")
    spawn(drv, ctx, instance, network_info=[vif])
    assert type(_card(sim, instance, vif)) is Dev.VirtualE1000


def test_a_vif_model_vsphere_lacks_is_refused_before_anything_is_made(drv, ctx, node,
                                                                      net_sim):
    sim = net_sim.simulator
    image = _image(hw_vif_model="virtio")
    instance = make_instance(node)
    vms = len(sim.vms())
    with pytest.raises(exception.ImageUnacceptable, match="virtio.*vmxnet3"):
        drv.spawn(ctx, instance, image, [], None, {}, network_info=[_vif(0, bridge="br-int")])
    assert len(sim.vms()) == vms
    assert instance.uuid not in drv.services.drs.claims(drv.services.nodes[node].moref)
    running = make_instance(node)
    spawn(drv, ctx, running, network_info=[])
    with pytest.raises(exception.ImageUnacceptable, match="rtl8139"):
        drv.attach_interface(ctx, running, _image(hw_vif_model="rtl8139"),
                             _vif(1, bridge="br-int"))
    assert nics(sim, running) == []
