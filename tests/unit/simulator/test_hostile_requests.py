"""Requests that reach for Python instead of vim25: every one ends in a vim25 fault.

Property paths resolve through the vim25 type model only, missing required
parameters and fields are InvalidRequest as on vCenter, deep specs never
reach Python's recursion limit, and no fault carries Python's words (its
exception text, tracebacks, install paths). (The HTTP front's own fuzzing
is test_hostile_clients.py.)
"""

from __future__ import annotations

import os
import re
import sys
import xml.sax.saxutils

import pytest
import requests
from pyVmomi import vim, vmodl

from tests.unit.simulator.helpers import PC, bind, create_vm, fault_of

NS = 'xmlns="urn:vim25" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"'

#: Words that only Python (not vCenter) would put in a fault.
PYTHON_WORDS = re.compile(
    r"Traceback|File \"|line \d+, in |NoneType|object has no attribute|"
    r"invalid literal for|takes \d+ positional|missing \d+ required|"
    r"unexpected keyword|RecursionError|maximum recursion|__\w+__|\.py\b|site-packages|"
    r"dist-packages|<class |<function |<bound method |0x[0-9a-f]{6,}")


def _assert_vim_text(text: str, echoed: str = "") -> None:
    """No Python in ``text`` besides what the client sent itself (``echoed``, e.g. its path)."""
    if echoed:
        text = text.replace(echoed, "")
    found = PYTHON_WORDS.search(text)
    assert found is None, f"Python leaked into a fault: {found.group(0)!r} in {text[:500]!r}"
    for root in {sys.prefix, os.path.dirname(os.__file__), os.getcwd()}:
        assert root not in text, f"an install path leaked into a fault: {root}"


def _login(server) -> str:
    sim = server.simulator
    body = (f'<Login {NS}><_this type="SessionManager">SessionManager</_this>'
            f"<userName>{sim.username}</userName><password>{sim.password}</password></Login>")
    resp = _post(server, body)
    assert resp.status_code == 200, resp.text
    return resp.cookies["vmware_soap_session"]


def _post(server, body: str, cookie: str | None = None) -> requests.Response:
    envelope = ('<?xml version="1.0" encoding="UTF-8"?>'
                '<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/">'
                f"<soapenv:Body>{body}</soapenv:Body></soapenv:Envelope>")
    cookies = {"vmware_soap_session": cookie} if cookie else None
    return requests.post(f"http://127.0.0.1:{server.port}/sdk", data=envelope.encode(),
                         headers={"Content-Type": "text/xml; charset=utf-8"},
                         cookies=cookies, timeout=30)


def _fault(resp: requests.Response, echoed: str = "") -> tuple[str, str]:
    """(fault type, faultstring) of a SOAP fault response; checks it speaks vim25."""
    assert resp.status_code == 500, resp.text[:500]
    match = re.search(r'<detail><(\w+)Fault [^>]*xsi:type="(\w+)"', resp.text)
    assert match, resp.text[:500]
    text = re.search(r"<faultstring>(.*?)</faultstring>", resp.text, re.S).group(1)
    text = xml.sax.saxutils.unescape(text, {"&quot;": '"', "&apos;": "'"})
    _assert_vim_text(resp.text, echoed)
    return match.group(2), text


def _retrieve(obj_type: str, moid: str, *paths: str) -> str:
    props = "".join(f"<pathSet>{p}</pathSet>" for p in paths)
    return (f'<RetrievePropertiesEx {NS}><_this type="PropertyCollector">propertyCollector</_this>'
            f'<specSet><propSet><type>{obj_type}</type>{props}</propSet>'
            f'<objectSet><obj type="{obj_type}">{moid}</obj></objectSet></specSet>'
            "<options/></RetrievePropertiesEx>")


# -- property paths resolve through the vim25 type model only -----------------------


