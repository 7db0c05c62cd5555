"""Cinder VMDK volumes through Nova's REST API (os-volume_attachments): Nova's compute manager
asks the driver for its connector, gets Cinder's 'vmdk' connection_info (the volume's
shadow VM, made here in the simulator as Cinder's VMware driver makes it) and attaches,
detaches, and deletes servers with volumes attached."""

from __future__ import annotations

import pytest
from pyVmomi import vim

from tests.nova.vmdk_cinder import VmdkCinderFixture, create_volume
from tests.unit.simulator.helpers import wait_until

GIB = 1024
Dev = vim.vm.device


@pytest.fixture(scope="module")
def cinder(stack):
    """Nova's Cinder fixture answering with 'vmdk' connection_info, for the module's stack."""
    return stack.useFixture(VmdkCinderFixture(stack))


def _disks(vm) -> list:
    return [d for d in vm.config.hardware.device if isinstance(d, Dev.VirtualDisk)]


def _extra(vm) -> dict:
    return {o.key: o.value for o in vm.config.extraConfig or []}


def _volume_file_exists(stack, volume) -> bool:
    return stack.sim.files.exists(volume.datastore, volume.file)


def _backing_disks(stack, volume) -> list[str]:
    return [d.backing.fileName for d in _disks(stack.sim_vm_by_moid(volume.backing_moid))]


def _wait(predicate, what: str, timeout: float = 30.0) -> None:
    wait_until(predicate, timeout=timeout, interval=0.05, what=what)


def _attach(stack, cinder, sid: str, volume) -> dict:
    """POST os-volume_attachments, then wait for Nova to complete the attachment.

    From microversion 2.101 the API answers 202 without a body and the
    compute manager attaches in the background; it completes the Cinder
    attachment (the volume goes "in-use") once the driver has attached it.
    """
    cinder.add(volume)
    assert cinder.volumes[volume.volume_id]["status"] == "available"
    response = stack.api.post_server_volume(sid, {"volumeAttachment": {
        "volumeId": volume.volume_id}})
    assert response.status == 202, response
    _wait(lambda: cinder.volumes[volume.volume_id]["status"] == "in-use" or
          _attach_failed(stack, sid),
          f"volume {volume.volume_id} is {cinder.volumes[volume.volume_id]['status']}, "
          f"not in-use, on server {sid}")
    failed = _attach_failed(stack, sid)
    assert not failed, f"attaching volume {volume.volume_id} failed: {failed}"
    return stack.api.get_server_volume(sid, volume.volume_id)


def _attach_failed(stack, sid: str) -> str | None:
    """The error of the server's last volume attach action, if it failed."""
    for action in stack.api.get_instance_actions(sid):
        if action["action"] != "attach_volume":
            continue
        details = stack.api.get_instance_action_details(sid, action["request_id"])
        for event in details.get("events", []):
            if event.get("result") == "Error":
                return f"{event['event']}: {event.get('traceback') or 'no traceback'}"
    return None


def _wait_detached(stack, sid: str, volume) -> None:
    """Detach is a cast too: wait until Nova no longer lists the volume on the server."""
    _wait(lambda: all(a["volumeId"] != volume.volume_id
                      for a in stack.api.get_server_volumes(sid)),
          f"volume {volume.volume_id} is still attached to server {sid}")


def test_attach_then_detach_a_volume(stack, cinder):
    sid = stack.boot("vol-1", stack.create_flavor("vol", 1, 1 * GIB), cluster="cluster-a")["id"]
    vm = stack.sim_vm(sid)
    [root] = _disks(vm)
    volume = create_volume(stack, size_gb=2)

    attachment = _attach(stack, cinder, sid, volume)

    assert attachment["volumeId"] == volume.volume_id
    disks = _disks(vm)
    assert [d.backing.fileName for d in disks] == [root.backing.fileName, volume.path]
    attached = disks[1]
    # The volume's own file (nothing copied), on the root disk's controller.
    assert (attached.backing.uuid, attached.capacityInKB) == \
        (volume.disk_uuid, volume.capacity_kb)
    assert attached.controllerKey == root.controllerKey
    assert _extra(vm)[f"volume-{volume.volume_id}"] == volume.disk_uuid
    assert vm.power_state == "poweredOn"  # hot-added
    # Nova gave Cinder the driver's connector: the VM Cinder should keep the volume near.
    connector = cinder.connectors[volume.volume_id]
    assert connector["instance"] == vm.moid
    assert connector["connection_capabilities"] == [
        f"vmware_service_instance_uuid:{stack.sim.instance_uuid}"]
    assert [a["volumeId"] for a in stack.api.get_server_volumes(sid)] == [volume.volume_id]

    stack.api.delete_server_volume(sid, volume.volume_id)
    _wait_detached(stack, sid, volume)

    assert [d.backing.fileName for d in _disks(vm)] == [root.backing.fileName]
    assert f"volume-{volume.volume_id}" not in _extra(vm)
    # The file is Cinder's: still there, still its shadow VM's disk.
    assert _volume_file_exists(stack, volume)
    assert _backing_disks(stack, volume) == [volume.path]
    assert cinder.attached_to(volume.volume_id) == []
    assert cinder.volumes[volume.volume_id]["status"] == "available"
    assert stack.wait_for_server(sid)["status"] == "ACTIVE"


def test_deleting_a_server_keeps_its_attached_volumes(stack, cinder):
    sid = stack.boot("vol-2", stack.create_flavor("vol-del", 1, 1 * GIB),
                     cluster="cluster-a")["id"]
    vm = stack.sim_vm(sid)
    volumes = [create_volume(stack), create_volume(stack, datastore="shared-a")]
    for volume in volumes:
        _attach(stack, cinder, sid, volume)
    assert [d.backing.fileName for d in _disks(vm)][1:] == [v.path for v in volumes]

    stack.delete(sid)

    # Destroy_Task deletes every disk of the VM: the driver took the volumes off first.
    assert stack.sim_vm(sid) is None and stack.sim_files(sid) == []
    for volume in volumes:
        assert _volume_file_exists(stack, volume), volume.path
        assert _backing_disks(stack, volume) == [volume.path]
        assert cinder.attached_to(volume.volume_id) == []

    # A volume survives to be attached again, to another server.
    sid2 = stack.boot("vol-3", stack.create_flavor("vol-again", 1, 1 * GIB),
                      cluster="cluster-a")["id"]
    _attach(stack, cinder, sid2, volumes[0])
    assert volumes[0].path in [d.backing.fileName for d in _disks(stack.sim_vm(sid2))]
