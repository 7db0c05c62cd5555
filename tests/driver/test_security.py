"""Nobody let in, nothing leaked: TLS on by default, the password never logged."""

from __future__ import annotations

import logging
import traceback

import pytest

from nova_vsphere_driver import conf as vsphere_conf
from nova_vsphere_driver import driver as vsphere_driver
from tests.driver.conftest import configure, make_instance
from tests.fixtures import running_simulator

SECRET = "Zx9-very-secret-Pa55"


def test_tls_is_verified_unless_insecure_is_set_explicitly():
    opts = {o.name: o for o in vsphere_conf.vsphere_opts}
    assert opts["insecure"].default is False
    assert opts["host_password"].secret is True


@pytest.fixture
def all_logs():
    """Every record of every logger at DEBUG, whatever the configured levels."""
    records: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record)

    handler = Keep(level=logging.DEBUG)
    root = logging.getLogger()
    old_level = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    yield records
    root.removeHandler(handler)
    root.setLevel(old_level)


def _leaks(records: list[logging.LogRecord], secret: str) -> list[str]:
    leaks = []
    for record in records:
        text = record.getMessage()
        if record.exc_info:
            text += "".join(traceback.format_exception(*record.exc_info))
        if secret in text:
            leaks.append(f"{record.name}: {text[:200]}")
    return leaks


def test_password_never_appears_in_logs_or_errors(conf_overrides, nova_db, ctx, all_logs):
    with running_simulator(tls=True, password=SECRET) as server:
        configure(conf_overrides, server, clusters=("cluster-a",))
        conf_overrides("vsphere_drs", poll_interval=3600, balance_interval=0)
        drv = vsphere_driver.VSphereDriver(None)
        drv.init_host("compute-1")  # login
        try:
            node = drv.get_available_nodes()[0]
            server.simulator.expire_sessions()
            instance = make_instance(node)
            drv.spawn(ctx, instance, None, [], None, {}, network_info=[])  # re-login
            drv.destroy(ctx, instance, [])
        finally:
            drv.cleanup_host("compute-1")
        # A failed login: the error names the user, never the password.
        conf_overrides("vsphere", host_password=SECRET + "-wrong")
        bad = vsphere_driver.VSphereDriver(None)
        with pytest.raises(vsphere_driver.ConfigurationError) as err:
            bad.init_host("compute-1")
        text = "".join(traceback.format_exception(err.type, err.value, err.tb))
        assert SECRET not in text
        assert "host_username" in str(err.value)
    assert len(all_logs) > 50  # DEBUG output was really captured
    assert _leaks(all_logs, SECRET) == []