@pytest.mark.parametrize("obj_type,moid,path", [
    ("HostSystem", None, "name.__class__"),
    ("HostSystem", None, "name.upper"),
    ("HostSystem", None, "summary.__dict__"),
    ("HostSystem", None, "summary.hardware.__class__.__name__"),
    ("HostSystem", None, "_get_name"),
    ("HostSystem", None, "sim"),
    ("HostSystem", None, "summary.quickStats._GetPropertyList"),
    ("ServiceInstance", "ServiceInstance", "content.about.__init__.__code__.co_filename"),
    ("ServiceInstance", "ServiceInstance", "content.about.__class__.__module__"),
])
def test_property_paths_never_reach_python_attributes(sim_server, obj_type, moid, path):
    sim = sim_server.simulator
    cookie = _login(sim_server)
    moid = moid or sim.host("esx-a1").moid
    fault, text = _fault(_post(sim_server, _retrieve(obj_type, moid, path), cookie), path)
    assert fault == "InvalidProperty"
    assert path in text


def test_keyed_and_filter_paths_are_checked_the_same_way(si, sim):
    vm = create_vm(si, sim, "keyed")
    pc = si.content.propertyCollector
    for path in ('config.extraConfig["x"].__class__', "config.hardware.device.__len__",
                 "summary.config.name.__doc__"):
        spec = PC.FilterSpec(objectSet=[PC.ObjectSpec(obj=vm)],
                             propSet=[PC.PropertySpec(type=vim.VirtualMachine, pathSet=[path])])
        with pytest.raises(vmodl.query.InvalidProperty) as raised:
            pc.RetrievePropertiesEx([spec], PC.RetrieveOptions())
        assert raised.value.name == path
        with pytest.raises(vmodl.query.InvalidProperty):
            pc.CreateFilter(spec, partialUpdates=False)
        # A traversal path is a property path too.
        spec = PC.FilterSpec(
            objectSet=[PC.ObjectSpec(obj=vm, selectSet=[PC.TraversalSpec(
                name="t", type=vim.VirtualMachine, path="resourcePool.__class__")])],
            propSet=[PC.PropertySpec(type=vim.ResourcePool, pathSet=["name"])])
        with pytest.raises(vmodl.query.InvalidProperty):
            pc.RetrievePropertiesEx([spec], PC.RetrieveOptions())


def test_properties_of_the_type_model_that_are_unset_come_back_unset(si, sim):
    """vCenter omits an unset property; only a name outside the type model is invalid."""
    vm = create_vm(si, sim, "sparse")
    pc = si.content.propertyCollector
    spec = PC.FilterSpec(objectSet=[PC.ObjectSpec(obj=vm)], propSet=[PC.PropertySpec(
        type=vim.VirtualMachine, pathSet=["name", "parentVApp", "snapshot", "config.vAppConfig"])])
    [content] = pc.RetrievePropertiesEx([spec], PC.RetrieveOptions()).objects
    assert [p.name for p in content.propSet] == ["name"]


# -- missing required parameters and fields ------------------------------------------


def test_a_missing_required_parameter_is_invalid_request(sim_server):
    cookie = _login(sim_server)
    body = (f'<CreateFilter {NS}><_this type="PropertyCollector">propertyCollector</_this>'
            "<partialUpdates>false</partialUpdates></CreateFilter>")
    fault, text = _fault(_post(sim_server, body, cookie))
    assert fault == "InvalidRequest"
    assert "Required parameter spec is missing" in text
    assert "CreateFilter" in text


def test_a_call_without_this_is_invalid_request(sim_server):
    cookie = _login(sim_server)
    fault, text = _fault(_post(sim_server, f"<CurrentTime {NS}/>", cookie))
    assert fault == "InvalidRequest"
    assert "_this" in text


def test_a_missing_required_field_of_a_data_object_is_invalid_request(sim_server):
    cookie = _login(sim_server)
    # ObjectSpec.obj is required; so is PropertySpec.type.
    body = (f'<RetrievePropertiesEx {NS}><_this type="PropertyCollector">propertyCollector'
            "</_this><specSet><propSet><pathSet>name</pathSet></propSet>"
            "<objectSet><skip>false</skip></objectSet></specSet><options/></RetrievePropertiesEx>")
    fault, text = _fault(_post(sim_server, body, cookie))
    assert fault == "InvalidRequest"
    assert re.search(r"Required property (type|obj) is missing from data object of type "
                     r"(PropertySpec|ObjectSpec)", text), text


