"""The simulator as a vim25 endpoint: connection, sessions, property collector, faults."""

from __future__ import annotations

import ssl
import threading
import time

import pytest
import requests
from pyVim.task import WaitForTask
from pyVmomi import SoapAdapter, vim, vmodl

from nova_vsphere_driver.simulator import soap
from nova_vsphere_driver.simulator.faults import make_fault
from tests.fixtures import connect, running_simulator

PC = vmodl.query.PropertyCollector


def _host_view_spec(view, paths=("name",)):
    return PC.FilterSpec(
        objectSet=[PC.ObjectSpec(obj=view, skip=True, selectSet=[
            PC.TraversalSpec(name="view", type=vim.view.ContainerView, path="view", skip=False)])],
        propSet=[PC.PropertySpec(type=vim.HostSystem, pathSet=list(paths))])


def _props(content):
    return {p.name: p.val for p in content.propSet}


# -- connection and sessions ---------------------------------------------------


def test_smartconnect_over_http(si, sim):
    about = si.content.about
    assert about.apiType == "VirtualCenter"
    assert about.apiVersion == soap.API_VERSION
    assert si.content.sessionManager.currentSession.userName == sim.username
    names = sorted(c.name for c in si.content.rootFolder.childEntity[0].hostFolder.childEntity)
    assert names == ["cluster-a", "cluster-b"]


def test_smartconnect_over_https_verifies_the_generated_ca():
    with running_simulator(tls=True) as server:
        assert server.url.startswith("https://127.0.0.1:")
        si = connect(server)
        assert si.content.about.name == "VMware vCenter Server"
        # A client that does not trust the simulator's CA is refused.
        with pytest.raises(ssl.SSLError):
            context = ssl.create_default_context()
            with context.wrap_socket(__import__("socket").create_connection(
                    ("127.0.0.1", server.port)), server_hostname="127.0.0.1"):
                pass


def test_wrong_password_is_invalid_login(sim_server):
    sim = sim_server.simulator
    from pyVim.connect import SmartConnect

    with pytest.raises(vim.fault.InvalidLogin):
        SmartConnect(host="127.0.0.1", port=sim_server.port, user=sim.username,
                     pwd="wrong", protocol="http")
    assert sim.sessions == {}


def test_calls_without_a_session_are_not_authenticated(sim_server):
    # A negative port means plain HTTP to pyVmomi.
    stub = SoapAdapter.SoapStubAdapter(host="127.0.0.1", port=-sim_server.port,
                                       version=soap.VERSION, poolSize=0)
    si = vim.ServiceInstance("ServiceInstance", stub)
    # RetrieveServiceContent needs no session, as on vCenter ...
    content = si.RetrieveContent()
    # ... but reading the inventory does.
    with pytest.raises(vim.fault.NotAuthenticated):
        content.rootFolder.childEntity  # noqa: B018


def test_expired_sessions_must_log_in_again(si, sim):
    assert si.content.rootFolder.name == "Datacenters"
    sim.expire_sessions()
    with pytest.raises(vim.fault.NotAuthenticated):
        si.content.rootFolder.childEntity  # noqa: B018


def test_idle_sessions_expire():
    with running_simulator(session_idle_timeout=0.2) as server:
        si = connect(server)
        key = si.content.sessionManager.currentSession.key
        assert si.content.sessionManager.SessionIsActive(key, server.simulator.username)
        time.sleep(0.4)
        with pytest.raises(vim.fault.NotAuthenticated):
            si.content.rootFolder.childEntity  # noqa: B018


def test_session_is_active_and_logout(si, sim):
    sm = si.content.sessionManager
    key = sm.currentSession.key
    assert sm.SessionIsActive(key, sim.username) is True
    assert sm.SessionIsActive("no-such-session", sim.username) is False
    sm.Logout()
    assert key not in sim.sessions


def test_service_versions_and_wsdl_endpoints(sim_server):
    base = f"http://127.0.0.1:{sim_server.port}/sdk"
    versions = requests.get(base + "/vimServiceVersions.xml", timeout=10)
    assert versions.status_code == 200
    assert f"<version>{soap.API_VERSION}</version>" in versions.text
    assert requests.get(base + "/no-such-file.wsdl", timeout=10).status_code == 404


# -- property collector -------------------------------------------------------------


def test_container_view_and_paging(si, sim):
    content = si.content
    view = content.viewManager.CreateContainerView(content.rootFolder, [vim.HostSystem], True)
    spec = _host_view_spec(view, ("name", "summary.hardware.memorySize",
                                  "runtime.connectionState"))
    first = content.propertyCollector.RetrievePropertiesEx([spec], PC.RetrieveOptions(maxObjects=3))
    assert len(first.objects) == 3 and first.token
    rest = []
    token = first.token
    while token:
        page = content.propertyCollector.ContinueRetrievePropertiesEx(token)
        rest.extend(page.objects)
        token = page.token
    objects = first.objects + rest
    names = sorted(_props(o)["name"] for o in objects)
    assert names == sorted(h.name for h in sim.hosts())
    a3 = next(o for o in objects if _props(o)["name"] == "esx-a3")
    assert _props(a3)["summary.hardware.memorySize"] == 393216 * 1024 * 1024
    assert _props(a3)["runtime.connectionState"] == "connected"
    with pytest.raises(vmodl.fault.InvalidArgument):
        content.propertyCollector.ContinueRetrievePropertiesEx(first.token)
    view.DestroyView()
    assert view._moId not in sim.registry


