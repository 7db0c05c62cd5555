"""State that survives a restart: --state, periodic and final saves, SIGKILL, bad files."""

from __future__ import annotations

import datetime
import json
import os
import re
import signal
import subprocess
import sys
import time

import pytest
import requests
from pyVim.connect import SmartConnect
from pyVmomi import VmomiSupport, vim, vmodl

from nova_vsphere_driver.simulator import Simulator, SimulatorServer, persistence
from tests.fixtures import connect
from tests.unit.simulator.helpers import bind, create_vm, fault_of, run, wait_until

PC = vmodl.query.PropertyCollector
Cluster = vim.cluster
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__)))))
#: Above persistence._INLINE_BYTES: kept as a blob file.
BIG = bytes(range(256)) * 64


def _file_url(server, path: str, ds: str = "shared-a") -> str:
    return f"http://127.0.0.1:{server.port}/folder/{path}?dcPath=dc1&dsName={ds}"


def _auth(server):
    return server.simulator.username, server.simulator.password


def _arrange(si, sim, server) -> dict:
    """A state touching every kind of thing a restart must keep."""
    vm = create_vm(si, sim, "web-1", "esx-a1", power_on=True, disk_gb=2,
                   network="VM Network")
    off = create_vm(si, sim, "db-1", "esx-a2", disk_gb=1, network="VM Network")
    run(vm.CreateSnapshot_Task("before-upgrade", "snap", False, False))
    run(off.ReconfigVM_Task(vim.vm.ConfigSpec(
        annotation="line one\nline two", memoryMB=2048,
        extraConfig=[vim.option.OptionValue(key="nvp.iface-id.0", value="port-1"),
                     vim.option.OptionValue(key="guestinfo.count", value=7)])))
    run(off.Rename_Task("db-primary"))
    gone = create_vm(si, sim, "short-lived", "esx-a3")
    gone_moid = gone._moId
    run(gone.Destroy_Task())
    cluster = bind(si, sim.cluster("cluster-a"))
    run(cluster.ReconfigureComputeResource_Task(Cluster.ConfigSpecEx(
        groupSpec=[Cluster.GroupSpec(operation="add",
                                     info=Cluster.VmGroup(name="web", vm=[vm]))],
        rulesSpec=[Cluster.RuleSpec(operation="add", info=Cluster.AntiAffinityRuleSpec(
            name="spread", enabled=True, vm=[vm, off]))]), True))
    run(bind(si, sim.host("esx-b4")).EnterMaintenanceMode_Task(0))
    failed = vm.PowerOnVM_Task()  # already on: the task ends in error
    fault_of(failed)
    for path, body in (("notes/small.txt", b"small"), ("images/big.bin", BIG)):
        assert requests.put(_file_url(server, path), data=body, auth=_auth(server),
                            timeout=10).status_code in (200, 201)
    return {"vm": vm._moId, "off": off._moId, "gone": gone_moid, "failed_task": failed._moId}


def _everything(si) -> dict:
    """Every property of every inventory object, and every recent task, as XML text."""
    content = si.RetrieveContent()
    view = content.viewManager.CreateContainerView(content.rootFolder, [], True)
    spec = PC.FilterSpec(
        objectSet=[PC.ObjectSpec(obj=view, skip=True, selectSet=[
            PC.TraversalSpec(name="v", type=vim.view.ContainerView, path="view")])],
        propSet=[PC.PropertySpec(type=vim.ManagedEntity, all=True)])
    found = {}
    result = content.propertyCollector.RetrievePropertiesEx([spec], PC.RetrieveOptions())
    while result is not None:
        for obj in result.objects:
            for prop in obj.propSet:
                found[f"{obj.obj._moId}.{prop.name}"] = _text(prop.name, prop.val)
        result = content.propertyCollector.ContinueRetrievePropertiesEx(result.token) \
            if result.token else None
    for task in content.taskManager.recentTask:
        found[f"{task._moId}.info"] = _text("info", task.info)
    view.DestroyView()
    return found


def _wire_json(value):
    if isinstance(value, VmomiSupport.ManagedObject):
        return f"{type(value).__name__}:{value._moId}"
    if isinstance(value, VmomiSupport.DataObject):
        return {"type": type(value).__name__, **value.__dict__}
    if isinstance(value, bytes):
        return value.hex()
    if isinstance(value, datetime.datetime):
        return value.isoformat()
    if isinstance(value, (type, VmomiSupport.ManagedMethod)):
        return str(value)
    raise TypeError(type(value))


