"""Through Nova's REST API: boot from a Cinder vmdk volume with a second volume at boot,
a flavor with ephemeral and swap disks, a config drive with user data (read back from
the ISO on the datastore), an ISO image -- each server's VM checked in the simulator."""

from __future__ import annotations

import base64
import io
import json
import uuid

import pycdlib
import pytest
from pyVmomi import vim

from nova_vsphere_driver.ops.config_drive import build_iso
from tests.nova.vmdk_cinder import VmdkCinderFixture, create_volume

Dev = vim.vm.device
GB_KB = 1024 * 1024
USER_DATA = b"#!/bin/sh\necho booted from the config drive\n"


@pytest.fixture(scope="module")
def cinder(stack):
    return stack.useFixture(VmdkCinderFixture(stack))


def _devices(stack, sid: str, kind) -> list:
    return [d for d in stack.sim_vm(sid).config.hardware.device if isinstance(d, kind)]


def _flavor(stack, name: str, root_gb: int, ephemeral_gb: int = 0, swap: int = 0) -> str:
    return stack.api.post_flavor({"flavor": {
        "name": name, "vcpus": 1, "ram": 1024, "disk": root_gb,
        "OS-FLV-EXT-DATA:ephemeral": ephemeral_gb, "swap": swap}})["id"]


def test_boot_from_volume_with_a_second_volume(stack, cinder):
    root, data = create_volume(stack, size_gb=2), create_volume(stack, size_gb=1)
    for volume in (root, data):
        cinder.add(volume)
    body = stack.server_body("bfv", _flavor(stack, "bfv", 0), image=False,
                             cluster="cluster-a")
    body["server"]["block_device_mapping_v2"] = [
        {"boot_index": 0, "uuid": root.volume_id, "source_type": "volume",
         "destination_type": "volume"},
        {"boot_index": -1, "uuid": data.volume_id, "source_type": "volume",
         "destination_type": "volume"}]
    server = stack.wait_for_server(stack.api.post_server(body)["id"])

    disks = _devices(stack, server["id"], Dev.VirtualDisk)
    assert [d.backing.fileName for d in disks] == [root.path, data.path]
    assert disks[0].unitNumber == 0
    assert sorted(v["id"] for v in server["os-extended-volumes:volumes_attached"]) == \
        sorted([root.volume_id, data.volume_id])
    assert cinder.volumes[root.volume_id]["status"] == "in-use"

    stack.delete(server["id"])

    for volume in (root, data):
        assert stack.sim.files.exists(volume.datastore, volume.file)
        assert [d.backing.fileName for d in stack.sim_vm_by_moid(
            volume.backing_moid).config.hardware.device
            if isinstance(d, Dev.VirtualDisk)] == [volume.path]


def test_a_flavor_with_ephemeral_and_swap(stack):
    server = stack.boot("eph", _flavor(stack, "eph-swap", 1, ephemeral_gb=2, swap=512),
                        cluster="cluster-a")
    by_name = {d.backing.fileName.rsplit("/", 1)[1]: d
               for d in _devices(stack, server["id"], Dev.VirtualDisk)}
    assert by_name["ephemeral_0.vmdk"].capacityInKB == 2 * GB_KB
    assert by_name["swap.vmdk"].capacityInKB == 512 * 1024
    assert by_name[f"{server['id']}.vmdk"].unitNumber == 0
    assert placement_disk(stack, server) == 1 + 2 + 1  # swap 512 MiB rounds up to 1 GB

    stack.delete(server["id"])
    assert stack.sim_files(server["id"]) == []


def placement_disk(stack, server) -> int:
    allocations = stack.placement.get(f"/allocations/{server['id']}",
                                      version="1.28").body["allocations"]
    return sum(a["resources"].get("DISK_GB", 0) for a in allocations.values())


def test_config_drive_with_user_data(stack):
    body = stack.server_body("cfg", stack.create_flavor("cfg", 1, 1024), cluster="cluster-a")
    body["server"]["config_drive"] = True
    body["server"]["user_data"] = base64.b64encode(USER_DATA).decode()
    server = stack.wait_for_server(stack.api.post_server(body)["id"])
    assert server["config_drive"] in (True, "True")

    [cdrom] = _devices(stack, server["id"], Dev.VirtualCdrom)
    ds, rel = cdrom.backing.fileName[1:].split("] ")
    assert rel == f"{server['id']}/configdrive.iso"
    iso = pycdlib.PyCdlib()
    iso.open_fp(io.BytesIO(stack.sim.files.get(ds, rel).data))
    try:
        assert iso.pvd.volume_identifier.decode().strip() == "config-2"
        out = io.BytesIO()
        iso.get_file_from_iso_fp(out, rr_path="/openstack/latest/user_data")
        assert out.getvalue() == USER_DATA
        out = io.BytesIO()
        iso.get_file_from_iso_fp(out, rr_path="/openstack/latest/meta_data.json")
        meta = json.loads(out.getvalue())
        assert meta["uuid"] == server["id"] and meta["name"] == "cfg"
        out = io.BytesIO()
        iso.get_file_from_iso_fp(out, rr_path="/openstack/latest/network_data.json")
        [link] = json.loads(out.getvalue())["links"]
        [nic] = _devices(stack, server["id"], Dev.VirtualEthernetCard)
        assert link["ethernet_mac_address"] == nic.macAddress
    finally:
        iso.close()

    stack.delete(server["id"])
    assert not stack.sim.files.exists(ds, server["id"])


def test_an_iso_image(stack):
    image_id = str(uuid.uuid4())
    data = build_iso([("README", b"installer")], volume_label="INSTALL")
    stack.glance.create(None, {
        "id": image_id, "name": "installer-iso", "status": "active", "visibility": "public",
        "container_format": "bare", "disk_format": "iso", "size": len(data),
        "min_ram": 0, "min_disk": 0, "properties": {}}, data=io.BytesIO(data))
    server = stack.boot("iso", stack.create_flavor("iso", 1, 1024, root_gb=2),
                        image_ref=image_id, cluster="cluster-a")

    [cdrom] = _devices(stack, server["id"], Dev.VirtualCdrom)
    assert cdrom.backing.fileName.endswith(f"/{image_id}/{image_id}.iso")
    [root] = _devices(stack, server["id"], Dev.VirtualDisk)
    assert root.capacityInKB == 2 * GB_KB
    assert stack.sim_vm(server["id"]).power_state == "poweredOn"
