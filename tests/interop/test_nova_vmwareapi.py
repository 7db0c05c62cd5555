"""Nova's in-tree VMware driver (``nova.virt.vmwareapi.driver.VMwareVCDriver``) on the simulator.

The driver as Nova ships it, unmodified: start (which registers its vCenter
extension), resources, spawn from each image type, power, reboot, snapshot
and destroy. Its ESX hosts are named ``localhost`` and ``127.0.0.1``: the
driver uploads flat and sparse images straight to an ESX host
(``AcquireGenericServiceTicket``, ``https://<host>/folder/...``), and those
names reach the simulator.
"""

from __future__ import annotations

import importlib
import itertools
import uuid

import pytest

pytest.importorskip("nova.virt.vmwareapi", reason="Nova is not installed (the [nova] extra)")

import nova.conf  # noqa: E402
from nova import exception, objects  # noqa: E402
from nova import version as nova_version  # noqa: E402
from nova.compute import task_states  # noqa: E402
from nova.tests import fixtures as nova_fixtures  # noqa: E402
from nova.virt.vmwareapi import driver as vmwareapi_driver  # noqa: E402
from nova.virt.vmwareapi import session as vmwareapi_session  # noqa: E402
from oslo_vmware import exceptions as vexc  # noqa: E402

from nova_vsphere_driver.simulator import vmdk_stream  # noqa: E402
from tests.driver.conftest import (  # noqa: F401  (fixtures)
    FixtureHost,
    ctx,
    glance,
    make_instance,
    vmdk_image,
)
from tests.fixtures import running_simulator  # noqa: E402
from tests.unit.simulator import sparse_vmdk  # noqa: E402

