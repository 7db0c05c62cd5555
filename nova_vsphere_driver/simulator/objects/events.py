"""EventManager and EventHistoryCollector: what happened, queryable by entity, time and type.

The simulator posts the events vCenter posts for what it models: VM
lifecycle (created, powered on/off, suspended, reset, reconfigured,
renamed, cloned, migrated or relocated, removed; guest shutdown and reboot),
vMotions made by vCenter's DRS (``DrsVmMigratedEvent``, whose message
gives DRS's reason), host maintenance and connection, logins and logouts,
tasks (``TaskEvent``), cluster reconfiguration, custom fields, roles and
permissions, alarms, and events clients post (``PostEvent``,
``LogUserEvent``). Each event names the datacenter, compute resource,
host and VM it concerns, so filters by entity find it; the user is the
session's (or the task's) that caused it, "" for the system itself.

Limitations: events are kept in memory, the newest MAX_EVENTS; argument
descriptions (``RetrieveArgumentDescription``) are not modelled.
"""

from __future__ import annotations

import contextlib
import datetime
import functools
import string
import threading
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from pyVmomi import VmomiSupport, vim

from nova_vsphere_driver.simulator.objects.base import CallContext, ManagedObject
from nova_vsphere_driver.simulator.objects.history import (
    HistoryCollector,
    check_collector_limit,
    subtree,
)
from nova_vsphere_driver.simulator.vim_data import complete, data_object
from nova_vsphere_driver.simulator.vim_faults import invalid_argument

if TYPE_CHECKING:
    from nova_vsphere_driver.simulator.service import Simulator

E = vim.event
#: How many events the simulator keeps (the oldest go first).
MAX_EVENTS = 50_000
#: QueryEvents' answer when the filter sets no maxCount (vCenter's default).
QUERY_DEFAULT_MAX = 1000

