"""Live migration between clusters through VSphereDriver, as nova 34's compute manager
drives it: two nova-compute services (one per cluster) against one simulated vCenter."""

from __future__ import annotations

import threading
import time
import uuid

import pytest
from nova import exception, objects
from nova.network import model as network_model
from nova.objects import base as obj_base
from nova.objects import migrate_data as migrate_data_obj
from pyVim.task import WaitForTask
from pyVmomi import vim

from nova_vsphere_driver import driver as vsphere_driver
from nova_vsphere_driver import drs
from tests.driver.conftest import configure, make_instance, node_of
from tests.fixtures import connect

GB = 1024



def _vifs(*bridges: str) -> network_model.NetworkInfo:
    return network_model.NetworkInfo([
        network_model.VIF(id=str(uuid.uuid4()), address=f"fa:16:3e:00:01:{i:02x}",
                          network=network_model.Network(id=f"net-{i}", bridge=b, label=b))
        for i, b in enumerate(bridges)])


@pytest.fixture
def two_computes(tls_sim, conf_overrides, nova_db):
    """compute-1 manages cluster-a, compute-2 cluster-b: one vCenter, two services."""
    conf_overrides("vsphere_drs", poll_interval=3600, balance_interval=0)
    drivers = []
    for host, cluster in (("compute-1", "cluster-a"), ("compute-2", "cluster-b")):
        configure(conf_overrides, tls_sim, clusters=(cluster,))
        drv = vsphere_driver.VSphereDriver(None)
        drv.init_host(host)
        drivers.append(drv)
    yield drivers[0], drivers[1], tls_sim.simulator
    for drv in drivers:
        drv.cleanup_host("compute")


def _instance(src, ctx, network_info=None, **kw):
    inst = make_instance(node_of(src, "cluster-a"), **kw)
    inst.info_cache = objects.InstanceInfoCache(
        network_info=network_info or network_model.NetworkInfo())
    src.spawn(ctx, inst, None, [], None, {}, network_info=network_info or [])
    return inst


class NovaFlow:
    """The compute manager's calls for one live migration, in nova 34's order."""

    def __init__(self, ctx, src, dst) -> None:
        self.ctx, self.src, self.dst = ctx, src, dst
        self.dst_node = dst.get_available_nodes()[0]
        self.calls: list[tuple] = []
        self.migrate_data = None

    def _info(self, drv, host: str, node: str) -> dict:
        return obj_base.obj_to_primitive(objects.ComputeNode(host=host,
                                                             hypervisor_hostname=node))

    def check(self, instance, allocs=None):
        """check_can_live_migrate_destination ... cleanup, as the destination manager runs it."""
        ctx, src, dst = self.ctx, self.src, self.dst
        data = dst.check_can_live_migrate_destination(
            ctx, instance, self._info(src, "compute-1", instance.node),
            self._info(dst, "compute-2", self.dst_node), False, False)
        try:
            result = src.check_can_live_migrate_source(ctx, instance, data,
                                                       {"block_device_mapping": []})
            result = dst.check_source_migrate_data_at_dest(
                ctx, instance, result, self.migration(instance), None,
                allocs if allocs is not None else
                {u: {} for u, n in dst.get_nodenames_by_uuid().items() if n == self.dst_node})
        finally:
            dst.cleanup_live_migration_destination_check(ctx, data)
        return result

    def migration(self, instance) -> objects.Migration:
        return objects.Migration(source_compute="compute-1", dest_compute="compute-2",
                                 source_node=instance.node, dest_node=self.dst_node,
                                 migration_type="live-migration", status="running",
                                 instance_uuid=instance.uuid)

    def post(self, ctxt, instance, dest, block_migration=False, migrate_data=None):
        self.calls.append(("post", dest))
        nw = instance.get_network_info()
        self.src.post_live_migration(ctxt, instance, {"block_device_mapping": []},
                                     migrate_data)
        self.src.post_live_migration_at_source(ctxt, instance, nw)
        self.dst.post_live_migration_at_destination(ctxt, instance, nw, False, None)
        instance.host, instance.node = dest, self.dst_node

    def recover(self, context, instance, dest, migrate_data=None, migration_status="failed"):
        self.calls.append(("recover", migration_status))

    def run(self, instance, dest_bindings=None):
        """``dest_bindings``: {port id: (vif type, details)} of the ports' bindings on the
        destination host, as Nova puts them in ``migrate_data.vifs``."""
        data = self.check(instance)
        if dest_bindings is not None:
            data.vifs = []
            for vif in instance.get_network_info():
                vif_type, details = dest_bindings[vif["id"]]
                data.vifs.append(migrate_data_obj.VIFMigrateData(
                    port_id=vif["id"], source_vif=vif, vif_type=vif_type,
                    vnic_type="normal", vif_details=details, host="compute-2"))
        data = self.dst.pre_live_migration(self.ctx, instance, {"block_device_mapping": []},
                                           instance.get_network_info(), None, data)
        data.migration = self.migration(instance)
        self.migrate_data = data
        self.src.live_migration(self.ctx, instance, "compute-2", self.post, self.recover,
                                False, data)
        return self.calls


