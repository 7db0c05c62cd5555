"""The simulator's storage policy service (SPBM, /pbm) through pyVmomi's pbm stubs, as
vCenter's clients use it: the vim25 session's cookie in the SOAP header, policies from the
inventory, datastores matching them, and the policies VMs and disks were given."""

from __future__ import annotations

import http.cookies

import pytest
import requests
from pyVmomi import SoapAdapter, pbm, vim, vmodl

from nova_vsphere_driver.simulator import Simulator, SimulatorServer, inventory
from tests.fixtures import connect
from tests.unit.simulator.helpers import Dev, bind, dc1, fault_of, run, vm_spec

STORAGE = pbm.profile.ResourceType(resourceType="STORAGE")


def _pbm(server, si=None):
    """The SPBM service content, on a stub carrying ``si``'s session (None: no session)."""
    context = {}
    if si is not None:
        jar = http.cookies.SimpleCookie()
        jar.load(si._stub.cookie)
        context["vcSessionCookie"] = jar["vmware_soap_session"].value
    stub = SoapAdapter.SoapStubAdapter(url=f"http://127.0.0.1:{server.port}/pbm/sdk",
                                       version="pbm.version.version11",
                                       requestContext=context)
    return pbm.ServiceInstance("ServiceInstance", stub).RetrieveContent()


def _ids(server, si) -> dict[str, str]:
    manager = _pbm(server, si).profileManager
    return {p.name: p.profileId.uniqueId
            for p in manager.RetrieveContent(manager.QueryProfile(resourceType=STORAGE))}


def _profile(profile_id: str) -> list:
    return [vim.vm.DefinedProfileSpec(profileId=profile_id)]


def _entity(kind: str, key: str) -> pbm.ServerObjectRef:
    return pbm.ServerObjectRef(objectType=kind, key=key)


def _create(si, sim, name: str, home: str | None, disk: str | None, host: str = "esx-a1",
            datastore: str = "shared-a"):
    spec = vm_spec(name, datastore, disk_gb=1)
    if home is not None:
        spec.vmProfile = _profile(home)
    if disk is not None:
        spec.deviceChange[1].profile = _profile(disk)
    host_obj = sim.host(host)
    return dc1(si).vmFolder.CreateVM_Task(spec, bind(si, host_obj.cluster.resource_pool),
                                          bind(si, host_obj))


def _disk(vm):
    return next(d for d in vm.config.hardware.device if isinstance(d, Dev.VirtualDisk))


def test_policies_their_rules_and_the_datastores_they_match(sim_server, si):
    content = _pbm(sim_server, si)
    assert content.aboutInfo.name == "PBM"
    profiles = content.profileManager.RetrieveContent(
        content.profileManager.QueryProfile(resourceType=STORAGE))
    gold = next(p for p in profiles if p.name == "gold")
    [rules] = gold.constraints.subProfiles
    [rule] = rules.capability
    assert rule.id.namespace == "http://www.vmware.com/storage/tag"
    assert rule.constraint[0].propertyInstance[0].value.values == ["gold"]
    sim = sim_server.simulator
    stores = {d.name: d.moid for d in sim.datastores.values()}
    hubs = [pbm.placement.PlacementHub(hubType="Datastore", hubId=m) for m in stores.values()]
    matching = content.placementSolver.QueryMatchingHub(hubsToSearch=hubs,
                                                        profile=gold.profileId)
    assert {h.hubId for h in matching} == {stores["shared-a"], stores["shared-b"]}
    # Without hubs: every datastore is searched.
    assert {h.hubId for h in content.placementSolver.QueryMatchingHub(
        profile=gold.profileId)} == {stores["shared-a"], stores["shared-b"]}
    checked = content.placementSolver.CheckCompatibility(hubsToSearch=hubs,
                                                         profile=gold.profileId)
    assert {r.hub.hubId for r in checked if not r.error} == \
        {stores["shared-a"], stores["shared-b"]}
    assert [r.hub.hubId for r in checked if r.error] == [stores["shared-all"]]
    with pytest.raises(vmodl.fault.InvalidArgument):
        content.placementSolver.QueryMatchingHub(
            profile=pbm.profile.ProfileId(uniqueId="no-such-policy"))


def test_spbm_needs_the_vim25_session(sim_server, si):
    content = _pbm(sim_server)  # the service content is public, as vCenter's
    with pytest.raises(vim.fault.NotAuthenticated):
        content.profileManager.QueryProfile(resourceType=STORAGE)
    # Each API on its own endpoint.
    body = ('<?xml version="1.0"?><soapenv:Envelope xmlns:soapenv='
            '"http://schemas.xmlsoap.org/soap/envelope/"><soapenv:Body>'
            '<RetrieveServiceContent xmlns="urn:vim25"><_this type="ServiceInstance">'
            'ServiceInstance</_this></RetrieveServiceContent></soapenv:Body>'
            '</soapenv:Envelope>')
    wrong = requests.post(f"http://127.0.0.1:{sim_server.port}/pbm/sdk", data=body,
                          headers={"Content-Type": "text/xml"}, timeout=10)
    assert wrong.status_code == 500 and "is not a method of urn:pbm" in wrong.text


