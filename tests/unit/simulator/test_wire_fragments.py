"""Property reads go out from cached wire fragments, byte for byte what pyVmomi writes.

The property collector serializes each object's reference and property
values once per registry generation and joins the cached fragments for
later reads; the reference here is pyVmomi's serializer over the same
ObjectContent data objects.
"""

from __future__ import annotations

import datetime

from pyVmomi import VmomiSupport, vim, vmodl

from nova_vsphere_driver.simulator import soap
from nova_vsphere_driver.simulator.objects.base import CallContext
from nova_vsphere_driver.simulator.objects.property_collector import Retrieval
from tests.unit.simulator.helpers import PC, create_vm, run

_PC_TYPE = VmomiSupport.GetVmodlType("vmodl.query.PropertyCollector")
RETRIEVE_EX = _PC_TYPE._GetMethodInfo("RetrievePropertiesEx")
RETRIEVE = _PC_TYPE._GetMethodInfo("RetrieveContents")


def _collector(sim):
    return sim.registry.get("propertyCollector")


def _ex_both_ways(sim, specs, page=None):
    """(fast, reference) RetrievePropertiesEx response bodies."""
    options = PC.RetrieveOptions(maxObjects=page) if page else None
    fast = _collector(sim).RetrievePropertiesEx(CallContext(sim, None), specs, options)
    with sim.registry.lock:
        objects = Retrieval(sim).contents(specs)
    if page:
        objects = objects[:page]
    reference = PC.RetrieveResult(objects=objects)
    fast_xml = soap.encode_response(RETRIEVE_EX, fast).decode()
    if page:  # the token is the collector's; the rest must match
        token = fast.xml.partition("<token>")[2].partition("</token>")[0]
        reference.token = token
    return fast_xml, soap.encode_response(RETRIEVE_EX, reference).decode()


def _all_of_kind(sim):
    kinds: dict[type, list] = {}
    for obj in sim.registry.all("ManagedObject"):
        kinds.setdefault(obj.vim_type, []).append(obj)
    return kinds


def test_every_property_of_every_object_matches_pyvmomis_serialization(si, sim):
    vm = create_vm(si, sim, "full", "esx-a1", disk_gb=1, network="VM Network", power_on=True)
    run(vm.CreateSnapshot_Task("snap", "", False, False))
    kinds = _all_of_kind(sim)
    assert len(kinds) >= 15
    for kind, objs in kinds.items():
        # Every property but those computed per read (the server clock).
        paths = [p for p in objs[0].property_names() if p not in objs[0].uncached]
        specs = [PC.FilterSpec(objectSet=[PC.ObjectSpec(obj=o.ref) for o in objs],
                               propSet=[PC.PropertySpec(type=kind, pathSet=paths)])]
        first, reference = _ex_both_ways(sim, specs)
        assert first == reference, kind
        again, _ = _ex_both_ways(sim, specs)  # from the cache now
        assert again == reference, kind


def test_every_lazy_read_matches_pyvmomis_serialization(si, sim):
    # Fetch answers data objects from the property collector's cached
    # propSet: byte for byte what pyVmomi writes for the returnval.
    from nova_vsphere_driver.simulator.vim_data import declared_type, typed

    vm = create_vm(si, sim, "lazy", "esx-a1", disk_gb=1, network="VM Network", power_on=True)
    run(vm.CreateSnapshot_Task("snap", "", False, False))
    shared = 0
    for objs in _all_of_kind(sim).values():
        obj = objs[0]
        for path in obj.property_names():
            if path in obj.uncached:
                continue
            call = soap.SoapCall(soap._FETCH, obj.ref, {"prop": path})
            with sim.registry.lock:
                value = obj.get_property(path)
                reference = soap.encode_result(
                    soap._FETCH, typed(value, declared_type(obj.vim_type, path)))
                for _ in range(2):  # the second from the cache
                    assert sim._fetch(call, obj).xml == reference, (obj.moid, path)
            shared += reference.startswith("<returnval xsi:type=") and \
                isinstance(value, VmomiSupport.DataObject)
    assert shared >= 20  # (summaries, configs, runtimes, task infos, ServiceContent...)


def test_contents_api_and_paging_match(si, sim):
    for i in range(3):
        create_vm(si, sim, f"page-{i}", "esx-a1", power_on=bool(i % 2))
    specs = [PC.FilterSpec(
        objectSet=[PC.ObjectSpec(obj=v.ref) for v in sim.vms()],
        propSet=[PC.PropertySpec(type=vim.VirtualMachine,
                                 pathSet=["name", "runtime.powerState", "runtime.host",
                                          "config.hardware.device"])])]
    fast, reference = _ex_both_ways(sim, specs, page=2)
    assert fast == reference and "<token>" in fast
    with sim.registry.lock:
        contents = Retrieval(sim).contents(specs)
    fast_list = _collector(sim).RetrieveProperties(CallContext(sim, None), specs)
    assert soap.encode_response(RETRIEVE, fast_list) == soap.encode_response(RETRIEVE, contents)