def _drs_choice(dst, node: str, inst, datastores: list[str]) -> str:
    """The host the target cluster's DRS picks for ``inst`` now (one of ``datastores``)."""
    state = dst.services.states.read(node)
    request = drs.PlacementRequest(
        instance_id=inst.uuid, vcpus=inst.flavor.vcpus, memory_mb=inst.flavor.memory_mb,
        any_datastore=frozenset(d.moref for d in state.datastores if d.name in datastores))
    result = drs.place(dst.services.drs.cluster_snapshot(state), request,
                       dst.services.drs.policy, None, dst.services.limits())
    assert result.ok
    return result.host_id


def _host(sim, instance):
    return sim.vm(instance.uuid).host


def _rules(sim, cluster: str) -> dict:
    return {r.name: r for r in sim.cluster(cluster).rules}


def test_live_migration_keeps_the_vm_running_on_a_drs_chosen_host_of_the_target(
        two_computes, ctx):
    src, dst, sim = two_computes
    inst = _instance(src, ctx, network_info=_vifs("VM Network", "br-int"), vcpus=4,
                     memory_mb=16 * GB, root_gb=20)
    vm = sim.vm(inst.uuid)
    assert vm.cluster is sim.cluster("cluster-a")
    old_ds = vm.datastores[0].name
    assert old_ds == "shared-a"  # not mounted in cluster-b: the files must move
    flow = NovaFlow(ctx, src, dst)
    expected = _drs_choice(dst, flow.dst_node, inst, ["shared-b", "shared-all"])

    sim.faults.add_latency("RelocateVM_Task", 0.4)
    seen, stop = set(), threading.Event()

    def watch():
        while not stop.is_set():
            seen.add((vm.power_state, vm.host.name))
            time.sleep(0.005)

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        calls = flow.run(inst)
    finally:
        stop.set()
        watcher.join()
    assert calls == [("post", "compute-2")]
    assert {p for p, _ in seen} == {"poweredOn"}  # running throughout the vMotion
    assert len({h for _, h in seen}) == 2  # seen on the source host, then the target
    data = flow.migrate_data
    assert isinstance(data, migrate_data_obj.VMwareLiveMigrateData)
    assert data.cluster_name == flow.dst_node
    assert vm.cluster is sim.cluster("cluster-b")
    assert vm.pool is sim.cluster("cluster-b").resource_pool
    assert vm.host.moid == expected
    assert vm.get_property("runtime.powerState") == "poweredOn"
    new_ds = vm.datastores[0]
    assert new_ds.name in ("shared-b", "shared-all") and vm.host in new_ds.hosts
    assert not sim.files.exists(old_ds, inst.uuid)
    assert sim.files.exists(new_ds.name, f"{inst.uuid}/{inst.uuid}.vmx")
    assert vm.host.get_property("summary.quickStats.overallMemoryUsage") >= 16 * GB
    # Nova's view: the destination now owns the instance, nothing is left claimed.
    assert inst.node == flow.dst_node
    assert dst.get_info(inst).state == 1  # power_state.RUNNING
    assert inst.uuid in dst.list_instance_uuids()
    assert inst.uuid not in src.list_instance_uuids()
    for drv in (src, dst):
        for ref in [*src.services.nodes.values(), *dst.services.nodes.values()]:
            assert inst.uuid not in drv.services.drs.claims(ref.moref)