#: Every event type the simulator posts: (category, full message format).
#: The format's fields are the names of the event's arguments
#: ({vm}, {host}, {cluster}, {dc}, {ds}) and of its own fields.
EVENT_TYPES: dict[type, tuple[str, str]] = {
    E.VmBeingCreatedEvent: ("info", "Creating {vm} on host {host} in {dc}"),
    E.VmCreatedEvent: ("info", "Created virtual machine {vm} on {host} in {dc}"),
    E.VmStartingEvent: ("info", "{vm} on host {host} in {dc} is starting"),
    E.VmPoweredOnEvent: ("info", "{vm} on {host} in {dc} is powered on"),
    E.DrsVmPoweredOnEvent: ("info", "DRS powered on {vm} on {host} in {dc}"),
    E.VmStoppingEvent: ("info", "{vm} on {host} in {dc} is stopping"),
    E.VmPoweredOffEvent: ("info", "{vm} on {host} in {dc} is powered off"),
    E.VmSuspendingEvent: ("info", "{vm} on {host} in {dc} is being suspended"),
    E.VmSuspendedEvent: ("info", "{vm} on {host} in {dc} is suspended"),
    E.VmResettingEvent: ("info", "{vm} on {host} in {dc} is reset"),
    E.VmGuestShutdownEvent: ("info", "Guest OS shut down for {vm} on {host} in {dc}"),
    E.VmGuestRebootEvent: ("info", "Guest OS reboot for {vm} on {host} in {dc}"),
    E.VmReconfiguredEvent: ("info", "Reconfigured {vm} on {host} in {dc}"),
    E.VmRenamedEvent: ("info", "Renamed {oldName} to {newName} in {dc}"),
    E.VmRemovedEvent: ("info", "Removed {vm} on {host} from {dc}"),
    E.VmBeingClonedEvent: ("info", "Cloning {vm} on host {host} in {dc} to {destName} on "
                                   "host {destHost}"),
    E.VmClonedEvent: ("info", "Clone of {sourceVm} completed"),
    E.VmMigratedEvent: ("info", "Migration of virtual machine {vm} from {sourceHost}, "
                                "{sourceDatastore} to {host}, {ds} completed"),
    E.VmRelocatedEvent: ("info", "Completed the relocation of the virtual machine {vm} "
                                 "from {sourceHost}, {sourceDatastore} to {host}, {ds}"),
    E.DrsVmMigratedEvent: ("info", "DRS migrated {vm} from {sourceHost} to {host} in "
                                   "cluster {cluster} in {dc}: {reason}"),
    E.EnteringMaintenanceModeEvent: ("info", "Host {host} in {dc} has started to enter "
                                             "maintenance mode"),
    E.EnteredMaintenanceModeEvent: ("info", "Host {host} in {dc} has entered maintenance "
                                            "mode"),
    E.ExitMaintenanceModeEvent: ("info", "Host {host} in {dc} has exited maintenance mode"),
    E.HostDisconnectedEvent: ("info", "Disconnected from {host} in {dc}"),
    E.HostConnectedEvent: ("info", "Connected to {host} in {dc}"),
    E.ClusterReconfiguredEvent: ("info", "Reconfigured cluster {cluster} in datacenter {dc}"),
    E.UserLoginSessionEvent: ("info", "User {userName}@{ipAddress} logged in as "
                                      "{userAgent}"),
    E.UserLogoutSessionEvent: ("info", "User {userName}@{ipAddress} logged out (login "
                                       "time: {loginTime}, number of API invocations: "
                                       "{callCount}, user agent: {userAgent})"),
    E.BadUsernameSessionEvent: ("error", "Cannot login {userName}@{ipAddress}"),
    E.TaskEvent: ("info", "Task: {task}"),
    E.GeneralUserEvent: ("user", "User logged event: {message}"),
    E.CustomFieldDefAddedEvent: ("info", "Created new custom field definition {name}"),
    E.CustomFieldDefRemovedEvent: ("info", "Removed field definition {name}"),
    E.CustomFieldDefRenamedEvent: ("info", "Renamed field {name} to {newName}"),
    E.CustomFieldValueChangedEvent: ("info", "Changed custom field {name} on {entity} in "
                                             "{dc} to {value}"),
    E.RoleAddedEvent: ("info", "New role {role} created"),
    E.RoleRemovedEvent: ("info", "Role {role} removed"),
    E.RoleUpdatedEvent: ("info", "Role modified"),
    E.PermissionAddedEvent: ("info", "Permission created for {principal} on {entity}, role "
                                     "is {role}, propagation is {propagate}"),
    E.PermissionRemovedEvent: ("info", "Permission rule removed for {principal} on {entity}"),
    E.AlarmCreatedEvent: ("info", "Created alarm '{alarm}' on {entity}"),
    E.AlarmRemovedEvent: ("info", "Removed alarm '{alarm}' on {entity}"),
    E.AlarmReconfiguredEvent: ("info", "Reconfigured alarm '{alarm}' on {entity}"),
}


class _Names(dict):
    """Format fields: an event's argument names and fields; unknown ones read as ""."""

    def __missing__(self, key: str) -> str:
        return ""


def _name_of(value: Any) -> Any:
    if isinstance(value, E.EntityEventArgument):
        return value.name
    if isinstance(value, E.EventArgument) and hasattr(value, "name"):
        return value.name
    return value


