"""ServiceInstance and SessionManager: RetrieveServiceContent, CurrentTime, Login/Logout."""

from __future__ import annotations

import datetime
import threading
import time

import pytest
import requests
from pyVmomi import SoapAdapter, vim, vmodl

from nova_vsphere_driver.simulator import soap
from nova_vsphere_driver.simulator.login_throttle import LoginThrottle
from tests.fixtures import connect, running_simulator
from tests.unit.simulator import raw_http
from tests.unit.simulator.helpers import wait_until


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
    # As vCenter: without a session, currentSession reads unset (issue 16).
    assert sm.currentSession is None


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


# -- what a session leaves behind, and what others see of it ----------------------------


PC = vmodl.query.PropertyCollector


def _session_objects(si):
    """A view, a collector and a filter on each collector, created by ``si``'s session."""
    content = si.content
    view = content.viewManager.CreateContainerView(content.rootFolder, [vim.HostSystem], True)
    spec = PC.FilterSpec(objectSet=[PC.ObjectSpec(obj=content.rootFolder)],
                         propSet=[PC.PropertySpec(type=vim.Folder, pathSet=["name"])])
    collector = content.propertyCollector.CreatePropertyCollector()
    filters = [content.propertyCollector.CreateFilter(spec, True),
               collector.CreateFilter(spec, True)]
    return [view, collector, *filters]


def _gone_for(other_si, objects) -> list:
    """Those of ``objects`` that ``other_si`` still finds."""
    present = []
    for obj in objects:
        mine = type(obj)(obj._moId, other_si._stub)
        try:
            if isinstance(mine, vim.view.ContainerView):
                mine.type  # noqa: B018
            elif isinstance(mine, PC.Filter):
                mine.partialUpdates  # noqa: B018
            else:
                mine.filter  # noqa: B018
        except vmodl.fault.ManagedObjectNotFound:
            continue
        present.append(obj)
    return present


def test_logout_frees_the_sessions_views_filters_and_collectors(sim_server, si):
    other = connect(sim_server)
    objects = _session_objects(other)
    assert _gone_for(si, objects) == objects
    views = {v._moId for v in si.content.viewManager.viewList}
    assert objects[0]._moId in views
    other.content.sessionManager.Logout()
    assert _gone_for(si, objects) == []
    assert objects[0]._moId not in {v._moId for v in si.content.viewManager.viewList}
    assert si.content.propertyCollector.filter == []


def test_session_expiry_frees_the_sessions_objects():
    with running_simulator(session_idle_timeout=2.0) as server:
        keeper = connect(server)
        idle = connect(server)
        objects = _session_objects(idle)
        idle_since = time.monotonic()

        def freed() -> bool:
            keeper.CurrentTime()  # keeper stays active, idle does not
            return _gone_for(keeper, objects) == []

        # Nothing touches the idle session again: its expiry alone frees them,
        # within about a second of it.
        wait_until(freed, timeout=10, interval=0.2, what="the idle session's objects freed")
        assert time.monotonic() - idle_since >= 2.0
        assert len(keeper.content.sessionManager.sessionList) == 1


def test_a_wait_for_updates_ends_when_its_session_is_terminated(sim_server, si):
    other = connect(sim_server)
    other_key = other.content.sessionManager.currentSession.key
    collector = other.content.propertyCollector
    spec = PC.FilterSpec(objectSet=[PC.ObjectSpec(obj=other.content.rootFolder)],
                         propSet=[PC.PropertySpec(type=vim.Folder, pathSet=["name"])])
    collector.CreateFilter(spec, True)
    version = collector.WaitForUpdatesEx("", PC.WaitOptions(maxWaitSeconds=0)).version
    outcome = {}

    def wait():
        try:
            collector.WaitForUpdatesEx(version, PC.WaitOptions(maxWaitSeconds=60))
        except Exception as exc:  # noqa: BLE001 - the outcome is asserted below
            outcome["error"] = exc

    thread = threading.Thread(target=wait)
    thread.start()
    time.sleep(0.2)
    started = time.monotonic()
    si.content.sessionManager.TerminateSession([other_key])
    thread.join(10)
    assert not thread.is_alive()
    assert time.monotonic() - started < 5
    assert isinstance(outcome.get("error"), vim.fault.NotAuthenticated)