def test_datastore_mounted_by_the_target_is_kept(two_computes, conf_overrides, ctx):
    src, dst, sim = two_computes
    conf_overrides("vsphere", datastore_regex="^shared-all$")
    inst = _instance(src, ctx, memory_mb=2 * GB, root_gb=5)
    assert sim.vm(inst.uuid).datastores[0].name == "shared-all"
    assert NovaFlow(ctx, src, dst).run(inst) == [("post", "compute-2")]
    vm = sim.vm(inst.uuid)
    assert vm.cluster is sim.cluster("cluster-b")
    assert [d.name for d in vm.datastores] == ["shared-all"]  # no storage vMotion


def _group(ctx, policy: str, members: list) -> objects.InstanceGroup:
    group = objects.InstanceGroup(ctx, uuid=str(uuid.uuid4()), name=f"sg-{policy}",
                                  policy=policy, project_id="p1", user_id="u1",
                                  members=[m.uuid for m in members])
    group.create()
    return group


def test_anti_affinity_rule_follows_the_vm_to_the_target_cluster(two_computes, ctx):
    src, dst, sim = two_computes
    node_b = dst.get_available_nodes()[0]
    members = [make_instance(node_of(src, "cluster-a"), memory_mb=2 * GB, name=f"db-{i}")
               for i in range(3)]
    members.append(make_instance(node_b, memory_mb=2 * GB, name="db-3"))
    group = _group(ctx, "anti-affinity", members)
    rule = f"nova-sg-{group.uuid}"
    for inst in members:
        inst.info_cache = objects.InstanceInfoCache(network_info=network_model.NetworkInfo())
        drv = dst if inst.node == node_b else src
        drv.spawn(ctx, inst, None, [], None, {}, network_info=[])
    assert {v._moId for v in _rules(sim, "cluster-a")[rule].vm} == \
        {sim.vm(m.uuid).moid for m in members[:3]}
    assert rule not in _rules(sim, "cluster-b")  # one member there: nothing to enforce

    for moved in members[:2]:
        assert NovaFlow(ctx, src, dst).run(moved) == [("post", "compute-2")]
    in_b = [members[0], members[1], members[3]]
    assert all(sim.vm(m.uuid).cluster is sim.cluster("cluster-b") for m in in_b)
    assert len({_host(sim, m) for m in in_b}) == 3  # DRS kept them apart
    b_rule = _rules(sim, "cluster-b")[rule]
    assert b_rule.mandatory is True
    assert {v._moId for v in b_rule.vm} == {sim.vm(m.uuid).moid for m in in_b}
    # One member left in cluster-a: its rule went with the others.
    assert rule not in _rules(sim, "cluster-a")


def _host_group(si, sim, cluster: str, name: str, hosts: list[str]) -> None:
    ref = si.content.searchIndex.FindByInventoryPath(f"dc1/host/{cluster}")
    members = [vim.HostSystem(sim.host(h).moid, si._stub) for h in hosts]
    spec = vim.cluster.ConfigSpecEx(groupSpec=[vim.cluster.GroupSpec(
        operation="add", info=vim.cluster.HostGroup(name=name, host=members))])
    WaitForTask(ref.ReconfigureComputeResource_Task(spec, True))