#: Fields the simulator computes at each read from the clock or its change counter.
_MOVING = {"quickStats", "timestamp", "statsGenNumber"}


def _steady(data):
    if isinstance(data, dict):
        return {k: _steady(v) for k, v in data.items() if k not in _MOVING}
    if isinstance(data, list):
        return [_steady(v) for v in data]
    return data


def _text(name: str, value) -> str:
    """``value`` as JSON text (every field, with each object's type), less moving fields."""
    return json.dumps(_steady(json.loads(json.dumps(value, default=_wire_json))),
                      sort_keys=True)


def _state_server(path: str, **kwargs) -> SimulatorServer:
    return SimulatorServer(Simulator(), state_file=path, **kwargs)


def test_restart_through_the_state_file_keeps_everything(tmp_path):
    path = str(tmp_path / "state.json")
    with _state_server(path, save_interval=3600) as server:
        si = connect(server)
        sim = server.simulator
        moids = _arrange(si, sim, server)
        view = si.content.viewManager.CreateContainerView(
            si.content.rootFolder, [vim.HostSystem], True)
        lease = vim.VirtualMachine(moids["off"], si._stub).ExportVm()  # a transfer in flight
        before = _everything(si)
        uuid_before = si.content.about.instanceUuid
        server.restart()  # saves at the stop, loads the file, serves again
        assert os.path.exists(path)
        si = connect(server)
        assert _everything(si) == before
        assert si.content.about.instanceUuid == uuid_before
        vm = vim.VirtualMachine(moids["vm"], si._stub)
        assert vm.runtime.powerState == "poweredOn" and vm.snapshot.currentSnapshot is not None
        assert vm.summary.quickStats.uptimeSeconds >= 0
        assert bind(si, sim.host("esx-b4")).runtime.inMaintenanceMode is True
        failed = vim.Task(moids["failed_task"], si._stub).info
        assert failed.state == "error" and isinstance(failed.error, vim.fault.InvalidPowerState)
        got = requests.get(_file_url(server, "images/big.bin"), auth=_auth(server), timeout=10)
        assert got.content == BIG
        # The session's view and the transfer did not survive, and ids are never
        # handed out again.
        with pytest.raises(vmodl.fault.ManagedObjectNotFound):
            vim.view.ContainerView(view._moId, si._stub).view  # noqa: B018
        with pytest.raises(vmodl.fault.ManagedObjectNotFound):
            vim.HttpNfcLease(lease._moId, si._stub).state  # noqa: B018
        fresh = create_vm(si, server.simulator, "after-restart", "esx-a3")
        assert fresh._moId not in moids.values()
        assert int(fresh._moId.split("-")[1]) > int(moids["gone"].split("-")[1])


def _arrange_managers(si, sim) -> dict:
    """State the managers keep: events, custom fields, options, extensions, licenses,
    roles and permissions, alarms, a template and a linked clone."""
    content = si.content
    vm = create_vm(si, sim, "managed", "esx-a1", disk_gb=1, power_on=True)
    content.eventManager.LogUserEvent(vm, "noted by an operator")
    cfm = content.customFieldsManager
    field = cfm.AddCustomFieldDef("owner", vim.VirtualMachine)
    cfm.SetField(vm, field.key, "team-a")
    content.setting.UpdateOptions([
        vim.option.OptionValue(key="config.vpxd.sso.solutionUser.tokenLifetime",
                               value=VmomiSupport.GetVmodlType("long")(7200)),
        vim.option.OptionValue(key="custom.added.key", value="kept")])
    host_options = bind(si, sim.host("esx-a1")).configManager.advancedOption
    host_options.UpdateOptions([vim.option.OptionValue(key="Mem.ShareScanGHz", value=8)])
    content.extensionManager.RegisterExtension(vim.Extension(
        key="org.openstack.compute", version="1.0", lastHeartbeatTime=si.CurrentTime(),
        description=vim.Description(label="OpenStack", summary="OpenStack services")))
    licenses = content.licenseManager
    licenses.AddLicense("ABCDE-12345-FGHIJ-67890-KLMNO")
    licenses.licenseAssignmentManager.UpdateAssignedLicense(
        sim.host("esx-a1").moid, "ABCDE-12345-FGHIJ-67890-KLMNO")
    auth = content.authorizationManager
    role = auth.AddAuthorizationRole("vm-operator", ["VirtualMachine.Interact.PowerOn"])
    auth.SetEntityPermissions(vm, [vim.AuthorizationManager.Permission(
        principal=sim.username.partition("@")[0], group=False, roleId=role, propagate=False)])
    alarm = content.alarmManager.CreateAlarm(vm, vim.alarm.AlarmSpec(
        name="off", description="VM is off", enabled=True,
        expression=vim.alarm.StateAlarmExpression(
            type=vim.VirtualMachine, statePath="runtime.powerState", operator="isEqual",
            red="poweredOff")))
    content.alarmManager.EnableAlarmActions(vm, False)
    golden = create_vm(si, sim, "golden", "esx-a2", disk_gb=1)
    snap = run(golden.CreateSnapshot_Task("base", "", False, False))
    spec = vim.vm.CloneSpec(location=vim.vm.RelocateSpec(
        pool=bind(si, sim.cluster("cluster-a").resource_pool),
        diskMoveType="createNewChildDiskBacking"), snapshot=snap, powerOn=False,
        template=False)
    linked = run(golden.CloneVM_Task(golden.parent, "linked", spec))
    golden.MarkAsTemplate()
    # A session's collectors and views end with it, as at a vCenter restart.
    collector = content.eventManager.CreateCollectorForEvents(vim.event.EventFilterSpec())
    list_view = content.viewManager.CreateListView([vm])
    return {"vm": vm._moId, "field": field.key, "role": role, "alarm": alarm._moId,
            "golden": golden._moId, "linked": linked._moId, "collector": collector._moId,
            "list_view": list_view._moId}


