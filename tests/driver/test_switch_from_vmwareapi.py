"""Switching in place: a nova-compute that ran Nova's in-tree ``vmwareapi.VMwareVCDriver``
restarted with this driver, on the same vCenter (the simulator).

Nova's in-tree driver, unmodified, starts and spawns servers first: linked
clones of images it cached in its own cache folder (``<my_ip>_base``), with
ephemeral and swap disks and a NIC bound as vif type dvs. It stops; this
driver starts with the settings the README's "Moving from the in-tree driver"
gives (``image_cache_subdirectory_name`` naming that folder) and takes the
servers over: the same node name (so the same resource provider), every
server listed and then powered, rebooted, snapshotted, given volumes and
interfaces, resized, migrated (cold, live, by DRS) and deleted, each asserted
on the simulator's end state; the cache folder is used by new spawns and aged.
"""

from __future__ import annotations

import importlib
import io
import itertools
import posixpath
import shutil
import time
import uuid

import pytest

pytest.importorskip("nova.virt.vmwareapi", reason="Nova is not installed (the [nova] extra)")

import nova.conf  # noqa: E402
from nova import context as nova_context  # noqa: E402
from nova import objects  # noqa: E402
from nova import version as nova_version  # noqa: E402
from nova.compute import power_state, provider_tree  # noqa: E402
from nova.network import model as network_model  # noqa: E402
from nova.network import neutron as neutron_api  # noqa: E402
from nova.tests import fixtures as nova_fixtures  # noqa: E402
from nova.virt.vmwareapi import driver as vmwareapi_driver  # noqa: E402
from nova.virt.vmwareapi import images as vmwareapi_images  # noqa: E402
from nova.virt.vmwareapi import session as vmwareapi_session  # noqa: E402
from nova.virt.vmwareapi import vm_util as vmwareapi_vm_util  # noqa: E402
from pyVim.task import WaitForTask  # noqa: E402
from pyVmomi import vim  # noqa: E402

from nova_vsphere_driver import driver as vsphere_driver  # noqa: E402
from nova_vsphere_driver.simulator import vmdk_stream  # noqa: E402
from nova_vsphere_driver.simulator.objects.nfc_lease import disk_content  # noqa: E402
from nova_vsphere_driver.testing.glance import UploadKeepingGlanceFixture  # noqa: E402
from tests.driver.conftest import (  # noqa: E402
    WSDL_LOCATION,
    FixtureHost,
    config_drive_fields,
    make_instance,
)
from tests.driver.test_live_migrate import NovaFlow  # noqa: E402
from tests.driver.volume_support import backing_vm, make_volume, volume_path  # noqa: E402
from tests.fixtures import Disconnect, connect, running_simulator  # noqa: E402
from tests.unit.simulator import sparse_vmdk  # noqa: E402