def test_task_methods_check_their_specs_before_any_work(si, sim, sim_server):
    """A ReconfigVM_Task whose device change lacks its device fails in the call, no task."""
    vm = create_vm(si, sim, "unchanged")
    devices = len(sim.vm("unchanged").config.hardware.device)
    tasks = len(sim.task_manager.recent)
    cookie = _login(sim_server)
    body = (f'<ReconfigVM_Task {NS}><_this type="VirtualMachine">{vm._moId}</_this>'
            "<spec><deviceChange><operation>add</operation></deviceChange></spec>"
            "</ReconfigVM_Task>")
    fault, text = _fault(_post(sim_server, body, cookie))
    assert fault == "InvalidRequest"
    assert text.startswith("Required property device is missing from data object of type "
                           "VirtualDeviceConfigSpec")
    assert 'while parsing property "deviceChange" of static type ' \
        "ArrayOfVirtualDeviceConfigSpec" in text
    assert len(sim.vm("unchanged").config.hardware.device) == devices
    assert len(sim.task_manager.recent) == tasks


# -- values that do not parse as their vim25 type ------------------------------------


@pytest.mark.parametrize("value,type_name", [("1024.0", "long"), ("ten", "long"),
                                             ("1e3", "long"), ("9223372036854775808", "long")])
def test_a_value_that_is_not_its_xsd_type_is_refused_as_vcenter_does(sim_server, value,
                                                                     type_name):
    """vCenter: InvalidRequest 'Cannot parse "1024.0" as a long value' (xsd:long is an integer).

    Nova's in-tree driver sends a flat image's size in KB as a Python float
    (``file_size / units.Ki``); vCenter's parser takes only the xsd:long
    lexical form, and so does the simulator.
    """
    cookie = _login(sim_server)
    body = (f'<CreateVirtualDisk_Task {NS}><_this type="VirtualDiskManager">VirtualDiskManager'
            "</_this><name>[shared-all] float/disk.vmdk</name>"
            '<spec xsi:type="FileBackedVirtualDiskSpec"><diskType>thin</diskType>'
            f"<adapterType>lsiLogic</adapterType><capacityKb>{value}</capacityKb></spec>"
            "</CreateVirtualDisk_Task>")
    fault, text = _fault(_post(sim_server, body, cookie))
    assert fault == "InvalidRequest"
    assert f'Cannot parse "{value}" as a {type_name} value' in text
    assert 'while parsing property "capacityKb" of static type long' in text
    assert "CreateVirtualDisk_Task" in text
    assert not sim_server.simulator.files.exists("shared-all", "float/disk.vmdk")


def test_base64_that_is_not_base64_is_refused(sim_server):
    """xsd:base64Binary's lexical space (pyVmomi's decoding would drop the rest silently)."""
    cookie = _login(sim_server)
    for value, ok in (("!!!", False), ("QUJD=", False), ("QUJDRA==", True), ("", True)):
        body = (f'<UpdateOptions {NS}><_this type="OptionManager">VpxSettings</_this>'
                f'<changedValue><key>custom.blob</key><value xsi:type="xsd:base64Binary">{value}'
                "</value></changedValue></UpdateOptions>")
        resp = _post(sim_server, body, cookie)
        if ok:
            assert resp.status_code == 200, resp.text[:500]
            continue
        fault, text = _fault(resp)
        assert fault == "InvalidRequest"
        assert f'Cannot parse "{value}" as a base64Binary value' in text
        assert 'while parsing property "value" of static type anyType' in text


def test_unknown_elements_and_types_are_named_in_vim25_words(sim_server):
    cookie = _login(sim_server)
    body = (f'<RetrievePropertiesEx {NS}><_this type="PropertyCollector">propertyCollector'
            "</_this><specSet><bogus>1</bogus></specSet><options/></RetrievePropertiesEx>")
    fault, text = _fault(_post(sim_server, body, cookie))
    assert fault == "InvalidRequest"
    assert 'Unexpected element tag "bogus" seen' in text
    body = (f'<RetrievePropertiesEx {NS}><_this type="PropertyCollector">propertyCollector'
            '</_this><specSet><objectSet><obj type="NoSuchType">x</obj></objectSet>'
            "</specSet><options/></RetrievePropertiesEx>")
    fault, text = _fault(_post(sim_server, body, cookie))
    assert fault == "InvalidRequest"
    assert "NoSuchType" in text


