"""The simulated vCenter: state, sessions and method dispatch (no HTTP here)."""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import hmac
import logging
import secrets
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

from pyVmomi import VmomiSupport, vim, vmodl

from nova_vsphere_driver.simulator import inventory as inventory_mod
from nova_vsphere_driver.simulator import soap, wire_cache
from nova_vsphere_driver.simulator.datastore_files import DatastoreFiles
from nova_vsphere_driver.simulator.factory import ObjectFactory
from nova_vsphere_driver.simulator.faults import FaultInjector, complete_fault
from nova_vsphere_driver.simulator.login_throttle import LoginThrottle
from nova_vsphere_driver.simulator.objects.base import CallContext, ManagedObject
from nova_vsphere_driver.simulator.objects.property_collector import Retrieval
from nova_vsphere_driver.simulator.registry import Registry
from nova_vsphere_driver.simulator.storage_policies import StoragePolicyService
from nova_vsphere_driver.simulator.vim_data import declared_type, typed
from nova_vsphere_driver.simulator.vim_faults import object_not_found

if TYPE_CHECKING:
    from nova_vsphere_driver.simulator.objects.base import ManagedEntity
    from nova_vsphere_driver.simulator.objects.cluster import ClusterComputeResource
    from nova_vsphere_driver.simulator.objects.host import HostSystem
    from nova_vsphere_driver.simulator.objects.virtual_machine import VirtualMachine

LOG = logging.getLogger(__name__)

DEFAULT_USER = "administrator@vsphere.local"
DEFAULT_PASSWORD = "simulator"
#: Methods that work without a session, as on vCenter.
UNAUTHENTICATED = frozenset({"RetrieveServiceContent", "Login", "LoginByToken", "CurrentTime",
                             "PbmRetrieveServiceContent"})


@dataclasses.dataclass(frozen=True)
class Client:
    """Who sent a call, as the HTTP layer saw it."""

    address: str = "127.0.0.1"
    user_agent: str = ""


_RETRIEVALS = frozenset({"RetrieveProperties", "RetrievePropertiesEx", "RetrieveContents"})


def _reads_current_session(call: soap.SoapCall) -> bool:
    """Is ``call`` only a read of SessionManager.currentSession?

    vCenter answers that read without a session (the value is then unset):
    it is how clients (govmomi's ``UserSession``, pyVmomi's property
    access) find out whether they must log in again.
    """
    if call.name == "Fetch":
        # (and ServiceInstance.content, which RetrieveServiceContent hands anyone)
        return (call.this._wsdlName, call.args.get("prop")) in (
            ("SessionManager", "currentSession"), ("ServiceInstance", "content"))
    if call.name not in _RETRIEVALS:
        return False
    specs = call.args.get("specSet") or []
    for spec in specs:
        for ospec in spec.objectSet or ():
            if ospec.obj is None or ospec.obj._wsdlName != "SessionManager" or ospec.selectSet:
                return False
        for pspec in spec.propSet or ():
            if pspec.all or set(pspec.pathSet or ()) - {"currentSession"}:
                return False
    return bool(specs)