class EventManager(ManagedObject):
    vim_type = vim.event.EventManager

    def __init__(self, sim: Simulator) -> None:
        super().__init__(sim, "EventManager")
        #: (key, event), oldest first.
        self.events: list[tuple[int, vim.event.Event]] = []
        self._next_key = 1
        self._local = threading.local()
        # (field, moid, name) -> the event argument naming that object: events
        # share them (building pyVmomi data objects is most of a post's cost).
        self._arguments: dict[tuple[str, str, str], Any] = {}

    # The events are saved (vCenter keeps them in its database across
    # restarts); who is acting is per thread, and the shared arguments are a cache.
    transient = ManagedObject.transient | {"_local", "_arguments"}

    def restored(self) -> None:
        super().restored()
        self._local = threading.local()
        self._arguments = {}

    # -- posting -------------------------------------------------------------------

    @contextlib.contextmanager
    def quiet(self) -> Iterator[None]:
        """No events inside the block (a loaded inventory is a starting state, not a history)."""
        self._local.quiet = True
        try:
            yield
        finally:
            self._local.quiet = False

    def acting(self, user: str | None, chain_id: int | None = None) -> _Acting:
        """Attribute the events posted inside the ``with`` block to ``user`` (and a task chain)."""
        return _Acting(self._local, user, chain_id)

    def post(self, event_type: type, *, about: Any = None, user: str | None = None,
             chain_id: int | None = None, reason: str = "", **fields: Any) -> vim.event.Event:
        """Record an event of ``event_type`` about ``about`` (a simulator object).

        The datacenter, compute resource, host and VM arguments follow from
        that object; ``user`` (default: whoever is acting, "" for the
        system) and ``fields`` fill the rest. ``reason`` goes into the
        message of events that have no field for it (DRS migrations).
        """
        sim = self.sim
        if getattr(self._local, "quiet", False):
            return None
        # Every task and every power operation posts one: built without
        # pyVmomi's per-field checks (vim_data.data_object).
        event = data_object(event_type, **fields)
        with sim.registry.lock:
            key = self._next_key
            self._next_key += 1
            if user is None:
                user = getattr(self._local, "user", None)
            if chain_id is None:
                chain_id = getattr(self._local, "chain_id", None)
            event.__dict__.update(key=key, chainId=chain_id or key, userName=user or "",
                                  createdTime=datetime.datetime.now(datetime.timezone.utc))
            if about is not None:
                _set_arguments(event, about, self._argument)
            if hasattr(event, "template") and event.template is None:
                event.template = bool(getattr(about, "is_template", False))
            event.fullFormattedMessage = _message(event, reason)
            if any(getattr(event, name) is None for name in _required(event_type)):
                complete(event)
            self.events.append((key, event))
            del self.events[:-MAX_EVENTS]
            # latestEvent, and every event collector's latestPage.
            sim.registry.touch(self, *sim.registry.all("EventHistoryCollector"))
        return event

    def _argument(self, argument_type: type, field: str, obj: Any) -> Any:
        key = (field, obj.moid, obj.name)
        found = self._arguments.get(key)
        if found is None:
            if len(self._arguments) > MAX_EVENTS:
                self._arguments.clear()
            found = self._arguments[key] = data_object(argument_type,
                                                       **{field: obj.ref, "name": obj.name})
        return found

    @staticmethod
    def migration_source(host: Any, datastore: Any = None) -> dict:
        """The source* arguments of a migration event: where the VM was."""
        dc = host.datacenter()
        source = {"sourceHost": E.HostEventArgument(host=host.ref, name=host.name),
                  "sourceDatacenter": E.DatacenterEventArgument(datacenter=dc.ref,
                                                                name=dc.name)}
        if datastore is not None:
            source["sourceDatastore"] = E.DatastoreEventArgument(datastore=datastore.ref,
                                                                 name=datastore.name)
        return source

    # -- properties ------------------------------------------------------------------

    def _get_description(self):
        def element(key, label):
            return vim.ElementDescription(key=key, label=label, summary=label)

        details = [E.EventDescription.EventDetail(
            key=etype, category=category, description=etype._wsdlName,
            formatOnDatacenter=fmt, formatOnComputeResource=fmt, formatOnHost=fmt,
            formatOnVm=fmt, fullFormat=fmt)
            for etype, (category, fmt) in EVENT_TYPES.items()]
        return E.EventDescription(
            category=[element("info", "Information"), element("warning", "Warning"),
                      element("error", "Error"), element("user", "User")],
            eventInfo=details)

    def _get_latestEvent(self):  # noqa: N802
        return self.events[-1][1] if self.events else None

    def _get_maxCollector(self):  # noqa: N802
        return 32

    # -- queries -----------------------------------------------------------------------

    def matching(self, spec: vim.event.EventFilterSpec | None) -> list[tuple[int, Any]]:
        """(key, event) of the events ``spec`` selects, oldest first."""
        match = EventFilter(self.sim, spec)
        with self.sim.registry.lock:
            return [(key, match.shown(event)) for key, event in self.events if match(event)]

    def QueryEvents(self, ctx: CallContext, filter,  # noqa: A002,N802
                    eventViewSpec=None):  # noqa: N803
        """The newest events the filter selects (up to its maxCount, else 1000), newest first."""
        limit = filter.maxCount if filter.maxCount else QUERY_DEFAULT_MAX
        if limit < 0:
            raise invalid_argument("filter.maxCount")
        found = self.matching(filter)[-limit:]
        return [event for _, event in reversed(found)]

    def CreateCollectorForEvents(self, ctx: CallContext, filter):  # noqa: A002,N802
        with self.sim.registry.lock:
            owner = ctx.session.key if ctx.session else None
            check_collector_limit(self.sim, "EventHistoryCollector", owner)
            EventFilter(self.sim, filter)  # checks the filter now, as vCenter
            return self.sim.factory.event_collector(self, filter, owner).ref

    def PostEvent(self, ctx: CallContext, eventToPost, taskInfo=None) -> None:  # noqa: N802,N803
        """Log an event a client made; the entity arguments it names must exist."""
        registry = self.sim.registry
        with registry.lock:
            fields = {p.name: getattr(eventToPost, p.name)
                      for p in type(eventToPost)._GetPropertyList()
                      if getattr(eventToPost, p.name) not in (None, [])
                      and p.name not in ("key", "chainId", "createdTime", "userName")}
            for arg in ("datacenter", "computeResource", "host", "vm", "ds", "net", "dvs"):
                value = fields.get(arg)
                ref = _argument_ref(value) if value is not None else None
                if ref is not None and ref._moId not in registry:
                    raise vim.fault.InvalidEvent(
                        msg=f"The event names {arg} {ref._moId}, which does not exist")
            self.post(type(eventToPost), user=ctx.session.user if ctx.session else "",
                      chain_id=taskInfo.eventChainId if taskInfo is not None else None,
                      **fields)

    def LogUserEvent(self, ctx: CallContext, entity, msg: str) -> None:  # noqa: N802
        with self.sim.registry.lock:
            target = self.sim.registry.lookup(entity)
            self.post(E.GeneralUserEvent, about=target, message=msg,
                      user=ctx.session.user if ctx.session else "",
                      entity=E.ManagedEntityEventArgument(entity=target.ref, name=target.name))