def test_cancel_retrieve_drops_the_token(si):
    content = si.content
    view = content.viewManager.CreateContainerView(content.rootFolder, [vim.HostSystem], True)
    first = content.propertyCollector.RetrievePropertiesEx(
        [_host_view_spec(view)], PC.RetrieveOptions(maxObjects=1))
    content.propertyCollector.CancelRetrievePropertiesEx(first.token)
    with pytest.raises(vmodl.fault.InvalidArgument):
        content.propertyCollector.ContinueRetrievePropertiesEx(first.token)


def test_traversal_follows_specs_by_type_and_name_without_looping(si, sim):
    """oslo.vmware's recursive specs cycle (resourcePool -> vm -> resourcePool)."""
    content = si.content
    rp_to_rp = PC.TraversalSpec(name="rpToRp", type=vim.ResourcePool, path="resourcePool",
                                skip=False, selectSet=[PC.SelectionSpec(name="rpToRp"),
                                                       PC.SelectionSpec(name="rpToVm")])
    rp_to_vm = PC.TraversalSpec(name="rpToVm", type=vim.ResourcePool, path="vm", skip=False,
                                selectSet=[PC.SelectionSpec(name="vmToRp")])
    vm_to_rp = PC.TraversalSpec(name="vmToRp", type=vim.VirtualMachine, path="resourcePool",
                                skip=False, selectSet=[PC.SelectionSpec(name="rpToVm")])
    cr_to_rp = PC.TraversalSpec(name="crToRp", type=vim.ComputeResource, path="resourcePool",
                                skip=False, selectSet=[PC.SelectionSpec(name="rpToRp"),
                                                       PC.SelectionSpec(name="rpToVm")])
    dc_to_hf = PC.TraversalSpec(name="dcToHf", type=vim.Datacenter, path="hostFolder",
                                skip=False, selectSet=[PC.SelectionSpec(name="visitFolders")])
    visit = PC.TraversalSpec(name="visitFolders", type=vim.Folder, path="childEntity",
                             skip=False, selectSet=[PC.SelectionSpec(name="visitFolders"),
                                                    PC.SelectionSpec(name="dcToHf"),
                                                    PC.SelectionSpec(name="crToRp")])
    spec = PC.FilterSpec(
        objectSet=[PC.ObjectSpec(obj=content.rootFolder, skip=False,
                                 selectSet=[visit, dc_to_hf, cr_to_rp, rp_to_rp, rp_to_vm,
                                            vm_to_rp])],
        propSet=[PC.PropertySpec(type=vim.ResourcePool, pathSet=["name", "owner"]),
                 PC.PropertySpec(type=vim.ClusterComputeResource, all=True)])
    result = content.propertyCollector.RetrieveProperties([spec])
    kinds = sorted(type(o.obj).__name__ for o in result)
    assert kinds == ["vim.ClusterComputeResource"] * 2 + ["vim.ResourcePool"] * 2
    cluster = next(o for o in result if isinstance(o.obj, vim.ClusterComputeResource))
    assert {"name", "host", "resourcePool", "summary", "configurationEx"} <= set(_props(cluster))


def test_invalid_property_and_missing_object_faults(si, sim):
    content = si.content
    host = sim.host("esx-a1").ref
    spec = PC.FilterSpec(objectSet=[PC.ObjectSpec(obj=host)],
                         propSet=[PC.PropertySpec(type=vim.HostSystem, pathSet=["noSuchProp"])])
    with pytest.raises(vmodl.query.InvalidProperty):
        content.propertyCollector.RetrievePropertiesEx([spec], PC.RetrieveOptions())
    gone = vim.VirtualMachine("vm-999")
    spec = PC.FilterSpec(objectSet=[PC.ObjectSpec(obj=gone)],
                         propSet=[PC.PropertySpec(type=vim.VirtualMachine, pathSet=["name"])])
    with pytest.raises(vmodl.fault.ManagedObjectNotFound):
        content.propertyCollector.RetrievePropertiesEx([spec], PC.RetrieveOptions())
    spec.reportMissingObjectsInResults = True
    result = content.propertyCollector.RetrievePropertiesEx([spec], PC.RetrieveOptions())
    assert result.objects[0].obj._moId == "vm-999"
    assert isinstance(result.objects[0].missingSet[0].fault, vmodl.fault.ManagedObjectNotFound)


def test_nothing_selected_returns_no_result(si, sim):
    content = si.content
    view = content.viewManager.CreateContainerView(content.rootFolder, [vim.VirtualMachine], True)
    spec = PC.FilterSpec(
        objectSet=[PC.ObjectSpec(obj=view, skip=True, selectSet=[
            PC.TraversalSpec(name="v", type=vim.view.ContainerView, path="view")])],
        propSet=[PC.PropertySpec(type=vim.VirtualMachine, pathSet=["name"])])
    assert content.propertyCollector.RetrievePropertiesEx([spec], PC.RetrieveOptions()) is None


