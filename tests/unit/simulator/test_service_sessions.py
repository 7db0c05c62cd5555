"""ServiceInstance and SessionManager: RetrieveServiceContent, CurrentTime, Login/Logout."""

from __future__ import annotations

import datetime

import pytest
from pyVmomi import SoapAdapter, vim

from nova_vsphere_driver.simulator import soap
from tests.fixtures import connect


def _anonymous(sim_server):
    stub = SoapAdapter.SoapStubAdapter(host="127.0.0.1", port=-sim_server.port,
                                       version=soap.VERSION, poolSize=0)
    return vim.ServiceInstance("ServiceInstance", stub)


def test_retrieve_service_content_needs_no_session(sim_server, sim):
    si = _anonymous(sim_server)
    content = si.RetrieveContent()
    assert content.rootFolder._moId == sim.root_folder.moid
    assert content.propertyCollector._moId == "propertyCollector"
    refs = {"viewManager": vim.view.ViewManager, "sessionManager": vim.SessionManager,
            "searchIndex": vim.SearchIndex, "fileManager": vim.FileManager,
            "virtualDiskManager": vim.VirtualDiskManager, "taskManager": vim.TaskManager}
    for name, kind in refs.items():
        ref = getattr(content, name)
        assert isinstance(ref, kind), name
        assert ref._moId in sim.registry
    about = content.about
    assert (about.apiType, about.apiVersion) == ("VirtualCenter", soap.API_VERSION)
    assert about.instanceUuid == sim.instance_uuid


def test_current_time_is_the_server_clock(sim_server, si):
    before = datetime.datetime.now(datetime.timezone.utc)
    now = _anonymous(sim_server).CurrentTime()
    after = datetime.datetime.now(datetime.timezone.utc)
    assert before - datetime.timedelta(seconds=1) <= now <= after + datetime.timedelta(seconds=1)
    assert abs((si.CurrentTime() - now).total_seconds()) < 5


def test_login_creates_a_session_the_client_keeps(sim_server, sim):
    si = _anonymous(sim_server)
    sm = si.RetrieveContent().sessionManager
    user_session = sm.Login(sim.username, sim.password, None)
    assert user_session.userName == sim.username
    assert user_session.key in sim.sessions
    assert sm.currentSession.key == user_session.key
    assert user_session.key in {s.key for s in sm.sessionList}
    # The cookie carries the session: the same stub reads the inventory.
    assert si.RetrieveContent().rootFolder.name == "Datacenters"
    sm.Logout()
    assert user_session.key not in sim.sessions
    with pytest.raises(vim.fault.NotAuthenticated):
        sm.currentSession  # noqa: B018


def test_login_with_wrong_credentials(sim_server, sim):
    sm = _anonymous(sim_server).RetrieveContent().sessionManager
    with pytest.raises(vim.fault.InvalidLogin):
        sm.Login(sim.username, "not-the-password", None)
    with pytest.raises(vim.fault.InvalidLogin):
        sm.Login("someone-else", sim.password, None)
    assert sim.sessions == {}


def test_session_is_active_across_sessions(sim_server, sim, si):
    other = connect(sim_server)
    other_key = other.content.sessionManager.currentSession.key
    sm = si.content.sessionManager
    assert sm.SessionIsActive(other_key, sim.username) is True
    assert sm.SessionIsActive(other_key, "someone-else") is False
    other.content.sessionManager.Logout()
    assert sm.SessionIsActive(other_key, sim.username) is False
    # The caller's own session is unaffected.
    assert sm.SessionIsActive(sm.currentSession.key, sim.username) is True


def test_expired_sessions_report_inactive(sim_server, sim, si):
    other = connect(sim_server)
    key = other.content.sessionManager.currentSession.key
    sim.sessions[key].last_active -= sim.session_idle_timeout + 1
    assert si.content.sessionManager.SessionIsActive(key, sim.username) is False
    with pytest.raises(vim.fault.NotAuthenticated):
        other.content.rootFolder.name  # noqa: B018
    assert key not in sim.sessions