def _managers(si, moids: dict, until_event: int) -> dict:
    """What the managers show: every property of each, and their query answers
    (events up to key ``until_event``: logins after it add theirs)."""
    content = si.content
    host_options = content.rootFolder.childEntity[0].hostFolder.childEntity[0].host[0] \
        .configManager.advancedOption
    alarm = vim.alarm.Alarm(moids["alarm"], si._stub)
    objects = [content.eventManager, content.customFieldsManager, content.setting,
               content.extensionManager, content.licenseManager, content.authorizationManager,
               content.alarmManager, content.userDirectory, host_options, alarm]
    spec = PC.FilterSpec(objectSet=[PC.ObjectSpec(obj=o) for o in objects],
                         propSet=[PC.PropertySpec(type=type(o), all=True) for o in objects])
    found = {}
    for obj in content.propertyCollector.RetrieveContents([spec]):
        for prop in obj.propSet:
            if prop.name != "latestEvent":
                found[f"{obj.obj._moId}.{prop.name}"] = _text(prop.name, prop.val)
    vm = vim.VirtualMachine(moids["vm"], si._stub)
    answers = {
        "events": [e for e in content.eventManager.QueryEvents(vim.event.EventFilterSpec())
                   if e.key <= until_event],
        "permissions": content.authorizationManager.RetrieveAllPermissions(),
        "assigned": content.licenseManager.licenseAssignmentManager.QueryAssignedLicenses(),
        "alarms": content.alarmManager.GetAlarm(vm),
        "alarm actions": content.alarmManager.AreAlarmActionsEnabled(vm),
        "vm": [vm.customValue, vm.availableField, vm.effectiveRole, vm.permission],
    }
    found.update({name: _text(name, value) for name, value in answers.items()})
    return found