CONF = nova.conf.CONF
MB = 1024 * 1024
GB_KB = 1024 * 1024
#: Image data without zero bytes: every byte is checked on the way through.
DATA = bytes(range(1, 256)) * (MB // 255)
#: nova-compute's address: the in-tree driver names its image cache folder after it.
MY_IP = "192.0.2.10"
CACHE = f"{MY_IP}_base"
#: An NSX-T logical switch, seen by vCenter as an opaque network.
NSX_SWITCH = "6f9d3b2e-5a41-4c8e-9f0a-2b7d1e3c4a50"
DATASTORE = "datastore1"
_IDS = itertools.count(1)


def _inventory() -> dict:
    # The in-tree driver passes no host to CreateVM_Task (vCenter's DRS places) and
    # uploads sparse images to an ESX host by its name: hosts named so that their names
    # reach the simulator.
    hosts = [{"name": name, "cores": 8, "mhz": 2000, "memory_mb": 65536}
             for name in ("localhost", "127.0.0.1")]
    return {"datacenters": [{
        "name": "dc1",
        "datastores": [{"name": DATASTORE, "capacity_gb": 512,
                        "hosts": ["localhost", "127.0.0.1"]},
                       {"name": "datastore2", "capacity_gb": 512, "hosts": ["esx-b1"]}],
        "networks": ["VM Network"],
        "distributed_switches": [{"name": "dvs-01", "portgroups": [{"name": "tenant-net"}]}],
        "opaque_networks": [{"name": "nsx-web", "id": NSX_SWITCH, "type": "nsx.LogicalSwitch"}],
        "clusters": [
            {"name": "cluster1", "drs": {"enabled": True}, "hosts": hosts},
            {"name": "cluster2", "hosts": [
                {"name": "esx-b1", "cores": 8, "mhz": 2000, "memory_mb": 65536}]}],
    }]}


class Switched:
    """The simulator, the image service, and the servers the in-tree driver made."""

    def __init__(self, server, glance, ctx) -> None:
        self.server = server
        self.sim = server.simulator
        self.glance = glance
        self.ctx = ctx
        self.intree_nodes: list[str] = []
        self.servers: dict[str, objects.Instance] = {}
        self.images: dict[str, objects.ImageMeta] = {}
        #: The NICs the in-tree driver gave each server.
        self.networks: dict[str, network_model.NetworkInfo] = {}
        #: The connection_info of the volume the in-tree driver attached to "volume".
        self.volume: dict | None = None
        self.drv: vsphere_driver.VSphereDriver | None = None
        self.dest: vsphere_driver.VSphereDriver | None = None

    def image(self, name: str, data: bytes, disk_type: str) -> objects.ImageMeta:
        image_id = str(uuid.uuid4())
        self.glance.create(None, {"id": image_id, "name": name, "status": "active",
                                  "disk_format": "vmdk", "container_format": "bare",
                                  "size": len(data),
                                  "properties": {"vmware_disktype": disk_type}},
                           data=io.BytesIO(data))
        self.images[name] = objects.ImageMeta.from_dict(self.glance.show(self.ctx, image_id))
        return self.images[name]

    def instance(self, node: str, image, ephemeral_gb: int = 0, swap: int = 0,
                 **kw) -> objects.Instance:
        # The in-tree driver names disks after instance.name ("instance-%08x" % id).
        fields = dict(vcpus=1, memory_mb=512, root_gb=1, image_ref=image.id, id=next(_IDS),
                      system_metadata={}, metadata={}, config_drive="", task_state=None,
                      vm_state="active", ephemeral_gb=ephemeral_gb)
        fields.update(kw)
        instance = make_instance(node, **fields)
        instance.flavor.ephemeral_gb = ephemeral_gb
        instance.flavor.swap = swap
        return instance


def _nsx_vif(index: int) -> network_model.VIF:
    """A Neutron port bound by NSX (vif type ovs, the logical switch in its details)."""
    return network_model.VIF(
        id=str(uuid.uuid4()), address=f"fa:16:3e:00:0a:{index:02x}", type="ovs",
        details={"nsx-logical-switch-id": NSX_SWITCH},
        network=network_model.Network(id="net-web", bridge="nsx-managed", label="web"))


def _dvs_vif(index: int) -> network_model.VIF:
    """A Neutron port bound by a vSphere DVS backend (the in-tree driver takes only DVS
    and NSX bindings)."""
    return network_model.VIF(
        id=str(uuid.uuid4()), address=f"fa:16:3e:00:09:{index:02x}", type="dvs",
        details={"dvs_port_group_name": "tenant-net"},
        network=network_model.Network(id="net-tenant", label="tenant"))


def _intree_overrides(server, lock_path: str) -> dict:
    sim = server.simulator
    return {
        None: dict(my_ip=MY_IP),
        "vmware": dict(host_ip="127.0.0.1", host_port=server.port,
                       host_username=sim.username, host_password=sim.password,
                       ca_file=server.ca_file, cluster_name="cluster1",
                       datastore_regex=DATASTORE, task_poll_interval=0.05,
                       api_retry_count=2),
        # Image fetches take a lock between nova-compute processes.
        "oslo_concurrency": dict(lock_path=lock_path),
    }


def _ours_overrides(server) -> dict:
    """The in-tree settings as README's "Moving from the in-tree driver" maps them."""
    sim = server.simulator
    return {
        "vsphere": dict(host_ip="127.0.0.1", host_port=server.port,
                        host_username=sim.username, host_password=sim.password,
                        ca_file=server.ca_file, cluster_names=["cluster1", "cluster2"],
                        datastore_regex="datastore[12]", task_poll_interval=0.05,
                        api_retry_count=2, wsdl_location=WSDL_LOCATION[-1],
                        image_cache_subdirectory_name=CACHE, cluster_read_max_age=0),
        # Tests run DRS passes themselves, not on a timer.
        "vsphere_drs": dict(poll_interval=3600, balance_interval=0),
    }


def _override(applied: list, values: dict) -> None:
    for group, options in values.items():
        for key, value in options.items():
            CONF.set_override(key, value, group=group)
            applied.append((key, group))


def _forget_intree_caches() -> None:
    """The in-tree driver keeps VM and folder references in module-level caches, as
    of one vCenter for the process's lifetime: empty them, as a new process has them,
    before and after its run here (other tests run it on other simulators)."""
    vmwareapi_vm_util.vm_refs_cache_reset()
    vmwareapi_vm_util._FOLDER_PATH_REF_MAPPING.clear()


def _intree_era(switched: Switched, lock_path: str) -> None:
    """What the in-tree driver leaves behind: its servers, its image cache."""
    _forget_intree_caches()
    applied: list = []
    _override(applied, _intree_overrides(switched.server, lock_path))
    try:
        # The in-tree session takes its settings as default arguments bound at import:
        # nova-compute parses its configuration first, so import it again now.
        importlib.reload(vmwareapi_session)
        intree = vmwareapi_driver.VMwareVCDriver(None)
        intree.init_host("compute-1")
        try:
            switched.intree_nodes = intree.get_available_nodes()
            [node] = switched.intree_nodes
            shared = switched.image(
                "shared", b"".join(vmdk_stream.stream_optimized(64 * 1024, DATA)),
                "streamOptimized")
            alone = switched.image("alone", sparse_vmdk.monolithic_sparse(32 * MB, DATA),
                                   "sparse")
            plans = {"disks": (shared, 1, 512), "moving": (shared, 0, 0),
                     "live": (shared, 0, 0), "alone": (alone, 0, 0),
                     "volume": (shared, 0, 0), "nsx": (shared, 0, 0)}
            # NICs from the in-tree driver: on a DVS port group, on an NSX logical switch.
            vifs = {"disks": [_dvs_vif(1)], "nsx": [_nsx_vif(1)]}
            for name, (image, ephemeral_gb, swap) in plans.items():
                instance = switched.instance(node, image, ephemeral_gb, swap, name=name)
                network_info = network_model.NetworkInfo(vifs.get(name, []))
                intree.spawn(switched.ctx, instance, image, [], None, {},
                             network_info=network_info)
                switched.servers[name] = instance
                switched.networks[name] = network_info
            # A Cinder volume the in-tree driver attached (its records in the VM's
            # extraConfig, as it writes them).
            instance = switched.servers["volume"]
            si = connect(switched.server)
            try:
                switched.volume = make_volume(si, switched.sim, datastore=DATASTORE,
                                              host=_vm(switched.sim, instance).host.name)
            finally:
                Disconnect(si)
            intree.attach_volume(switched.ctx, switched.volume, instance, "/dev/sdb")
            if shutil.which("genisoimage"):
                # A server with a config drive (the in-tree driver builds its ISO
                # with genisoimage and puts it in the server's folder).
                instance = switched.instance(node, shared, **config_drive_fields(
                    name="drive", id=next(_IDS), vm_state="active", task_state=None))
                instance._context = switched.ctx
                intree.spawn(switched.ctx, instance, shared, [], None, {},
                             network_info=network_model.NetworkInfo([]))
                switched.servers["drive"] = instance
                switched.networks["drive"] = network_model.NetworkInfo([])
        finally:
            intree.cleanup_host("compute-1")
    finally:
        _forget_intree_caches()
        for key, group in applied:
            CONF.clear_override(key, group=group)


@pytest.fixture(scope="module")
def switched(tmp_path_factory, _wsdl_location):
    host = FixtureHost()
    # Both drivers build Nova's compute API, whose conductor client needs RPC; ours
    # reads server groups from Nova's API database.
    host.useFixture(nova_fixtures.RPCFixture("nova.test"))
    host.useFixture(nova_fixtures.Database(database="api"))
    # What Nova's InstanceMetadata reads for a config drive: the cell database, Neutron.
    host.useFixture(nova_fixtures.Database(database="main"))
    host.useFixture(nova_fixtures.NeutronFixture(host))
    host.useFixture(nova_fixtures.NotificationFixture(host))
    glance = host.useFixture(UploadKeepingGlanceFixture(host))
    ctx = nova_context.get_admin_context()
    try:
        with running_simulator(_inventory(), tls=True) as server, \
                pytest.MonkeyPatch.context() as patch:
            # The in-tree driver names Nova's version in each VM's annotation;
            # nova-compute would have read its release file by then.
            patch.setattr(nova_version, "loaded", True)
            # It tells Neutron each NIC's index after a spawn (no Neutron here).
            patch.setattr(neutron_api.API, "update_instance_vnic_index",
                          lambda self, context, instance, vif, index: None)
            # Its config drive upload reads the ISO in text mode, which fails on Python 3
            # (a decode error, or str sent to the socket). The servers it made with config
            # drives (under Python 2) have the bytes it meant to upload: read them so.
            patch.setattr(vmwareapi_images, "open",
                          lambda path, mode="r": open(path, "rb"),  # noqa: SIM115
                          raising=False)
            state = Switched(server, glance, ctx)
            _intree_era(state, str(tmp_path_factory.mktemp("locks")))
            applied: list = []
            _override(applied, _ours_overrides(server))
            try:
                # The operator hands placement to our DRS (README): vCenter's DRS off.
                si = connect(server)
                cluster = si.content.searchIndex.FindByInventoryPath("dc1/host/cluster1")
                WaitForTask(cluster.ReconfigureComputeResource_Task(
                    vim.cluster.ConfigSpecEx(drsConfig=vim.cluster.DrsConfigInfo(
                        enabled=False)), True))
                Disconnect(si)
                state.drv = vsphere_driver.VSphereDriver(None)
                state.drv.init_host("compute-1")
                # A second nova-compute of ours, for cluster2: a live migration's
                # destination.
                CONF.set_override("cluster_names", ["cluster2"], "vsphere")
                state.dest = vsphere_driver.VSphereDriver(None)
                state.dest.init_host("compute-2")
                yield state
                state.dest.cleanup_host("compute-2")
                state.drv.cleanup_host("compute-1")
            finally:
                for key, group in applied:
                    CONF.clear_override(key, group=group)
    finally:
        host.cleanup()


# -- helpers -------------------------------------------------------------------------------


def _vm(sim, instance):
    """The instance's VM (the in-tree driver names VMs by display name and UUID)."""
    [vm] = [vm for vm in sim.vms() if vm.config.instanceUuid == instance.uuid]
    return vm


def _disks(sim, instance) -> list:
    return [d for d in _vm(sim, instance).config.hardware.device
            if isinstance(d, vim.vm.device.VirtualDisk)]


def _cards(sim, instance) -> list:
    return [d for d in _vm(sim, instance).config.hardware.device
            if isinstance(d, vim.vm.device.VirtualEthernetCard)]


def _root(sim, instance):
    return next(d for d in _disks(sim, instance)
                if not posixpath.basename(d.backing.fileName).startswith(("ephemeral", "swap")))


def _split(path: str) -> tuple[str, str]:
    ds, rel = path[1:].split("] ", 1)
    return ds, rel


def _cache_folders(sim) -> set[str]:
    return {e.path.split("/")[1] for e in sim.files.listdir(DATASTORE, CACHE, True)
            if e.path.count("/") >= 1} if sim.files.exists(DATASTORE, CACHE) else set()


def _node(switched) -> str:
    [node] = [n for n, ref in switched.drv.services.nodes.items() if ref.name == "cluster1"]
    return node


# -- the tests -------------------------------------------------------------------------------


def test_the_node_and_every_server_are_kept(switched):
    drv, sim = switched.drv, switched.sim
    # The same node name: Nova finds its compute node record, resource provider and
    # allocations under it.
    assert _node(switched) == switched.intree_nodes[0]
    tree = provider_tree.ProviderTree()
    tree.new_root(_node(switched), uuid.uuid4())
    drv.update_provider_tree(tree, _node(switched))
    inventory = tree.data(_node(switched)).inventory
    assert inventory["VCPU"]["total"] == sum(h.threads for h in sim.cluster("cluster1").hosts)
    uuids = set(drv.list_instance_uuids())
    assert {i.uuid for i in switched.servers.values()} <= uuids
    for instance in switched.servers.values():
        assert drv.instance_exists(instance)
        assert drv.get_info(instance).state == power_state.RUNNING


def test_power_reboot_and_snapshot(switched):
    drv, sim, ctx = switched.drv, switched.sim, switched.ctx
    instance = switched.servers["disks"]
    vm = _vm(sim, instance)
    drv.power_off(instance)
    assert not vm.powered_on and drv.get_info(instance).state == power_state.SHUTDOWN
    drv.power_on(ctx, instance, [])
    assert vm.powered_on
    for kind in ("SOFT", "HARD"):
        booted = vm.boot_time
        drv.reboot(ctx, instance, [], kind)
        assert vm.powered_on and vm.boot_time > booted

    snapshot_id = str(uuid.uuid4())
    switched.glance.create(ctx, {"id": snapshot_id, "name": "snap", "status": "queued",
                                 "properties": {"image_type": "snapshot"}})
    drv.snapshot(ctx, instance, snapshot_id, lambda task_state, expected_state=None: None)
    snap = switched.glance.show(ctx, snapshot_id)
    assert snap["status"] == "active" and snap["size"] > 0
    # The snapshot of the linked clone holds the image's data (its parent's).
    booted_from = switched.instance(_node(switched), objects.ImageMeta.from_dict(snap),
                                    name="from-snap")
    drv.spawn(ctx, booted_from, objects.ImageMeta.from_dict(snap), [], None, {},
              network_info=[])
    assert disk_content(sim, _root(sim, booted_from).backing)[:len(DATA)] == DATA
    drv.destroy(ctx, booted_from, [], None, True)


def test_volumes_and_interfaces(switched):
    drv, sim, ctx = switched.drv, switched.sim, switched.ctx
    instance = switched.servers["disks"]
    si = connect(switched.server)
    try:
        volume = make_volume(si, sim, datastore=DATASTORE,
                             host=_vm(sim, instance).host.name)
    finally:
        Disconnect(si)
    before = len(_disks(sim, instance))
    drv.attach_volume(ctx, volume, instance, "/dev/sdb")
    assert len(_disks(sim, instance)) == before + 1
    [intree_nic] = switched.networks["disks"]

    def macs() -> list[str]:
        return [d.macAddress for d in _cards(sim, instance)]

    assert macs() == [intree_nic["address"]]
    added = _dvs_vif(2)
    drv.attach_interface(ctx, instance, None, added)
    assert macs() == [intree_nic["address"], added["address"]]
    # The in-tree driver's NIC and ours are detached alike.
    drv.detach_interface(ctx, instance, intree_nic)
    drv.detach_interface(ctx, instance, added)
    assert macs() == []
    drv.detach_volume(ctx, volume, instance, "/dev/sdb")
    assert len(_disks(sim, instance)) == before
    assert backing_vm(sim, volume) is not None


def test_a_volume_the_in_tree_driver_attached_is_detached_and_kept(switched):
    drv, sim, ctx = switched.drv, switched.sim, switched.ctx
    instance, volume = switched.servers["volume"], switched.volume
    ds, rel = _split(volume_path(sim, volume))
    assert [d.backing.fileName for d in _disks(sim, instance)][1:] == [volume_path(sim, volume)]
    drv.detach_volume(ctx, volume, instance, "/dev/sdb")
    assert len(_disks(sim, instance)) == 1
    assert sim.files.exists(ds, rel) and backing_vm(sim, volume) is not None
    # Attached again by this driver, then the server deleted as Nova deletes it
    # (with its block device mapping): the volume's disk stays.
    drv.attach_volume(ctx, volume, instance, "/dev/sdb")
    bdi = {"block_device_mapping": [{"connection_info": volume, "mount_device": "/dev/sdb"}]}
    drv.destroy(ctx, instance, [], bdi, True)
    assert not drv.instance_exists(instance)
    ds, rel = _split(volume_path(sim, volume))
    assert sim.files.exists(ds, rel)
    del switched.servers["volume"]  # deleted: the last test deletes the others


def test_an_nsx_nic_the_in_tree_driver_made_is_detached_and_attached_again(switched):
    drv, sim, ctx = switched.drv, switched.sim, switched.ctx
    instance = switched.servers["nsx"]
    [intree_nic] = switched.networks["nsx"]

    [card] = _cards(sim, instance)
    assert card.macAddress == intree_nic["address"]
    assert card.backing.opaqueNetworkId == NSX_SWITCH
    drv.detach_interface(ctx, instance, intree_nic)
    assert _cards(sim, instance) == []
    again = _nsx_vif(2)
    drv.attach_interface(ctx, instance, None, again)
    [card] = _cards(sim, instance)
    assert (card.macAddress, card.backing.opaqueNetworkId, card.externalId) == \
        (again["address"], NSX_SWITCH, again["id"])
    assert [n.name for n in _vm(sim, instance).networks] == ["nsx-web"]


def test_a_config_drive_the_in_tree_driver_made_goes_with_the_server(switched):
    if "drive" not in switched.servers:
        pytest.skip("genisoimage is not installed: the in-tree driver builds config drives "
                    "with it (apt-get install genisoimage)")
    drv, sim, ctx = switched.drv, switched.sim, switched.ctx
    instance = switched.servers["drive"]

    def isos() -> list[str]:
        return [d.backing.fileName for d in _vm(sim, instance).config.hardware.device
                if isinstance(d, vim.vm.device.VirtualCdrom)
                and isinstance(d.backing, vim.vm.device.VirtualCdrom.IsoBackingInfo)]

    [iso] = isos()
    ds, rel = _split(iso)
    assert sim.files.exists(ds, rel) and rel.endswith("configdrive.iso")
    drv.reboot(ctx, instance, [], "HARD")
    assert isos() == [iso] and drv.get_info(instance).state == power_state.RUNNING
    # Deleted as if made here: the drive, which is none of the VM's own files,
    # goes with its folder.
    drv.destroy(ctx, instance, [], None, True)
    assert not drv.instance_exists(instance)
    assert not sim.files.exists(ds, rel) and not sim.files.exists(ds, rel.split("/")[0])
    del switched.servers["drive"]


def test_resize_grows_the_linked_clone_and_its_ephemeral_disk(switched):
    from tests.driver.test_migrate import _flavor, _resize

    drv, sim, ctx = switched.drv, switched.sim, switched.ctx
    instance = switched.servers["disks"]
    # The in-tree layout: a linked clone of the image in the in-tree cache folder,
    # ephemeral and swap disks in the VM's folder.
    parent = _root(sim, instance).backing.parent
    assert parent is not None and parent.fileName.startswith(f"[{DATASTORE}] {CACHE}/")
    sizes = {posixpath.basename(d.backing.fileName): d.capacityInKB
             for d in _disks(sim, instance)}
    assert (sizes["ephemeral_0.vmdk"], sizes["swap.vmdk"]) == (GB_KB, 512 * 1024)
    flavor = _flavor(2, 1024, 2)
    flavor.ephemeral_gb, flavor.swap = 2, 512
    migration = _resize(drv, ctx, instance, flavor, _node(switched))
    vm = _vm(sim, instance)
    assert vm.config.hardware.numCPU == 2 and vm.config.hardware.memoryMB == 1024
    root = _root(sim, instance)
    assert root.capacityInKB == 2 * GB_KB and root.backing.parent is None
    assert disk_content(sim, root.backing)[:len(DATA)] == DATA
    sizes = {posixpath.basename(d.backing.fileName): d.capacityInKB
             for d in _disks(sim, instance)}
    assert sizes["ephemeral_0.vmdk"] == 2 * GB_KB
    drv.confirm_migration(ctx, migration, instance, [])
    assert drv.get_info(instance).state == power_state.RUNNING


def test_cold_and_live_migration_and_drs(switched):
    from tests.driver.test_migrate import _resize

    drv, sim, ctx = switched.drv, switched.sim, switched.ctx
    node = _node(switched)
    moving = switched.servers["moving"]
    # Cold migration to the other cluster (node).
    [other] = [n for n in drv.get_available_nodes() if n != node]
    migration = _resize(drv, ctx, moving, moving.flavor, other)
    assert _vm(sim, moving).cluster.name == "cluster2"
    drv.confirm_migration(ctx, migration, moving, [])
    assert drv.get_info(moving).state == power_state.RUNNING

    # Live migration: this driver as both nova-computes.
    live = switched.servers["live"]
    live.info_cache = objects.InstanceInfoCache(network_info=network_model.NetworkInfo())
    NovaFlow(ctx, drv, switched.dest).run(live)
    assert _vm(sim, live).cluster.name == "cluster2" and _vm(sim, live).powered_on
    assert switched.dest.get_info(live).state == power_state.RUNNING

    # DRS: a host of cluster1 entering maintenance is emptied by this driver's DRS.
    staying = switched.servers["disks"]
    host = _vm(sim, staying).host
    si = connect(switched.server)
    try:
        esx = si.content.searchIndex.FindByInventoryPath(f"dc1/host/cluster1/{host.name}")
        task = esx.EnterMaintenanceMode_Task(timeout=0)
        time.sleep(0.2)
        reports = drv.run_drs_pass(node)
        evacuation = next(r for r in reports if r.kind == "evacuation")
        assert _vm(sim, staying).moid in {m.vm for m in evacuation.moves}
        WaitForTask(task)
        assert _vm(sim, staying).host is not host and _vm(sim, staying).powered_on
        WaitForTask(esx.ExitMaintenanceMode_Task(timeout=0))
    finally:
        Disconnect(si)


def test_new_spawns_use_the_in_tree_cache_and_destroy_and_ageing_clean_up(switched):
    drv, sim, ctx = switched.drv, switched.sim, switched.ctx
    shared, alone = switched.images["shared"], switched.images["alone"]
    assert _cache_folders(sim) >= {shared.id, alone.id}
    downloads = len(switched.glance.downloads)
    fresh = switched.instance(_node(switched), shared, name="fresh")
    drv.spawn(ctx, fresh, shared, [], None, {}, network_info=[])
    assert len(switched.glance.downloads) == downloads  # the in-tree driver's copy
    parent = _root(sim, fresh).backing.parent
    assert parent.fileName.startswith(f"[{DATASTORE}] {CACHE}/{shared.id}/")

    gone = switched.servers["alone"]
    folder = _split(_vm(sim, gone).config.files.vmPathName)[1].split("/")[0]
    drv.destroy(ctx, gone, [], None, True)
    assert not drv.instance_exists(gone) and not sim.files.exists(DATASTORE, folder)
    CONF.set_override("remove_unused_original_minimum_age_seconds", 0, "image_cache")
    try:
        alive = [i for k, i in switched.servers.items() if k != "alone"] + [fresh]
        for _ in range(2):  # marked unused, then removed
            drv.manage_image_cache(ctx, alive)
    finally:
        CONF.clear_override("remove_unused_original_minimum_age_seconds", "image_cache")
    assert alone.id not in _cache_folders(sim)
    assert shared.id in _cache_folders(sim)  # its linked clones still use it

    # Every server deleted as if made here: no VM, no folder (disks, ephemeral, swap).
    for instance in [fresh] + alive[:-1]:
        owner = switched.dest if _vm(sim, instance).cluster.name == "cluster2" else drv
        ds, rel = _split(_vm(sim, instance).config.files.vmPathName)
        owner.destroy(ctx, instance, [], None, True)
        assert not owner.instance_exists(instance)
        assert not sim.files.exists(ds, rel.split("/")[0]), rel
    assert not [vm for vm in sim.vms() if vm.config.instanceUuid in
                {i.uuid for i in switched.servers.values()}]
    # A later start of nova-compute (this process's recent spawns no longer count) finds
    # every cached image unused and ages them all out.
    CONF.set_override("cluster_names", ["cluster1"], "vsphere")
    CONF.set_override("remove_unused_original_minimum_age_seconds", 0, "image_cache")
    later = vsphere_driver.VSphereDriver(None)
    later.init_host("compute-1")
    try:
        for _ in range(2):
            later.manage_image_cache(ctx, [])
    finally:
        later.cleanup_host("compute-1")
        CONF.clear_override("remove_unused_original_minimum_age_seconds", "image_cache")
    assert _cache_folders(sim) == set()