def test_missing_objects_and_merged_specs_match(si, sim):
    vm = create_vm(si, sim, "merged", "esx-a1")
    gone = vim.VirtualMachine("vm-gone")
    specs = [
        PC.FilterSpec(objectSet=[PC.ObjectSpec(obj=vm), PC.ObjectSpec(obj=gone)],
                      propSet=[PC.PropertySpec(type=vim.VirtualMachine, pathSet=["name"])],
                      reportMissingObjectsInResults=True),
        PC.FilterSpec(objectSet=[PC.ObjectSpec(obj=vm)],
                      propSet=[PC.PropertySpec(type=vim.VirtualMachine,
                                               pathSet=["name", "runtime.powerState"])]),
    ]
    fast, reference = _ex_both_ways(sim, specs)
    assert fast == reference
    assert "missingSet" in fast and fast.count("<name>name</name>") == 1


def test_a_change_is_read_at_once(si, sim):
    vm = create_vm(si, sim, "changes", "esx-a1", power_on=True)
    specs = [PC.FilterSpec(objectSet=[PC.ObjectSpec(obj=vm)],
                           propSet=[PC.PropertySpec(type=vim.VirtualMachine,
                                                    pathSet=["runtime.powerState"])])]
    pc = si.content.propertyCollector

    def state():
        [content] = pc.RetrievePropertiesEx(specs, PC.RetrieveOptions()).objects
        return content.propSet[0].val

    assert state() == "poweredOn"
    run(vm.PowerOffVM_Task())
    assert state() == "poweredOff"
    fast, reference = _ex_both_ways(sim, specs)
    assert fast == reference


def test_the_callers_session_is_never_served_from_another_callers_read(sim_server, si, sim):
    from tests.fixtures import connect

    other = connect(sim_server)
    spec = [PC.FilterSpec(objectSet=[PC.ObjectSpec(obj=si.content.sessionManager)],
                          propSet=[PC.PropertySpec(type=vim.SessionManager,
                                                   pathSet=["currentSession"])])]

    def key(client):
        result = client.content.propertyCollector.RetrievePropertiesEx(spec,
                                                                      PC.RetrieveOptions())
        return result.objects[0].propSet[0].val.key

    assert key(si) != key(other)
    assert key(si) == si.content.sessionManager.currentSession.key


def test_simple_values_are_written_as_pyvmomi_writes_them():
    long_type = VmomiSupport.GetVmodlType("long")
    short_type = VmomiSupport.GetVmodlType("short")
    values = ["plain", "<a & b>", "ünïcödé", "", "a\r\nb\r", True, False, 0, -3,
              long_type(2 ** 40),
              short_type(7), 1.25, vim.VirtualMachine.PowerState.poweredOn,
              datetime.datetime(2024, 5, 6, 7, 8, 9, 123456, tzinfo=datetime.timezone.utc),
              vim.HostSystem("host-9"), vim.VirtualMachine("vm-1")]
    for value in values:
        reference = soap.encode_element(vmodl.DynamicProperty(name="a.b", val=value),
                                        "propSet", vmodl.DynamicProperty)
        assert soap.encode_property("a.b", value) == reference, repr(value)
    for ref in (vim.Datastore("datastore-3"), vim.VirtualMachine("vm-\r1")):
        assert soap.encode_reference(ref, "obj") == soap.encode_element(
            ref, "obj", VmomiSupport.GetVmodlType("vmodl.ManagedObject"))
        reference = soap.encode_element(vmodl.DynamicProperty(name="a\rb", val=ref),
                                        "propSet", vmodl.DynamicProperty)
        assert soap.encode_property("a\rb", ref) == reference


def test_a_loaded_state_and_a_restart_serve_no_value_cached_before(tmp_path):
    """Every cached value and wire form belongs to one state: a load replaces them all."""
    from nova_vsphere_driver.simulator import Simulator, SimulatorServer
    from tests.fixtures import connect

    with SimulatorServer(Simulator(), state_file=str(tmp_path / "state.json"),
                         save_interval=3600) as server:
        sim = server.simulator
        si = connect(server)
        vm = create_vm(si, sim, "loaded", "esx-a1")
        task = vm.PowerOnVM_Task()
        run(task)
        specs = [PC.FilterSpec(objectSet=[PC.ObjectSpec(obj=vm)],
                               propSet=[PC.PropertySpec(type=vim.VirtualMachine,
                                                        pathSet=["runtime.powerState"])])]

        def read(client):
            vm_now = vim.VirtualMachine(vm._moId, client._stub)
            [content] = client.content.propertyCollector.RetrievePropertiesEx(
                specs, PC.RetrieveOptions()).objects
            return (content.propSet[0].val, vm_now.runtime.powerState,
                    vim.Task(task._moId, client._stub).info.state,
                    client.content.about.instanceUuid)

        saved = read(si)
        assert saved[:3] == ("poweredOn", "poweredOn", "success")
        server.save_state()
        run(vm.PowerOffVM_Task())
        sim.instance_uuid = "another-vcenter"  # as a state from another vCenter would be
        assert read(si)[:2] == ("poweredOff", "poweredOff")  # and cached again
        server.state.load(sim)  # sessions end: log in again
        si = connect(server)
        assert read(si) == saved
        server.restart()  # saved and loaded once more: the same answers
        si = connect(server)
        assert read(si) == saved