def test_restart_keeps_what_the_managers_hold(tmp_path):
    path = str(tmp_path / "state.json")
    with _state_server(path, save_interval=3600) as server:
        si = connect(server)
        sim = server.simulator
        moids = _arrange_managers(si, sim)
        last_event = si.content.eventManager.latestEvent.key
        before = _managers(si, moids, last_event)
        assert len(before["events"]) > 20
        server.restart()
        si = connect(server)
        sim = server.simulator
        assert _managers(si, moids, last_event) == before
        content = si.content
        # Keys and ids go on from where they were, never handed out twice.
        vm = vim.VirtualMachine(moids["vm"], si._stub)
        run(vm.PowerOffVM_Task())
        newest = content.eventManager.QueryEvents(vim.event.EventFilterSpec(maxCount=1))[0]
        assert isinstance(newest, vim.event.VmPoweredOffEvent) and newest.key > last_event
        assert newest.userName == sim.username  # who acts is known again
        field = content.customFieldsManager.AddCustomFieldDef("cost-center", None)
        assert field.key == moids["field"] + 1
        assert content.authorizationManager.AddAuthorizationRole("other", []) == \
            moids["role"] + 1
        # The template stays a template; the linked clone keeps its parent disk.
        golden = vim.VirtualMachine(moids["golden"], si._stub)
        assert golden.config.template is True and golden.resourcePool is None
        assert isinstance(fault_of(golden.PowerOnVM_Task()), vmodl.fault.NotSupported)
        linked = vim.VirtualMachine(moids["linked"], si._stub)
        [disk] = [d for d in linked.config.hardware.device
                  if isinstance(d, vim.vm.device.VirtualDisk)]
        assert disk.backing.parent.fileName == "[shared-a] golden/golden.vmdk"
        assert sim.files.get("shared-a", "linked/linked.vmdk").parent == \
            "[shared-a] golden/golden.vmdk"
        for moid, kind in ((moids["collector"], vim.event.EventHistoryCollector),
                           (moids["list_view"], vim.view.ListView)):
            with pytest.raises(vmodl.fault.ManagedObjectNotFound):
                kind(moid, si._stub).filter if kind is not vim.view.ListView \
                    else kind(moid, si._stub).view  # noqa: B018


#: What a simulator saved before it had these managers and attributes did not hold.
_NEWER_CLASSES = {"EventManager", "PerformanceManager", "OptionManager", "CustomFieldsManager",
                  "ExtensionManager", "LicenseManager", "LicenseAssignmentManager",
                  "UserDirectory", "AuthorizationManager", "AlarmManager", "OvfManager"}
_NEWER_ATTRIBUTES = {"custom_values", "advanced_options", "chain_id", "created"}


def test_a_state_saved_before_the_managers_existed_loads(tmp_path):
    path = str(tmp_path / "state.json")
    with _state_server(path, save_interval=3600) as server:
        si = connect(server)
        vm = create_vm(si, server.simulator, "older", "esx-a1")
        run(vm.PowerOnVM_Task())
    with open(path) as f:
        document = json.load(f)
    document["objects"] = [o for o in document["objects"] if o["class"] not in _NEWER_CLASSES]
    for entry in document["objects"] + document["detached"]:
        for name in _NEWER_ATTRIBUTES:
            entry["state"].pop(name, None)
    with open(path, "w") as f:
        json.dump(document, f)
    with _state_server(path, save_interval=3600) as server:
        si = connect(server)
        sim = server.simulator
        vm = vim.VirtualMachine(vm._moId, si._stub)
        assert vm.runtime.powerState == "poweredOn"
        # The managers start afresh; what the entities lacked gets its defaults.
        field = si.content.customFieldsManager.AddCustomFieldDef("owner", None)
        si.content.customFieldsManager.SetField(vm, field.key, "team-a")
        assert [v.value for v in vm.customValue] == ["team-a"]
        options = bind(si, sim.host("esx-a1")).configManager.advancedOption
        assert options.QueryOptions("Misc.HostName")[0].value == "esx-a1"
        [power_on] = [t for t in sim.registry.all("Task") if t.method == "PowerOnVM_Task"]
        assert vim.Task(power_on.moid, si._stub).info.eventChainId == power_on.chain_id
        [switch] = sim.registry.all("VmwareDistributedVirtualSwitch")
        assert bind(si, switch).config.createTime is not None
        run(vm.PowerOffVM_Task())
        assert isinstance(si.content.eventManager.latestEvent, vim.event.VmPoweredOffEvent)
        assert server.save_state() is not None


def test_a_task_running_at_the_restart_fails(tmp_path):
    path = str(tmp_path / "state.json")
    with _state_server(path, save_interval=3600) as server:
        si = connect(server)
        sim = server.simulator
        vm = create_vm(si, sim, "slow", "esx-a1")
        sim.faults.add_latency("PowerOnVM_Task", 30.0, task=True)
        task = vm.PowerOnVM_Task()
        wait_until(lambda: sim.registry.get(task._moId).state == "running")
        server.restart()
        sim.faults.clear()
        si = connect(server)
        info = vim.Task(task._moId, si._stub).info
        assert info.state == "error" and isinstance(info.error, vmodl.fault.SystemError)
        assert "restarted" in info.error.reason
        again = vim.VirtualMachine(vm._moId, si._stub)
        assert again.runtime.powerState == "poweredOff" and again.recentTask == []


