"""Tasks as first-class objects: queued -> running -> success | error."""

from __future__ import annotations

import datetime
import logging
import queue
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from pyVmomi import VmomiSupport, vim, vmodl

from nova_vsphere_driver.simulator.faults import complete_fault
from nova_vsphere_driver.simulator.objects.base import CallContext, ManagedEntity, ManagedObject
from nova_vsphere_driver.simulator.objects.history import (
    HistoryCollector,
    check_collector_limit,
    subtree,
)
from nova_vsphere_driver.simulator.vim_data import data_object
from nova_vsphere_driver.simulator.vim_faults import (
    invalid_argument,
    object_not_found,
    system_error,
    with_fault_message,
)

if TYPE_CHECKING:
    from nova_vsphere_driver.simulator.service import Simulator

LOG = logging.getLogger(__name__)

# descriptionId vCenter uses for a method's task (TaskInfo.descriptionId).
_DESCRIPTION_IDS = {
    "CreateVM_Task": "Folder.createVm",
    "PowerOnVM_Task": "VirtualMachine.powerOn",
    "PowerOffVM_Task": "VirtualMachine.powerOff",
    "ResetVM_Task": "VirtualMachine.reset",
    "SuspendVM_Task": "VirtualMachine.suspend",
    "ReconfigVM_Task": "VirtualMachine.reconfigure",
    "RelocateVM_Task": "VirtualMachine.relocate",
    "MigrateVM_Task": "VirtualMachine.migrate",
    "CloneVM_Task": "VirtualMachine.clone",
    "Destroy_Task": "ManagedEntity.destroy",
    "Rename_Task": "ManagedEntity.rename",
    "CreateSnapshot_Task": "VirtualMachine.createSnapshot",
    "RemoveSnapshot_Task": "vm.Snapshot.remove",
    "EnterMaintenanceMode_Task": "HostSystem.enterMaintenanceMode",
    "ExitMaintenanceMode_Task": "HostSystem.exitMaintenanceMode",
    "ReconfigureComputeResource_Task": "ClusterComputeResource.reconfigureEx",
    "SearchDatastore_Task": "host.DatastoreBrowser.search",
    "SearchDatastoreSubFolders_Task": "host.DatastoreBrowser.searchSubFolders",
    "DeleteDatastoreFile_Task": "FileManager.deleteFile",
    "MoveDatastoreFile_Task": "FileManager.moveFile",
    "CopyDatastoreFile_Task": "FileManager.copyFile",
    "CreateVirtualDisk_Task": "VirtualDiskManager.createVirtualDisk",
    "CopyVirtualDisk_Task": "VirtualDiskManager.copyVirtualDisk",
    "ExtendVirtualDisk_Task": "VirtualDiskManager.extendVirtualDisk",
    "DeleteVirtualDisk_Task": "VirtualDiskManager.deleteVirtualDisk",
}

_RECENT_TASK_LIMIT = 200


def _managed_method(name: str):
    try:
        return VmomiSupport.GetWsdlMethod("urn:vim25", name)
    except KeyError:
        return None


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.timezone.utc)