# -- deep specs ----------------------------------------------------------------------


def test_deeply_nested_specs_get_a_fault_not_a_recursion_error(sim_server):
    cookie = _login(sim_server)
    depth = 5000
    nested = "<selectSet xsi:type=\"TraversalSpec\"><name>s</name><type>Folder</type>" \
             "<path>childEntity</path>"
    body = (f'<RetrievePropertiesEx {NS}><_this type="PropertyCollector">propertyCollector'
            "</_this><specSet><propSet><type>Folder</type><pathSet>name</pathSet></propSet>"
            '<objectSet><obj type="Folder">group-d1</obj>' + nested * depth
            + "</selectSet>" * depth + "</objectSet></specSet><options/></RetrievePropertiesEx>")
    fault, text = _fault(_post(sim_server, body, cookie))
    assert fault == "InvalidRequest"
    assert "nest" in text
    # The server keeps serving.
    assert _post(sim_server, _retrieve("Folder", "group-d1", "name"), cookie).status_code == 200


def test_long_chains_of_named_traversal_specs_are_followed_without_recursion(si, sim):
    """3,000 specs, each naming the next, over the VM -> pool -> VM cycle."""
    vm = create_vm(si, sim, "chained")
    count = 3000
    specs = []
    for i in range(count):
        nxt = [PC.SelectionSpec(name=f"s{i + 1}")] if i + 1 < count else []
        if i % 2 == 0:
            specs.append(PC.TraversalSpec(name=f"s{i}", type=vim.VirtualMachine,
                                          path="resourcePool", skip=False, selectSet=nxt))
        else:
            specs.append(PC.TraversalSpec(name=f"s{i}", type=vim.ResourcePool, path="vm",
                                          skip=False, selectSet=nxt))
    spec = PC.FilterSpec(objectSet=[PC.ObjectSpec(obj=vm, selectSet=specs)],
                         propSet=[PC.PropertySpec(type=vim.ManagedEntity, pathSet=["name"])])
    result = si.content.propertyCollector.RetrievePropertiesEx([spec], PC.RetrieveOptions())
    names = {p.val for o in result.objects for p in o.propSet}
    assert {"chained", "Resources"} <= names


def test_deep_folder_trees_are_traversed_without_recursion(si, sim):
    folder = bind(si, sim.find_entity("dc1").vm_folder)
    depth = 1200
    for i in range(depth):
        folder = folder.CreateFolder(f"level-{i}")
    recurse = PC.TraversalSpec(name="folders", type=vim.Folder, path="childEntity",
                               skip=False, selectSet=[PC.SelectionSpec(name="folders")])
    spec = PC.FilterSpec(
        objectSet=[PC.ObjectSpec(obj=si.content.rootFolder, selectSet=[recurse, PC.TraversalSpec(
            name="dc", type=vim.Datacenter, path="vmFolder", skip=False,
            selectSet=[PC.SelectionSpec(name="folders")])])],
        propSet=[PC.PropertySpec(type=vim.Folder, pathSet=["name"])])
    recurse.selectSet.append(PC.SelectionSpec(name="dc"))
    result = si.content.propertyCollector.RetrievePropertiesEx([spec], PC.RetrieveOptions())
    names = {p.val for o in result.objects for p in o.propSet}
    assert f"level-{depth - 1}" in names


# -- simulator failures speak vim25 --------------------------------------------------


def test_a_simulator_failure_in_a_call_is_a_system_error_without_python(sim_server,
                                                                        monkeypatch):
    sim = sim_server.simulator
    cookie = _login(sim_server)

    def broken(self, ctx):
        raise KeyError("internal detail")

    monkeypatch.setattr(type(sim.service_instance), "CurrentTime", broken)
    body = f'<CurrentTime {NS}><_this type="ServiceInstance">ServiceInstance</_this></CurrentTime>'
    fault, text = _fault(_post(sim_server, body, cookie))
    assert fault == "SystemError"
    assert "internal detail" not in text
    assert text.startswith("A general system error occurred")


