"""ServiceInstance and SessionManager."""

from __future__ import annotations

import datetime
from typing import TYPE_CHECKING

from pyVmomi import vim

from nova_vsphere_driver.simulator import soap
from nova_vsphere_driver.simulator.objects.base import CallContext, ManagedObject

if TYPE_CHECKING:
    from nova_vsphere_driver.simulator.service import Simulator


class ServiceInstance(ManagedObject):
    vim_type = vim.ServiceInstance

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
        s = self.sim
        return vim.ServiceInstanceContent(
            rootFolder=s.root_folder.ref,
            propertyCollector=s.property_collector.ref,
            viewManager=s.view_manager.ref,
            about=self.about(),
            sessionManager=s.session_manager.ref,
            searchIndex=s.search_index.ref,
            fileManager=s.file_manager.ref,
            virtualDiskManager=s.virtual_disk_manager.ref,
            taskManager=s.task_manager.ref,
        )

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


class SessionManager(ManagedObject):
    vim_type = vim.SessionManager
    # Both depend on the caller and on sessions, which are not inventory.
    uncached = ("currentSession", "sessionList")

    def __init__(self, sim: Simulator) -> None:
        super().__init__(sim, "SessionManager")

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
            raise vim.fault.InvalidLogin(msg="Cannot complete login due to an incorrect user name "
                                         "or password.")
        sim.login_throttle.succeeded(address)
        session = sim.create_session(userName, ctx.client)
        ctx.new_session = session
        return session.user_session()

    def Logout(self, ctx: CallContext) -> None:  # noqa: N802
        if ctx.session is not None:
            self.sim.drop_session(ctx.session.key)

    def SessionIsActive(self, ctx: CallContext, sessionID: str, userName: str) -> bool:  # noqa: N802,N803
        session = self.sim.sessions.get(sessionID)
        return bool(session and session.user == userName and not session.expired())

    def TerminateSession(self, ctx: CallContext, sessionId: list) -> None:  # noqa: N802,N803
        for key in sessionId:
            if key not in self.sim.sessions:
                raise vim.fault.NotFound(msg=f"session {key} not found")
            self.sim.drop_session(key)