class Task(ManagedObject):
    vim_type = vim.Task
    moid_prefix = "task"

    def __init__(self, sim: Simulator, entity: ManagedObject | None, method: str,
                 user: str | None) -> None:
        super().__init__(sim)
        self.entity = entity
        self.method = method
        self.state = vim.TaskInfo.State.queued
        self.result: Any = None
        self.error: vmodl.MethodFault | None = None
        self.cancelled = False
        self.cancelable = method in ("RelocateVM_Task", "MigrateVM_Task",
                                     "EnterMaintenanceMode_Task", "CloneVM_Task")
        self.progress: int | None = None
        self.user = user
        self.queue_time = _now()
        self.start_time: datetime.datetime | None = None
        self.complete_time: datetime.datetime | None = None
        self.done = threading.Event()
        #: Events of this task share its chain id (TaskInfo.eventChainId).
        self.chain_id = int(self.moid.split("-")[-1])
        #: Set by CancelTask: a task waiting out injected latency stops at once,
        #: as a vMotion in progress ends soon after vCenter is asked to cancel it.
        self.cancel_requested = threading.Event()

    transient = ManagedObject.transient | {"done", "cancel_requested"}

    def dependents(self):
        # Task collectors' latestPage shows the tasks' info.
        return self.sim.registry.all("TaskHistoryCollector")

    def restored(self) -> None:
        super().restored()
        # (A state saved before tasks kept their chain id.)
        self.__dict__.setdefault("chain_id", int(self.moid.split("-")[-1]))
        self.done = threading.Event()
        self.cancel_requested = threading.Event()
        if self.state in (vim.TaskInfo.State.queued, vim.TaskInfo.State.running):
            # Its worker thread did not survive the restart: the task failed.
            self.state = vim.TaskInfo.State.error
            self.error = vmodl.fault.SystemError(
                reason="the vCenter service restarted while the task ran",
                msg="A general system error occurred: the vCenter service restarted "
                "while the task ran")
            if isinstance(self.entity, ManagedEntity) and self in self.entity.recent_tasks:
                self.entity.recent_tasks.remove(self)
        if self.complete_time is None:
            self.complete_time = _now()
        self.done.set()

    #: Attributes that are caches, not state.
    _NOT_STATE = frozenset({"_changes", "_cache", "_wire_fragments"})

    def __setattr__(self, name: str, value: Any) -> None:
        super().__setattr__(name, value)
        if name not in self._NOT_STATE:
            super().__setattr__("_changes", self.__dict__.get("_changes", 0) + 1)

    def cache_version(self) -> tuple:
        """The task's own changes and its entity's name: all its info depends on.

        Clients poll a task's info many times while other tasks change the
        inventory; its cached info (and wire form) lives until it changes.
        """
        return self._changes, getattr(self.entity, "name", None)

    def _get_info(self) -> vim.TaskInfo:
        # Built on every change of the task and for its TaskEvent: without
        # pyVmomi's per-field checks (vim_data.data_object).
        fields = {}
        if self.entity is not None:
            fields["entity"] = self.entity.ref
            fields["entityName"] = getattr(self.entity, "name", None)
        if self.state == vim.TaskInfo.State.success:
            fields["result"] = self.result
        if self.error is not None:
            fields["error"] = with_fault_message(self.error)
        return data_object(
            vim.TaskInfo,
            key=self.moid,
            task=self.ref,
            name=_managed_method(self.method),
            descriptionId=_DESCRIPTION_IDS.get(self.method, self.method),
            state=self.state,
            cancelled=self.cancelled,
            cancelable=self.cancelable,
            queueTime=self.queue_time,
            startTime=self.start_time,
            completeTime=self.complete_time,
            eventChainId=self.chain_id,
            progress=self.progress,
            reason=data_object(vim.TaskReasonUser, userName=self.user or "simulator"),
            **fields,
        )

    def CancelTask(self, ctx: CallContext) -> None:  # noqa: N802
        with self.sim.registry.lock:
            if not self.cancelable or self.state in (
                vim.TaskInfo.State.success, vim.TaskInfo.State.error
            ):
                raise vim.fault.InvalidState(msg="The task cannot be cancelled in its state")
            self.cancelled = True
            self.cancel_requested.set()
            self.sim.registry.touch(self)

    def check_cancelled(self) -> None:
        if self.cancelled:
            raise vmodl.fault.RequestCanceled(msg="The task was canceled by a user.")