def test_session_list_is_current_and_shows_only_the_callers_key(sim_server, sim, si):
    sm = si.content.sessionManager
    own_key = sm.currentSession.key
    other = connect(sim_server)
    assert other.content.sessionManager.currentSession.key != own_key
    assert len(sm.sessionList) == 2
    # The caller sees its own key; another session's key is not shown.
    assert {s.key for s in sm.sessionList} == {own_key, ""}
    entry = next(s for s in sm.sessionList if s.key == "")
    assert entry.ipAddress == "127.0.0.1" and entry.userAgent.startswith("pyvmomi")
    assert entry.callCount >= 1
    other.content.sessionManager.Logout()
    assert [s.key for s in sm.sessionList] == [own_key]
    # A session key is an identifier, not a credential: as a cookie it opens nothing.
    stub = SoapAdapter.SoapStubAdapter(host="127.0.0.1", port=-sim_server.port,
                                       version=soap.VERSION, poolSize=0)
    stub.cookie = f'vmware_soap_session="{own_key}"'
    with pytest.raises(vim.fault.NotAuthenticated):
        vim.ServiceInstance("ServiceInstance", stub).content.rootFolder.name  # noqa: B018
    assert own_key not in si._stub.cookie


# -- failed logins are slowed down, per client address ------------------------------------


def _timed_login(server, password: str, source: str = "127.0.0.1") -> tuple[int, float]:
    started = time.monotonic()
    answer = raw_http.exchange_from(server, source, raw_http.login_request(
        server.simulator.username, password))
    return answer.status, time.monotonic() - started


def test_failed_logins_are_delayed_progressively_per_client(sim_server, sim):
    sim.login_throttle = throttle = LoginThrottle(first_delay=0.2, max_delay=0.8)
    times = [_timed_login(sim_server, "wrong") for _ in range(5)]
    assert [status for status, _ in times] == [500] * 5  # InvalidLogin faults
    # Each attempt after a failure waited for its turn: 0.2, 0.4, 0.8 (the cap), 0.8 s.
    for expected, (_, waited) in zip([0.2, 0.4, 0.8, 0.8], times[1:], strict=True):
        assert waited >= expected - 0.05, times
    assert 0.5 < throttle.delay_for("127.0.0.1") <= 0.8
    # Another address is not slowed down by this one's failures ...
    assert throttle.delay_for("127.0.0.2") == 0
    assert _timed_login(sim_server, sim.password, source="127.0.0.2")[0] == 200
    # ... and the right password from the failing one waits its turn, then clears it.
    status, waited = _timed_login(sim_server, sim.password)
    assert status == 200 and waited >= 0.5
    assert throttle.delay_for("127.0.0.1") == 0


def test_parallel_failed_logins_are_spaced_out(sim_server, sim):
    sim.login_throttle = LoginThrottle(first_delay=0.3, max_delay=0.3)
    _timed_login(sim_server, "wrong")
    started = time.monotonic()
    threads = [threading.Thread(target=_timed_login, args=(sim_server, "wrong"))
               for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    # One slot of 0.3 s per attempt, however many are sent at once.
    assert time.monotonic() - started >= 4 * 0.3 - 0.05


def test_a_throttled_login_does_not_hold_up_other_clients(sim_server, sim, si):
    sim.login_throttle = LoginThrottle(first_delay=2.0, max_delay=2.0)
    _timed_login(sim_server, "wrong")
    outcome = {}

    def throttled():
        outcome["login"] = _timed_login(sim_server, "wrong")
        outcome["done"] = time.monotonic()

    waiting = threading.Thread(target=throttled)
    waiting.start()
    for _ in range(5):  # the same address, on a live session, meanwhile
        assert si.content.rootFolder.name == "Datacenters"
    reads_done = time.monotonic()
    waiting.join(10)
    assert outcome["login"][1] >= 1.0  # the login waited its turn ...
    assert reads_done < outcome["done"]  # ... and the other calls did not wait for it


def test_wrong_basic_credentials_are_delayed_as_failed_logins(sim_server, sim):
    sim.login_throttle = throttle = LoginThrottle(first_delay=0.3, max_delay=0.3)
    url = f"http://127.0.0.1:{sim_server.port}/simulator/control"
    durations = []
    for _ in range(3):
        started = time.monotonic()
        assert requests.post(url, json={"action": "stats"}, auth=(sim.username, "wrong"),
                             timeout=10).status_code == 401
        durations.append(time.monotonic() - started)
    assert min(durations[1:]) >= 0.25, durations
    assert throttle.delay_for("127.0.0.1") > 0
