"""Config drives through VSphereDriver.spawn: the ISO in the instance's folder, read back
from the simulator's datastore with pycdlib, on a CD-ROM drive before power-on."""

from __future__ import annotations

import io
import json

import pycdlib
import pytest
from nova import exception
from nova.network import model as network_model

from tests.driver.conftest import USER_DATA, config_drive_instance, vmdk_image
from tests.driver.guest_support import vifs
from tests.unit.simulator.helpers import Dev


def _network_info() -> network_model.NetworkInfo:
    """One port on br-int with an address, as Neutron would give it."""
    subnet = network_model.Subnet(
        cidr="10.0.0.0/24", gateway=network_model.IP(address="10.0.0.1", type="gateway"),
        ips=[network_model.FixedIP(address="10.0.0.5")])
    [vif] = vifs("br-int")
    vif["network"]["subnets"] = [subnet]
    return network_model.NetworkInfo([vif])


def _cdroms(sim, instance) -> list:
    return [d for d in sim.vm(instance.uuid).config.hardware.device
            if isinstance(d, Dev.VirtualCdrom)]


def read_iso(sim, ds_path: str) -> pycdlib.PyCdlib:
    ds, rel = ds_path[1:].split("] ")
    iso = pycdlib.PyCdlib()
    iso.open_fp(io.BytesIO(sim.files.get(ds, rel).data))
    return iso


def iso_file(iso: pycdlib.PyCdlib, path: str) -> bytes:
    out = io.BytesIO()
    iso.get_file_from_iso_fp(out, rr_path=path)
    return out.getvalue()


def test_config_drive_holds_the_metadata_and_user_data(vsphere, ctx, node_a,
                                                         metadata_services):
    drv, server = vsphere
    sim = server.simulator
    instance = config_drive_instance(ctx, node_a)
    network_info = _network_info()

    drv.spawn(ctx, instance, None, [("/etc/motd", b"hello")], "s3cret", {},
              network_info=network_info)

    [cdrom] = _cdroms(sim, instance)
    vm = sim.vm(instance.uuid)
    ds = vm.config.files.vmPathName[1:].split("]")[0]
    path = f"[{ds}] {instance.uuid}/configdrive.iso"
    assert cdrom.backing.fileName == path
    assert isinstance(cdrom.backing, Dev.VirtualCdrom.IsoBackingInfo)
    assert cdrom.connectable.startConnected is True
    assert isinstance(next(d for d in vm.config.hardware.device
                           if d.key == cdrom.controllerKey), Dev.VirtualIDEController)
    assert vm.power_state == "poweredOn"

    iso = read_iso(sim, path)
    try:
        assert iso.pvd.volume_identifier.decode().strip() == "config-2"
        meta = json.loads(iso_file(iso, "/openstack/latest/meta_data.json"))
        assert meta["uuid"] == instance.uuid
        assert meta["hostname"].split(".")[0] == "cfgdrive"
        assert meta["meta"] == {"role": "web"}
        assert meta["admin_pass"] == "s3cret"
        [injected] = meta["files"]
        assert injected["path"] == "/etc/motd"
        assert iso_file(iso, "/openstack" + injected["content_path"]) == b"hello"
        assert iso_file(iso, "/openstack/latest/user_data") == USER_DATA
        network = json.loads(iso_file(iso, "/openstack/latest/network_data.json"))
        assert [link["ethernet_mac_address"] for link in network["links"]] == \
            [network_info[0]["address"]]
        assert [n["ip_address"] for n in network["networks"]] == ["10.0.0.5"]
        json.loads(iso_file(iso, "/openstack/latest/vendor_data.json"))
        json.loads(iso_file(iso, "/openstack/latest/vendor_data2.json"))
        ec2 = json.loads(iso_file(iso, "/ec2/latest/meta-data.json"))
        assert ec2["hostname"].startswith("cfgdrive")
        assert iso_file(iso, "/ec2/latest/user-data") == USER_DATA
    finally:
        iso.close()

    drv.destroy(ctx, instance, network_info)

    assert not sim.files.exists(ds, instance.uuid)


@pytest.mark.parametrize("why", ["force_config_drive", "img_config_drive"])
def test_config_drive_when_forced_or_mandatory(vsphere, ctx, node_a, glance, conf_overrides,
                                               metadata_services, why):
    drv, server = vsphere
    sim = server.simulator
    image = None
    if why == "force_config_drive":
        conf_overrides(None, force_config_drive=True)
    else:
        image = vmdk_image(glance, ctx, b"KDMV" + b"\0" * 4096,
                           img_config_drive="mandatory")
    instance = config_drive_instance(ctx, node_a, config_drive="",
                                     image_ref=image.id if image else "")
    drv.spawn(ctx, instance, image, [], None, {}, network_info=[])
    [cdrom] = _cdroms(sim, instance)
    assert cdrom.backing.fileName.endswith(f"{instance.uuid}/configdrive.iso")