def test_wait_for_updates_is_versioned_and_incremental(si, sim):
    content = si.content
    pc = content.propertyCollector.CreatePropertyCollector()
    host = sim.host("esx-b3")
    flt = pc.CreateFilter(PC.FilterSpec(
        objectSet=[PC.ObjectSpec(obj=host.ref)],
        propSet=[PC.PropertySpec(type=vim.HostSystem,
                                 pathSet=["name", "runtime.connectionState"])]), True)
    opts = PC.WaitOptions(maxWaitSeconds=0)
    first = pc.WaitForUpdatesEx("", opts)
    update = first.filterSet[0].objectSet[0]
    assert update.kind == "enter"
    assert {c.name for c in update.changeSet} == {"name", "runtime.connectionState"}
    assert pc.WaitForUpdatesEx(first.version, opts) is None

    def later():
        time.sleep(0.2)
        sim.disconnect_host("esx-b3")

    threading.Thread(target=later).start()
    second = pc.WaitForUpdatesEx(first.version, PC.WaitOptions(maxWaitSeconds=10))
    change = second.filterSet[0].objectSet[0]
    assert change.kind == "modify"
    assert [(c.name, c.val) for c in change.changeSet] == [("runtime.connectionState",
                                                           "disconnected")]
    assert int(second.version) > int(first.version)
    flt.Destroy()
    assert flt._moId not in sim.registry
    pc.Destroy()


def test_pyvim_wait_for_task_sees_the_task_complete(si, sim):
    sim.faults.add_latency("ExitMaintenanceMode_Task", 0.2)
    host = sim.host("esx-a4")
    host.in_maintenance = True
    task = host.ref
    task = vim.HostSystem(host.moid, si._stub).ExitMaintenanceMode_Task(0)
    assert task.info.state in ("queued", "running")
    assert WaitForTask(task) == "success"
    assert task.info.descriptionId == "HostSystem.exitMaintenanceMode"
    assert host.in_maintenance is False


# -- faults and fault injection ----------------------------------------------------


def test_injected_call_fault_reaches_the_client(si, sim):
    sim.faults.fail_next("RetrievePropertiesEx", make_fault("InvalidState", "injected"),
                         in_call=True)
    host = vim.HostSystem(sim.host("esx-a1").moid, si._stub)
    with pytest.raises(vim.fault.InvalidState) as exc:
        si.content.propertyCollector.RetrievePropertiesEx(
            [PC.FilterSpec(objectSet=[PC.ObjectSpec(obj=host)],
                           propSet=[PC.PropertySpec(type=vim.HostSystem, pathSet=["name"])])],
            PC.RetrieveOptions())
    assert exc.value.msg == "injected"
    # Only the next call fails.
    assert host.name == "esx-a1"


def test_unknown_fault_names_are_rejected():
    with pytest.raises(ValueError, match="NoSuchFault"):
        make_fault("NoSuchFault")


def test_method_on_wrong_object_type(si, sim):
    host = vim.VirtualMachine(sim.host("esx-a1").moid, si._stub)
    with pytest.raises(vmodl.fault.MethodNotFound):
        host.PowerOnVM_Task()


def test_malformed_request_gets_a_soap_fault(sim_server):
    resp = requests.post(f"http://127.0.0.1:{sim_server.port}/sdk", data=b"<not-soap",
                         headers={"Content-Type": "text/xml"}, timeout=10)
    assert resp.status_code == 500
    assert "<soapenv:Fault>" in resp.text and "InvalidRequest" in resp.text


def test_control_endpoint_requires_credentials_and_injects(sim_server):
    sim = sim_server.simulator
    url = f"http://127.0.0.1:{sim_server.port}/simulator/control"
    assert requests.post(url, json={"action": "stats"}, timeout=10).status_code == 401
    auth = (sim.username, sim.password)
    resp = requests.post(url, json={"action": "disconnect_host", "host": "esx-a2"}, auth=auth,
                         timeout=10)
    assert resp.status_code == 200
    assert sim.host("esx-a2").connection_state == "disconnected"
    resp = requests.post(url, json={"action": "fail_next", "method": "X", "fault": "Bogus"},
                         auth=auth, timeout=10)
    assert resp.status_code == 400 and "Bogus" in resp.json()["error"]


def test_restart_keeps_state_but_drops_sessions(sim_server):
    si = connect(sim_server)
    sim = sim_server.simulator
    sim.host("esx-b1").in_maintenance = True
    port = sim_server.port
    sim_server.restart()
    assert sim_server.port == port
    with pytest.raises(vim.fault.NotAuthenticated):
        si.content.rootFolder.childEntity  # noqa: B018
    si2 = connect(sim_server)
    host = vim.HostSystem(sim.host("esx-b1").moid, si2._stub)
    assert host.runtime.inMaintenanceMode is True