MB = 1024 * 1024
_IDS = itertools.count(1)
DATA = bytes(range(1, 256)) * (MB // 255)
CONF = nova.conf.CONF
INVENTORY = {"datacenters": [{
    "name": "dc1",
    "datastores": [{"name": "datastore1", "capacity_gb": 512}],
    "networks": ["VM Network"],
    # The in-tree driver passes no host to CreateVM_Task: vCenter's DRS places.
    "clusters": [{"name": "cluster1", "drs": {"enabled": True}, "hosts": [
        {"name": "localhost", "cores": 8, "mhz": 2000, "memory_mb": 65536},
        {"name": "127.0.0.1", "cores": 4, "mhz": 2000, "memory_mb": 32768}]}],
}]}


@pytest.fixture(scope="module")
def intree(tmp_path_factory):
    """(Nova's VMwareVCDriver after init_host, the simulator), for the whole module.

    One vCenter for the driver's lifetime, as for a nova-compute: the
    in-tree driver keeps what it learned of the inventory (folders,
    datacenters) in module-level caches.
    """
    fixtures = FixtureHost()
    # The driver builds Nova's compute API, whose conductor client needs RPC.
    fixtures.useFixture(nova_fixtures.RPCFixture("nova.test"))
    with running_simulator(INVENTORY, tls=True) as server, \
            pytest.MonkeyPatch.context() as patch:
        sim = server.simulator
        # The driver names Nova's version in each VM's annotation; nova-compute
        # would have parsed its configuration (and looked for a release file)
        # by then. There is none here: the version stays Nova's own.
        patch.setattr(nova_version, "loaded", True)
        overrides = {
            "vmware": dict(host_ip="127.0.0.1", host_port=server.port,
                           host_username=sim.username, host_password=sim.password,
                           ca_file=server.ca_file, cluster_name="cluster1",
                           datastore_regex="datastore1", task_poll_interval=0.05,
                           api_retry_count=2),
            # Image fetches take a lock between nova-compute processes.
            "oslo_concurrency": dict(lock_path=str(tmp_path_factory.mktemp("locks"))),
        }
        for group, values in overrides.items():
            for key, value in values.items():
                CONF.set_override(key, value, group=group)
        try:
            # The driver's session takes its settings as default arguments,
            # bound when the module is imported: nova-compute parses its
            # configuration first, so import the module again now.
            importlib.reload(vmwareapi_session)
            drv = vmwareapi_driver.VMwareVCDriver(None)
            drv.init_host("compute-1")
            yield drv, sim
            drv.cleanup_host("compute-1")
        finally:
            for group, values in overrides.items():
                for key in values:
                    CONF.clear_override(key, group=group)
            fixtures.cleanup()


def _spawn(drv, ctx, instance, image) -> None:  # noqa: F811
    drv.spawn(ctx, instance, image, [], None, {}, network_info=[])


def _vm(sim, instance):
    """The instance's VM (the in-tree driver names it "<display name> (<uuid>)" or so)."""
    found = [vm for vm in sim.vms() if vm.config.instanceUuid == instance.uuid]
    return found[0] if found else None


def _instance(drv, image, **kw) -> objects.Instance:
    node = drv.get_available_nodes()[0]
    # The in-tree driver names disks after instance.name ("instance-%08x" % id).
    return make_instance(node, vcpus=1, memory_mb=512, root_gb=1, image_ref=image.id,
                         id=next(_IDS), system_metadata={}, metadata={}, config_drive="",
                         task_state=None, vm_state="active",
                         **kw)


def test_start_registers_the_extension_and_reports_resources(intree):
    drv, sim = intree
    [node] = drv.get_available_nodes()
    assert "org.openstack.compute" in sim.extensions.extensions
    resources = drv.get_available_resource(node)
    hosts = sim.cluster("cluster1").hosts
    assert resources["vcpus"] == sum(h.threads for h in hosts)
    assert resources["memory_mb"] == sum(h.memory_mb for h in hosts)
    assert resources["local_gb"] == 512


@pytest.mark.parametrize("disk_type", ["streamOptimized", "sparse"])
def test_spawn_power_reboot_snapshot_destroy(intree, ctx, glance, disk_type):  # noqa: F811
    drv, sim = intree
    data = b"".join(vmdk_stream.stream_optimized(64 * 1024, DATA)) \
        if disk_type == "streamOptimized" else sparse_vmdk.monolithic_sparse(32 * MB, DATA)
    image = vmdk_image(glance, ctx, data, vmware_disktype=disk_type)
    instance = _instance(drv, image)
    _spawn(drv, ctx, instance, image)
    vm = _vm(sim, instance)
    assert vm.powered_on and vm.config.instanceUuid == instance.uuid
    assert drv.get_info(instance).state == 1  # power_state.RUNNING

    drv.power_off(instance)
    assert not vm.powered_on
    drv.power_on(ctx, instance, [])
    assert vm.powered_on
    booted = vm.boot_time
    drv.reboot(ctx, instance, [], "SOFT")
    assert vm.boot_time > booted
    drv.reboot(ctx, instance, [], "HARD")

    snapshot_id = str(uuid.uuid4())
    glance.create(ctx, {"id": snapshot_id, "name": "snap", "status": "queued",
                        "disk_format": "vmdk", "container_format": "bare"})
    states = []
    drv.snapshot(ctx, instance, snapshot_id, lambda task_state, **kw: states.append(task_state))
    assert task_states.IMAGE_UPLOADING in states
    uploaded = glance.show(ctx, snapshot_id)
    assert uploaded["status"] == "active" and uploaded["size"] > 0

    drv.destroy(ctx, instance, [], None, True)
    assert _vm(sim, instance) is None


def test_spawn_from_a_flat_image_is_refused_as_vcenter_refuses_it(
        intree, ctx, glance):  # noqa: F811
    """The in-tree driver sends a flat image's size in KB as a float ("1024.0").

    CreateVirtualDisk_Task's capacityKb is an xsd:long, whose lexical space
    has no fraction; VMware's vcsim refuses "1024.0" (InvalidRequest,
    strconv.ParseInt) and pyVmomi's vmomi deserializer does too (ValueError),
    and so does the simulator, in vCenter's parser words ('Cannot parse "..."
    as a long value'): the spawn fails, and destroy (which Nova's compute
    manager calls after a failed spawn) removes its VM.
    """
    drv, sim = intree
    image = vmdk_image(glance, ctx, DATA, vmware_disktype="preallocated")
    instance = _instance(drv, image)
    with pytest.raises((vexc.VimException, exception.NovaException)) as raised:
        _spawn(drv, ctx, instance, image)
    assert f'Cannot parse "{len(DATA) / 1024}" as a long value' in str(raised.value)
    assert "while parsing property \"capacityKb\" of static type long" in str(raised.value)
    # Nova's compute manager destroys what a failed spawn made; then nothing is left.
    drv.destroy(ctx, instance, [], None, True)
    assert _vm(sim, instance) is None
