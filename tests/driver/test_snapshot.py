"""Instance snapshots through VSphereDriver.snapshot into Nova's (fake) Glance.

Asserted behind the API: the bytes Glance stores are the bytes the
simulator served for the root disk (a valid stream-optimized VMDK holding
the disk's data), the VM is left without snapshots and the export lease
ended, whatever failed.
"""

from __future__ import annotations

import hashlib
import io
import uuid

import pytest
from nova import exception, objects
from nova.compute import task_states

from nova_vsphere_driver.simulator.objects.nfc_lease import HttpNfcLease
from tests.driver.conftest import make_instance
from tests.fixtures import connect
from tests.unit.simulator import stream_vmdk
from tests.unit.simulator.helpers import bind, run

MB = 1024 * 1024
#: Image data without zero grains: every byte is checked on the way back.
IMAGE_DATA = bytes(range(1, 256)) * (MB // 255 + 1) * 2



class TaskStates:
    """Records update_task_state calls, as ComputeManager._snapshot_instance makes them."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str]] = []

    def __call__(self, task_state, expected_state=task_states.IMAGE_SNAPSHOT) -> None:
        self.calls.append((task_state, expected_state))


EXPECTED_STATES = [(task_states.IMAGE_PENDING_UPLOAD, task_states.IMAGE_SNAPSHOT),
                   (task_states.IMAGE_UPLOADING, task_states.IMAGE_PENDING_UPLOAD)]


def _snapshot_image(glance, ctx, instance) -> str:
    """The image Nova's API creates before asking the compute host for its bits."""
    image_id = str(uuid.uuid4())
    glance.create(ctx, {"id": image_id, "name": f"snap-of-{instance.display_name}",
                        "status": "queued", "properties": {"image_type": "snapshot",
                                                           "instance_uuid": instance.uuid}})
    return image_id


def _boot_from_image(drv, ctx, glance, node, **kw):
    image_id = str(uuid.uuid4())
    glance.create(None, {"id": image_id, "name": "base", "status": "active",
                         "disk_format": "vmdk", "container_format": "bare",
                         "size": len(IMAGE_DATA), "properties": {}},
                  data=io.BytesIO(IMAGE_DATA))
    meta = objects.ImageMeta.from_dict(glance.show(ctx, image_id))
    instance = make_instance(node, image_ref=image_id, root_gb=1, **kw)
    drv.spawn(ctx, instance, meta, [], None, {}, network_info=[])
    return instance


def _leases(sim) -> list[HttpNfcLease]:
    return list(sim.registry.find(HttpNfcLease))


def test_snapshot_of_a_running_instance_uploads_its_root_disk(vsphere, ctx, node_a, glance):
    drv, server = vsphere
    sim = server.simulator
    instance = _boot_from_image(drv, ctx, glance, node_a)
    image_id = _snapshot_image(glance, ctx, instance)
    states = TaskStates()

    drv.snapshot(ctx, instance, image_id, states)

    assert states.calls == EXPECTED_STATES
    data = glance._imagedata[image_id]
    image = glance.show(ctx, image_id)
    assert image["size"] == len(data) and image["status"] == "active"
    assert image["disk_format"] == "vmdk" and image["container_format"] == "bare"
    props = image["properties"]
    assert props["vmware_disktype"] == "streamOptimized"
    assert props["vmware_adaptertype"] == "lsiLogic"
    assert props["vmware_ostype"] == "otherGuest64"
    assert props["instance_uuid"] == instance.uuid  # Nova's own properties are kept
    # A valid stream-optimized VMDK of the 1 GiB root disk, holding the image's data.
    disk = stream_vmdk.parse(data)
    assert disk.capacity_sectors == 2 * 1024 * 1024
    assert disk.content(len(IMAGE_DATA)) == IMAGE_DATA
    # Exactly what the simulator served, through a lease on a snapshot, now ended.
    vm = sim.vm(instance.uuid)
    [lease] = _leases(sim)
    assert lease.state == "done"
    [served] = [d for d in lease.disks if d.served]
    assert served.served == (len(data), hashlib.sha1(data).hexdigest())
    assert served.key == f"/{vm.moid}/VirtualLsiLogicController0:0"
    assert sim.request_counts.get("ExportSnapshot") == 1
    assert sim.request_counts.get("ExportVm", 0) == 0
    # No snapshot left on the VM, which kept running.
    assert vm.snapshots == [] and vm.get_property("snapshot") is None
    assert vm.get_property("runtime.powerState") == "poweredOn"


def test_snapshot_of_a_stopped_instance_exports_the_vm(vsphere, ctx, node_a, glance):
    drv, server = vsphere
    sim = server.simulator
    instance = _boot_from_image(drv, ctx, glance, node_a)
    drv.power_off(instance)
    image_id = _snapshot_image(glance, ctx, instance)
    states = TaskStates()

    drv.snapshot(ctx, instance, image_id, states)

    assert states.calls == EXPECTED_STATES
    disk = stream_vmdk.parse(glance._imagedata[image_id])
    assert disk.content(len(IMAGE_DATA)) == IMAGE_DATA
    # A stopped VM needs no VM snapshot: ExportVm on the VM itself.
    assert sim.request_counts.get("ExportVm") == 1
    assert sim.request_counts.get("CreateSnapshot_Task", 0) == 0
    assert [lease.state for lease in _leases(sim)] == ["done"]
    assert sim.vm(instance.uuid).get_property("runtime.powerState") == "poweredOff"


def test_a_failed_quiesce_falls_back_to_a_crash_consistent_snapshot(vsphere, ctx, node_a,
                                                                    glance):
    drv, server = vsphere
    sim = server.simulator
    instance = make_instance(node_a, root_gb=1)
    drv.spawn(ctx, instance, None, [], None, {}, network_info=[])
    sim.faults.fail_next("CreateSnapshot_Task", "ApplicationQuiesceFault")
    image_id = _snapshot_image(glance, ctx, instance)

    drv.snapshot(ctx, instance, image_id, TaskStates())

    assert sim.request_counts["CreateSnapshot_Task"] == 2
    # An empty root disk: a valid VMDK without grains.
    disk = stream_vmdk.parse(glance._imagedata[image_id])
    assert disk.grains == {} and disk.capacity_sectors == 2 * 1024 * 1024
    assert sim.vm(instance.uuid).snapshots == []


def test_quiesce_required_by_the_image_but_no_tools(vsphere, ctx, node_a, glance):
    drv, server = vsphere
    sim = server.simulator
    instance = make_instance(node_a, root_gb=1,
                             system_metadata={"image_os_require_quiesce": "yes"})
    drv.spawn(ctx, instance, None, [], None, {}, network_info=[])
    sim.vm(instance.uuid).tools_installed = False
    image_id = _snapshot_image(glance, ctx, instance)
    with pytest.raises(exception.InstanceQuiesceNotSupported):
        drv.snapshot(ctx, instance, image_id, TaskStates())
    assert sim.request_counts.get("CreateSnapshot_Task", 0) == 0
    assert image_id not in glance._imagedata


def test_failed_vm_snapshot_leaves_no_snapshot_and_no_upload(vsphere, ctx, node_a, glance):
    drv, server = vsphere
    sim = server.simulator
    instance = make_instance(node_a, root_gb=1)
    drv.spawn(ctx, instance, None, [], None, {}, network_info=[])
    sim.faults.fail_next("CreateSnapshot_Task", "InvalidState")
    image_id = _snapshot_image(glance, ctx, instance)
    states = TaskStates()
    with pytest.raises(exception.InstanceInvalidState):
        drv.snapshot(ctx, instance, image_id, states)
    assert states.calls == EXPECTED_STATES[:1]
    assert sim.vm(instance.uuid).snapshots == []
    assert _leases(sim) == []
    assert image_id not in glance._imagedata  # Nova deletes the queued image itself


def test_failed_export_removes_the_vm_snapshot(vsphere, ctx, node_a, glance):
    drv, server = vsphere
    sim = server.simulator
    instance = make_instance(node_a, root_gb=1)
    drv.spawn(ctx, instance, None, [], None, {}, network_info=[])
    sim.faults.fail_next("ExportSnapshot", "FileFault")
    image_id = _snapshot_image(glance, ctx, instance)
    with pytest.raises(exception.NovaException):
        drv.snapshot(ctx, instance, image_id, TaskStates())
    assert sim.request_counts["RemoveSnapshot_Task"] == 1
    assert sim.vm(instance.uuid).snapshots == []
    assert _leases(sim) == []
    assert image_id not in glance._imagedata


def test_failed_upload_aborts_the_lease_and_removes_the_vm_snapshot(vsphere, ctx, node_a,
                                                                    glance, monkeypatch):
    drv, server = vsphere
    sim = server.simulator
    instance = _boot_from_image(drv, ctx, glance, node_a)
    image_id = _snapshot_image(glance, ctx, instance)

    def update(context, image_id, metadata, data=None, purge_props=False):
        data.read(64 * 1024)  # Glance takes a first chunk, then its store fails
        raise exception.ImageNotAuthorized(image_id=image_id)

    monkeypatch.setattr(glance, "update", update)
    with pytest.raises(exception.ImageNotAuthorized):
        drv.snapshot(ctx, instance, image_id, TaskStates())
    [lease] = _leases(sim)
    assert lease.state == "error"  # aborted: vCenter's export task fails, nothing dangles
    assert sim.vm(instance.uuid).snapshots == []


def test_snapshot_removes_a_vm_snapshot_an_earlier_attempt_left(vsphere, ctx, node_a,
                                                                glance):
    drv, server = vsphere
    sim = server.simulator
    instance = make_instance(node_a, root_gb=1)
    drv.spawn(ctx, instance, None, [], None, {}, network_info=[])
    si = connect(server)
    vm = bind(si, sim.vm(instance.uuid))
    run(vm.CreateSnapshot_Task(name="nova-snapshot-lost", memory=False, quiesce=False))
    run(vm.CreateSnapshot_Task(name="operator-backup", memory=False, quiesce=False))
    image_id = _snapshot_image(glance, ctx, instance)

    drv.snapshot(ctx, instance, image_id, TaskStates())

    assert [s.name for s in sim.vm(instance.uuid).snapshots] == ["operator-backup"]
    assert image_id in glance._imagedata


def test_snapshot_to_a_deleted_image_fails_before_touching_the_vm(vsphere, ctx, node_a,
                                                                 glance):
    drv, server = vsphere
    sim = server.simulator
    instance = make_instance(node_a, root_gb=1)
    drv.spawn(ctx, instance, None, [], None, {}, network_info=[])
    states = TaskStates()
    with pytest.raises(exception.ImageNotFound):
        drv.snapshot(ctx, instance, str(uuid.uuid4()), states)
    assert states.calls == []
    assert sim.request_counts.get("CreateSnapshot_Task", 0) == 0


def test_snapshot_of_an_instance_without_a_vm(vsphere, ctx, node_a, glance):
    drv, _ = vsphere
    instance = make_instance(node_a)
    image_id = _snapshot_image(glance, ctx, instance)
    with pytest.raises(exception.InstanceNotFound):
        drv.snapshot(ctx, instance, image_id, TaskStates())
