"""Tasks as vCenter runs them, and fault injection from Python and over HTTP."""

from __future__ import annotations

import faulthandler
import sys
import threading
import time

import pytest
import requests
from pyVmomi import vim, vmodl

from nova_vsphere_driver.simulator.faults import make_fault
from tests.fixtures import connect
from tests.unit.simulator.helpers import PC, bind, create_vm, dc1, fault_of, run, vm_spec


def _task_states(si, task, timeout=10.0) -> list[str]:
    """Every info.state the task passes through, seen by a property filter."""
    collector = si.content.propertyCollector.CreatePropertyCollector()
    collector.CreateFilter(PC.FilterSpec(
        objectSet=[PC.ObjectSpec(obj=task)],
        propSet=[PC.PropertySpec(type=vim.Task, pathSet=["info.state"])]), True)
    states, version = [], ""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        update = collector.WaitForUpdatesEx(version, PC.WaitOptions(maxWaitSeconds=1))
        if update is None:
            continue
        version = update.version
        for obj in update.filterSet[0].objectSet:
            states.extend(c.val for c in obj.changeSet)
        if states and states[-1] in ("success", "error"):
            break
    collector.DestroyPropertyCollector()
    return states


# -- task lifecycle ------------------------------------------------------------------------


def test_task_goes_queued_running_success(si, sim):
    # Queued long enough that a loaded machine's pause cannot skip the state.
    sim.faults.add_latency("CreateVM_Task", 0.3, queued=1.5)
    folder = dc1(si).vmFolder
    start = time.monotonic()
    task = folder.CreateVM_Task(vm_spec("slow"), bind(si, sim.cluster("cluster-a").resource_pool),
                                bind(si, sim.host("esx-a1")))
    assert time.monotonic() - start < 1.5  # the call returns before the work is done
    assert task.info.state == "queued"
    assert task in folder.recentTask
    assert task in si.content.taskManager.recentTask
    assert _task_states(si, task) == ["queued", "running", "success"]

    info = task.info
    vm = info.result
    assert isinstance(vm, vim.VirtualMachine) and vm.name == "slow"
    assert info.key == task._moId and info.task == task
    assert info.entity == folder and info.entityName == "vm"
    assert info.descriptionId == "Folder.createVm"
    assert info.name is not None
    assert info.queueTime <= info.startTime <= info.completeTime
    assert info.progress == 100 and info.error is None
    assert info.reason.userName == sim.username
    assert info.cancelled is False and info.cancelable is False


def test_a_quick_task_runs_once_answered_and_the_next_request_finds_it_done(si, sim,
                                                                           monkeypatch):
    vm = create_vm(si, sim, "quick")
    answered = threading.Event()
    runs = []
    real_run = sim.tasks._run

    def run(task, work, pass_task):
        # The client has its answer (the task, queued) before the body runs.
        runs.append((task.state, answered.wait(10)))
        real_run(task, work, pass_task)

    monkeypatch.setattr(sim.tasks, "_run", run)
    task = vm.PowerOnVM_Task()
    answered.set()
    assert task.info.state == "success"  # the client's next request
    assert runs == [("queued", True)]
    # Called from Python (no request being answered): it runs at once.
    monkeypatch.undo()
    assert not sim.after_answer(lambda: None)
    ref = sim.tasks.start(None, sim.vm("quick"), "PowerOffVM_Task", lambda: "done")
    assert sim.registry.get(ref._moId).result == "done"


def test_work_after_the_answer_runs_in_order_even_when_the_answer_failed(sim):
    done = []
    with pytest.raises(RuntimeError):
        with sim.answering():
            assert sim.after_answer(done.append, 1)
            assert sim.after_answer(done.append, 2)
            assert done == []
            raise RuntimeError("the client hung up")
    assert done == [1, 2]
    assert not sim.after_answer(done.append, 3)


def test_task_entity_and_description_per_method(si, sim):
    vm = create_vm(si, sim, "described")
    task = vm.PowerOnVM_Task()
    run(task)
    info = task.info
    assert (info.entity, info.entityName, info.descriptionId) == (
        vm, "described", "VirtualMachine.powerOn")
    assert info.result is None
    host = bind(si, sim.host("esx-b4"))
    task = host.EnterMaintenanceMode_Task(0)
    run(task)
    assert (task.info.entity, task.info.descriptionId) == (
        host, "HostSystem.enterMaintenanceMode")
    assert task.info.cancelable is True