def test_no_config_drive_unless_asked(vsphere, ctx, node_a, metadata_services):
    drv, server = vsphere
    instance = config_drive_instance(ctx, node_a, config_drive="")
    drv.spawn(ctx, instance, None, [], None, {}, network_info=[])
    assert _cdroms(server.simulator, instance) == []


def test_a_vfat_config_drive_is_refused_and_leaves_nothing(vsphere, ctx, node_a, conf_overrides,
                                                          metadata_services):
    drv, server = vsphere
    sim = server.simulator
    conf_overrides(None, config_drive_format="vfat")
    instance = config_drive_instance(ctx, node_a)
    with pytest.raises(exception.ConfigDriveUnsupportedFormat):
        drv.spawn(ctx, instance, None, [], None, {}, network_info=[])
    assert not drv.instance_exists(instance)
    assert sim.request_counts.get("CreateVM_Task", 0) == 0


@pytest.mark.parametrize("failing", ["CreateVM_Task", "PowerOnVM_Task"])
def test_a_failed_spawn_removes_the_config_drive(vsphere, ctx, node_a, metadata_services,
                                                 failing):
    drv, server = vsphere
    sim = server.simulator
    instance = config_drive_instance(ctx, node_a)
    sim.faults.fail_next(failing, "InsufficientResourcesFault")
    with pytest.raises(exception.ComputeResourcesUnavailable):
        drv.spawn(ctx, instance, None, [], None, {}, network_info=[])
    assert not drv.instance_exists(instance)
    for ds in sim.datastores:
        assert not sim.files.exists(ds, instance.uuid)


def test_warm_spawn_with_a_config_drive_stays_within_ten_soap_requests(
        vsphere, ctx, node_a, glance, metadata_services):
    drv, server = vsphere
    sim = server.simulator
    image = vmdk_image(glance, ctx, b"KDMV" + b"\0" * (1024 * 1024))
    first = config_drive_instance(ctx, node_a, image_ref=image.id)
    drv.spawn(ctx, first, image, [], None, {}, network_info=vifs("br-int"))
    second = config_drive_instance(ctx, node_a, image_ref=image.id)
    before = sim.request_count

    drv.spawn(ctx, second, image, [], None, {}, network_info=vifs("br-int"))

    assert sim.request_count - before <= 10
    assert len(_cdroms(sim, second)) == 1


def test_the_config_drive_stays_through_rescue_and_moves_with_a_migration(
        vsphere, ctx, node_a, glance, metadata_services):
    from tests.driver.conftest import node_of
    from tests.driver.test_migrate import _flavor, _resize

    drv, server = vsphere
    sim = server.simulator
    image = vmdk_image(glance, ctx, b"KDMV" + b"\0" * (1024 * 1024))
    instance = config_drive_instance(ctx, node_a, image_ref=image.id)
    drv.spawn(ctx, instance, image, [], None, {}, network_info=[])
    [before] = _cdroms(sim, instance)
    content = read_iso(sim, before.backing.fileName)
    user_data = iso_file(content, "/openstack/latest/user_data")
    content.close()

    drv.power_off(instance)
    drv.rescue(ctx, instance, [], image, None, {})
    assert [c.backing.fileName for c in _cdroms(sim, instance)] == [before.backing.fileName]
    drv.unrescue(ctx, instance)
    assert [c.backing.fileName for c in _cdroms(sim, instance)] == [before.backing.fileName]

    # To cluster-b: the VM's folder moves to one of its datastores, the drive with it.
    _resize(drv, ctx, instance, _flavor(2, 4096, 10), node_of(drv, "cluster-b"))

    [after] = _cdroms(sim, instance)
    vm = sim.vm(instance.uuid)
    assert vm.cluster.name == "cluster-b"
    ds = vm.config.files.vmPathName[1:].split("]")[0]
    assert after.backing.fileName == f"[{ds}] {instance.uuid}/configdrive.iso"
    assert after.backing.fileName != before.backing.fileName
    moved = read_iso(sim, after.backing.fileName)
    try:
        assert iso_file(moved, "/openstack/latest/user_data") == user_data == USER_DATA
    finally:
        moved.close()
