"""ServiceInstance and SessionManager."""

from __future__ import annotations

import dataclasses
import datetime
import time
import urllib.parse
import uuid
from typing import TYPE_CHECKING

from pyVmomi import vim, vmodl

from nova_vsphere_driver.simulator import soap
from nova_vsphere_driver.simulator.objects.base import CallContext, ManagedObject
from nova_vsphere_driver.simulator.objects.consoles import host_thumbprint
from nova_vsphere_driver.simulator.vim_faults import invalid_argument

if TYPE_CHECKING:
    from nova_vsphere_driver.simulator.service import Simulator


#: ServiceContent's fields and the moids vCenter gives their objects.
SERVICE_CONTENT = {
    "rootFolder": "group-d1",
    "propertyCollector": "propertyCollector",
    "viewManager": "ViewManager",
    "setting": "VpxSettings",
    "userDirectory": "UserDirectory",
    "sessionManager": "SessionManager",
    "authorizationManager": "AuthorizationManager",
    "perfManager": "PerfMgr",
    "alarmManager": "AlarmManager",
    "eventManager": "EventManager",
    "taskManager": "TaskManager",
    "extensionManager": "ExtensionManager",
    "customFieldsManager": "CustomFieldsManager",
    "searchIndex": "SearchIndex",
    "fileManager": "FileManager",
    "virtualDiskManager": "VirtualDiskManager",
    "ovfManager": "OvfManager",
    "licenseManager": "LicenseManager",
}


class ServiceInstance(ManagedObject):
    vim_type = vim.ServiceInstance
    uncached = ("serverClock",)

    def __init__(self, sim: Simulator) -> None:
        super().__init__(sim, "ServiceInstance")

    def about(self) -> vim.AboutInfo:
        return vim.AboutInfo(
            name="VMware vCenter Server",
            fullName=f"VMware vCenter Server {soap.API_VERSION[:5]} build-20519528 "
            "(nova-vsphere-driver simulator)",
            vendor="VMware, Inc.",
            version=soap.API_VERSION[:5],
            build="20519528",
            osType="linux-x64",
            productLineId="vpx",
            apiType="VirtualCenter",
            apiVersion=soap.API_VERSION,
            instanceUuid=self.sim.instance_uuid,
            licenseProductName="VMware VirtualCenter Server",
            licenseProductVersion="8.0",
        )

    def content(self) -> vim.ServiceInstanceContent:
        """ServiceContent: the root folder and every manager this vCenter has."""
        registry = self.sim.registry
        managers = {field: registry.get(moid).ref for field, moid in SERVICE_CONTENT.items()
                    if moid in registry}
        return vim.ServiceInstanceContent(about=self.about(), **managers)

    def cache_version(self) -> tuple:
        """What content and capability depend on: which managers exist, this vCenter's uuid.

        Not the inventory's generation: pyVmomi clients read ``content``
        before most calls (every task wait), while other calls change the
        inventory.
        """
        registry = self.sim.registry
        return self.sim.instance_uuid, tuple(moid in registry for moid in SERVICE_CONTENT.values())

    def _get_content(self):
        return self.content()

    def _get_serverClock(self):  # noqa: N802
        return datetime.datetime.now(datetime.timezone.utc)

    def _get_capability(self):
        return vim.Capability(provisioningSupported=True, multiHostSupported=True,
                              userShellAccessSupported=False)

    def RetrieveServiceContent(self, ctx: CallContext):  # noqa: N802
        return self.content()

    def CurrentTime(self, ctx: CallContext):  # noqa: N802
        return datetime.datetime.now(datetime.timezone.utc)


#: How long a generic service ticket stays valid (unused).
TICKET_SECONDS = 600.0


@dataclasses.dataclass(frozen=True)
class _Ticket:
    method: str  # GET, PUT, POST, DELETE
    path: str
    query: str
    host: str
    expires: float