def test_host_group_pin_follows_the_vm(two_computes, tls_sim, ctx):
    src, dst, sim = two_computes
    si = connect(tls_sim)
    _host_group(si, sim, "cluster-a", "gpu-hosts", ["esx-a3"])
    _host_group(si, sim, "cluster-b", "gpu-hosts", ["esx-b3"])
    inst = _instance(src, ctx, memory_mb=2 * GB,
                     extra_specs={"vsphere:host_group": "gpu-hosts"})
    assert _host(sim, inst) is sim.host("esx-a3")
    assert NovaFlow(ctx, src, dst).run(inst) == [("post", "compute-2")]
    assert _host(sim, inst) is sim.host("esx-b3")
    groups_b = {g.name: g for g in sim.cluster("cluster-b").groups}
    assert {v._moId for v in groups_b["nova-hg-gpu-hosts"].vm} == {sim.vm(inst.uuid).moid}
    assert _rules(sim, "cluster-b")["nova-hg-gpu-hosts"].affineHostGroupName == "gpu-hosts"
    assert "nova-hg-gpu-hosts" not in _rules(sim, "cluster-a")
    assert "nova-hg-gpu-hosts" not in {g.name for g in sim.cluster("cluster-a").groups}


def test_precheck_refuses_a_target_lacking_the_host_group(two_computes, tls_sim, ctx):
    src, dst, sim = two_computes
    _host_group(connect(tls_sim), sim, "cluster-a", "gpu-hosts", ["esx-a3"])
    inst = _instance(src, ctx, memory_mb=2 * GB,
                     extra_specs={"vsphere:host_group": "gpu-hosts"})
    with pytest.raises(exception.MigrationPreCheckError) as err:
        NovaFlow(ctx, src, dst).check(inst)
    assert "gpu-hosts" in str(err.value)


def test_precheck_refuses_a_target_where_no_host_fits(two_computes, ctx):
    src, dst, sim = two_computes
    node_b = dst.get_available_nodes()[0]
    # 300 GiB: only esx-a3 (384 GiB) runs it in cluster-a; in cluster-b the
    # 512 GiB hosts keep 212 GiB free after their fillers, the others have 192.
    inst = _instance(src, ctx, vcpus=8, memory_mb=300 * GB, root_gb=1)
    for name in ("esx-b1", "esx-b2"):
        filler = make_instance(node_b, vcpus=8, memory_mb=300 * GB, root_gb=1,
                               name=f"filler-{name}")
        dst.spawn(ctx, filler, None, [], None, {}, network_info=[])
        assert _host(sim, filler).name in ("esx-b1", "esx-b2")
    before = (_host(sim, inst), sim.vm(inst.uuid).power_state)
    with pytest.raises(exception.MigrationPreCheckError) as err:
        NovaFlow(ctx, src, dst).check(inst)
    assert "cluster-b" in str(err.value)
    assert (_host(sim, inst), sim.vm(inst.uuid).power_state) == before
    assert inst.uuid not in dst.services.drs.claims(dst.services.nodes[node_b].moref)


