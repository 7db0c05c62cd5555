"""The simulated vCenter: state, sessions and method dispatch (no HTTP here)."""

from __future__ import annotations

import datetime
import logging
import threading
import time
import uuid
from typing import TYPE_CHECKING, Any

from pyVmomi import VmomiSupport, vim, vmodl

from nova_vsphere_driver.simulator import inventory as inventory_mod
from nova_vsphere_driver.simulator import soap
from nova_vsphere_driver.simulator.datastore_files import DatastoreFiles
from nova_vsphere_driver.simulator.factory import ObjectFactory
from nova_vsphere_driver.simulator.faults import FaultInjector, complete_fault
from nova_vsphere_driver.simulator.objects.base import CallContext
from nova_vsphere_driver.simulator.registry import Registry
from nova_vsphere_driver.simulator.vim_data import typed

if TYPE_CHECKING:
    from nova_vsphere_driver.simulator.objects.base import ManagedEntity
    from nova_vsphere_driver.simulator.objects.cluster import ClusterComputeResource
    from nova_vsphere_driver.simulator.objects.host import HostSystem
    from nova_vsphere_driver.simulator.objects.virtual_machine import VirtualMachine

LOG = logging.getLogger(__name__)

DEFAULT_USER = "administrator@vsphere.local"
DEFAULT_PASSWORD = "simulator"
#: Methods that work without a session, as on vCenter.
UNAUTHENTICATED = frozenset({"RetrieveServiceContent", "Login", "LoginByToken", "CurrentTime"})


class Session:
    def __init__(self, user: str, idle_timeout: float) -> None:
        self.key = str(uuid.uuid4())
        self.user = user
        self.idle_timeout = idle_timeout
        self.login_time = datetime.datetime.now(datetime.timezone.utc)
        self.last_active = time.monotonic()
        self.call_count = 0

    def expired(self) -> bool:
        return time.monotonic() - self.last_active > self.idle_timeout

    def touch(self) -> None:
        self.last_active = time.monotonic()
        self.call_count += 1

    def user_session(self) -> vim.UserSession:
        return vim.UserSession(
            key=self.key, userName=self.user, fullName=self.user,
            loginTime=self.login_time,
            lastActiveTime=datetime.datetime.now(datetime.timezone.utc),
            locale="en", messageLocale="en", extensionSession=False,
            ipAddress="127.0.0.1", userAgent="", callCount=self.call_count,
        )