def test_periodic_saves_only_when_something_changed(tmp_path):
    path = str(tmp_path / "state.json")
    with _state_server(path, save_interval=0.1) as server:
        sim = server.simulator
        first = os.stat(path).st_mtime_ns
        time.sleep(0.4)
        assert os.stat(path).st_mtime_ns == first  # nothing changed: nothing written
        si = connect(server)
        create_vm(si, sim, "noticed", "esx-a1")
        wait_until(lambda: b'"noticed"' in open(path, "rb").read(), timeout=5)


def test_large_contents_are_blobs_written_once_and_dropped_when_unused(tmp_path):
    path = str(tmp_path / "state.json")
    with _state_server(path, save_interval=3600) as server:
        url = _file_url(server, "images/big.bin")
        assert requests.put(url, data=BIG, auth=_auth(server), timeout=10).status_code == 201
        stats = server.save_state()
        assert stats.blobs_written == 1
        blobs = os.listdir(path + ".blobs")
        assert len(blobs) == 1 and BIG not in open(path, "rb").read()
        server.simulator.registry.touch()
        assert server.save_state().blobs_written == 0  # the same content is not rewritten
        assert requests.delete(url, auth=_auth(server), timeout=10).status_code == 204
        server.save_state()
        assert os.listdir(path + ".blobs") == []


def test_a_failed_save_leaves_the_previous_state(tmp_path, monkeypatch):
    path = str(tmp_path / "state.json")
    with _state_server(path, save_interval=3600) as server:
        previous = open(path, "rb").read()
        si = connect(server)
        create_vm(si, server.simulator, "unsaved", "esx-a1")

        def full_disk(fd):
            raise OSError(28, "No space left on device")

        monkeypatch.setattr(persistence.os, "fsync", full_disk)
        assert server.save_state() is None  # logged; the next period tries again
        assert open(path, "rb").read() == previous
        assert [n for n in os.listdir(tmp_path) if ".tmp-" in n] == []
        monkeypatch.undo()
        assert server.save_state() is not None
        assert b'"unsaved"' in open(path, "rb").read()


def test_saving_holds_the_lock_only_while_the_simulator_keeps_changing(tmp_path):
    sim = Simulator()
    state = persistence.StateFile(str(tmp_path / "state.json"))
    assert state.save(sim).seconds_locked == 0.0  # quiet: snapshot taken without the lock
    host = sim.host("esx-a1")
    entries = sim.files.entries

    def entries_while_another_call_changes_things():
        with sim.registry.lock:  # a call lands in the middle of every snapshot
            host.cpu_features.append("x")
            sim.registry.touch()
        return entries()

    sim.files.entries = entries_while_another_call_changes_things
    stats = state.save(sim)
    # Each lock-free snapshot was overtaken: the last one was taken under the lock.
    assert stats.seconds_locked > 0.0
    loaded = Simulator({"datacenters": []})
    state.load(loaded)
    assert loaded.host("esx-a1").cpu_features == host.cpu_features


@pytest.mark.parametrize("content,message", [
    (b"{not json", "is not a valid simulator state"),
    (b'{"format": "something else"}', "is not a simulator state file"),
    (json.dumps({"format": persistence.FORMAT, "version": 99}).encode(), "state version 99"),
])
def test_invalid_state_files_are_refused(tmp_path, content, message):
    path = tmp_path / "state.json"
    path.write_bytes(content)
    with pytest.raises(persistence.StateError, match=message):
        persistence.StateFile(str(path)).load(Simulator())


def test_a_state_file_names_only_simulator_classes_and_vim_types(tmp_path):
    path = str(tmp_path / "state.json")
    with _state_server(path, save_interval=3600) as server:
        create_vm(connect(server), server.simulator, "vm", "esx-a1")
    text = open(path).read()
    assert '"_t":"vim.' in text and '"_dc":"FileEntry"' in text
    for bad, message in ((re.sub(r'"class":"Folder"', '"class":"Popen"', text, count=1),
                          "no simulator object class 'Popen'"),
                         (text.replace('"_t":"vim.', '"_t":"os.', 1), "os."),
                         (text.replace('"_dc":"FileEntry"', '"_dc":"Popen"', 1),
                          "unknown record type")):
        with open(path, "w") as f:
            f.write(bad)
        with pytest.raises(persistence.StateError, match=re.escape(message)):
            persistence.StateFile(path).load(Simulator())


