"""nova-vsphere-drs against the simulator: status, plan (changes nothing), apply."""

from __future__ import annotations

import io

import pytest

from nova_vsphere_driver.cmd import drs as drs_cli
from tests.fixtures import running_simulator

GB = 1024


def _inventory() -> dict:
    vms = [{"name": f"legacy-{i}", "cluster": "c1", "host": "h1", "cpus": 2,
            "memory_mb": 16 * GB, "disk_gb": 1, "datastore": "ds1", "power": "on"}
           for i in range(8)]
    return {"datacenters": [{
        "name": "dc1", "datastores": [{"name": "ds1", "capacity_gb": 2048}],
        "networks": ["VM Network"],
        "clusters": [{"name": "c1", "hosts": [
            {"name": f"h{i}", "cores": 16, "mhz": 2400, "memory_mb": 256 * GB}
            for i in range(1, 4)]}],
        "vms": vms}]}


@pytest.fixture
def server(monkeypatch, wsdl_file):
    with running_simulator(_inventory()) as srv:
        monkeypatch.setenv("VSPHERE_PASSWORD", srv.simulator.password)
        yield srv


def _run(server, *args, cluster="c1") -> tuple[int, str]:
    parser = drs_cli.build_parser()
    argv = ["--host", "127.0.0.1", "--port", str(server.port), "--http",
            "--user", server.simulator.username, "--cluster", cluster, *args]
    out = io.StringIO()
    try:
        return drs_cli.run(parser.parse_args(argv), out), out.getvalue()
    except drs_cli.UsageError as exc:
        return 2, str(exc)


def _hosts_of(sim) -> dict[str, str]:
    return {v.name: v.get_property("runtime.host")._moId for v in sim.vms()}


def test_status_shows_each_host_and_the_imbalance(server):
    rc, out = _run(server, "status")
    assert rc == 0
    assert "cluster c1: imbalance" in out
    lines = {line.split()[0]: line for line in out.splitlines()[2:]}
    assert set(lines) == {"h1", "h2", "h3"}
    assert lines["h1"].split()[-1] == "8" and lines["h2"].split()[-1] == "0"
    assert "128/256" in lines["h1"]


def test_plan_changes_nothing_and_apply_moves(server):
    sim = server.simulator
    before = _hosts_of(sim)
    rc, out = _run(server, "plan", "--max-moves", "4")
    assert rc == 0
    assert "would do" in out and "[balance]" in out
    planned = [line for line in out.splitlines() if "->" in line and "[balance]" in line]
    assert 1 <= len(planned) <= 4
    assert _hosts_of(sim) == before
    rc, out = _run(server, "apply", "--max-moves", "4")
    assert rc == 0 and "did" in out
    after = _hosts_of(sim)
    assert after != before
    assert sum(1 for h in after.values() if h == sim.host("h1").moid) < 8


def test_plan_shows_evacuation_of_a_host_entering_maintenance(server):
    sim = server.simulator
    host = sim.host("h1")
    from pyVmomi import vim

    from tests.fixtures import connect

    si = connect(server)
    ref = vim.HostSystem(host.moid, si._stub)
    task = ref.EnterMaintenanceMode_Task(timeout=0)
    rc, out = _run(server, "plan")
    assert rc == 0
    assert "evacuation on c1" in out and out.count("[maintenance]") == 8
    assert "h1 -> h2" in out or "h1 -> h3" in out  # hosts by name
    rc, out = _run(server, "apply")
    assert rc == 0
    from pyVim.task import WaitForTask

    WaitForTask(task)
    assert host.get_property("runtime.inMaintenanceMode") is True


def test_errors_name_what_is_wrong(server, monkeypatch):
    rc, out = _run(server, "status", cluster="nope")
    assert rc == 1
    rc, out = _run(server, "status", "--policy", "fastest")
    assert rc == 2
    monkeypatch.delenv("VSPHERE_PASSWORD")
    rc, message = _run(server, "status")
    assert rc == 2 and "VSPHERE_PASSWORD" in message


def test_reads_nova_conf_like_nova_compute(server, tmp_path, monkeypatch):
    monkeypatch.delenv("VSPHERE_PASSWORD")
    conf = tmp_path / "nova.conf"
    conf.write_text(
        "[vsphere]\n"
        f"host_ip = 127.0.0.1\nhost_port = {server.port}\n"
        f"host_username = {server.simulator.username}\n"
        f"host_password = {server.simulator.password}\n"
        "[vsphere_drs]\npolicy = packed\n")
    argv = ["--config-file", str(conf), "--http", "--cluster", "c1", "status"]
    out = io.StringIO()
    assert drs_cli.run(drs_cli.build_parser().parse_args(argv), out) == 0
    assert "cluster c1: imbalance" in out.getvalue()