class _Acting:
    def __init__(self, local: threading.local, user: str | None, chain_id: int | None) -> None:
        self.local, self.user, self.chain_id = local, user, chain_id

    def __enter__(self) -> None:
        self.saved = (getattr(self.local, "user", None), getattr(self.local, "chain_id", None))
        self.local.user, self.local.chain_id = self.user, self.chain_id

    def __exit__(self, *exc: Any) -> None:
        self.local.user, self.local.chain_id = self.saved


def _argument_ref(argument: Any) -> Any:
    for name in ("datacenter", "computeResource", "host", "vm", "datastore", "network", "dvs",
                 "entity"):
        ref = getattr(argument, name, None)
        if ref is not None and not isinstance(ref, str):
            return ref
    return None


def _set_arguments(event: vim.event.Event, entity: Any, argument: Any) -> None:
    """The event's datacenter/computeResource/host/vm arguments, from ``entity`` up.

    ``argument(field type, object)`` gives the (shared) argument naming the
    object.
    """
    kind = entity.kind
    vm = entity if kind == "VirtualMachine" else None
    host = vm.host if vm is not None else (entity if kind == "HostSystem" else None)
    cluster = host.cluster if host is not None else \
        (entity if kind == "ClusterComputeResource" else None)
    dc = entity.datacenter() if hasattr(entity, "datacenter") else None
    if dc is not None and event.datacenter is None:
        event.datacenter = argument(E.DatacenterEventArgument, "datacenter", dc)
    if cluster is not None and event.computeResource is None:
        event.computeResource = argument(E.ComputeResourceEventArgument, "computeResource",
                                         cluster)
    if host is not None and event.host is None:
        event.host = argument(E.HostEventArgument, "host", host)
    if vm is not None and event.vm is None:
        event.vm = argument(E.VmEventArgument, "vm", vm)
    datastore = entity if kind == "Datastore" else \
        (vm.datastores[0] if vm is not None and vm.datastores else None)
    if datastore is not None and event.ds is None:
        event.ds = argument(E.DatastoreEventArgument, "datastore", datastore)


#: Format fields that name an event argument of another name.
_ARGUMENTS = {"cluster": "computeResource", "dc": "datacenter"}


@functools.cache
def _format_fields(fmt: str) -> tuple[str, ...]:
    return tuple(field for _, field, _, _ in string.Formatter().parse(fmt) if field)


@functools.cache
def _required(event_type: type) -> tuple[str, ...]:
    return tuple(p.name for p in event_type._GetPropertyList()
                 if not p.flags & VmomiSupport.F_OPTIONAL)