def test_a_damaged_blob_is_refused(tmp_path):
    path = str(tmp_path / "state.json")
    with _state_server(path, save_interval=3600) as server:
        requests.put(_file_url(server, "big.bin"), data=BIG, auth=_auth(server), timeout=10)
    (blob,) = os.listdir(path + ".blobs")
    with open(os.path.join(path + ".blobs", blob), "r+b") as f:
        f.write(b"X")
    with pytest.raises(persistence.StateError, match="is damaged"):
        persistence.StateFile(path).load(Simulator())


# -- the command line: a killed simulator loses at most the last period -----------------


class _Cli:
    def __init__(self, *args: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "nova_vsphere_driver.simulator", "--listen", "127.0.0.1:0",
             "--password", "pw", *args],
            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        line = self.proc.stdout.readline()
        match = re.search(r"listening on http://127.0.0.1:(\d+)/sdk", line)
        assert match, (line, self.proc.stderr.read() if self.proc.poll() is not None else "")
        self.port = int(match.group(1))

    def connect(self):
        return SmartConnect(host="127.0.0.1", port=self.port, user="administrator@vsphere.local",
                            pwd="pw", protocol="http")

    def vm_names(self) -> set[str]:
        si = self.connect()
        folder = si.content.rootFolder.childEntity[0].vmFolder
        return {vm.name for vm in folder.childEntity}


def test_a_killed_simulator_comes_back_with_its_last_periodic_save(tmp_path):
    path = str(tmp_path / "state.json")
    cli = _Cli("--state", path, "--save-interval", "0.3")
    try:
        si = cli.connect()
        dc = si.content.rootFolder.childEntity[0]
        host = dc.hostFolder.childEntity[0].host[0]
        spec = vim.vm.ConfigSpec(name="survivor", numCPUs=1, memoryMB=512, guestId="otherGuest64",
                                 files=vim.vm.FileInfo(vmPathName="[shared-a]"))
        vm = run(dc.vmFolder.CreateVM_Task(spec, host.parent.resourcePool, host))
        run(vm.PowerOnVM_Task())
        moid = vm._moId
        wait_until(lambda: b'"survivor"' in open(path, "rb").read()
                   and b'"poweredOn"' in open(path, "rb").read(), timeout=10,
                   what="a periodic save with the new VM")
    finally:
        cli.proc.kill()  # SIGKILL: no chance to save at exit
        cli.proc.wait(timeout=30)
    again = _Cli("--state", path, "--save-interval", "0.3")
    try:
        si = again.connect()
        vm = vim.VirtualMachine(moid, si._stub)
        assert vm.name == "survivor" and vm.runtime.powerState == "poweredOn"
    finally:
        again.proc.send_signal(signal.SIGTERM)
        assert again.proc.wait(timeout=30) == 0


def test_sigterm_saves_the_state_at_exit(tmp_path):
    path = str(tmp_path / "state.json")
    inventory = tmp_path / "inventory.json"
    inventory.write_text(json.dumps({"datacenters": [{"name": "lab", "clusters": [
        {"name": "c1", "hosts": [{"name": "h1", "cores": 8, "memory_mb": 65536}]}],
        "datastores": [{"name": "ds1", "capacity_gb": 100}]}]}))
    cli = _Cli("--state", path, "--save-interval", "3600", "--inventory", str(inventory))
    try:
        si = cli.connect()
        dc = si.content.rootFolder.childEntity[0]
        run(dc.hostFolder.childEntity[0].Rename_Task("renamed-cluster"))
    finally:
        cli.proc.send_signal(signal.SIGTERM)
        assert cli.proc.wait(timeout=30) == 0
    # The saved state is used; --inventory only seeds a new one.
    again = _Cli("--state", path, "--inventory", str(inventory))
    try:
        si = again.connect()
        names = [c.name for c in si.content.rootFolder.childEntity[0].hostFolder.childEntity]
        assert names == ["renamed-cluster"]
    finally:
        again.proc.send_signal(signal.SIGTERM)
        assert again.proc.wait(timeout=30) == 0


def test_cli_refuses_an_unreadable_state_file(tmp_path):
    path = tmp_path / "state.json"
    path.write_text("garbage")
    done = subprocess.run([sys.executable, "-m", "nova_vsphere_driver.simulator", "--listen",
                           "127.0.0.1:0", "--password", "pw", "--state", str(path)],
                          cwd=ROOT, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 2
    assert "--state:" in done.stderr and "not a valid simulator state" in done.stderr
    assert path.read_text() == "garbage"  # left as it was
