"""Credentials and names reach vCenter byte for byte, checked by what the simulator receives.

suds takes ``&amp;``, ``&lt;`` and the like in a request's text for escapes
of its own and sends them unchanged: vCenter's parser then reads ``&``,
``<``. The session escapes every request of its own client completely
(vsphere/soap_text.py); suds' module-wide encoder stays as it is.
"""

from __future__ import annotations

import pytest
from oslo_vmware import vim_util
from pyVim.task import WaitForTask
from pyVmomi import vim

from nova_vsphere_driver import driver as vsphere_driver
from nova_vsphere_driver import policy
from nova_vsphere_driver.vsphere.session import VSphereSession
from nova_vsphere_driver.vsphere.soap_text import UnsendableText
from tests.driver.conftest import WSDL_LOCATION, configure, make_instance
from tests.fixtures import connect, running_simulator

#: Every character with a meaning in XML, entity and character references
#: (defined, undefined, numeric), markup, line ends and non-ASCII text.
TRICKY = ["&", "<", ">", '"', "'", "&amp;", "&lt;", "&gt;", "&quot;", "&apos;",
          "&amp;amp;", "&#38;", "&#x26;", "&#0;", "&nbsp;", "&unknown;", "&", "a & b",
          "]]>", "<![CDATA[x]]>", "<!-- c -->", "<tag attr='v'/>", "a\r\nb", "a\rb",
          "\ttab", " spaces ", "é ü 雪 🚀", "%2f/\\", "x" * 200 + "&amp;"]


@pytest.fixture(scope="module")
def plain_sim():
    with running_simulator() as server:
        yield server


def _login(server, username: str, password: str) -> VSphereSession:
    return VSphereSession("127.0.0.1", server.port, username, password, scheme="http",
                          wsdl_location=WSDL_LOCATION[-1], api_retry_count=0)


@pytest.mark.parametrize("text", TRICKY)
def test_passwords_and_user_names_arrive_unchanged(plain_sim, text):
    sim = plain_sim.simulator
    user, password = sim.username, sim.password
    sim.username, sim.password = f"u{text}@vsphere.local", f"p{text}w"
    try:
        # The simulator compares byte for byte: a login is the proof.
        session = _login(plain_sim, sim.username, sim.password)
        try:
            # SessionIsActive sends the user name again.
            assert session._api.is_current_session_active()
        finally:
            session.logout()
    finally:
        sim.username, sim.password = user, password


def test_every_string_in_a_request_arrives_unchanged(plain_sim):
    sim = plain_sim.simulator
    si = connect(plain_sim)
    dc = si.content.rootFolder.childEntity[0]
    WaitForTask(dc.vmFolder.CreateVM_Task(vim.vm.ConfigSpec(
        name="notes-probe", numCPUs=1, memoryMB=128, guestId="otherGuest64",
        files=vim.vm.FileInfo(vmPathName="[shared-all]")),
        dc.hostFolder.childEntity[0].resourcePool, dc.hostFolder.childEntity[0].host[0]))
    vm = sim.vm("notes-probe")
    ref = vim_util.get_moref(vm.moid, "VirtualMachine")
    session = _login(plain_sim, sim.username, sim.password)
    try:
        for text in TRICKY:
            spec = session.factory("VirtualMachineConfigSpec")
            spec.annotation = text
            session.run_task("ReconfigVM_Task", ref, spec=spec)
            assert vm.get_property("config.annotation") == text, repr(text)
            # ... and reads back unchanged.
            assert session.call("get_object_property", ref, "config.annotation") == text
    finally:
        session.logout()


def test_text_xml_cannot_carry_is_refused_by_name_not_by_value(plain_sim):
    sim = plain_sim.simulator
    logins = sim.request_counts.get("Login", 0)
    with pytest.raises(UnsendableText) as err:
        _login(plain_sim, sim.username, "Secr3t\x01")
    assert "password" in str(err.value) and "U+0001" in str(err.value)
    assert "Secr3t" not in str(err.value)
    # Refused before it was sent.
    assert sim.request_counts.get("Login", 0) == logins