def _message(event: vim.event.Event, reason: str = "") -> str:
    fmt = EVENT_TYPES.get(type(event), (None, None))[1]
    if fmt is None:
        return event.fullFormattedMessage or type(event).__name__
    names = _Names()
    for field in _format_fields(fmt):
        if field == "reason":
            value: Any = reason
        elif field == "task":
            info = getattr(event, "info", None)
            value = info.descriptionId if isinstance(info, vim.TaskInfo) else None
        else:
            value = _name_of(getattr(event, _ARGUMENTS.get(field, field), None))
        names[field] = "" if value is None else value
    return fmt.format_map(names).replace("  ", " ")


class EventFilter:
    """An EventFilterSpec, checked once, applied to events."""

    def __init__(self, sim: Simulator, spec: vim.event.EventFilterSpec | None) -> None:
        self.spec = spec = spec or E.EventFilterSpec()
        self.entities: set[str] | None = None
        if spec.entity is not None:
            root = sim.registry.lookup(spec.entity.entity)
            recursion = spec.entity.recursion
            if recursion not in ("self", "children", "all", "allChildren"):
                raise invalid_argument("filter.entity.recursion")
            self.entities = subtree(root, recursion)
        by_user = spec.userName
        self.users = set(by_user.userList or []) if by_user is not None else None
        self.system = bool(by_user.systemUser) if by_user is not None else True
        self.types = tuple(spec.type or ())
        self.type_ids = set(spec.eventTypeId or ())
        self.categories = set(spec.category or ())

    def __call__(self, event: vim.event.Event) -> bool:
        spec = self.spec
        if self.entities is not None and not (_refs(event) & self.entities):
            return False
        if spec.time is not None:
            if spec.time.beginTime is not None and event.createdTime < spec.time.beginTime:
                return False
            if spec.time.endTime is not None and event.createdTime > spec.time.endTime:
                return False
        if self.users is not None:
            if event.userName:
                if self.users and event.userName not in self.users:
                    return False
            elif not self.system:
                return False
        if spec.eventChainId and event.chainId != spec.eventChainId:
            return False
        if (self.types or self.type_ids) and not self._type_matches(event):
            return False
        if self.categories and _category(event) not in self.categories:
            return False
        if spec.alarm is not None or spec.scheduledTask is not None:
            alarm = getattr(getattr(event, "alarm", None), "alarm", None)
            if spec.alarm is None or alarm is None or alarm._moId != spec.alarm._moId:
                return False
        return True

    def _type_matches(self, event: vim.event.Event) -> bool:
        if self.types and isinstance(event, self.types):
            return True
        type_id = getattr(event, "eventTypeId", None) or type(event)._wsdlName
        return type_id in self.type_ids or type(event)._wsdlName in self.type_ids

    def shown(self, event: vim.event.Event) -> vim.event.Event:
        if not self.spec.disableFullMessage:
            return event
        copy = type(event)(**{p.name: getattr(event, p.name)
                              for p in type(event)._GetPropertyList()})
        copy.fullFormattedMessage = None
        return copy


def _refs(event: vim.event.Event) -> set[str]:
    found = set()
    for name in ("datacenter", "computeResource", "host", "vm", "ds", "net", "dvs", "entity"):
        ref = _argument_ref(getattr(event, name, None))
        if ref is not None:
            found.add(ref._moId)
    return found


def _category(event: vim.event.Event) -> str:
    for etype, (category, _) in EVENT_TYPES.items():
        if type(event) is etype:
            return category
    return getattr(event, "severity", None) or "info"


class EventHistoryCollector(HistoryCollector):
    vim_type = vim.event.EventHistoryCollector

    def __init__(self, sim: Simulator, manager: EventManager, filter_spec,
                 owner: str | None) -> None:
        self.manager = manager
        super().__init__(sim, filter_spec, owner)

    def history(self) -> list[tuple[int, Any]]:
        return self.manager.matching(self.filter)

    def _get_latestPage(self):  # noqa: N802
        return self.latest()

    def _get_initialized(self):
        return True

    def ReadNextEvents(self, ctx: CallContext, maxCount: int):  # noqa: N802,N803
        return self.read_next(maxCount)

    def ReadPreviousEvents(self, ctx: CallContext, maxCount: int):  # noqa: N802,N803
        return self.read_previous(maxCount)