def test_vms_and_disks_keep_the_policies_their_specs_gave_them(sim_server, si):
    sim = sim_server.simulator
    ids = _ids(sim_server, si)
    manager = _pbm(sim_server, si).profileManager
    vm = run(_create(si, sim, "web", ids["gold"], ids["nfs"]))
    disk_key = f"{vm._moId}:{_disk(vm).key}"
    assert [p.uniqueId for p in manager.QueryAssociatedProfile(
        _entity("virtualMachine", vm._moId))] == [ids["gold"]]
    assert [p.uniqueId for p in manager.QueryAssociatedProfile(
        _entity("virtualDiskId", disk_key))] == [ids["nfs"]]
    results = manager.QueryAssociatedProfiles(
        [_entity("virtualMachine", vm._moId), _entity("virtualMachine", "vm-404")])
    assert [[p.uniqueId for p in r.profileId] for r in results] == [[ids["gold"]], []]
    assert {(e.objectType, e.key) for e in manager.QueryAssociatedEntity(
        pbm.profile.ProfileId(uniqueId=ids["nfs"]))} == {("virtualDiskId", disk_key)}
    # Reconfigured: the VM's home loses its policy, a new disk gets one.
    run(vm.ReconfigVM_Task(vim.vm.ConfigSpec(
        vmProfile=[vim.vm.EmptyProfileSpec()],
        deviceChange=[Dev.VirtualDeviceSpec(
            operation="add", fileOperation="create", profile=_profile(ids["gold"]),
            device=Dev.VirtualDisk(key=-1, controllerKey=_disk(vm).controllerKey, unitNumber=1,
                                   capacityInKB=1024,
                                   backing=Dev.VirtualDisk.FlatVer2BackingInfo(
                                       fileName="[shared-a]", diskMode="persistent")))])))
    assert manager.QueryAssociatedProfile(_entity("virtualMachine", vm._moId)) == []
    second = next(d for d in vm.config.hardware.device
                  if isinstance(d, Dev.VirtualDisk) and d.key != _disk(vm).key)
    assert [p.uniqueId for p in manager.QueryAssociatedProfile(
        _entity("virtualDiskId", f"{vm._moId}:{second.key}"))] == [ids["gold"]]
    # A relocation may give the VM's home a policy again.
    run(vm.RelocateVM_Task(vim.vm.RelocateSpec(profile=_profile(ids["nfs"]))))
    assert [p.uniqueId for p in manager.QueryAssociatedProfile(
        _entity("virtualMachine", vm._moId))] == [ids["nfs"]]


def test_a_policy_that_does_not_exist_is_refused_and_nothing_is_made(sim_server, si):
    sim = sim_server.simulator
    ids = _ids(sim_server, si)
    for home, disk in (("no-such-policy", None), (ids["gold"], "no-such-policy")):
        fault = fault_of(_create(si, sim, "refused", home, disk))
        assert isinstance(fault, vmodl.fault.InvalidArgument)
        assert "no-such-policy" in fault.msg
    assert not sim.vms()
    assert not sim.files.exists("shared-a", "refused")


def test_the_wsdl_set_names_this_server(sim_server):
    base = f"http://127.0.0.1:{sim_server.port}/pbm"
    service = requests.get(f"{base}/pbmService.wsdl", timeout=10)
    assert service.status_code == 200
    assert f'location="{base}/sdk"' in service.text
    assert 'location="pbm.wsdl"' in service.text
    assert requests.get(f"{base}/pbm-types.xsd", timeout=10).status_code == 200
    assert requests.get(f"{base}/other.wsdl", timeout=10).status_code == 404


@pytest.mark.parametrize("policies,error", [
    ([{"name": "x"}, {"name": "x"}], "duplicate storage policy 'x'"),
    ([{"name": "x", "datastores": ["nowhere"]}], r"unknown datastores \['nowhere'\]"),
    ([{"description": "no name"}], "storage_policies.0.: missing required key 'name'"),
])
def test_inventory_errors_name_the_policy(policies, error):
    data = inventory.default_inventory()
    data["storage_policies"] = policies
    with pytest.raises(inventory.InventoryError, match=error):
        Simulator(data)


def test_associations_survive_a_restart(tmp_path):
    server = SimulatorServer(Simulator(), state_file=str(tmp_path / "state.json"),
                             save_interval=3600)
    with server:
        si = connect(server)
        ids = _ids(server, si)
        vm = run(_create(si, server.simulator, "kept", ids["gold"], ids["gold"]))
        server.restart()
        si = connect(server)
        manager = _pbm(server, si).profileManager
        assert {(e.objectType, e.key) for e in manager.QueryAssociatedEntity(
            pbm.profile.ProfileId(uniqueId=ids["gold"]))} == {
            ("virtualMachine", vm._moId),
            ("virtualDiskId", f"{vm._moId}:{_disk(vim.VirtualMachine(vm._moId, si._stub)).key}")}
