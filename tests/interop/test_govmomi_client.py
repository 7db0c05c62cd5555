"""A Go client on govmomi's library (tests/interop/go/govmomi-client) against the simulator.

It makes the calls govc, Terraform's vSphere provider and Kubernetes' cloud
provider make, over verified HTTPS, and reports each step as a JSON line;
the program runs once per test session and each test checks its steps.
"""

from __future__ import annotations

import json
import subprocess
import urllib.parse

import pytest

from tests.fixtures import running_simulator

RUN_TIMEOUT = 600


@pytest.fixture(scope="module")
def govmomi_run(go_build):
    """The steps of one run of the Go client: {step: (ok, error, data)} and the simulator."""
    binary = go_build("govmomi-client")
    with running_simulator(tls=True) as server:
        sim = server.simulator
        user = urllib.parse.quote(sim.username, safe="")
        password = urllib.parse.quote(sim.password, safe="")
        url = f"https://{user}:{password}@127.0.0.1:{server.port}/sdk"
        proc = subprocess.run([binary, "-url", url, "-ca", server.ca_file],
                              capture_output=True, text=True, timeout=RUN_TIMEOUT, check=False)
        steps = {}
        for line in proc.stdout.splitlines():
            record = json.loads(line)
            steps[record["step"]] = record
        yield steps, sim, proc.stderr


def _step(govmomi_run, name: str):
    steps, _, stderr = govmomi_run
    assert name in steps, f"the Go client never reached {name!r}; stderr:\n{stderr[-2000:]}"
    record = steps[name]
    assert record["ok"], f"{name}: {record.get('error')}"
    return record.get("data")


def test_connects_and_finds_inventory_by_path(govmomi_run):
    assert _step(govmomi_run, "connect") == {"apiType": "VirtualCenter",
                                             "apiVersion": "8.0.0.0"}
    found = _step(govmomi_run, "finder")
    assert found["datacenter"] == "/dc1"
    assert found["hosts"] == [f"/dc1/host/cluster-a/esx-a{i}" for i in range(1, 5)]
    assert found["clusters"] == ["cluster-a", "cluster-b"]
    assert found["pool"] == "/dc1/host/cluster-a/Resources"


def test_whole_object_reads_decode_into_govmomi_types(govmomi_run):
    _, sim, _ = govmomi_run
    data = _step(govmomi_run, "whole_object_reads")
    # 64-bit values arrive whole (xsd:long): a cluster has over 2 GiB of memory.
    assert data["cluster_memory"] == sum(h.memory_mb for h in sim.cluster("cluster-a").hosts) \
        * 2 ** 20 > 2 ** 31
    assert data["host_memory"] == sim.host("esx-a1").memory_mb * 2 ** 20
    assert data["host_config_mgr"] is True
    assert data["datacenter_name"] == "dc1"


def test_vm_create_gets_vcenters_device_keys_and_labels(govmomi_run):
    labels = _step(govmomi_run, "create_vm")
    assert labels["SCSI controller 0"] == 1000
    assert labels["Hard disk 1"] == 2000
    assert labels["Network adapter 1"] == 4000
    # govmomi names a NIC by its PCI slot (unit 7 is ethernet-0).
    assert labels["ethernet-0"] == 4000
    assert labels["disk-1000-0"] == 2000
    assert all(key > 0 for key in labels.values())


def test_vm_power_reconfigure_migrate_and_relocate(govmomi_run):
    _, sim, _ = govmomi_run
    assert _step(govmomi_run, "reconfigure")["memory"] == 768
    assert _step(govmomi_run, "power") == "poweredOn"
    moved = _step(govmomi_run, "migrate")
    assert moved == {"migrated_to": sim.host("esx-a2").moid,
                     "relocated_to": sim.host("esx-a1").moid}


def test_snapshots_and_clones_full_and_linked(govmomi_run):
    assert _step(govmomi_run, "snapshots").startswith("snapshot-")
    assert _step(govmomi_run, "clones") == {"linked_parent": "[shared-a] go-vm/go-vm.vmdk"}
    assert _step(govmomi_run, "vm_finder") == ["/dc1/vm/go-full", "/dc1/vm/go-linked",
                                               "/dc1/vm/go-vm"]


def test_events_and_task_history(govmomi_run):
    events = _step(govmomi_run, "events")
    for kind in ("VmCreatedEvent", "VmPoweredOnEvent", "VmMigratedEvent", "TaskEvent",
                 "VmBeingClonedEvent"):
        assert kind in events["kinds"]
    assert "Created virtual machine go-vm on esx-a1 in dc1" in events["messages"]
    tasks = _step(govmomi_run, "tasks")
    assert tasks[:3] == ["VirtualMachine.reconfigure:success", "VirtualMachine.powerOn:success",
                         "VirtualMachine.migrate:success"]


def test_perf_samples_match_quick_stats(govmomi_run):
    perf = _step(govmomi_run, "perf")
    assert perf["values"]["cpu.usagemhz.average"][-1] == perf["quick_cpu"]
    assert perf["values"]["mem.consumed.average"][-1] == perf["quick_mem"] * 1024


def test_custom_fields_options_licenses_roles(govmomi_run):
    assert _step(govmomi_run, "custom_fields") == {"key": 101, "value": "go-team"}
    found = _step(govmomi_run, "options_licenses_roles")
    assert "event.maxAge" in found["options"] and found["licenses"] >= 1 and found["admin"]


def test_list_views_and_property_waits(govmomi_run):
    waited = _step(govmomi_run, "list_view_wait")
    assert waited["listed"] == 1 and waited["state"] == "poweredOff"


def test_session_keep_alive_and_relogin(govmomi_run):
    assert _step(govmomi_run, "session_relogin") == {"relogged": True}


def test_destroy_leaves_nothing(govmomi_run):
    _, sim, _ = govmomi_run
    done = _step(govmomi_run, "destroy")
    assert done["left"] == 0 and len(done["destroyed"]) == 3
    assert not [vm for vm in sim.vms() if vm.name.startswith("go-")]
