"""nova-vsphere-drs against the simulator: status, plan (changes nothing), apply.

In-process through ``main`` for the output formats, and as a real process for
what only a process shows: live progress on a terminal, plain lines in a
pipe, and Ctrl-C (a real SIGINT) stopping ``apply`` after the running wave.
"""

from __future__ import annotations

import io
import json
import os
import pty
import select
import signal
import subprocess
import sys
import time

import pytest
import yaml

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
def server(monkeypatch, wsdl_file, tmp_path):
    with running_simulator(_inventory()) as srv:
        monkeypatch.setenv("VSPHERE_PASSWORD", srv.simulator.password)
        # The WSDL as a local file: suds parses it once per process, not per run.
        srv.wsdl_conf = tmp_path / "wsdl.conf"
        srv.wsdl_conf.write_text(f"[vsphere]\nwsdl_location = {wsdl_file}\n")
        yield srv


def _argv(server, *args, cluster="c1") -> list[str]:
    return ["--config-file", str(server.wsdl_conf), "--host", "127.0.0.1",
            "--port", str(server.port), "--http", "--user", server.simulator.username,
            "--cluster", cluster, *args]


def _run(server, *args, cluster="c1") -> tuple[int, str]:
    """(exit status, stdout + stderr) of ``nova-vsphere-drs`` run in-process."""
    out, err = io.StringIO(), io.StringIO()
    rc = drs_cli.main(_argv(server, *args, cluster=cluster), stdout=out, stderr=err)
    return rc, out.getvalue() + err.getvalue()


def _hosts_of(sim) -> dict[str, str]:
    return {v.name: v.get_property("runtime.host")._moId for v in sim.vms()}


def test_status_shows_each_host_and_the_imbalance(server):
    rc, out = _run(server, "status", "-f", "json")
    assert rc == 0
    status = json.loads(out)
    assert status["cluster"] == "c1" and status["imbalance"] > 0.1
    hosts = {h["host"]: h for h in status["hosts"]}
    assert set(hosts) == {"h1", "h2", "h3"}
    assert hosts["h1"]["vms"] == 8 and hosts["h2"]["vms"] == 0
    assert (hosts["h1"]["memory_used_gib"], hosts["h1"]["memory_limit_gib"]) == (128, 256)
    assert hosts["h1"]["load"] > hosts["h2"]["load"] == 0
    # The table (the default format) shows the same, with load bars.
    rc, table = _run(server, "status")
    assert rc == 0
    assert f"| imbalance | {status['imbalance']:.4f}" in table
    h1 = next(line for line in table.splitlines() if "| h1 " in line)
    assert "128/256" in h1 and "#" in h1
    rc, text = _run(server, "status", "-f", "yaml")
    assert rc == 0 and yaml.safe_load(text) == status


def test_plan_changes_nothing_and_apply_moves(server):
    sim = server.simulator
    before = _hosts_of(sim)
    rc, out = _run(server, "plan", "--max-moves", "4", "-f", "json")
    assert rc == 0
    plan = json.loads(out)
    assert plan["pass"] == "balance" and 1 <= plan["moves"] <= 4
    assert len(plan["plan"]) == plan["moves"]
    assert all(m["kind"] == "balance" and m["from"] == "h1" and m["reason"]
               for m in plan["plan"])
    assert plan["imbalance_after"] < plan["imbalance_before"]
    assert _hosts_of(sim) == before
    rc, out = _run(server, "apply", "--max-moves", "4")
    assert rc == 0 and "it did" in out
    # Not a terminal: progress in plain lines, one per wave start and end and per move.
    assert "\r" not in out
    moved = [line for line in out.splitlines() if " -- moved legacy-" in line]
    assert len(moved) == plan["moves"]
    assert f"{plan['moves']} done, 0 failed, 0 remaining" in moved[-1]
    assert f"balance ended: {plan['moves']} of {plan['moves']} move(s) done" in out
    after = _hosts_of(sim)
    assert after != before
    assert sum(1 for h in after.values() if h == sim.host("h1").moid) < 8


def test_plan_shows_waves_and_expected_duration_under_the_per_host_limit(server):
    plans = {}
    for limit in (1, 8):
        rc, out = _run(server, "plan", "--max-vmotions-per-host", str(limit), "-f", "json")
        assert rc == 0
        plans[limit] = json.loads(out)
    one, eight = plans[1], plans[8]
    assert one["moves"] == eight["moves"] >= 2
    assert (one["max_vmotions_per_host"], eight["max_vmotions_per_host"]) == (1, 8)
    # Every move leaves h1: one at a time, or all in one wave.
    assert one["waves"] == one["moves"] and eight["waves"] == 1
    assert [m["wave"] for m in one["plan"]] == list(range(1, one["moves"] + 1))
    assert one["expected_duration"] > eight["expected_duration"] > 0
    rc, table = _run(server, "plan")
    assert rc == 0
    assert "| waves " in table and "| expected_duration " in table and "| wave |" in table