def test_suds_elsewhere_in_the_process_is_left_as_it_was(plain_sim):
    from suds.sax import encoder
    from suds.sax.element import Element

    session = _login(plain_sim, plain_sim.simulator.username, plain_sim.simulator.password)
    session.logout()
    # suds' own (lossy) behaviour, for every other client of the process.
    assert encoder.encode("p&amp;w") == "p&amp;w"
    assert Element("password").setText("p&amp;w").plain() == "<password>p&amp;w</password>"


def test_a_password_with_entity_text_logs_the_driver_in(conf_overrides, nova_db):
    password = "p&amp;w<&quot;>'"
    with running_simulator(tls=True, password=password) as server:
        configure(conf_overrides, server, clusters=("cluster-a",))
        conf_overrides("vsphere_drs", poll_interval=3600, balance_interval=0)
        drv = vsphere_driver.VSphereDriver(None)
        drv.init_host("compute-1")
        try:
            assert len(drv.get_available_nodes()) == 1
        finally:
            drv.cleanup_host("compute-1")


def test_a_password_xml_cannot_carry_is_a_configuration_error(conf_overrides, nova_db,
                                                               tls_sim):
    configure(conf_overrides, tls_sim, clusters=("cluster-a",), host_password="se\x07cret",
              api_retry_count=0)
    with pytest.raises(vsphere_driver.ConfigurationError) as err:
        vsphere_driver.VSphereDriver(None).init_host("compute-1")
    assert "host_password" in str(err.value) and "U+0007" in str(err.value)
    assert "se\x07cret" not in str(err.value) and "cret" not in str(err.value)


NAMES = ["R&amp;D <web> \"1\" 'a'", "a\nproject:admin", "bell\x07\x1b[31m", "back\\slash",
         "line\u2028sep", "é 雪 🚀 &#x26;"]


@pytest.mark.parametrize("name", NAMES)
def test_display_names_reach_the_annotation_escaped_not_forged(vsphere, ctx, node_a, name):
    drv, server = vsphere
    instance = make_instance(node_a, name=name)
    drv.spawn(ctx, instance, None, [], None, {}, network_info=[])
    notes = server.simulator.vm(instance.uuid).get_property("config.annotation")
    lines = notes.split("\n")
    assert [line.partition(":")[0] for line in lines] == ["name", "uuid", "project", "flavor"]
    assert lines[0] == "name:" + policy.note_value(name)
    assert lines[1] == f"uuid:{instance.uuid}"


def test_note_values_escape_only_what_would_break_a_line():
    assert policy.note_value("R&D <web> \"1\" 'a' é") == "R&D <web> \"1\" 'a' é"
    assert policy.note_value("a\nb\rc\td\\e") == "a\\nb\\rc\\td\\\\e"
    assert policy.note_value("\x00\x07\x1b\x7f\x85") == "\\x00\\x07\\x1b\\x7f\\x85"
    assert policy.note_value("\u2028\u2029\ufffe") == "\\u2028\\u2029\\ufffe"
    assert policy.note_value(None) == ""


def test_folder_and_host_group_names_reach_vcenter_unchanged(vsphere, ctx, node_a,
                                                              conf_overrides):
    drv, server = vsphere
    sim = server.simulator
    folder = "Nova &amp; <co> \"x\""
    group = "gpu &lt;hosts&gt; & 'more'"
    conf_overrides("vsphere", vm_folder=folder)
    si = connect(server)
    cluster = vim.ClusterComputeResource(sim.cluster("cluster-a").moid, si._stub)
    WaitForTask(cluster.ReconfigureComputeResource_Task(vim.cluster.ConfigSpecEx(groupSpec=[
        vim.cluster.GroupSpec(operation="add", info=vim.cluster.HostGroup(
            name=group, host=[vim.HostSystem(sim.host("esx-a2").moid, si._stub)]))]), True))
    instance = make_instance(node_a, extra_specs={"vsphere:host_group": group})
    drv.spawn(ctx, instance, None, [], None, {}, network_info=[])
    vm = sim.vm(instance.uuid)
    assert vm.parent.name == folder
    assert vm.get_property("runtime.host")._moId == sim.host("esx-a2").moid
    rules = sim.cluster("cluster-a").get_property("configurationEx").rule
    assert [r.affineHostGroupName for r in rules if
            isinstance(r, vim.cluster.VmHostRuleInfo)] == [group]