class TaskWorkers:
    """Daemon threads that run task bodies; a thread that finished one waits for the next.

    Starting a thread costs more than a quick task's body (under the GIL,
    which every request handler needs too): a stream of CreateVM and
    PowerOn tasks reuses the threads of the tasks before. A task never
    queues behind another one -- one that waits (injected latency, a host
    entering maintenance) keeps its thread, and a new thread starts when
    none is idle. A thread idle for ``idle_seconds`` ends.
    """

    def __init__(self, idle_seconds: float = 2.0) -> None:
        self.idle_seconds = idle_seconds
        self._lock = threading.Lock()
        self._jobs: queue.SimpleQueue = queue.SimpleQueue()
        #: Threads waiting for a job, less the jobs handed to them not yet taken.
        self._idle = 0

    def run(self, name: str, job: Callable[..., None], *args: Any) -> None:
        """Run ``job(*args)`` on a thread named ``name``, at once."""
        with self._lock:
            reuse = self._idle > 0
            if reuse:
                self._idle -= 1
        self._jobs.put((name, job, args))
        if not reuse:
            threading.Thread(target=self._serve, name=name, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                name, job, args = self._jobs.get(timeout=self.idle_seconds)
            except queue.Empty:
                with self._lock:
                    # Leave only if another waiting thread can take every
                    # job already handed to the idle ones.
                    if self._idle > 0:
                        self._idle -= 1
                        return
                continue
            threading.current_thread().name = name
            try:
                job(*args)
            except Exception:  # noqa: BLE001 (the thread serves the next task)
                LOG.exception("%s failed", name)
            del name, job, args  # (a finished task is not kept alive while idle)
            with self._lock:
                self._idle += 1


class TaskManager(ManagedObject):
    """Runs task bodies on worker threads, with per-method latency."""

    vim_type = vim.TaskManager

    def __init__(self, sim: Simulator) -> None:
        super().__init__(sim, "TaskManager")
        self.recent: list[Task] = []
        self.workers = TaskWorkers()

    transient = ManagedObject.transient | {"workers"}

    def restored(self) -> None:
        super().restored()
        self.workers = TaskWorkers()

    def _get_recentTask(self):  # noqa: N802
        return [t.ref for t in self.recent]

    def _get_maxCollector(self):  # noqa: N802
        return 1000

    def _get_description(self):
        def element(key, label):
            return vim.ElementDescription(key=key, label=label, summary=label)

        return vim.TaskDescription(
            methodInfo=[element(d, m) for m, d in sorted(_DESCRIPTION_IDS.items())],
            state=[element(s, s.capitalize()) for s in vim.TaskInfo.State.values],
            reason=[vim.TypeDescription(key=t, label=t._wsdlName, summary=t._wsdlName)
                    for t in (vim.TaskReasonUser, vim.TaskReasonSystem)])

    def CreateCollectorForTasks(self, ctx: CallContext, filter):  # noqa: A002,N802
        """A collector over every task's info that ``filter`` (a TaskFilterSpec) selects."""
        with self.sim.registry.lock:
            owner = ctx.session.key if ctx.session else None
            check_collector_limit(self.sim, "TaskHistoryCollector", owner)
            TaskFilter(self.sim, filter)  # checks the filter now, as vCenter
            return self.sim.factory.task_collector(filter, owner).ref

    def start(self, ctx: CallContext | None, entity: ManagedObject | None, method: str,
              work: Callable[..., Any], *, pass_task: bool = False,
              waits: bool = False) -> Any:
        """Create a Task for ``work`` and run it asynchronously.

        ``work`` runs under the registry lock (so it sees and leaves a
        consistent inventory); it returns the task result or raises a vim
        fault, which becomes ``info.error``. ``waits``: the body waits for
        other requests (a host evacuated by somebody else's vMotions), so it
        always gets a thread of its own.
        """
        sim = self.sim
        user = ctx.session.user if ctx is not None and ctx.session is not None else None
        with sim.registry.lock:
            task = sim.factory.task(entity, method, user)
            self.recent.append(task)
            del self.recent[:-_RECENT_TASK_LIMIT]
            if isinstance(entity, ManagedEntity):
                entity.recent_tasks.append(task)
                del entity.recent_tasks[:-_RECENT_TASK_LIMIT]
            sim.registry.touch(self, *([entity] if entity is not None else []))
            # As vCenter: every task is logged as an event, its chain's first.
            sim.events.post(vim.event.TaskEvent,
                            about=entity if isinstance(entity, ManagedEntity) else None,
                            user=user or "", chain_id=task.chain_id, info=task._get_info())
        # Like a lightly loaded vCenter, a quick task is usually done by the
        # time the client first polls it. Tasks stay asynchronous: a slow one
        # (latency injected, maintenance waits) returns while queued or
        # running, and so does one started by a caller that holds the
        # registry lock (a task starting other tasks: those cannot run until
        # it lets go).
        slow = bool(waits or sim.faults.task_latency(method) or sim.faults.queue_latency(method))
        if not slow and not sim.registry.held():
            # A quick task runs in the request's own thread (handing it to a
            # worker costs two thread switches, each a wait for the GIL
            # behind the threads serving other requests), once the answer is
            # sent: while the client reads it, not before. The client's next
            # request on the connection finds it done.
            if not sim.after_answer(self._run, task, work, pass_task):
                self._run(task, work, pass_task)
            return task.ref
        self.workers.run(f"sim-{task.moid}", self._run, task, work, pass_task)
        return task.ref

    def _run(self, task: Task, work: Callable[..., Any], pass_task: bool) -> None:
        sim = self.sim
        latency = sim.faults.task_latency(task.method)
        queued = sim.faults.queue_latency(task.method)
        if queued:
            task.cancel_requested.wait(queued)
        with sim.registry.lock:
            task.state = vim.TaskInfo.State.running
            task.start_time = _now()
            task.progress = 0
            sim.registry.touch(task)
        if latency:
            task.cancel_requested.wait(latency)
        try:
            injected = sim.faults.take_task_fault(task.method)
            if injected is not None:
                raise complete_fault(injected, task.entity.ref if task.entity else None)
            with sim.registry.lock, sim.events.acting(task.user or "", task.chain_id):
                task.check_cancelled()
                entity = task.entity
                if entity is not None and entity.moid not in sim.registry:
                    # Deleted while this task waited for the inventory (a
                    # Destroy_Task ran first): vCenter fails the task.
                    raise object_not_found(entity.moid, entity.ref)
                result = work(task) if pass_task else work()
        except vmodl.MethodFault as fault:
            with sim.registry.lock:
                task.error = fault
                task.state = vim.TaskInfo.State.error
        except Exception:  # a simulator bug must still end the task (vim25 words only)
            LOG.exception("task %s (%s) crashed", task.moid, task.method)
            with sim.registry.lock:
                task.error = system_error()
                task.state = vim.TaskInfo.State.error
        else:
            with sim.registry.lock:
                task.result = result
                task.state = vim.TaskInfo.State.success
                task.progress = 100
        with sim.registry.lock:
            task.complete_time = _now()
            entity = task.entity
            if isinstance(entity, ManagedEntity) and task in entity.recent_tasks:
                # vCenter keeps finished tasks in recentTask for a while; we
                # drop them once done so that "entering maintenance" can be
                # read from a host's running tasks.
                entity.recent_tasks.remove(task)
            sim.registry.touch(task, *([entity] if entity is not None else []))
        task.done.set()


class TaskFilter:
    """A TaskFilterSpec, checked once, applied to tasks."""

    def __init__(self, sim: Simulator, spec: vim.TaskFilterSpec | None) -> None:
        self.spec = spec = spec or vim.TaskFilterSpec()
        self.entities: set[str] | None = None
        if spec.entity is not None:
            recursion = spec.entity.recursion
            if recursion not in vim.TaskFilterSpec.RecursionOption.values:
                raise invalid_argument("filter.entity.recursion")
            self.entities = subtree(sim.registry.lookup(spec.entity.entity), recursion)
        if spec.time is not None and \
                spec.time.timeType not in vim.TaskFilterSpec.TimeOption.values:
            raise invalid_argument("filter.time.timeType")

    def __call__(self, task: Task) -> bool:
        spec = self.spec
        if self.entities is not None and (task.entity is None
                                          or task.entity.moid not in self.entities):
            return False
        if spec.state and task.state not in spec.state:
            return False
        if spec.eventChainId and task.chain_id not in spec.eventChainId:
            return False
        if spec.userName is not None:
            users = spec.userName.userList or []
            if task.user is None:
                if not spec.userName.systemUser:
                    return False
            elif users and task.user not in users:
                return False
        if spec.time is not None:
            when = {"queuedTime": task.queue_time, "startedTime": task.start_time,
                    "completedTime": task.complete_time}[spec.time.timeType]
            if when is None:
                return False
            if spec.time.beginTime is not None and when < spec.time.beginTime:
                return False
            if spec.time.endTime is not None and when > spec.time.endTime:
                return False
        # Tasks the simulator runs have no activation ids, tags, parents,
        # alarms or schedules: a filter on any of them selects none.
        return not (spec.activationId or spec.tag or spec.parentTaskKey or spec.rootTaskKey
                    or spec.alarm is not None or spec.scheduledTask is not None)


class TaskHistoryCollector(HistoryCollector):
    """TaskManager.CreateCollectorForTasks: the info of every task the filter selects."""

    vim_type = vim.TaskHistoryCollector

    def history(self) -> list[tuple[int, Any]]:
        match = TaskFilter(self.sim, self.filter)
        with self.sim.registry.lock:
            return [(task.chain_id, task._get_info())
                    for task in self.sim.registry.all("Task") if match(task)]

    def _get_latestPage(self):  # noqa: N802
        return self.latest()

    def ReadNextTasks(self, ctx: CallContext, maxCount: int):  # noqa: N802,N803
        return self.read_next(maxCount)

    def ReadPreviousTasks(self, ctx: CallContext, maxCount: int):  # noqa: N802,N803
        return self.read_previous(maxCount)