class Session:
    """One login.

    ``key`` is the session's identifier (``UserSession.key``: what
    ``SessionIsActive`` and ``TerminateSession`` take); ``cookie`` is the
    secret the client presents on every call. They differ, as on vCenter:
    an identifier that other sessions may see is never a credential.
    """

    def __init__(self, user: str, idle_timeout: float, client: Client | None = None) -> None:
        self.key = str(uuid.uuid4())
        self.cookie = secrets.token_hex(20)
        self.user = user
        self.idle_timeout = idle_timeout
        self.client = client or Client()
        self.login_time = datetime.datetime.now(datetime.timezone.utc)
        self.last_active = time.monotonic()
        self.last_active_time = self.login_time
        self.call_count = 0

    def expired(self) -> bool:
        return time.monotonic() - self.last_active > self.idle_timeout

    def touch(self) -> None:
        self.last_active = time.monotonic()
        self.last_active_time = datetime.datetime.now(datetime.timezone.utc)
        self.call_count += 1

    def user_session(self, show_key: bool = True) -> vim.UserSession:
        """This session as vim25 describes it (another session's view shows no key)."""
        return vim.UserSession(
            key=self.key if show_key else "", userName=self.user, fullName=self.user,
            loginTime=self.login_time, lastActiveTime=self.last_active_time,
            locale="en", messageLocale="en", extensionSession=False,
            ipAddress=self.client.address, userAgent=self.client.user_agent,
            callCount=self.call_count,
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
        self.instance_uuid = str(uuid.uuid4())
        #: When this vCenter started (clusters' and datastores' statistics begin).
        self.started = datetime.datetime.now(datetime.timezone.utc)
        self.registry = Registry()
        self.faults = FaultInjector()
        self.files = DatastoreFiles()
        #: Live sessions by key (see Session: the cookie is another value).
        self.sessions: dict[str, Session] = {}
        self._sessions_by_cookie: dict[str, Session] = {}
        self._next_expiry_sweep = 0.0
        #: Failed logins slow down their client's next attempts.
        self.login_throttle = LoginThrottle()
        #: Datastores by name (names are unique per vCenter here).
        self.datastores: dict[str, Any] = {}
        self._local = threading.local()
        self.request_count = 0
        #: The server stopped: waits for updates end (see end_waits).
        self.waits_ended = False
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
        self.events = make("EventManager")
        self.performance = make("PerformanceManager")
        self.settings = self.factory.vcenter_settings()
        self.custom_fields = make("CustomFieldsManager")
        self.extensions = make("ExtensionManager")
        self.licenses = make("LicenseManager")
        self.license_assignments = make("LicenseAssignmentManager")
        self.user_directory = make("UserDirectory")
        self.authorization = make("AuthorizationManager")
        self.alarms = make("AlarmManager")
        self.ovf = make("OvfManager")
        self.storage_policies = StoragePolicyService(self)
        self.factory.storage_policy_service()
        self.root_folder = self.factory.folder(None, "Datacenters", moid="group-d1",
                                               child_types=("Folder", "Datacenter"))
        self.authorization.grant_administrators(self.root_folder)
        inventory_mod.load(self, inventory if inventory is not None
                           else inventory_mod.default_inventory())

    def rebind_objects(self) -> None:
        """Point this simulator's attributes (``root_folder``, ...) at the registered objects.

        After a saved state was loaded (simulator/persistence.py): each
        attribute holding a managed object now holds the loaded object of
        the same moid; one the state lacks (saved by an older version) is
        registered as it is.
        """
        registry = self.registry
        with registry.lock:
            for name, value in list(vars(self).items()):
                if not isinstance(value, ManagedObject):
                    continue
                if value.moid in registry:
                    setattr(self, name, registry.get(value.moid))
                else:
                    registry.add(value)
            self.datastores = {ds.name: ds for ds in registry.all("Datastore")}

    # -- sessions -----------------------------------------------------------

    def create_session(self, user: str, client: Client | None = None) -> Session:
        session = Session(user, self.session_idle_timeout, client)
        with self.registry.lock:
            self.sessions[session.key] = session
            self._sessions_by_cookie[session.cookie] = session
        return session

    def credentials_match(self, user: str, password: str) -> bool:
        """Are these the simulator's credentials (compared in constant time)?"""
        good_user = hmac.compare_digest(user.encode(), self.username.encode())
        good_password = hmac.compare_digest(password.encode(), self.password.encode())
        return good_user and good_password

    def session_for_cookie(self, cookie: str | None) -> Session | None:
        """The live session whose cookie this is (an expired one is dropped)."""
        if not cookie:
            return None
        with self.registry.lock:
            session = self._sessions_by_cookie.get(cookie)
            if session is not None and session.expired():
                self.drop_session(session.key)
                return None
            return session

    def drop_session(self, key: str) -> None:
        """End a session and free what it created: views, filters, collectors."""
        with self.registry.lock:
            session = self.sessions.pop(key, None)
            if session is None:
                return
            self._sessions_by_cookie.pop(session.cookie, None)
            for obj in self.registry.all("ManagedObject"):
                if obj.owner_session == key:
                    obj.release()
            for pc in self.registry.all("PropertyCollector"):
                pc.forget_session(key)

    def drop_expired_sessions(self) -> None:
        """End every session idle for longer than its timeout."""
        with self.registry.lock:
            for session in list(self.sessions.values()):
                if session.expired():
                    self.drop_session(session.key)

    def _sweep_expired_sessions(self) -> None:
        # Sessions expire whether or not their client comes back: about
        # once a second, a call frees what idle sessions left behind.
        now = time.monotonic()
        if now >= self._next_expiry_sweep:
            self._next_expiry_sweep = now + 1.0
            self.drop_expired_sessions()

    def expire_sessions(self) -> None:
        """Invalidate every session (clients must log in again)."""
        with self.registry.lock:
            for key in list(self.sessions):
                self.drop_session(key)

    def end_waits(self) -> None:
        """End every wait for updates, and refuse to wait until ``allow_waits()``.

        The server stopped: its connections are hung up, and a wait without
        a time limit would keep its thread, and this simulator, for up to
        half an hour.
        """
        with self.registry.lock:
            self.waits_ended = True
        self.registry.wake()

    def allow_waits(self) -> None:
        """Waits for updates run again (the server starts after a stop)."""
        with self.registry.lock:
            self.waits_ended = False

    def current_session(self) -> Session | None:
        return getattr(self._local, "session", None)

    # -- work after the answer ----------------------------------------------

    @contextlib.contextmanager
    def answering(self) -> Iterator[None]:
        """The block in which a request is served and answered (simulator/server.py).

        Work handed to :meth:`after_answer` inside it runs when the block
        ends, in the same thread: once the answer is on its way, while the
        client reads it, and before the connection's next request is read.
        """
        self._local.after_answer = pending = []
        try:
            yield
        finally:
            self._local.after_answer = None
            for work, args in pending:
                work(*args)

    def after_answer(self, work: Callable[..., Any], *args: Any) -> bool:
        """Run ``work(*args)`` once the current request is answered; False when no
        request is being answered in this thread (the caller runs it itself)."""
        pending = getattr(self._local, "after_answer", None)
        if pending is None:
            return False
        pending.append((work, args))
        return True

    # -- dispatch -----------------------------------------------------------

    def invoke(self, call: soap.SoapCall, cookie: str | None,
               client: Client | None = None) -> tuple[Any, Session | None]:
        """Run one decoded call; returns (result, new session or None).

        ``cookie`` is the session cookie the call came with. Raises vim
        faults, which the HTTP layer encodes as SOAP faults.
        """
        name = call.name
        if self.faults.take_session_expiry(name):
            self.expire_sessions()
        with self.registry.lock:
            self.request_count += 1
            self.request_counts[name] = self.request_counts.get(name, 0) + 1
            self._sweep_expired_sessions()
            session = self.session_for_cookie(cookie)
        if session is None and name not in UNAUTHENTICATED and not _reads_current_session(call):
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
        if call.namespace == soap.PBM_NS:
            target = self.storage_policies.objects.get(call.this._moId)
            if target is None:
                raise object_not_found(call.this._moId, call.this)
        else:
            target = self.registry.get(call.this._moId, call.this)
        if name == "Fetch":
            self._local.session = session
            try:
                with self.registry.lock:
                    return self._fetch(call, target), None
            finally:
                self._local.session = None
                if session is not None:
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
        ctx.client = client or Client()
        self._local.session = session
        try:
            with self.events.acting(session.user if session is not None else None):
                result = method(ctx, **call.args)
        finally:
            self._local.session = None
            if session is not None:
                session.touch()
        return result, ctx.new_session

    def _fetch(self, call: soap.SoapCall, target: ManagedObject) -> soap.Encoded:
        """pyVmomi's lazy property read: the value in wire form, cached while it cannot change."""
        prop = call.args["prop"]

        def encode() -> str:
            declared = declared_type(target.vim_type, prop)
            if isinstance(declared, type) and issubclass(declared, VmomiSupport.DataObject):
                # A data object read both ways (a task's info: its WaitForTask
                # filter, then lazy reads) is serialized once: the answer is
                # the property collector's cached propSet value, renamed.
                prop_set = Retrieval(self).wire(target, prop)
                if not prop_set:  # unset
                    return ""
                shared = soap.returnval_of_prop_set(prop_set, prop)
                if shared is not None:
                    return shared
            return soap.encode_result(call.method, typed(target.get_property(prop), declared))

        if prop.partition(".")[0] in target.uncached:  # the caller's own (currentSession)
            return soap.Encoded(encode())
        return soap.Encoded(wire_cache.fragment(target, ("Fetch", prop), encode))

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

    # Storage events vCenter reports but no API call makes: a LUN or NFS
    # export lost and back, a datastore mounted on or unmounted from a host.

    def set_datastore_accessible(self, name: str, accessible: bool) -> None:
        with self.registry.lock:
            ds = self.datastores[name]
            ds.accessible = accessible
            self.registry.touch(ds)

    def mount_datastore(self, name: str, host_name: str) -> None:
        with self.registry.lock:
            ds, host = self.datastores[name], self.host(host_name)
            if ds not in host.datastores:
                host.datastores.append(ds)
                ds.hosts.append(host)
            self.registry.touch(ds, host)

    def unmount_datastore(self, name: str, host_name: str) -> None:
        with self.registry.lock:
            ds, host = self.datastores[name], self.host(host_name)
            if any(ds in vm.datastores for vm in host.vms):
                raise vim.fault.ResourceInUse(msg=f"Datastore {name} is in use on {host_name}")
            if ds in host.datastores:
                host.datastores.remove(ds)
                ds.hosts.remove(host)
            self.registry.touch(ds, host)