def test_plan_shows_evacuation_of_a_host_entering_maintenance(server):
    sim = server.simulator
    host = sim.host("h1")
    from pyVmomi import vim

    from tests.fixtures import connect

    si = connect(server)
    ref = vim.HostSystem(host.moid, si._stub)
    task = ref.EnterMaintenanceMode_Task(timeout=0)
    rc, out = _run(server, "plan", "-f", "json")
    assert rc == 0
    plan = json.loads(out)
    assert plan["pass"] == "evacuation" and "once the evacuation is done" in plan["note"]
    assert [m["kind"] for m in plan["plan"]] == ["maintenance"] * 8
    assert {m["from"] for m in plan["plan"]} == {"h1"}  # hosts by name
    assert {m["to"] for m in plan["plan"]} <= {"h2", "h3"}
    rc, out = _run(server, "apply")
    assert rc == 0
    from pyVim.task import WaitForTask

    WaitForTask(task)
    assert host.get_property("runtime.inMaintenanceMode") is True


def test_errors_name_what_is_wrong(server, monkeypatch):
    rc, out = _run(server, "status", cluster="nope")
    assert rc == 1 and "no such cluster" in out and "c1" in out
    rc, out = _run(server, "status", "--policy", "fastest")
    assert rc == 2 and "fastest" in out
    rc, out = _run(server, "status", "--max-vmotions-per-host", "0")
    assert rc == 2 and "--max-vmotions-per-host" in out
    out, err = io.StringIO(), io.StringIO()
    assert drs_cli.main(["--host", "127.0.0.1", "status"], stdout=out, stderr=err) == 2
    assert "--cluster" in err.getvalue()
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
        "[vsphere_drs]\npolicy = packed\nmax_vmotions_per_host = 3\n")
    # The README's form: options first, then the command.
    out = io.StringIO()
    argv = ["--config-file", str(conf), "--config-file", str(server.wsdl_conf), "--http",
            "--cluster", "c1", "plan", "-f", "json"]
    assert drs_cli.main(argv, stdout=out, stderr=io.StringIO()) == 0
    assert json.loads(out.getvalue())["max_vmotions_per_host"] == 3


# -- as a process: progress and Ctrl-C -------------------------------------------------


def _start(server, *args, **popen) -> subprocess.Popen:
    env = dict(os.environ, VSPHERE_PASSWORD=server.simulator.password, PYTHONUNBUFFERED="1")
    return subprocess.Popen(
        [sys.executable, "-m", "nova_vsphere_driver.cmd.drs", *_argv(server, *args)],
        env=env, **popen)


class Terminal:
    """A pseudo-terminal a process writes to, read as it goes."""

    def __init__(self) -> None:
        self.master, self.slave = pty.openpty()
        self.text = ""
        self.poller = select.poll()
        self.poller.register(self.master, select.POLLIN)

    def read_until(self, proc: subprocess.Popen, needle: str | None, timeout: float,
                   times: int = 1) -> bool:
        """Read until ``needle`` showed ``times`` times (True) or the process is done
        (False)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if needle is not None and self.text.count(needle) >= times:
                return True
            # poll, not select: a long test run may hold descriptors above 1024.
            if self.poller.poll(200):
                try:
                    data = os.read(self.master, 65536)
                except OSError:  # the process closed the terminal
                    return False
                if not data:
                    return False
                self.text += data.decode()
            elif proc.poll() is not None:
                return False
        raise AssertionError(f"{needle!r} did not show in {timeout} s: {self.text}")


def test_apply_shows_live_progress_and_ctrl_c_stops_it_after_the_running_wave(server):
    sim = server.simulator
    sim.faults.add_latency("RelocateVM_Task", 4.0)
    h1 = sim.host("h1").moid
    term = Terminal()
    proc = _start(server, "--max-vmotions-per-host", "2", "apply", stdout=term.slave,
                  stderr=term.slave)
    os.close(term.slave)
    try:
        # The live line is rewritten while the first wave's vMotions run.
        term.read_until(proc, "\r\x1b[Kbalance on c1: wave 1 of", 90, times=3)
        proc.send_signal(signal.SIGINT)  # Ctrl-C
        term.read_until(proc, None, 60)
        proc.wait(timeout=30)
    finally:
        os.close(term.master)
        if proc.poll() is None:
            proc.kill()
    out = term.text
    assert proc.returncode == drs_cli.EXIT_INTERRUPTED, out
    live = [part for part in out.split("\r\x1b[K") if part.startswith("balance on c1: wave")]
    assert len(live) >= 3 and "ETA" in live[0], out
    waves = int(live[0].split("wave 1 of ")[1].split(":")[0])
    assert waves >= 2  # two vMotions per host at most, all leaving h1
    assert "Ctrl-C: stopping after the running wave" in out
    assert not any("wave 2 of" in part for part in live)
    assert "2 done, 0 failed" in live[-1]
    # What was done, in plain lines.
    assert "balance stopped: 2 of " in out
    assert out.count("NOT RUN") >= 1
    # Every VM is where the stopped plan left it, running, and no vMotion is under way.
    where = {v.name: v.get_property("runtime.host")._moId for v in sim.vms()}
    assert sum(1 for h in where.values() if h != h1) == 2
    assert all(v.get_property("runtime.powerState") == "poweredOn" for v in sim.vms())
    assert all(t.complete_time is not None for t in sim.tasks.recent
               if t.method == "RelocateVM_Task")