class SessionManager(ManagedObject):
    vim_type = vim.SessionManager
    # Both depend on the caller and on sessions, which are not inventory.
    uncached = ("currentSession", "sessionList")

    def __init__(self, sim: Simulator) -> None:
        super().__init__(sim, "SessionManager")
        self._tickets: dict[str, _Ticket] = {}

    def _get_currentSession(self):  # noqa: N802
        session = self.sim.current_session()
        return session.user_session() if session is not None else None

    def _get_sessionList(self):  # noqa: N802
        # Live sessions only; another session's key is not shown (vCenter
        # shows each caller its own key alone).
        self.sim.drop_expired_sessions()
        current = self.sim.current_session()
        return [s.user_session(show_key=s is current) for s in self.sim.sessions.values()]

    def _get_defaultLocale(self):  # noqa: N802
        return "en"

    def _get_supportedLocaleList(self):  # noqa: N802
        return ["en"]

    def _get_message(self):
        return None

    def Login(self, ctx: CallContext, userName: str, password: str, locale=None):  # noqa: N802,N803
        sim = self.sim
        address = ctx.client.address if ctx.client is not None else ""
        # A client that keeps failing waits longer before each attempt (its
        # own thread sleeps; nothing is locked meanwhile).
        sim.login_throttle.wait_turn(address)
        if not sim.credentials_match(userName, password):
            sim.login_throttle.failed(address)
            sim.events.post(vim.event.BadUsernameSessionEvent, user=userName,
                            ipAddress=address)
            raise vim.fault.InvalidLogin(msg="Cannot complete login due to an incorrect user name "
                                         "or password.")
        sim.login_throttle.succeeded(address)
        session = sim.create_session(userName, ctx.client)
        ctx.new_session = session
        sim.events.post(vim.event.UserLoginSessionEvent, user=userName,
                        ipAddress=session.client.address,
                        userAgent=session.client.user_agent, locale=locale or "en",
                        sessionId=session.key)
        return session.user_session()

    def Logout(self, ctx: CallContext) -> None:  # noqa: N802
        if ctx.session is not None:
            session = ctx.session
            self.sim.events.post(vim.event.UserLogoutSessionEvent, user=session.user,
                                 ipAddress=session.client.address,
                                 userAgent=session.client.user_agent, sessionId=session.key,
                                 callCount=session.call_count, loginTime=session.login_time)
            self.sim.drop_session(session.key)

    def SessionIsActive(self, ctx: CallContext, sessionID: str, userName: str) -> bool:  # noqa: N802,N803
        session = self.sim.sessions.get(sessionID)
        return bool(session and session.user == userName and not session.expired())

    # -- one-time tickets for an ESX host's HTTP services (datastore file transfers) --

    def AcquireGenericServiceTicket(self, ctx: CallContext, spec):  # noqa: N802
        """A one-time ticket for one HTTP request to an ESX host's service.

        As vCenter hands them out for ``https://<esx host>/folder/<path>?
        dcPath=ha-datacenter&dsName=<ds>`` (Nova's in-tree driver uploads
        images that way): the client sends ``Cookie: vmware_cgi_ticket=<id>``
        with exactly that method and URL, within TICKET_SECONDS, once.
        """
        if not isinstance(spec, vim.SessionManager.HttpServiceRequestSpec):
            raise vmodl.fault.NotSupported(
                msg="Only HTTP service tickets (SessionManagerHttpServiceRequestSpec) are "
                "supported")
        url = urllib.parse.urlsplit(spec.url)
        if url.scheme not in ("http", "https") or not url.hostname \
                or not url.path.startswith("/folder/"):
            raise invalid_argument("spec.url", f"{spec.url!r} is not the URL of a datastore "
                                   "file (http[s]://<host>/folder/<path>?dsName=<datastore>)")
        host = next((h for h in self.sim.hosts() if h.name == url.hostname), None)
        ticket_id = str(uuid.uuid4())
        with self.sim.registry.lock:
            now = time.monotonic()
            self._tickets = {k: t for k, t in self._tickets.items() if t.expires > now}
            self._tickets[ticket_id] = _Ticket(
                method=(spec.method or "httpGet").removeprefix("http").upper(),
                path=url.path, query=url.query, host=url.hostname,
                expires=now + TICKET_SECONDS)
        return vim.SessionManager.GenericServiceTicket(
            id=ticket_id, hostName=url.hostname,
            sslThumbprint=host_thumbprint(host) if host is not None else None)

    def redeem_ticket(self, ticket_id: str, method: str, target: str) -> str | None:
        """The host a valid ticket was issued for, using it up; None if it is not valid.

        ``target`` is the request's path and query, which must be the URL's
        the ticket was issued for.
        """
        url = urllib.parse.urlsplit(target)
        with self.sim.registry.lock:
            ticket = self._tickets.get(ticket_id)
            if ticket is None or ticket.expires <= time.monotonic() \
                    or ticket.method != method or ticket.path != url.path \
                    or urllib.parse.parse_qs(ticket.query) != urllib.parse.parse_qs(url.query):
                return None
            del self._tickets[ticket_id]
            return ticket.host

    def TerminateSession(self, ctx: CallContext, sessionId: list) -> None:  # noqa: N802,N803
        for key in sessionId:
            if key not in self.sim.sessions:
                raise vim.fault.NotFound(msg=f"session {key} not found")
            self.sim.drop_session(key)
