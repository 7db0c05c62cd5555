"""Nova's native-threading mode: the driver's one vCenter session under real threads.

nova-compute (Nova 34's default mode) runs builds, deletes, the resource
tracker and the driver's DRS loop on real threads, all through one
oslo.vmware session.  suds used to decode concurrent replies through shared
state, so one call could return another's result (found by
test_concurrency.py with 20 concurrent deletes).  Frequent thread switches
make that race show within seconds (about one crossed reply per hundred
calls without the fix).
"""

from __future__ import annotations

import sys
import threading
import time

import pytest
from oslo_vmware import vim_util

from nova_vsphere_driver.simulator.objects.host import HostSystem
from nova_vsphere_driver.testing import nova_env
from nova_vsphere_driver.vsphere.cluster_state import ClusterStateReader
from nova_vsphere_driver.vsphere.session import VSphereSession
from tests.fixtures import running_simulator

CALLS = 800


def test_concurrent_calls_on_one_session_get_their_own_replies():
    if "nova" not in nova_env.missing_modules() and nova_env.eventlet_mode():
        pytest.skip("green threads switch only on I/O: no preemption inside suds")
    errors: list[str] = []
    calls = [0]
    old_interval = sys.getswitchinterval()
    with running_simulator(tls=True) as server:
        sim = server.simulator
        session = VSphereSession("127.0.0.1", server.port, sim.username, sim.password,
                                 ca_file=server.ca_file, api_retry_count=0)
        reader = ClusterStateReader(session)
        clusters = reader.find_clusters()
        hosts = [(h.moid, h.name) for h in sim.registry.find(HostSystem)]
        deadline = time.monotonic() + 40

        def done() -> bool:
            return calls[0] >= CALLS or time.monotonic() > deadline

        def small(moid: str, name: str) -> None:
            ref = vim_util.get_moref(moid, "HostSystem")
            while not done():
                try:
                    got = session.call("get_object_property", ref, "name")
                except Exception as exc:  # a crossed reply may not even decode
                    errors.append(f"{name}: {type(exc).__name__}: {exc}"[:200])
                    continue
                calls[0] += 1
                if got != name:
                    errors.append(f"asked for {name}'s name, got {got!r}")

        def big(cluster) -> None:
            while not done():
                try:
                    state = reader.cluster_state(cluster)
                except Exception as exc:
                    errors.append(f"{cluster.name}: {type(exc).__name__}: {exc}"[:200])
                    continue
                calls[0] += 1
                if sorted(h.name for h in state.hosts) != sorted(
                        n for m, n in hosts if n[4] == cluster.name[-1]):
                    errors.append(f"{cluster.name}: hosts {[h.name for h in state.hosts]}")

        threads = [threading.Thread(target=small, args=h) for h in hosts]
        threads += [threading.Thread(target=big, args=(c,)) for c in clusters * 2]
        sys.setswitchinterval(1e-4)
        try:
            for t in threads:
                t.start()
            for t in threads:
                t.join()
        finally:
            sys.setswitchinterval(old_interval)
        session.logout()
    assert calls[0] >= CALLS // 2  # enough calls for the race to have shown
    assert errors == [], f"{len(errors)} of {calls[0]} calls crossed: {errors[:5]}"