class Simulator:
    """One simulated vCenter's state: inventory, sessions, faults.

    ``inventory`` is a mapping as accepted by
    :func:`nova_vsphere_driver.simulator.inventory.load` (None: the default
    inventory).
    """

    def __init__(self, inventory: dict | None = None, *, username: str = DEFAULT_USER,
                 password: str = DEFAULT_PASSWORD, session_idle_timeout: float = 1800.0,
                 memory_overcommit: float = 1.0,
                 maintenance_timeout: float = 600.0) -> None:
        self.username = username
        self.password = password
        self.session_idle_timeout = session_idle_timeout
        self.memory_overcommit = memory_overcommit
        self.maintenance_timeout = maintenance_timeout
        #: How long a call waits for its task to finish before returning it.
        self.quick_task_seconds = 0.05
        self.instance_uuid = str(uuid.uuid4())
        self.registry = Registry()
        self.faults = FaultInjector()
        self.files = DatastoreFiles()
        self.sessions: dict[str, Session] = {}
        #: Datastores by name (names are unique per vCenter here).
        self.datastores: dict[str, Any] = {}
        self._local = threading.local()
        self.request_count = 0
        self.request_counts: dict[str, int] = {}

        self.factory = ObjectFactory(self)
        make = self.factory.singleton
        self.service_instance = make("ServiceInstance")
        self.session_manager = make("SessionManager")
        self.property_collector = self.factory.property_collector(moid="propertyCollector")
        self.view_manager = make("ViewManager")
        self.search_index = make("SearchIndex")
        self.task_manager = make("TaskManager")
        self.tasks = self.task_manager
        self.file_manager = make("FileManager")
        self.virtual_disk_manager = make("VirtualDiskManager")
        self.root_folder = self.factory.folder(None, "Datacenters", moid="group-d1",
                                               child_types=("Folder", "Datacenter"))
        inventory_mod.load(self, inventory if inventory is not None
                           else inventory_mod.default_inventory())

    # -- sessions -----------------------------------------------------------

    def create_session(self, user: str) -> Session:
        session = Session(user, self.session_idle_timeout)
        with self.registry.lock:
            self.sessions[session.key] = session
        return session

    def drop_session(self, key: str) -> None:
        with self.registry.lock:
            if self.sessions.pop(key, None) is None:
                return
            for pc in self.registry.all("PropertyCollector"):
                pc.forget_session(key)

    def expire_sessions(self) -> None:
        """Invalidate every session (clients must log in again)."""
        with self.registry.lock:
            for key in list(self.sessions):
                self.drop_session(key)

    def current_session(self) -> Session | None:
        return getattr(self._local, "session", None)

    # -- dispatch -----------------------------------------------------------

    def invoke(self, call: soap.SoapCall, session_key: str | None) -> tuple[Any, Session | None]:
        """Run one decoded call; returns (result, new session or None).

        Raises vim faults, which the HTTP layer encodes as SOAP faults.
        """
        name = call.name
        if self.faults.take_session_expiry(name):
            self.expire_sessions()
        with self.registry.lock:
            self.request_count += 1
            self.request_counts[name] = self.request_counts.get(name, 0) + 1
            session = self.sessions.get(session_key) if session_key else None
            if session is not None and session.expired():
                self.drop_session(session.key)
                session = None
        if session is None and name not in UNAUTHENTICATED:
            raise vim.fault.NotAuthenticated(
                msg="The session is not authenticated.", privilegeId="System.View")
        latency = self.faults.call_latency(name)
        if latency:
            time.sleep(latency)
        injected = self.faults.take_call_fault(name)
        if injected is not None:
            raise complete_fault(injected, call.this)
        if call.this is None:
            raise vmodl.fault.InvalidRequest(msg="missing _this")
        target = self.registry.get(call.this._moId, call.this)
        if name == "Fetch":
            self._local.session = session
            try:
                with self.registry.lock:
                    return typed(target.get_property(call.args["prop"])), None
            finally:
                self._local.session = None
                session.touch()
        declaring = VmomiSupport.GetVmodlType(call.method.typeName)
        method = getattr(target, name, None)
        if method is None or not issubclass(target.vim_type, declaring):
            if issubclass(target.vim_type, declaring):
                raise vmodl.fault.NotImplemented(
                    msg=f"{name} is not implemented by the simulator")
            raise vmodl.fault.MethodNotFound(receiver=call.this, method=name,
                                             msg=f"{name} is not a method of {target.moid}")
        ctx = CallContext(self, session)
        ctx.new_session = None
        self._local.session = session
        try:
            result = method(ctx, **call.args)
        finally:
            self._local.session = None
            if session is not None:
                session.touch()
        return result, ctx.new_session

    # -- operator helpers (tests, CLI, fault injection) ---------------------

    def find_entity(self, name: str, kind: str = "ManagedEntity") -> ManagedEntity:
        """The first entity of managed type ``kind`` (a vim25 type name) called ``name``."""
        with self.registry.lock:
            for obj in self.registry.all(kind):
                if obj.name == name:
                    return obj
        raise KeyError(f"no {kind if kind != 'ManagedEntity' else 'entity'} named {name!r}")

    def host(self, name: str) -> HostSystem:
        return self.find_entity(name, "HostSystem")

    def vm(self, name: str) -> VirtualMachine:
        return self.find_entity(name, "VirtualMachine")

    def cluster(self, name: str) -> ClusterComputeResource:
        return self.find_entity(name, "ClusterComputeResource")

    def datastore_by_name(self, name: str, dc_path: str | None = None):
        """The datastore called ``name`` (in datacenter ``dc_path`` if given)."""
        ds = self.datastores.get(name)
        if ds is not None and dc_path and ds.datacenter().inventory_path() != dc_path.strip("/"):
            return None
        return ds

    def hosts(self) -> list[HostSystem]:
        return self.registry.all("HostSystem")

    def vms(self) -> list[VirtualMachine]:
        return self.registry.all("VirtualMachine")

    def disconnect_host(self, name: str) -> None:
        self.host(name).set_connection_state(vim.HostSystem.ConnectionState.disconnected)

    def reconnect_host(self, name: str) -> None:
        self.host(name).set_connection_state(vim.HostSystem.ConnectionState.connected)