def test_a_simulator_failure_in_a_task_is_a_system_error_without_python(si, sim, monkeypatch):
    vm = create_vm(si, sim, "crashing")

    def broken(self, state):
        raise ZeroDivisionError("division by zero in the simulator")

    monkeypatch.setattr(type(sim.vm("crashing")), "set_power", broken)
    error = fault_of(vm.PowerOnVM_Task())
    assert isinstance(error, vmodl.fault.SystemError)
    assert "division" not in (error.msg or "") and "division" not in (error.reason or "")
    _assert_vim_text(f"{error.msg} {error.reason}")


_PYVMOMI_CALLS = [
    # (the call element pyVmomi sends, whether the one-expression reader takes it)
    ('<Fetch xmlns="urn:vim25"><_this versionId="8.0.0.0" type="Task">task-12</_this>'
     '<prop versionId="8.0.0.0">info</prop></Fetch>', True),
    ('<PowerOnVM_Task xmlns="urn:vim25"><_this versionId="8.0.0.0" type="VirtualMachine">'
     "vm-41</_this></PowerOnVM_Task>", True),
    ('<WaitForUpdates xmlns="urn:vim25"><_this versionId="8.0.0.0" type="PropertyCollector">'
     "propertyCollector</_this><version>3</version></WaitForUpdates>", True),
    ('<Fetch xmlns="urn:vim25"><_this versionId="8.0.0.0" type="Task"> t\u00e9sk 1 </_this>'
     '<prop versionId="8.0.0.0"> a b </prop></Fetch>', True),
    # Not strings, escaped text, repeated or unknown parameters, unknown names:
    # the full decoder, with its vim25 faults.
    ('<CreateContainerView xmlns="urn:vim25"><_this versionId="8.0.0.0" type="ViewManager">'
     'ViewManager</_this><container versionId="8.0.0.0" type="Folder">group-d1</container>'
     "<type>HostSystem</type><recursive>true</recursive></CreateContainerView>", False),
    ('<Fetch xmlns="urn:vim25"><_this versionId="8.0.0.0" type="Task">task-12</_this>'
     "<prop>a&amp;b</prop></Fetch>", False),
    ('<Fetch xmlns="urn:vim25"><_this versionId="8.0.0.0" type="Task">task-12</_this>'
     "<prop>a</prop><prop>b</prop></Fetch>", False),
    ('<Fetch xmlns="urn:vim25"><_this versionId="8.0.0.0" type="Task">task-12</_this>'
     "<other>a</other></Fetch>", False),
    ('<Fetch xmlns="urn:vim25"><_this versionId="8.0.0.0" type="Task">task-12</_this></Fetch>',
     False),
    ('<PowerOnVM_Task xmlns="urn:vim25"><_this versionId="8.0.0.0" type="Nope">vm-41</_this>'
     "</PowerOnVM_Task>", False),
    ('<PowerOnVM_Task xmlns="urn:vim25"><_this type="VirtualMachineConfigSpec">vm-41</_this>'
     "</PowerOnVM_Task>", False),
    ('<Nope xmlns="urn:vim25"><_this type="VirtualMachine">vm-41</_this></Nope>', False),
]


@pytest.mark.parametrize(("call", "simple"), _PYVMOMI_CALLS)
def test_simple_pyvmomi_calls_read_as_the_full_decoder_reads_them(call, simple):
    from nova_vsphere_driver.simulator import soap

    body = soap._PYVMOMI_HEAD + call.encode("utf-8") + soap._PYVMOMI_TAIL
    fast = soap._simple_call(body)
    assert (fast is not None) == simple
    try:
        full = soap._RequestDecoder().decode(body)
    except soap.SoapDecodeError:
        assert fast is None
        return
    if fast is not None:
        assert fast.method is full.method
        assert type(fast.this) is type(full.this)
        assert fast.this._moId == full.this._moId
        assert fast.args == full.args
