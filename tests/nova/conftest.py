"""Real Nova in the loop: Nova's API, conductor, scheduler, placement and nova-compute
(loading ``vsphere.VSphereDriver``) in-process against the simulator.

Each test module gets one :class:`~nova_vsphere_driver.testing.nova_stack.NovaStack` (starting one
costs a few seconds); a module may set ``STACK_OPTIONS`` (keyword arguments of NovaStack).
Every test leaves no server behind.
"""

from __future__ import annotations

import pytest

from nova_vsphere_driver.testing import nova_env

#: DRS for tests: balancing only when a test asks for it, and no background
#: polling (each poll reads every cluster from vCenter, which costs CPU the
#: other services need on a small machine); test_maintenance polls every second.
TEST_DRS = {"poll_interval": 600, "balance_interval": 0}


def _require_nova() -> None:
    missing = nova_env.missing_modules()
    if "nova" in missing:
        pytest.skip("Nova is not installed (tests/nova needs the [nova] extra)")
    if missing:
        pytest.fail(f"tests/nova needs {', '.join(missing)}: {nova_env.INSTALL_HINT}",
                    pytrace=False)


@pytest.fixture
def nova_installed():
    """Skip without Nova; fail when Nova is there but its fixtures' modules are not."""
    _require_nova()


@pytest.fixture(scope="module")
def stack(request):
    """One in-process Nova + simulator for the whole test module."""
    _require_nova()
    from nova_vsphere_driver.testing.nova_stack import NovaStack

    options = dict(getattr(request.module, "STACK_OPTIONS", {}))
    options.setdefault("drs", dict(TEST_DRS))
    options.setdefault("name", request.module.__name__)
    with NovaStack(**options) as nova:
        yield nova


@pytest.fixture(autouse=True)
def _no_servers_left(request):
    """Tests share their module's stack: each one deletes its servers afterwards."""
    yield
    if "stack" in request.fixturenames:
        request.getfixturevalue("stack").delete_all()


def pytest_collection_modifyitems(items):
    """Nova and its libraries warn by the hundred about their own deprecations."""
    for item in items:
        if "tests/nova/" in str(item.fspath).replace("\\", "/"):
            item.add_marker(pytest.mark.filterwarnings("ignore::DeprecationWarning"))
            item.add_marker(pytest.mark.filterwarnings("ignore::FutureWarning"))


def pytest_report_header(config):
    if "nova" in nova_env.missing_modules():
        return None
    nova_env.prepare()
    mode = "eventlet (deprecated)" if nova_env.eventlet_mode() else "native threading"
    return f"Nova concurrency mode: {mode}"