def test_precheck_refuses_the_instances_own_cluster_and_foreign_targets(vsphere, ctx):
    drv, sim_server = vsphere
    node_a, node_b = node_of(drv, "cluster-a"), node_of(drv, "cluster-b")
    inst = make_instance(node_a, memory_mb=2 * GB)
    drv.spawn(ctx, inst, None, [], None, {}, network_info=[])
    own = obj_base.obj_to_primitive(objects.ComputeNode(host="compute-1",
                                                        hypervisor_hostname=node_a))
    with pytest.raises(exception.MigrationPreCheckError) as err:
        drv.check_can_live_migrate_destination(ctx, inst, own, own, False, False)
    assert "DRS" in str(err.value)
    other = obj_base.obj_to_primitive(objects.ComputeNode(
        host="compute-1", hypervisor_hostname="domain-c99.elsewhere"))
    with pytest.raises(exception.MigrationPreCheckError):
        drv.check_can_live_migrate_destination(ctx, inst, own, other, False, False)
    foreign = migrate_data_obj.VMwareLiveMigrateData(
        cluster_name=f"{drv.services.nodes[node_b].moref}.another-vcenter", datastore_regex="")
    with pytest.raises(exception.MigrationPreCheckError) as err:
        drv.check_can_live_migrate_source(ctx, inst, foreign, {"block_device_mapping": []})
    assert "vCenter" in str(err.value)
    # Placement allocated cluster-a's node while Nova would record cluster-b's.
    data = migrate_data_obj.VMwareLiveMigrateData(cluster_name=node_b, datastore_regex="")
    wrong = {u: {} for u, n in drv.get_nodenames_by_uuid().items() if n == node_a}
    with pytest.raises(exception.MigrationPreCheckError):
        drv.check_source_migrate_data_at_dest(ctx, inst, data, None, None, wrong)
    with pytest.raises(NotImplementedError, match="vMotion"):
        drv.live_migration_force_complete(inst)
    assert sim_server.simulator.vm(inst.uuid).cluster.name == "cluster-a"


def _run_in_thread(flow, inst):
    data = flow.check(inst)
    data = flow.dst.pre_live_migration(flow.ctx, inst, {"block_device_mapping": []},
                                       inst.get_network_info(), None, data)
    data.migration = flow.migration(inst)
    errors = []

    def run():
        try:
            flow.src.live_migration(flow.ctx, inst, "compute-2", flow.post, flow.recover,
                                    False, data)
        except Exception as exc:  # reported to the test
            errors.append(exc)

    thread = threading.Thread(target=run)
    thread.start()
    return thread, errors


def test_abort_during_the_vmotion_leaves_the_vm_on_the_source(two_computes, ctx):
    src, dst, sim = two_computes
    inst = _instance(src, ctx, memory_mb=4 * GB)
    vm = sim.vm(inst.uuid)
    where = (vm.host, vm.pool, [d.name for d in vm.datastores])
    with pytest.raises(exception.NovaException, match="no live migration"):
        src.live_migration_abort(inst)
    sim.faults.add_latency("RelocateVM_Task", 30)  # a long vMotion
    flow = NovaFlow(ctx, src, dst)
    thread, errors = _run_in_thread(flow, inst)
    ops = src.operations.live_migrations
    deadline = time.monotonic() + 10
    while getattr(ops._inflight.get(inst.uuid), "task", None) is None:
        assert time.monotonic() < deadline, "the vMotion did not start"
        time.sleep(0.01)
    assert vm.power_state == "poweredOn"
    started = time.monotonic()
    src.live_migration_abort(inst)
    thread.join(10)
    assert not thread.is_alive() and not errors
    assert time.monotonic() - started < 5  # CancelTask stops it, not its 30 s
    assert flow.calls == [("recover", "cancelled")]
    assert (vm.host, vm.pool, [d.name for d in vm.datastores]) == where
    assert vm.power_state == "poweredOn"
    assert not sim.files.exists("shared-b", inst.uuid)
    assert inst.uuid not in ops._inflight