def test_injected_task_fault_fails_the_task_not_the_call(si, sim):
    vm = create_vm(si, sim, "unlucky", "esx-a1", memory_mb=2048)
    sim.faults.fail_next("PowerOnVM_Task", make_fault("InsufficientResourcesFault", "no room"),
                         count=2)
    for _ in range(2):
        task = vm.PowerOnVM_Task()
        fault = fault_of(task)
        assert isinstance(fault, vim.fault.InsufficientResourcesFault)
        assert fault.msg == "no room" or task.info.error.msg == "no room"
        assert task.info.state == "error" and task.info.result is None
        assert vm.runtime.powerState == "poweredOff"
        assert bind(si, sim.host("esx-a1")).summary.quickStats.overallMemoryUsage == 0
    run(vm.PowerOnVM_Task())
    assert vm.runtime.powerState == "poweredOn"


def test_injected_call_fault_and_wildcards(si, sim):
    vm = create_vm(si, sim, "refused")
    tasks_before = len(sim.task_manager.recent)
    sim.faults.fail_next("PowerOnVM_Task", "TaskInProgress", in_call=True)
    with pytest.raises(vim.fault.TaskInProgress):
        vm.PowerOnVM_Task()
    assert len(sim.task_manager.recent) == tasks_before  # no task was created
    # "*" matches every method, once.
    sim.faults.fail_next("*", "InvalidState", in_call=True)
    with pytest.raises(vim.fault.InvalidState):
        si.CurrentTime()
    assert si.CurrentTime() is not None
    sim.faults.fail_next("*", "NotFound", in_call=True)
    with pytest.raises(vim.fault.NotFound):
        vm.name  # noqa: B018  (a property read is a call too)
    sim.faults.clear()
    assert vm.name == "refused"


def test_call_latency(si, sim):
    sim.faults.add_latency("CurrentTime", 1.0)
    start = time.monotonic()
    si.CurrentTime()
    assert time.monotonic() - start >= 1.0
    start = time.monotonic()
    si.content.rootFolder.name  # noqa: B018
    assert time.monotonic() - start < 1.0  # other methods are not delayed


def test_task_latency_keeps_the_task_running(si, sim):
    vm = create_vm(si, sim, "lagging")
    sim.faults.add_latency("PowerOnVM_Task", 0.6)
    task = vm.PowerOnVM_Task()
    assert task.info.state in ("queued", "running")
    assert vm.runtime.powerState == "poweredOff"
    run(task)
    assert vm.runtime.powerState == "poweredOn"


def test_a_task_on_a_vm_deleted_while_it_waited_fails_and_changes_nothing(si, sim):
    """A vMotion queued behind the VM's Destroy_Task: vCenter fails it with
    ManagedObjectNotFound; the VM must not come back on the target host."""
    vm = create_vm(si, sim, "doomed", "esx-a1")
    target = sim.host("esx-a2")
    sim.faults.add_latency("RelocateVM_Task", 0.6)
    relocation = vm.RelocateVM_Task(vim.vm.RelocateSpec(host=bind(si, target)))
    run(vm.Destroy_Task())
    fault = fault_of(relocation)
    assert isinstance(fault, vmodl.fault.ManagedObjectNotFound)
    assert "doomed" not in [v.name for v in target.vms]
    assert "doomed" not in [v.name for v in sim.host("esx-a1").vms]


def test_cancel_of_a_task_that_is_not_cancelable(si, sim):
    vm = create_vm(si, sim, "uncancelable")
    sim.faults.add_latency("PowerOnVM_Task", 0.3)
    task = vm.PowerOnVM_Task()
    with pytest.raises(vim.fault.InvalidState):
        task.CancelTask()
    run(task)
    with pytest.raises(vim.fault.InvalidState):
        task.CancelTask()


# -- /simulator/control ---------------------------------------------------------------------


