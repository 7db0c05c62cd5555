"""OpenStack's oslo.vmware (a suds client) against the simulator, unchanged.

oslo.vmware downloads the WSDL set from ``/sdk/vimService.wsdl``; these tests
prove that the generated documents are accepted and that sessions, calls,
tasks, paging and re-login behave as they do against vCenter.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest
import requests
from oslo_vmware import api as vmware_api
from oslo_vmware import exceptions as vexc
from oslo_vmware import vim_util

from nova_vsphere_driver.simulator import soap, wsdl
from tests.fixtures import running_simulator

WSDL_NS = {"w": "http://schemas.xmlsoap.org/wsdl/", "x": "http://www.w3.org/2001/XMLSchema"}


@pytest.fixture(scope="module")
def server():
    with running_simulator() as srv:
        yield srv


def _session(srv, **kwargs) -> vmware_api.VMwareAPISession:
    sim = srv.simulator
    kwargs.setdefault("scheme", "http")
    return vmware_api.VMwareAPISession(
        "127.0.0.1", sim.username, sim.password, 2, 0.05, port=srv.port, **kwargs)


@pytest.fixture(scope="module")
def session(server):
    sess = _session(server)
    yield sess
    try:
        sess.logout()
    except Exception:  # a test may have expired the session on purpose
        pass


def test_wsdl_set_is_served_and_consistent(server):
    base = f"http://127.0.0.1:{server.port}/sdk/"
    docs = {}
    for name in ("vimService.wsdl", "vim.wsdl", "vim-messagetypes.xsd", *wsdl.TYPE_SCHEMAS):
        resp = requests.get(base + name, timeout=30)
        assert resp.status_code == 200, name
        docs[name] = ET.fromstring(resp.content)
    assert requests.get(base + "nothing.xsd", timeout=10).status_code == 404
    service = docs["vimService.wsdl"]
    address = service.find("w:service/w:port/{http://schemas.xmlsoap.org/wsdl/soap/}address",
                           WSDL_NS)
    assert address.get("location") == base + "vimService"
    # Every operation of the port type has its request type, its messages and
    # a binding, and every method the driver uses is described.
    vim_doc = docs["vim.wsdl"]
    ops = {op.get("name") for op in vim_doc.findall("w:portType/w:operation", WSDL_NS)}
    bound = {op.get("name") for op in vim_doc.findall("w:binding/w:operation", WSDL_NS)}
    requests_types = {t.get("name") for t in docs["vim-messagetypes.xsd"].findall(
        "x:complexType", WSDL_NS)}
    assert ops == bound
    assert {op + "RequestType" for op in ops} == requests_types
    assert len(ops) > 900
    for method in ("RetrievePropertiesEx", "ContinueRetrievePropertiesEx", "CreateVM_Task",
                   "RelocateVM_Task", "ReconfigureComputeResource_Task", "SearchDatastore_Task",
                   "ExtendVirtualDisk_Task", "WaitForUpdatesEx", "FindAllByUuid"):
        assert method in ops


def test_request_types_follow_pyvmomi_signatures():
    by_name = {m.name: m for m in wsdl.methods()}
    relocate = "\n".join(by_name["RelocateVM_Task"].request_params)
    assert '<element name="spec" type="vim25:VirtualMachineRelocateSpec" />' in relocate
    assert '<element name="priority" type="vim25:VirtualMachineMovePriority" minOccurs="0" />' \
        in relocate
    view = "\n".join(by_name["CreateContainerView"].request_params)
    assert '<element name="type" type="xsd:string" minOccurs="0" maxOccurs="unbounded" />' \
        in view
    assert "InvalidState" in by_name["PowerOnVM_Task"].faults
    assert by_name["Logout"].returnval is None


def test_login_and_invoke(server, session):
    about = session.vim.service_content.about
    assert about.apiVersion == soap.API_VERSION
    assert session.is_current_session_active()
    now = session.invoke_api(session.vim, "CurrentTime", vim_util.get_moref(
        "ServiceInstance", "ServiceInstance"))
    assert now.year >= 2024
    assert server.simulator.sessions  # the login created a session server-side


def test_property_retrieval_pages_with_max_objects(session):
    result = session.invoke_api(vim_util, "get_objects", session.vim, "HostSystem", 3,
                                ["name", "summary.hardware.memorySize"])
    names = [vim_util.get_moref_value(o.obj) for o in result.objects]
    assert len(names) == 3 and result.token
    while getattr(result, "token", None):
        result = session.invoke_api(vim_util, "continue_retrieval", session.vim, result)
        names += [vim_util.get_moref_value(o.obj) for o in result.objects]
    assert len(names) == len(set(names)) == 8
    props = {p.name: p.val for p in result.objects[-1].propSet}
    assert props["summary.hardware.memorySize"] > 0


def test_wait_for_task_success_and_failure(server, session):
    sim = server.simulator
    host = sim.host("esx-b4")
    ref = vim_util.get_moref(host.moid, "HostSystem")
    task = session.invoke_api(session.vim, "EnterMaintenanceMode_Task", ref, timeout=0)
    info = session.wait_for_task(task)
    assert info.state == "success"
    assert host.get_property("runtime.inMaintenanceMode") is True
    sim.faults.fail_next("ExitMaintenanceMode_Task", "InvalidState")
    task = session.invoke_api(session.vim, "ExitMaintenanceMode_Task", ref, timeout=0)
    with pytest.raises(vexc.VimFaultException) as err:
        session.wait_for_task(task)
    assert "InvalidState" in err.value.fault_list
    task = session.invoke_api(session.vim, "ExitMaintenanceMode_Task", ref, timeout=0)
    session.wait_for_task(task)
    assert host.get_property("runtime.inMaintenanceMode") is False


def test_faults_are_translated(server, session):
    missing = vim_util.get_moref("vm-does-not-exist", "VirtualMachine")
    with pytest.raises(vexc.ManagedObjectNotFoundException):
        session.invoke_api(vim_util, "get_object_property", session.vim, missing, "name")
    dc = vim_util.get_moref(server.simulator.find_entity("dc1").moid, "Datacenter")
    task = session.invoke_api(session.vim, "DeleteDatastoreFile_Task",
                              session.vim.service_content.fileManager,
                              name="[shared-a] no/such/file.vmdk", datacenter=dc)
    with pytest.raises(vexc.FileNotFoundException):
        session.wait_for_task(task)


def test_relogin_after_sessions_expire(server, session):
    sim = server.simulator
    before = set(sim.sessions)
    sim.expire_sessions()
    assert not sim.sessions
    # oslo.vmware sees NotAuthenticated, logs in again and repeats the call.
    result = session.invoke_api(vim_util, "get_objects", session.vim, "ClusterComputeResource",
                                10, ["name"])
    names = sorted(p.val for o in result.objects for p in o.propSet)
    assert names == ["cluster-a", "cluster-b"]
    assert sim.sessions and not (set(sim.sessions) & before)


def test_wrong_password_is_refused(server):
    sim = server.simulator
    with pytest.raises(vexc.VimFaultException) as err:
        vmware_api.VMwareAPISession("127.0.0.1", sim.username, "wrong", 0, 0.05,
                                    port=server.port, scheme="http")
    assert "InvalidLogin" in err.value.fault_list


def test_https_verifies_the_simulator_ca():
    with running_simulator(tls=True) as srv:
        sess = _session(srv, scheme="https", cacert=srv.ca_file, insecure=False)
        assert sess.vim.service_content.about.apiType == "VirtualCenter"
        sess.logout()
        # Without the CA the certificate cannot be verified. (Not through
        # VMwareAPISession(create_session=True): it retries connection
        # errors at login forever.)
        untrusted = _session(srv, scheme="https", insecure=False, create_session=False)
        with pytest.raises(Exception, match="CERTIFICATE_VERIFY_FAILED"):
            untrusted.vim.retrieve_service_content()