def test_failed_vmotion_rolls_back_and_leaves_no_trace_at_the_destination(two_computes, ctx):
    src, dst, sim = two_computes
    members = [make_instance(node_of(src, "cluster-a"), memory_mb=2 * GB, name=f"w-{i}")
               for i in range(2)]
    group = _group(ctx, "anti-affinity", members)
    for inst in members:
        inst.info_cache = objects.InstanceInfoCache(network_info=network_model.NetworkInfo())
        src.spawn(ctx, inst, None, [], None, {}, network_info=[])
    inst = members[0]
    vm = sim.vm(inst.uuid)
    where = (vm.host, vm.pool, [d.name for d in vm.datastores], vm.power_state)
    b_config = (list(sim.cluster("cluster-b").rules), list(sim.cluster("cluster-b").groups))
    sim.faults.fail_next("RelocateVM_Task", "MigrationNotReady")
    flow = NovaFlow(ctx, src, dst)
    assert flow.run(inst) == [("recover", "failed")]  # returns: the instance stays ACTIVE
    assert (vm.host, vm.pool, [d.name for d in vm.datastores], vm.power_state) == where
    assert (list(sim.cluster("cluster-b").rules), list(sim.cluster("cluster-b").groups)) \
        == b_config
    assert {v._moId for v in _rules(sim, "cluster-a")[f"nova-sg-{group.uuid}"].vm} == \
        {sim.vm(m.uuid).moid for m in members}
    assert not sim.files.exists("shared-b", inst.uuid)
    for drv in (src, dst):
        for ref in [*src.services.nodes.values(), *dst.services.nodes.values()]:
            assert inst.uuid not in drv.services.drs.claims(ref.moref)
    # A rollback on the destination never destroys the (only) VM.
    dst.rollback_live_migration_at_destination(ctx, inst, [], None, True, flow.migrate_data)
    assert src.instance_exists(inst) and vm.power_state == "poweredOn"


def test_network_missing_in_the_target_cluster_is_refused_before_moving(two_computes, ctx):
    src, dst, sim = two_computes
    inst = _instance(src, ctx, network_info=_vifs("public"), memory_mb=2 * GB)
    with sim.registry.lock:
        for host in sim.cluster("cluster-b").hosts:
            host.networks = [n for n in host.networks if n.name != "public"]
        sim.registry.touch(*sim.cluster("cluster-b").hosts)  # as vCenter would report it
    flow = NovaFlow(ctx, src, dst)
    data = flow.check(inst)
    with pytest.raises(exception.MigrationPreCheckError, match="public"):
        dst.pre_live_migration(ctx, inst, {"block_device_mapping": []},
                               inst.get_network_info(), None, data)
    assert sim.vm(inst.uuid).cluster is sim.cluster("cluster-a")


def test_nics_move_to_the_networks_of_the_destination_bindings(two_computes, ctx):
    """The target cluster's hosts are not on the source's port group: the port bindings on
    the destination name another one (and a reserved port), and the vMotion moves the NIC
    there."""
    src, dst, sim = two_computes
    info = _vifs("public", "br-int")
    inst = _instance(src, ctx, network_info=info, memory_mb=2 * GB)
    with sim.registry.lock:
        for host in sim.cluster("cluster-b").hosts:
            host.networks = [n for n in host.networks if n.name != "public"]
        sim.registry.touch(*sim.cluster("cluster-b").hosts)  # as vCenter would report it
    br_int = sim.find_entity("br-int", "DistributedVirtualPortgroup")
    port_key = br_int.ports()[-1].key
    moved, kept = info
    bindings = {moved["id"]: ("dvs", {"dvs_id": br_int.switch.uuid, "pg_id": br_int.key,
                                      "dvs_port_key": port_key}),
                kept["id"]: ("dvs", {"dvs_port_group_name": "br-int"})}
    vm = sim.vm(inst.uuid)
    before = {c.macAddress: (c.key, c.backing.port.portKey) for c in vm.config.hardware.device
              if isinstance(c, vim.vm.device.VirtualEthernetCard)}
    # Without the destination's bindings the target cluster lacks the network.
    with pytest.raises(exception.MigrationPreCheckError, match="public"):
        NovaFlow(ctx, src, dst).run(inst)
    assert NovaFlow(ctx, src, dst).run(inst, dest_bindings=bindings) == \
        [("post", "compute-2")]
    assert vm.cluster is sim.cluster("cluster-b")
    cards = {c.macAddress: c for c in vm.config.hardware.device
             if isinstance(c, vim.vm.device.VirtualEthernetCard)}
    assert (cards[moved["address"]].backing.port.portgroupKey,
            cards[moved["address"]].backing.port.portKey) == (br_int.key, port_key)
    # The NIC already on br-int keeps its port; both keep their device keys.
    assert (cards[kept["address"]].key, cards[kept["address"]].backing.port.portKey) == \
        before[kept["address"]]
    assert cards[moved["address"]].key == before[moved["address"]][0]
    assert [n.name for n in vm.networks] == ["br-int"]