def _control(sim_server, **request):
    sim = sim_server.simulator
    try:
        return requests.post(f"http://127.0.0.1:{sim_server.port}/simulator/control",
                             json=request, auth=(sim.username, sim.password), timeout=10)
    except requests.Timeout:
        # Every thread's stack (the simulator's serve and task threads
        # included) into the test's captured stderr: a control call that
        # hangs shows what it waits for.
        faulthandler.dump_traceback(file=sys.__stderr__, all_threads=True)
        raise


def test_control_fail_next_latency_and_clear(sim_server, si, sim):
    vm = create_vm(si, sim, "ctl")
    resp = _control(sim_server, action="fail_next", method="PowerOnVM_Task",
                    fault="InvalidState", message="from control", count=1)
    assert resp.status_code == 200 and resp.json()["ok"] is True
    fault = fault_of(vm.PowerOnVM_Task())
    assert isinstance(fault, vim.fault.InvalidState)
    run(vm.PowerOnVM_Task())

    assert _control(sim_server, action="latency", method="PowerOffVM_Task", seconds=0.1,
                    queued=0.5).status_code == 200
    task = vm.PowerOffVM_Task()
    assert task.info.state == "queued"
    run(task)
    assert _control(sim_server, action="clear").status_code == 200
    assert sim.faults.task_latency("PowerOffVM_Task") == 0
    stats = _control(sim_server, action="stats").json()["result"]
    assert stats["by_method"]["PowerOnVM_Task"] == 2
    assert stats["requests"] >= sum(stats["by_method"].values()) - 1
    assert _control(sim_server, action="nonsense").status_code == 400


def test_control_expire_sessions_forces_a_new_login(sim_server, si, sim):
    assert si.content.rootFolder.name == "Datacenters"
    assert _control(sim_server, action="expire_sessions").status_code == 200
    assert sim.sessions == {}
    with pytest.raises(vim.fault.NotAuthenticated):
        si.content.rootFolder.childEntity  # noqa: B018
    again = connect(sim_server)
    assert again.content.rootFolder.childEntity[0].name == "dc1"


def test_control_disconnect_and_reconnect_a_host(sim_server, si, sim):
    vm = create_vm(si, sim, "on-b2", "esx-b2", datastore="shared-b", power_on=True)
    host = bind(si, sim.host("esx-b2"))
    assert _control(sim_server, action="disconnect_host", host="esx-b2").status_code == 200
    assert host.runtime.connectionState == "disconnected"
    assert vm.runtime.connectionState == "disconnected"
    assert bind(si, sim.cluster("cluster-b")).summary.numEffectiveHosts == 3
    assert _control(sim_server, action="reconnect_host", host="esx-b2").status_code == 200
    assert host.summary.runtime.connectionState == "connected"
    assert vm.runtime.connectionState == "connected"
    assert vm.runtime.powerState == "poweredOn"


def test_control_restart_keeps_state_and_drops_sessions(sim_server, si, sim):
    vm = create_vm(si, sim, "survivor", power_on=True)
    port = sim_server.port
    assert _control(sim_server, action="restart").status_code == 200
    deadline = time.monotonic() + 10
    while True:  # the listener comes back on the same port
        try:
            fresh = connect(sim_server)
            break
        except Exception:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)
    assert sim_server.port == port
    with pytest.raises(vim.fault.NotAuthenticated):
        si.content.rootFolder.childEntity  # noqa: B018
    survivor = bind(fresh, vm)
    assert survivor.name == "survivor" and survivor.runtime.powerState == "poweredOn"


def test_control_requires_credentials(sim_server):
    url = f"http://127.0.0.1:{sim_server.port}/simulator/control"
    assert requests.post(url, json={"action": "clear"}, timeout=10).status_code == 401
    assert requests.post(url, json={"action": "clear"}, auth=("x", "y"),
                         timeout=10).status_code == 401


def test_unknown_objects_fault_with_their_reference(si, sim):
    ghost = vim.VirtualMachine("vm-424242", si._stub)
    with pytest.raises(vmodl.fault.ManagedObjectNotFound) as exc:
        ghost.PowerOnVM_Task()
    assert exc.value.obj._moId == "vm-424242"