def test_chosen_host_without_the_instances_network_fails_cleanly(two_computes, ctx):
    src, dst, sim = two_computes
    inst = _instance(src, ctx, network_info=_vifs("public"), memory_mb=2 * GB)
    flow = NovaFlow(ctx, src, dst)
    favourite = _drs_choice(dst, flow.dst_node, inst, ["shared-b", "shared-all"])
    # Only a host DRS does not favour has the port group: the cluster passes
    # the destination's checks, the chosen host does not.
    for host in sim.cluster("cluster-b").hosts:
        if host.moid == favourite:
            host.networks = [n for n in host.networks if n.name != "public"]
    vm = sim.vm(inst.uuid)
    where = (vm.host, vm.pool, [d.name for d in vm.datastores])
    assert flow.run(inst) == [("recover", "failed")]
    assert (vm.host, vm.pool, [d.name for d in vm.datastores]) == where
    assert vm.power_state == "poweredOn"


def test_vcenter_mode_leaves_the_target_host_to_vcenter_drs(two_computes, tls_sim,
                                                            conf_overrides, ctx):
    src, dst, sim = two_computes
    si = connect(tls_sim)
    for name in ("cluster-a", "cluster-b"):
        ref = si.content.searchIndex.FindByInventoryPath(f"dc1/host/{name}")
        WaitForTask(ref.ReconfigureComputeResource_Task(vim.cluster.ConfigSpecEx(
            drsConfig=vim.cluster.DrsConfigInfo(enabled=True,
                                                defaultVmBehavior="fullyAutomated")), True))
    conf_overrides("vsphere_drs", mode="vcenter")
    inst = _instance(src, ctx, memory_mb=8 * GB, root_gb=2)
    node_b = dst.get_available_nodes()[0]
    # esx-b2 has the most free memory: vCenter's DRS (most free memory) takes it.
    filler = make_instance(node_b, memory_mb=64 * GB, root_gb=1, name="filler")
    dst.spawn(ctx, filler, None, [], None, {}, network_info=[])
    assert _host(sim, filler).name in ("esx-b1", "esx-b2")
    roomiest = ({"esx-b1", "esx-b2"} - {_host(sim, filler).name}).pop()
    assert NovaFlow(ctx, src, dst).run(inst) == [("post", "compute-2")]
    vm = sim.vm(inst.uuid)
    assert vm.host.name == roomiest and vm.power_state == "poweredOn"
    assert vm.datastores[0].name in ("shared-b", "shared-all")
    for drv in (src, dst):
        assert not drv.services.drs.claims(dst.services.nodes[node_b].moref)  # our DRS took no part


def test_vmotion_outliving_the_api_timeout_is_cancelled_and_fails(two_computes,
                                                                   conf_overrides, ctx):
    src, dst, sim = two_computes
    inst = _instance(src, ctx, memory_mb=2 * GB)
    vm = sim.vm(inst.uuid)
    where = (vm.host, vm.pool, [d.name for d in vm.datastores])
    sim.faults.add_latency("RelocateVM_Task", 30)
    conf_overrides("vsphere", api_timeout=1.0)
    started = time.monotonic()
    assert NovaFlow(ctx, src, dst).run(inst) == [("recover", "failed")]
    assert time.monotonic() - started < 15
    assert (vm.host, vm.pool, [d.name for d in vm.datastores]) == where
    relocations = [t for t in sim.tasks.recent if t.method == "RelocateVM_Task"]
    assert relocations and relocations[-1].cancelled  # not left running behind Nova's back
